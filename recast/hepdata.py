"""Find and download published likelihood archives: HEPData records, resources, DOIs, URLs.

:func:`fetch` is the entry point: it understands every way a phenomenologist names a
likelihood (INSPIRE id, HEPData record or resource DOI, HEPData resource URL, any https
URL of an archive, a local archive, an extracted folder), downloads each archive once into
the cache (:mod:`recast.cache`) and returns the folder holding the extracted files.

What this module relies on about HEPData is written down in ``docs/hepdata-api.md``.
In short:

* ``<hepdata>/record/ins<inspire>?format=json&light=true`` (or ``/record/<recid>``, with
  ``&version=N``) returns the record's JSON: ``recid``, ``version``, ``record.inspire_id``,
  ``record.hepdata_doi`` and ``resources_with_doi``;
* ``<hepdata>/record/resources/<recid>/<version>`` lists the resources with their ``id``,
  ``file_type`` (``"HistFactory"`` for likelihoods), ``file_description``, ``doi``;
* ``<hepdata>/record/resource/<id>?view=true`` sends the file itself; resource ids are
  per version (a new version of a record gets new resource ids);
* a resource DOI ``10.17182/hepdata.<recid>.v<version>/r<n>`` resolves (``https://doi.org``)
  by redirect to ``/record/resource/<id>?landing_page=true``, which sends the file when the
  ``Accept`` header names its type (``application/x-tar, application/zip``) and an HTML
  landing page otherwise.

Both base URLs are configurable (``RECASTKIT_HEPDATA_URL``, ``RECASTKIT_DOI_URL``) so that
tests can point them at a local server.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

import requests
import urllib3.exceptions
from tqdm.auto import tqdm

from recast.cache import (
    CONTENT_DIR,
    ExtractLimits,
    cache_root,
    describe_bytes,
    entry_content,
    file_lock,
    install_entry,
    lookup_source,
    new_partial_dir,
    read_manifest,
    record_source,
    safe_extract,
    sniff_archive,
)
from recast.errors import ArchiveError, CacheMiss, DownloadError, RecastError

__all__ = [
    "ARCHIVE_ACCEPT",
    "DEFAULT_DOI_URL",
    "DEFAULT_HEPDATA_URL",
    "Download",
    "Record",
    "Resource",
    "RetryPolicy",
    "Source",
    "allowed_hosts",
    "doi_url",
    "download",
    "entry_manifest",
    "fetch",
    "hepdata_url",
    "parse_source",
    "resolve_record",
]

log = logging.getLogger(__name__)

DEFAULT_HEPDATA_URL = "https://www.hepdata.net"
DEFAULT_DOI_URL = "https://doi.org"
#: What HEPData's resource landing page needs to send the archive instead of HTML.
ARCHIVE_ACCEPT = "application/x-tar, application/zip"
_ALLOWED = ("hepdata.net", "doi.org")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
_HEPDATA_DOI_RE = re.compile(r"^10\.17182/hepdata\.(\d+)(?:\.v(\d+)(?:/r(\d+))?)?$", re.IGNORECASE)
_ANY_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
_INSPIRE_RE = re.compile(r"^ins(\d+)$", re.IGNORECASE)


class RetryPolicy(NamedTuple):
    """Timeouts and retries of every HTTP request.

    Waits grow as ``backoff * 2**(attempt - 1)``; a ``Retry-After`` header (seconds or an
    HTTP date) takes precedence; no single wait exceeds ``max_wait``.
    """

    attempts: int = 5  #: total tries per request
    backoff: float = 1.0  #: first wait, seconds
    max_wait: float = 60.0  #: cap on any single wait, seconds
    connect_timeout: float = 15.0  #: seconds to establish the connection
    read_timeout: float = 120.0  #: seconds without any byte from the server


class Source(NamedTuple):
    """A parsed source (see :func:`parse_source`)."""

    kind: str  #: folder, file, inspire, record, resource_doi, doi, resource, url
    text: str  #: as given
    ident: str  #: stable identity used to remember what it resolved to
    path: Path | None = None
    inspire_id: int | None = None
    recid: int | None = None
    version: int | None = None
    resource_id: int | None = None
    doi: str | None = None
    url: str | None = None


class Resource(NamedTuple):
    """One additional resource of a HEPData record."""

    id: int | None
    file_type: str
    description: str
    doi: str | None
    url: str  #: where to download it
    filename: str | None


class Download(NamedTuple):
    """A completed, verified download."""

    path: Path  #: the file (inside a ``.partial`` work folder)
    url: str  #: the final URL after redirects
    sha256: str
    size: int
    content_type: str | None
    filename: str | None  #: from Content-Disposition, else the URL


# ---------------------------------------------------------------------------------------
# configuration and source parsing
# ---------------------------------------------------------------------------------------


def hepdata_url() -> str:
    """HEPData's base URL: ``$RECASTKIT_HEPDATA_URL`` or ``https://www.hepdata.net``."""
    return os.environ.get("RECASTKIT_HEPDATA_URL", DEFAULT_HEPDATA_URL).rstrip("/")


