"""Compile a HistFactory JSON workspace into flat arrays and evaluate it with numba kernels.

This is the only module that walks the workspace JSON.  :func:`compile` turns a workspace
into a :class:`Model`: a :class:`CompiledModel` (a NamedTuple of float64 / int64 C-contiguous
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
patch as data (:meth:`Background.with_patch`): a patch made of ``add`` operations of
samples and ``remove`` operations of whole channels is applied to the parsed rows directly,
without re-reading the background JSON; any other patch falls back to a full compile of
the patched workspace.  Both paths give identical models.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import gammaln

from likelihood.errors import InvalidPatch, InvalidWorkspace, LikelihoodError
from likelihood.spec import apply_patch, get_measurement

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

#: pyhf's builder order: a parameter belongs to the first of these types that declares it
MODIFIER_TYPES: tuple[str, ...] = (
    "histosys",
    "lumi",
    "normfactor",
    "normsys",
    "shapefactor",
    "shapesys",
    "staterror",
)
_GROUP = {t: i for i, t in enumerate(MODIFIER_TYPES)}
_UNCONSTRAINED = ("normfactor", "shapefactor")
_NORMSYS_CODES = {"code4": 1, "code1": 2}
_HISTOSYS_CODES = {"code4p": 0, "code0": 1}


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
    rf_kind: np.ndarray  # (E_rf,) 0 linear, 1 normsys code4, 2 normsys code1
    rf_hi: np.ndarray  # (E_rf,)
    rf_lo: np.ndarray  # (E_rf,)
    rf_coef: np.ndarray  # (E_rf, 6) code4 polynomial coefficients
    cf_cell: np.ndarray  # (E_cf,)
    cf_par: np.ndarray  # (E_cf,)
    hs_cell: np.ndarray  # (E_hs,)
    hs_par: np.ndarray  # (E_hs,)
    hs_up: np.ndarray  # (E_hs,) hi - nom
    hs_dn: np.ndarray  # (E_hs,) nom - lo
    hs_kind: np.ndarray  # (E_hs,) 0 code4p, 1 code0
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


def _code4_coefficients(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Polynomial coefficients of pyhf's code4, shape (k, 6), for factors ``hi``, ``lo`` (k,)."""
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lhi = np.where(hi > 0, np.log(np.where(hi > 0, hi, 1.0)), np.nan)
        llo = np.where(lo > 0, np.log(np.where(lo > 0, lo, 1.0)), np.nan)
    b = np.stack([hi - 1.0, lo - 1.0, lhi * hi, -llo * lo, lhi * lhi * hi, llo * llo * lo], axis=1)
    return np.ascontiguousarray(b @ _A_INV.T)


