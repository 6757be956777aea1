"""Resolve: what a source names, and where its archives are (pure: no I/O).

The first step of :func:`recast.fetch` (resolve -> download -> store -> extract ->
archive).  :func:`parse_source` recognises every way a phenomenologist names a likelihood
(INSPIRE id, HEPData record or resource DOI, HEPData resource URL, any https URL of an
archive, a local archive, an extracted folder); :func:`record_url`, :func:`listing_url`
and :func:`parse_record` turn a HEPData record into the URLs of its HistFactory archives.
Nothing here touches the network or the disk beyond ``Path.is_dir`` / ``is_file`` of a
local source.

What this module relies on about HEPData is written down in ``docs/hepdata-api.md``:

* ``<hepdata>/record/ins<inspire>?format=json&light=true`` (or ``/record/<recid>``, with
  ``&version=N``) returns the record's JSON: ``recid``, ``version``, ``record.inspire_id``,
  ``record.hepdata_doi`` and ``resources_with_doi``;
* ``<hepdata>/record/resources/<recid>/<version>`` lists the resources with their ``id``,
  ``file_type`` (``"HistFactory"`` for likelihoods), ``file_description``, ``doi``;
* ``<hepdata>/record/resource/<id>?view=true`` sends the file itself;
* a resource DOI ``10.17182/hepdata.<recid>.v<version>/r<n>`` resolves (``https://doi.org``)
  by redirect to ``/record/resource/<id>?landing_page=true``, which sends the file when the
  ``Accept`` header names its type (``application/x-tar, application/zip``).

Both base URLs are configurable (``RECASTKIT_HEPDATA_URL``, ``RECASTKIT_DOI_URL``) so that
tests can point them at a local server.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from recast.errors import ArchiveError, DownloadError

__all__ = [
    "ARCHIVE_ACCEPT",
    "ARCHIVE_SUFFIXES",
    "DEFAULT_DOI_URL",
    "DEFAULT_HEPDATA_URL",
    "KNOWN_LABELS",
    "Record",
    "Resource",
    "Source",
    "allowed_hosts",
    "archive_url",
    "doi_url",
    "folder_name",
    "hepdata_url",
    "host_allowed",
    "is_hepdata_host",
    "known_labels",
    "listing_url",
    "parse_record",
    "parse_source",
    "record_url",
    "resource_key",
]

DEFAULT_HEPDATA_URL = "https://www.hepdata.net"
DEFAULT_DOI_URL = "https://doi.org"
#: What HEPData's resource landing page needs to send the archive instead of HTML.
ARCHIVE_ACCEPT = "application/x-tar, application/zip"
_ALLOWED = ("hepdata.net", "doi.org")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
_HEPDATA_DOI_RE = re.compile(r"^10\.17182/hepdata\.(\d+)(?:\.v(\d+)(?:/r(\d+))?)?$", re.IGNORECASE)
_ANY_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
_INSPIRE_RE = re.compile(r"^ins(\d+)$", re.IGNORECASE)


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


def host_allowed(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    configured = {urlsplit(b).hostname for b in (hepdata_url(), doi_url())}
    if host in configured:
        return True
    if parts.scheme != "https":
        return False
    return any(host == h or host.endswith("." + h) for h in _ALLOWED)


def is_hepdata_host(host: str) -> bool:
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
        if is_hepdata_host(host):
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
    if suffix.endswith(ARCHIVE_SUFFIXES) or "/" in text or os.sep in text:
        raise ArchiveError(f"{text}: no such file or folder")
    raise ArchiveError(
        f"cannot tell what {text!r} names: expected an INSPIRE id (ins1748602), a HEPData "
        "DOI (10.17182/hepdata.89408 or 10.17182/hepdata.89408.v3/r2), a URL, a local "
        ".tar.gz/.tgz/.tar/.zip archive or an extracted folder"
    )


# ---------------------------------------------------------------------------------------
# HEPData records: URLs and JSON
# ---------------------------------------------------------------------------------------


class Record(NamedTuple):
    """A HEPData record version and its additional resources."""

    recid: int
    version: int
    inspire_id: int | None
    doi: str | None
    resources: list[Resource]

    @property
    def histfactory(self) -> list[Resource]:
        """The likelihood archives among the resources."""
        return [r for r in self.resources if r.file_type.lower() == "histfactory"]

    @property
    def title(self) -> str:
        """``HEPData record 89408 v3 (ins1748602)``, for messages."""
        ins = f" (ins{self.inspire_id})" if self.inspire_id else ""
        return f"HEPData record {self.recid} v{self.version}{ins}"


def record_url(
    *, inspire_id: int | None = None, recid: int | None = None, version: int | None = None
) -> str:
    """URL of a record's JSON (by INSPIRE id or HEPData recid; latest version by default)."""
    ref = f"ins{inspire_id}" if inspire_id is not None else str(recid)
    query = "?format=json&light=true" + (f"&version={version}" if version else "")
    return f"{hepdata_url()}/record/{ref}{query}"