def doi_url() -> str:
    """The DOI resolver's base URL: ``$RECASTKIT_DOI_URL`` or ``https://doi.org``."""
    return os.environ.get("RECASTKIT_DOI_URL", DEFAULT_DOI_URL).rstrip("/")


def allowed_hosts() -> tuple[str, ...]:
    """Hosts downloads may come from without ``force``: hepdata.net, doi.org (and their
    sub-domains) and the hosts of the configured HEPData and DOI base URLs."""
    hosts = list(_ALLOWED)
    for base in (hepdata_url(), doi_url()):
        host = urlsplit(base).hostname
        if host and host not in hosts:
            hosts.append(host.lower())
    return tuple(hosts)


def _host_allowed(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    configured = {urlsplit(b).hostname for b in (hepdata_url(), doi_url())}
    if host in configured:
        return True
    if parts.scheme != "https":
        return False
    return any(host == h or host.endswith("." + h) for h in _ALLOWED)


def _is_hepdata_host(host: str) -> bool:
    host = host.lower()
    return (
        host == "hepdata.net"
        or host.endswith(".hepdata.net")
        or (host == (urlsplit(hepdata_url()).hostname or "").lower())
    )


def _is_doi_host(host: str) -> bool:
    host = host.lower()
    return host in ("doi.org", "dx.doi.org") or host == (urlsplit(doi_url()).hostname or "")


def _from_doi(text: str, doi: str) -> Source:
    m = _HEPDATA_DOI_RE.match(doi)
    if m:
        recid = int(m.group(1))
        version = int(m.group(2)) if m.group(2) else None
        if m.group(3):
            canon = f"10.17182/hepdata.{recid}.v{version}/r{m.group(3)}"
            return Source(
                "resource_doi", text, f"doi:{canon}", recid=recid, version=version, doi=canon
            )
        ident = f"hepdata.{recid}" + (f".v{version}" if version else "")
        return Source("record", text, ident, recid=recid, version=version)
    if doi.lower().startswith("10.17182/"):
        raise ArchiveError(
            f"{text!r}: this HEPData DOI names a table, not an archive; use the record DOI "
            "(10.17182/hepdata.N) or a resource DOI (10.17182/hepdata.N.vV/rR)"
        )
    return Source("doi", text, f"doi:{doi.lower()}", doi=doi)


def parse_source(source: str | os.PathLike[str], *, inspire: bool = False) -> Source:
    """Recognise what ``source`` names.

    Accepted forms: an extracted folder; a local ``.tar.gz``/``.tgz``/``.tar``/``.zip``;
    ``ins1748602`` (or ``1748602`` with ``inspire=True``); a record DOI
    ``10.17182/hepdata.89408`` (optionally ``.v3``); a resource DOI
    ``10.17182/hepdata.89408.v3/r2``; any other DOI; HEPData URLs
    (``.../record/resource/<id>``, ``.../record/ins<id>``, ``.../record/<recid>``);
    ``https://doi.org/<doi>``; any other http(s) URL.  ``doi:`` prefixes are accepted.

    Raises
    ------
    ArchiveError
        When the text is none of these (naming the forms that are understood).
    """
    text = os.fspath(source).strip()
    if not text:
        raise ArchiveError("empty source: name an INSPIRE id, a DOI, a URL, an archive or a folder")
    if inspire:
        digits = text[3:] if text.lower().startswith("ins") else text
        if not digits.isdigit():
            raise ArchiveError(f"--inspire expects a number like 1748602, got {text!r}")
        return Source("inspire", text, f"ins{int(digits)}", inspire_id=int(digits))
    if "://" not in text:
        path = Path(text).expanduser()
        if path.is_dir():
            return Source("folder", text, f"folder:{path.resolve()}", path=path.resolve())
        if path.is_file():
            return Source("file", text, f"file:{path.resolve()}", path=path.resolve())
    m = _INSPIRE_RE.match(text)
    if m:
        return Source("inspire", text, f"ins{int(m.group(1))}", inspire_id=int(m.group(1)))
    doi = text[4:].strip() if text.lower().startswith("doi:") else text
    if _ANY_DOI_RE.match(doi):
        return _from_doi(text, doi)
    if re.match(r"^https?://", text, re.IGNORECASE):
        parts = urlsplit(text)
        host = parts.hostname or ""
        query = parse_qs(parts.query)
        resolver = doi_url() + "/"
        if text.startswith(resolver) and _ANY_DOI_RE.match(text[len(resolver) :]):
            return _from_doi(text, text[len(resolver) :])
        if _is_doi_host(host) and _ANY_DOI_RE.match(parts.path.lstrip("/")):
            return _from_doi(text, parts.path.lstrip("/"))
        if _is_hepdata_host(host):
            ver = query.get("version", [None])[0]
            version = int(ver) if ver and ver.isdigit() else None
            m = re.search(r"/record/resource/(\d+)/?$", parts.path)
            if m:
                rid = int(m.group(1))
                return Source("resource", text, f"resource:{rid}", resource_id=rid)
            m = re.search(r"/record/ins(\d+)/?$", parts.path, re.IGNORECASE)
            if m:
                ident = f"ins{int(m.group(1))}" + (f".v{version}" if version else "")
                return Source("inspire", text, ident, inspire_id=int(m.group(1)), version=version)
            m = re.search(r"/record/(\d+)/?$", parts.path)
            if m:
                ident = f"hepdata.{int(m.group(1))}" + (f".v{version}" if version else "")
                return Source("record", text, ident, recid=int(m.group(1)), version=version)
        return Source("url", text, f"url:{text}", url=text)
    if text.isdigit():
        raise ArchiveError(
            f"{text!r} is ambiguous: pass --inspire (inspire=True) for an INSPIRE id, or "
            f"write ins{text}; a HEPData record is 10.17182/hepdata.{text}"
        )
    suffix = "".join(Path(text).suffixes[-2:]).lower()
    if suffix.endswith(_ARCHIVE_SUFFIXES) or "/" in text or os.sep in text:
        raise ArchiveError(f"{text}: no such file or folder")
    raise ArchiveError(
        f"cannot tell what {text!r} names: expected an INSPIRE id (ins1748602), a HEPData "
        "DOI (10.17182/hepdata.89408 or 10.17182/hepdata.89408.v3/r2), a URL, a local "
        ".tar.gz/.tgz/.tar/.zip archive or an extracted folder"
    )


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------


def _new_session() -> requests.Session:
    from recast import __version__

    session = requests.Session()
    session.headers["User-Agent"] = f"recastkit/{__version__} (+https://github.com/recastkit)"
    return session


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _wait(policy: RetryPolicy, attempt: int, hint: float | None) -> float:
    wait = hint if hint is not None else policy.backoff * 2 ** (attempt - 1)
    return max(0.0, min(wait, policy.max_wait))


def _filename(resp: requests.Response) -> str | None:
    cd = resp.headers.get("Content-Disposition", "")
    m = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", cd, re.IGNORECASE) or re.search(
        r'filename="?([^";]+)"?', cd, re.IGNORECASE
    )
    name = m.group(1).strip() if m else Path(urlsplit(resp.url).path).name
    name = os.path.basename(name.replace("\\", "/"))
    return name or None


