"""The local cache of downloaded likelihood archives, and safe archive extraction.

Layout of a cache root (``--cache-dir``, else ``$RECASTKIT_CACHE``, else
``$XDG_CACHE_HOME/recastkit``, else ``~/.cache/recastkit``)::

    <root>/
      <key>/                 one entry per resolved, versioned resource
        manifest.json        source, resolved URL, sha256, size, time, recastkit version
        content/             the extracted archive (or, for a HEPData record with several
                             HistFactory resources, one sub-folder per resource)
      sources.json           which entry keys an (unversioned) source resolved to
      .locks/<name>.lock     fcntl.flock lock files (one per source / entry)
      .partial/<random>/     downloads and extractions in progress (removed on failure)

An entry appears only once it is complete: downloads and extractions happen in a
``.partial`` folder of the same file system and the finished folder is moved into place
with one ``os.rename``.  Two processes that install the same entry at once cannot
corrupt it: the loser of the rename discards its copy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, NamedTuple

import pandas as pd

from recast._io import atomic_write_json
from recast.errors import ArchiveError, RecastError, UnsafeArchive

__all__ = [
    "CONTENT_DIR",
    "MANIFEST_NAME",
    "ExtractLimits",
    "cache_entries",
    "cache_root",
    "clear_cache",
    "describe_bytes",
    "entry_content",
    "file_lock",
    "install_entry",
    "lookup_source",
    "new_partial_dir",
    "read_manifest",
    "record_source",
    "safe_extract",
    "sniff_archive",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
CONTENT_DIR = "content"
_SOURCES_NAME = "sources.json"
_LOCKS_DIR = ".locks"
_PARTIAL_DIR = ".partial"
_STALE_SECONDS = 24 * 3600
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


# ---------------------------------------------------------------------------------------
# cache root, locks, manifests
# ---------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$RECASTKIT_CACHE``, else the XDG cache folder.

    The folder is not created here.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get("RECASTKIT_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "recastkit").resolve()


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key) or ".." in key:
        raise RecastError(f"invalid cache key {key!r}: use letters, digits, '.', '_' and '-'")
    return key


@contextlib.contextmanager
def file_lock(root: Path, name: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` lock named ``name`` inside ``root/.locks``.

    The lock is advisory and works across processes (and across threads, since each call
    opens its own file description).
    """
    locks = root / _LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:150]
    path = locks / f"{safe}.lock"
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_manifest(entry: Path) -> dict[str, Any]:
    """The manifest of a cache entry folder; :class:`RecastError` if missing or broken."""
    path = Path(entry) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RecastError(
            f"{path}: cache entry without manifest; remove it with `recastkit cache clear`"
        ) from err
    except (OSError, ValueError) as err:
        raise RecastError(
            f"{path}: unreadable cache manifest ({err}); remove the entry with "
            "`recastkit cache clear` and fetch again"
        ) from err
    if not isinstance(data, dict):
        raise RecastError(f"{path}: cache manifest is not a JSON object; clear the entry")
    return data


def entry_content(root: Path, key: str) -> Path | None:
    """The extracted content folder of entry ``key`` if the entry is complete, else None."""
    entry = root / _check_key(key)
    content = entry / CONTENT_DIR
    if (entry / MANIFEST_NAME).is_file() and content.is_dir():
        return content
    return None


def new_partial_dir(root: Path) -> Path:
    """A fresh private work folder inside ``root/.partial`` (same file system as entries)."""
    partial = root / _PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    _sweep_partial(root, max_age=_STALE_SECONDS)
    path = partial / uuid.uuid4().hex
    path.mkdir()
    return path


def _sweep_partial(root: Path, *, max_age: float) -> None:
    """Remove leftovers of killed processes (older than ``max_age`` seconds) and trash.

    Younger work folders may belong to a fetch running right now and are kept.
    """
    partial = root / _PARTIAL_DIR
    if not partial.is_dir():
        return
    cutoff = time.time() - max_age
    for old in partial.iterdir():
        with contextlib.suppress(OSError):
            if old.name.startswith("trash-") or old.stat().st_mtime < cutoff:
                log.info("removing leftover work folder %s", old)
                shutil.rmtree(old, ignore_errors=True)


