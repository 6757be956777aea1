"""Exceptions of the workflow side (fetch, make-patch, scan, contour).

Every error raised on purpose by :mod:`recast` derives from :class:`RecastError` and from
the builtin that fits it.  The CLI turns any of them into a one-line message and exit 1.
"""

from __future__ import annotations

__all__ = [
    "RecastError",
    "DownloadError",
    "CacheMiss",
    "ArchiveError",
    "UnsafeArchive",
    "YieldsError",
    "MappingError",
    "ScanError",
    "ContourError",
    "CombineError",
    "CacheError",
]


class RecastError(Exception):
    """Base class of every error raised by :mod:`recast`."""


class DownloadError(RecastError, OSError):
    """An HTTP request failed for good (after retries), or returned the wrong content."""


class CacheMiss(RecastError, LookupError):
    """``offline=True`` and the requested source is not in the cache."""


class ArchiveError(RecastError, ValueError):
    """An archive or folder is broken or holds no likelihood."""


class UnsafeArchive(ArchiveError):
    """An archive entry would escape the extraction folder (absolute path, ``..``, link, device)."""


class YieldsError(RecastError, ValueError):
    """Recasting-tool yields are malformed (missing columns, NaN, negative, duplicates...)."""


class MappingError(RecastError, ValueError):
    """A region mapping names an unknown channel or a wrong bin."""


class ScanError(RecastError, ValueError):
    """A scan cannot start (bad selection, unknown region, digest mismatch...)."""


class ContourError(RecastError, ValueError):
    """A contour cannot be extracted (too few points, unknown column...)."""


class CombineError(RecastError, ValueError):
    """Workspaces or patchsets cannot be combined (clashing names, conflicting settings...)."""


class CacheError(RecastError, OSError):
    """The cache cannot be written or read (read-only folder, full disk), or an entry is
    corrupt and cannot be repaired.  ``path`` names the file or folder concerned."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
