"""Compatibility names: the fetch chain now lives in one module per step.

``recast.hepdata`` used to hold resolution, HTTP and the orchestration of :func:`fetch`.
They moved to :mod:`recast.resolve` (source -> URLs), :mod:`recast.download` (HTTP) and
:mod:`recast.fetching` (the one :func:`fetch`); these re-exports keep old imports working.
New code imports from those modules (or simply uses ``recast.fetch``).
"""

from __future__ import annotations

from recast.download import Download, RetryPolicy, _retry_after, _wait, download
from recast.fetching import fetch, resolve_record
from recast.resolve import (
    ARCHIVE_ACCEPT,
    DEFAULT_DOI_URL,
    DEFAULT_HEPDATA_URL,
    Record,
    Resource,
    Source,
    allowed_hosts,
    doi_url,
    hepdata_url,
    parse_source,
)
from recast.store import entry_manifest

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

_COMPAT_PRIVATE = (_retry_after, _wait)  # still imported by older tests