def install_entry(
    root: Path, key: str, work: Path, manifest: dict[str, Any], *, replace: bool = False
) -> Path:
    """Move a finished work folder into place as entry ``key``; return its content folder.

    ``work`` must hold a ``content`` folder.  The manifest is written into ``work`` first,
    then the whole folder is renamed to ``root/key`` in one step.  If another process
    installed the same key meanwhile, its entry is kept and ``work`` is discarded, unless
    ``replace`` (``--refresh``) asks to swap the old entry for the new one.
    """
    _check_key(key)
    if not (work / CONTENT_DIR).is_dir():
        raise RecastError(f"{work}: internal error, no {CONTENT_DIR}/ folder to install")
    atomic_write_json(work / MANIFEST_NAME, manifest)
    target = root / key
    with file_lock(root, f"entry-{key}"):
        if target.exists():
            existing = entry_content(root, key)
            if existing is not None and not replace:
                log.info("cache entry %s was installed meanwhile; keeping it", key)
                shutil.rmtree(work, ignore_errors=True)
                return existing
            _remove_tree(target)
        os.rename(work, target)
    log.info("cached %s in %s", key, target)
    content = entry_content(root, key)
    assert content is not None
    return content


def _remove_tree(path: Path) -> None:
    # Move aside first (atomic), then delete: a reader never sees a half-deleted entry.
    trash = path.parent / _PARTIAL_DIR / f"trash-{uuid.uuid4().hex}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(path, trash)
    except OSError as err:
        if err.errno == errno.ENOENT:
            return
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _read_sources(root: Path) -> dict[str, Any]:
    path = root / _SOURCES_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable source index %s: %s", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def lookup_source(root: Path, source_id: str) -> Path | None:
    """The content folder that ``source_id`` resolved to last time, if still complete."""
    info = _read_sources(root).get(source_id)
    if not isinstance(info, dict) or not isinstance(info.get("key"), str):
        return None
    try:
        return entry_content(root, info["key"])
    except RecastError:
        return None


