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
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import gammaln

from likelihood.errors import LikelihoodError
from likelihood.spec import apply_patch, get_measurement
from likelihood.validate import MODIFIER_TYPES, PatchPlan, PatchTarget, validate_workspace

__all__ = [
    "compile",
    "Model",
    "Background",
    "CompiledModel",
    "as_f8",
    "as_i8",
    "lgamma1",
    "poisson_saturated",
    "MODIFIER_TYPES",
]

log = logging.getLogger(__name__)

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
    """Flat arrays of a compiled model, in the argument order of the kernels.

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
    )

    def __init__(self, channel: str, sample: Mapping[str, Any], nbins: int, where: str) -> None:
        self.channel = channel
        self.where = where
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

    params: dict[str, _ParamSet] = {}
    for g in groups:
        for mname, ps in g.items():
            if mname not in params:
                params[mname] = ps

    # ---- measurement settings ---------------------------------------------------------
    config = measurement.get("config", {}) if isinstance(measurement, Mapping) else {}
    mname_ = measurement.get("name") if isinstance(measurement, Mapping) else None
    poi = config.get("poi") if isinstance(config, Mapping) else None
    user = {p["name"]: p for p in config.get("parameters", [])}
    start = 0
    for name, ps in params.items():
        _defaults(ps)
        if name in user:
            _apply_config(ps, user[name])
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
                comp = local
            else:
                key = (mtype, mname, r.channel)
                comp_c = comp_cache.get(key)
                if comp_c is None:
                    mb = masked[(mtype, mname)]
                    pos = {b: i for i, b in enumerate(mb)}
                    comp_c = np.array([pos[off + j] for j in range(nb)], dtype=np.int64)
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

    def _data(self, data: Any, auxdata: Any) -> tuple[np.ndarray, ...]:
        """Kernel inputs: data, lgamma(data + 1), auxdata, lgamma(aux + 1), saturated(aux)."""
        if data is None:
            d, dlg = self._data_k, self._data_lg
        else:
            d = as_f8(data)
            if d.shape != self.data.shape:
                raise ValueError(f"expected data of shape {self.data.shape}, got {d.shape}")
            dlg = lgamma1(d)
        if auxdata is None:
            a, alg, asat = self._aux_k, self._aux_lg, self._aux_sat
        else:
            a = as_f8(auxdata)
            if a.shape != self.auxdata.shape:
                raise ValueError(f"expected auxdata of shape {self.auxdata.shape}, got {a.shape}")
            alg, asat = lgamma1(a), poisson_saturated(a)
        return d, dlg, a, alg, asat

    def expected_actualdata(self, pars: Any) -> np.ndarray:
        """Expected main-bin counts, shape (n_main_bins,), channels in ``channels`` order."""
        from likelihood import _kernels

        return _kernels.rates(self._pars(pars), *self.compiled)

    def expected_auxdata(self, pars: Any) -> np.ndarray:
        """Expected auxiliary data, shape (n_aux,): the Asimov auxdata of ``pars``."""
        from likelihood import _kernels

        cm = self.compiled
        return _kernels.expected_auxdata(self._pars(pars), cm.aux_par, cm.aux_kind, cm.aux_scale)

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

        d, dlg, a, alg, asat = self._data(data, auxdata)
        return float(
            _kernels.twice_nll(self._pars(pars), d, dlg, a, alg, asat, bool(stable), *self.compiled)
        )

    def twice_nll_and_grad(
        self, pars: Any, data: Any = None, auxdata: Any = None, *, stable: bool = False
    ) -> tuple[float, np.ndarray]:
        """``-2 log L`` and its analytic gradient, shape (n_pars,) (``stable`` as twice_nll)."""
        from likelihood import _kernels

        d, dlg, a, alg, asat = self._data(data, auxdata)
        v, g = _kernels.twice_nll_grad(
            self._pars(pars), d, dlg, a, alg, asat, bool(stable), *self.compiled
        )
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
        p = self._parsed
        extra: dict[int, list[_Row]] = {}
        for a in plan.added:
            cname = p.names[a.channel]
            extra.setdefault(a.channel, []).append(
                _Row(cname, a.sample, p.nbins[cname], f"operation {a.op} /value")
            )
        rows: list[_Row] = []
        for ci in sorted(plan.kept):
            rows.extend(p.rows[ci])
            rows.extend(extra.get(ci, ()))
        names = [p.names[ci] for ci in sorted(plan.kept)]
        return _assemble(
            names, p.nbins, p.observations, rows, self._measurement, self._settings, "workspace"
        )