def listing_url(recid: int, version: int) -> str:
    """URL of the resource listing of one record version."""
    return f"{hepdata_url()}/record/resources/{recid}/{version}"


def archive_url(src: Source) -> str:
    """Where the archive of a resource / DOI / URL source is downloaded from."""
    if src.kind == "resource":
        return f"{hepdata_url()}/record/resource/{src.resource_id}?view=true"
    if src.kind in ("resource_doi", "doi"):
        assert src.doi is not None
        return f"{doi_url()}/{quote(src.doi, safe='/')}"
    if src.kind == "url":
        assert src.url is not None
        return src.url
    raise ValueError(f"{src.kind} sources have no single archive URL")  # pragma: no cover


def resource_key(resource_id: int) -> str:
    """The cache key of a HEPData resource (resource ids are per record version)."""
    return f"hepdata-resource-{resource_id}"


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


def parse_record(
    data: Any, listing: Any, *, url: str, inspire_id: int | None = None, version: int | None = None
) -> Record:
    """A :class:`Record` from the record JSON and its resource listing.

    ``listing`` None (the listing could not be read) falls back on the record JSON's
    ``resources_with_doi``, keeping the archives among them.
    """
    if not isinstance(data, dict) or "recid" not in data:
        raise DownloadError(
            f"{url}: not a HEPData record JSON (no 'recid'); is RECASTKIT_HEPDATA_URL right?"
        )
    record = data.get("record") or {}
    ins = record.get("inspire_id")
    ins_id = int(ins) if ins not in (None, "") and str(ins).isdigit() else inspire_id
    base = hepdata_url()
    resources: list[Resource] = []
    if isinstance(listing, dict):
        for item in listing.get("submission_items", []):
            if item.get("type") == "submission":
                resources.extend(_resource_from_json(r, base) for r in item.get("resources", []))
    else:
        for r in data.get("resources_with_doi", []):
            name = str(r.get("filename") or "")
            if name.lower().endswith(ARCHIVE_SUFFIXES) and r.get("doi"):
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
    rec_version = int(data.get("version") or version or 1)
    return Record(int(data["recid"]), rec_version, ins_id, record.get("hepdata_doi"), resources)


def folder_name(filename: str | None, i: int) -> str:
    """The sub-folder of the ``i``-th archive of a record with several (``01_SRlow``)."""
    name = filename or f"resource{i}"
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"resource{i}"
    return f"{i:02d}_{name}"


# ---------------------------------------------------------------------------------------
# known records: the names of the point values of legacy archives
# ---------------------------------------------------------------------------------------

#: Labels of the point values of published archives that do not carry them (legacy
#: per-point patches keep the masses only in the file names), as ATLAS names the axes of
#: the analysis' HEPData tables.  Keyed by INSPIRE id and by the archive's sha256, so that
#: a local copy of the published archive is labelled like a download.
KNOWN_LABELS: dict[str, list[str]] = {
    # ATLAS-SUSY-2018-31 sbottom multi-b, 10.17182/hepdata.89408.v3/r2:
    # patch.sbottom_<m(b1)>_<m(chi2)>_<m(chi1)>.json
    "ins1748602": ["m_sbottom", "m_N2", "m_N1"],
    "sha256:9089b0e5fabba335bea4c94545ccca8ddd21289feeab2f85e5bcc8bada37be70": [
        "m_sbottom",
        "m_N2",
        "m_N1",
    ],
}


def known_labels(*, inspire_id: int | None = None, sha256: str | None = None) -> list[str] | None:
    """The labels of a known published archive (see :data:`KNOWN_LABELS`), else None."""
    for key in (f"ins{inspire_id}" if inspire_id else None, f"sha256:{sha256}" if sha256 else None):
        if key is not None and key in KNOWN_LABELS:
            return list(KNOWN_LABELS[key])
    return None
