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
    "newton_minimize_warm",
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
def _value_and_jacobian_fused(pars, cm, kd):  # pragma: no cover - compiled
    """:func:`_value_and_jacobian` with the Jacobian, in fewer passes over the entries.

    The row factors and per-cell factors are evaluated first, so that the histosys pass
    adds each entry's value to its cell and its derivative to the Jacobian at once; the
    main-bin gradient is then ``jac^T w`` (no scattered gradient updates).  Returns
    ``(total, grad, jac, lam)`` as :func:`_value_and_jacobian` with ``want_jac``.
    """
    n_pars = pars.shape[0]
    n_cells = cm.nom.shape[0]
    n_rows = cm.n_rows
    n_bins = cm.n_bins
    # row factors: values, derivatives, zero-safe products
    n_rf = cm.rf_row.shape[0]
    rf_v = np.empty(n_rf)
    rf_d = np.empty(n_rf)
    row_pnz = np.ones(n_rows)
    row_nz = np.zeros(n_rows, dtype=np.int64)
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
    # per-cell factors
    cell_pnz = np.ones(n_cells)
    cell_nz = np.zeros(n_cells, dtype=np.int64)
    for e in range(cm.cf_cell.shape[0]):
        v = pars[cm.cf_par[e]]
        c = cm.cf_cell[e]
        if v == 0.0:
            cell_nz[c] += 1
        else:
            cell_pnz[c] *= v
    # F_c = row factor * cell factor: d rate_c / d delta
    fc = np.empty(n_cells)
    cell_g = np.empty(n_cells)
    for c in range(n_cells):
        r = cm.cell_row[c]
        g_c = cell_pnz[c] if cell_nz[c] == 0 else 0.0
        cell_g[c] = g_c
        fc[c] = (row_pnz[r] if row_nz[r] == 0 else 0.0) * g_c
    jac = np.zeros((n_bins, n_pars))
    # histosys: values into the cells, derivatives into the Jacobian
    acc = cm.nom.copy()
    for e in range(cm.hs_cell.shape[0]):
        c = cm.hs_cell[e]
        v, d = histosys_eval(cm.hs_kind[e], pars[cm.hs_par[e]], cm.hs_up[e], cm.hs_dn[e])
        acc[c] += v
        jac[cm.cell_bin[c], cm.hs_par[e]] += fc[c] * d
    lam = np.zeros(n_bins)
    for c in range(n_cells):
        lam[cm.cell_bin[c]] += acc[c] * fc[c]
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
        r = cm.cell_row[c]
        jac[cm.cell_bin[c], cm.cf_par[e]] += (
            acc[c] * (row_pnz[r] if row_nz[r] == 0 else 0.0) * others
        )
    # row factors: d rate_c / d theta = acc_c * G_c * prod(other row factors) * f'
    ag = np.empty(n_cells)
    for c in range(n_cells):
        ag[c] = acc[c] * cell_g[c]
    row_start = np.full(n_rows + 1, -1, dtype=np.int64)
    for c in range(n_cells - 1, -1, -1):
        row_start[cm.cell_row[c]] = c
    row_start[n_rows] = n_cells
    for r in range(n_rows - 1, -1, -1):
        if row_start[r] < 0:
            row_start[r] = row_start[r + 1]
    for e in range(n_rf):
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
            jac[cm.cell_bin[c], p] += ag[c] * k
    total = 0.0
    grad = np.zeros(n_pars)
    for b in range(n_bins):
        n = kd.data[b]
        total += _poisson_term(n, lam[b], kd.data_lg[b])
        wb = 2.0 if n == 0.0 else -2.0 * (n / lam[b] - 1.0)
        for q in range(n_pars):
            grad[q] += wb * jac[b, q]
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
def _scaled_parts(x, box, cm, kd):  # pragma: no cover - compiled
    """Value, gradient and the pieces of the Gauss-Newton Hessian in scaled coordinates.

    Returns ``(total, g, js, hb, dg)``: ``g`` the gradient (nf,), ``js`` the scaled rate
    Jacobian (n_bins, nf), ``hb`` the exact second derivative of the Poisson terms with
    respect to the rates (``2 n / lam^2``, n_bins) and ``dg`` the constraint curvature (nf,).
    The Gauss-Newton Hessian is ``diag(dg) + js^T diag(hb) js``: a diagonal plus a matrix
    of rank at most n_bins, which the solves below never form (:func:`_hsolve`).
    """
    theta = _theta(x, box)
    free = box.free
    w = box.w
    n_bins = cm.n_bins
    total, grad, jac, lam = _value_and_jacobian_fused(theta, cm, kd)
    nf = free.shape[0]
    g = np.empty(nf)
    for a in range(nf):
        g[a] = grad[free[a]] * w[a]
    js = np.empty((n_bins, nf))
    hb = np.empty(n_bins)
    for b in range(n_bins):
        n = kd.data[b]
        hb[b] = 2.0 * n / (lam[b] * lam[b]) if n != 0.0 else 0.0
        for a in range(nf):
            js[b, a] = jac[b, free[a]] * w[a]
    dg = np.zeros(nf)
    pos = np.full(theta.shape[0], -1, dtype=np.int64)
    for a in range(nf):
        pos[free[a]] = a
    for k in range(cm.aux_par.shape[0]):
        a = pos[cm.aux_par[k]]
        if a < 0:
            continue
        s = cm.aux_scale[k]
        if cm.aux_kind[k] == 0:
            dg[a] += 2.0 / (s * s) * w[a] * w[a]
        else:
            t = theta[cm.aux_par[k]]
            dg[a] += 2.0 * kd.auxdata[k] / (t * t) * w[a] * w[a]
    return total, g, js, hb, dg


