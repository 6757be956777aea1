"""Compile a HistFactory JSON workspace into flat arrays and evaluate it with numba kernels.

The JSON reaching this module has passed the validation boundary
(:mod:`likelihood.validate`, the only module that knows what a valid workspace, patch,
sample and modifier are); the parser here trusts it and checks nothing again.
:func:`compile` turns a workspace into a :class:`Model`: a :class:`CompiledModel` (a NamedTuple of float64 / int64 C-contiguous
arrays, the input of :mod:`likelihood._kernels`) plus the Python-side metadata (parameter
names, bounds, channel layout, observed data and auxdata).

The semantics are pyhf 0.7.6's default ``Model``: channels and samples sorted by name,
parameters ordered as pyhf orders them (grouped by the first modifier type that declares
them, in the order histosys, lumi, normfactor, normsys, shapefactor, shapesys, staterror;
within a group by first appearance, staterror by name), vector parameters named
``name[i]``, normsys ``code4`` and histosys ``code4p`` by default, staterror with the
combined relative uncertainty of the samples that carry it (bins with zero uncertainty are
fixed at 1, with width 1, as pyhf 0.7), shapesys with a Poisson constraint of
``tau = (nominal / uncertainty)^2`` (bins with zero nominal or uncertainty fixed).

:class:`Background` compiles a background-only workspace once and sets the signal of each
patch as data (:meth:`Background.with_patch`): a patch that the boundary's fast path
accepts (``add`` of samples, ``remove`` of whole channels:
:meth:`likelihood.validate.PatchTarget.plan`) is assembled from the background's rows,
summarised once, and the parsed signal rows only; any other patch, valid or not, takes
the reference path ``compile(apply_patch(...))``.  Both give identical models, and
identical errors.  :func:`_assemble` is the one assembly of both.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import operator
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import gammaln

from likelihood._codes import (
    INTERP_CODES,
    MODEL_DEFAULT_CODES,
    MODIFIER_DEFAULT_CODES,
    MODIFIER_TYPES,
    RF_LINEAR,
    UNCONSTRAINED_TYPES,
)
from likelihood.errors import InvalidModifierSettings
from likelihood.spec import apply_patch, get_measurement
from likelihood.validate import PatchPlan, PatchTarget, validate_workspace

__all__ = [
    "compile",
    "Model",
    "Background",
    "CompiledModel",
    "KernelData",
    "prune_compiled",
    "as_f8",
    "as_i8",
    "lgamma1",
    "poisson_saturated",
    "MODIFIER_TYPES",
]

log = logging.getLogger(__name__)

# MODIFIER_TYPES (re-exported here) is pyhf's builder order: a parameter belongs to the
# first of these types that declares it
_GROUP = {t: i for i, t in enumerate(MODIFIER_TYPES)}
_UNCONSTRAINED = tuple(sorted(UNCONSTRAINED_TYPES))


def as_f8(x: Any) -> np.ndarray:
    """Return ``x`` as a C-contiguous, writeable float64 array (one numba specialisation)."""
    a = np.ascontiguousarray(x, dtype=np.float64)
    if not a.flags.writeable:
        a = a.copy()
    return a


def lgamma1(x: np.ndarray) -> np.ndarray:
    """``lgamma(x + 1)`` with scipy's ``gammaln``, rounding exactly as pyhf's numpy backend.

    The Poisson constants are computed outside the kernels so that ``twice_nll`` equals
    pyhf's to the last bits even for auxdata of order 1e11 (tiny shapesys).
    """
    return as_f8(gammaln(np.asarray(x, dtype=np.float64) + 1.0))


def poisson_saturated(x: np.ndarray) -> np.ndarray:
    """``-2 log Poisson(a | a)`` for each ``a`` (0 where ``a == 0``), accurate for huge ``a``.

    With it the Poisson constraint term is evaluated as ``deviance(a, lam) + saturated(a)``
    (the kernels' ``stable`` mode): the parameter-dependent part has no cancellation, so
    fits stay exact for a shapesys with ``tau ~ 1e11`` (3L eRJR).
    """
    a = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(a)
    big = a > 1e5
    small = (a > 0) & ~big
    ab = a[big]
    out[big] = np.log(2.0 * np.pi * ab) + 1.0 / (6.0 * ab) - 1.0 / (180.0 * ab**3)
    asm = a[small]
    out[small] = -2.0 * (asm * np.log(asm) - asm - gammaln(asm + 1.0))
    return as_f8(out)


def as_i8(x: Any) -> np.ndarray:
    """Return ``x`` as a C-contiguous, writeable int64 array."""
    a = np.ascontiguousarray(x, dtype=np.int64)
    if not a.flags.writeable:
        a = a.copy()
    return a


class CompiledModel(NamedTuple):
    """Flat arrays of a compiled model: the ``cm`` argument of every kernel (read by name).

    Shapes: ``C`` cells (sample x bin), ``B`` main bins, ``R`` rows (sample in a channel),
    ``E_rf`` row-factor entries, ``E_cf`` cell-factor entries, ``E_hs`` histosys entries,
    ``K`` auxiliary data.
    """

    nom: np.ndarray  # (C,) nominal yield of each cell
    cell_bin: np.ndarray  # (C,) main bin of each cell
    cell_row: np.ndarray  # (C,) row of each cell (cells of a row are contiguous)
    n_bins: int
    n_rows: int
    rf_row: np.ndarray  # (E_rf,)
    rf_par: np.ndarray  # (E_rf,)
    rf_kind: np.ndarray  # (E_rf,) _codes.RF_*: linear, normsys code4, normsys code1
    rf_hi: np.ndarray  # (E_rf,)
    rf_lo: np.ndarray  # (E_rf,)
    rf_coef: np.ndarray  # (E_rf, 6) code4 polynomial coefficients
    cf_cell: np.ndarray  # (E_cf,)
    cf_par: np.ndarray  # (E_cf,)
    hs_cell: np.ndarray  # (E_hs,)
    hs_par: np.ndarray  # (E_hs,)
    hs_up: np.ndarray  # (E_hs,) hi - nom
    hs_dn: np.ndarray  # (E_hs,) nom - lo
    hs_kind: np.ndarray  # (E_hs,) _codes.HS_*: code4p, code0, code2
    aux_par: np.ndarray  # (K,) parameter constrained by each auxiliary datum
    aux_kind: np.ndarray  # (K,) 0 Gaussian, 1 Poisson
    aux_scale: np.ndarray  # (K,) Gaussian sigma, or Poisson factor tau


def prune_compiled(cm: CompiledModel) -> CompiledModel:
    """A :class:`CompiledModel` without histosys entries that are zero (``up == dn == 0``)
    and normsys entries that are one (``hi == lo == 1``): the same rates and derivatives
    for every interpolation code, fewer entries for the kernels to walk."""
    hs = ~((cm.hs_up == 0.0) & (cm.hs_dn == 0.0))
    rf = ~((cm.rf_kind != 0) & (cm.rf_hi == 1.0) & (cm.rf_lo == 1.0))
    if hs.all() and rf.all():
        return cm
    out = {}
    for name, value in cm._asdict().items():
        if name.startswith("hs_") and isinstance(value, np.ndarray) and value.shape[:1] == hs.shape:
            value = np.ascontiguousarray(value[hs])
        elif (
            name.startswith("rf_") and isinstance(value, np.ndarray) and value.shape[:1] == rf.shape
        ):
            value = np.ascontiguousarray(value[rf])
        out[name] = value
    return CompiledModel(**out)


class KernelData(NamedTuple):
    """The data side of a kernel call: what the likelihood is evaluated on.

    Built by :meth:`Model.kernel_data`; the Poisson constants are computed once here, not
    in every kernel call.  ``B`` main bins, ``K`` auxiliary data.
    """

    data: np.ndarray  # (B,) main-bin counts
    data_lg: np.ndarray  # (B,) lgamma(data + 1)
    auxdata: np.ndarray  # (K,)
    aux_lg: np.ndarray  # (K,) lgamma(auxdata + 1)
    aux_sat: np.ndarray  # (K,) -2 log Poisson(a | a), see poisson_saturated
    stable: bool  # Poisson constraints as deviance + saturated constant


# ---------------------------------------------------------------------------------------
# code4 coefficients (pyhf interpolators.code4 with alpha0 = 1)
# ---------------------------------------------------------------------------------------
_A_INV = np.array(
    [
        [15.0 / 16, -15.0 / 16, -7.0 / 16, -7.0 / 16, 1.0 / 16, -1.0 / 16],
        [3.0 / 2, 3.0 / 2, -9.0 / 16, 9.0 / 16, 1.0 / 16, 1.0 / 16],
        [-5.0 / 8, 5.0 / 8, 5.0 / 8, 5.0 / 8, -1.0 / 8, 1.0 / 8],
        [3.0 / -2, 3.0 / -2, -7.0 / -8, 7.0 / -8, -1.0 / 8, -1.0 / 8],
        [3.0 / 16, -3.0 / 16, -3.0 / 16, -3.0 / 16, 1.0 / 16, -1.0 / 16],
        [1.0 / 2, 1.0 / 2, -5.0 / 16, 5.0 / 16, 1.0 / 16, 1.0 / 16],
    ]
)


def _code4_conditions(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The (k, 6) right-hand sides of pyhf's code4 for factors ``hi``, ``lo`` (k,):
    element by element, so a batch gives each factor's row exactly."""
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    # absurd but finite factors (1e308) overflow to inf coefficients: the fits then
    # report the point as failed, without a numpy warning
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lhi = np.where(hi > 0, np.log(np.where(hi > 0, hi, 1.0)), np.nan)
        llo = np.where(lo > 0, np.log(np.where(lo > 0, lo, 1.0)), np.nan)
        return np.stack(
            [hi - 1.0, lo - 1.0, lhi * hi, -llo * lo, lhi * lhi * hi, llo * llo * lo], axis=1
        )


def _code4_solve(b: np.ndarray) -> np.ndarray:
    """Coefficients of right-hand sides ``b`` (k, 6).  A matrix product's last bits may
    depend on its number of rows: a row's coefficients are always solved with its own
    row's entries (one product per row of the model)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.ascontiguousarray(b @ _A_INV.T)


def _code4_coefficients(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Polynomial coefficients of pyhf's code4, shape (k, 6), for factors ``hi``, ``lo`` (k,)."""
    return _code4_solve(_code4_conditions(hi, lo))


# ---------------------------------------------------------------------------------------
# rows: one sample in one channel, parsed once
# ---------------------------------------------------------------------------------------
_ROW_IDS = itertools.count()


class _Row:
    """A sample of a channel, parsed from (validated) JSON into arrays.

    The JSON has passed the validation boundary (:mod:`likelihood.validate`): types,
    bin counts, finite numbers and the other rules are not checked again here.
    """

    __slots__ = (
        "channel",
        "sample",
        "nom",
        "nbins",
        "mods",
        "rf_names",
        "rf_is_normsys",
        "rf_hi",
        "rf_lo",
        "rf_coef",
        "hs_names",
        "hs_up",
        "hs_dn",
        "cf",
        "where",
        "uid",
        "base",
        "arrays",
        "special",
        "pairs",
    )

    def __init__(self, channel: str, sample: Mapping[str, Any], nbins: int, where: str) -> None:
        self.channel = channel
        self.where = where
        self.uid = next(_ROW_IDS)
        self.base = False  # one of a Background's own rows (cacheable)
        self.arrays: Any = None  # (cache, per-row index arrays) of _row_arrays
        self.sample = sample["name"]
        nom = np.array(sample["data"], dtype=np.float64)
        self.nom = nom
        self.nbins = nbins
        # pyhf walks the modifiers of a sample sorted by (name, type); a duplicate
        # (name, type) in one sample keeps the last one, as pyhf's dictionary does
        uniq: dict[tuple[str, str], Any] = {}
        for m in sample["modifiers"]:
            uniq[(m["name"], m["type"])] = m["data"]
        keys = sorted(uniq)
        self.mods: list[tuple[str, str, Any]] = []
        rf_names: list[str] = []
        rf_ns: list[bool] = []
        rf_hi: list[float] = []
        rf_lo: list[float] = []
        hs_names: list[str] = []
        hs_hi: list[Any] = []
        hs_lo: list[Any] = []
        self.cf: list[tuple[str, str]] = []
        for mname, mtype in keys:
            data = uniq[(mname, mtype)]
            if mtype == "normsys":
                payload: Any = (float(data["hi"]), float(data["lo"]))
                rf_names.append(mname)
                rf_ns.append(True)
                rf_hi.append(payload[0])
                rf_lo.append(payload[1])
            elif mtype == "histosys":
                payload = None
                hs_names.append(mname)
                hs_hi.append(data["hi_data"])
                hs_lo.append(data["lo_data"])
            elif mtype in ("normfactor", "lumi"):
                payload = None
                rf_names.append(mname)
                rf_ns.append(False)
                rf_hi.append(1.0)
                rf_lo.append(1.0)
            else:
                payload = np.array(data, dtype=np.float64) if data is not None else None
                self.cf.append((mname, mtype))
            self.mods.append((mname, mtype, payload))
        # the staterror, shapesys and shapefactor modifiers (name, type, data array)
        self.special = [m for m in self.mods if m[1] in _CF_TYPES]
        # (name, type) -> index in mods
        self.pairs = {(m, t): k for k, (m, t, _) in enumerate(self.mods)}
        self.rf_names = rf_names
        self.rf_is_normsys = np.array(rf_ns, dtype=bool)
        self.rf_hi = np.array(rf_hi, dtype=np.float64)
        self.rf_lo = np.array(rf_lo, dtype=np.float64)
        self.rf_coef = _code4_coefficients(self.rf_hi, self.rf_lo)
        self.rf_coef[~self.rf_is_normsys] = 0.0
        self.hs_names = hs_names
        if hs_names:
            hi = np.array(hs_hi, dtype=np.float64).reshape(-1)
            lo = np.array(hs_lo, dtype=np.float64).reshape(-1)
            tiled = np.tile(nom, len(hs_names))
            self.hs_up = hi - tiled
            self.hs_dn = tiled - lo
        else:
            self.hs_up = np.zeros(0)
            self.hs_dn = np.zeros(0)


_CF_TYPES = frozenset({"staterror", "shapesys", "shapefactor"})
_RF_TYPES = frozenset({"normsys", "normfactor", "lumi"})
_GET_HI_LO = operator.itemgetter("hi", "lo")
_GET_HI_DATA = operator.itemgetter("hi_data")
_GET_LO_DATA = operator.itemgetter("lo_data")


def _checked_rows(
    channels: Sequence[str], nbins: Sequence[int], added: Sequence[Any]
) -> list[_Row]:
    """The rows of samples that the validation boundary checked and split
    (:class:`likelihood.validate.AddedSample`: modifier names, types and data in JSON
    order, no duplicate (name, type)), equal to ``_Row(channel, sample, nbins, where)``
    of each: the modifiers walked by comprehensions, the numbers of all the samples
    converted at once."""
    rows: list[_Row] = []
    noms: list[Any] = []
    ns_data: list[Any] = []  # normsys data, row after row, in each row's order
    hs_data: list[Any] = []  # histosys data, likewise
    ns_at: list[int] = []  # index of each normsys entry among all rows' rf entries
    rf_n = 0
    tile: list[int] = []  # for each histosys entry, its cell among all rows' cells
    off = 0
    for a, cname, nb in zip(added, channels, nbins, strict=True):
        names, types, datas = a.names, a.types, a.datas
        n = len(names)
        # by (name, type): two stable sorts with C-level keys
        order = sorted(range(n), key=types.__getitem__)
        order.sort(key=names.__getitem__)
        if n > 1:
            permute = operator.itemgetter(*order)
            sn, st, sd = permute(names), permute(types), permute(datas)
        else:
            sn, st, sd = names, types, datas
        r = _Row.__new__(_Row)
        r.channel = cname
        r.where = f"operation {a.op}"
        r.uid = next(_ROW_IDS)
        r.base = False
        r.arrays = None
        r.sample = a.sample["name"]
        r.nbins = nb
        rf_q = [q for q, t in enumerate(st) if t in _RF_TYPES]
        ns_q = [q for q in rf_q if st[q] == "normsys"]
        hs_q = [q for q, t in enumerate(st) if t == "histosys"]
        cf_q = [q for q, t in enumerate(st) if t in _CF_TYPES]
        r.rf_names = [sn[q] for q in rf_q]
        r.hs_names = [sn[q] for q in hs_q]
        r.cf = [(sn[q], st[q]) for q in cf_q]
        payloads: list[Any] = [None] * n
        for q in cf_q:
            if sd[q] is not None:
                payloads[q] = np.array(sd[q], dtype=np.float64)
        r.mods = list(zip(sn, st, payloads, strict=True))
        r.special = [r.mods[q] for q in cf_q]
        r.pairs = dict(zip(zip(sn, st, strict=True), range(n), strict=True))
        noms.append(a.sample["data"])
        ns_data.extend([sd[q] for q in ns_q])
        ns_at.extend([rf_n + j for j, q in enumerate(rf_q) if st[q] == "normsys"])
        hs_data.extend([sd[q] for q in hs_q])
        tile.extend(list(range(off, off + nb)) * len(hs_q))
        rows.append(r)
        rf_n += len(rf_q)
        off += nb
    f8 = np.float64
    nom_all = np.array(list(itertools.chain.from_iterable(noms)), dtype=f8)
    is_ns = np.zeros(rf_n, dtype=bool)
    is_ns[ns_at] = True
    rf_hi = np.ones(rf_n, dtype=f8)
    rf_lo = np.ones(rf_n, dtype=f8)
    if ns_data:
        hilo = np.array(list(map(_GET_HI_LO, ns_data)), dtype=f8)
        rf_hi[ns_at] = hilo[:, 0]
        rf_lo[ns_at] = hilo[:, 1]
    if hs_data:
        tiled = nom_all[np.array(tile, dtype=np.int64)]
        hi = np.array(list(itertools.chain.from_iterable(map(_GET_HI_DATA, hs_data))), dtype=f8)
        lo = np.array(list(itertools.chain.from_iterable(map(_GET_LO_DATA, hs_data))), dtype=f8)
        hs_up, hs_dn = hi - tiled, tiled - lo
    else:
        hs_up = hs_dn = np.zeros(0)
    cond = _code4_conditions(rf_hi, rf_lo)
    c = e = h = 0
    for r in rows:
        nb, nrf, nhs = r.nbins, len(r.rf_names), len(r.hs_names) * r.nbins
        r.nom = nom_all[c : c + nb]
        r.rf_is_normsys = is_ns[e : e + nrf]
        r.rf_hi = rf_hi[e : e + nrf]
        r.rf_lo = rf_lo[e : e + nrf]
        r.rf_coef = _code4_solve(cond[e : e + nrf])  # row by row, as _Row
        r.rf_coef[~r.rf_is_normsys] = 0.0
        r.hs_up = hs_up[h : h + nhs]
        r.hs_dn = hs_dn[h : h + nhs]
        c, e, h = c + nb, e + nrf, h + nhs
    return rows


class _Channels(NamedTuple):
    names: list[str]  # in JSON order
    nbins: dict[str, int]
    rows: list[list[_Row]]  # per JSON channel
    observations: dict[str, np.ndarray]


def _parse_channels(spec: Mapping[str, Any]) -> _Channels:
    """Rows and observations of a (validated) workspace."""
    names: list[str] = []
    nbins: dict[str, int] = {}
    rows: list[list[_Row]] = []
    for i, ch in enumerate(spec["channels"]):
        cname = ch["name"]
        samples = ch["samples"]
        nb = len(samples[0]["data"])
        names.append(cname)
        nbins[cname] = nb
        rows.append(
            [_Row(cname, s, nb, f"/channels/{i}/samples/{j}") for j, s in enumerate(samples)]
        )
    observations: dict[str, np.ndarray] = {}
    for o in spec["observations"]:
        if o["name"] in nbins and o["name"] not in observations:
            observations[o["name"]] = np.array(o["data"], dtype=np.float64)
    return _Channels(names, nbins, rows, observations)


# ---------------------------------------------------------------------------------------
# assembly of rows into a Model
# ---------------------------------------------------------------------------------------
class _ParamSet:
    __slots__ = (
        "name",
        "kind",
        "n",
        "inits",
        "bounds",
        "fixed",
        "auxdata",
        "sigmas",
        "factors",
        "constraint",
        "start",
    )

    def __init__(self, name: str, kind: str, n: int) -> None:
        self.name = name
        self.kind = kind
        self.n = n
        self.inits: list[float] | None = None
        self.bounds: list[list[float]] | None = None
        self.fixed: list[bool] = [False] * n
        self.auxdata: list[float] | None = None
        self.sigmas: list[float] | None = None
        self.factors: list[float] | None = None
        self.constraint = (
            None if kind in _UNCONSTRAINED else ("poisson" if kind == "shapesys" else "normal")
        )
        self.start = 0


def _defaults(ps: _ParamSet) -> None:
    n, kind = ps.n, ps.kind
    if kind == "normfactor" or kind == "shapefactor":
        ps.inits, ps.bounds = [1.0] * n, [[0.0, 10.0]] * n
    elif kind in ("normsys", "histosys"):
        ps.inits, ps.bounds, ps.auxdata = [0.0], [[-5.0, 5.0]], [0.0]
        ps.sigmas = [1.0]
    elif kind == "staterror":
        ps.inits, ps.bounds, ps.auxdata = [1.0] * n, [[1e-10, 10.0]] * n, [1.0] * n
    elif kind == "shapesys":
        ps.inits, ps.bounds = [1.0] * n, [[1e-10, 10.0]] * n
        ps.auxdata = list(ps.factors or [])
    # lumi: everything comes from the measurement


def _apply_config(ps: _ParamSet, cfg: Mapping[str, Any]) -> None:
    """Measurement parameter settings (inits, bounds, fixed, auxdata, sigmas), as pyhf.

    ``cfg`` has passed :func:`likelihood.validate_workspace` (one entry per component,
    bounds ordered, sigmas > 0, only the keys this parameter type takes).
    """
    if "inits" in cfg:
        ps.inits = [float(x) for x in cfg["inits"]]
    if "bounds" in cfg:
        ps.bounds = [[float(lo), float(hi)] for lo, hi in cfg["bounds"]]
    if "fixed" in cfg:
        f = cfg["fixed"]
        ps.fixed = [bool(x) for x in f] if isinstance(f, list) else [bool(f)] * ps.n
    for key in ("auxdata", "sigmas"):
        if key in cfg and ps.constraint is not None:
            setattr(ps, key, [float(x) for x in cfg[key]])


class _Block(NamedTuple):
    """One parameter of a model, ready to be laid out (after defaults and settings)."""

    kind: str
    n: int
    names: list[str]
    inits: np.ndarray  # (n,)
    bounds: np.ndarray  # (n, 2)
    fixed: np.ndarray  # (n,) bool
    constraint: str | None  # None, "normal", "poisson"
    auxdata: np.ndarray  # (n,) or (0,) without constraint
    scale: np.ndarray  # Gaussian sigmas, or Poisson factors tau; (n,) or (0,)
    width: np.ndarray  # (n,)
    aux_kind: np.ndarray  # (n,) or (0,): 0 Gaussian, 1 Poisson
    local: np.ndarray  # arange(n) if constrained, else (0,)
    # the same, packed as float64 columns (exact) for one concatenation per model:
    par_pack: np.ndarray  # (n, 5): inits, bounds low, bounds high, fixed, width
    aux_pack: np.ndarray  # (n or 0, 4): local, aux_kind, scale, auxdata


class _Base(NamedTuple):
    """What the rows of a background contribute, computed once (:class:`Background`)."""

    rows: list[_Row]  # sorted by (channel, sample)
    firsts: list[dict[str, tuple[str, str, int]]]  # per type: name -> first (channel, sample, k)
    staterror: dict[str, list[tuple[_Row, np.ndarray]]]  # name -> carriers, sorted
    staterror_keys: dict[str, tuple[Any, ...]]  # name -> its block key in _assemble
    first_keys: list[tuple[str, str, int]]  # the keys of firsts, sorted
    first_pairs: list[tuple[str, str]]  # their (name, type), in that order
    later: dict[int, frozenset[tuple[str, str]]]  # i -> frozenset(first_pairs[i:]), cache
    keys: list[tuple[str, str]]  # (channel, sample) of rows


class _Cache:
    """Caches of one assembly context: a name table for the per-row arrays, and the
    parameter blocks that depend on background rows only."""

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}
        self.blocks: dict[tuple[Any, ...], _Block] = {}
        # id of a _Base -> (base, fields, bounds, keys) of _splice_fields
        self.base_fields: dict[int, Any] = {}

    def slot(self, name: str) -> int:
        s = self.slots.get(name)
        if s is None:
            s = self.slots[name] = len(self.slots)
        return s


