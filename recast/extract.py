"""Extract: safe unpacking of tar (plain, gz, bz2, xz) and zip archives.

The fourth step of :func:`recast.fetch` (resolve -> download -> store -> extract ->
archive).  Every member is checked *before* anything is written: absolute paths, ``..``,
symbolic and hard links, device and FIFO members, duplicate members (the last copy would
silently win), a file that is also a folder, a file named ``.``, and archives that unpack
beyond :class:`ExtractLimits` are refused with :class:`UnsafeArchive` naming the member.
While writing, the size and sha256 of every file are recorded (:class:`ExtractedFile`), so
that the cache can verify the files later.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import functools
import gzip
import hashlib
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any, NamedTuple

from recast._formats import describe_bytes, sniff_archive
from recast.errors import ArchiveError, UnsafeArchive

__all__ = ["ExtractLimits", "ExtractedFile", "extract", "safe_extract"]

log = logging.getLogger(__name__)


class ExtractLimits(NamedTuple):
    """Bounds on what an archive may unpack to (defence against archive bombs)."""

    max_bytes: int = 4 * 1024**3  #: total unpacked size
    max_files: int = 100_000  #: number of regular files


class ExtractedFile(NamedTuple):
    """One file written by :func:`extract`."""

    path: str  #: relative to the extraction folder, ``/``-separated
    size: int  #: bytes
    sha256: str
    mtime_ns: int  #: modification time right after writing (fast path of verification)


#: write errors caused by a member's name (too long, invalid), not by the file system's state
_MEMBER_ERRNOS = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.ENOTDIR, errno.EISDIR}


class _WriteFailed(Exception):
    """Writing an extracted file failed (disk full, read-only...): not the archive's fault."""

    def __init__(self, err: OSError, path: Path | None = None) -> None:
        super().__init__(str(err))
        if err.filename is None and path is not None:  # write(2) errors name no file
            err = OSError(err.errno, err.strerror, str(path))
        self.err = err


def _check_member_name(name: str, archive: Any) -> PurePosixPath:
    if "\x00" in name:
        raise UnsafeArchive(f"{archive}: entry {name!r} has a NUL byte in its name; refusing it")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise UnsafeArchive(
            f"{archive}: entry {name!r} has an absolute path; refusing to extract an archive "
            "that would write outside its folder"
        )
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(
            f"{archive}: entry {name!r} contains '..'; refusing to extract an archive that "
            "would write outside its folder"
        )
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