@_jit
def scaled_state(x, box, cm, kd):  # pragma: no cover - compiled
    """Value, gradient and Gauss-Newton Hessian (nf, nf) in scaled free coordinates.

    The Hessian keeps the exact second derivative of the Poisson and constraint terms with
    respect to the rates (``2 n / lam^2``) and drops the rates' own curvature: it is
    positive semi-definite, and exact where the rates are linear in the parameters.  (The
    fits use its low-rank form, :func:`_scaled_parts`; this dense one is for inspection.)
    """
    total, g, js, hb, dg = _scaled_parts(x, box, cm, kd)
    nf = g.shape[0]
    h = np.zeros((nf, nf))
    for b in range(js.shape[0]):
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
        h[a, a] += dg[a]
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


@_jit_fast
def _chol_solve_into(low, b):  # pragma: no cover - compiled
    """Solve ``L L^T x = b`` for a lower Cholesky factor ``low``; b (n,) or (n, k)."""
    n = low.shape[0]
    x = b.copy()
    if x.ndim == 1:
        for i in range(n):
            t = x[i]
            for k in range(i):
                t -= low[i, k] * x[k]
            x[i] = t / low[i, i]
        for i in range(n - 1, -1, -1):
            t = x[i]
            for k in range(i + 1, n):
                t -= low[k, i] * x[k]
            x[i] = t / low[i, i]
    return x


@_jit_fast
def _chol_solve_cols(low, b):  # pragma: no cover - compiled
    """Solve ``L L^T X = B`` column by column, B (n, k)."""
    out = np.empty_like(b)
    for j in range(b.shape[1]):
        out[:, j] = _chol_solve_into(low, np.ascontiguousarray(b[:, j]))
    return out


@_jit_fast
def _try_cholesky(m):  # pragma: no cover - compiled
    """(ok, lower factor) of a symmetric matrix; ok is False when it is not positive
    definite (or not finite)."""
    try:
        low = np.linalg.cholesky(m)
    except Exception:  # not positive definite, or not finite
        return False, m
    for i in range(low.shape[0]):
        if not (math.isfinite(low[i, i]) and low[i, i] > 0.0):
            return False, m
    return True, low