def _row_arrays(r: _Row, cache: _Cache) -> tuple[np.ndarray, ...]:
    """Per-row index arrays (against ``cache``'s name table), computed once per row."""
    arr = r.arrays
    if arr is not None and arr[0] is cache:
        return arr[1]  # type: ignore[no-any-return]
    nb = r.nbins
    local = np.arange(nb, dtype=np.int64)
    cf_names = [m for m, _ in r.cf]
    new = {*r.rf_names, *r.hs_names, *cf_names}.difference(cache.slots)
    for m in sorted(new):
        cache.slot(m)
    get = cache.slots.__getitem__
    rf_slot = np.fromiter(map(get, r.rf_names), dtype=np.int64, count=len(r.rf_names))
    hs_slot = np.fromiter(map(get, r.hs_names), dtype=np.int64, count=len(r.hs_names))
    cf_slot = np.fromiter(map(get, cf_names), dtype=np.int64, count=len(cf_names))
    out = (
        local,
        rf_slot,
        hs_slot,
        np.arange(len(r.hs_names) * nb, dtype=np.int64) % max(nb, 1),
        cf_slot,
        np.arange(len(r.cf) * nb, dtype=np.int64) % max(nb, 1),
    )
    r.arrays = (cache, out)
    return out


def _firsts(rows: Sequence[_Row]) -> list[dict[str, tuple[str, str, int]]]:
    """Per modifier type, the first (channel, sample, k) of each name in sorted rows."""
    firsts: list[dict[str, tuple[str, str, int]]] = [{} for _ in MODIFIER_TYPES]
    for r in rows:
        for k, (mname, mtype, _) in enumerate(r.mods):
            d = firsts[_GROUP[mtype]]
            if mname not in d:
                d[mname] = (r.channel, r.sample, k)
    return firsts


