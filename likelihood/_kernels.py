"""numba kernels of the HistFactory core: expected rates, twice-NLL and its analytic gradient.

Every function here is ``@njit(cache=True, error_model="numpy")`` and imports only numpy,
math, numba and the stdlib-only constants of :mod:`likelihood._codes`.  Kernels never validate and never raise: a bad input gives ``inf`` or
``nan`` and the caller checks.  Their arguments are NamedTuples of arrays (always float64 /
int64 and C-contiguous, see :func:`likelihood.model.as_f8`): the model ``cm``
(:class:`likelihood.model.CompiledModel`), the data ``kd``
(:class:`likelihood.model.KernelData`: main data, auxdata, their Poisson constants and the
``stable`` flag) and, for the fits in scaled coordinates, ``box``
(:class:`likelihood.fit.Box`).

Layout (see :mod:`likelihood.model`): the model is a list of *cells*, one per (sample,
channel, bin); cell ``c`` has nominal yield ``nom[c]``, belongs to main bin ``cell_bin[c]``
and to row (sample in a channel) ``cell_row[c]``.  Its rate is

    rate_c = (nom_c + sum_k delta_k(alpha_k)) * prod_j f_j(theta_j) * prod_i gamma_i

with the additive histosys ``delta_k`` (entries ``hs_*``, per cell), the row-wide factors
``f_j`` (normfactor / lumi: ``theta``; normsys: interpolated, entries ``rf_*``) and the per-cell
factors ``gamma_i`` (shapesys, staterror, shapefactor: the parameter itself, entries
``cf_*``), exactly as pyhf's ``_MainModel.expected_data``.  The main bins are Poisson, the
constraints Gaussian (``aux_kind == 0``, width ``aux_scale``) or Poisson with rate
``theta * aux_scale`` (``aux_kind == 1``, shapesys).  All constants are kept: the result
equals pyhf's ``-2 * model.logpdf(pars, data)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# row-factor kinds (rf_kind) and histosys kinds (hs_kind) are defined once, in _codes
from likelihood._codes import HS_CODE2, HS_CODE4P, RF_CODE4, RF_LINEAR

__all__ = [
    "LOG_2PI",
    "rates",
    "twice_nll",
    "twice_nll_grad",
    "expected_auxdata",
    "rowfactor_eval",
    "histosys_eval",
    "scaled_value_grad",
    "scaled_state",
    "convergence",
    "newton_minimize",
]

LOG_2PI = math.log(2.0 * math.pi)


# one place for the jit options of every kernel
_jit = njit(cache=True, error_model="numpy", nogil=True)


@_jit
def rowfactor_eval(kind, theta, hi, lo, coef):  # pragma: no cover - compiled
    """Value and derivative of one row factor (normfactor, lumi, normsys code4 / code1).

    normsys code1 (piecewise exponential): ``hi^alpha`` for alpha > 0, ``lo^-alpha``
    otherwise.  code4: the same for |alpha| >= 1; inside, ``1 + sum_i coef[i-1] alpha^i``
    (i = 1..6), the polynomial whose value and first two derivatives match the exponential
    branches at alpha = +-1 (pyhf's code4 with alpha0 = 1).
    """
    if kind == RF_LINEAR:
        return theta, 1.0
    if kind == RF_CODE4:
        if theta >= 1.0:
            v = hi**theta
            return v, v * math.log(hi)
        if theta > -1.0:
            a = theta
            v = 1.0 + a * (
                coef[0]
                + a * (coef[1] + a * (coef[2] + a * (coef[3] + a * (coef[4] + a * coef[5]))))
            )
            d = coef[0] + a * (
                2.0 * coef[1]
                + a
                * (3.0 * coef[2] + a * (4.0 * coef[3] + a * (5.0 * coef[4] + a * 6.0 * coef[5])))
            )
            return v, d
        v = lo ** (-theta)
        return v, -v * math.log(lo)
    # RF_CODE1
    if theta > 0.0:
        v = hi**theta
        return v, v * math.log(hi)
    v = lo ** (-theta)
    return v, -v * math.log(lo)


@_jit
def histosys_eval(kind, alpha, up, dn):  # pragma: no cover - compiled
    """Additive histosys delta and its derivative; ``up = hi - nom``, ``dn = nom - lo``.

    code0: ``alpha up`` (alpha > 0) or ``alpha dn``.  code4p: the same for |alpha| > 1,
    inside ``alpha S + A alpha^2 (15 - 10 alpha^2 + 3 alpha^4)`` with ``S = (up + dn) / 2``,
    ``A = (up - dn) / 16``.  code2: ``a alpha^2 + b alpha`` for |alpha| <= 1 with
    ``a = (up - dn) / 2``, ``b = (up + dn) / 2``, continued linearly with slope
    ``b +- 2a`` from ``up`` at alpha = 1 and from ``-dn`` at alpha = -1 (HistFactory's
    code 2, CERN-OPEN-2012-016; continuous, unlike pyhf 0.7.6 outside |alpha| <= 1).
    """
    if kind == HS_CODE4P:
        if alpha > 1.0:
            return alpha * up, up
        if alpha < -1.0:
            return alpha * dn, dn
        s = 0.5 * (up + dn)
        a = 0.0625 * (up - dn)
        a2 = alpha * alpha
        v = alpha * s + a * a2 * (a2 * (a2 * 3.0 - 10.0) + 15.0)
        d = s + a * alpha * (30.0 + a2 * (-40.0 + 18.0 * a2))
        return v, d
    if kind == HS_CODE2:
        a = 0.5 * (up - dn)
        b = 0.5 * (up + dn)
        if alpha > 1.0:
            return up + (b + 2.0 * a) * (alpha - 1.0), b + 2.0 * a
        if alpha < -1.0:
            return -dn + (b - 2.0 * a) * (alpha + 1.0), b - 2.0 * a
        return alpha * (a * alpha + b), 2.0 * a * alpha + b
    # HS_CODE0: piecewise linear
    if alpha > 0.0:
        return alpha * up, up
    return alpha * dn, dn


@_jit
def _cell_state(pars, cm):  # pragma: no cover - compiled
    """Per-entry values/derivatives and per-row / per-cell products (zero-safe)."""
    n_cells = cm.nom.shape[0]
    n_rf = cm.rf_row.shape[0]
    rf_v = np.empty(n_rf)
    rf_d = np.empty(n_rf)
    row_pnz = np.ones(cm.n_rows)  # product of the non-zero factors
    row_nz = np.zeros(cm.n_rows, dtype=np.int64)  # number of zero factors
    for e in range(n_rf):
        v, d = rowfactor_eval(
            cm.rf_kind[e], pars[cm.rf_par[e]], cm.rf_hi[e], cm.rf_lo[e], cm.rf_coef[e]
        )
        rf_v[e] = v
        rf_d[e] = d
        r = cm.rf_row[e]
        if v == 0.0:
            row_nz[r] += 1
        else:
            row_pnz[r] *= v
    n_hs = cm.hs_cell.shape[0]
    hs_d = np.empty(n_hs)
    acc = cm.nom.copy()  # nominal + sum of additive deltas
    for e in range(n_hs):
        v, d = histosys_eval(cm.hs_kind[e], pars[cm.hs_par[e]], cm.hs_up[e], cm.hs_dn[e])
        acc[cm.hs_cell[e]] += v
        hs_d[e] = d
    cell_pnz = np.ones(n_cells)
    cell_nz = np.zeros(n_cells, dtype=np.int64)
    for e in range(cm.cf_cell.shape[0]):
        v = pars[cm.cf_par[e]]
        c = cm.cf_cell[e]
        if v == 0.0:
            cell_nz[c] += 1
        else:
            cell_pnz[c] *= v
    return rf_v, rf_d, row_pnz, row_nz, hs_d, acc, cell_pnz, cell_nz


@_jit
def rates(pars, cm):  # pragma: no cover - compiled
    """Expected main-bin rates, shape (n_bins,)."""
    _rf_v, _rf_d, row_pnz, row_nz, _hs_d, acc, cell_pnz, cell_nz = _cell_state(pars, cm)
    lam = np.zeros(cm.n_bins)
    for c in range(cm.nom.shape[0]):
        r = cm.cell_row[c]
        if row_nz[r] > 0 or cell_nz[c] > 0:
            continue
        lam[cm.cell_bin[c]] += acc[c] * row_pnz[r] * cell_pnz[c]
    return lam


@_jit
def expected_auxdata(pars, cm):  # pragma: no cover - compiled
    """Expected auxiliary data: ``theta`` (Gaussian) or ``theta * factor`` (Poisson)."""
    out = np.empty(cm.aux_par.shape[0])
    for k in range(cm.aux_par.shape[0]):
        t = pars[cm.aux_par[k]]
        out[k] = t if cm.aux_kind[k] == 0 else t * cm.aux_scale[k]
    return out


@_jit
def _poisson_term(n, lam, lgam):  # pragma: no cover - compiled
    """-2 log Poisson(n | lam), ``lgam = lgamma(n + 1)`` given (continuous n, as pyhf)."""
    if n == 0.0:
        # a Poisson mean is >= 0: a negative rate is outside the model (toys with n = 0
        # would otherwise run to -inf along a histosys extrapolation)
        return 2.0 * lam if lam >= 0.0 else math.inf
    if lam <= 0.0:
        return math.inf if lam == 0.0 else math.nan
    return -2.0 * (n * math.log(lam) - lam - lgam)


@_jit
def _poisson_deviance(a, lam):  # pragma: no cover - compiled
    """``2 [lam - a - a log(lam / a)]`` without cancellation (a > 0, lam > 0)."""
    eps = (lam - a) / a
    if abs(eps) < 1e-3:
        # eps - log1p(eps) = eps^2/2 - eps^3/3 + eps^4/4 - ...
        series = eps * eps * (0.5 - eps * (1.0 / 3.0 - eps * (0.25 - eps * (0.2 - eps / 6.0))))
        return 2.0 * a * series
    return 2.0 * a * (eps - math.log1p(eps))


@_jit
def _constraint(pars, cm, kd, grad, want_grad):  # pragma: no cover - compiled
    """Constraint terms of twice-NLL; adds their gradient to ``grad`` if ``want_grad``."""
    total = 0.0
    for k in range(cm.aux_par.shape[0]):
        p = cm.aux_par[k]
        t = pars[p]
        a = kd.auxdata[k]
        s = cm.aux_scale[k]
        if cm.aux_kind[k] == 0:
            z = (a - t) / s
            total += z * z + 2.0 * math.log(s) + LOG_2PI
            if want_grad:
                grad[p] += -2.0 * z / s
        else:
            lam = t * s
            if kd.stable and a > 0.0 and lam > 0.0:
                # deviance + saturated constant: exact differences even for tau ~ 1e11
                total += _poisson_deviance(a, lam) + kd.aux_sat[k]
            else:
                total += _poisson_term(a, lam, kd.aux_lg[k])
            if want_grad:
                grad[p] += -2.0 * (a / t - s) if a != 0.0 else 2.0 * s
    return total


@_jit
def twice_nll(pars, cm, kd):  # pragma: no cover - compiled
    """-2 log L(pars | kd.data, kd.auxdata) with all constants (float)."""
    lam = rates(pars, cm)
    total = 0.0
    for b in range(cm.n_bins):
        total += _poisson_term(kd.data[b], lam[b], kd.data_lg[b])
    total += _constraint(pars, cm, kd, np.empty(0), False)
    return total


@_jit
def _value_and_jacobian(pars, cm, kd, want_jac):  # pragma: no cover - compiled
    """Twice-NLL, gradient (n_pars,), the rates (n_bins,) and optionally their Jacobian
    (n_bins, n_pars); without ``want_jac`` the Jacobian is an empty (0, 0) array."""
    n_pars = pars.shape[0]
    n_cells = cm.nom.shape[0]
    n_rows = cm.n_rows
    n_bins = cm.n_bins
    rf_v, rf_d, row_pnz, row_nz, hs_d, acc, cell_pnz, cell_nz = _cell_state(pars, cm)
    row_f = np.empty(n_rows)
    for r in range(n_rows):
        row_f[r] = row_pnz[r] if row_nz[r] == 0 else 0.0
    cell_g = np.empty(n_cells)
    for c in range(n_cells):
        cell_g[c] = cell_pnz[c] if cell_nz[c] == 0 else 0.0
    lam = np.zeros(n_bins)
    for c in range(n_cells):
        lam[cm.cell_bin[c]] += acc[c] * row_f[cm.cell_row[c]] * cell_g[c]
    total = 0.0
    w = np.empty(n_bins)  # d(twice_nll) / d lam
    for b in range(n_bins):
        n = kd.data[b]
        total += _poisson_term(n, lam[b], kd.data_lg[b])
        w[b] = 2.0 if n == 0.0 else -2.0 * (n / lam[b] - 1.0)
    grad = np.zeros(n_pars)
    if want_jac:
        jac = np.zeros((n_bins, n_pars))
    else:
        jac = np.zeros((0, 0))
    # histosys: d rate / d alpha = F_row * G_cell * d delta
    for e in range(cm.hs_cell.shape[0]):
        c = cm.hs_cell[e]
        dr = row_f[cm.cell_row[c]] * cell_g[c] * hs_d[e]
        b = cm.cell_bin[c]
        grad[cm.hs_par[e]] += w[b] * dr
        if want_jac:
            jac[b, cm.hs_par[e]] += dr
    # per-cell factors: d rate / d gamma = acc * F_row * prod(other gammas)
    for e in range(cm.cf_cell.shape[0]):
        c = cm.cf_cell[e]
        v = pars[cm.cf_par[e]]
        if cell_nz[c] == 0:
            others = cell_pnz[c] / v
        elif cell_nz[c] == 1 and v == 0.0:
            others = cell_pnz[c]
        else:
            others = 0.0
        dr = acc[c] * row_f[cm.cell_row[c]] * others
        b = cm.cell_bin[c]
        grad[cm.cf_par[e]] += w[b] * dr
        if want_jac:
            jac[b, cm.cf_par[e]] += dr
    # row factors: d rate_c / d theta = acc_c * G_c * prod(other row factors) * f'
    if want_jac:
        # per-bin resolution: loop over the cells of each row (contiguous, model.py)
        row_start = np.full(n_rows + 1, -1, dtype=np.int64)
        for c in range(n_cells - 1, -1, -1):
            row_start[cm.cell_row[c]] = c
        row_start[n_rows] = n_cells
        for r in range(n_rows - 1, -1, -1):
            if row_start[r] < 0:
                row_start[r] = row_start[r + 1]
        for e in range(cm.rf_row.shape[0]):
            r = cm.rf_row[e]
            v = rf_v[e]
            if row_nz[r] == 0:
                others = row_pnz[r] / v
            elif row_nz[r] == 1 and v == 0.0:
                others = row_pnz[r]
            else:
                continue
            k = others * rf_d[e]
            p = cm.rf_par[e]
            for c in range(row_start[r], row_start[r + 1]):
                dr = acc[c] * cell_g[c] * k
                b = cm.cell_bin[c]
                jac[b, p] += dr
                grad[p] += w[b] * dr
    else:
        row_s = np.zeros(n_rows)  # sum_c w_b acc_c G_c over the cells of the row
        for c in range(n_cells):
            row_s[cm.cell_row[c]] += w[cm.cell_bin[c]] * acc[c] * cell_g[c]
        for e in range(cm.rf_row.shape[0]):
            r = cm.rf_row[e]
            v = rf_v[e]
            if row_nz[r] == 0:
                others = row_pnz[r] / v
            elif row_nz[r] == 1 and v == 0.0:
                others = row_pnz[r]
            else:
                continue
            grad[cm.rf_par[e]] += row_s[r] * others * rf_d[e]
    total += _constraint(pars, cm, kd, grad, True)
    return total, grad, jac, lam


@_jit
def twice_nll_grad(pars, cm, kd):  # pragma: no cover - compiled
    """Twice-NLL (float) and its analytic gradient, shape (n_pars,)."""
    total, grad, _jac, _lam = _value_and_jacobian(pars, cm, kd, False)
    return total, grad


# the linear solves only choose a search direction: reassociated (SIMD) sums are fine there
_jit_fast = njit(cache=True, error_model="numpy", nogil=True, fastmath=True)


@_jit_fast
def _cholesky_solve(m, b):  # pragma: no cover - compiled
    """Solve ``m x = b`` for symmetric positive-definite ``m``; (ok, x).

    The factorisation is LAPACK's (``np.linalg.cholesky``, twice as fast as a plain loop
    at 120 parameters); a matrix that is not positive definite gives ``(False, b)``.
    """
    n = b.shape[0]
    try:
        low = np.linalg.cholesky(m)
    except Exception:  # not positive definite, or not finite
        return False, b
    y = np.empty(n)
    for i in range(n):
        t = b[i]
        for k in range(i):
            t -= low[i, k] * y[k]
        y[i] = t / low[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        t = y[i]
        for k in range(i + 1, n):
            t -= low[k, i] * x[k]
        x[i] = t / low[i, i]
    for i in range(n):
        if not math.isfinite(x[i]):
            return False, b
    return True, x


@_jit
def _theta(x, box):  # pragma: no cover - compiled
    """Full parameter vector of scaled free coordinates ``x``."""
    theta = box.base.copy()
    for a in range(box.free.shape[0]):
        theta[box.free[a]] = x[a] * box.w[a]
    return theta


@_jit
def scaled_value_grad(x, box, cm, kd):  # pragma: no cover - compiled
    """Twice-NLL and its gradient in scaled free coordinates (the L-BFGS-B objective).

    ``box`` is a :class:`likelihood.fit.Box`: the free parameters ``free``, their widths
    ``w``, the full vector ``base`` of the fixed ones and the scaled bounds ``lo``, ``hi``.
    """
    total, grad, _jac, _lam = _value_and_jacobian(_theta(x, box), cm, kd, False)
    nf = box.free.shape[0]
    g = np.empty(nf)
    for a in range(nf):
        g[a] = grad[box.free[a]] * box.w[a]
    return total, g


@_jit
def scaled_state(x, box, cm, kd):  # pragma: no cover - compiled
    """Value, gradient and Gauss-Newton Hessian (nf, nf) in scaled free coordinates.

    The Hessian keeps the exact second derivative of the Poisson and constraint terms with
    respect to the rates (``2 n / lam^2``) and drops the rates' own curvature: it is
    positive semi-definite, and exact where the rates are linear in the parameters.
    """
    theta = _theta(x, box)
    free = box.free
    w = box.w
    n_bins = cm.n_bins
    total, grad, jac, lam = _value_and_jacobian(theta, cm, kd, True)
    nf = free.shape[0]
    g = np.empty(nf)
    for a in range(nf):
        g[a] = grad[free[a]] * w[a]
    # scaled Jacobian of the free parameters, weighted
    js = np.empty((n_bins, nf))
    hb = np.empty(n_bins)
    for b in range(n_bins):
        n = kd.data[b]
        hb[b] = 2.0 * n / (lam[b] * lam[b]) if n != 0.0 else 0.0
        for a in range(nf):
            js[b, a] = jac[b, free[a]] * w[a]
    h = np.zeros((nf, nf))
    for b in range(n_bins):
        if hb[b] == 0.0:
            continue
        for a in range(nf):
            ja = js[b, a] * hb[b]
            if ja == 0.0:
                continue
            for c in range(a + 1):
                h[a, c] += ja * js[b, c]
    for a in range(nf):
        for c in range(a):
            h[c, a] = h[a, c]
    # constraint curvature
    pos = np.full(theta.shape[0], -1, dtype=np.int64)
    for a in range(nf):
        pos[free[a]] = a
    for k in range(cm.aux_par.shape[0]):
        a = pos[cm.aux_par[k]]
        if a < 0:
            continue
        s = cm.aux_scale[k]
        if cm.aux_kind[k] == 0:
            h[a, a] += 2.0 / (s * s) * w[a] * w[a]
        else:
            t = theta[cm.aux_par[k]]
            h[a, a] += 2.0 * kd.auxdata[k] / (t * t) * w[a] * w[a]
    return total, g, h


@_jit
def _inactive(x, g, box):  # pragma: no cover - compiled
    """Indices of the parameters not held at a bound (a bound with the gradient pushing
    outwards holds a parameter); the one active-set rule of the fits."""
    nf = x.shape[0]
    idx = np.empty(nf, dtype=np.int64)
    m = 0
    for a in range(nf):
        span = 1e-10 * max(1.0, abs(box.lo[a]), abs(box.hi[a]))
        if (x[a] <= box.lo[a] + span and g[a] > 0.0) or (x[a] >= box.hi[a] - span and g[a] < 0.0):
            continue
        idx[m] = a
        m += 1
    return idx[:m]


@_jit
def _edm(g, h, idx):  # pragma: no cover - compiled
    """``g^T H^-1 g / 2`` over the inactive set ``idx`` (inf if H is not positive definite)."""
    m = idx.shape[0]
    if m == 0:
        return 0.0
    hm = np.empty((m, m))
    gm = np.empty(m)
    for i in range(m):
        gm[i] = g[idx[i]]
        for j in range(m):
            hm[i, j] = h[idx[i], idx[j]]
    ok, sol = _cholesky_solve(hm, gm)
    if not ok:
        return math.inf
    return abs(0.5 * np.dot(gm, sol))


@_jit
def convergence(x, box, cm, kd):  # pragma: no cover - compiled
    """(twice-NLL, max |projected gradient|, edm) at ``x``: the convergence test of the fits.

    ``edm`` uses the Gauss-Newton Hessian on the inactive set (:func:`_inactive`); a fit
    has converged when it is below the tolerance (``likelihood.fit.EDM_TOLERANCE``), the
    same test :func:`newton_minimize` ends on.
    """
    v, g, h = scaled_state(x, box, cm, kd)
    if not math.isfinite(v):
        return v, math.inf, math.inf
    for a in range(g.shape[0]):
        if not math.isfinite(g[a]):
            return v, math.inf, math.inf
    idx = _inactive(x, g, box)
    pg = 0.0
    for i in range(idx.shape[0]):
        pg = max(pg, abs(g[idx[i]]))
    return v, pg, _edm(g, h, idx)


@_jit
def newton_minimize(x0, box, cm, kd, max_iter, edm_tol, max_step):  # pragma: no cover
    """Bounded quasi-Newton minimisation of twice-NLL in scaled free coordinates.

    The Hessian model is the Gauss-Newton Hessian of the kernels plus a symmetric-rank-one
    secant correction for the rates' own curvature (a structured quasi-Newton method);
    bounds by an active set (:func:`_inactive`), steps projected onto the box, Armijo
    backtracking.  It ends converged only when :func:`convergence`'s edm is below
    ``edm_tol`` at the returned point.

    Returns
    -------
    x : ndarray (n_free,)
    value : float
    n_iter : int
    code : int
        0 converged, 1 iteration limit, 2 line search failed, 3 non-finite value,
        4 Hessian not positive definite even with damping.
    edm : float
        :func:`convergence`'s edm at ``x`` (or the step's estimate when not converged).
    """
    lo = box.lo
    hi = box.hi
    nf = x0.shape[0]
    x = np.minimum(np.maximum(x0, lo), hi)
    v, g, hgn = scaled_state(x, box, cm, kd)
    if not math.isfinite(v):
        return x, v, 0, 3, math.inf
    corr = np.zeros((nf, nf))
    edm = math.inf
    for it in range(1, max_iter + 1):
        idx = _inactive(x, g, box)
        m = idx.shape[0]
        if m == 0:
            return x, v, it, 0, 0.0
        hm = np.empty((m, m))
        gm = np.empty(m)
        for i in range(m):
            gm[i] = g[idx[i]]
            for j in range(m):
                hm[i, j] = hgn[idx[i], idx[j]] + corr[idx[i], idx[j]]
        damp = 0.0
        ok = False
        sol = gm
        for attempt in range(24):
            if attempt == 12:
                # the secant correction spoilt the model: drop it, keep Gauss-Newton
                corr[:, :] = 0.0
                for i in range(m):
                    for j in range(m):
                        hm[i, j] = hgn[idx[i], idx[j]]
                damp = 0.0
            if damp > 0.0:
                hd = hm.copy()
                for i in range(m):
                    hd[i, i] += damp * (1.0 + hm[i, i])
                ok, sol = _cholesky_solve(hd, gm)
            else:
                ok, sol = _cholesky_solve(hm, gm)
            if ok:
                break
            damp = 1e-8 if damp == 0.0 else damp * 10.0
        if not ok:
            return x, v, it, 4, math.inf
        step = np.zeros(nf)
        dec = 0.0
        for i in range(m):
            step[idx[i]] = -sol[i]
            dec -= gm[i] * sol[i]
        edm = -0.5 * dec
        if edm < edm_tol and damp == 0.0:
            # the step model says converged; confirm with the fits' own test
            edm_gn = _edm(g, hgn, idx)
            if edm_gn < edm_tol:
                return x, v, it, 0, edm_gn
        # trust region: no component moves more than max_step widths in one iteration, so
        # that the path stays in the basin of the start (as a careful optimizer's does)
        big = 0.0
        for a in range(nf):
            big = max(big, abs(step[a]))
        if big > max_step:
            for a in range(nf):
                step[a] *= max_step / big
        t = 1.0
        found = False
        xn = x.copy()
        vn = v
        gn = g
        hn = hgn
        for _ in range(50):
            for a in range(nf):
                xn[a] = min(max(x[a] + t * step[a], lo[a]), hi[a])
            vn, gn, hn = scaled_state(xn, box, cm, kd)
            # Armijo on the projected step
            pred = 0.0
            for a in range(nf):
                pred += g[a] * (xn[a] - x[a])
            if math.isfinite(vn) and vn <= v + 1e-4 * min(pred, 0.0):
                found = True
                break
            t *= 0.5
        if not found:
            edm_gn = _edm(g, hgn, idx)
            if edm_gn < edm_tol:
                return x, v, it, 0, edm_gn
            return x, v, it, 2, edm_gn
        # SR1 secant correction of the curvature that Gauss-Newton leaves out
        s = xn - x
        r = gn - g
        for a in range(nf):
            acc_r = 0.0
            for c in range(nf):
                acc_r += (hn[a, c] + corr[a, c]) * s[c]
            r[a] -= acc_r
        rs = 0.0
        rn = 0.0
        sn = 0.0
        for a in range(nf):
            rs += r[a] * s[a]
            rn += r[a] * r[a]
            sn += s[a] * s[a]
        if abs(rs) > 1e-8 * math.sqrt(rn * sn) and rs != 0.0:
            for a in range(nf):
                ra = r[a] / rs
                for c in range(nf):
                    corr[a, c] += ra * r[c]
        x = xn.copy()
        dv = v - vn
        v = vn
        g = gn
        hgn = hn
        if dv == 0.0 and t < 1e-10:
            return x, v, it, 2, _edm(g, hgn, _inactive(x, g, box))
    return x, v, max_iter, 1, edm
