"""Start policy of the fits that CLs needs: the global minimum, not just a converged fit.

The HistFactory likelihood is not convex.  A histosys or normsys whose up and down
variations go the same way gives a rate that is nearly *even* in its parameter: two minima
at about ``+a`` and ``-a`` (1Lbb ``TtbarFSR`` at -0.55 and +0.54), and the piecewise
interpolation codes add kinks at 0 (a two-channel coupled histosys, code0: minima 1.0
apart in twice-NLL).  A fit converges to the minimum of the basin it starts in, so the
policy is a handful of cheap, deterministic restarts:

1. every fit starts from each of its distinct *starts* (the model's initial values, as
   pyhf, and the minimum of a related fit: the free fit for the conditional ones, the
   neighbouring point's best fit given as ``init``), and keeps the lowest converged one;
2. *mirrored restarts*: the constrained parameters that the lowest fit pulled most (in
   units of their constraint width, at least :data:`PULL_MIN`) are reflected about the
   centre of their constraint, one at a time for the :data:`N_SINGLE` largest pulls and
   all :data:`N_JOINT` largest together; a restart that ends lower by more than
   :data:`AGREE` replaces the fit and the mirroring is repeated from it (at most
   :data:`MAX_ROUNDS` rounds);
3. *cross-fit comparison* (:mod:`likelihood.cls`): fits that share parameters must be
   ordered (the free fit is never above a conditional fit of the same data), and each
   conditional fit is also tried from the other fits' minima with the POI moved.

An independent audit (``tests/test_global_minima.py``: many random starts of scipy's
L-BFGS-B, checked with pyhf's own ``logpdf``) checks that this finds the global minimum
on the points where it once did not, and on a sample of every shared grid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from likelihood.fit import FitResult, _screen, fit
from likelihood.model import Model

__all__ = [
    "PULL_MIN",
    "EVEN_MIN",
    "N_CANDIDATES",
    "SCREEN_ITERS",
    "MAX_ROUNDS",
    "AGREE",
    "evenness",
    "global_fit",
    "key",
]

#: smallest pull (in constraint widths) worth a mirrored restart
PULL_MIN = 0.15
#: only parameters at least this even (:func:`evenness`) have a mirror minimum worth a look
EVEN_MIN = 0.5
#: at most this many parameters are mirrored (one at a time) per round
N_CANDIDATES = 6
#: Newton iterations of the first look at a mirrored start
SCREEN_ITERS = 3
#: rounds of mirroring after an improvement
MAX_ROUNDS = 3
#: two minima differ when their twice-NLL differ by more than this
AGREE = 1e-7


def key(r: FitResult) -> float:
    """Sort key of fit results: converged fits by twice-NLL, failed ones last."""
    if r.success and math.isfinite(r.twice_nll):
        return float(r.twice_nll)
    return math.inf


def _lowest(results: list[FitResult]) -> FitResult:
    ok = [r for r in results if key(r) < math.inf]
    if ok:
        return min(ok, key=key)
    finite = [r for r in results if math.isfinite(r.twice_nll)]
    return min(finite, key=lambda r: r.twice_nll) if finite else results[0]


def evenness(model: Model) -> np.ndarray:
    """How even the rates are in each parameter, shape (n_pars,), in [0, 1] (NaN: none).

    Per histosys entry the even part of the variation is ``|up - dn| / 2`` and the odd part
    ``|up + dn| / 2`` (``up = hi - nom``, ``dn = nom - lo``); per normsys entry the same of
    ``hi - 1`` and ``1 - lo``, times the row's nominal yield.  Summed per parameter,
    ``even / (even + odd)``: near 1 for a systematic whose up and down variations go the
    same way (one-sided, symmetrised), whose twice-NLL has two minima at about +-a.
    Computed once per model.
    """
    cached = model.__dict__.get("_evenness")
    if cached is not None:
        return cached
    cm = model.compiled
    even = np.zeros(model.n_pars)
    odd = np.zeros(model.n_pars)
    np.add.at(even, cm.hs_par, np.abs(cm.hs_up - cm.hs_dn) / 2)
    np.add.at(odd, cm.hs_par, np.abs(cm.hs_up + cm.hs_dn) / 2)
    row_total = np.bincount(cm.cell_row, weights=cm.nom, minlength=cm.n_rows)
    ns = cm.rf_kind != 0
    t = row_total[cm.rf_row[ns]]
    hi, lo = cm.rf_hi[ns], cm.rf_lo[ns]
    np.add.at(even, cm.rf_par[ns], np.abs(hi + lo - 2.0) / 2 * t)
    np.add.at(odd, cm.rf_par[ns], np.abs(hi - lo) / 2 * t)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = even / (even + odd)
    out.setflags(write=False)
    model.__dict__["_evenness"] = out
    return out


def _candidates(
    model: Model, pars: np.ndarray, start: np.ndarray, fixed: np.ndarray, centre: np.ndarray
) -> list[tuple[int, float]]:
    """(parameter, mirrored value) of the Gaussian-constrained free parameters worth a
    mirrored restart, most promising first: pulled at least PULL_MIN widths from the
    centre of their constraint, ranked by pull plus distance moved during the fit, each
    weighted by how even the rates are in it."""
    cm = model.compiled
    gauss = np.flatnonzero(cm.aux_kind == 0)
    p = cm.aux_par[gauss]
    keep = ~fixed[p]
    gauss, p = gauss[keep], p[keep]
    if p.size == 0:
        return []
    sigma = cm.aux_scale[gauss]
    pull = (pars[p] - centre[gauss]) / sigma
    moved = (pars[p] - start[p]) / sigma
    ev = np.nan_to_num(evenness(model)[p])
    score = (np.abs(pull) + np.abs(moved)) * (0.25 + ev)
    order = np.argsort(-score, kind="stable")
    good = (np.abs(pull[order]) >= PULL_MIN) & (ev[order] >= EVEN_MIN)
    order = order[good][:N_CANDIDATES]
    lo, hi = model.bounds[p, 0], model.bounds[p, 1]
    mirrored = np.clip(2.0 * centre[gauss] - pars[p], lo, hi)
    return [(int(p[k]), float(mirrored[k])) for k in order]


def global_fit(
    model: Model,
    starts: list[np.ndarray],
    *,
    data: Any = None,
    auxdata: Any = None,
    fixed_poi: float | None = None,
    mirror: bool = True,
) -> FitResult:
    """Lowest minimum from ``starts`` and the mirrored restarts of the start policy.

    Parameters
    ----------
    model : Model
    starts : list of ndarray (n_pars,)
        Starting points; duplicates are fitted once.
    data, auxdata, fixed_poi
        As :func:`likelihood.fit.fit`.
    mirror : bool
        Try the mirrored restarts (False: only ``starts``, for a warm start from a global
        minimum at a neighbouring mu that is verified at the end, as in upper limits).

    Returns
    -------
    FitResult
        The lowest converged fit (or the lowest failed one when none converged); its
        ``n_iter`` counts the iterations of every fit tried.
    """
    tried: list[np.ndarray] = []
    n_iter = 0
    results: list[FitResult] = []
    for st in starts:
        if any(np.array_equal(st, s2) for s2 in tried):
            continue
        tried.append(st)
        r = fit(model, init=st, data=data, auxdata=auxdata, fixed_poi=fixed_poi)
        n_iter += r.n_iter
        results.append(r)
    best = _lowest(results)
    if key(best) == math.inf or not mirror:
        return best._replace(n_iter=n_iter)
    fixed = model.fixed.copy()
    if fixed_poi is not None and model.poi_index is not None:
        fixed[model.poi_index] = True
    centre = model.auxdata if auxdata is None else np.asarray(auxdata, dtype=np.float64)
    start = min(tried, key=lambda st: float(np.sum(np.abs(st - best.pars))))
    kw = {"data": data, "auxdata": auxdata, "fixed_poi": fixed_poi}
    for _ in range(MAX_ROUNDS):
        improved = False
        for par, value in _candidates(model, best.pars, start, fixed, centre):
            st = best.pars.copy()
            st[par] = value
            # a first look of a few iterations; a full fit only where it is already lower
            x, v = _screen(model, st, max_iter=SCREEN_ITERS, **kw)
            if not v < key(best) - AGREE:
                continue
            r = fit(model, init=x, **kw)
            n_iter += r.n_iter
            if key(r) < key(best) - AGREE:
                start = best.pars
                best, improved = r, True
        if not improved:
            break
    return best._replace(n_iter=n_iter)