def _staterrors(rows: Sequence[_Row]) -> dict[str, list[tuple[_Row, np.ndarray]]]:
    out: dict[str, list[tuple[_Row, np.ndarray]]] = {}
    for r in rows:
        for mname, mtype, payload in r.special:
            if mtype == "staterror":
                out.setdefault(mname, []).append((r, payload))
    return out


def _base(rows: Sequence[_Row]) -> _Base:
    rows = sorted(rows, key=lambda r: (r.channel, r.sample))
    for r in rows:
        r.base = True
    staterr = _staterrors(rows)
    keys = {k: ("staterror", k, *(r.uid for r, _ in v)) for k, v in staterr.items()}
    firsts = _firsts(rows)
    items = sorted(
        (
            (key, (name, mtype))
            for mtype, d in zip(MODIFIER_TYPES, firsts, strict=True)
            for name, key in d.items()
        ),
    )
    return _Base(
        rows,
        firsts,
        staterr,
        keys,
        [k for k, _ in items],
        [p for _, p in items],
        {},
        [(r.channel, r.sample) for r in rows],
    )


def _block(ps: _ParamSet, user: Mapping[str, Mapping[str, Any]]) -> _Block:
    _defaults(ps)
    if ps.name in user:
        _apply_config(ps, user[ps.name])
    n = ps.n
    if ps.kind in ("normfactor", "lumi", "normsys", "histosys"):
        names = [ps.name]
    else:
        names = [f"{ps.name}[{i}]" for i in range(n)]
    assert ps.inits is not None and ps.bounds is not None
    f8 = np.float64
    if ps.constraint == "normal":
        assert ps.auxdata is not None and ps.sigmas is not None
        aux, scale, width = (
            np.array(ps.auxdata, f8),
            np.array(ps.sigmas, f8),
            np.array(ps.sigmas, f8),
        )
    elif ps.constraint == "poisson":
        assert ps.factors is not None and ps.auxdata is not None
        aux, scale = np.array(ps.auxdata, f8), np.array(ps.factors, f8)
        width = 1.0 / np.sqrt(np.asarray(ps.factors, f8))
    else:
        aux, scale, width = np.zeros(0), np.zeros(0), np.ones(n)
    constrained = ps.constraint is not None
    inits = np.array(ps.inits, f8)
    bounds = np.array(ps.bounds, f8).reshape(n, 2)
    fixed = np.array(ps.fixed, bool)
    aux_kind = np.full(n if constrained else 0, 0 if ps.constraint == "normal" else 1, np.int64)
    local = np.arange(n if constrained else 0, dtype=np.int64)
    return _Block(
        ps.kind,
        n,
        names,
        inits,
        bounds,
        fixed,
        ps.constraint,
        aux,
        scale,
        width,
        aux_kind,
        local,
        _pack(n, inits, bounds[:, 0], bounds[:, 1], fixed, width),
        _pack(len(local), local, aux_kind, scale, aux),
    )