def _status_hint(status: int) -> str:
    if status == 404:
        return "check the id / DOI / URL (it does not exist there)"
    if status in (401, 403):
        return "the resource is not public (yet); check the record version"
    if status == 406:
        return "the server cannot send an archive for this resource"
    return "check the source"


def _get_json(session: requests.Session, url: str, policy: RetryPolicy) -> Any:
    last: str = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            resp = session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=(policy.connect_timeout, policy.read_timeout),
            )
        except (requests.ConnectionError, requests.Timeout) as err:
            last = f"{type(err).__name__}: {err}"
            hint = None
        else:
            with resp:
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code} {resp.reason}"
                    hint = _retry_after(resp)
                elif resp.status_code >= 400:
                    raise DownloadError(
                        f"{url}: HTTP {resp.status_code} {resp.reason}; {_status_hint(resp.status_code)}"
                    )
                else:
                    try:
                        return resp.json()
                    except ValueError as err:
                        raise DownloadError(
                            f"{url}: expected JSON, got {resp.headers.get('Content-Type')!r} "
                            f"starting {resp.text[:80]!r}; is RECASTKIT_HEPDATA_URL right?"
                        ) from err
        if attempt < policy.attempts:
            wait = _wait(policy, attempt, hint)
            log.warning(
                "%s: %s; retry %d/%d in %.1f s", url, last, attempt, policy.attempts - 1, wait
            )
            time.sleep(wait)
    raise DownloadError(
        f"{url}: giving up after {policy.attempts} attempts ({last}); try again later"
    )


