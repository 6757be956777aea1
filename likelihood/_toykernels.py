"""numba kernels of the toy loop: the test statistic of a block of pseudo-experiments.

:func:`fit_toys` fits every toy of a block without returning to Python: for each toy it
builds the toy's :class:`likelihood.model.KernelData` (the Poisson constants are computed
for the whole block beforehand, with the same functions as :meth:`Model.kernel_data`, so
that a toy sees exactly the constants a Python fit of it would see) and calls the fits'
own kernel, :func:`likelihood._kernels.newton_minimize`, for the free fit and, where the
statistic needs it, the conditional fit, each warm-started from the generating point.
A toy whose fits do not all converge (by :func:`likelihood._kernels.convergence`'s test,
the one of every fit) is flagged, not given a number: :mod:`likelihood.toys` refits it in
Python with the full start policy.

Jit options as :mod:`likelihood._kernels` (``cache=True, error_model="numpy", nogil=True``);
kernels never raise and never validate.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from likelihood._kernels import newton_minimize, rates, scaled_value_grad
from likelihood.model import KernelData

__all__ = [
    "fit_toys",
    "StartPolicy",
    "TOY_OK",
    "TOY_FREE_FAILED",
    "TOY_COND_FAILED",
    "TOY_REFIT_FAILED",
]

_jit = njit(cache=True, error_model="numpy", nogil=True)


class StartPolicy(NamedTuple):
    """The start policy of the toy fits (the constants of :mod:`likelihood._minima`)."""

    mirror: bool  # mirrored restarts (as likelihood._minima.global_fit)
    evenness: np.ndarray  # (n_pars,) likelihood._minima.evenness(model)
    pull_min: float
    even_min: float
    n_cand: int
    screen_iters: int
    max_rounds: int
    agree: float


#: per-toy status of :func:`fit_toys`: every fit converged
TOY_OK = 0
#: the free fit did not converge (the Newton code is in ``codes``)
TOY_FREE_FAILED = 1
#: the conditional fit did not converge
TOY_COND_FAILED = 2
#: the conditional minimum was below the free one and the free refit from it failed
TOY_REFIT_FAILED = 3


@_jit
def _x_of(theta, box):  # pragma: no cover - compiled
    """Scaled free coordinates of the full vector ``theta``, clipped to the box."""
    nf = box.free.shape[0]
    x = np.empty(nf)
    for a in range(nf):
        v = theta[box.free[a]] / box.w[a]
        x[a] = min(max(v, box.lo[a]), box.hi[a])
    return x


@_jit
def _theta(x, box):  # pragma: no cover - compiled
    theta = box.base.copy()
    for a in range(box.free.shape[0]):
        theta[box.free[a]] = x[a] * box.w[a]
    return theta


#: barrier weights of the empty-bin continuation (:func:`_fit`): the last one bounds the
#: twice-NLL error of a minimum on the ``rate = 0`` boundary by about ``2 * 1e-10`` per
#: empty bin.  (On 1Lbb wall toys (1, 1e-2, ..., 1e-10) and (1e-2, 1e-6, 1e-10) end at
#: the same twice-NLL to 1e-7; this schedule takes the fewest Newton iterations.)
BARRIER_EPS = (1e-1, 1e-4, 1e-7, 1e-10)
#: an empty bin whose rate at the end of the barrier path is below this is on the wall
#: (the barrier holds it at ~eps): the minimum is the constrained one, no polish
WALL_RATE = 1e-6


@_jit
def _fit(x0, box, cm, kd, max_iter, edm_tol, max_step):  # pragma: no cover - compiled
    """A toy fit: Newton from ``x0``; where it stalls at the edge of the physical region
    (an empty main bin whose rate reaches 0: the Poisson term ``2 nu`` of ``n = 0`` is
    finite at ``nu = 0`` and infinite below, a wall that the kernel's box-bounded active
    set does not know), the minimum on that wall by a log-barrier continuation.

    The continuation replaces every ``n = 0`` by ``eps`` (the term becomes
    ``2 (nu - eps ln nu)``, a barrier that the kernel's Gauss-Newton Hessian models
    exactly) for ``eps`` in :data:`BARRIER_EPS`, each fit warm-started from the previous
    one: the interior-point path to the constrained minimum.  If an empty bin's rate is
    then held at ~eps (below :data:`WALL_RATE`), that is the minimum on the wall;
    otherwise the minimum is inside and the end is polished with the plain likelihood (of
    the two, both in the physical region, the lower is kept).

    Returns (x, twice-NLL of the true data, iterations, code, on_wall): code 0 when the
    plain fit converged or the last barrier fit did; ``on_wall`` when the barrier path
    gave the minimum.
    """
    x, v, it, code, _edm = newton_minimize(x0, box, cm, kd, max_iter, edm_tol, max_step)
    if code == 0 and math.isfinite(v):
        return x, v, it, 0, False
    n_bins = kd.data.shape[0]
    empty = 0
    for b in range(n_bins):
        if kd.data[b] == 0.0:
            empty += 1
    if empty == 0:
        return x, v, it, code, False
    first_code = code
    xb = x0.copy()
    ok = True
    for eps in BARRIER_EPS:
        d = kd.data.copy()
        lg = kd.data_lg.copy()
        for b in range(n_bins):
            if kd.data[b] == 0.0:
                d[b] = eps
                lg[b] = math.lgamma(eps + 1.0)
        kb = KernelData(d, lg, kd.auxdata, kd.aux_lg, kd.aux_sat, kd.stable)
        xb, vb, itb, cb, _edm = newton_minimize(xb, box, cm, kb, max_iter, edm_tol, max_step)
        it += itb
        if not math.isfinite(vb):
            ok = False
            break
        ok = cb == 0
    if not ok:
        return x, v, it, first_code, False
    vb, _g = scaled_value_grad(xb, box, cm, kd)
    if not math.isfinite(vb):
        return x, v, it, first_code, False
    lam = rates(_theta(xb, box), cm)
    for b in range(n_bins):
        if kd.data[b] == 0.0 and lam[b] < WALL_RATE:
            return xb, vb, it, 0, True
    # polish with the true likelihood: an interior minimum converges, a wall one stalls
    xp, vp, itp, cp, _edm = newton_minimize(xb, box, cm, kd, max_iter, edm_tol, max_step)
    it += itp
    if cp == 0 and math.isfinite(vp):
        return xp, vp, it, 0, False
    if math.isfinite(vp) and vp < vb:
        return xp, vp, it, 0, True
    return xb, vb, it, 0, True


@_jit
def _candidates(
    theta, start, box, cm, centre, evenness, pull_min, even_min, n_cand
):  # pragma: no cover - compiled
    """(parameters, mirrored values) worth a mirrored restart, most promising first: the
    rule of :func:`likelihood._minima._candidates` (Gaussian-constrained free parameters
    pulled at least ``pull_min`` widths from the centre of their constraint, at least
    ``even_min`` even, ranked by pull plus distance moved, weighted by evenness)."""
    n_pars = theta.shape[0]
    pos = np.full(n_pars, -1, dtype=np.int64)
    for a in range(box.free.shape[0]):
        pos[box.free[a]] = a
    n_aux = cm.aux_par.shape[0]
    ks = np.empty(n_aux, dtype=np.int64)
    m = 0
    for k in range(n_aux):
        if cm.aux_kind[k] == 0 and pos[cm.aux_par[k]] >= 0:
            ks[m] = k
            m += 1
    ks = ks[:m]
    score = np.empty(m)
    ok = np.zeros(m, dtype=np.bool_)
    for j in range(m):
        k = ks[j]
        p = cm.aux_par[k]
        sigma = cm.aux_scale[k]
        pull = (theta[p] - centre[k]) / sigma
        moved = (theta[p] - start[p]) / sigma
        ev = evenness[p]
        if not math.isfinite(ev):
            ev = 0.0
        score[j] = (abs(pull) + abs(moved)) * (0.25 + ev)
        ok[j] = abs(pull) >= pull_min and ev >= even_min
    order = np.argsort(-score, kind="mergesort")
    pars = np.empty(n_cand, dtype=np.int64)
    vals = np.empty(n_cand)
    c = 0
    for j in order:
        if c >= n_cand:
            break
        if not ok[j]:
            continue
        k = ks[j]
        p = cm.aux_par[k]
        a = pos[p]
        lo = box.lo[a] * box.w[a]
        hi = box.hi[a] * box.w[a]
        pars[c] = p
        vals[c] = min(max(2.0 * centre[k] - theta[p], lo), hi)
        c += 1
    return pars[:c], vals[:c]


@_jit
def _global_fit(starts, box, cm, kd, max_iter, edm_tol, max_step, pol):  # pragma: no cover
    """Lowest converged fit from each of ``starts`` (n_starts, n_pars) and, with
    ``pol.mirror``, the mirrored restarts of :func:`likelihood._minima.global_fit` (same
    rule, same constants).  Returns (theta, twice-NLL, iterations, code, on_wall):
    code 0 when a converged fit was found, else the Newton code of the first start."""
    best_x = np.empty(0)
    best_v = math.inf
    best_wall = False
    first_code = -1
    it = 0
    for s in range(starts.shape[0]):
        x, v, its, code, wall = _fit(
            _x_of(starts[s], box), box, cm, kd, max_iter, edm_tol, max_step
        )
        it += its
        if first_code < 0:
            first_code = code
        if code == 0 and math.isfinite(v) and v < best_v:
            best_x, best_v, best_wall = x, v, wall
    if not best_v < math.inf:
        return _theta(_x_of(starts[0], box), box), math.nan, it, max(first_code, 1), False
    best = _theta(best_x, box)
    if not pol.mirror:
        return best, best_v, it, 0, best_wall
    # the start closest to the minimum, as global_fit (L1)
    start = starts[0].copy()
    dmin = math.inf
    for s in range(starts.shape[0]):
        d = 0.0
        for p in range(best.shape[0]):
            d += abs(starts[s, p] - best[p])
        if d < dmin:
            dmin = d
            start = starts[s].copy()
    for _round in range(pol.max_rounds):
        improved = False
        pars, vals = _candidates(
            best, start, box, cm, kd.auxdata, pol.evenness, pol.pull_min, pol.even_min, pol.n_cand
        )
        for c in range(pars.shape[0]):
            st = best.copy()
            st[pars[c]] = vals[c]
            xs, vs, its, _code, _edm = newton_minimize(
                _x_of(st, box), box, cm, kd, pol.screen_iters, edm_tol, max_step
            )
            it += its
            if not vs < best_v - pol.agree:
                continue
            x, v, its, code, wall = _fit(xs, box, cm, kd, max_iter, edm_tol, max_step)
            it += its
            if code == 0 and math.isfinite(v) and v < best_v - pol.agree:
                start = best
                best = _theta(x, box)
                best_v = v
                best_wall = wall
                improved = True
        if not improved:
            break
    return best, best_v, it, 0, best_wall


@_jit
def fit_toys(
    cm,
    data,
    data_lg,
    aux,
    aux_lg,
    aux_sat,
    box_free,
    box_cond,
    starts,
    cond_starts,
    poi,
    mu,
    discovery,
    max_iter,
    edm_tol,
    max_step,
    nll_tol,
    pol,
):  # pragma: no cover - compiled
    """Test statistics of a block of toys.

    Parameters
    ----------
    cm : CompiledModel
    data, data_lg : (n_toys, n_bins) main counts and ``lgamma(n + 1)``
    aux, aux_lg, aux_sat : (n_toys, n_aux) auxdata, ``lgamma(a + 1)`` and
        ``poisson_saturated(a)``
    box_free, box_cond : fit.Box of the free fit and of the fit with the POI at ``mu``
        (``box_cond.base[poi] == mu``)
    starts : (n_starts, n_pars) starting points of the free fits (the generating point
        first)
    cond_starts : (n_cond, n_pars) starting points of the conditional fits besides the
        free minimum (their POI is set to ``mu``); may be empty
    poi : index of the POI; mu : tested value; discovery : q0 (True) or q / qtilde
    max_iter, edm_tol, max_step : of :func:`newton_minimize`
    nll_tol : a conditional twice-NLL this much below the free one means the free fit
        missed the minimum: it is refitted from the conditional minimum
    pol : :class:`StartPolicy`

    Returns
    -------
    q : (n_toys,) test statistics (NaN where ``status != 0``)
    status : (n_toys,) int64, TOY_OK or the TOY_*_FAILED of the first fit that failed
    codes : (n_toys,) int64, the Newton code of that fit (0 if none failed)
    mu_hat, nll_free, nll_cond : (n_toys,) free-fit POI and the two twice-NLL (NaN where
        the conditional fit was not needed)
    iters : (n_toys,) int64, Newton iterations of all the toy's fits
    n_wall : (n_toys,) int64, fits whose minimum is on an empty bin's ``rate = 0`` wall
    """
    n = data.shape[0]
    n_pars = starts.shape[1]
    q = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int64)
    codes = np.zeros(n, dtype=np.int64)
    mu_hat = np.full(n, np.nan)
    nll_free = np.full(n, np.nan)
    nll_cond = np.full(n, np.nan)
    iters = np.zeros(n, dtype=np.int64)
    n_wall = np.zeros(n, dtype=np.int64)
    # the conditional fits start from the free minimum (first: it is the closest, ~40%
    # fewer iterations than from the generating point) and from ``cond_starts``, each
    # with the POI at mu
    n_st = cond_starts.shape[0]
    cstarts = np.empty((n_st + 1, n_pars))
    for s in range(n_st):
        cstarts[s + 1] = cond_starts[s]
        cstarts[s + 1, poi] = mu
    for i in range(n):
        kd = KernelData(data[i], data_lg[i], aux[i], aux_lg[i], aux_sat[i], True)
        tf, vf, it, code, wall = _global_fit(
            starts, box_free, cm, kd, max_iter, edm_tol, max_step, pol
        )
        iters[i] += it
        n_wall[i] += wall
        if code != 0:
            status[i] = TOY_FREE_FAILED
            codes[i] = code
            continue
        mh = tf[poi]
        mu_hat[i] = mh
        nll_free[i] = vf
        if (discovery and mh <= mu) or ((not discovery) and mh > mu):
            q[i] = 0.0
            continue
        cstarts[0] = tf
        cstarts[0, poi] = mu
        tc, vc, it, code, wall = _global_fit(
            cstarts, box_cond, cm, kd, max_iter, edm_tol, max_step, pol
        )
        iters[i] += it
        n_wall[i] += wall
        if code != 0:
            status[i] = TOY_COND_FAILED
            codes[i] = code
            continue
        nll_cond[i] = vc
        if vc < vf - nll_tol:
            # the free fit ended in a higher minimum than the conditional one: the free
            # minimum can only be lower, so refit it from the conditional minimum
            tr, vr, it, code, wall = _global_fit(
                tc.reshape((1, n_pars)), box_free, cm, kd, max_iter, edm_tol, max_step, pol
            )
            iters[i] += it
            n_wall[i] += wall
            if code != 0:
                status[i] = TOY_REFIT_FAILED
                codes[i] = code
                continue
            if vr < vf:
                vf = vr
                mh = tr[poi]
                mu_hat[i] = mh
                nll_free[i] = vf
                if (discovery and mh <= mu) or ((not discovery) and mh > mu):
                    q[i] = 0.0
                    continue
        q[i] = max(vc - vf, 0.0)
    return q, status, codes, mu_hat, nll_free, nll_cond, iters, n_wall