@_jit_fast
def _dense_solve(gm, idx, dg, js, hb, rv, sig, k, damp):  # pragma: no cover - compiled
    """:func:`_hsolve` by forming the (m, m) matrix and a Cholesky factorisation."""
    m = idx.shape[0]
    hm = np.zeros((m, m))
    for b in range(js.shape[0]):
        if hb[b] == 0.0:
            continue
        for i in range(m):
            ja = js[b, idx[i]] * hb[b]
            if ja == 0.0:
                continue
            for j in range(i + 1):
                hm[i, j] += ja * js[b, idx[j]]
    for q in range(k):
        for i in range(m):
            ra = rv[q, idx[i]] * sig[q]
            if ra == 0.0:
                continue
            for j in range(i + 1):
                hm[i, j] += ra * rv[q, idx[j]]
    for i in range(m):
        for j in range(i):
            hm[j, i] = hm[i, j]
        hm[i, i] += dg[idx[i]]
    if damp > 0.0:
        for i in range(m):
            hm[i, i] += damp * (1.0 + hm[i, i])
    ok, low = _try_cholesky(hm)
    if not ok:
        return False, gm
    x = _chol_solve_into(low, gm)
    for i in range(m):
        if not math.isfinite(x[i]):
            return False, gm
    return True, x