def _raw_chunks(resp: requests.Response, size: int = 1 << 16) -> Iterator[bytes]:
    # The bytes exactly as sent (no Content-Encoding decoding): a .tar.gz served with
    # "Content-Encoding: gzip" must stay a .tar.gz, and its sha256 is that of the file.
    yield from resp.raw.stream(size, decode_content=False)


def download(
    url: str,
    dest_dir: str | os.PathLike[str],
    *,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = False,
    max_bytes: int | None = None,
) -> Download:
    """Stream ``url`` into a new file in ``dest_dir``, with retries, and check it is an archive.

    Connection errors, timeouts, bodies cut short (fewer bytes than ``Content-Length``),
    HTTP 429 and 5xx are retried with exponential backoff, honouring ``Retry-After``.
    Other HTTP errors fail at once.  The sha256 is computed while streaming.  A body that is
    no tar/zip archive (an HTML page, JSON...) raises :class:`DownloadError` saying what
    came back.  Failed attempts leave no file behind.

    Parameters
    ----------
    url : str
        What to download (redirects are followed).
    dest_dir : path-like
        Existing folder for the file (use a private work folder).
    session : requests.Session, optional
        Injected HTTP session (tests, proxies); a fresh one otherwise.
    headers : dict, optional
        Extra request headers (e.g. ``Accept``).
    retry : RetryPolicy, optional
        Timeouts and retries.
    progress : bool
        Show a tqdm byte progress bar on stderr.
    max_bytes : int, optional
        Refuse downloads larger than this.
    """
    session = session or _new_session()
    policy = retry or RetryPolicy()
    dest_dir = Path(dest_dir)
    last = ""
    for attempt in range(1, policy.attempts + 1):
        hint: float | None = None
        tmp = dest_dir / f"download.{attempt}.part"
        try:
            resp = session.get(
                url,
                headers=headers or {},
                stream=True,
                timeout=(policy.connect_timeout, policy.read_timeout),
            )
        except (requests.ConnectionError, requests.Timeout) as err:
            last = f"{type(err).__name__}: {err}"
        else:
            with resp:
                status = resp.status_code
                if status == 429 or status >= 500:
                    last = f"HTTP {status} {resp.reason}"
                    hint = _retry_after(resp)
                elif status >= 400:
                    raise DownloadError(
                        f"{url}: HTTP {status} {resp.reason}; {_status_hint(status)}"
                    )
                else:
                    result = _stream(resp, tmp, policy, progress, max_bytes)
                    if isinstance(result, Download):
                        return result
                    last = result
        tmp.unlink(missing_ok=True)
        if attempt < policy.attempts:
            wait = _wait(policy, attempt, hint)
            log.warning(
                "%s: %s; retry %d/%d in %.1f s", url, last, attempt, policy.attempts - 1, wait
            )
            time.sleep(wait)
    raise DownloadError(
        f"{url}: download failed after {policy.attempts} attempts ({last}); check the network "
        "and try again later"
    )