# ---------------------------------------------------------------------------------------
# rows: one sample in one channel, parsed once
# ---------------------------------------------------------------------------------------
class _Row:
    """A sample of a channel, parsed from JSON into arrays (cached by :class:`Background`)."""

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
    )

    def __init__(self, channel: str, sample: Mapping[str, Any], nbins: int, where: str) -> None:
        self.channel = channel
        self.where = where
        if not isinstance(sample, Mapping):
            raise InvalidWorkspace(f"{where}: a sample is an object, got {sample!r:.100}")
        name = sample.get("name")
        if not isinstance(name, str):
            raise InvalidWorkspace(f"{where}/name: sample name must be a string, got {name!r}")
        self.sample = name
        self.nom = _numbers(sample.get("data"), f"{where}/data", nbins, nonneg=False)
        self.nbins = nbins
        mods = sample.get("modifiers", [])
        if not isinstance(mods, list):
            raise InvalidWorkspace(f"{where}/modifiers: must be a list, got {mods!r:.100}")
        parsed: list[tuple[str, str, Any]] = []
        for k, m in enumerate(mods):
            mw = f"{where}/modifiers/{k}"
            if not isinstance(m, Mapping):
                raise InvalidWorkspace(f"{mw}: a modifier is an object, got {m!r:.100}")
            mname, mtype, data = m.get("name"), m.get("type"), m.get("data")
            if not isinstance(mname, str):
                raise InvalidWorkspace(f"{mw}/name: modifier name must be a string, got {mname!r}")
            if mtype not in _GROUP:
                raise InvalidWorkspace(
                    f"{mw}/type: unknown modifier type {mtype!r} (modifier {mname!r}); "
                    f"known types: {', '.join(MODIFIER_TYPES)}"
                )
            if mtype == "normsys":
                if not isinstance(data, Mapping):
                    raise InvalidWorkspace(
                        f"{mw}/data: normsys needs {{'hi': .., 'lo': ..}}, got {data!r:.100}"
                    )
                hi = _number(data.get("hi"), f"{mw}/data/hi")
                lo = _number(data.get("lo"), f"{mw}/data/lo")
                payload: Any = (hi, lo)
            elif mtype == "histosys":
                if not isinstance(data, Mapping):
                    raise InvalidWorkspace(
                        f"{mw}/data: histosys needs {{'hi_data': [..], 'lo_data': [..]}}, got {data!r:.100}"
                    )
                payload = (
                    _numbers(data.get("hi_data"), f"{mw}/data/hi_data", nbins, nonneg=False),
                    _numbers(data.get("lo_data"), f"{mw}/data/lo_data", nbins, nonneg=False),
                )
            elif mtype in ("shapesys", "staterror"):
                payload = _numbers(data, f"{mw}/data", nbins, nonneg=True)
            else:
                payload = None
            parsed.append((mname, mtype, payload))
        # pyhf walks the modifiers of a sample sorted by (name, type); a duplicate
        # (name, type) in one sample keeps the last one, as pyhf's dictionary does
        uniq: dict[tuple[str, str], Any] = {}
        for mname, mtype, payload in parsed:
            uniq[(mname, mtype)] = payload
        self.mods = [(n, t, uniq[(n, t)]) for (n, t) in sorted(uniq)]
        rf: list[tuple[str, bool, float, float]] = []
        hs: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.cf: list[tuple[str, str]] = []
        for mname, mtype, payload in self.mods:
            if mtype in ("normfactor", "lumi"):
                rf.append((mname, False, 1.0, 1.0))
            elif mtype == "normsys":
                rf.append((mname, True, payload[0], payload[1]))
            elif mtype == "histosys":
                hi, lo = payload
                hs.append((mname, hi - self.nom, self.nom - lo))
            else:
                self.cf.append((mname, mtype))
        self.rf_names = [x[0] for x in rf]
        self.rf_is_normsys = np.array([x[1] for x in rf], dtype=bool)
        self.rf_hi = np.array([x[2] for x in rf], dtype=np.float64)
        self.rf_lo = np.array([x[3] for x in rf], dtype=np.float64)
        self.rf_coef = _code4_coefficients(self.rf_hi, self.rf_lo)
        self.rf_coef[~self.rf_is_normsys] = 0.0
        self.hs_names = [x[0] for x in hs]
        self.hs_up = np.concatenate([x[1] for x in hs]) if hs else np.zeros(0)
        self.hs_dn = np.concatenate([x[2] for x in hs]) if hs else np.zeros(0)