class _Plan:
    """The members to write, checked for collisions as they are added."""

    def __init__(self, dest: Path, archive: Any, limits: ExtractLimits) -> None:
        self.dest = dest
        self.archive = archive
        self.limits = limits
        self.files: dict[PurePosixPath, str] = {}
        self.dirs: dict[PurePosixPath, str] = {}
        self.entries: list[tuple[str, PurePosixPath, Callable[[], IO[bytes]] | None]] = []
        self.total = 0

    def add(
        self, name: str, rel: PurePosixPath, opener: Callable[[], IO[bytes]] | None, size: int
    ) -> None:
        a = self.archive
        if opener is None:  # a folder
            clash = self.files.get(rel) or next(
                (self.files[p] for p in rel.parents if p in self.files), None
            )
            if clash is not None:
                raise UnsafeArchive(
                    f"{a}: entry {name!r} is a folder, but {clash!r} is a file of the same "
                    "path; refusing an archive whose files and folders collide"
                )
            self.dirs.setdefault(rel, name)
            self.entries.append((name, rel, None))
            return
        if rel == PurePosixPath("."):
            raise UnsafeArchive(
                f"{a}: entry {name!r} is a file named '.' (the extraction folder itself); "
                "refusing it"
            )
        if rel in self.files:
            raise UnsafeArchive(
                f"{a}: entry {name!r} appears twice (also as {self.files[rel]!r}); refusing an "
                "archive with duplicate members, since the last copy would silently win"
            )
        clash = self.dirs.get(rel) or next(
            (self.files[p] for p in rel.parents if p in self.files), None
        )
        if clash is not None:
            raise UnsafeArchive(
                f"{a}: entry {name!r} is a file, but {clash!r} makes the same path (or one of "
                "its parents) a folder or a file; refusing an archive whose files and folders "
                "collide"
            )
        for p in rel.parents:
            if p != PurePosixPath("."):
                self.dirs.setdefault(p, name)
        self.files[rel] = name
        self.total += max(size, 0)
        self._bound()
        self.entries.append((name, rel, opener))

    def _bound(self) -> None:
        a, limits = self.archive, self.limits
        if self.total > limits.max_bytes:
            raise UnsafeArchive(
                f"{a}: unpacks to more than {limits.max_bytes} bytes; refusing it "
                "(raise ExtractLimits.max_bytes if this archive is genuine)"
            )
        if len(self.files) > limits.max_files:
            raise UnsafeArchive(
                f"{a}: holds more than {limits.max_files} files; refusing it "
                "(raise ExtractLimits.max_files if this archive is genuine)"
            )

    def write(self) -> list[ExtractedFile]:
        out: list[ExtractedFile] = []
        written = 0
        for name, rel, open_member in self.entries:
            target = self.dest / rel
            if open_member is None:
                _mkdir(target)
                continue
            with open_member() as src:
                record = _copy(
                    src, target, rel, self.limits.max_bytes - written, self.archive, name
                )
            written += record.size
            out.append(record)
        return out


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _WriteFailed(err) from err


def _copy(
    src: IO[bytes], target: Path, rel: PurePosixPath, budget: int, archive: Any, name: str
) -> ExtractedFile:
    _mkdir(target.parent)
    sha = hashlib.sha256()
    size = 0
    try:
        out = open(target, "wb")
    except OSError as err:
        raise _WriteFailed(err, target) from err
    with contextlib.ExitStack() as stack:
        stack.callback(_close, out, target)
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > budget:
                raise UnsafeArchive(
                    f"{archive}: entry {name!r} unpacks beyond the size limit; refusing it"
                )
            sha.update(chunk)
            try:
                out.write(chunk)
            except OSError as err:
                raise _WriteFailed(err, target) from err
        try:
            out.flush()
            os.fchmod(out.fileno(), 0o644)
        except OSError as err:
            raise _WriteFailed(err, target) from err
    mtime_ns = target.stat().st_mtime_ns
    return ExtractedFile(rel.as_posix(), size, sha.hexdigest(), mtime_ns)


def _close(out: IO[bytes], target: Path) -> None:
    try:
        out.close()
    except OSError as err:
        raise _WriteFailed(err, target) from err


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, archive: Any) -> IO[bytes]:
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover - regular files always have data
        raise ArchiveError(f"{archive}: cannot read entry {member.name!r}")
    return src


def _plan_tar(tf: tarfile.TarFile, plan: _Plan) -> None:
    archive = plan.archive
    for m in tf.getmembers():  # reads the whole index: detects truncation early
        rel = _check_member_name(m.name, archive)
        if m.issym() or m.islnk():
            raise UnsafeArchive(
                f"{archive}: entry {m.name!r} is a {'symbolic' if m.issym() else 'hard'} "
                f"link (to {m.linkname!r}); refusing archives with links"
            )
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            raise UnsafeArchive(f"{archive}: entry {m.name!r} is a device or FIFO; refusing it")
        if not (m.isreg() or m.isdir()):
            raise UnsafeArchive(f"{archive}: entry {m.name!r} has unsupported type {m.type!r}")
        opener = None if m.isdir() else functools.partial(_tar_member, tf, m, archive)
        plan.add(m.name, rel, opener, m.size)


