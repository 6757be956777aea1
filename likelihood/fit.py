"""Maximum-likelihood fits of a compiled :class:`~likelihood.model.Model`.

The fits minimise the kernel's twice-NLL with its analytic gradient, in *scaled
coordinates*: every free parameter is divided by its constraint width (the Gaussian sigma,
``1/sqrt(tau)`` for a shapesys, 1 for a free parameter), so that a shapesys with a relative
uncertainty of 1e-6 (3L eRJR) is as well conditioned as any other parameter.  Fixed
parameters (``model.fixed``, and the POI in a fixed-POI fit) are held by a mask.

Strategy: a bounded Newton method with the Gauss-Newton Hessian of the kernels (a few
iterations, each a linear solve of the free parameters), converged on the projected
gradient *and* on the expected distance to the minimum ``edm = g^T H^-1 g / 2``; if it
fails, L-BFGS-B (scipy) from the same start, then from the model's initial values.  A fit
that is not converged after the fallback is reported with ``success=False`` and a status,
never as converged.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numpy as np

from likelihood import _kernels
from likelihood.model import Model, as_f8, as_i8

__all__ = ["fit", "FitResult", "EDM_TOLERANCE", "warm_up"]

log = logging.getLogger(__name__)

#: the one convergence tolerance of every fit (Newton kernel and fit.py alike): expected
#: distance to the minimum ``g^T H^-1 g / 2`` (Gauss-Newton H), in units of twice-NLL
EDM_TOLERANCE = 1e-9
#: trust region of the Newton steps, in constraint widths
MAX_STEP = 1.0


class FitResult(NamedTuple):
    """Result of a maximum-likelihood fit.

    Attributes
    ----------
    pars : ndarray (n_pars,)
        Best-fit parameters (fixed ones at their fixed values).
    twice_nll : float
        ``-2 log L`` at ``pars``.
    success : bool
        True when the fit converged (projected gradient and edm below tolerance).
    status : str
        ``"ok"`` or ``"fit_failed"``.
    message : str
        How it converged or why it failed.
    n_iter : int
        Iterations of the method that produced ``pars`` (all attempts together).
    """

    pars: np.ndarray
    twice_nll: float
    success: bool
    status: str
    message: str
    n_iter: int


class Box(NamedTuple):
    """Scaled free coordinates of a fit: ``theta[free] = x * w``, the rest from ``base``.

    The ``box`` argument of the fit kernels (:func:`likelihood._kernels.newton_minimize`).
    """

    free: np.ndarray  # (nf,) int64 indices of the free parameters
    w: np.ndarray  # (nf,) their constraint widths
    base: np.ndarray  # (n_pars,) values of the fixed parameters (free ones overwritten)
    lo: np.ndarray  # (nf,) scaled lower bounds
    hi: np.ndarray  # (nf,) scaled upper bounds


class _Problem:
    """A fit problem in scaled coordinates x = theta / width over the free parameters."""

    def __init__(
        self,
        model: Model,
        data: np.ndarray,
        auxdata: np.ndarray,
        fixed: np.ndarray,
        start: np.ndarray,
    ) -> None:
        self.model = model
        self.cm = model.kernel_model
        self.kd = model.kernel_data(data, auxdata, stable=True)
        free = as_i8(np.flatnonzero(~fixed))
        w = as_f8(model.widths[free])
        self.box = Box(
            free,
            w,
            as_f8(start),
            as_f8(model.bounds[free, 0] / w),
            as_f8(model.bounds[free, 1] / w),
        )
        self.free = free
        self.n_eval = 0

    def theta(self, x: np.ndarray) -> np.ndarray:
        t = self.box.base.copy()
        t[self.free] = x * self.box.w
        return t

    def x_of(self, theta: np.ndarray) -> np.ndarray:
        return as_f8(np.clip(theta[self.free] / self.box.w, self.box.lo, self.box.hi))

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.n_eval += 1
        v, g = _kernels.scaled_value_grad(as_f8(x), self.box, self.cm, self.kd)
        return float(v), g

    def edm(self, x: np.ndarray) -> tuple[float, float, float]:
        """(value, max |projected gradient|, edm): the convergence test of every fit."""
        v, pg, edm = _kernels.convergence(as_f8(x), self.box, self.cm, self.kd)
        return float(v), float(pg), float(edm)


def _lbfgsb(prob: _Problem, x0: np.ndarray) -> tuple[np.ndarray, int, str]:
    # imported here: scipy.optimize costs ~0.3 s of a cold start that rarely needs it
    from scipy.optimize import minimize

    res = minimize(
        prob.value_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(prob.box.lo, prob.box.hi, strict=True)),
        options={"maxiter": 20000, "maxfun": 50000, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 30},
    )
    return as_f8(np.clip(res.x, prob.box.lo, prob.box.hi)), int(res.nit), str(res.message)


_NEWTON_CODES = {
    0: "converged",
    1: "iteration limit",
    2: "line search failed",
    3: "non-finite twice-NLL",
    4: "Hessian not positive definite",
}


def _newton(
    prob: _Problem, x0: np.ndarray, max_iter: int = 300
) -> tuple[np.ndarray, int, str, int, float, float]:
    """Structured quasi-Newton in numba (:func:`likelihood._kernels.newton_minimize`):
    (x, iterations, message, code, twice-NLL, edm); code 0 means converged by the very
    test of :func:`likelihood._kernels.convergence`."""
    x, v, it, code, edm = _kernels.newton_minimize(
        as_f8(x0), prob.box, prob.cm, prob.kd, max_iter, EDM_TOLERANCE, MAX_STEP
    )
    return x, int(it), _NEWTON_CODES.get(int(code), f"code {code}"), int(code), float(v), edm


def _setup(
    model: Model, data: Any, auxdata: Any, fixed_poi: float | None, init: Any, fixed: Any
) -> tuple[_Problem, np.ndarray, np.ndarray, np.ndarray]:
    """The scaled problem of a fit, its start, the model's initial values and fixed mask."""
    # as_f8 copies read-only arrays: the kernels see one array type only
    d = as_f8(model.data if data is None else data)
    a = as_f8(model.auxdata if auxdata is None else auxdata)
    if d.shape != model.data.shape or a.shape != model.auxdata.shape:
        raise ValueError(
            f"data / auxdata of shapes {d.shape} / {a.shape}; the model needs "
            f"{model.data.shape} / {model.auxdata.shape}"
        )
    fix = model.fixed.copy() if fixed is None else np.asarray(fixed, dtype=bool).copy()
    base = model.init.copy()
    start = base.copy() if init is None else as_f8(init).copy()
    if start.shape != base.shape:
        raise ValueError(f"init has shape {start.shape}, the model has {base.shape[0]} parameters")
    start[fix] = base[fix]
    if fixed_poi is not None:
        if model.poi_index is None:
            from likelihood.errors import NoPOIError

            raise NoPOIError("fixed_poi given but the model has no POI")
        fix[model.poi_index] = True
        start[model.poi_index] = float(fixed_poi)
    start = np.clip(start, model.bounds[:, 0], model.bounds[:, 1])
    if fixed_poi is not None:
        start[model.poi_index] = float(fixed_poi)
    prob = _Problem(model, d, a, fix, start)
    return prob, start, base, fix


