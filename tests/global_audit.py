"""Independent audit of the global minima of the fits that CLs needs.

For each fit of an asymptotic test at mu (free / mu / mu = 0 fits to the observed data,
mu and free fits to the Asimov data), a plain multi-start search looks for a lower
minimum than recastkit's: scipy's L-BFGS-B from many seeded random starts (Gaussian
parameters anywhere in +-2.5 widths of their constraint, gammas in +-2.5 widths of 1,
normalisations uniform in ``[lo, min(hi, 3)]``), nothing of recastkit's fitter or start
policy.  Its objective is the kernel twice-NLL with its analytic gradient, in units of the
constraint widths: pyhf's numpy backend has no gradient, and finite differences over
60-130 parameters would cost minutes per start.  That function equals pyhf's
``-2 * model.logpdf`` (``test_likelihood_nll_pyhf.py``), and :func:`pyhf_twice_nll`
re-evaluates both minima with pyhf's own ``logpdf`` so the verdict is pyhf's.

Used by ``tests/test_global_minima.py`` (a small sample) and
``benchmarks/audit_global_minima.py`` (larger runs).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize

__all__ = ["AuditRow", "audit_point", "fit_table", "pyhf_model", "pyhf_twice_nll"]

FIT_NAMES = ("free_data", "mu_data", "mu0_data", "free_asimov", "mu_asimov")


class AuditRow(NamedTuple):
    fit: str
    ours: float  # our twice-NLL minimum (kernel, stable)
    audit: float  # lowest minimum of the random-start search (kernel, stable)
    audit_pars: np.ndarray
    ours_pars: np.ndarray
    data: np.ndarray  # main + aux data of this fit, pyhf's layout


def fit_table(model: Any, mu: float = 1.0) -> dict[str, tuple[Any, np.ndarray, np.ndarray, bool]]:
    """recastkit's fits of ``hypotest(model, mu)``: name -> (pars, data, auxdata, poi fixed)."""
    from likelihood.cls import _fits

    f = _fits(model, mu, None, "aposteriori")
    for name, r in (("free", f.free), ("cond", f.cond), ("bkg", f.bkg), ("cond_a", f.cond_a)):
        assert r is not None and r.success, (name, r and r.message)
    d, a = model.data, model.auxdata
    return {
        "free_data": (f.free.pars, d, a, False),
        "mu_data": (f.cond.pars, d, a, True),
        "mu0_data": (f.bkg.pars, d, a, True),
        "free_asimov": (f.pars_a, f.data_a, f.aux_a, False),
        "mu_asimov": (f.cond_a.pars, f.data_a, f.aux_a, True),
    }


def _random_starts(model: Any, poi_value: float | None, n: int, rng: np.random.Generator):
    cm = model.compiled
    lo, hi = model.bounds[:, 0], model.bounds[:, 1]
    constrained = np.zeros(model.n_pars, dtype=bool)
    constrained[cm.aux_par] = True
    for _ in range(n):
        z = rng.uniform(-2.5, 2.5, model.n_pars)
        norm = rng.uniform(lo, np.minimum(hi, np.maximum(3.0, lo + 1e-3)))
        for _shrink in range(30):
            st = np.where(constrained, model.init + z * model.widths, norm)
            st = np.clip(st, lo, hi)
            st[model.fixed] = model.init[model.fixed]
            if poi_value is not None:
                st[model.poi_index] = poi_value
            if math.isfinite(model.twice_nll(st, stable=True)):
                break
            # negative rates (a histosys far out): move the start towards the initial values
            z *= 0.7
            norm = 0.5 * (norm + model.init)
        yield st


def _search(
    model: Any, data: np.ndarray, aux: np.ndarray, poi_value: float | None, n: int, seed: int
) -> tuple[float, np.ndarray]:
    fixed = model.fixed.copy()
    if poi_value is not None:
        fixed[model.poi_index] = True
    free = np.flatnonzero(~fixed)
    w = model.widths[free]
    bounds = list(zip(model.bounds[free, 0] / w, model.bounds[free, 1] / w, strict=True))
    kd_d, kd_a = np.array(data, dtype=float), np.array(aux, dtype=float)

    def f(x: np.ndarray, base: np.ndarray) -> tuple[float, np.ndarray]:
        t = base.copy()
        t[free] = x * w
        v, g = model.twice_nll_and_grad(t, kd_d, kd_a, stable=True)
        if not math.isfinite(v):
            # outside the physical region (negative rates): a steep finite wall, so that
            # the line search backs off instead of stopping
            dx = x - base[free] / w
            return 1e10 + float(dx @ dx), 2.0 * dx
        return v, g[free] * w

    best_v, best_p = math.inf, model.init.copy()
    rng = np.random.default_rng(seed)
    for st in _random_starts(model, poi_value, n, rng):
        res = minimize(
            f,
            st[free] / w,
            args=(st,),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-8, "maxcor": 20},
        )
        t = st.copy()
        t[free] = np.clip(res.x, [b[0] for b in bounds], [b[1] for b in bounds]) * w
        v = model.twice_nll(t, kd_d, kd_a, stable=True)
        if math.isfinite(v) and v < best_v:
            best_v, best_p = v, t
    return best_v, best_p


def audit_point(
    model: Any, mu: float = 1.0, *, n_starts: int = 12, seed: int = 0
) -> list[AuditRow]:
    """Our five fits of the test at ``mu`` against the multi-start search, per fit."""
    rows = []
    for k, (name, (pars, d, a, fixed_poi)) in enumerate(fit_table(model, mu).items()):
        poi_value = float(pars[model.poi_index]) if fixed_poi else None
        ours = model.twice_nll(pars, d, a, stable=True)
        audit, audit_pars = _search(model, d, a, poi_value, n_starts, seed + 1000 * k)
        rows.append(AuditRow(name, ours, audit, audit_pars, pars, np.concatenate([d, a])))
    return rows


def pyhf_model(spec: dict, modifier_settings: dict | None = None) -> Any:
    """pyhf's model of a (patched) workspace, with its default settings unless given."""
    import pyhf

    pyhf.set_backend("numpy")
    ws = pyhf.Workspace(spec)
    return ws.model(modifier_settings=modifier_settings) if modifier_settings else ws.model()


def pyhf_twice_nll(pm: Any, model: Any, pars: np.ndarray, data: np.ndarray) -> float:
    """pyhf's ``-2 * logpdf`` at our parameter vector ``pars`` (mapped by name)."""
    order = [model.par_index(n) for n in pm.config.par_names]
    return float(-2.0 * pm.logpdf(np.asarray(pars)[order], np.asarray(data))[0])
