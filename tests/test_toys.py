"""Toy-based CLs (likelihood.toys): exact answers, pyhf's ToyCalculator, reproducibility.

The counting-experiment test compares with an independent brute-force computation: the
profile likelihood of the on/off problem in closed form, and the exact Poisson sums of the
toy procedure over every (n, m) outcome.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import xlogy
from scipy.stats import poisson

import likelihood
from likelihood.toys import BAND_PERCENTILES, _band, empirical_pvalue, hypotest_toys

S, B, SIGMA_B, N_OBS = 5.0, 10.0, 3.0, 9.0
TAU = (B / SIGMA_B) ** 2


def _counting_spec(s: float, b: float, sigma_b: float, n_obs: float) -> dict:
    return {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {
                        "name": "signal",
                        "data": [s],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "bkg",
                        "data": [b],
                        "modifiers": [{"name": "unc", "type": "shapesys", "data": [sigma_b]}],
                    },
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [n_obs]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


# --- independent closed-form on/off profile likelihood --------------------------------
# n ~ Pois(mu S + gamma B), m ~ Pois(TAU gamma); -2 ln L up to constants
def _m2lnl(mu: np.ndarray, g: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    lam = mu * S + g * B
    return 2.0 * (lam - xlogy(n, lam) + TAU * g - xlogy(m, TAU * g))


def _gamma_cond(mu: float, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Conditional MLE of gamma at mu (root of a quadratic)."""
    a = B * (B + TAU)
    bq = (B + TAU) * mu * S - B * (n + m)
    c = -m * mu * S
    return (-bq + np.sqrt(bq * bq - 4.0 * a * c)) / (2.0 * a)


