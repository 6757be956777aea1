"""recast: the workflow side of recastkit.

Fetch published likelihoods from HEPData, turn recasting-tool yields into signal patches,
scan CLs over whole signal grids in parallel, and draw exclusion contours.  Every function
returns plain Python objects or pandas DataFrames.

Public names are imported lazily, so that ``import recast`` (and ``recastkit --help``)
stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from likelihood._lazy import install_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "RecastError": "recast.errors",
    "DownloadError": "recast.errors",
    "CacheMiss": "recast.errors",
    "ArchiveError": "recast.errors",
    "UnsafeArchive": "recast.errors",
    "YieldsError": "recast.errors",
    "MappingError": "recast.errors",
    "ScanError": "recast.errors",
    "ContourError": "recast.errors",
    "CombineError": "recast.errors",
    # fetch
    "fetch": "recast.fetching",
    "cache_entries": "recast.store",
    "clear_cache": "recast.store",
    "verify_cache": "recast.fetching",
    "CacheError": "recast.errors",
    "likelihoods": "recast.fetching",
    "load_likelihood": "recast.fetching",
    "Likelihood": "recast.archive",
    # make-patch
    "read_yields": "recast.yields",
    "make_patchset": "recast.patch",
    # scan
    "scan": "recast.scan",
    "best_expected": "recast.scan",
    # contours
    "exclusion_contour": "recast.contour",
    "export_contours": "recast.contour",
    "plot_exclusion": "recast.contour",
    "plot_brazil": "recast.contour",
    "Contours": "recast.contour",
    # combination
    "combine": "recast.combine",
    "combine_likelihoods": "recast.combine",
    "Combination": "recast.combine",
    # bundled example
    "run_demo": "recast.demo",
}

__all__ = install_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from recast.archive import Likelihood
    from recast.combine import Combination, combine, combine_likelihoods
    from recast.contour import (
        Contours,
        exclusion_contour,
        export_contours,
        plot_brazil,
        plot_exclusion,
    )
    from recast.demo import run_demo
    from recast.errors import (
        ArchiveError,
        CacheError,
        CacheMiss,
        CombineError,
        ContourError,
        DownloadError,
        MappingError,
        RecastError,
        ScanError,
        UnsafeArchive,
        YieldsError,
    )
    from recast.fetching import fetch, likelihoods, load_likelihood, verify_cache
    from recast.patch import make_patchset
    from recast.scan import best_expected, scan
    from recast.store import cache_entries, clear_cache
    from recast.yields import read_yields