def _plan_zip(zf: zipfile.ZipFile, plan: _Plan) -> None:
    archive = plan.archive
    for info in zf.infolist():
        rel = _check_member_name(info.filename, archive)
        mode = (info.external_attr >> 16) & 0xFFFF
        if mode and stat.S_ISLNK(mode):
            raise UnsafeArchive(
                f"{archive}: entry {info.filename!r} is a symbolic link; refusing archives "
                "with links"
            )
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchive(
                f"{archive}: entry {info.filename!r} is a device, FIFO or socket; refusing it"
            )
        opener = None if info.is_dir() else functools.partial(zf.open, info)
        plan.add(info.filename, rel, opener, info.file_size)


_DECOMPRESSORS: dict[str, Callable[..., Any]] = {
    "gzip": gzip.open,
    "bzip2": bz2.open,
    "xz": lzma.open,
}


def _compression_intact(path: Path, kind: str) -> bool:
    """True when the compressed stream itself decompresses to its end."""
    opener = _DECOMPRESSORS.get(kind)
    if opener is None:
        return True
    try:
        with opener(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
        return False
    return True


def extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
    name: str | None = None,
) -> list[ExtractedFile]:
    """Extract a tar (plain, gz, bz2, xz) or zip archive into the new folder ``dest``.

    Parameters
    ----------
    archive : path-like
        The archive file.
    dest : path-like
        Folder to create and fill; must not exist yet.
    limits : ExtractLimits, optional
        Size and file-count bounds (defaults: 4 GiB, 100 000 files).
    name : str, optional
        How to call the archive in messages (e.g. the URL it came from; default: its path).

    Returns
    -------
    list of ExtractedFile
        Every regular file written, in archive order.

    Raises
    ------
    UnsafeArchive
        A member would escape ``dest``, is a link or device, collides with another member,
        or the archive exceeds ``limits``.  Nothing is written.
    ArchiveError
        Not an archive, or damaged / truncated.
    OSError
        Writing failed (full disk, read-only folder); not the archive's fault.

    On any error ``dest`` is removed again, so nothing partial is left.
    """
    archive = Path(archive)
    dest = Path(dest)
    label = name or str(archive)
    limits = limits or ExtractLimits()
    kind = sniff_archive(archive)
    if kind is None and tarfile.is_tarfile(archive):
        kind = "tar"  # an old (v7) tar without the ustar magic
    if kind is None:
        raise ArchiveError(
            f"{label}: not a tar or zip archive (found {describe_bytes(archive)}); "
            "expected .tar.gz, .tgz, .tar or .zip"
        )
    dest.mkdir(parents=True, exist_ok=False)
    dest = dest.resolve()
    plan = _Plan(dest, label, limits)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _plan_zip(zf, plan)
                files = plan.write()
        else:
            with tarfile.open(archive, mode="r:*") as tf:
                _plan_tar(tf, plan)
                files = plan.write()
    except _WriteFailed as err:
        shutil.rmtree(dest, ignore_errors=True)
        if err.err.errno in _MEMBER_ERRNOS:  # the member's name, not the disk, is at fault
            rel = os.path.relpath(str(err.err.filename or dest), dest)
            raise ArchiveError(
                f"{label}: entry {rel!r} cannot be unpacked ({err.err.strerror}); the archive "
                "holds a name this file system does not accept"
            ) from err.err
        raise err.err from None
    except ArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        zlib.error,
        lzma.LZMAError,
    ) as err:
        shutil.rmtree(dest, ignore_errors=True)
        if kind in _DECOMPRESSORS and not _compression_intact(archive, kind):
            what = f"damaged or truncated {kind} archive"
        elif kind in _DECOMPRESSORS:
            what = f"the {kind} stream is intact, but the tar inside it cannot be read"
        else:
            what = f"damaged or truncated {kind} archive"
        raise ArchiveError(
            f"{label}: {what} ({type(err).__name__}: {err}); download it again, or check the file"
        ) from err
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    log.debug("extracted %d files from %s", len(files), label)
    return files


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
) -> int:
    """:func:`extract`, returning only the number of regular files written."""
    return len(extract(archive, dest, limits=limits))