def _pack(n: int, *columns: np.ndarray) -> np.ndarray:
    out = np.empty((n, len(columns)))
    for j, c in enumerate(columns):
        out[:, j] = c
    return out


def _staterror_set(mname: str, carriers: Sequence[tuple[_Row, np.ndarray]]) -> _ParamSet:
    """A staterror parameter: the combined relative uncertainty of the samples that carry
    it, per bin (pyhf 0.7); bins with zero uncertainty are fixed at 1, width 1.

    The samples carry it in one channel (the validation boundary refuses others), so its
    components are the bins of that channel.
    """
    nb = carriers[0][0].nbins
    noms = np.array([r.nom for r, _ in carriers], dtype=np.float64).reshape(-1, nb)
    uncs = np.array([u for _, u in carriers], dtype=np.float64).reshape(-1, nb)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd (1e308) inputs: inf, no warning
        # sums carrier after carrier, in carrier order (accumulate is sequential)
        nomsall = np.add.accumulate(noms, axis=0)[-1]
        pos = nomsall > 0
        safe = np.where(pos, nomsall, 1.0)
        rel2 = np.add.accumulate(np.where(pos, (uncs / safe) ** 2, 0.0), axis=0)[-1]
    sig = np.sqrt(rel2).tolist()
    ps = _ParamSet(mname, "staterror", nb)
    ps.fixed = [s == 0 for s in sig]
    ps.sigmas = [1.0 if s == 0 else s for s in sig]
    return ps


