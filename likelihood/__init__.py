"""likelihood: the HistFactory statistics core of recastkit.

Compile a HistFactory JSON workspace (format 1.0.0) once into flat arrays, evaluate its
twice negative log-likelihood and gradient with numba kernels, fit it, and compute
asymptotic CLs (arXiv:1007.1727).  This package never imports :mod:`recast`.

Public names are imported lazily, so that ``import likelihood`` is cheap and numba is
only loaded when a kernel is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from likelihood._lazy import install_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "LikelihoodError": "likelihood.errors",
    "InvalidSpecification": "likelihood.errors",
    "InvalidWorkspace": "likelihood.errors",
    "InvalidPatch": "likelihood.errors",
    "NoPOIError": "likelihood.errors",
    "FitFailure": "likelihood.errors",
    # JSON documents
    "read_json": "likelihood.spec",
    "digest": "likelihood.spec",
    "apply_patch": "likelihood.spec",
    "get_measurement": "likelihood.spec",
    "validate_workspace": "likelihood.validate",
    "validate_patch": "likelihood.validate",
    "validate_patchset": "likelihood.validate",
    # model
    "compile": "likelihood.model",
    "Model": "likelihood.model",
    "Background": "likelihood.model",
    # fits and inference
    "fit": "likelihood.fit",
    "FitResult": "likelihood.fit",
    "hypotest": "likelihood.cls",
    "upper_limit": "likelihood.cls",
    "CLsResult": "likelihood.cls",
    "UpperLimitResult": "likelihood.cls",
    "discovery": "likelihood.discovery",
    "DiscoveryResult": "likelihood.discovery",
    "InvalidModifierSettings": "likelihood.errors",
    "observed_cls": "likelihood.theory",
    "ObservedCLs": "likelihood.theory",
    # toy-based CLs
    "hypotest_toys": "likelihood.toys",
    "upper_limit_toys": "likelihood.toys",
    "ToyCLsResult": "likelihood.toys",
    "low_count_bins": "likelihood.toys",
}

__all__ = install_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from likelihood.cls import CLsResult, UpperLimitResult, hypotest, upper_limit
    from likelihood.discovery import DiscoveryResult, discovery
    from likelihood.errors import (
        FitFailure,
        InvalidModifierSettings,
        InvalidPatch,
        InvalidSpecification,
        InvalidWorkspace,
        LikelihoodError,
        NoPOIError,
    )
    from likelihood.fit import FitResult, fit
    from likelihood.model import Background, Model, compile
    from likelihood.spec import apply_patch, digest, get_measurement, read_json
    from likelihood.theory import ObservedCLs, observed_cls
    from likelihood.toys import ToyCLsResult, hypotest_toys, low_count_bins, upper_limit_toys
    from likelihood.validate import validate_patch, validate_patchset, validate_workspace
