"""Tests of the numba HistFactory core: model compilation, kernels, fits, CLs.

pyhf 0.7.6 is the oracle on small generated workspaces that exercise every modifier type,
interpolation code and measurement setting; the real ATLAS likelihoods in
``../shared/hepdata`` check signal-as-data (``Background.with_patch``) against a full
compile, the no-signal patch, and the 3L eRJR workspace that pyhf cannot fit.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import likelihood
from likelihood import _kernels
from likelihood.cls import hypotest, upper_limit
from likelihood.errors import InvalidPatch, InvalidWorkspace, LikelihoodError, NoPOIError
from likelihood.fit import fit
from likelihood.model import Background, compile, poisson_saturated

pyhf = pytest.importorskip("pyhf")

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:.*qmu test statistic.*"),
]


# ---------------------------------------------------------------------------------------
# a generated workspace with every modifier type
# ---------------------------------------------------------------------------------------
def _workspace(seed: int = 0, *, lumi_fixed: bool = False) -> dict:
    rng = np.random.default_rng(seed)

    def yields(n: int, scale: float) -> list[float]:
        return [float(x) for x in rng.uniform(0.5, 1.5, n) * scale]

    sr_bkg = yields(3, 40.0)
    cr_bkg = yields(2, 200.0)
    sr_other = yields(3, 10.0)
    sig = yields(3, 8.0)
    spec = {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": sig,
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "lumi", "type": "lumi", "data": None},
                            {
                                "name": "sig_xsec",
                                "type": "normsys",
                                "data": {"hi": 1.1, "lo": 0.85},
                            },
                            {
                                "name": "staterror_SR",
                                "type": "staterror",
                                "data": [0.05 * s for s in sig],
                            },
                        ],
                    },
                    {
                        "name": "bkg",
                        "data": sr_bkg,
                        "modifiers": [
                            {"name": "mu_bkg", "type": "normfactor", "data": None},
                            {"name": "lumi", "type": "lumi", "data": None},
                            {"name": "jes", "type": "normsys", "data": {"hi": 1.05, "lo": 0.93}},
                            {
                                "name": "jes",
                                "type": "histosys",
                                "data": {
                                    "hi_data": [b * 1.04 for b in sr_bkg],
                                    "lo_data": [b * 0.97 for b in sr_bkg],
                                },
                            },
                            {
                                "name": "shape",
                                "type": "histosys",
                                "data": {
                                    "hi_data": [
                                        b * f for b, f in zip(sr_bkg, (1.1, 1.0, 0.9), strict=True)
                                    ],
                                    "lo_data": [
                                        b * f
                                        for b, f in zip(sr_bkg, (0.92, 1.0, 1.07), strict=True)
                                    ],
                                },
                            },
                            {
                                "name": "staterror_SR",
                                "type": "staterror",
                                "data": [0.1 * math.sqrt(b) for b in sr_bkg],
                            },
                        ],
                    },
                    {
                        "name": "other",
                        "data": sr_other,
                        "modifiers": [
                            {
                                "name": "other_unc",
                                "type": "shapesys",
                                "data": [0.2 * b for b in sr_other[:2]] + [0.0],
                            },
                            {"name": "jes", "type": "normsys", "data": {"hi": 0.96, "lo": 1.02}},
                        ],
                    },
                ],
            },
            {
                "name": "CR",
                "samples": [
                    {
                        "name": "bkg",
                        "data": cr_bkg,
                        "modifiers": [
                            {"name": "mu_bkg", "type": "normfactor", "data": None},
                            {"name": "lumi", "type": "lumi", "data": None},
                            {"name": "jes", "type": "normsys", "data": {"hi": 1.02, "lo": 0.99}},
                            {
                                "name": "staterror_CR",
                                "type": "staterror",
                                "data": [0.02 * b for b in cr_bkg[:1]] + [0.0],
                            },
                        ],
                    },
                    {
                        "name": "fakes",
                        "data": [20.0, 10.0],
                        "modifiers": [
                            {"name": "free_shape", "type": "shapefactor", "data": None},
                        ],
                    },
                ],
            },
        ],
        "observations": [
            {
                "name": "SR",
                "data": [
                    float(round(x)) for x in np.add(np.add(sr_bkg, sr_other), 0.5 * np.array(sig))
                ],
            },
            {
                "name": "CR",
                "data": [
                    float(round(x * 1.03)) + f for x, f in zip(cr_bkg, (22.0, 9.0), strict=True)
                ],
            },
        ],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.017],
                            "bounds": [[0.915, 1.085]],
                            "inits": [1.0],
                            "fixed": lumi_fixed,
                        },
                        {"name": "mu_bkg", "bounds": [[0.0, 5.0]], "inits": [1.2]},
                    ],
                },
            },
            {
                "name": "other_meas",
                "config": {
                    "poi": "mu_bkg",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.05],
                            "bounds": [[0.5, 1.5]],
                            "inits": [1.0],
                        },
                        {"name": "jes", "fixed": True, "inits": [0.3]},
                        {"name": "staterror_SR", "sigmas": [0.03, 0.04, 0.05]},
                        {"name": "other_unc", "auxdata": [20.0, 30.0, 1.0]},
                    ],
                },
            },
        ],
        "version": "1.0.0",
    }
    return spec


def _pyhf_model(spec: dict, measurement: str | None = None, settings: dict | None = None):
    ws = pyhf.Workspace(spec)
    kw = {"modifier_settings": settings} if settings else {}
    model = ws.model(measurement_name=measurement, **kw)
    return model, ws.data(model)


def _mapped(model: likelihood.Model, pm, pars) -> np.ndarray:
    """pyhf parameter vector -> ours, by name."""
    out = np.empty(model.n_pars)
    for name, value in zip(pm.config.par_names, np.asarray(pars), strict=True):
        out[model.par_index(name)] = value
    return out


def _random_points(model: likelihood.Model, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lo, hi = model.bounds[:, 0], model.bounds[:, 1]
    pts = []
    for _ in range(n):
        p = model.init + rng.normal(0.0, 1.0, model.n_pars) * np.minimum(model.widths, 0.5)
        pts.append(np.clip(p, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo)))
    return pts


SETTINGS = [
    None,
    {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}},
    {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code0"}},
    {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code4p"}},
]


# ---------------------------------------------------------------------------------------
# model layout and twice-NLL against pyhf
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("measurement", [None, "other_meas"])
def test_layout_matches_pyhf(measurement: str | None) -> None:
    spec = _workspace()
    model = compile(spec, measurement=measurement)
    pm, data = _pyhf_model(spec, measurement)
    assert model.parameter_names == tuple(pm.config.par_names)
    assert model.channels == tuple(pm.config.channels)
    assert model.channel_nbins == dict(pm.config.channel_nbins)
    assert model.poi_name == pm.config.poi_name
    assert model.poi_index == pm.config.poi_index
    np.testing.assert_array_equal(model.init, pm.config.suggested_init())
    np.testing.assert_array_equal(model.bounds, np.asarray(pm.config.suggested_bounds()))
    np.testing.assert_array_equal(model.fixed, pm.config.suggested_fixed())
    np.testing.assert_array_equal(np.concatenate([model.data, model.auxdata]), data)


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("measurement", [None, "other_meas"])
def test_rates_and_twice_nll_match_pyhf(settings: dict | None, measurement: str | None) -> None:
    spec = _workspace(3)
    model = compile(spec, measurement=measurement, modifier_settings=settings)
    pm, data = _pyhf_model(spec, measurement, settings)
    # points spread across the interpolation regions |alpha| < 1 and > 1
    pts = _random_points(model, 6)
    pts.append(np.clip(model.init + 1.7 * np.minimum(model.widths, 0.6), *model.bounds.T))
    pts.append(np.clip(model.init - 1.4 * np.minimum(model.widths, 0.6), *model.bounds.T))
    for p in pts:
        ppyhf = np.array([p[model.par_index(n)] for n in pm.config.par_names])
        np.testing.assert_allclose(
            model.expected_actualdata(p), pm.expected_actualdata(ppyhf), rtol=1e-12
        )
        np.testing.assert_allclose(
            model.expected_auxdata(p), pm.expected_auxdata(ppyhf), rtol=1e-12
        )
        ours = model.twice_nll(p)
        theirs = float(-2.0 * pm.logpdf(ppyhf, data)[0])
        assert ours == pytest.approx(theirs, rel=1e-10)
        # the stable evaluation (used by the fits) agrees in exact arithmetic
        assert model.twice_nll(p, stable=True) == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize("settings", SETTINGS[:2])
def test_gradient_matches_finite_differences(settings: dict | None) -> None:
    model = compile(_workspace(5), modifier_settings=settings)
    for p in _random_points(model, 3, seed=7):
        value, grad = model.twice_nll_and_grad(p)
        assert value == pytest.approx(model.twice_nll(p), rel=1e-13)
        h = 1e-6 * np.maximum(np.minimum(model.widths, 1.0), 1e-3)
        fd = np.empty(model.n_pars)
        for i in range(model.n_pars):
            e = np.zeros(model.n_pars)
            e[i] = h[i]
            fd[i] = (model.twice_nll(p + e) - model.twice_nll(p - e)) / (2 * h[i])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_gradient_at_zero_poi() -> None:
    """The zero-safe products: at mu = 0 the derivative wrt mu is still right."""
    model = compile(_workspace(2))
    p = model.init.copy()
    p[model.poi_index] = 0.0
    _, grad = model.twice_nll_and_grad(p)
    h = 1e-6
    e = np.zeros(model.n_pars)
    e[model.poi_index] = h
    fd = (model.twice_nll(p + e) - model.twice_nll(p)) / h
    assert grad[model.poi_index] == pytest.approx(fd, rel=1e-4)
    assert grad[model.poi_index] != 0.0


def test_poisson_saturated_constant() -> None:
    a = np.array([0.0, 0.5, 3.0, 1e4, 2e5, 1.9e11])
    sat = poisson_saturated(a)
    assert sat[0] == 0.0
    # -2 log Poisson(a | a) with Stirling: log(2 pi a) + 1/(6a) for large a
    assert sat[-1] == pytest.approx(math.log(2 * math.pi * 1.9e11), rel=1e-12)
    from scipy.special import gammaln

    exact = -2.0 * (a[1:4] * np.log(a[1:4]) - a[1:4] - gammaln(a[1:4] + 1))
    np.testing.assert_allclose(sat[1:4], exact, rtol=1e-12)
    assert sat[4] == pytest.approx(
        -2.0 * (a[4] * np.log(a[4]) - a[4] - gammaln(a[4] + 1)), rel=1e-9
    )


# ---------------------------------------------------------------------------------------
# fits and CLs against pyhf on the generated workspace
# ---------------------------------------------------------------------------------------
def test_fits_match_pyhf() -> None:
    spec = _workspace(11)
    model = compile(spec)
    pm, data = _pyhf_model(spec)
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        for fixed_poi in (None, 0.0, 1.0, 2.5):
            if fixed_poi is None:
                bp, val = pyhf.infer.mle.fit(data, pm, return_fitted_val=True)
            else:
                bp, val = pyhf.infer.mle.fixed_poi_fit(fixed_poi, data, pm, return_fitted_val=True)
            res = fit(model, fixed_poi=fixed_poi)
            assert res.success and res.status == "ok", res.message
            # at least as good as pyhf's minimum, and the same point
            assert res.twice_nll <= float(val) + 1e-7
            assert res.twice_nll == pytest.approx(float(val), abs=1e-5)
            np.testing.assert_allclose(res.pars, _mapped(model, pm, bp), atol=2e-3)
            if fixed_poi is not None:
                assert res.pars[model.poi_index] == fixed_poi
            # fixed parameters stay at their initial values
            np.testing.assert_array_equal(res.pars[model.fixed], model.init[model.fixed])
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())


@pytest.mark.parametrize("lumi_fixed", [False, True])
@pytest.mark.parametrize("mu", [0.5, 1.0, 3.0])
def test_hypotest_matches_pyhf(mu: float, lumi_fixed: bool) -> None:
    spec = _workspace(17, lumi_fixed=lumi_fixed)
    model = compile(spec)
    pm, data = _pyhf_model(spec)
    obs, exp = pyhf.infer.hypotest(mu, data, pm, test_stat="qtilde", return_expected_set=True)
    r = hypotest(model, mu)
    assert r.status == "ok", r.message
    assert r.cls_obs == pytest.approx(float(obs), abs=2e-5)
    np.testing.assert_allclose(r.cls_exp, np.asarray(exp, dtype=float), atol=2e-5)
    assert list(r.cls_exp) == sorted(r.cls_exp)
    assert r.cls_obs == pytest.approx(r.clsb_obs / r.clb_obs, rel=1e-12)
    assert r.pars_free.shape == (model.n_pars,)


def test_hypotest_q_statistic_matches_pyhf() -> None:
    spec = _workspace(19)
    model = compile(spec)
    pm, data = _pyhf_model(spec)
    obs, exp = pyhf.infer.hypotest(1.0, data, pm, test_stat="q", return_expected_set=True)
    r = hypotest(model, 1.0, test_stat="q")
    assert r.status == "ok"
    assert r.cls_obs == pytest.approx(float(obs), abs=2e-5)
    np.testing.assert_allclose(r.cls_exp, np.asarray(exp, dtype=float), atol=2e-5)


def test_hypotest_apriori_band() -> None:
    """apriori: Asimov data from the nominal parameters (mu = 0), computed with pyhf pieces."""
    from scipy.stats import norm

    spec = _workspace(23)
    model = compile(spec)
    pm, data = _pyhf_model(spec)
    init = np.asarray(pm.config.suggested_init())
    init[pm.config.poi_index] = 0.0
    asimov = pm.expected_data(init)
    qa = float(
        pyhf.infer.test_statistics.qmu_tilde(
            1.0,
            asimov,
            pm,
            pm.config.suggested_init(),
            pm.config.suggested_bounds(),
            pm.config.suggested_fixed(),
        )
    )
    sqa = math.sqrt(qa)
    expected = [norm.cdf(-(n + sqa)) / norm.cdf(-n) for n in (2, 1, 0, -1, -2)]
    r = hypotest(model, 1.0, expected="apriori")
    assert r.status == "ok"
    np.testing.assert_allclose(r.cls_exp, expected, atol=2e-5)
    post = hypotest(model, 1.0)
    assert not np.allclose(r.cls_exp, post.cls_exp, atol=1e-4)  # the bands differ


def test_upper_limit_crossings() -> None:
    """At each limit, CLs (ours and pyhf's) equals the level; the band is ordered."""
    spec = _workspace(29)
    model = compile(spec)
    pm, data = _pyhf_model(spec)
    ul = upper_limit(model)
    assert ul.status == "ok", ul.message
    assert list(ul.mu_ul_exp) == sorted(ul.mu_ul_exp)
    assert hypotest(model, ul.mu_ul_obs).cls_obs == pytest.approx(0.05, abs=1e-5)
    for k in range(5):
        assert hypotest(model, ul.mu_ul_exp[k]).cls_exp[k] == pytest.approx(0.05, abs=1e-5)
    obs = pyhf.infer.hypotest(ul.mu_ul_obs, data, pm, test_stat="qtilde")
    assert float(obs) == pytest.approx(0.05, abs=1e-4)
    ul90 = upper_limit(model, level=0.10)
    assert ul90.mu_ul_obs < ul.mu_ul_obs


# ---------------------------------------------------------------------------------------
# errors and failure reporting
# ---------------------------------------------------------------------------------------
def test_no_poi_raises() -> None:
    spec = _workspace()
    spec["measurements"][0]["config"]["poi"] = "not_there"
    model = compile(spec)
    assert model.poi_index is None and model.poi_name is None
    with pytest.raises(NoPOIError, match="no parameter of interest"):
        hypotest(model)
    with pytest.raises(NoPOIError):
        upper_limit(model)


def test_bad_options_raise() -> None:
    model = compile(_workspace())
    with pytest.raises(LikelihoodError, match="test_stat"):
        hypotest(model, test_stat="q0")
    with pytest.raises(LikelihoodError, match="expected"):
        hypotest(model, expected="bayesian")
    with pytest.raises(LikelihoodError, match="interpcode"):
        compile(_workspace(), modifier_settings={"normsys": {"interpcode": "code2"}})
    with pytest.raises(InvalidWorkspace, match="no measurement named 'nope'"):
        compile(_workspace(), measurement="nope")


def test_lumi_without_settings_names_the_fix() -> None:
    spec = _workspace()
    spec["measurements"][0]["config"]["parameters"] = []
    with pytest.raises(InvalidWorkspace, match=r"lumi parameter 'lumi' needs .*sigmas"):
        compile(spec)


def test_failed_fit_is_reported_not_raised() -> None:
    """A normsys with lo = 0 makes the likelihood NaN below alpha = -1: no silent NaN."""
    spec = _workspace()
    spec["channels"][0]["samples"][1]["modifiers"][2]["data"] = {"hi": 1.05, "lo": 0.0}
    model = compile(spec, validate=False)
    res = fit(model)
    assert not res.success
    assert res.status == "fit_failed"
    assert "newton" in res.message and "lbfgsb" in res.message
    r = hypotest(model)
    assert r.status == "fit_failed"
    assert r.message


def test_kernels_return_nan_not_raise() -> None:
    model = compile(_workspace())
    p = model.init.copy()
    p[model.par_index("mu_bkg")] = -1.0  # negative rates
    v = model.twice_nll(p)
    assert math.isnan(v) or math.isinf(v)


def test_fixed_parameters_stay_fixed() -> None:
    model = compile(_workspace(), measurement="other_meas")
    jes = model.par_index("jes")
    assert model.fixed[jes]
    res = fit(model)
    assert res.success
    assert res.pars[jes] == 0.3
    # zero-uncertainty staterror / shapesys bins are fixed at 1 as in pyhf 0.7
    assert model.fixed[model.par_index("staterror_CR[1]")]
    assert model.fixed[model.par_index("other_unc[2]")]
    assert res.pars[model.par_index("other_unc[2]")] == 1.0


# ---------------------------------------------------------------------------------------
# signal as data: Background.with_patch == compile(apply_patch)
# ---------------------------------------------------------------------------------------
def _split_signal(spec: dict) -> tuple[dict, list[dict]]:
    bkg = copy.deepcopy(spec)
    sig = bkg["channels"][0]["samples"].pop(0)
    patch = [{"op": "add", "path": "/channels/0/samples/0", "value": sig}]
    return bkg, patch


def _same_model(a: likelihood.Model, b: likelihood.Model) -> None:
    assert a.parameter_names == b.parameter_names
    assert a.channels == b.channels
    assert a.poi_index == b.poi_index
    np.testing.assert_array_equal(a.init, b.init)
    np.testing.assert_array_equal(a.bounds, b.bounds)
    np.testing.assert_array_equal(a.fixed, b.fixed)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.auxdata, b.auxdata)
    for x, y in zip(a.compiled, b.compiled, strict=True):
        np.testing.assert_array_equal(x, y)