def _shapesys_set(mname: str, r: _Row, payload: np.ndarray) -> _ParamSet:
    """A shapesys parameter: Poisson constraint with ``tau = (nominal / uncertainty)^2``
    per bin; bins with zero nominal or uncertainty are fixed."""
    ps = _ParamSet(mname, "shapesys", r.nbins)
    valid = (r.nom > 0) & (payload > 0)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        fac = np.where(valid, r.nom**2 / np.where(valid, payload, 1.0) ** 2, 1.0)
    ps.factors = [float(x) for x in fac]
    ps.fixed = [not bool(v) for v in valid]
    return ps


# the per-row arrays that _assemble concatenates, and what each is counted in:
# cells, row-factor entries, histosys modifiers / entries, cell-factor modifiers /
# entries, rows
_FIELDS: dict[str, tuple[str, Any]] = {
    "nom": ("cell", np.float64),
    "local": ("cell", np.int64),
    "rf_slot": ("rf", np.int64),
    "rf_ns": ("rf", bool),
    "rf_hi": ("rf", np.float64),
    "rf_lo": ("rf", np.float64),
    "rf_coef": ("rf", np.float64),
    "hs_slot": ("hsm", np.int64),
    "hs_local": ("hse", np.int64),
    "hs_up": ("hse", np.float64),
    "hs_dn": ("hse", np.float64),
    "cf_slot": ("cfm", np.int64),
    "cf_local": ("cfe", np.int64),
    "nb": ("row", np.int64),
    "nrf": ("row", np.int64),
    "nhs": ("row", np.int64),
    "ncf": ("row", np.int64),
    "off": ("row", np.int64),
}


def _row_fields(r: _Row, cache: _Cache, offset: Mapping[str, int]) -> dict[str, Any]:
    a = _row_arrays(r, cache)
    return {
        "nom": r.nom,
        "local": a[0],
        "rf_slot": a[1],
        "rf_ns": r.rf_is_normsys,
        "rf_hi": r.rf_hi,
        "rf_lo": r.rf_lo,
        "rf_coef": r.rf_coef,
        "hs_slot": a[2],
        "hs_local": a[3],
        "hs_up": r.hs_up,
        "hs_dn": r.hs_dn,
        "cf_slot": a[4],
        "cf_local": a[5],
        "nb": np.array([r.nbins], dtype=np.int64),
        "nrf": np.array([len(r.rf_names)], dtype=np.int64),
        "nhs": np.array([len(r.hs_names)], dtype=np.int64),
        "ncf": np.array([len(r.cf)], dtype=np.int64),
        "off": np.array([offset[r.channel]], dtype=np.int64),
    }