@_jit_fast
def _hsolve(gm, idx, dg, js, hb, rv, sig, k, damp):  # pragma: no cover - compiled
    """Solve ``H y = gm`` on the inactive set ``idx``; (ok, y), ok False when H is not
    positive definite.

    ``H = diag(dg) + js^T diag(hb) js + sum_q sig[q] rv[q] rv[q]^T`` restricted to ``idx``
    (the Gauss-Newton Hessian plus ``k`` symmetric-rank-one secant terms), with
    ``damp * (1 + H_ii)`` added to its diagonal when ``damp > 0``.  H is a diagonal plus a
    matrix of rank ``r`` (bins with ``hb > 0`` and secant terms), ``r`` far below the
    number of parameters on the big models (1Lbb: 14 bins, ~125 parameters): the solve
    works in that rank (Woodbury), with the terms of positive weight first,

        H+ = D + Vp Cp Vp^T,  H = H+ - Vn Cn Vn^T,

    ``H+`` by the capacitance matrix ``K = Cp^-1 + Vc^T Dc^-1 Vc`` over the parameters with
    a diagonal (``c``) and a Schur complement ``S = Du + Vu K^-1 Vu^T`` over those without
    (``u``: normfactors), the negative terms by a second Woodbury step whose small matrix
    ``T = Cn^-1 - Vn^T H+^-1 Vn`` is positive definite exactly when H is.  Every
    factorisation is a Cholesky, so the positive-definiteness test is exact.  Falls back to
    the dense factorisation when the rank is not small against ``m``.
    """
    m = idx.shape[0]
    n_bins = js.shape[0]
    npos = 0
    nneg = 0
    for b in range(n_bins):
        if hb[b] > 0.0:
            npos += 1
    for q in range(k):
        if sig[q] > 0.0:
            npos += 1
        elif sig[q] < 0.0:
            nneg += 1
    if 3 * (npos + nneg) >= m:
        return _dense_solve(gm, idx, dg, js, hb, rv, sig, k, damp)
    vp = np.empty((m, npos))
    cp = np.empty(npos)
    vn = np.empty((m, nneg))
    cn = np.empty(nneg)
    col = 0
    for b in range(n_bins):
        if hb[b] > 0.0:
            cp[col] = hb[b]
            for i in range(m):
                vp[i, col] = js[b, idx[i]]
            col += 1
    coln = 0
    for q in range(k):
        if sig[q] > 0.0:
            cp[col] = sig[q]
            for i in range(m):
                vp[i, col] = rv[q, idx[i]]
            col += 1
        elif sig[q] < 0.0:
            cn[coln] = -sig[q]
            for i in range(m):
                vn[i, coln] = rv[q, idx[i]]
            coln += 1
    # the diagonal (damped as the dense form: damp * (1 + H_ii))
    d = np.empty(m)
    diag_h = np.empty(m)
    for i in range(m):
        s = dg[idx[i]]
        for j in range(npos):
            s += cp[j] * vp[i, j] * vp[i, j]
        for j in range(nneg):
            s -= cn[j] * vn[i, j] * vn[i, j]
        diag_h[i] = s
        d[i] = dg[idx[i]] + (damp * (1.0 + s) if damp > 0.0 else 0.0)
    # c: a diagonal that is not negligible against the row's own curvature
    is_c = np.empty(m, dtype=np.bool_)
    nu = 0
    for i in range(m):
        is_c[i] = d[i] > 1e-8 * (1.0 + abs(diag_h[i]))
        if not is_c[i]:
            nu += 1
            if d[i] < 0.0:
                return False, gm
    uix = np.empty(nu, dtype=np.int64)
    q = 0
    for i in range(m):
        if not is_c[i]:
            uix[q] = i
            q += 1
    # capacitance matrix of the positive terms
    kk = np.zeros((npos, npos))
    for i in range(m):
        if not is_c[i]:
            continue
        inv = 1.0 / d[i]
        for a in range(npos):
            va = vp[i, a] * inv
            if va == 0.0:
                continue
            for b in range(a + 1):
                kk[a, b] += va * vp[i, b]
    for a in range(npos):
        for b in range(a):
            kk[b, a] = kk[a, b]
        kk[a, a] += 1.0 / cp[a]
    ok, lk = _try_cholesky(kk)
    if not ok:
        return False, gm
    ls = lk
    ku = np.empty((npos, nu))
    if nu > 0:
        vu = np.empty((npos, nu))
        for j in range(nu):
            for a in range(npos):
                vu[a, j] = vp[uix[j], a]
        ku = _chol_solve_cols(lk, vu)  # K^-1 Vu^T
        ss = np.zeros((nu, nu))
        for i in range(nu):
            for j in range(i + 1):
                t = 0.0
                for a in range(npos):
                    t += vu[a, i] * ku[a, j]
                ss[i, j] = t
                ss[j, i] = t
            ss[i, i] += d[uix[i]]
        ok, ls = _try_cholesky(ss)
        if not ok:
            return False, gm
    # H+^-1 applied to gm and to the columns of Vn
    nr = 1 + nneg
    rhs = np.empty((m, nr))
    for i in range(m):
        rhs[i, 0] = gm[i]
        for j in range(nneg):
            rhs[i, 1 + j] = vn[i, j]
    sol = np.empty((m, nr))
    for col in range(nr):
        w = np.zeros(npos)
        for i in range(m):
            if is_c[i]:
                bi = rhs[i, col] / d[i]
                for a in range(npos):
                    w[a] += vp[i, a] * bi
        kw = _chol_solve_into(lk, w)
        if nu > 0:
            bu = np.empty(nu)
            for j in range(nu):
                t = rhs[uix[j], col]
                for a in range(npos):
                    t -= vp[uix[j], a] * kw[a]
                bu[j] = t
            yu = _chol_solve_into(ls, bu)
            for a in range(npos):
                t = 0.0
                for j in range(nu):
                    t += ku[a, j] * yu[j]
                kw[a] += t
            for j in range(nu):
                sol[uix[j], col] = yu[j]
        for i in range(m):
            if is_c[i]:
                t = rhs[i, col]
                for a in range(npos):
                    t -= vp[i, a] * kw[a]
                sol[i, col] = t / d[i]
    y = np.empty(m)
    for i in range(m):
        y[i] = sol[i, 0]
    if nneg > 0:
        tt = np.zeros((nneg, nneg))
        vy = np.zeros(nneg)
        for a in range(nneg):
            for i in range(m):
                vy[a] += vn[i, a] * y[i]
            for b in range(a + 1):
                t = 0.0
                for i in range(m):
                    t += vn[i, a] * sol[i, 1 + b]
                tt[a, b] = -t
                tt[b, a] = -t
            tt[a, a] += 1.0 / cn[a]
        ok, lt = _try_cholesky(tt)
        if not ok:
            return False, gm
        z = _chol_solve_into(lt, vy)
        for i in range(m):
            t = 0.0
            for a in range(nneg):
                t += sol[i, 1 + a] * z[a]
            y[i] += t
    for i in range(m):
        if not math.isfinite(y[i]):
            return False, gm
    return True, y


@_jit
def _edm_gn(g, idx, dg, js, hb):  # pragma: no cover - compiled
    """``g^T H^-1 g / 2`` over the inactive set ``idx`` with the Gauss-Newton H (inf if H
    is not positive definite)."""
    m = idx.shape[0]
    if m == 0:
        return 0.0
    gm = np.empty(m)
    for i in range(m):
        gm[i] = g[idx[i]]
    ok, sol = _hsolve(gm, idx, dg, js, hb, np.empty((0, g.shape[0])), np.empty(0), 0, 0.0)
    if not ok:
        return math.inf
    return abs(0.5 * np.dot(gm, sol))


