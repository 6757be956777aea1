"""Store: the local cache of fetched archives (entries, manifests, digests, locks).

The third step of :func:`recast.fetch` (resolve -> download -> store -> extract ->
archive).  Layout of a cache root (``--cache-dir``, else ``$RECASTKIT_CACHE``, else
``$XDG_CACHE_HOME/recastkit``, else ``~/.cache/recastkit``)::

    <root>/
      <key>/                 one entry per resolved, versioned resource
        manifest.json        source, resolved URL, sha256, size, time, recastkit version,
                             labels, and the size + sha256 of every extracted file
        archive/             the archive(s) as downloaded (to repair the entry offline)
        content/             the extracted archive (or, for a HEPData record with several
                             HistFactory resources, one sub-folder per resource)
      sources.json           which entry keys an (unversioned) source resolved to
      .locks/<name>.lock     fcntl.flock lock files (one per source / entry)
      .partial/<random>/     downloads and extractions in progress (removed on failure)

An entry appears only once it is complete: downloads and extractions happen in a
``.partial`` folder of the same file system and the finished folder is moved into place
with one ``os.rename``.  Two processes that install the same entry at once cannot
corrupt it: the loser of the rename discards its copy.  :func:`verify_entry` checks the
extracted files against the manifest (size and modification time first, the sha256 when
they differ or when asked).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from recast._io import atomic_write_json
from recast.errors import CacheError, RecastError

__all__ = [
    "ARCHIVE_DIR",
    "CONTENT_DIR",
    "MANIFEST_NAME",
    "EntryCheck",
    "cache_entries",
    "cache_root",
    "clear_cache",
    "entry_content",
    "entry_manifest",
    "entry_of",
    "file_digests",
    "file_lock",
    "kept_archives",
    "install_entry",
    "lookup_source",
    "new_partial_dir",
    "open_root",
    "os_errors",
    "read_manifest",
    "record_source",
    "remove_entry",
    "sha256_file",
    "update_manifest",
    "verify_entry",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
CONTENT_DIR = "content"
_SOURCES_NAME = "sources.json"
_LOCKS_DIR = ".locks"
_PARTIAL_DIR = ".partial"
_STALE_SECONDS = 24 * 3600
ARCHIVE_DIR = "archive"
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
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:150]
    path = locks / f"{safe}.lock"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+b")
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        # A read-only cache (e.g. a prepared copy mounted read-only) can still be read;
        # nobody can install into it, so there is nothing to serialise.  Writes fail later,
        # with a message naming the path.
        log.debug("cache %s is read-only: no lock %s", root, name)
        yield
        return
    with fh:
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
# file-system errors, entries by path, manifest updates
# ---------------------------------------------------------------------------------------


def open_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root (see :func:`cache_root`), created if missing.

    Raises
    ------
    CacheError
        The folder cannot be created or written (read-only, full disk...).
    """
    root = cache_root(cache_dir)
    if root.is_dir():  # possibly read-only: fine for cache hits
        return root
    with os_errors(root):
        root.mkdir(parents=True, exist_ok=True)
    return root


