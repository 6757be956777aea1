"""likelihood: the HistFactory statistics core of recastkit.

Compile a HistFactory JSON workspace (format 1.0.0) once into flat arrays, evaluate its
twice negative log-likelihood and gradient with numba kernels, fit it, and compute
asymptotic CLs (arXiv:1007.1727).  This package never imports :mod:`recast`.

Public names are imported lazily, so that ``import likelihood`` is cheap and numba is
only loaded when a kernel is needed.
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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'likelihood' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps public functions from being shadowed by the submodules of the same name.

    Importing a submodule binds it as an attribute of its package: ``likelihood.fit``
    would replace the public function of that name.  The submodule stays reachable
    through ``sys.modules`` and ``from likelihood.fit import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from likelihood.cls import CLsResult, UpperLimitResult, hypotest, upper_limit
    from likelihood.errors import (
        FitFailure,
        InvalidPatch,
        InvalidSpecification,
        InvalidWorkspace,
        LikelihoodError,
        NoPOIError,
    )
    from likelihood.fit import FitResult, fit
    from likelihood.model import Background, Model, compile
    from likelihood.spec import apply_patch, digest, get_measurement, read_json
    from likelihood.validate import validate_patch, validate_patchset, validate_workspace