@_jit
def _edm(g, h, idx):  # pragma: no cover - compiled
    """``g^T H^-1 g / 2`` over ``idx`` for a dense H (inf if H is not positive definite)."""
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
    v, g, js, hb, dg = _scaled_parts(x, box, cm, kd)
    if not math.isfinite(v):
        return v, math.inf, math.inf
    for a in range(g.shape[0]):
        if not math.isfinite(g[a]):
            return v, math.inf, math.inf
    idx = _inactive(x, g, box)
    pg = 0.0
    for i in range(idx.shape[0]):
        pg = max(pg, abs(g[idx[i]]))
    return v, pg, _edm_gn(g, idx, dg, js, hb)


@_jit
def _newton_core(x0, box, cm, kd, max_iter, edm_tol, max_step, rv0, sig0):  # pragma: no cover
    """:func:`newton_minimize` starting with the secant terms ``rv0`` (k0, n_pars; in
    scaled coordinates ``theta / width`` of every parameter), ``sig0`` (k0,); returns its
    5-tuple plus the secant terms at the end, ``(rv, sig)`` in the same full layout.
    """
    lo = box.lo
    hi = box.hi
    nf = x0.shape[0]
    x = np.minimum(np.maximum(x0, lo), hi)
    v, g, js, hb, dg = _scaled_parts(x, box, cm, kd)
    if not math.isfinite(v):
        return x, v, 0, 3, math.inf, (np.zeros((0, box.base.shape[0])), np.zeros(0))
    # the secant terms: corr = sum_q sig[q] rv[q] rv[q]^T
    free = box.free
    k0 = rv0.shape[0]
    rv = np.empty((max_iter + 1 + k0, nf))
    sig = np.empty(max_iter + 1 + k0)
    k = 0
    for q in range(k0):
        ok_q = sig0[q] != 0.0 and math.isfinite(sig0[q])
        for a in range(nf):
            rv[k, a] = rv0[q, free[a]]
            if not math.isfinite(rv[k, a]):
                ok_q = False
        if ok_q:
            sig[k] = sig0[q]
            k += 1
    edm = math.inf
    for it in range(1, max_iter + 1):
        idx = _inactive(x, g, box)
        m = idx.shape[0]
        if m == 0:
            return x, v, it, 0, 0.0, _full_terms(rv, sig, k, box, box.base.shape[0])
        gm = np.empty(m)
        for i in range(m):
            gm[i] = g[idx[i]]
        damp = 0.0
        ok = False
        sol = gm
        for attempt in range(24):
            if attempt == 12:
                # the secant correction spoilt the model: drop it, keep Gauss-Newton
                k = 0
                damp = 0.0
            ok, sol = _hsolve(gm, idx, dg, js, hb, rv, sig, k, damp)
            if ok:
                break
            damp = 1e-8 if damp == 0.0 else damp * 10.0
        if not ok:
            return x, v, it, 4, math.inf, _full_terms(rv, sig, k, box, box.base.shape[0])
        step = np.zeros(nf)
        dec = 0.0
        for i in range(m):
            step[idx[i]] = -sol[i]
            dec -= gm[i] * sol[i]
        edm = -0.5 * dec
        if edm < edm_tol and damp == 0.0:
            # the step model says converged; confirm with the fits' own test
            edm_gn = _edm_gn(g, idx, dg, js, hb)
            if edm_gn < edm_tol:
                return x, v, it, 0, edm_gn, _full_terms(rv, sig, k, box, box.base.shape[0])
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
        jsn = js
        hbn = hb
        dgn = dg
        for _ in range(50):
            for a in range(nf):
                xn[a] = min(max(x[a] + t * step[a], lo[a]), hi[a])
            vn, gn, jsn, hbn, dgn = _scaled_parts(xn, box, cm, kd)
            # Armijo on the projected step
            pred = 0.0
            for a in range(nf):
                pred += g[a] * (xn[a] - x[a])
            if math.isfinite(vn) and vn <= v + 1e-4 * min(pred, 0.0):
                found = True
                break
            t *= 0.5
        if not found:
            edm_gn = _edm_gn(g, idx, dg, js, hb)
            if edm_gn < edm_tol:
                return x, v, it, 0, edm_gn, _full_terms(rv, sig, k, box, box.base.shape[0])
            return x, v, it, 2, edm_gn, _full_terms(rv, sig, k, box, box.base.shape[0])
        # SR1 secant correction of the curvature that Gauss-Newton leaves out:
        # r = (gn - g) - (H_GN(xn) + corr) s
        s = xn - x
        r = gn - g
        for a in range(nf):
            r[a] -= dgn[a] * s[a]
        for b in range(jsn.shape[0]):
            if hbn[b] == 0.0:
                continue
            js_s = 0.0
            for a in range(nf):
                js_s += jsn[b, a] * s[a]
            js_s *= hbn[b]
            for a in range(nf):
                r[a] -= jsn[b, a] * js_s
        for q in range(k):
            rq_s = 0.0
            for a in range(nf):
                rq_s += rv[q, a] * s[a]
            rq_s *= sig[q]
            for a in range(nf):
                r[a] -= rv[q, a] * rq_s
        rs = 0.0
        rn = 0.0
        sn = 0.0
        for a in range(nf):
            rs += r[a] * s[a]
            rn += r[a] * r[a]
            sn += s[a] * s[a]
        if abs(rs) > 1e-8 * math.sqrt(rn * sn) and rs != 0.0 and k < rv.shape[0]:
            for a in range(nf):
                rv[k, a] = r[a]
            sig[k] = 1.0 / rs
            k += 1
        x = xn.copy()
        dv = v - vn
        v = vn
        g = gn
        js = jsn
        hb = hbn
        dg = dgn
        if dv == 0.0 and t < 1e-10:
            return (
                x,
                v,
                it,
                2,
                _edm_gn(g, _inactive(x, g, box), dg, js, hb),
                _full_terms(rv, sig, k, box, box.base.shape[0]),
            )
    return x, v, max_iter, 1, edm, _full_terms(rv, sig, k, box, box.base.shape[0])


