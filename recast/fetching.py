"""Fetch: the one function that takes a source to an extracted, verified cache entry.

Read :func:`fetch` top to bottom; each step is one module, and imports run one way
(``tests/test_fetch_layers.py`` checks it)::

    resolve   (recast.resolve)    source -> what it names -> archive URL(s)        [pure]
    download  (recast.download)   HTTP: retries, stall detector, deadline, progress
    store     (recast.store)      cache entries, manifests, per-file digests, locks
    extract   (recast.extract)    safe tar/zip unpacking
    archive   (recast.archive)    find the likelihoods in the extracted folder

:func:`likelihoods` and :func:`load_likelihood` accept any source: they fetch it, then
read the folder with :mod:`recast.archive`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pandas as pd
import requests

from recast import archive, download, extract, resolve, store
from recast.archive import Likelihood
from recast.download import HostUnreachable, RetryPolicy
from recast.errors import ArchiveError, CacheError, CacheMiss, DownloadError
from recast.extract import ExtractLimits
from recast.resolve import Source

__all__ = ["fetch", "likelihoods", "load_likelihood", "resolve_record", "verify_cache"]

log = logging.getLogger(__name__)


class _Part(NamedTuple):
    """One archive to download into an entry."""

    url: str
    folder: str  #: sub-folder of content/ ("" for a single archive)
    fields: dict[str, Any]  #: what the manifest records about it


class _Plan(NamedTuple):
    key: str | None  #: None when only the final URL tells (DOIs)
    parts: list[_Part]
    fields: dict[str, Any]  #: entry-level manifest fields


def fetch(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    refresh: bool = False,
    session: requests.Session | None = None,
    progress: bool = False,
    inspire: bool = False,
    force: bool = False,
    retry: RetryPolicy | None = None,
    limits: ExtractLimits | None = None,
    labels: Sequence[str] | None = None,
    timeout: float | None = None,
) -> Path:
    """Download (once) and extract a likelihood archive; return the extracted folder.

    Parameters
    ----------
    source : str or path-like
        ``ins1748602``; ``1748602`` with ``inspire=True``; a HEPData record DOI
        (``10.17182/hepdata.89408``, its HistFactory resources are fetched); a resource DOI
        (``10.17182/hepdata.89408.v3/r2``); a HEPData resource URL
        (``.../record/resource/<id>?view=true``); another https URL of an archive (only
        with ``force=True`` outside hepdata.net / doi.org); a local ``.tar.gz``, ``.tgz``,
        ``.tar`` or ``.zip``; or an already-extracted folder (returned as is).
    cache_dir : path-like, optional
        Cache root (default ``$RECASTKIT_CACHE``, else the XDG cache folder).
    offline : bool
        Use only the cache; a miss raises :class:`CacheMiss`.
    refresh : bool
        Download again even if cached (the entry is replaced once the new copy is complete).
    session : requests.Session, optional
        HTTP session to use (tests, proxies, authentication).
    progress : bool
        Show a byte progress bar (the CLI sets it).
    inspire : bool
        Read a bare number as an INSPIRE id.
    force : bool
        Allow URLs outside the allow-list (see :func:`recast.resolve.allowed_hosts`).
    retry : RetryPolicy, optional
        Timeouts, stall detector, deadline, retries and backoff.
    limits : ExtractLimits, optional
        Bounds on the unpacked size and file count.
    labels : list of str, optional
        Names of the point values of legacy per-point patches, remembered in the entry's
        manifest: a later :func:`likelihoods`, :func:`load_likelihood` or ``scan`` of the
        entry uses them without being told again.  Default: what the entry remembers,
        else the labels of a known published archive
        (:data:`recast.resolve.KNOWN_LABELS`), else ``m1, m2, ...``.
    timeout : float, optional
        Seconds without progress before a download attempt is abandoned
        (:meth:`RetryPolicy.from_timeout`; ignored when ``retry`` is given).

    Returns
    -------
    pathlib.Path
        The folder holding the extracted files (inside the cache), or the folder given.

    Raises
    ------
    CacheMiss
        ``offline=True`` and the source is not cached.
    DownloadError
        A request failed for good (:class:`recast.download.HostUnreachable` when the host
        cannot be reached at all), a URL is not allowed, or the server sent no archive.
    ArchiveError, UnsafeArchive
        The archive is damaged, holds no likelihood, or would write outside its folder /
        exceed the limits.  Nothing is left in the cache.
    CacheError
        The cache cannot be written (read-only, full disk), or a cached entry is corrupt
        and cannot be repaired.
    """
    # 1. resolve: what does the source name?
    src = resolve.parse_source(source, inspire=inspire)
    if src.kind == "folder":
        assert src.path is not None
        found = store.entry_of(src.path)
        if found is not None:  # a folder inside the cache: check it like a cache hit
            _verified(found[0], found[1], offline=True, in_place=True)
            if labels is not None:
                _remember_labels(found[0], found[1], src.path, labels)
        return src.path
    if src.kind == "url" and not force and not resolve.host_allowed(src.text):
        raise DownloadError(
            f"refusing to download {src.text}: its host is not one of "
            f"{', '.join(resolve.allowed_hosts())} (https); pass --force (force=True) if you "
            "trust it"
        )
    policy = retry or (RetryPolicy.from_timeout(timeout) if timeout else RetryPolicy())
    root = store.open_root(cache_dir)

    with store.os_errors(root), store.file_lock(root, f"source-{src.ident}"):
        # 2. store: is it cached already?  (verified before use; repaired if possible)
        key = _cached_key(root, src)
        if key is not None and not refresh:
            content = _verified(root, key, offline=offline)
            if content is not None:
                if labels is not None:
                    _remember_labels(root, key, content, labels)
                log.info("%s: cached in %s", src.text, content)
                return content
        if offline and src.kind != "file":  # a local archive needs no network
            raise CacheMiss(
                f"{src.text!r} is not in the cache {root}; run `recastkit fetch {src.text}` "
                "without --offline, with network access, to download it first"
            )
        session = session or download.new_session()

        # 1b. resolve a HEPData record to its archive URLs (one request per JSON)
        try:
            plan = _plan(src, session, policy)
        except HostUnreachable as err:
            raise _unreachable(err, src, root) from None
        if plan.key is not None and not refresh:
            hit = _verified(root, plan.key, offline=offline)
            if hit is not None:  # the same resource, reached through another name
                store.record_source(root, src.ident, plan.key)
                if labels is not None:
                    _remember_labels(root, plan.key, hit, labels)
                return hit

        work = store.new_partial_dir(root)
        try:
            # 3. download each archive into the work folder, keep it under archive/
            key = plan.key
            parts: list[dict[str, Any]] = []
            digests: dict[str, Any] = {}
            (work / store.ARCHIVE_DIR).mkdir()
            for i, part in enumerate(plan.parts, start=1):
                try:
                    dl = _get(src, part, work, session, policy, progress, limits)
                except HostUnreachable as err:
                    raise _unreachable(err, src, root) from None
                if key is None:
                    key = _key_from_url(src, dl.url)
                    if not refresh:
                        hit = _verified(root, key, offline=offline)
                        if hit is not None:  # the same resource, reached through a DOI
                            store.record_source(root, src.ident, key)
                            if labels is not None:
                                _remember_labels(root, key, hit, labels)
                            return hit
                folder = part.folder or (
                    resolve.folder_name(dl.filename, i) if len(plan.parts) > 1 else ""
                )
                kept = f"{i:02d}_{_safe_name(dl.filename, i)}"
                os.replace(dl.path, work / store.ARCHIVE_DIR / kept)

                # 4. extract (safe unpacking), recording a digest of every file
                files = extract.extract(
                    work / store.ARCHIVE_DIR / kept,
                    work / store.CONTENT_DIR / folder,
                    limits=limits,
                    name=dl.url if src.kind != "file" else str(src.path),
                )
                digests.update(store.file_digests(files, prefix=folder))
                parts.append(
                    dict(
                        part.fields,
                        url=dl.url,
                        request_url=part.url,
                        sha256=dl.sha256,
                        size=dl.size,
                        filename=dl.filename,
                        content_type=dl.content_type,
                        folder=folder,
                        archive=kept,
                        files=len(files),
                    )
                )
            assert key is not None

            # 5. archive: refuse an entry without a likelihood, settle the labels
            content = work / store.CONTENT_DIR
            if not archive.has_likelihood(content):
                raise ArchiveError(
                    f"{src.text}: the archive holds no background-only workspace (a "
                    "*BkgOnly*.json / *bkgonly*.json file); is this a HistFactory likelihood "
                    "archive?  Nothing was cached"
                )
            fields = dict(plan.fields)
            fields.update(parts[0] if len(parts) == 1 else _multi(parts))
            chosen = list(labels) if labels is not None else _known_labels(fields)
            if labels is not None:
                archive.likelihoods(content, labels=chosen)  # right number of labels?
            elif chosen is not None:
                try:
                    archive.likelihoods(content, labels=chosen)
                except ArchiveError as err:  # a known record whose archive changed shape
                    log.warning("not using the known labels %s: %s", chosen, err)
                    chosen = None
            m = re.fullmatch(r"hepdata-resource-(\d+)", key)
            if m:
                fields.setdefault("resource_id", int(m.group(1)))
            manifest = _manifest(src, key, fields, digests, chosen)
            entry = store.install_entry(root, key, work, manifest, replace=refresh)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        store.record_source(root, src.ident, key)
        return entry


# ---------------------------------------------------------------------------------------
# the steps of fetch
# ---------------------------------------------------------------------------------------


def _cached_key(root: Path, src: Source) -> str | None:
    """The entry key a source resolved to before (sources index), if that entry exists."""
    hit = store.lookup_source(root, src.ident)
    if hit is not None:
        return hit.parent.name
    if src.kind == "resource":
        assert src.resource_id is not None
        key = resolve.resource_key(src.resource_id)
        if store.entry_content(root, key) is not None:
            return key
    if src.kind == "file":
        assert src.path is not None
        key = _file_key(src.path)
        if store.entry_content(root, key) is not None:
            return key
    return None


def _file_key(path: Path) -> str:
    return f"file-{store.sha256_file(path)[:20]}"


def _plan(src: Source, session: requests.Session, policy: RetryPolicy) -> _Plan:
    """Which archives to download for ``src``, under which entry key."""
    if src.kind == "file":
        assert src.path is not None
        return _Plan(_file_key(src.path), [_Part(src.path.as_uri(), "", {})], {})
    if src.kind in ("inspire", "record"):
        rec = resolve_record(
            inspire_id=src.inspire_id,
            recid=src.recid,
            version=src.version,
            session=session,
            retry=policy,
        )
        hist = rec.histfactory
        if not hist:
            kinds = sorted({r.file_type or "?" for r in rec.resources})
            raise DownloadError(
                f"{rec.title} has no HistFactory resource (its resources are: "
                f"{', '.join(kinds) or 'none'}); this analysis published no full likelihood, "
                "or pass a resource DOI / URL directly"
            )
        fields: dict[str, Any] = {
            "hepdata_recid": rec.recid,
            "hepdata_version": rec.version,
            "inspire_id": rec.inspire_id,
            "hepdata_doi": rec.doi,
        }
        if len(hist) == 1:
            r = hist[0]
            key = resolve.resource_key(r.id) if r.id is not None else None
            part: dict[str, Any] = {"doi": r.doi, "description": r.description}
            if r.id is not None:
                part["resource_id"] = r.id
            return _Plan(key, [_Part(r.url, "", part)], fields)
        parts = [
            _Part(
                r.url,
                resolve.folder_name(r.filename, i) if r.filename else "",
                {"doi": r.doi, "resource_id": r.id, "description": r.description},
            )
            for i, r in enumerate(hist, start=1)
        ]
        fields["url"] = f"{resolve.hepdata_url()}/record/{rec.recid}?version={rec.version}"
        return _Plan(f"hepdata.{rec.recid}.v{rec.version}", parts, fields)
    url = resolve.archive_url(src)
    if src.kind == "resource":
        assert src.resource_id is not None
        return _Plan(resolve.resource_key(src.resource_id), [_Part(url, "", {})], {})
    if src.kind == "url":
        key = "url-" + hashlib.sha256(url.encode()).hexdigest()[:20]
        return _Plan(key, [_Part(url, "", {})], {})
    return _Plan(
        None, [_Part(url, "", {})], {}
    )  # DOI: the final URL names the entry  # DOI: the final URL names the entry


def resolve_record(
    *,
    inspire_id: int | None = None,
    recid: int | None = None,
    version: int | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy | None = None,
) -> resolve.Record:
    """Look a HEPData record up and list its additional resources (two JSON requests).

    Parameters
    ----------
    inspire_id, recid : int
        One of the two identifies the record.
    version : int, optional
        The record version (default: the latest public one).

    Returns
    -------
    recast.resolve.Record
        ``(recid, version, inspire_id, doi, resources)``.
    """
    session = session or download.new_session()
    url = resolve.record_url(inspire_id=inspire_id, recid=recid, version=version)
    data = download.get_json(url, session=session, retry=retry)
    listing = None
    if isinstance(data, dict) and "recid" in data:
        rec_version = int(data.get("version") or version or 1)
        listing_url = resolve.listing_url(int(data["recid"]), rec_version)
        try:
            listing = download.get_json(listing_url, session=session, retry=retry)
        except HostUnreachable:
            raise
        except DownloadError as err:
            log.warning("cannot list resources (%s); using the record's resources_with_doi", err)
    return resolve.parse_record(data, listing, url=url, inspire_id=inspire_id, version=version)


def _get(
    src: Source,
    part: _Part,
    work: Path,
    session: requests.Session,
    policy: RetryPolicy,
    progress: bool,
    limits: ExtractLimits | None,
) -> download.Download:
    """Download one archive into ``work`` (a local archive: copy it there)."""
    if src.kind == "file":
        assert src.path is not None
        from recast._formats import describe_bytes, sniff_archive

        if sniff_archive(src.path) is None and not _is_tar(src.path):
            raise ArchiveError(
                f"{src.path}: not a tar or zip archive (found {describe_bytes(src.path)}); "
                "expected .tar.gz, .tgz, .tar or .zip, or an extracted folder"
            )
        target = work / "local.part"
        shutil.copyfile(src.path, target)
        return download.Download(
            target,
            part.url,
            store.sha256_file(target),
            target.stat().st_size,
            None,
            src.path.name,
        )
    return download.download(
        part.url,
        work,
        session=session,
        headers={"Accept": resolve.ARCHIVE_ACCEPT},
        retry=policy,
        progress=progress,
        max_bytes=(limits or ExtractLimits()).max_bytes,
    )


def _is_tar(path: Path) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _key_from_url(src: Source, url: str) -> str:
    m = re.search(r"/record/resource/(\d+)", urlsplit(url).path)
    if m and resolve.is_hepdata_host(urlsplit(url).hostname or ""):
        return resolve.resource_key(int(m.group(1)))
    return "doi-" + re.sub(r"[^A-Za-z0-9.]+", "_", src.doi or src.text)[:150]


def _safe_name(filename: str | None, i: int) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", filename or "").strip("._")
    return name or f"archive{i}"


def _multi(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sha256": None,
        "size": sum(p["size"] for p in parts),
        "files": sum(p["files"] for p in parts),
        "resources": parts,
    }


def _known_labels(fields: dict[str, Any]) -> list[str] | None:
    return resolve.known_labels(inspire_id=fields.get("inspire_id")) or resolve.known_labels(
        sha256=fields.get("sha256")
    )


def _manifest(
    src: Source,
    key: str,
    fields: dict[str, Any],
    digests: dict[str, Any],
    labels: list[str] | None,
) -> dict[str, Any]:
    from recast import __version__

    m: dict[str, Any] = {
        "key": key,
        "source": src.text,
        "source_kind": src.kind,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recastkit_version": __version__,
    }
    for name in ("recid", "version", "inspire_id", "doi"):
        value = getattr(src, name)
        if value is not None:
            m[{"recid": "hepdata_recid", "version": "hepdata_version"}.get(name, name)] = value
    m.update(fields)
    m.pop("folder", None)
    m["labels"] = labels
    m["digests"] = digests
    return m


def _remember_labels(root: Path, key: str, content: Path, labels: Sequence[str]) -> None:
    archive.likelihoods(content, labels=list(labels))  # raises on the wrong number
    store.update_manifest(root, key, labels=list(labels))


def _unreachable(err: HostUnreachable, src: Source, root: Path) -> DownloadError:
    """The one message of a host that cannot be reached, the same for every kind of source."""
    cached = _cached_key(root, src) is not None
    hint = (
        "it is cached: run without --refresh, or with --offline"
        if cached
        else (
            "check the network; or download the archive by hand (in a browser) and run "
            "`recastkit fetch FILE`"
        )
    )
    return DownloadError(f"{err}; {hint}")


# ---------------------------------------------------------------------------------------
# verification and repair of cached entries
# ---------------------------------------------------------------------------------------


def _verified(root: Path, key: str, *, offline: bool, in_place: bool = False) -> Path | None:
    """The content folder of entry ``key`` after checking its files against the manifest.

    A corrupt entry is re-extracted from its kept archive; without an intact archive it is
    removed and None is returned (the caller downloads it again), or, offline,
    :class:`CacheError` says how to repair it.
    """
    content = store.entry_content(root, key)
    if content is None:
        return None
    check = store.verify_entry(root, key)
    if check.ok:
        return content
    log.warning("cache entry %s is corrupt: %s", key, "; ".join(check.problems[:3]))
    if check.repairable:
        return _reextract(root, key)
    if offline:
        source = store.read_manifest(root / key).get("source")
        again = (
            f"fetch it again (`recastkit fetch {source} --refresh`)"
            if in_place
            else "fetch it again without --offline"
        )
        raise CacheError(
            f"cache entry {key} is corrupt ({check.problems[0]}"
            + (f", and {len(check.problems) - 1} more" if len(check.problems) > 1 else "")
            + f") and its archive is not kept; {again}, or remove it with "
            f"`recastkit cache clear --key {key}`",
            path=root / key,
        )
    store.remove_entry(root, key)
    return None


def _reextract(root: Path, key: str) -> Path:
    entry = root / key
    manifest = store.read_manifest(entry)
    work = store.new_partial_dir(root)
    try:
        digests: dict[str, Any] = {}
        shutil.copytree(entry / store.ARCHIVE_DIR, work / store.ARCHIVE_DIR)
        for path, folder, _ in store.kept_archives(entry, manifest):
            files = extract.extract(
                work / store.ARCHIVE_DIR / path.name, work / store.CONTENT_DIR / folder
            )
            digests.update(store.file_digests(files, prefix=folder))
        manifest["digests"] = digests
        manifest["repaired"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        log.warning("re-extracted cache entry %s from its kept archive", key)
        return store.install_entry(root, key, work, manifest, replace=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify_cache(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    keys: Sequence[str] | None = None,
    repair: bool = True,
) -> pd.DataFrame:
    """Check every file of the cache entries against its recorded sha256 (full hash).

    Parameters
    ----------
    cache_dir : path-like, optional
        Cache root (default: ``$RECASTKIT_CACHE`` or the XDG cache folder).
    keys : list of str, optional
        Only these entries.
    repair : bool
        Re-extract a corrupt entry from its kept archive.

    Returns
    -------
    pandas.DataFrame
        One row per entry: ``key``, ``files`` (checked), ``status`` (``"ok"``,
        ``"repaired"``, ``"corrupt"``, ``"unverified"`` for entries without digests), and
        ``problem`` (the first problem found, else ``""``).
    """
    root = store.cache_root(cache_dir)
    rows = []
    entries = store.cache_entries(root)
    wanted = list(entries.key) if keys is None else list(keys)
    unknown = sorted(set(wanted) - set(entries.key))
    if unknown:
        raise CacheError(
            f"no cache entry {unknown[0]!r} in {root}; see `recastkit cache list` for the keys",
            path=root,
        )
    for key in wanted:
        check = store.verify_entry(root, key, full=True)
        status = "ok" if check.ok else "corrupt"
        if check.ok and check.checked == 0:
            status = "unverified"
        if not check.ok and repair and check.repairable:
            with store.os_errors(root), store.file_lock(root, f"repair-{key}"):
                _reextract(root, key)
            status = "repaired"
        rows.append(
            {
                "key": key,
                "files": check.checked,
                "status": status,
                "problem": check.problems[0] if check.problems else "",
            }
        )
    return pd.DataFrame(rows, columns=["key", "files", "status", "problem"])


# ---------------------------------------------------------------------------------------
# likelihoods of any source
# ---------------------------------------------------------------------------------------


def likelihoods(
    path_or_source: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
) -> pd.DataFrame:
    """Table of the likelihoods in a folder, archive or any source :func:`fetch` takes.

    Parameters
    ----------
    path_or_source : str or path-like
        An extracted folder, or a source to fetch first (archive, DOI, INSPIRE id, URL).
    labels : list of str, optional
        Names of the point values (default: the patchset's; for legacy per-point patches
        those the cache entry remembers, see :func:`fetch`, else ``m1, m2, ...``).
    cache_dir, offline
        Passed to :func:`fetch` when a source must be fetched.

    Returns
    -------
    pandas.DataFrame
        See :func:`recast.archive.likelihoods`: ``name, bkgonly, patchset, format,
        n_points, labels, digest_ok``.
    """
    folder = fetch(path_or_source, cache_dir=cache_dir, offline=offline)
    return archive.likelihoods(folder, labels=labels)


def load_likelihood(
    path_or_source: str | os.PathLike[str],
    region: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    references: dict[str, str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
) -> Likelihood:
    """Load one likelihood of any source :func:`fetch` takes.

    Legacy per-point patch files become a pyhf PatchSet
    (:func:`recast.archive.legacy_patchset`).

    Parameters
    ----------
    path_or_source : str or path-like
        An extracted folder, or a source to fetch first.
    region : str, optional
        Which likelihood (``name`` in :func:`likelihoods`); needed when there are several.
    labels : list of str, optional
        Names of the point values (default as in :func:`likelihoods`).
    references : dict, optional
        ``metadata.references`` of a converted legacy patchset (default: the INSPIRE id
        recorded when the archive was fetched from HEPData, else empty).
    cache_dir, offline
        Passed to :func:`fetch` when a source must be fetched.

    Raises
    ------
    ArchiveError
        No likelihood; several and ``region`` is None; unknown ``region``; unreadable files.
    """
    folder = fetch(path_or_source, cache_dir=cache_dir, offline=offline)
    return archive.load_likelihood(folder, region, labels=labels, references=references)