def test_with_patch_equals_full_compile_generated() -> None:
    full = _workspace(31)
    bkg, patch = _split_signal(full)
    bg = Background(bkg)
    with_patch = bg.with_patch(patch, name="sig")
    assert with_patch.name == "sig"
    _same_model(with_patch, compile(full))
    # a patch that also changes the measurement goes through the full compile
    patch2 = patch + [{"op": "replace", "path": "/measurements/0/config/poi", "value": "mu_bkg"}]
    m2 = bg.with_patch(patch2)
    assert m2.poi_name == "mu_bkg"
    _same_model(m2, compile(likelihood.apply_patch(bkg, patch2)))
    # the background-only model: no POI (mu comes with the signal)
    assert bg.compile().poi_index is None


def test_with_patch_rejects_bad_patches() -> None:
    """with_patch rejects as compile(apply_patch(...)) does: same type, same message."""
    bkg, patch = _split_signal(_workspace())
    bg = Background(bkg)

    def same(ops, error, pattern, name=None):
        with pytest.raises(error, match=pattern) as fast:
            bg.with_patch(ops, name=name)
        with pytest.raises(error) as full:
            compile(likelihood.apply_patch(bkg, ops, source=name))
        assert str(fast.value) == str(full.value)

    bad = copy.deepcopy(patch)
    bad[0]["path"] = "/channels/7/samples/0"
    same(bad, InvalidPatch, "operation 0", name="p7")
    bad = copy.deepcopy(patch)
    bad[0]["value"]["data"] = [1.0, 2.0]
    same(bad, InvalidWorkspace, r"/data: .* 2 bin\(s\) but channel .* has 3")
    bad = copy.deepcopy(patch)
    bad[0]["value"]["data"][1] = float("nan")
    same(bad, InvalidWorkspace, r"/data/1: non-finite number nan")
    same([{"op": "remove", "path": "/channels/5"}], InvalidPatch, "remove /channels/5")


