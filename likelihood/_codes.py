"""Modifier types and interpolation codes: the one place where their names and numbers live.

Imported by :mod:`likelihood.validate` (what a valid workspace is), :mod:`likelihood.model`
(parsing, parameter order, ``modifier_settings``) and :mod:`likelihood._kernels` (the
integer codes the kernels dispatch on).  This module imports nothing but the standard
library, so the kernels module can use it without pulling in numpy or scipy.

The integer codes are compile-time constants of the numba kernels: numba's on-disk cache
is keyed on ``_kernels.py``, so after changing a number here touch ``_kernels.py`` (or
clear its ``__pycache__``) to recompile.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "MODIFIER_TYPES",
    "VECTOR_TYPES",
    "UNCONSTRAINED_TYPES",
    "SHARABLE_TYPES",
    "RF_LINEAR",
    "RF_CODE4",
    "RF_CODE1",
    "HS_CODE4P",
    "HS_CODE0",
    "HS_CODE2",
    "NORMSYS_CODES",
    "HISTOSYS_CODES",
    "INTERP_CODES",
    "MODEL_DEFAULT_CODES",
    "MODIFIER_DEFAULT_CODES",
]

#: The modifier types of HistFactory JSON 1.0.0, in pyhf 0.7.6's builder order (a
#: parameter belongs to the first of these types that declares it).
MODIFIER_TYPES: Final[tuple[str, ...]] = (
    "histosys",
    "lumi",
    "normfactor",
    "normsys",
    "shapefactor",
    "shapesys",
    "staterror",
)
#: Types whose parameter has one component per bin of the channel.
VECTOR_TYPES: Final = frozenset({"shapefactor", "shapesys", "staterror"})
#: Types without a constraint term (no auxdata, no sigmas).
UNCONSTRAINED_TYPES: Final = frozenset({"normfactor", "shapefactor"})
#: The only two types that may share one parameter (one unit-Gaussian nuisance parameter).
SHARABLE_TYPES: Final = frozenset({"normsys", "histosys"})

# ---- row factors (multiplicative, one value per sample in a channel): ``rf_kind`` ----
#: normfactor, lumi: ``f = theta``
RF_LINEAR: Final = 0
#: normsys code4: polynomial interpolation for |alpha| < 1, exponential extrapolation
RF_CODE4: Final = 1
#: normsys code1: piecewise exponential, ``hi^alpha`` / ``lo^-alpha``
RF_CODE1: Final = 2

# ---- histosys (additive, per bin): ``hs_kind`` ----
#: code4p: polynomial interpolation for |alpha| <= 1, linear extrapolation
HS_CODE4P: Final = 0
#: code0: piecewise linear
HS_CODE0: Final = 1
#: code2: quadratic interpolation for |alpha| <= 1, linear extrapolation (continuous)
HS_CODE2: Final = 2

#: pyhf's ``interpcode`` names accepted for each type (pyhf 0.7.6 asserts the same sets:
#: ``normsys`` in {code1, code4}, ``histosys`` in {code0, code2, code4p}).
NORMSYS_CODES: Final = MappingProxyType({"code1": RF_CODE1, "code4": RF_CODE4})
HISTOSYS_CODES: Final = MappingProxyType(
    {"code0": HS_CODE0, "code2": HS_CODE2, "code4p": HS_CODE4P}
)
INTERP_CODES: Final = MappingProxyType({"normsys": NORMSYS_CODES, "histosys": HISTOSYS_CODES})

#: ``modifier_settings=None``: pyhf ``Model``'s default settings
MODEL_DEFAULT_CODES: Final = MappingProxyType({"normsys": "code4", "histosys": "code4p"})
#: a type a settings dict does not name: the modifier's own default (pyhf's builders)
MODIFIER_DEFAULT_CODES: Final = MappingProxyType({"normsys": "code1", "histosys": "code0"})