def _stream(
    resp: requests.Response,
    tmp: Path,
    policy: RetryPolicy,
    progress: bool,
    max_bytes: int | None,
) -> Download | str:
    """Write the body to ``tmp``; a Download on success, else the reason to retry."""
    length_header = resp.headers.get("Content-Length")
    expected = int(length_header) if length_header and length_header.isdigit() else None
    if max_bytes is not None and expected is not None and expected > max_bytes:
        raise DownloadError(f"{resp.url}: {expected} bytes exceed the limit of {max_bytes}")
    sha = hashlib.sha256()
    size = 0
    name = _filename(resp)
    try:
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name or "download",
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            for chunk in _raw_chunks(resp):
                out.write(chunk)
                sha.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
                if max_bytes is not None and size > max_bytes:
                    raise DownloadError(f"{resp.url}: more than {max_bytes} bytes; refusing it")
    except (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    ) as err:
        tmp.unlink(missing_ok=True)
        return f"connection lost after {size} bytes ({type(err).__name__}: {err})"
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if expected is not None and size != expected:
        tmp.unlink(missing_ok=True)
        return f"body cut short: {size} of {expected} bytes"
    content_type = resp.headers.get("Content-Type")
    if sniff_archive(tmp) is None:
        what = describe_bytes(tmp)
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"{resp.url}: expected a tar or zip archive, got {what} (Content-Type "
            f"{content_type!r}); the URL may point at a web page rather than the file (for "
            "HEPData use the resource DOI or .../record/resource/<id>?view=true)"
        )
    log.info("downloaded %s (%d bytes, sha256 %s)", resp.url, size, sha.hexdigest())
    return Download(tmp, resp.url, sha.hexdigest(), size, content_type, name)


# ---------------------------------------------------------------------------------------
# HEPData records
# ---------------------------------------------------------------------------------------


class Record(NamedTuple):
    """A HEPData record version and its additional resources."""

    recid: int
    version: int
    inspire_id: int | None
    doi: str | None
    resources: list[Resource]


def _resource_from_json(item: dict[str, Any], base: str) -> Resource:
    rid = item.get("id")
    location = str(item.get("location") or "")
    if isinstance(rid, int):
        url = f"{base}/record/resource/{rid}?view=true"
    elif location.lower().startswith("http"):
        url = location
    else:
        url = base + location
    filename = (
        os.path.basename(urlsplit(location).path) if location.lower().startswith("http") else None
    )
    return Resource(
        id=rid if isinstance(rid, int) else None,
        file_type=str(item.get("file_type") or ""),
        description=str(item.get("file_description") or ""),
        doi=item.get("doi") or None,
        url=url,
        filename=filename or None,
    )