def _load_cases(shared, n_each: int = 4):
    cases = []
    for folder in ("1Lbb", "3L_eRJR"):
        bkg = json.loads((shared / folder / "BkgOnly.json").read_text())
        ps = json.loads((shared / folder / "patchset.json").read_text())
        step = max(1, len(ps["patches"]) // n_each)
        patches = [(p["metadata"]["name"], p["patch"]) for p in ps["patches"][::step][:n_each]]
        cases.append((folder, bkg, patches))
    for region in ("RegionA", "RegionB", "RegionC"):
        d = shared / "sbottom_multib" / region
        bkg = json.loads((d / "BkgOnly.json").read_text())
        files = sorted(d.glob("patch.*.json"))
        step = max(1, len(files) // n_each)
        patches = [(f.stem, json.loads(f.read_text())) for f in files[::step][:n_each]]
        cases.append((f"sbottom {region}", bkg, patches))
    return cases


def test_with_patch_equals_full_compile_real(shared_hepdata) -> None:
    for label, bkg, patches in _load_cases(shared_hepdata):
        bg = Background(bkg, validate=False)
        for name, patch in patches:
            fast = bg.with_patch(patch, name=name)
            full = compile(likelihood.apply_patch(bkg, patch), validate=False)
            _same_model(fast, full)
            p = fast.init + 0.1 * np.minimum(fast.widths, 0.5)
            assert fast.twice_nll(p) == full.twice_nll(p), (label, name)
    # one CLs per analysis, bitwise identical
    for label, bkg, patches in _load_cases(shared_hepdata, n_each=1)[:3]:
        name, patch = patches[0]
        a = hypotest(Background(bkg, validate=False).with_patch(patch))
        b = hypotest(compile(likelihood.apply_patch(bkg, patch), validate=False))
        assert a.cls_obs == b.cls_obs and a.cls_exp == b.cls_exp, label


def test_patch_without_signal_has_no_poi(shared_hepdata) -> None:
    d = shared_hepdata / "sbottom_multib" / "RegionB"
    bkg = json.loads((d / "BkgOnly.json").read_text())
    patch = json.loads((d / "patch.sbottom_1500_1495_60.json").read_text())
    model = Background(bkg, validate=False).with_patch(patch, name="sbottom_1500_1495_60")
    assert model.poi_index is None and model.poi_name is None
    assert len(model.channels) == 2  # the validation region is removed
    with pytest.raises(NoPOIError, match="sbottom_1500_1495_60"):
        hypotest(model)


# ---------------------------------------------------------------------------------------
# 3L eRJR as published: a shapesys with tau ~ 2e11
# ---------------------------------------------------------------------------------------
def _erjr(shared):
    bkg = json.loads((shared / "3L_eRJR" / "BkgOnly.json").read_text())
    ps = json.loads((shared / "3L_eRJR" / "patchset.json").read_text())
    ref = json.loads((shared / "3L_eRJR" / "reference" / "pyhf-0.7.6_cls_pruned.json").read_text())
    return (
        bkg,
        {p["metadata"]["name"]: p["patch"] for p in ps["patches"]},
        {r["name"]: r for r in ref["results"]},
    )


def test_erjr_published_workspace_fits(shared_hepdata) -> None:
    bkg, patches, ref = _erjr(shared_hepdata)
    bg = Background(bkg, validate=False)
    tiny = "shape_mcstat_diboson3LISR_CRISR_obs_cuts[0]"
    for name in ("ERJR_200p0_110p0", "ERJR_200p0_120p0", "ERJR_350p0_100p0"):
        model = bg.with_patch(patches[name], name=name)
        k = model.par_index(tiny)
        assert model.widths[k] < 1e-5  # 1/sqrt(tau)
        res = fit(model)
        assert res.success, res.message
        # the fit moved away from the initial values, unlike pyhf's stalled SLSQP
        assert np.max(np.abs(res.pars - model.init)) > 0.05
        r = hypotest(model)
        assert r.status == "ok", r.message
        assert r.cls_obs == pytest.approx(ref[name]["CLs_obs"], abs=1e-3)
        np.testing.assert_allclose(r.cls_exp, ref[name]["CLs_exp"], atol=1e-3)


def test_erjr_unscaled_optimizer_stalls_and_ours_notices(shared_hepdata) -> None:
    """What pyhf does: SLSQP on unscaled parameters stops at the start.  Our convergence
    check (edm from the analytic gradient and Hessian) flags that point as not converged."""
    from scipy.optimize import minimize

    from likelihood.fit import _Problem

    bkg, patches, _ = _erjr(shared_hepdata)
    model = Background(bkg, validate=False).with_patch(patches["ERJR_200p0_110p0"])
    res = minimize(
        lambda p: model.twice_nll(p),
        model.init.copy(),
        method="SLSQP",
        bounds=model.bounds,
    )
    fixed = model.fixed
    prob = _Problem(model, model.data, model.auxdata, fixed, res.x)
    _, pg, edm = prob.edm(prob.x_of(res.x))
    assert edm > 1e-3  # far from converged, whatever SLSQP says
    ours = fit(model)
    assert ours.success and ours.twice_nll < res.fun - 1.0


# ---------------------------------------------------------------------------------------
# public names
# ---------------------------------------------------------------------------------------
def test_public_names() -> None:
    import importlib

    import likelihood.cls
    import likelihood.model

    fit_module = importlib.import_module("likelihood.fit")
    assert likelihood.fit is fit  # the public function, not the submodule of that name
    assert set(likelihood.model.__all__) >= {"compile", "Model", "Background", "CompiledModel"}
    assert set(fit_module.__all__) >= {"fit", "FitResult"}
    assert set(likelihood.cls.__all__) >= {
        "hypotest",
        "upper_limit",
        "CLsResult",
        "UpperLimitResult",
    }
    assert likelihood.CLsResult._fields == (
        "cls_obs",
        "cls_exp",
        "clsb_obs",
        "clb_obs",
        "mu_hat",
        "status",
        "message",
        "pars_free",
    )
    assert likelihood.FitResult._fields == (
        "pars",
        "twice_nll",
        "success",
        "status",
        "message",
        "n_iter",
    )
    assert likelihood.UpperLimitResult._fields == ("mu_ul_obs", "mu_ul_exp", "status", "message")
    for name in _kernels.__all__:
        assert hasattr(_kernels, name)


def test_warm_start_gives_the_same_result() -> None:
    model = compile(_workspace(37))
    cold = hypotest(model, 1.0)
    warm = hypotest(model, 1.0, init=cold.pars_free)
    assert warm.status == "ok"
    assert warm.cls_obs == pytest.approx(cold.cls_obs, abs=1e-6)
    np.testing.assert_allclose(warm.cls_exp, cold.cls_exp, atol=1e-6)
    # an init from another model (other parameters) is ignored, not an error
    other = hypotest(model, 1.0, init=np.ones(model.n_pars + 3))
    assert other.cls_obs == pytest.approx(cold.cls_obs, abs=1e-9)


def _shared_workspaces(shared):
    """Every background-only workspace in shared/hepdata, plus one signal point of each grid."""
    out = []
    for path in sorted(shared.glob("*/*.json")) + sorted(shared.glob("*/*/BkgOnly.json")):
        if path.name in ("patchset.json", "index.json") or "reference" in path.parts:
            continue
        out.append((str(path.relative_to(shared)), json.loads(path.read_text()), None))
    for folder in ("1Lbb", "3L_eRJR"):
        ps = json.loads((shared / folder / "patchset.json").read_text())
        bkg = json.loads((shared / folder / "BkgOnly.json").read_text())
        out.append(
            (f"{folder} + {ps['patches'][0]['metadata']['name']}", bkg, ps["patches"][0]["patch"])
        )
    d = shared / "sbottom_multib" / "RegionC"
    out.append(
        (
            "RegionC + 1300_205_60",
            json.loads((d / "BkgOnly.json").read_text()),
            json.loads((d / "patch.sbottom_1300_205_60.json").read_text()),
        )
    )
    return out


def test_gradient_on_every_shared_workspace(shared_hepdata) -> None:
    """Analytic gradient vs central differences (in constraint-width units) everywhere."""
    cases = _shared_workspaces(shared_hepdata)
    assert len(cases) >= 12
    for label, bkg, patch in cases:
        bg = Background(bkg, validate=False)
        model = bg.with_patch(patch) if patch is not None else bg.compile()
        w = model.widths
        rng = np.random.default_rng(3)
        for _ in range(2):
            p = model.init + 0.2 * rng.normal(size=model.n_pars) * np.minimum(w, 0.5)
            p = np.clip(p, model.bounds[:, 0] + 1e-9, model.bounds[:, 1] - 1e-9)
            value, grad = model.twice_nll_and_grad(p, stable=True)
            assert math.isfinite(value), label
            h = 1e-5
            fd = np.empty(model.n_pars)
            for i in range(model.n_pars):
                e = np.zeros(model.n_pars)
                e[i] = h * w[i]
                up = model.twice_nll(p + e, stable=True)
                dn = model.twice_nll(p - e, stable=True)
                fd[i] = (up - dn) / (2 * h)
            np.testing.assert_allclose(grad * w, fd, rtol=1e-4, atol=1e-4, err_msg=label)
