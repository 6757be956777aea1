"""Lazy public names for a package (used by ``likelihood`` and ``recast``).

A package lists ``{public name: defining module}``; :func:`install_exports` makes each
name resolve on first access (PEP 562), so importing the package stays cheap, and keeps
a public function from being shadowed by a submodule of the same name (importing the
submodule ``likelihood.fit`` binds it as the package attribute ``fit``).  The submodule
stays reachable through ``sys.modules`` and ``from likelihood.fit import ...``.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["install_exports"]


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_EXPORTS", ()):
            return  # the import system binding a submodule over a public name
        super().__setattr__(name, value)


def install_exports(package: str, exports: Mapping[str, str]) -> list[str]:
    """Make ``exports`` the lazily resolved public names of ``package``; return ``__all__``."""
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    module.__class__ = _Package
    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    return sorted(exports)