def resolve_record(
    *,
    inspire_id: int | None = None,
    recid: int | None = None,
    version: int | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy | None = None,
) -> Record:
    """Look a HEPData record up and list its additional resources.

    Parameters
    ----------
    inspire_id, recid : int
        One of the two identifies the record.
    version : int, optional
        The record version (default: the latest public one).

    Returns
    -------
    Record
        ``(recid, version, inspire_id, doi, resources)``.
    """
    session = session or _new_session()
    policy = retry or RetryPolicy()
    base = hepdata_url()
    ref = f"ins{inspire_id}" if inspire_id is not None else str(recid)
    url = f"{base}/record/{ref}?format=json&light=true" + (f"&version={version}" if version else "")
    data = _get_json(session, url, policy)
    if not isinstance(data, dict) or "recid" not in data:
        raise DownloadError(
            f"{url}: not a HEPData record JSON (no 'recid'); is RECASTKIT_HEPDATA_URL right?"
        )
    record = data.get("record") or {}
    rec_recid = int(data["recid"])
    rec_version = int(data.get("version") or version or 1)
    ins = record.get("inspire_id")
    ins_id = int(ins) if ins not in (None, "") and str(ins).isdigit() else inspire_id
    res_url = f"{base}/record/resources/{rec_recid}/{rec_version}"
    resources: list[Resource] = []
    try:
        listing = _get_json(session, res_url, policy)
        for item in listing.get("submission_items", []):
            if item.get("type") == "submission":
                resources.extend(_resource_from_json(r, base) for r in item.get("resources", []))
    except DownloadError as err:
        # Fall back on the record JSON's resources_with_doi (no file types there: keep archives).
        log.warning("cannot list resources (%s); using the record's resources_with_doi", err)
        for r in data.get("resources_with_doi", []):
            name = str(r.get("filename") or "")
            if name.lower().endswith(_ARCHIVE_SUFFIXES) and r.get("doi"):
                resources.append(
                    Resource(
                        None,
                        "HistFactory",
                        str(r.get("description") or ""),
                        r["doi"],
                        f"{doi_url()}/{quote(r['doi'], safe='/')}",
                        name,
                    )
                )
    return Record(rec_recid, rec_version, ins_id, record.get("hepdata_doi"), resources)


# ---------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _manifest(src: Source, key: str, **fields: Any) -> dict[str, Any]:
    from recast import __version__

    m: dict[str, Any] = {
        "key": key,
        "source": src.text,
        "source_kind": src.kind,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recastkit_version": __version__,
    }
    m.update(fields)
    return m


def _download_fields(dl: Download, request_url: str) -> dict[str, Any]:
    return {
        "url": dl.url,
        "request_url": request_url,
        "sha256": dl.sha256,
        "size": dl.size,
        "filename": dl.filename,
        "content_type": dl.content_type,
    }