def _qtilde(mu: float, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    g_hat = m / TAU
    mu_hat = (n - g_hat * B) / S
    neg = mu_hat < 0
    g_free = np.where(neg, (n + m) / (B + TAU), g_hat)
    mu_free = np.where(neg, 0.0, mu_hat)
    q = _m2lnl(mu, _gamma_cond(mu, n, m), n, m) - _m2lnl(mu_free, g_free, n, m)
    return np.where(mu_free > mu, 0.0, np.maximum(q, 0.0))


def _exact_pvalue(mu_gen: float, q_obs: float) -> float:
    """P(qtilde_1 >= q_obs) when (n, m) are generated at the conditional fit at mu_gen."""
    g = float(_gamma_cond(mu_gen, np.array(N_OBS), np.array(TAU)))
    n = np.arange(0, 80)[:, None]
    m = np.arange(0, 80)[None, :]
    prob = poisson.pmf(n, mu_gen * S + g * B) * poisson.pmf(m, TAU * g)
    assert prob.sum() > 1.0 - 1e-12
    q = _qtilde(1.0, n.astype(float), m.astype(float))
    return float(prob[q >= q_obs].sum())


def test_counting_experiment_matches_exact_poisson_sums():
    model = likelihood.compile(_counting_spec(S, B, SIGMA_B, N_OBS))
    q_obs = float(_qtilde(1.0, np.array(N_OBS), np.array(TAU)))
    clsb = _exact_pvalue(1.0, q_obs)
    clb = _exact_pvalue(0.0, q_obs)
    cls = clsb / clb
    res = hypotest_toys(model, 1.0, ntoys=2000, seed=20261202, bootstrap=0)
    assert res.status == "ok", res.message
    assert res.teststat_obs == pytest.approx(q_obs, rel=1e-6)
    assert abs(res.clsb_obs - clsb) < 3 * res.clsb_obs_err
    assert abs(res.clb_obs - clb) < 3 * res.clb_obs_err
    assert abs(res.cls_obs - cls) < 3 * res.cls_obs_err
    # the uncertainties are the binomial ones
    assert res.clsb_obs_err == pytest.approx(math.sqrt(res.clsb_obs * (1 - res.clsb_obs) / 2000))
    assert res.ntoys == 2000 and res.teststat_sb.shape == (2000,)


def test_same_seed_same_result_for_any_number_of_workers():
    model = likelihood.compile(_counting_spec(S, B, SIGMA_B, N_OBS))
    kw = {"ntoys": 60, "seed": 7, "block_size": 20, "bootstrap": 20}
    one = hypotest_toys(model, 1.0, workers=1, **kw)
    two = hypotest_toys(model, 1.0, workers=2, **kw)
    assert np.array_equal(one.teststat_sb, two.teststat_sb)
    assert np.array_equal(one.teststat_b, two.teststat_b)
    assert one.cls_obs == two.cls_obs and one.cls_exp == two.cls_exp
    assert one.cls_exp_err == two.cls_exp_err
    other = hypotest_toys(model, 1.0, workers=1, **{**kw, "seed": 8})
    assert not np.array_equal(one.teststat_b, other.teststat_b)
    # the two hypotheses draw from independent streams
    assert not np.array_equal(one.teststat_sb, one.teststat_b)


def test_result_type_and_q0():
    model = likelihood.compile(_counting_spec(S, B, SIGMA_B, 20.0))
    res = hypotest_toys(model, 1.0, ntoys=200, seed=3, test_stat="q0", bootstrap=0)
    assert type(res) is likelihood.ToyCLsResult
    assert res._fields == likelihood.ToyCLsResult._fields
    # q0: the cls fields carry p0 = CLs+b of the mu = 0 toys, as pyhf returns
    assert res.cls_obs == res.clsb_obs
    assert res.teststat_obs > 0
    # 20 observed on 10 +- 3 expected: p0 is small but not tiny
    assert 0.0 < res.clsb_obs < 0.2
    with pytest.raises(likelihood.LikelihoodError, match="test_stat"):
        hypotest_toys(model, 1.0, ntoys=10, test_stat="t")
    with pytest.raises(likelihood.LikelihoodError, match="ntoys"):
        hypotest_toys(model, 1.0, ntoys=0)


def test_empirical_pvalue_counts_ties_as_beyond():
    samples = np.array([0.0, 0.0, 1.0, 2.0, 2.0])
    assert empirical_pvalue(samples, 2.0) == pytest.approx(0.4)
    assert empirical_pvalue(samples, 0.0) == pytest.approx(1.0)
    assert empirical_pvalue(samples, 2.5) == 0.0


# --- pyhf's ToyCalculator -----------------------------------------------------------------
@pytest.fixture
def pyhf_numpy2(monkeypatch):
    """pyhf 0.7.6's numpy backend calls np.percentile(interpolation=), gone in numpy 2."""
    pyhf = pytest.importorskip("pyhf")
    from pyhf.tensor.numpy_backend import numpy_backend

    def percentile(self, tensor_in, q, axis=None, interpolation="linear"):
        return np.percentile(tensor_in, q, axis=axis, method=interpolation)

    monkeypatch.setattr(numpy_backend, "percentile", percentile)
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    return pyhf


def test_same_conventions_as_pyhf_on_the_same_toys(pyhf_numpy2):
    """Feed our sampled test statistics to pyhf's p-value and band code: equal numbers."""
    pyhf = pyhf_numpy2
    from pyhf.infer.calculators import EmpiricalDistribution, ToyCalculator

    spec = _counting_spec(S, B, SIGMA_B, N_OBS)
    model = likelihood.compile(spec)
    res = hypotest_toys(model, 1.0, ntoys=300, seed=11, bootstrap=0)
    pm = pyhf.Workspace(spec).model()
    data = pyhf.Workspace(spec).data(pm)
    calc = ToyCalculator(data, pm, ntoys=1, track_progress=False)
    # pyhf's observed test statistic
    assert float(calc.teststatistic(1.0)) == pytest.approx(res.teststat_obs, rel=1e-5)
    # ties: toys with the same counts have the same statistic up to fit rounding (~1e-9),
    # which pyhf's exact >= resolves at random and we count as ties (1e-6); on samples
    # with the ties made exact, both constructions must give the same numbers
    q_sb, q_b = np.round(res.teststat_sb, 5), np.round(res.teststat_b, 5)
    q_obs = round(res.teststat_obs, 5)
    sb, b = EmpiricalDistribution(q_sb), EmpiricalDistribution(q_b)
    clsb, clb, cls = calc.pvalues(q_obs, sb, b)
    ours_clsb = float(empirical_pvalue(q_sb, q_obs, tolerance=1e-6))
    ours_clb = float(empirical_pvalue(q_b, q_obs, tolerance=1e-6))
    assert float(clsb) == pytest.approx(ours_clsb, abs=1e-15)
    assert float(clb) == pytest.approx(ours_clb, abs=1e-15)
    assert float(cls) == pytest.approx(ours_clsb / ours_clb, rel=1e-12)
    _clsb_exp, _clb_exp, cls_exp = calc.expected_pvalues(sb, b)
    np.testing.assert_allclose(
        [float(x) for x in cls_exp], _band(q_sb, q_b, False), rtol=1e-12, atol=1e-15
    )
    # and the result is that construction on its own samples
    np.testing.assert_allclose(res.cls_exp, _band(res.teststat_sb, res.teststat_b, False))
    assert res.clsb_obs == float(
        empirical_pvalue(res.teststat_sb, res.teststat_obs, tolerance=1e-6)
    )
    assert BAND_PERCENTILES[2] == 50.0


def test_cls_agrees_with_pyhf_toycalculator(pyhf_numpy2):
    """pyhf's own toys (its generation, fits and p-values) against ours: within errors."""
    pyhf = pyhf_numpy2
    spec = _counting_spec(S, B, SIGMA_B, N_OBS)
    pm = pyhf.Workspace(spec).model()
    data = pyhf.Workspace(spec).data(pm)
    np.random.seed(5)  # noqa: NPY002 - pyhf samples with numpy's global state
    n_pyhf = 100
    cls_p, (clsb_p, clb_p), band_p = pyhf.infer.hypotest(
        1.0,
        data,
        pm,
        calctype="toybased",
        ntoys=n_pyhf,
        track_progress=False,
        return_tail_probs=True,
        return_expected_set=True,
    )
    res = hypotest_toys(likelihood.compile(spec), 1.0, ntoys=2000, seed=5)
    cls_p, clsb_p, clb_p = float(cls_p), float(clsb_p), float(clb_p)
    err_p = cls_p * math.hypot(
        math.sqrt(clsb_p * (1 - clsb_p) / n_pyhf) / clsb_p,
        math.sqrt(clb_p * (1 - clb_p) / n_pyhf) / clb_p,
    )
    assert abs(cls_p - res.cls_obs) < 3 * math.hypot(err_p, res.cls_obs_err)
    # median expected: within the errors too (pyhf's error from our bootstrap, scaled)
    med_p = float(band_p[2])
    err_med = res.cls_exp_err[2] * math.sqrt(2000 / n_pyhf)
    assert abs(med_p - res.cls_exp[2]) < 3 * math.hypot(err_med, res.cls_exp_err[2])


# --- a high-count published likelihood ----------------------------------------------------
def test_high_count_point_agrees_with_asymptotics(shared_hepdata):
    """sbottom RegionC 1100_450_60: the signal sits in bins of tens of events.

    Toys and asymptotic CLs agree within the toys' statistical error.  (Points whose
    signal sits in the 2-3 event bins, e.g. RegionA 1300_205_60, do not: there the toys
    give CLs 0.32 +- 0.02 against 0.24 asymptotically, see docs/toys.md.)
    """
    d = shared_hepdata / "sbottom_multib" / "RegionC"
    bkg = likelihood.Background(json.loads((d / "BkgOnly.json").read_text()))
    model = bkg.with_patch(json.loads((d / "patch.sbottom_1100_450_60.json").read_text()))
    asym = likelihood.hypotest(model, 1.0)
    res = hypotest_toys(model, 1.0, ntoys=400, seed=1, bootstrap=30)
    assert res.status == "ok", res.message
    assert res.n_failed == 0
    assert abs(res.cls_obs - asym.cls_obs) < 3 * res.cls_obs_err, (res.cls_obs, asym.cls_obs)
    assert abs(res.cls_exp[2] - asym.cls_exp[2]) < 3 * res.cls_exp_err[2]
    assert 0.0 < res.cls_obs_err < 0.05


def test_upper_limit_with_no_observed_event_is_three_signal_events():
    """n = 0 observed on ~no background: toys give the classic 3-event limit (e^-s = 0.05)."""
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {
                        "name": "signal",
                        "data": [1.0],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "bkg",
                        "data": [0.01],
                        "modifiers": [
                            {"name": "b_unc", "type": "normsys", "data": {"hi": 1.01, "lo": 0.99}}
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [0.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    model = likelihood.compile(spec)
    ul = likelihood.upper_limit_toys(model, ntoys=400, seed=2, scan=[2.5, 3.0, 3.5])
    assert ul.mu_ul_obs == pytest.approx(-math.log(0.05), abs=0.35), ul
    asym = likelihood.upper_limit(model)
    # the asymptotic formulae are too aggressive here
    assert asym.mu_ul_obs < ul.mu_ul_obs - 0.3, (asym, ul)


# --- the numba toy loop ------------------------------------------------------------------
def _every_modifier_model():
    from likelihood.fit import _warm_up_spec

    return likelihood.compile(_warm_up_spec())


def test_numba_toy_loop_gives_the_python_fits_statistics():
    """The numba loop (likelihood._toykernels.fit_toys) and the Python fits of the start
    policy (likelihood._minima.global_fit, with the L-BFGS-B fallback) on the same toys
    of a model with every modifier type: the same test statistics, to the fits' precision."""
    from likelihood import toys

    model = _every_modifier_model()
    gen = likelihood.fit(model, fixed_poi=1.0).pars
    rng = np.random.Generator(np.random.PCG64(4))
    data, aux = toys._draw_block(model, gen, rng, 40)
    q, status = toys._fit_block(model, gen, 1.0, "qtilde", data, aux, True, True)
    assert np.all(status == 0)
    q_py = [
        toys._teststat(model, data[i].copy(), aux[i].copy(), gen, 1.0, "qtilde")[0]
        for i in range(40)
    ]
    assert np.count_nonzero(q) > 10  # not all trivially 0 (mu_hat > mu)
    np.testing.assert_allclose(q, q_py, rtol=0, atol=1e-6)


def test_toy_fit_on_the_empty_bin_wall_is_the_constrained_minimum():
    """A toy with 0 events where a histosys extrapolates the rate below 0.

    The Poisson term of n = 0 is 2 nu for nu >= 0 and infinite below: with a background
    2 + 1.5 alpha (alpha < -1, code4p) and no signal the minimum of 2 nu + alpha^2 is on
    that wall, alpha = -4/3, where Newton's line search stalls.  The toy fits follow the
    wall by the barrier continuation; the statistic is the analytic one.
    """
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {
                        "name": "signal",
                        "data": [1.0],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "bkg",
                        "data": [2.0],
                        "modifiers": [
                            {
                                "name": "shape",
                                "type": "histosys",
                                "data": {"hi_data": [3.5], "lo_data": [0.5]},
                            }
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [0.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    from likelihood import toys

    model = likelihood.compile(spec)
    # the plain Newton fit (and L-BFGS-B) cannot converge on the wall
    assert not likelihood.fit(model, fixed_poi=0.0).success
    # free fit: mu_hat = 0 (its bound), alpha on the wall: 2 * 0 + (4/3)^2
    # conditional at mu = 1: nu = 3 + 1.5 alpha, minimum inside at alpha = -1.5: nu = 0.75
    q_exact = (2 * 0.75 + 1.5**2) - (4.0 / 3.0) ** 2
    for restart in (False, True):
        q, status = toys._fit_block(
            model,
            model.init,
            1.0,
            "qtilde",
            np.zeros((1, 1)),
            model.auxdata[None, :],
            restart,
            restart,
        )
        assert status[0] == 0
        assert q[0] == pytest.approx(q_exact, abs=1e-8)


def test_a_toy_whose_numba_fit_fails_is_refitted_in_python(monkeypatch):
    """Toys flagged by the numba loop go back to the Python fits; nothing else changes."""
    from likelihood import _toykernels, toys

    model = likelihood.compile(_counting_spec(S, B, SIGMA_B, N_OBS))
    kw = {"ntoys": 20, "seed": 9, "block_size": 10, "bootstrap": 0}
    ref = hypotest_toys(model, 1.0, **kw)
    real = _toykernels.fit_toys
    calls = []

    def flag_first(*args):
        out = real(*args)
        out[0][0] = math.nan
        out[1][0] = _toykernels.TOY_FREE_FAILED
        return out

    def python_fit(*args, **kwargs):
        calls.append(1)
        return teststat(*args, **kwargs)

    teststat = toys._teststat
    monkeypatch.setattr(_toykernels, "fit_toys", flag_first)
    monkeypatch.setattr(toys, "_teststat", python_fit)
    res = hypotest_toys(model, 1.0, **kw)
    assert len(calls) == 4  # the first toy of each block
    assert res.n_failed == 0 and res.status == "ok"
    np.testing.assert_allclose(res.teststat_sb, ref.teststat_sb, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.teststat_b, ref.teststat_b, rtol=0, atol=1e-6)