def _number(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidWorkspace(f"{where}: expected a number, got {x!r:.100}")
    v = float(x)
    if not math.isfinite(v):
        raise InvalidWorkspace(f"{where}: expected a finite number, got {x!r}")
    return v


def _numbers(x: Any, where: str, n: int, *, nonneg: bool) -> np.ndarray:
    if not isinstance(x, (list, tuple)):
        raise InvalidWorkspace(f"{where}: expected a list of {n} numbers, got {x!r:.100}")
    if len(x) != n:
        raise InvalidWorkspace(
            f"{where}: expected {n} numbers (one per bin of the channel), got {len(x)}"
        )
    # plain-Python checks: the lists are short, and this runs for every modifier of a patch
    for v in x:
        t = type(v)
        if t is float:
            if v - v != 0.0:  # nan or +-inf
                raise InvalidWorkspace(f"{where}: non-finite value {v!r} in {x!r:.100}")
        elif t is not int and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InvalidWorkspace(f"{where}: expected numbers, got {v!r} in {x!r:.100}")
        elif t is not int and not math.isfinite(v):
            raise InvalidWorkspace(f"{where}: non-finite value {v!r} in {x!r:.100}")
        if nonneg and v < 0:
            raise InvalidWorkspace(
                f"{where}: negative value {v!r} in {x!r:.100}; uncertainties are >= 0"
            )
    return np.array(x, dtype=np.float64)


class _Channels(NamedTuple):
    names: list[str]  # in JSON order
    nbins: dict[str, int]
    rows: list[list[_Row]]  # per JSON channel
    observations: dict[str, np.ndarray]


def _parse_channels(spec: Mapping[str, Any]) -> _Channels:
    channels = spec.get("channels")
    if not isinstance(channels, list) or not channels:
        raise InvalidWorkspace("/channels: a workspace needs a non-empty list of channels")
    names: list[str] = []
    nbins: dict[str, int] = {}
    rows: list[list[_Row]] = []
    for i, ch in enumerate(channels):
        where = f"/channels/{i}"
        if not isinstance(ch, Mapping) or not isinstance(ch.get("name"), str):
            raise InvalidWorkspace(f"{where}: a channel is an object with a string 'name'")
        cname = ch["name"]
        samples = ch.get("samples")
        if not isinstance(samples, list) or not samples:
            raise InvalidWorkspace(f"{where}/samples: channel {cname!r} needs at least one sample")
        if cname in nbins:
            raise InvalidWorkspace(f"{where}/name: duplicate channel name {cname!r}")
        first = samples[0].get("data") if isinstance(samples[0], Mapping) else None
        if not isinstance(first, list) or not first:
            raise InvalidWorkspace(f"{where}/samples/0/data: expected a non-empty list of yields")
        nb = len(first)
        names.append(cname)
        nbins[cname] = nb
        rows.append([_Row(cname, s, nb, f"{where}/samples/{j}") for j, s in enumerate(samples)])
        seen: set[str] = set()
        for j, r in enumerate(rows[-1]):
            if r.sample in seen:
                raise InvalidWorkspace(
                    f"{where}/samples/{j}/name: duplicate sample {r.sample!r} in channel {cname!r}"
                )
            seen.add(r.sample)
    obs = spec.get("observations")
    if not isinstance(obs, list):
        raise InvalidWorkspace("/observations: a workspace needs a list of observations")
    observations: dict[str, np.ndarray] = {}
    for i, o in enumerate(obs):
        if not isinstance(o, Mapping) or not isinstance(o.get("name"), str):
            raise InvalidWorkspace(f"/observations/{i}: an observation has a string 'name'")
        oname = o["name"]
        if oname in nbins:
            observations[oname] = _numbers(
                o.get("data"), f"/observations/{i}/data", nbins[oname], nonneg=True
            )
    for cname in names:
        if cname not in observations:
            raise InvalidWorkspace(
                f"/observations: no observation for channel {cname!r}; add "
                f'{{"name": "{cname}", "data": [...]}}'
            )
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


def _apply_config(ps: _ParamSet, cfg: Mapping[str, Any], where: str) -> None:
    """Measurement parameter settings (inits, bounds, fixed, auxdata, sigmas), as pyhf."""
    n = ps.n

    def vec(key: str) -> list[Any] | None:
        if key not in cfg:
            return None
        v = cfg[key]
        if not isinstance(v, list) or len(v) != n:
            raise InvalidWorkspace(
                f"{where}/{key}: parameter {ps.name!r} has {n} component(s), "
                f"so {key!r} needs a list of {n} values; got {v!r:.100}"
            )
        return v

    if (v := vec("inits")) is not None:
        ps.inits = [_number(x, f"{where}/inits") for x in v]
    if (v := vec("bounds")) is not None:
        bb = []
        for j, b in enumerate(v):
            if not isinstance(b, list) or len(b) != 2:
                raise InvalidWorkspace(f"{where}/bounds/{j}: expected [low, high], got {b!r}")
            lo, hi = _number(b[0], f"{where}/bounds/{j}/0"), _number(b[1], f"{where}/bounds/{j}/1")
            if lo > hi:
                raise InvalidWorkspace(f"{where}/bounds/{j}: low {lo} above high {hi}")
            bb.append([lo, hi])
        ps.bounds = bb
    if "fixed" in cfg:
        f = cfg["fixed"]
        if isinstance(f, bool):
            ps.fixed = [f] * n
        elif isinstance(f, list) and len(f) == n and all(isinstance(x, bool) for x in f):
            ps.fixed = list(f)
        else:
            raise InvalidWorkspace(f"{where}/fixed: expected true/false, got {f!r:.100}")
    for key in ("auxdata", "sigmas"):
        if key in cfg:
            if ps.constraint is None or (key == "sigmas" and ps.constraint != "normal"):
                raise InvalidWorkspace(
                    f"{where}/{key}: parameter {ps.name!r} ({ps.kind}) does not use {key!r}; "
                    "remove it from the measurement"
                )
            if key == "sigmas" and ps.kind in ("normsys", "histosys"):
                raise InvalidWorkspace(
                    f"{where}/sigmas: parameter {ps.name!r} ({ps.kind}) has unit width; "
                    "remove 'sigmas' from the measurement"
                )
            v = vec(key)
            assert v is not None
            vals = [_number(x, f"{where}/{key}") for x in v]
            if key == "sigmas" and any(s <= 0 for s in vals):
                raise InvalidWorkspace(f"{where}/sigmas: widths must be > 0, got {vals}")
            setattr(ps, key, vals)


def _assemble(
    channels: Sequence[str],
    nbins: Mapping[str, int],
    observations: Mapping[str, np.ndarray],
    rows: Sequence[_Row],
    measurement: Mapping[str, Any],
    settings: Mapping[str, int],
    source: str,
) -> Model:
    """Build a :class:`Model` from parsed rows (the one code path of compile and with_patch)."""
    chans = tuple(sorted(channels))
    offset: dict[str, int] = {}
    o = 0
    for c in chans:
        offset[c] = o
        o += nbins[c]
    n_bins = o
    rows = sorted(rows, key=lambda r: (r.channel, r.sample))

    # ---- parameter sets, in pyhf's order --------------------------------------------
    groups: list[dict[str, _ParamSet]] = [{} for _ in MODIFIER_TYPES]
    staterr_rows: dict[str, list[tuple[_Row, np.ndarray]]] = {}
    carried: dict[tuple[str, str], dict[str, list[int]]] = {}  # (type, name) -> sample -> bins
    for r in rows:
        off = offset[r.channel]
        for mname, mtype, payload in r.mods:
            g = groups[_GROUP[mtype]]
            if mtype == "staterror":
                staterr_rows.setdefault(mname, []).append((r, payload))
                carried.setdefault((mtype, mname), {}).setdefault(r.sample, []).extend(
                    range(off, off + r.nbins)
                )
                continue
            if mtype == "shapesys":
                if mname in g:
                    raise InvalidWorkspace(
                        f"{source}: shapesys {mname!r} is used by more than one sample "
                        f"(again by {r.sample!r} in {r.channel!r}); shapesys parameters "
                        "cannot be shared, use a distinct name per sample"
                    )
                ps = _ParamSet(mname, mtype, r.nbins)
                valid = (r.nom > 0) & (payload > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    fac = np.where(valid, r.nom**2 / np.where(valid, payload, 1.0) ** 2, 1.0)
                ps.factors = [float(x) for x in fac]
                ps.fixed = [not bool(v) for v in valid]
                g[mname] = ps
                carried.setdefault((mtype, mname), {}).setdefault(r.sample, []).extend(
                    range(off, off + r.nbins)
                )
                continue
            if mname not in g:
                n = r.nbins if mtype == "shapefactor" else 1
                g[mname] = _ParamSet(mname, mtype, n)
    # the components of a staterror / shapesys follow the bins of the last sample (in
    # sorted order) that carries it, as pyhf's _reindex_access_field
    masked = {key: sorted(by_sample[max(by_sample)]) for key, by_sample in carried.items()}
    for mname, lst in sorted(staterr_rows.items()):
        carriers = {r.sample for r, _ in lst}
        bins = masked[("staterror", mname)]
        nomsall = np.zeros(n_bins)
        for r in rows:
            if r.sample in carriers:
                off = offset[r.channel]
                nomsall[off : off + r.nbins] += r.nom
        rel2 = np.zeros(n_bins)
        for r, unc in lst:
            off = offset[r.channel]
            sl = slice(off, off + r.nbins)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel2[sl] += np.where(
                    nomsall[sl] > 0, (unc / np.where(nomsall[sl] > 0, nomsall[sl], 1.0)) ** 2, 0.0
                )
        sig = np.sqrt(rel2[bins])
        ps = _ParamSet(mname, "staterror", len(bins))
        ps.fixed = [bool(s == 0) for s in sig]
        ps.sigmas = [1.0 if s == 0 else float(s) for s in sig]
        groups[_GROUP["staterror"]][mname] = ps

    kinds: dict[str, set[str]] = {}
    for mtype, g in zip(MODIFIER_TYPES, groups, strict=True):
        for mname in g:
            kinds.setdefault(mname, set()).add(mtype)
    for mname, ks in kinds.items():
        if len(ks) > 1 and ks != {"normsys", "histosys"}:
            raise InvalidWorkspace(
                f"{source}: parameter {mname!r} is declared by modifiers of different types "
                f"{sorted(ks)}; only normsys and histosys may share a name. Rename one of them."
            )

    params: dict[str, _ParamSet] = {}
    for g in groups:
        for mname, ps in g.items():
            if mname not in params:
                params[mname] = ps

    # ---- measurement settings ---------------------------------------------------------
    config = measurement.get("config", {}) if isinstance(measurement, Mapping) else {}
    mname_ = measurement.get("name") if isinstance(measurement, Mapping) else None
    poi = config.get("poi") if isinstance(config, Mapping) else None
    user: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for j, p in enumerate(config.get("parameters", []) or []):
        if not isinstance(p, Mapping) or not isinstance(p.get("name"), str):
            raise InvalidWorkspace(
                f"measurement {mname_!r} /config/parameters/{j}: a parameter setting needs a 'name'"
            )
        if p["name"] in user:
            raise InvalidWorkspace(
                f"measurement {mname_!r} /config/parameters/{j}: duplicate settings for "
                f"parameter {p['name']!r}"
            )
        user[p["name"]] = (j, p)
    start = 0
    for name, ps in params.items():
        _defaults(ps)
        if name in user:
            j, cfg = user[name]
            _apply_config(ps, cfg, f"measurement {mname_!r} /config/parameters/{j}")
        if ps.kind == "lumi":
            missing = [
                k for k in ("inits", "bounds", "auxdata", "sigmas") if getattr(ps, k) is None
            ]
            if missing:
                raise InvalidWorkspace(
                    f"measurement {mname_!r} /config/parameters: lumi parameter {name!r} needs "
                    f"{', '.join(missing)} in the measurement's parameter settings, e.g. "
                    f'{{"name": "{name}", "auxdata": [1.0], "sigmas": [0.017], '
                    '"bounds": [[0.9, 1.1]], "inits": [1.0]}'
                )
        ps.start = start
        start += ps.n
    n_pars = start

    names: list[str] = []
    init = np.empty(n_pars)
    bounds = np.empty((n_pars, 2))
    fixed = np.zeros(n_pars, dtype=bool)
    aux_par: list[int] = []
    aux_kind: list[int] = []
    aux_scale: list[float] = []
    auxdata: list[float] = []
    width = np.ones(n_pars)
    for name, ps in params.items():
        sl = slice(ps.start, ps.start + ps.n)
        if ps.kind in ("normfactor", "lumi", "normsys", "histosys"):
            names.append(name)
        else:
            names.extend(f"{name}[{i}]" for i in range(ps.n))
        init[sl] = ps.inits
        bounds[sl] = ps.bounds
        fixed[sl] = ps.fixed
        if ps.constraint == "normal":
            assert ps.auxdata is not None and ps.sigmas is not None
            aux_par.extend(range(ps.start, ps.start + ps.n))
            aux_kind.extend([0] * ps.n)
            aux_scale.extend(ps.sigmas)
            auxdata.extend(ps.auxdata)
            width[sl] = ps.sigmas
        elif ps.constraint == "poisson":
            assert ps.factors is not None and ps.auxdata is not None
            aux_par.extend(range(ps.start, ps.start + ps.n))
            aux_kind.extend([1] * ps.n)
            aux_scale.extend(ps.factors)
            auxdata.extend(ps.auxdata)
            width[sl] = 1.0 / np.sqrt(np.asarray(ps.factors))

    poi_index: int | None = None
    poi_name: str | None = None
    if isinstance(poi, str) and poi in params:
        ps = params[poi]
        if ps.n != 1 or ps.kind not in ("normfactor", "lumi", "normsys", "histosys"):
            raise InvalidWorkspace(
                f"measurement {mname_!r} /config/poi: the POI {poi!r} is a vector "
                f"parameter ({ps.kind}); a POI must be a scalar (normfactor)"
            )
        poi_name, poi_index = poi, ps.start

    # ---- flat entry arrays ----------------------------------------------------------------
    nom_l: list[np.ndarray] = []
    cell_bin_l: list[np.ndarray] = []
    cell_row_l: list[np.ndarray] = []
    rf_row_l: list[np.ndarray] = []
    rf_par_l: list[np.ndarray] = []
    rf_kind_l: list[np.ndarray] = []
    rf_hi_l: list[np.ndarray] = []
    rf_lo_l: list[np.ndarray] = []
    rf_coef_l: list[np.ndarray] = []
    hs_cell_l: list[np.ndarray] = []
    hs_par_l: list[np.ndarray] = []
    hs_up_l: list[np.ndarray] = []
    hs_dn_l: list[np.ndarray] = []
    cf_cell_l: list[np.ndarray] = []
    cf_par_l: list[np.ndarray] = []
    ns_code = settings["normsys"]
    hs_code = settings["histosys"]
    comp_cache: dict[tuple[str, str, str], np.ndarray] = {}
    cell0 = 0
    for ri, r in enumerate(rows):
        nb = r.nbins
        off = offset[r.channel]
        local = np.arange(nb, dtype=np.int64)
        cells = cell0 + local
        nom_l.append(r.nom)
        cell_bin_l.append(off + local)
        cell_row_l.append(np.full(nb, ri, dtype=np.int64))
        if r.rf_names:
            nrf = len(r.rf_names)
            rf_row_l.append(np.full(nrf, ri, dtype=np.int64))
            rf_par_l.append(np.array([params[m].start for m in r.rf_names], dtype=np.int64))
            rf_kind_l.append(np.where(r.rf_is_normsys, ns_code, 0).astype(np.int64))
            rf_hi_l.append(r.rf_hi)
            rf_lo_l.append(r.rf_lo)
            rf_coef_l.append(r.rf_coef)
        if r.hs_names:
            k = len(r.hs_names)
            hs_cell_l.append(np.tile(cells, k))
            hs_par_l.append(
                np.repeat(np.array([params[m].start for m in r.hs_names], dtype=np.int64), nb)
            )
            hs_up_l.append(r.hs_up)
            hs_dn_l.append(r.hs_dn)
        for mname, mtype in r.cf:
            ps = params[mname]
            if mtype == "shapefactor":
                if nb > ps.n:
                    raise InvalidWorkspace(
                        f"{r.where}: shapefactor {mname!r} has {ps.n} parameters but channel "
                        f"{r.channel!r} has {nb} bins"
                    )
                comp = local
            else:
                key = (mtype, mname, r.channel)
                comp_c = comp_cache.get(key)
                if comp_c is None:
                    mb = masked[(mtype, mname)]
                    pos = {b: i for i, b in enumerate(mb)}
                    try:
                        comp_c = np.array([pos[off + j] for j in range(nb)], dtype=np.int64)
                    except KeyError as err:
                        raise InvalidWorkspace(
                            f"{r.where}: {mtype} {mname!r} is carried in channel "
                            f"{r.channel!r} by some samples but in other channels by "
                            "others; pyhf needs the same bins for every sample"
                        ) from err
                    comp_cache[key] = comp_c
                comp = comp_c
            cf_cell_l.append(cells)
            cf_par_l.append(ps.start + comp)
        cell0 += nb

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        if not parts:
            return np.zeros(0, dtype=dtype)
        return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)

    n_hs = sum(len(x) for x in hs_cell_l)
    cm = CompiledModel(
        nom=cat(nom_l, np.float64),
        cell_bin=cat(cell_bin_l, np.int64),
        cell_row=cat(cell_row_l, np.int64),
        n_bins=int(n_bins),
        n_rows=len(rows),
        rf_row=cat(rf_row_l, np.int64),
        rf_par=cat(rf_par_l, np.int64),
        rf_kind=cat(rf_kind_l, np.int64),
        rf_hi=cat(rf_hi_l, np.float64),
        rf_lo=cat(rf_lo_l, np.float64),
        rf_coef=(
            np.ascontiguousarray(np.concatenate(rf_coef_l), dtype=np.float64)
            if rf_coef_l
            else np.zeros((0, 6))
        ),
        cf_cell=cat(cf_cell_l, np.int64),
        cf_par=cat(cf_par_l, np.int64),
        hs_cell=cat(hs_cell_l, np.int64),
        hs_par=cat(hs_par_l, np.int64),
        hs_up=cat(hs_up_l, np.float64),
        hs_dn=cat(hs_dn_l, np.float64),
        hs_kind=np.full(n_hs, hs_code, dtype=np.int64),
        aux_par=as_i8(aux_par),
        aux_kind=as_i8(aux_kind),
        aux_scale=as_f8(aux_scale),
    )
    data = np.concatenate([observations[c] for c in chans]) if chans else np.zeros(0)
    return Model(
        cm,
        parameter_names=tuple(names),
        poi_name=poi_name,
        poi_index=poi_index,
        init=init,
        bounds=bounds,
        fixed=fixed,
        channels=chans,
        channel_nbins={c: int(nbins[c]) for c in chans},
        data=as_f8(data),
        auxdata=as_f8(auxdata),
        widths=width,
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
    ns, hs = "code4", "code4p"
    if modifier_settings:
        for key in modifier_settings:
            if key not in ("normsys", "histosys"):
                raise LikelihoodError(
                    f"modifier_settings: unknown modifier type {key!r}; only 'normsys' "
                    "and 'histosys' have settings"
                )
        ns = modifier_settings.get("normsys", {}).get("interpcode", ns)
        hs = modifier_settings.get("histosys", {}).get("interpcode", hs)
    if ns not in _NORMSYS_CODES:
        raise LikelihoodError(
            f"modifier_settings: normsys interpcode {ns!r} is not supported; use 'code4' or 'code1'"
        )
    if hs not in _HISTOSYS_CODES:
        raise LikelihoodError(
            f"modifier_settings: histosys interpcode {hs!r} is not supported; use 'code4p' or 'code0'"
        )
    return {"normsys": _NORMSYS_CODES[ns], "histosys": _HISTOSYS_CODES[hs]}


def _validate(spec: Mapping[str, Any], source: str | None) -> None:
    try:
        from likelihood.validate import validate_workspace
    except ModuleNotFoundError as err:  # pragma: no cover - during development only
        if err.name != "likelihood.validate":
            raise
        log.warning("likelihood.validate is not available; skipping schema validation")
        return
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
        As pyhf: ``{"normsys": {"interpcode": "code4" | "code1"},
        "histosys": {"interpcode": "code4p" | "code0"}}``; defaults code4 / code4p.
    validate : bool
        Run schema and semantic validation first (:func:`likelihood.validate_workspace`).

    Returns
    -------
    Model
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


_SAMPLE_ADD = re.compile(r"^/channels/(\d+)/samples/(\d+|-)$")
_CHANNEL_REMOVE = re.compile(r"^/channels/(\d+)$")


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
        Validate the background-only workspace once.
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

    def __repr__(self) -> str:
        return f"<likelihood.Background {len(self._parsed.names)} channels>"

    def compile(self) -> Model:
        """The background-only model itself (usually without POI)."""
        rows = [r for rs in self._parsed.rows for r in rs]
        p = self._parsed
        return _assemble(
            p.names, p.nbins, p.observations, rows, self._measurement, self._settings, "workspace"
        )

    def with_patch(
        self, patch_ops: Sequence[Mapping[str, Any]], *, name: str | None = None
    ) -> Model:
        """Model of the background plus one signal patch.

        Identical to ``compile(apply_patch(bkgonly_spec, patch_ops))``.  ``add`` operations
        of samples to existing channels and ``remove`` operations of whole channels are
        applied to the parsed background directly; any other operation falls back to a
        full compile of the patched workspace.

        Parameters
        ----------
        patch_ops : sequence of mappings
            RFC 6902 operations (one patch of a patchset).
        name : str, optional
            Name of the patch, for error messages and ``Model.name``.

        Raises
        ------
        InvalidPatch
            The patch does not apply, or the sample it adds is invalid.
        """
        where = f"patch {name!r}" if name else "patch"
        if not isinstance(patch_ops, Sequence) or isinstance(patch_ops, (str, bytes)):
            raise InvalidPatch(
                f"{where}: a JSON patch is a list of operations, got {type(patch_ops).__name__}"
            )
        p = self._parsed
        current = list(range(len(p.names)))  # JSON index -> original channel index
        extra: dict[int, list[tuple[int | None, Mapping[str, Any], int]]] = {}
        fast = True
        for i, op in enumerate(patch_ops):
            if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
                raise InvalidPatch(
                    f"{where}: operation {i} is not an RFC 6902 operation: {op!r:.200}"
                )
            kind, path = op.get("op"), op.get("path")
            m_add = _SAMPLE_ADD.match(path) if isinstance(path, str) else None
            m_rm = _CHANNEL_REMOVE.match(path) if isinstance(path, str) else None
            if kind == "add" and m_add and isinstance(op.get("value"), Mapping):
                ci = int(m_add.group(1))
                if ci >= len(current):
                    raise InvalidPatch(
                        f"{where}: operation {i} (add {path}) does not apply: the workspace "
                        f"has {len(current)} channels at that point"
                    )
                orig = current[ci]
                n_now = len(p.rows[orig]) + len(extra.get(orig, []))
                j = m_add.group(2)
                if j != "-" and int(j) > n_now:
                    raise InvalidPatch(
                        f"{where}: operation {i} (add {path}) does not apply: channel "
                        f"{p.names[orig]!r} has {n_now} samples at that point"
                    )
                if op["value"].get("name") in {r.sample for r in p.rows[orig]}:
                    fast = False  # a name clash: let the full compile report it
                    break
                extra.setdefault(orig, []).append((None, op["value"], i))
            elif kind == "remove" and m_rm:
                ci = int(m_rm.group(1))
                if ci >= len(current):
                    raise InvalidPatch(
                        f"{where}: operation {i} (remove {path}) does not apply: the "
                        f"workspace has {len(current)} channels at that point"
                    )
                current.pop(ci)
            else:
                fast = False
                break
        if not fast:
            log.debug("%s: not a pure add-samples / remove-channels patch; full compile", where)
            spec = apply_patch(self.spec, patch_ops, source=name)
            model = compile(
                spec,
                measurement=self.measurement_name,
                modifier_settings=self.modifier_settings,
                validate=True,
            )
            model.name = name
            return model
        kept = set(current)
        rows: list[_Row] = []
        for ci in sorted(kept):
            rows.extend(p.rows[ci])
            cname = p.names[ci]
            seen = {r.sample for r in p.rows[ci]}
            for _, sample, i in extra.get(ci, []):
                try:
                    row = _Row(cname, sample, p.nbins[cname], f"{where} operation {i} /value")
                except InvalidWorkspace as err:
                    raise InvalidPatch(str(err)) from err
                if row.sample in seen:
                    raise InvalidPatch(
                        f"{where}: operation {i} adds sample {row.sample!r} twice to channel {cname!r}"
                    )
                seen.add(row.sample)
                rows.append(row)
        names = [p.names[ci] for ci in sorted(kept)]
        try:
            model = _assemble(
                names, p.nbins, p.observations, rows, self._measurement, self._settings, where
            )
        except InvalidWorkspace as err:
            raise InvalidPatch(f"{where}: the patched workspace is invalid: {err}") from err
        model.name = name
        return model
