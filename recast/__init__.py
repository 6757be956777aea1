"""recast: the workflow side of recastkit.

Fetch published likelihoods from HEPData, turn recasting-tool yields into signal patches,
scan CLs over whole signal grids in parallel, and draw exclusion contours.  Every function
returns plain Python objects or pandas DataFrames.

Public names are imported lazily, so that ``import recast`` (and ``recastkit --help``)
stays fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

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
    # fetch
    "fetch": "recast.hepdata",
    "cache_entries": "recast.cache",
    "clear_cache": "recast.cache",
    "likelihoods": "recast.archive",
    "load_likelihood": "recast.archive",
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
    # bundled example
    "run_demo": "recast.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps public functions from being shadowed by the submodules of the same name.

    Importing a submodule binds it as an attribute of its package: ``recast.scan``
    would replace the public function of that name.  The submodule stays reachable
    through ``sys.modules`` and ``from recast.scan import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from recast.archive import Likelihood, likelihoods, load_likelihood
    from recast.cache import cache_entries, clear_cache
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
        CacheMiss,
        ContourError,
        DownloadError,
        MappingError,
        RecastError,
        ScanError,
        UnsafeArchive,
        YieldsError,
    )
    from recast.hepdata import fetch
    from recast.patch import make_patchset
    from recast.scan import best_expected, scan
    from recast.yields import read_yields