def _screen(
    model: Model,
    init: np.ndarray,
    *,
    data: Any = None,
    auxdata: Any = None,
    fixed_poi: float | None = None,
    max_iter: int = 5,
) -> tuple[np.ndarray, float]:
    """A few Newton iterations from ``init``: (parameters, twice-NLL) where they end.

    The cheap first look of a restart (:mod:`likelihood._minima`); not a converged fit.
    """
    prob, start, _base, _fix = _setup(model, data, auxdata, fixed_poi, init, None)
    if prob.free.size == 0:
        return start, model.twice_nll(start, prob.kd.data, prob.kd.auxdata, stable=True)
    x, v, _it, _code, _edm = _kernels.newton_minimize(
        prob.x_of(start), prob.box, prob.cm, prob.kd, max_iter, EDM_TOLERANCE, MAX_STEP
    )
    return prob.theta(x), float(v)


def fit(
    model: Model,
    *,
    data: Any = None,
    auxdata: Any = None,
    fixed_poi: float | None = None,
    init: Any = None,
    fixed: Any = None,
    method: str = "auto",
) -> FitResult:
    """Maximum-likelihood fit, free or with the POI fixed.

    Parameters
    ----------
    model : Model
    data : array_like (n_main_bins,), optional
        Main-bin counts (default: the observed data).
    auxdata : array_like (n_aux,), optional
        Auxiliary data (default: the model's).
    fixed_poi : float, optional
        Fix the POI at this value (a conditional fit).
    init : array_like (n_pars,), optional
        Starting point (default ``model.init``).  Fixed parameters always take their
        value from ``model.init`` (and the POI from ``fixed_poi``).
    fixed : array_like of bool (n_pars,), optional
        Which parameters to hold (default ``model.fixed``).
    method : {"auto", "newton", "lbfgsb"}
        ``"auto"``: Newton, then L-BFGS-B as fallback.

    Returns
    -------
    FitResult
        Never raises for a fit that does not converge: ``success`` is False and
        ``status`` is ``"fit_failed"``.
    """
    prob, start, base, fix = _setup(model, data, auxdata, fixed_poi, init, fixed)
    d, a = prob.kd.data, prob.kd.auxdata
    if prob.free.size == 0:
        v = model.twice_nll(start, d, a, stable=True)
        ok = math.isfinite(v)
        return FitResult(start, v, ok, "ok" if ok else "fit_failed", "no free parameters", 0)

    attempts: list[tuple[str, np.ndarray]] = []
    if method in ("auto", "newton"):
        attempts.append(("newton", prob.x_of(start)))
    if method in ("auto", "lbfgsb"):
        attempts.append(("lbfgsb", prob.x_of(start)))
    if method == "auto":
        x_init = prob.x_of(np.where(fix, start, base))
        attempts.append(("lbfgsb", x_init))
    if not attempts:
        raise ValueError(f"unknown fit method {method!r}; use 'auto', 'newton' or 'lbfgsb'")

    n_iter = 0
    best: tuple[float, np.ndarray, str] | None = None
    messages: list[str] = []
    for name, x0 in attempts:
        if name == "newton":
            x, it, msg, code, v, edm = _newton(prob, x0)
            if code == 0 and math.isfinite(v):
                # the kernel ended on convergence()'s own test: no second evaluation
                messages.append(f"{name}: {msg} (twice_nll={v:.10g}, edm={edm:.2g})")
                return FitResult(prob.theta(x), v, True, "ok", "; ".join(messages), n_iter + it)
        else:
            x, it, msg = _lbfgsb(prob, x0)
        n_iter += it
        v, pg, edm = prob.edm(x)
        messages.append(f"{name}: {msg} (twice_nll={v:.10g}, |pg|={pg:.2g}, edm={edm:.2g})")
        if math.isfinite(v) and (best is None or v < best[0]):
            best = (v, x, name)
        if math.isfinite(v) and edm < EDM_TOLERANCE:
            pars = prob.theta(x)
            return FitResult(pars, v, True, "ok", "; ".join(messages), n_iter)
        log.debug("fit attempt %s did not converge: %s", name, messages[-1])
    if best is None:
        return FitResult(
            prob.theta(attempts[0][1]), math.nan, False, "fit_failed", "; ".join(messages), n_iter
        )
    return FitResult(prob.theta(best[1]), best[0], False, "fit_failed", "; ".join(messages), n_iter)