def record_source(root: Path, source_id: str, key: str) -> None:
    """Remember that ``source_id`` resolved to entry ``key`` (atomic update of the index)."""
    _check_key(key)
    with file_lock(root, "sources-index"):
        data = _read_sources(root)
        data[source_id] = {"key": key, "time": _now()}
        atomic_write_json(root / _SOURCES_NAME, data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cache_entries(cache_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """List the complete entries of the cache.

    Parameters
    ----------
    cache_dir : path-like, optional
        Cache root (default: ``$RECASTKIT_CACHE`` or the XDG cache folder).

    Returns
    -------
    pandas.DataFrame
        One row per entry, sorted by key, with columns ``key, source, url, sha256, size``
        (bytes of the downloaded archive), ``files`` (number of extracted files),
        ``time`` (UTC, ISO 8601) and ``path`` (the content folder).
    """
    root = cache_root(cache_dir)
    columns = ["key", "source", "url", "sha256", "size", "files", "time", "path"]
    rows: list[dict[str, Any]] = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if not (entry / MANIFEST_NAME).is_file():
                continue
            try:
                m = read_manifest(entry)
            except RecastError as err:
                log.warning("%s", err)
                continue
            rows.append(
                {
                    "key": entry.name,
                    "source": m.get("source"),
                    "url": m.get("url"),
                    "sha256": m.get("sha256"),
                    "size": m.get("size"),
                    "files": m.get("files"),
                    "time": m.get("time"),
                    "path": str(entry / CONTENT_DIR),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def clear_cache(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    keys: list[str] | None = None,
) -> int:
    """Remove cache entries (all of them, or only ``keys``) and stale leftovers of killed runs.

    Parameters
    ----------
    cache_dir : path-like, optional
        Cache root (default: ``$RECASTKIT_CACHE`` or the XDG cache folder).
    keys : list of str, optional
        Only these entries (as listed by :func:`cache_entries`); unknown keys raise
        :class:`RecastError`.

    Returns
    -------
    int
        The number of entries removed.
    """
    root = cache_root(cache_dir)
    if not root.is_dir():
        if keys:
            raise RecastError(f"cache {root} is empty; no entry {keys[0]!r} to remove")
        return 0
    present = {e.name for e in root.iterdir() if e.is_dir() and not e.name.startswith(".")}
    if keys is not None:
        unknown = sorted(set(keys) - present)
        if unknown:
            raise RecastError(
                f"no cache entry {unknown[0]!r} in {root}; see `recastkit cache list` for the keys"
            )
        targets = sorted(set(keys))
    else:
        targets = sorted(present)
    removed = 0
    for key in targets:
        with file_lock(root, f"entry-{key}"):
            _remove_tree(root / key)
        removed += 1
    with file_lock(root, "sources-index"):
        if keys is None:
            with contextlib.suppress(FileNotFoundError):
                (root / _SOURCES_NAME).unlink()
        else:
            data = {k: v for k, v in _read_sources(root).items() if v.get("key") not in targets}
            atomic_write_json(root / _SOURCES_NAME, data)
    _sweep_partial(root, max_age=_STALE_SECONDS)
    log.info("removed %d cache entries from %s", removed, root)
    return removed


# ---------------------------------------------------------------------------------------
# archives: sniffing and safe extraction
# ---------------------------------------------------------------------------------------


class ExtractLimits(NamedTuple):
    """Bounds on what an archive may unpack to (defence against archive bombs)."""

    max_bytes: int = 4 * 1024**3  #: total unpacked size
    max_files: int = 100_000  #: number of regular files


def sniff_archive(path: str | os.PathLike[str]) -> str | None:
    """Guess an archive's kind from its first bytes.

    Returns
    -------
    str or None
        ``"zip"``, ``"tar"`` (plain), ``"gzip"``, ``"bzip2"``, ``"xz"``, or None when the
        bytes are no archive we can read.
    """
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def describe_bytes(path: str | os.PathLike[str]) -> str:
    """A short human description of a file that is not an archive (for error messages)."""
    with open(path, "rb") as fh:
        head = fh.read(2048)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        title = re.search(rb"<title>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
        t = title.group(1).decode("utf-8", "replace").strip()[:80] if title else ""
        return f"an HTML page{f' titled {t!r}' if t else ''}"
    if text.startswith((b"{", b"[")):
        return f"JSON text starting {head[:80].decode('utf-8', 'replace')!r}"
    if not head:
        return "an empty file"
    return f"{len(head)}+ bytes starting {head[:16]!r}"


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
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


def _target(dest: Path, rel: PurePosixPath, archive: Path, name: str) -> Path:
    target = (dest / rel).resolve()
    if target != dest and dest not in target.parents:  # belt and braces
        raise UnsafeArchive(f"{archive}: entry {name!r} resolves outside the extraction folder")
    return target


def _bound(total: int, count: int, limits: ExtractLimits, archive: Path) -> None:
    if total > limits.max_bytes:
        raise UnsafeArchive(
            f"{archive}: unpacks to more than {limits.max_bytes} bytes; refusing it "
            "(raise ExtractLimits.max_bytes if this archive is genuine)"
        )
    if count > limits.max_files:
        raise UnsafeArchive(
            f"{archive}: holds more than {limits.max_files} files; refusing it "
            "(raise ExtractLimits.max_files if this archive is genuine)"
        )


def _copy_stream(src: Any, target: Path, budget: int, archive: Path, name: str) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "wb") as out:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            written += len(chunk)
            if written > budget:
                raise UnsafeArchive(
                    f"{archive}: entry {name!r} unpacks beyond the size limit; refusing it"
                )
            out.write(chunk)
    return written


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
) -> int:
    """Extract a tar (plain, gz, bz2, xz) or zip archive into the new folder ``dest``.

    Every entry is checked before anything is written: absolute paths, ``..``,
    symbolic and hard links, device and FIFO entries raise :class:`UnsafeArchive`, and so
    do archives that unpack to more than ``limits.max_bytes`` bytes or
    ``limits.max_files`` files.  A damaged archive raises :class:`ArchiveError`.  On any
    error ``dest`` is removed again, so nothing partial is left.

    Parameters
    ----------
    archive : path-like
        The archive file.
    dest : path-like
        Folder to create and fill; must not exist yet.
    limits : ExtractLimits, optional
        Size and file-count bounds (defaults: 4 GiB, 100 000 files).

    Returns
    -------
    int
        The number of regular files written.
    """
    archive = Path(archive)
    dest = Path(dest)
    limits = limits or ExtractLimits()
    kind = sniff_archive(archive)
    if kind is None:
        raise ArchiveError(
            f"{archive}: not a tar or zip archive (found {describe_bytes(archive)}); "
            "expected .tar.gz, .tgz, .tar or .zip"
        )
    dest.mkdir(parents=True, exist_ok=False)
    dest = dest.resolve()
    try:
        if kind == "zip":
            return _extract_zip(archive, dest, limits)
        return _extract_tar(archive, dest, limits)
    except UnsafeArchive:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(err, ArchiveError):
            raise
        raise ArchiveError(
            f"{archive}: damaged or truncated {kind} archive ({type(err).__name__}: {err}); "
            "fetch it again with --refresh, or check the file"
        ) from err
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


#: an archive entry to write: (name in the archive, target path, opener of its bytes,
#: None for a folder)
_PlanEntry = tuple[str, Path, Callable[[], IO[bytes]] | None]


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> IO[bytes]:
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover - regular files always have data
        raise ArchiveError(f"{archive}: cannot read entry {member.name!r}")
    return src


def _write_plan(plan: list[_PlanEntry], limits: ExtractLimits, archive: Path) -> int:
    """Write checked entries (folders and regular files, in archive order) within the
    unpacked-size bound; return the bytes written."""
    written = 0
    for name, target, open_member in plan:
        if open_member is None:
            target.mkdir(parents=True, exist_ok=True)
            continue
        with open_member() as src:
            written += _copy_stream(src, target, limits.max_bytes - written, archive, name)
        os.chmod(target, 0o644)
    return written


def _extract_tar(archive: Path, dest: Path, limits: ExtractLimits) -> int:
    with tarfile.open(archive, mode="r:*") as tf:
        members = tf.getmembers()  # reads the whole index: detects truncation early
        total = 0
        count = 0
        plan: list[_PlanEntry] = []
        for m in members:
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
            if m.isreg():
                total += max(m.size, 0)
                count += 1
                _bound(total, count, limits, archive)
            opener = None if m.isdir() else functools.partial(_tar_member, tf, m, archive)
            plan.append((m.name, _target(dest, rel, archive, m.name), opener))
        written_total = _write_plan(plan, limits, archive)
    log.debug("extracted %d files (%d bytes) from %s", count, written_total, archive)
    return count


def _extract_zip(archive: Path, dest: Path, limits: ExtractLimits) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        total = 0
        count = 0
        plan: list[_PlanEntry] = []
        for info in infos:
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
            if not info.is_dir():
                total += info.file_size
                count += 1
                _bound(total, count, limits, archive)
            opener = None if info.is_dir() else functools.partial(zf.open, info)
            plan.append((info.filename, _target(dest, rel, archive, info.filename), opener))
        written_total = _write_plan(plan, limits, archive)
    log.debug("extracted %d files (%d bytes) from %s", count, written_total, archive)
    return count