def _resource_key(resource_id: int) -> str:
    return f"hepdata-resource-{resource_id}"


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
        Allow URLs outside the allow-list (see :func:`allowed_hosts`).
    retry : RetryPolicy, optional
        Timeouts, retries and backoff.
    limits : ExtractLimits, optional
        Bounds on the unpacked size and file count.

    Returns
    -------
    pathlib.Path
        The folder holding the extracted files (inside the cache), or the folder given.

    Raises
    ------
    CacheMiss
        ``offline=True`` and the source is not cached.
    DownloadError
        A request failed for good, a URL is not allowed, or the server sent no archive.
    ArchiveError, UnsafeArchive
        The archive is damaged, or would write outside its folder / exceed the limits.
    """
    src = parse_source(source, inspire=inspire)
    if src.kind == "folder":
        assert src.path is not None
        return src.path
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    if src.kind == "file":
        return _fetch_file(src, root, refresh=refresh, limits=limits)
    if src.kind == "url" and not force and not _host_allowed(src.text):
        raise DownloadError(
            f"refusing to download {src.text}: its host is not one of {', '.join(allowed_hosts())} "
            "(https); pass --force (force=True) if you trust it"
        )
    with file_lock(root, f"source-{src.ident}"):
        if not refresh:
            hit = lookup_source(root, src.ident)
            if hit is None and src.kind == "resource":
                assert src.resource_id is not None
                hit = entry_content(root, _resource_key(src.resource_id))
            if hit is not None:
                log.info("%s: cached in %s", src.text, hit)
                return hit
        if offline:
            raise CacheMiss(
                f"{src.text!r} is not in the cache {root}; run `recastkit fetch {src.text}` "
                "without --offline, with network access, to download it first"
            )
        session = session or _new_session()
        policy = retry or RetryPolicy()
        kw: dict[str, Any] = {
            "session": session,
            "retry": policy,
            "progress": progress,
            "limits": limits,
            "refresh": refresh,
        }
        if src.kind in ("inspire", "record"):
            content, key = _fetch_record(src, root, **kw)
        elif src.kind == "resource":
            assert src.resource_id is not None
            url = f"{hepdata_url()}/record/resource/{src.resource_id}?view=true"
            content, key = _fetch_url(src, root, url, _resource_key(src.resource_id), **kw)
        elif src.kind in ("resource_doi", "doi"):
            assert src.doi is not None
            url = f"{doi_url()}/{quote(src.doi, safe='/')}"
            content, key = _fetch_url(src, root, url, None, **kw)
        else:
            assert src.url is not None
            key = "url-" + hashlib.sha256(src.url.encode()).hexdigest()[:20]
            content, key = _fetch_url(src, root, src.url, key, **kw)
        record_source(root, src.ident, key)
        return content


def _fetch_file(src: Source, root: Path, *, refresh: bool, limits: ExtractLimits | None) -> Path:
    assert src.path is not None
    if sniff_archive(src.path) is None:
        raise ArchiveError(
            f"{src.path}: not a tar or zip archive (found {describe_bytes(src.path)}); "
            "expected .tar.gz, .tgz, .tar or .zip, or an extracted folder"
        )
    sha = _sha256_file(src.path)
    key = f"file-{sha[:20]}"
    with file_lock(root, f"entry-src-{key}"):
        if not refresh:
            hit = entry_content(root, key)
            if hit is not None:
                return hit
        work = new_partial_dir(root)
        try:
            files = safe_extract(src.path, work / CONTENT_DIR, limits=limits)
            manifest = _manifest(
                src,
                key,
                url=src.path.as_uri(),
                sha256=sha,
                size=src.path.stat().st_size,
                filename=src.path.name,
                files=files,
            )
            return install_entry(root, key, work, manifest, replace=refresh)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _fetch_url(
    src: Source,
    root: Path,
    url: str,
    key: str | None,
    *,
    session: requests.Session,
    retry: RetryPolicy,
    progress: bool,
    limits: ExtractLimits | None,
    refresh: bool,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    work = new_partial_dir(root)
    try:
        dl = download(
            url,
            work,
            session=session,
            headers={"Accept": ARCHIVE_ACCEPT},
            retry=retry,
            progress=progress,
            max_bytes=(limits or ExtractLimits()).max_bytes,
        )
        if key is None:
            m = re.search(r"/record/resource/(\d+)", urlsplit(dl.url).path)
            if m and _is_hepdata_host(urlsplit(dl.url).hostname or ""):
                key = _resource_key(int(m.group(1)))
            else:
                key = "doi-" + re.sub(r"[^A-Za-z0-9.]+", "_", src.doi or src.text)[:150]
        if not refresh:
            hit = entry_content(root, key)
            if hit is not None:  # the same resource reached through another name
                return hit, key
        files = safe_extract(dl.path, work / CONTENT_DIR, limits=limits)
        dl.path.unlink()
        fields = _download_fields(dl, url)
        fields.update(extra or {})
        if src.recid is not None:
            fields.setdefault("hepdata_recid", src.recid)
        if src.version is not None:
            fields.setdefault("hepdata_version", src.version)
        if src.inspire_id is not None:
            fields.setdefault("inspire_id", src.inspire_id)
        if src.doi is not None:
            fields.setdefault("doi", src.doi)
        m = re.fullmatch(r"hepdata-resource-(\d+)", key)
        if m:
            fields.setdefault("resource_id", int(m.group(1)))
        return install_entry(
            root, key, work, _manifest(src, key, files=files, **fields), replace=refresh
        ), key
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch_record(
    src: Source,
    root: Path,
    *,
    session: requests.Session,
    retry: RetryPolicy,
    progress: bool,
    limits: ExtractLimits | None,
    refresh: bool,
) -> tuple[Path, str]:
    rec = resolve_record(
        inspire_id=src.inspire_id,
        recid=src.recid,
        version=src.version,
        session=session,
        retry=retry,
    )
    hist = [r for r in rec.resources if r.file_type.lower() == "histfactory"]
    what = f"HEPData record {rec.recid} v{rec.version}" + (
        f" (ins{rec.inspire_id})" if rec.inspire_id else ""
    )
    if not hist:
        kinds = sorted({r.file_type or "?" for r in rec.resources})
        raise DownloadError(
            f"{what} has no HistFactory resource (its resources are: {', '.join(kinds) or 'none'}); "
            "this analysis published no full likelihood, or pass a resource DOI / URL directly"
        )
    extra = {
        "hepdata_recid": rec.recid,
        "hepdata_version": rec.version,
        "inspire_id": rec.inspire_id,
        "hepdata_doi": rec.doi,
    }
    if len(hist) == 1:
        r = hist[0]
        key = _resource_key(r.id) if r.id is not None else None
        if key is not None and not refresh:
            hit = entry_content(root, key)
            if hit is not None:
                return hit, key
        e = dict(extra, doi=r.doi, description=r.description)
        return _fetch_url(
            src,
            root,
            r.url,
            key,
            session=session,
            retry=retry,
            progress=progress,
            limits=limits,
            refresh=refresh,
            extra=e,
        )
    # Several likelihood archives: one entry holding each under its own folder.
    key = f"hepdata.{rec.recid}.v{rec.version}"
    if not refresh:
        hit = entry_content(root, key)
        if hit is not None:
            return hit, key
    work = new_partial_dir(root)
    try:
        parts: list[dict[str, Any]] = []
        total = 0
        for i, r in enumerate(hist, start=1):
            sub = work / f"dl{i}"
            sub.mkdir()
            dl = download(
                r.url,
                sub,
                session=session,
                headers={"Accept": ARCHIVE_ACCEPT},
                retry=retry,
                progress=progress,
                max_bytes=(limits or ExtractLimits()).max_bytes,
            )
            name = _folder_name(r, dl, i)
            files = safe_extract(dl.path, work / CONTENT_DIR / name, limits=limits)
            total += files
            parts.append(
                dict(
                    _download_fields(dl, r.url),
                    folder=name,
                    doi=r.doi,
                    resource_id=r.id,
                    description=r.description,
                    files=files,
                )
            )
            shutil.rmtree(sub)
        manifest = _manifest(
            src,
            key,
            url=f"{hepdata_url()}/record/{rec.recid}?version={rec.version}",
            sha256=None,
            size=sum(p["size"] for p in parts),
            files=total,
            resources=parts,
            **extra,
        )
        return install_entry(root, key, work, manifest, replace=refresh), key
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _folder_name(r: Resource, dl: Download, i: int) -> str:
    name = dl.filename or r.filename or f"resource{i}"
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"resource{i}"
    return f"{i:02d}_{name}"


def entry_manifest(content: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The cache manifest of a content folder returned by :func:`fetch` (None outside the cache)."""
    entry = Path(content).parent
    if Path(content).name != CONTENT_DIR or not (entry / "manifest.json").is_file():
        return None
    try:
        return read_manifest(entry)
    except RecastError:
        return None
