"""Discovery significance: the test statistic q0, its p-value and significance Z.

Asymptotic formulas of Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727, with pyhf 0.7.6's
conventions (``pyhf.infer.hypotest(0.0, ..., test_stat="q0", calctype="asymptotics")``):

* ``q0 = 2 (NLL(0, theta_hat_hat) - NLL(mu_hat, theta_hat))`` for ``mu_hat >= 0``, else 0
  (eq. 12), the fits bounded by the model's bounds (POI >= 0 for a normfactor);
* observed: ``p0 = 1 - Phi(sqrt(q0))``, ``Z = sqrt(q0)`` (eq. 53, 54);
* expected (eq. 52 and the band around it): Asimov data of the signal hypothesis
  ``mu' = asimov_mu`` (default 1): the expected main counts and auxdata of the
  ``mu = mu'`` conditional fit to the observed data (``expected="aposteriori"``, pyhf's
  choice) or of the nominal parameters with ``mu = mu'`` (``"apriori"``).
  ``q0_A`` is q0 on these data (the free fit to Asimov data is exactly the generating
  point), the median expected significance is ``sqrt(q0_A)``, and the band is
  ``Z_exp = sqrt(q0_A) + n``, ``p0_exp = Phi(-Z_exp)`` for n = -2, -1, 0, +1, +2.

pyhf returns the expected p-values in the other order (``[Phi(-(sqrt(q0_A) + n)) for n in
(2, 1, 0, -1, -2)]``): pyhf's list is ``p0_exp[::-1]``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numpy as np
from scipy.special import ndtr

from likelihood._minima import global_fit
from likelihood.cls import _warm, _with_poi, asimov_data
from likelihood.errors import LikelihoodError, NoPOIError
from likelihood.fit import FitResult
from likelihood.model import Model

__all__ = ["discovery", "DiscoveryResult"]

log = logging.getLogger(__name__)

_BAND = (-2.0, -1.0, 0.0, 1.0, 2.0)
# a fit whose minimum is above another fit's feasible point by more than this is refitted
_REFIT_TOL = 1e-6


class DiscoveryResult(NamedTuple):
    """Asymptotic discovery test of the background-only hypothesis (mu = 0).

    Attributes
    ----------
    p0_obs : float
        Observed p-value of the background-only hypothesis, ``1 - Phi(sqrt(q0))``.
    z_obs : float
        Observed significance ``sqrt(q0)``.
    p0_exp : tuple of 5 floats
        Expected p-values at -2, -1, 0, +1, +2 sigma of the expected significance
        (descending: the -2 sigma edge is the least significant); pyhf's list reversed.
    z_exp : tuple of 5 floats
        Expected significances ``sqrt(q0_A) + n``, n = -2..2 (ascending); ``z_exp[2]`` is
        the median (arXiv:1007.1727 eq. 52).
    q0, q0_asimov : float
        The test statistic on the observed data and on the Asimov data.
    mu_hat : float
        Best-fit POI of the free fit to the observed data.
    status : str
        ``"ok"`` or ``"fit_failed"``; values are NaN only with a status other than ``"ok"``.
    message : str
        What went wrong, or an empty string.
    pars_free : ndarray (n_pars,)
        Best-fit parameters of the free fit (a good ``init`` for a neighbouring point).
    """

    p0_obs: float
    z_obs: float
    p0_exp: tuple[float, float, float, float, float]
    z_exp: tuple[float, float, float, float, float]
    q0: float
    q0_asimov: float
    mu_hat: float
    status: str
    message: str
    pars_free: np.ndarray


def _lower(
    model: Model, fits: list[FitResult], starts: list[np.ndarray], **kwargs: Any
) -> FitResult:
    """Keep the lowest of ``fits``; refit from ``starts`` that are feasible points below it."""
    best = min(fits, key=lambda r: r.twice_nll if math.isfinite(r.twice_nll) else math.inf)
    data, aux = kwargs.get("data"), kwargs.get("auxdata")
    for st in starts:
        v = model.twice_nll(st, data, aux, stable=True)
        if math.isfinite(v) and v < best.twice_nll - _REFIT_TOL * max(1.0, abs(v)):
            log.debug(
                "discovery: refit from a feasible point %.3g below the minimum", best.twice_nll - v
            )
            again = global_fit(model, [st], **kwargs)
            if again.success and again.twice_nll < best.twice_nll:
                best = again
    return best


def discovery(
    model: Model,
    *,
    expected: str = "aposteriori",
    asimov_mu: float = 1.0,
    init: Any = None,
) -> DiscoveryResult:
    """Asymptotic discovery p-value and significance (test statistic q0).

    Parameters
    ----------
    model : Model
        A model with a POI (the signal strength).
    expected : {"aposteriori", "apriori"}
        Asimov data from the ``mu = asimov_mu`` fit to the observed data (pyhf's choice),
        or from the nominal parameters with ``mu = asimov_mu``.
    asimov_mu : float
        Signal strength of the Asimov data of the expected significance (pyhf: 1).
    init : array_like (n_pars,), optional
        An extra starting point of the fits (e.g. ``pars_free`` of a neighbouring point);
        every fit also starts at the model's initial values.  Ignored when its shape does
        not match the model.

    Returns
    -------
    DiscoveryResult

    Raises
    ------
    NoPOIError
        The model has no POI.
    LikelihoodError
        ``expected`` is not one of the two choices, or ``asimov_mu`` is not finite.
    """
    poi = model.poi_index
    if poi is None:
        which = f"model {model.name!r}" if model.name else "the model"
        raise NoPOIError(
            f"{which} has no parameter of interest (measurement {model.measurement!r}): the "
            "patch adds no signal; there is no discovery significance to compute"
        )
    if expected not in ("aposteriori", "apriori"):
        raise LikelihoodError(
            f"expected {expected!r} is not supported; use 'aposteriori' or 'apriori'"
        )
    mu1 = float(asimov_mu)
    if not math.isfinite(mu1):
        raise LikelihoodError(f"asimov_mu must be a finite number, got {asimov_mu!r}")
    msgs: list[str] = []
    nominal = model.init.copy()
    starts = [nominal, *_warm(model, init)]
    # observed data: free fit and mu = 0 fit; the free fit is refitted from the mu = 0
    # minimum when that point is lower (it is a feasible point of the free fit)
    free = global_fit(model, starts)
    cond0 = global_fit(
        model, [_with_poi(nominal, poi, 0.0), _with_poi(free.pars, poi, 0.0)], fixed_poi=0.0
    )
    free = _lower(model, [free], [cond0.pars])
    for what, r in (("free fit", free), ("fit at mu=0", cond0)):
        if not r.success:
            msgs.append(f"{what}: {r.message}")
    mu_hat = float(free.pars[poi])
    q0 = max(cond0.twice_nll - free.twice_nll, 0.0)
    if mu_hat < 0.0:
        q0 = 0.0
    # Asimov data of the signal hypothesis mu'
    if expected == "aposteriori":
        gen = global_fit(
            model, [_with_poi(nominal, poi, mu1), _with_poi(free.pars, poi, mu1)], fixed_poi=mu1
        )
        if not gen.success:
            msgs.append(f"fit at mu={mu1:g}: {gen.message}")
        pars_a = gen.pars
    else:
        pars_a = _with_poi(nominal, poi, mu1)
    data_a, aux_a = asimov_data(model, pars_a)
    nll_a_free = model.twice_nll(pars_a, data_a, aux_a, stable=True)
    cond0_a = global_fit(
        model,
        [_with_poi(nominal, poi, 0.0), _with_poi(pars_a, poi, 0.0), cond0.pars],
        data=data_a,
        auxdata=aux_a,
        fixed_poi=0.0,
    )
    if not cond0_a.success:
        msgs.append(f"Asimov fit at mu=0: {cond0_a.message}")
    q0_a = max(cond0_a.twice_nll - nll_a_free, 0.0)
    if mu1 < 0.0:
        q0_a = 0.0  # eq. 12: a negative signal is no discovery
    z_obs = math.sqrt(q0) if math.isfinite(q0) else math.nan
    sqrt_qa = math.sqrt(q0_a) if math.isfinite(q0_a) else math.nan
    z_exp = tuple(sqrt_qa + n for n in _BAND)
    p0_obs = float(ndtr(-z_obs))
    p0_exp = tuple(float(ndtr(-z)) for z in z_exp)
    status = "ok" if not msgs else "fit_failed"
    message = "; ".join(msgs)
    if status == "ok" and not all(math.isfinite(v) for v in (z_obs, p0_obs, *z_exp, *p0_exp)):
        status = "fit_failed"
        message = f"non-finite q0 (q0={q0!r}, q0_A={q0_a!r})"
    return DiscoveryResult(
        p0_obs=p0_obs,
        z_obs=z_obs,
        p0_exp=(p0_exp[0], p0_exp[1], p0_exp[2], p0_exp[3], p0_exp[4]),
        z_exp=(z_exp[0], z_exp[1], z_exp[2], z_exp[3], z_exp[4]),
        q0=float(q0),
        q0_asimov=float(q0_a),
        mu_hat=mu_hat,
        status=status,
        message=message,
        pars_free=free.pars,
    )
