"""Compatibility names: the cache store and archive extraction are now two modules.

``recast.cache`` used to hold both the cache store and tar/zip extraction; they moved to
:mod:`recast.store` (entries, manifests, digests, locks) and :mod:`recast.extract` (safe
unpacking).  These re-exports keep old imports working; new code imports from those
modules.
"""

from __future__ import annotations

from recast._formats import describe_bytes, sniff_archive
from recast.extract import ExtractLimits, safe_extract
from recast.store import (
    CONTENT_DIR,
    MANIFEST_NAME,
    cache_entries,
    cache_root,
    clear_cache,
    entry_content,
    file_lock,
    install_entry,
    lookup_source,
    new_partial_dir,
    read_manifest,
    record_source,
)

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