@_jit
def _full_terms(rv, sig, k, box, n_pars):  # pragma: no cover - compiled
    """The first ``k`` secant terms, from the free coordinates to all parameters (zeros at
    the fixed ones)."""
    out = np.zeros((k, n_pars))
    free = box.free
    for q in range(k):
        for a in range(free.shape[0]):
            out[q, free[a]] = rv[q, a]
    return out, sig[:k].copy()


@_jit
def newton_minimize(x0, box, cm, kd, max_iter, edm_tol, max_step):  # pragma: no cover
    """Bounded quasi-Newton minimisation of twice-NLL in scaled free coordinates.

    The Hessian model is the Gauss-Newton Hessian of the kernels plus a symmetric-rank-one
    secant correction for the rates' own curvature (a structured quasi-Newton method),
    kept as its rank-one terms and solved in low rank (:func:`_hsolve`); bounds by an
    active set (:func:`_inactive`), steps projected onto the box, Armijo backtracking.  It
    ends converged only when :func:`convergence`'s edm is below ``edm_tol`` at the
    returned point.  :func:`newton_minimize_warm` also takes and returns the secant terms
    (a fit of the same data warm-starts its curvature from the previous one).

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
    n_pars = box.base.shape[0]
    x, v, it, code, edm, _terms = _newton_core(
        x0, box, cm, kd, max_iter, edm_tol, max_step, np.empty((0, n_pars)), np.empty(0)
    )
    return x, v, it, code, edm


@_jit
def newton_minimize_warm(
    x0, box, cm, kd, max_iter, edm_tol, max_step, rv0, sig0
):  # pragma: no cover
    """:func:`newton_minimize` whose curvature model starts from the secant terms of an
    earlier fit of the same data: ``rv0`` (k0, n_pars) in the scaled coordinates
    ``theta / width`` of every parameter, ``sig0`` (k0,) their weights (the correction is
    ``sum_q sig0[q] rv0[q] rv0[q]^T``).  Returns the 5-tuple of :func:`newton_minimize`
    and the terms at the end, ``(rv, sig)``, in the same layout."""
    return _newton_core(x0, box, cm, kd, max_iter, edm_tol, max_step, rv0, sig0)