def _fix_for(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space, or choose another cache folder with --cache-dir / RECASTKIT_CACHE"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "choose a writable cache folder with --cache-dir / RECASTKIT_CACHE"
    return "check the cache folder, or choose another one with --cache-dir / RECASTKIT_CACHE"


@contextlib.contextmanager
def os_errors(root: Path) -> Iterator[None]:
    """Turn a file-system error (not one of ours) into a one-line :class:`CacheError`
    naming the path and the cause."""
    try:
        yield
    except RecastError:
        raise
    except OSError as err:
        path = err.filename or root
        cause = err.strerror or type(err).__name__
        raise CacheError(
            f"cache {root}: cannot write {path}: {cause}; {_fix_for(err)}", path=Path(path)
        ) from err


def entry_of(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(root, key)`` of the cache entry whose content folder holds ``path``, else None."""
    p = Path(path).resolve()
    for folder in (p, *p.parents):
        if folder.name == CONTENT_DIR and (folder.parent / MANIFEST_NAME).is_file():
            entry = folder.parent
            return entry.parent, entry.name
    return None


def entry_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of the cache entry holding ``path`` (None outside the cache)."""
    found = entry_of(path)
    if found is None:
        return None
    try:
        return read_manifest(found[0] / found[1])
    except RecastError:
        return None


def update_manifest(root: Path, key: str, **fields: Any) -> dict[str, Any]:
    """Set ``fields`` in the manifest of entry ``key`` (atomically, under the entry lock)."""
    entry = root / _check_key(key)
    with os_errors(root), file_lock(root, f"entry-{key}"):
        manifest = read_manifest(entry)
        manifest.update(fields)
        atomic_write_json(entry / MANIFEST_NAME, manifest)
    return manifest


def remove_entry(root: Path, key: str) -> None:
    """Remove entry ``key`` (if present) and forget the sources that resolved to it."""
    with os_errors(root):
        with file_lock(root, f"entry-{_check_key(key)}"):
            _remove_tree(root / key)
        with file_lock(root, "sources-index"):
            data = {k: v for k, v in _read_sources(root).items() if v.get("key") != key}
            atomic_write_json(root / _SOURCES_NAME, data)


# ---------------------------------------------------------------------------------------
# per-file digests
# ---------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def file_digests(files: Iterable[Any], *, prefix: str = "") -> dict[str, dict[str, Any]]:
    """The manifest's ``digests``: ``{path: {"size", "sha256", "mtime_ns"}}`` of extracted
    files (:class:`recast.extract.ExtractedFile`), paths relative to ``content/``."""
    return {
        (f"{prefix}/{f.path}" if prefix else f.path): {
            "size": f.size,
            "sha256": f.sha256,
            "mtime_ns": f.mtime_ns,
        }
        for f in files
    }


class EntryCheck(NamedTuple):
    """What :func:`verify_entry` found."""

    key: str
    ok: bool
    checked: int  #: files compared with the manifest
    hashed: int  #: files whose sha256 was computed
    problems: list[str]  #: one line per missing / changed file
    repairable: bool  #: the downloaded archive is kept and intact (checked only if not ok)


def verify_entry(root: Path, key: str, *, full: bool = False) -> EntryCheck:
    """Compare the extracted files of entry ``key`` with the digests of its manifest.

    A file whose size and modification time equal those recorded is taken as intact
    (fast path) unless ``full``; otherwise its sha256 is computed and compared.  Entries
    written before digests were recorded are reported ``ok`` with ``checked == 0``.
    """
    entry = root / _check_key(key)
    manifest = read_manifest(entry)
    digests = manifest.get("digests")
    problems: list[str] = []
    touched: dict[str, int] = {}
    checked = hashed = 0
    content = entry / CONTENT_DIR
    if isinstance(digests, dict):
        for rel, want in sorted(digests.items()):
            checked += 1
            path = content / rel
            try:
                st = path.stat()
            except OSError:
                problems.append(f"{path}: missing")
                continue
            if (
                not full
                and st.st_size == want.get("size")
                and st.st_mtime_ns == want.get("mtime_ns")
            ):
                continue
            if st.st_size != want.get("size"):
                problems.append(f"{path}: {st.st_size} bytes, {want.get('size')} recorded")
                continue
            hashed += 1
            try:
                got = sha256_file(path)
            except OSError as err:
                problems.append(f"{path}: unreadable ({err.strerror})")
                continue
            if got != want.get("sha256"):
                problems.append(
                    f"{path}: sha256 {got[:12]}..., {str(want.get('sha256'))[:12]}... recorded"
                )
            elif st.st_mtime_ns != want.get("mtime_ns"):
                touched[rel] = st.st_mtime_ns  # intact, only touched (e.g. copied without -p)
    if touched and not problems:
        _remember_mtimes(root, key, touched)
    repairable = bool(problems) and _archives_intact(entry, manifest)
    return EntryCheck(key, not problems, checked, hashed, problems, repairable)


def _remember_mtimes(root: Path, key: str, touched: dict[str, int]) -> None:
    """Record the new modification times of intact files, so that the next check of the
    entry takes the fast path again (best effort: a read-only cache stays as it is)."""
    try:
        with file_lock(root, f"entry-{key}"):
            manifest = read_manifest(root / key)
            for rel, mtime_ns in touched.items():
                manifest["digests"][rel]["mtime_ns"] = mtime_ns
            atomic_write_json(root / key / MANIFEST_NAME, manifest)
    except (OSError, RecastError, KeyError, TypeError) as err:
        log.debug("cannot record new mtimes in %s: %s", root / key, err)


def kept_archives(entry: Path, manifest: dict[str, Any]) -> list[tuple[Path, str, str]]:
    """``(archive file, sub-folder of content/, sha256)`` of every kept archive."""
    parts = manifest.get("resources") or [manifest]
    out = []
    for part in parts:
        name = part.get("archive")
        if not name:
            return []
        out.append(
            (entry / ARCHIVE_DIR / name, str(part.get("folder") or ""), str(part.get("sha256")))
        )
    return out


def _archives_intact(entry: Path, manifest: dict[str, Any]) -> bool:
    kept = kept_archives(entry, manifest)
    if not kept:
        return False
    for path, _, sha in kept:
        try:
            if sha256_file(path) != sha:
                return False
        except OSError:
            return False
    return True