def _concat_fields(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    out = {}
    for key, (_, dtype) in _FIELDS.items():
        parts = [r[key] for r in rows]
        if parts:
            out[key] = np.ascontiguousarray(np.concatenate(parts), dtype=dtype)
        else:
            out[key] = np.zeros((0, 6) if key == "rf_coef" else 0, dtype=dtype)
    return out


def _unit_bounds(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Start of each row's entries, per unit (length n_rows + 1)."""
    nb, nrf, nhs, ncf = f["nb"], f["nrf"], f["nhs"], f["ncf"]
    counts = {
        "cell": nb,
        "rf": nrf,
        "hsm": nhs,
        "hse": nhs * nb,
        "cfm": ncf,
        "cfe": ncf * nb,
        "row": np.ones_like(nb),
    }
    return {u: np.concatenate([[0], np.cumsum(c)]).astype(np.int64) for u, c in counts.items()}


def _splice_fields(
    base: _Base, extra: Sequence[_Row], cache: _Cache, offset: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """The fields of ``base.rows`` plus ``extra`` in (channel, sample) order: the
    background's concatenated fields (computed once) with the extra rows spliced in."""
    flat = cache.base_fields.get(id(base))
    if flat is None or flat[0] is not base:
        fields = _concat_fields([_row_fields(r, cache, offset) for r in base.rows])
        keys = [(r.channel, r.sample) for r in base.rows]
        if len(cache.base_fields) >= 16:
            cache.base_fields.pop(next(iter(cache.base_fields)))
        flat = cache.base_fields[id(base)] = (base, fields, _unit_bounds(fields), keys)
    _, fields, bounds, keys = flat
    if not extra:
        return fields
    inserts = [
        (bisect.bisect_left(keys, (r.channel, r.sample)), _row_fields(r, cache, offset))
        for r in extra
    ]
    out = {}
    for key, (unit, dtype) in _FIELDS.items():
        whole, starts = fields[key], bounds[unit]
        pieces = []
        last = 0
        for pos, rf in inserts:
            cut = int(starts[pos])
            pieces.append(whole[last:cut])
            pieces.append(rf[key])
            last = cut
        pieces.append(whole[last:])
        out[key] = np.ascontiguousarray(np.concatenate(pieces), dtype=dtype)
    return out


def _assemble(
    channels: Sequence[str],
    nbins: Mapping[str, int],
    observations: Mapping[str, np.ndarray],
    rows: Sequence[_Row],
    measurement: Mapping[str, Any],
    settings: Mapping[str, int],
    source: str,
    *,
    cache: _Cache | None = None,
    base: _Base | None = None,
) -> Model:
    """Build a :class:`Model` from parsed rows: the one code path of compile and with_patch.

    ``rows`` are the rows of the model; with ``base`` (the background's rows, all kept,
    summarised once) ``rows`` are only the rows added to it (a signal patch), and the
    background's part is not recomputed.  ``cache`` keeps per-row arrays and the
    parameter blocks that depend on background rows only; the result does not depend on
    what is cached.
    """
    cache = cache if cache is not None else _Cache()
    chans = tuple(sorted(channels))
    offset: dict[str, int] = {}
    o = 0
    for c in chans:
        offset[c] = o
        o += nbins[c]
    n_bins = o
    extra = sorted(rows, key=lambda r: (r.channel, r.sample))
    if base is None:
        all_rows = extra
        firsts = _firsts(all_rows)
        staterr = _staterrors(all_rows)
        touched: dict[str, list[tuple[_Row, np.ndarray]]] = {}
    else:
        # the extra rows inserted where they sort (last first: the positions stay valid)
        all_rows = list(base.rows)
        for r in reversed(extra):
            all_rows.insert(bisect.bisect_left(base.keys, (r.channel, r.sample)), r)
        # a (name, type) of an added row comes first if no background row has it before
        # (the pairs of base.first_pairs after the row's position) and no added row
        # before it has it (done): set operations, a loop over those pairs only
        firsts = [dict(d) for d in base.firsts]
        known = base.later.get(0)
        if known is None:
            known = base.later[0] = frozenset(base.first_pairs)
        done: set[tuple[str, str]] = set()
        for r in extra:
            pre = (r.channel, r.sample)  # the row's keys (pre, k) sort as pre: rows differ
            i = bisect.bisect_left(base.first_keys, pre)
            later = base.later.get(i)
            if later is None:
                later = base.later[i] = frozenset(base.first_pairs[i:])
            pairs = r.pairs.keys()
            change = ((pairs - known) | (pairs & later)) - done
            for pair in change:
                firsts[_GROUP[pair[1]]][pair[0]] = (*pre, r.pairs[pair])
            done |= change
        staterr = dict(base.staterror)
        touched = _staterrors(extra)
        for name, lst in touched.items():
            staterr[name] = list(staterr.get(name, ()))
            merged = staterr[name]
            merged.extend(lst)
            merged.sort(key=lambda t: (t[0].channel, t[0].sample))

    # ---- parameters, in pyhf's order: by type, within a type by first appearance ------
    config = measurement.get("config", {}) if isinstance(measurement, Mapping) else {}
    mname_ = measurement.get("name") if isinstance(measurement, Mapping) else None
    poi = config.get("poi") if isinstance(config, Mapping) else None
    user = {p["name"]: p for p in config.get("parameters", [])}
    shapesys_rows: dict[str, tuple[_Row, np.ndarray]] = {}
    if firsts[_GROUP["shapesys"]]:
        for r in all_rows:
            for mname, mtype, payload in r.special:
                if mtype == "shapesys":
                    shapesys_rows[mname] = (r, payload)
    order: dict[str, tuple[str, tuple[Any, ...]]] = {}  # name -> (kind, block key)
    for mtype, d in zip(MODIFIER_TYPES, firsts, strict=True):
        names = sorted(d) if mtype == "staterror" else sorted(d, key=d.__getitem__)
        for mname in names:
            if mname in order:
                continue
            if mtype == "staterror" and base is not None and mname not in touched:
                order[mname] = (mtype, base.staterror_keys[mname])  # background rows only
                continue
            if mtype == "staterror":
                carriers = staterr[mname]
                dep: tuple[Any, ...] = tuple(r.uid for r, _ in carriers)
                cacheable = all(r.base for r, _ in carriers)
            elif mtype == "shapesys":
                r = shapesys_rows[mname][0]
                dep, cacheable = (r.uid,), r.base
            elif mtype == "shapefactor":
                ch, sm, _ = d[mname]
                first = next(r for r in all_rows if r.channel == ch and r.sample == sm)
                dep, cacheable = (first.nbins,), True
            else:
                dep, cacheable = (), True
            order[mname] = (mtype, (mtype, mname, *dep) if cacheable else ())
    blocks: dict[str, _Block] = {}
    for mname, (mtype, key) in order.items():
        blk = cache.blocks.get(key) if key else None
        if blk is None:
            if mtype == "staterror":
                ps = _staterror_set(mname, staterr[mname])
            elif mtype == "shapesys":
                ps = _shapesys_set(mname, *shapesys_rows[mname])
            elif mtype == "shapefactor":
                ps = _ParamSet(mname, mtype, int(key[2]))  # one per bin of its first row
            else:
                ps = _ParamSet(mname, mtype, 1)
            blk = _block(ps, user)
            if key:
                cache.blocks[key] = blk
        blocks[mname] = blk

    blks = list(blocks.values())
    sizes = np.array([b.n for b in blks], dtype=np.int64)
    par0 = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if blks else sizes
    starts = dict(zip(blocks, par0.tolist(), strict=True))
    names_l = [n for b in blks for n in b.names]
    n_aux = np.array([len(b.local) for b in blks], dtype=np.int64)

    # two concatenations of the blocks' packed columns (exact: small integers and
    # booleans are exact in float64)
    packed = np.concatenate([b.par_pack for b in blks]) if blks else np.zeros((0, 5))
    aux_packed = np.concatenate([b.aux_pack for b in blks]) if blks else np.zeros((0, 4))
    init_a = packed[:, 0]
    bounds_a = packed[:, 1:3]
    fixed_a = packed[:, 3] != 0.0
    width_a = packed[:, 4]
    aux_par_a = aux_packed[:, 0].astype(np.int64) + np.repeat(par0, n_aux)
    aux_kind_a = aux_packed[:, 1].astype(np.int64)
    aux_scale_a = aux_packed[:, 2]
    auxdata_a = aux_packed[:, 3]
    poi_index: int | None = None
    poi_name: str | None = None
    if isinstance(poi, str) and poi in starts:
        poi_name, poi_index = poi, starts[poi]

    # ---- flat entry arrays, rows in (channel, sample) order ----------------------------
    if base is None:
        f = _concat_fields([_row_fields(r, cache, offset) for r in all_rows])
    else:
        f = _splice_fields(base, extra, cache, offset)  # the background's part is reused
    by_slot = np.zeros(len(cache.slots), dtype=np.int64)
    for mname, s0 in starts.items():
        slot = cache.slots.get(mname)
        if slot is not None:
            by_slot[slot] = s0
    nb_r, nrf_r, nhs_r, ncf_r, off_r = f["nb"], f["nrf"], f["nhs"], f["ncf"], f["off"]
    n_rows = len(nb_r)
    cell0 = np.concatenate([[0], np.cumsum(nb_r)[:-1]]) if n_rows else np.zeros(0, np.int64)
    row_ids = np.arange(n_rows, dtype=np.int64)

    local, rf_slot, hs_slot = f["local"], f["rf_slot"], f["hs_slot"]
    hs_local, cf_slot, cf_local = f["hs_local"], f["cf_slot"], f["cf_local"]
    rf_ns = f["rf_ns"]
    n_hs = int(hs_local.shape[0])
    cm = CompiledModel(
        nom=f["nom"],
        cell_bin=as_i8(local + np.repeat(off_r, nb_r)),
        cell_row=as_i8(np.repeat(row_ids, nb_r)),
        n_bins=int(n_bins),
        n_rows=n_rows,
        rf_row=as_i8(np.repeat(row_ids, nrf_r)),
        rf_par=as_i8(by_slot[rf_slot]),
        rf_kind=as_i8(np.where(rf_ns, settings["normsys"], RF_LINEAR)),
        rf_hi=f["rf_hi"],
        rf_lo=f["rf_lo"],
        rf_coef=f["rf_coef"],
        cf_cell=as_i8(cf_local + np.repeat(cell0, ncf_r * nb_r)),
        cf_par=as_i8(np.repeat(by_slot[cf_slot], np.repeat(nb_r, ncf_r)) + cf_local),
        hs_cell=as_i8(hs_local + np.repeat(cell0, nhs_r * nb_r)),
        hs_par=as_i8(np.repeat(by_slot[hs_slot], np.repeat(nb_r, nhs_r))),
        hs_up=f["hs_up"],
        hs_dn=f["hs_dn"],
        hs_kind=np.full(n_hs, settings["histosys"], dtype=np.int64),
        aux_par=as_i8(aux_par_a),
        aux_kind=as_i8(aux_kind_a),
        aux_scale=as_f8(aux_scale_a),
    )
    data = np.concatenate([observations[c] for c in chans]) if chans else np.zeros(0)
    return Model(
        cm,
        parameter_names=tuple(names_l),
        poi_name=poi_name,
        poi_index=poi_index,
        init=as_f8(init_a),
        bounds=as_f8(bounds_a),
        fixed=np.array(fixed_a, dtype=bool),
        channels=chans,
        channel_nbins={c: int(nbins[c]) for c in chans},
        data=as_f8(data),
        auxdata=as_f8(auxdata_a),
        widths=as_f8(width_a),
        measurement=str(mname_) if mname_ is not None else None,
    )


class Model:
    """A compiled HistFactory model (pyhf ``Model`` semantics, numba kernels).

    Attributes
    ----------
    parameter_names : tuple of str, (n_pars,)
        One name per scalar parameter; components of vector parameters are ``name[i]``.
    poi_name, poi_index : str or None, int or None
        The parameter of interest; ``None`` when the model has none (background only).
    init : ndarray (n_pars,)
        Initial values (pyhf ``suggested_init``).
    bounds : ndarray (n_pars, 2)
        Lower and upper bounds (pyhf ``suggested_bounds``).
    fixed : ndarray of bool (n_pars,)
        Parameters held constant in fits (pyhf ``suggested_fixed``).
    channels : tuple of str
        Channel names, sorted (as pyhf).
    channel_nbins : dict of str to int
        Bins per channel.
    data : ndarray (n_main_bins,)
        Observed counts, channels in ``channels`` order.
    auxdata : ndarray (n_aux,)
        Auxiliary data of the constraints, in parameter order (as pyhf).
    widths : ndarray (n_pars,)
        Constraint width of each parameter (Gaussian sigma, ``1/sqrt(tau)`` for shapesys,
        1 for free parameters): the scale used by the fits.
    """

    def __init__(
        self,
        compiled: CompiledModel,
        *,
        parameter_names: tuple[str, ...],
        poi_name: str | None,
        poi_index: int | None,
        init: np.ndarray,
        bounds: np.ndarray,
        fixed: np.ndarray,
        channels: tuple[str, ...],
        channel_nbins: dict[str, int],
        data: np.ndarray,
        auxdata: np.ndarray,
        widths: np.ndarray,
        measurement: str | None = None,
        name: str | None = None,
    ) -> None:
        self.compiled = compiled
        self.parameter_names = parameter_names
        self.poi_name = poi_name
        self.poi_index = poi_index
        self.init = as_f8(init)
        self.bounds = as_f8(bounds)
        self.fixed = np.ascontiguousarray(fixed, dtype=bool)
        self.channels = channels
        self.channel_nbins = channel_nbins
        self.data = as_f8(data)
        self.auxdata = as_f8(auxdata)
        self.widths = as_f8(widths)
        self.measurement = measurement
        self.name = name
        # writable twins for the kernels: a read-only array is another numba type
        self._data_k = self.data.copy()
        self._aux_k = self.auxdata.copy()
        self._data_lg = lgamma1(self.data)
        self._aux_lg = lgamma1(self.auxdata)
        self._aux_sat = poisson_saturated(self.auxdata)
        for a in (self.init, self.bounds, self.fixed, self.data, self.auxdata, self.widths):
            a.setflags(write=False)

    # -- sizes ------------------------------------------------------------------------
    @property
    def n_pars(self) -> int:
        """Number of scalar parameters."""
        return len(self.parameter_names)

    @property
    def n_bins(self) -> int:
        """Number of main bins."""
        return int(self.compiled.n_bins)

    def __repr__(self) -> str:
        return (
            f"<likelihood.Model {self.name or ''} {len(self.channels)} channels, "
            f"{self.n_bins} bins, {self.n_pars} parameters, poi={self.poi_name!r}>"
        )

    def par_index(self, name: str) -> int:
        """Index of the parameter called ``name`` (``"name[i]"`` for a component)."""
        try:
            return self.parameter_names.index(name)
        except ValueError as err:
            raise KeyError(f"no parameter {name!r} in the model") from err

    # -- evaluation -------------------------------------------------------------------
    def _pars(self, pars: Any) -> np.ndarray:
        p = as_f8(pars)
        if p.shape != (self.n_pars,):
            raise ValueError(f"expected {self.n_pars} parameters, got shape {p.shape}")
        return p

    @property
    def kernel_model(self) -> CompiledModel:
        """``compiled`` without the entries that never change a rate, for the kernels.

        A histosys entry with ``hi == lo == nom`` in its bin adds 0 and a normsys entry with
        ``hi == lo == 1`` multiplies by 1, for every interpolation code; most of a large
        workspace's histosys entries are such zeros (57% in 1Lbb).  Computed once.
        """
        km = self.__dict__.get("_kernel_model")
        if km is None:
            km = prune_compiled(self.compiled)
            self.__dict__["_kernel_model"] = km
        return km

    def kernel_data(
        self, data: Any = None, auxdata: Any = None, *, stable: bool = False
    ) -> KernelData:
        """The :class:`KernelData` of ``data`` / ``auxdata`` (default: the observed ones).

        Parameters
        ----------
        data : array_like (n_main_bins,), optional
        auxdata : array_like (n_aux,), optional
        stable : bool
            See :meth:`twice_nll`.
        """
        if data is None and auxdata is None:
            return KernelData(
                self._data_k, self._data_lg, self._aux_k, self._aux_lg, self._aux_sat, bool(stable)
            )
        d = self._data_k if data is None else as_f8(data)
        a = self._aux_k if auxdata is None else as_f8(auxdata)
        if d.shape != self.data.shape:
            raise ValueError(f"expected data of shape {self.data.shape}, got {d.shape}")
        if a.shape != self.auxdata.shape:
            raise ValueError(f"expected auxdata of shape {self.auxdata.shape}, got {a.shape}")
        # the Asimov data of a test are fitted a dozen times: their constants are cached
        cache = self.__dict__.setdefault("_kd_cache", {})
        key = (d.tobytes(), a.tobytes())
        hit = cache.get(key)
        if hit is None:
            dlg = self._data_lg if data is None else lgamma1(d)
            if auxdata is None:
                alg, asat = self._aux_lg, self._aux_sat
            else:
                alg, asat = lgamma1(a), poisson_saturated(a)
            # copies: a caller may reuse (and change) its arrays, the cache must not see it
            hit = (d.copy(), dlg, a.copy(), alg, asat)
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = hit
        d, dlg, a, alg, asat = hit
        return KernelData(d, dlg, a, alg, asat, bool(stable))

    def expected_actualdata(self, pars: Any) -> np.ndarray:
        """Expected main-bin counts, shape (n_main_bins,), channels in ``channels`` order."""
        from likelihood import _kernels

        return _kernels.rates(self._pars(pars), self.kernel_model)

    def expected_auxdata(self, pars: Any) -> np.ndarray:
        """Expected auxiliary data, shape (n_aux,): the Asimov auxdata of ``pars``."""
        from likelihood import _kernels

        return _kernels.expected_auxdata(self._pars(pars), self.kernel_model)

    def twice_nll(
        self, pars: Any, data: Any = None, auxdata: Any = None, *, stable: bool = False
    ) -> float:
        """``-2 log L`` with all constants, equal to pyhf's ``-2 * model.logpdf``.

        Parameters
        ----------
        pars : array_like (n_pars,)
        data : array_like (n_main_bins,), optional
            Main-bin counts (default: the observed ``data``).
        auxdata : array_like (n_aux,), optional
            Auxiliary data (default: the model's ``auxdata``).
        stable : bool
            Evaluate Poisson constraints as deviance + saturated constant.  Equal in exact
            arithmetic; the default (False) rounds as pyhf does, True keeps differences
            between parameter points exact when a shapesys has a huge ``tau`` (the fits
            use it).
        """
        from likelihood import _kernels

        kd = self.kernel_data(data, auxdata, stable=stable)
        return float(_kernels.twice_nll(self._pars(pars), self.kernel_model, kd))

    def twice_nll_and_grad(
        self, pars: Any, data: Any = None, auxdata: Any = None, *, stable: bool = False
    ) -> tuple[float, np.ndarray]:
        """``-2 log L`` and its analytic gradient, shape (n_pars,) (``stable`` as twice_nll)."""
        from likelihood import _kernels

        kd = self.kernel_data(data, auxdata, stable=stable)
        v, g = _kernels.twice_nll_grad(self._pars(pars), self.kernel_model, kd)
        return float(v), g


# ---------------------------------------------------------------------------------------
# public constructors
# ---------------------------------------------------------------------------------------
def _settings(modifier_settings: Mapping[str, Any] | None) -> dict[str, int]:
    """Kernel codes ``{"normsys": RF_*, "histosys": HS_*}`` of pyhf-style settings.

    pyhf 0.7.6 semantics (``_ModelConfig`` / ``_nominal_and_modifiers_from_spec``):
    ``None`` (not given) means the ``Model`` defaults, normsys code4 and histosys code4p;
    a mapping is passed per type to the modifier builders, so a type it does not name
    gets the builder's own default, normsys code1 and histosys code0 (also for ``{}``).
    """
    if modifier_settings is None:
        names = dict(MODEL_DEFAULT_CODES)
    else:
        if not isinstance(modifier_settings, Mapping):
            raise InvalidModifierSettings(
                "modifier_settings: expected a mapping like "
                f"{{'normsys': {{'interpcode': 'code4'}}}}, got {modifier_settings!r:.100}"
            )
        names = dict(MODIFIER_DEFAULT_CODES)
        for mtype, opts in modifier_settings.items():
            where = f"modifier_settings[{mtype!r}]"
            if mtype not in MODIFIER_TYPES:
                raise InvalidModifierSettings(
                    f"{where}: unknown modifier type {mtype!r}; known types: "
                    f"{', '.join(sorted(MODIFIER_TYPES))}"
                )
            if not isinstance(opts, Mapping):
                raise InvalidModifierSettings(
                    f"{where}: expected a mapping like {{'interpcode': ...}}, got {opts!r:.100}"
                )
            codes = INTERP_CODES.get(mtype)
            if codes is None:
                if opts:
                    raise InvalidModifierSettings(
                        f"{where}: {mtype} has no settings, got {dict(opts)!r:.100}; only "
                        "normsys and histosys take {'interpcode': ...}"
                    )
                continue
            for key, value in opts.items():
                if key != "interpcode":
                    raise InvalidModifierSettings(
                        f"{where}: unknown setting {key!r} (value {value!r:.60}); the only "
                        "setting is 'interpcode'"
                    )
                if not isinstance(value, str) or value not in codes:
                    raise InvalidModifierSettings(
                        f"{where}['interpcode']: {value!r:.60} is not an interpolation code "
                        f"of {mtype}; use one of {', '.join(repr(c) for c in codes)}"
                    )
                names[mtype] = value
    return {t: INTERP_CODES[t][names[t]] for t in ("normsys", "histosys")}


def _validate(spec: Mapping[str, Any], source: str | None) -> None:
    validate_workspace(spec, source=source)


def compile(
    spec: Mapping[str, Any],
    *,
    measurement: str | None = None,
    modifier_settings: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> Model:
    """Compile a HistFactory JSON workspace into a :class:`Model`.

    Parameters
    ----------
    spec : mapping
        The workspace (HistFactory JSON 1.0.0: channels, observations, measurements).
    measurement : str, optional
        Name of the measurement to use (default: the first one).
    modifier_settings : mapping, optional
        Interpolation codes with pyhf 0.7.6's meaning: ``{"normsys": {"interpcode":
        "code4" | "code1"}, "histosys": {"interpcode": "code4p" | "code0" | "code2"}}``.
        ``None`` (default): normsys code4, histosys code4p (pyhf ``Model``'s defaults); a
        mapping leaves a type it does not name at the modifier's own default (normsys
        code1, histosys code0), as pyhf.  See docs/likelihood.md.
    validate : bool
        Run schema and semantic validation first (:func:`likelihood.validate_workspace`,
        the validation boundary).  ``False`` skips every check: only for a workspace that
        has already passed it (an invalid one then gives undefined results).

    Returns
    -------
    Model

    Raises
    ------
    InvalidWorkspace
        The workspace is invalid (the message of :func:`likelihood.validate_workspace`).
    """
    settings = _settings(modifier_settings)
    if validate:
        _validate(spec, None)
    meas = get_measurement(spec, measurement)
    parsed = _parse_channels(spec)
    rows = [r for rs in parsed.rows for r in rs]
    return _assemble(
        parsed.names, parsed.nbins, parsed.observations, rows, meas, settings, "workspace"
    )


class Background:
    """A background-only workspace compiled once; signal patches are set as data.

    Parameters
    ----------
    bkgonly_spec : mapping
        The background-only workspace (``BkgOnly.json``).
    measurement : str, optional
        Measurement name (default: the first one).
    modifier_settings : mapping, optional
        Interpolation codes, as :func:`compile`.
    validate : bool
        Validate the background-only workspace once.  The patches given to
        :meth:`with_patch` are always validated.
    """

    def __init__(
        self,
        bkgonly_spec: Mapping[str, Any],
        *,
        measurement: str | None = None,
        modifier_settings: Mapping[str, Any] | None = None,
        validate: bool = True,
    ) -> None:
        self.spec = bkgonly_spec
        self.measurement_name = measurement
        self.modifier_settings = modifier_settings
        self._settings = _settings(modifier_settings)
        if validate:
            _validate(bkgonly_spec, "background-only workspace")
        self._measurement = get_measurement(bkgonly_spec, measurement)
        self._parsed = _parse_channels(bkgonly_spec)
        # the validation boundary's view of this background, for the patches
        self._target = PatchTarget(bkgonly_spec)
        # the background's rows summarised once; the cache keeps their arrays and the
        # parameter blocks that only background rows determine
        self._base = _base([r for rs in self._parsed.rows for r in rs])
        self._cache = _Cache()
        # the same for the channels that patches keep (patches that remove channels)
        self._bases: dict[tuple[int, ...], _Base] = {}

    def __repr__(self) -> str:
        return f"<likelihood.Background {len(self._parsed.names)} channels>"

    def compile(self) -> Model:
        """The background-only model itself (usually without POI)."""
        p = self._parsed
        return _assemble(
            p.names,
            p.nbins,
            p.observations,
            [],
            self._measurement,
            self._settings,
            "workspace",
            cache=self._cache,
            base=self._base,
        )

    def with_patch(
        self, patch_ops: Sequence[Mapping[str, Any]], *, name: str | None = None
    ) -> Model:
        """Model of the background plus one signal patch.

        Identical to ``compile(apply_patch(bkgonly_spec, patch_ops, source=name))``, in
        the model it returns and in what it rejects (same exception, same message).  A
        patch that only adds samples and removes channels, and that the validation
        boundary accepts (:meth:`likelihood.validate.PatchTarget.plan`), is applied to the
        parsed background directly; any other patch (or an invalid one) takes the
        reference path, a full compile of the patched workspace.

        Parameters
        ----------
        patch_ops : sequence of mappings
            RFC 6902 operations (one patch of a patchset).
        name : str, optional
            Name of the patch, for error messages and ``Model.name``.

        Raises
        ------
        InvalidPatch
            The patch does not apply.
        InvalidWorkspace
            The patched workspace is invalid (e.g. a negative signal yield), with the
            JSON path and the value.
        """
        plan = self._target.plan(patch_ops)
        if plan is None:
            log.debug("%s: reference path (full compile)", name or "patch")
            spec = apply_patch(self.spec, patch_ops, source=name)
            model = compile(
                spec,
                measurement=self.measurement_name,
                modifier_settings=self.modifier_settings,
                validate=True,
            )
        else:
            model = self._assemble_plan(plan, name)
        model.name = name
        return model

    def _assemble_plan(self, plan: PatchPlan, name: str | None) -> Model:
        """The model of an accepted add-samples / remove-channels patch: only the signal
        rows are parsed (from what the boundary checked, :func:`_checked_rows`); the
        background's part (of the kept channels) is summarised once and reused."""
        p = self._parsed
        cnames = [p.names[a.channel] for a in plan.added]
        added = _checked_rows(cnames, [p.nbins[c] for c in cnames], plan.added)
        if not plan.removed:
            names, base = p.names, self._base
        else:
            kept = tuple(sorted(plan.kept))
            names = [p.names[ci] for ci in kept]
            cached = self._bases.get(kept)
            if cached is None:
                if len(self._bases) >= 16:
                    self._bases.pop(next(iter(self._bases)))
                cached = self._bases[kept] = _base([r for ci in kept for r in p.rows[ci]])
            base = cached
        return _assemble(
            names,
            p.nbins,
            p.observations,
            added,
            self._measurement,
            self._settings,
            "workspace",
            cache=self._cache,
            base=base,
        )