def _warm_up_spec() -> dict[str, Any]:
    """A two-bin workspace with every modifier type (the kernels' one specialisation)."""
    bkg_mods = [
        {"name": "norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
        {"name": "shape", "type": "histosys", "data": {"hi_data": [52, 21], "lo_data": [47, 19]}},
        {"name": "stat", "type": "staterror", "data": [2.0, 1.5]},
        {"name": "unc", "type": "shapesys", "data": [3.0, 2.0]},
        {"name": "lumi", "type": "lumi", "data": None},
        {"name": "free", "type": "normfactor", "data": None},
        {"name": "sf", "type": "shapefactor", "data": None},
    ]
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": [5.0, 2.0],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {"name": "bkg", "data": [50.0, 20.0], "modifiers": bkg_mods},
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [53.0, 22.0]}],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.02],
                            "inits": [1.0],
                            "bounds": [[0.9, 1.1]],
                        },
                        {"name": "sf", "fixed": True},
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel that a fit can reach.

    Newton, its convergence test, the L-BFGS-B fallback's objective, the screening of
    restarts, rates, auxdata and twice-NLL with its gradient: called when a scan worker
    starts, so that no kernel is compiled in the middle of a scan.

    The fallback's kernels are loaded by calling them as :func:`_lbfgsb` does, without
    running scipy's L-BFGS-B: importing ``scipy.optimize`` costs ~0.2 s of every worker's
    start, and is left to the first fit that falls back (an import, not a compilation).
    """
    from likelihood.model import compile as compile_model

    model = compile_model(_warm_up_spec(), validate=False)
    p = model.init.copy()
    model.expected_actualdata(p)
    model.expected_auxdata(p)
    model.twice_nll(p)
    model.twice_nll_and_grad(p, stable=True)
    shifted = model.data + 1.0
    for fixed_poi, data in ((None, None), (1.0, shifted)):
        fit(model, method="newton", fixed_poi=fixed_poi, data=data)
        prob, start, _base, _fix = _setup(model, data, None, fixed_poi, None, None)
        x = prob.x_of(start)
        prob.value_grad(x)  # the objective of L-BFGS-B (scipy passes float64 C arrays)
        prob.edm(x)  # the convergence test after it
    _screen(model, p, max_iter=2)
