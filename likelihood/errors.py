"""Exceptions of the statistics core.

Every error raised on purpose by :mod:`likelihood` derives from :class:`LikelihoodError`
and from the builtin that fits it, so callers can catch either.  Messages say what is
wrong, where (file and JSON path), which value, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "LikelihoodError",
    "InvalidWorkspace",
    "InvalidPatch",
    "InvalidSpecification",
    "NoPOIError",
    "FitFailure",
    "InvalidModifierSettings",
]


class LikelihoodError(Exception):
    """Base class of every error raised by :mod:`likelihood`."""


class InvalidSpecification(LikelihoodError, ValueError):
    """A JSON document (workspace, patch, patchset) is malformed or fails its schema."""


class InvalidWorkspace(InvalidSpecification):
    """A workspace fails schema or semantic validation."""


class InvalidPatch(InvalidSpecification):
    """A JSON patch is malformed or does not apply to its workspace."""


class NoPOIError(LikelihoodError, ValueError):
    """The model has no parameter of interest (e.g. a patch that adds no signal)."""


class FitFailure(LikelihoodError, RuntimeError):
    """A maximum-likelihood fit did not converge, even after the fallback strategy."""


class InvalidModifierSettings(LikelihoodError, ValueError):
    """``modifier_settings`` names an unknown modifier type or interpolation code, or is
    not a ``{type: {"interpcode": code}}`` mapping."""
