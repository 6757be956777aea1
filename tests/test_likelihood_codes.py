"""Interpolation codes and ``modifier_settings`` with pyhf 0.7.6's meaning.

* every code pyhf accepts (normsys code1 / code4, histosys code0 / code2 / code4p) and
  every shape of settings (``None``, ``{}``, partial and full dicts) builds pyhf's model:
  twice-NLL equal to pyhf's ``-2 logpdf`` to 1e-12 relative and to the plain-loop
  reference, at random parameter points of random workspaces;
* histosys code2 is HistFactory's continuous code 2; pyhf 0.7.6 drops its offsets outside
  |alpha| <= 1 (scikit-hep/pyhf#2729, #2610): shown here from pyhf's own numbers;
* the issue's regression (2-bin histosys model, partial dict: CLs off by 0.8 %);
* invalid settings raise :class:`InvalidModifierSettings` naming the key and the value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import reference_histfactory as ref
from test_likelihood_reference import _central_differences, _vector

import likelihood
from likelihood import _codes, _kernels
from likelihood.errors import InvalidModifierSettings, LikelihoodError

pyhf = pytest.importorskip("pyhf")

# settings -> the codes pyhf 0.7.6 uses (None: Model defaults; a dict: builder defaults
# for every type it does not name)
SETTINGS: list[tuple[Any, tuple[str, str]]] = [
    (None, ("code4", "code4p")),
    ({}, ("code1", "code0")),
    ({"normsys": {}}, ("code1", "code0")),
    ({"normsys": {"interpcode": "code4"}}, ("code4", "code0")),
    ({"normsys": {"interpcode": "code1"}}, ("code1", "code0")),
    ({"histosys": {"interpcode": "code4p"}}, ("code1", "code4p")),
    ({"histosys": {"interpcode": "code2"}}, ("code1", "code2")),
    ({"histosys": {"interpcode": "code0"}, "staterror": {}}, ("code1", "code0")),
] + [
    ({"normsys": {"interpcode": n}, "histosys": {"interpcode": h}}, (n, h))
    for n in ("code1", "code4")
    for h in ("code0", "code2", "code4p")
]
IDS = [repr(s) for s, _ in SETTINGS]


def _pyhf_model(spec: dict, settings: Any) -> Any:
    ws = pyhf.Workspace(spec)
    model = ws.model() if settings is None else ws.model(modifier_settings=settings)
    return model, ws.data(model)


def _pyhf_vector(model: Any, point: dict) -> np.ndarray:
    vec = np.zeros(model.config.npars)
    for name, value in point.items():
        vec[model.config.par_slice(name)] = value
    return vec


def test_codes_module_is_the_one_set_of_constants() -> None:
    from likelihood import model as model_mod
    from likelihood import validate

    assert model_mod.MODIFIER_TYPES is _codes.MODIFIER_TYPES
    assert validate.MODIFIER_TYPES is _codes.MODIFIER_TYPES
    assert set(_codes.MODIFIER_TYPES) == {
        "histosys", "lumi", "normfactor", "normsys", "shapefactor", "shapesys", "staterror"
    }  # fmt: skip
    assert _kernels.HS_CODE2 is _codes.HS_CODE2 and _kernels.RF_CODE4 is _codes.RF_CODE4
    # the codes pyhf 0.7.6's builders accept (they assert these sets)
    assert set(_codes.NORMSYS_CODES) == {"code1", "code4"}
    assert set(_codes.HISTOSYS_CODES) == {"code0", "code2", "code4p"}
    # distinct kernel numbers within each kind
    assert len({*_codes.NORMSYS_CODES.values(), _codes.RF_LINEAR}) == 3
    assert len(set(_codes.HISTOSYS_CODES.values())) == 3


@pytest.mark.parametrize(("settings", "codes"), SETTINGS, ids=IDS)
def test_settings_build_pyhfs_model(settings: Any, codes: tuple[str, str]) -> None:
    pyhf.set_backend("numpy")
    for seed in range(4):
        spec = ref.random_workspace(seed)
        ours = likelihood.compile(spec, modifier_settings=settings)
        theirs, data = _pyhf_model(spec, settings)
        names = list(ours.parameter_names)
        # pyhf's code2 is exact only inside |alpha| <= 1 (see the code2 tests below)
        alpha_max = 1.0 if codes[1] == "code2" else 2.5
        for k in range(3):
            point = ref.random_point(spec, 31 * seed + k, alpha_max=alpha_max)
            vec = _vector(names, point)
            want = float(-2.0 * theirs.logpdf(_pyhf_vector(theirs, point), data)[0])
            got = ours.twice_nll(vec)
            assert got == pytest.approx(want, rel=1e-12, abs=0.0), (seed, k)
            plain = ref.twice_nll(spec, point, normsys_code=codes[0], histosys_code=codes[1])
            assert got == pytest.approx(plain, rel=1e-12, abs=0.0), (seed, k)
            value, _ = ours.twice_nll_and_grad(vec)
            assert value == pytest.approx(want, rel=1e-12, abs=0.0)
        # the settings matter: the other codes give another model at this point
        other = (
            "code1" if codes[0] == "code4" else "code4",
            "code0" if codes[1] != "code0" else "code4p",
        )
        other_nll = ref.twice_nll(spec, point, normsys_code=other[0], histosys_code=other[1])
        assert abs(other_nll - got) > 1e-9 * abs(got)


def test_background_with_patch_uses_the_same_settings() -> None:
    spec = ref.random_workspace(2)
    # move the signal into a patch: Background + with_patch must build compile's model
    bkg = {**spec, "channels": []}
    ops = []
    for c, ch in enumerate(spec["channels"]):
        sig = [s for s in ch["samples"] if s["name"] == "signal"]
        bkg["channels"].append(
            {**ch, "samples": [s for s in ch["samples"] if s["name"] != "signal"]}
        )
        ops += [{"op": "add", "path": f"/channels/{c}/samples/-", "value": s} for s in sig]
    for settings, _ in SETTINGS:
        full = likelihood.compile(spec, modifier_settings=settings)
        patched = likelihood.Background(bkg, modifier_settings=settings).with_patch(ops)
        assert patched.parameter_names == full.parameter_names
        point = _vector(list(full.parameter_names), ref.random_point(spec, 3))
        assert patched.twice_nll(point) == full.twice_nll(point)


# ----------------------------------------------------------------- histosys code2


def _pyhf_code2(down: float, nom: float, up: float, alpha: float) -> float:
    interp = pyhf.interpolators.code2([[[[down], [nom], [up]]]], subscribe=False)
    return float(interp(pyhf.tensorlib.astensor([[alpha]]))[0][0][0][0])


def test_code2_equals_pyhf_inside_and_is_continuous_outside() -> None:
    pyhf.set_backend("numpy")
    rng = np.random.default_rng(11)
    for _ in range(40):
        nom = rng.uniform(5.0, 50.0)
        up_t, dn_t = nom * rng.uniform(0.7, 1.4), nom * rng.uniform(0.7, 1.4)
        up, dn = up_t - nom, nom - dn_t
        a, b = 0.5 * (up - dn), 0.5 * (up + dn)
        for alpha in rng.uniform(-3.0, 3.0, 8):
            ours, slope = _kernels.histosys_eval(_codes.HS_CODE2, alpha, up, dn)
            assert ours == pytest.approx(
                ref.histosys_delta(alpha, dn_t, nom, up_t, "code2"), rel=1e-12, abs=1e-12
            )
            theirs = _pyhf_code2(dn_t, nom, up_t, alpha)
            if abs(alpha) <= 1.0:
                assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)
            elif alpha > 1.0:
                # pyhf 0.7.6 leaves out the value at alpha = 1, hi - nom
                assert ours - theirs == pytest.approx(up, rel=1e-9, abs=1e-9)
            else:
                # pyhf 0.7.6 (vectorised) computes alpha (b - 2a) instead of
                # (lo - nom) + (alpha + 1)(b - 2a)
                assert ours - theirs == pytest.approx(-dn + (b - 2.0 * a), rel=1e-9, abs=1e-9)
            h = 1e-6
            fd = (
                _kernels.histosys_eval(_codes.HS_CODE2, alpha + h, up, dn)[0]
                - _kernels.histosys_eval(_codes.HS_CODE2, alpha - h, up, dn)[0]
            ) / (2 * h)
            assert slope == pytest.approx(fd, rel=1e-6, abs=1e-6)
        # continuity (value and slope) at the knots, where pyhf 0.7.6 jumps
        for knot in (-1.0, 1.0):
            eps = 1e-9
            lo_v, lo_d = _kernels.histosys_eval(_codes.HS_CODE2, knot - eps, up, dn)
            hi_v, hi_d = _kernels.histosys_eval(_codes.HS_CODE2, knot + eps, up, dn)
            assert hi_v - lo_v == pytest.approx(0.0, abs=1e-6)
            assert hi_d == pytest.approx(lo_d, rel=1e-6, abs=1e-6)
        jump = _pyhf_code2(dn_t, nom, up_t, 1.0 + 1e-9) - _pyhf_code2(dn_t, nom, up_t, 1.0)
        assert jump == pytest.approx(-up, rel=1e-6, abs=1e-6)


def test_pyhf_code2_likelihood_jumps_at_alpha_one_ours_does_not() -> None:
    """From pyhf's own logpdf: its code2 likelihood is discontinuous at alpha = 1."""
    pyhf.set_backend("numpy")
    spec = ref.random_workspace(4)
    settings = {"histosys": {"interpcode": "code2"}}
    ours = likelihood.compile(spec, modifier_settings=settings)
    theirs, data = _pyhf_model(spec, settings)
    point = ref.random_point(spec, 8, alpha_max=0.5)
    i = ours.par_index("shared_sys")
    j = theirs.config.par_slice("shared_sys").start
    below, above = 1.0 - 1e-10, 1.0 + 1e-10
    v_ours = []
    v_theirs = []
    for alpha in (below, above):
        vec = _vector(list(ours.parameter_names), point)
        vec[i] = alpha
        v_ours.append(ours.twice_nll(vec))
        pv = _pyhf_vector(theirs, point)
        pv[j] = alpha
        v_theirs.append(float(-2.0 * theirs.logpdf(pv, data)[0]))
    assert v_ours[0] == pytest.approx(v_theirs[0], rel=1e-12)  # inside: identical
    assert abs(v_ours[1] - v_ours[0]) < 1e-6
    assert abs(v_theirs[1] - v_theirs[0]) > 1e-3  # pyhf jumps


def test_code2_gradient_matches_finite_differences_across_the_knots() -> None:
    spec = ref.random_workspace(5)
    model = likelihood.compile(spec, modifier_settings={"histosys": {"interpcode": "code2"}})
    names = list(model.parameter_names)
    hs = [k for k, n in enumerate(names) if n in ("shared_sys", "jes")]
    assert hs
    for k, alpha in enumerate((-2.7, -1.0005, -0.4, 0.3, 0.9995, 1.8)):
        vec = _vector(names, ref.random_point(spec, 17 + k))
        vec[hs] = alpha
        value, grad = model.twice_nll_and_grad(vec)
        assert value == pytest.approx(
            ref.twice_nll(
                spec,
                {**ref.random_point(spec, 17 + k), **{names[h]: alpha for h in hs}},
                normsys_code="code1",
                histosys_code="code2",
            ),
            rel=1e-12,
        )
        fd = _central_differences(model.twice_nll, vec)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, abs(value)) ** 0.5)


# ----------------------------------------------------------------- the regression

_TWO_BIN_HISTOSYS = {
    "channels": [
        {
            "name": "singlechannel",
            "samples": [
                {
                    "name": "signal",
                    "data": [30.0, 95.0],
                    "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                },
                {
                    "name": "background",
                    "data": [100.0, 150.0],
                    "modifiers": [
                        {
                            "name": "bkg_norm",
                            "type": "histosys",
                            "data": {"hi_data": [102.0, 190.0], "lo_data": [98.0, 100.0]},
                        }
                    ],
                },
            ],
        }
    ],
    "observations": [{"name": "singlechannel", "data": [120.0, 180.0]}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}


def test_partial_settings_two_bin_histosys_cls_equals_pyhf() -> None:
    """Issue 11: a partial dict used to fill histosys with code4p (CLs off by 0.8 %)."""
    pyhf.set_backend("numpy")
    partial = {"normsys": {"interpcode": "code4"}}  # histosys stays at code0, as in pyhf
    results = {}
    for settings in (partial, None):
        model, data = _pyhf_model(_TWO_BIN_HISTOSYS, settings)
        want = pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde", return_expected=True)
        got = likelihood.hypotest(
            likelihood.compile(_TWO_BIN_HISTOSYS, modifier_settings=settings), 1.0
        )
        assert got.status == "ok"
        assert got.cls_obs == pytest.approx(float(want[0]), abs=1e-6)
        assert got.cls_exp[2] == pytest.approx(float(want[1]), abs=1e-6)  # median
        results[repr(settings)] = got.cls_obs
    # the two settings are different models: the bug would have been visible
    diff = abs(results[repr(partial)] - results["None"]) / results["None"]
    assert diff > 5e-3


# ----------------------------------------------------------------- invalid settings

BAD = [
    ({"foo": {"interpcode": "code0"}}, ["'foo'", "unknown modifier type"]),
    ({"normsys": {"interpcode": "code2"}}, ["'normsys'", "'code2'", "'code1', 'code4'"]),
    ({"normsys": {"interpcode": "code0"}}, ["'normsys'", "'code0'"]),
    ({"histosys": {"interpcode": "code4"}}, ["'histosys'", "'code4'", "'code0', 'code2'"]),
    ({"histosys": {"interpcode": 0}}, ["'histosys'", "0"]),
    ({"histosys": {"interp": "code0"}}, ["'histosys'", "'interp'", "'code0'"]),
    ({"histosys": "code0"}, ["'histosys'", "'code0'"]),
    ({"staterror": {"interpcode": "code0"}}, ["'staterror'", "'interpcode'"]),
    ([("normsys", "code1")], ["modifier_settings", "'normsys'"]),
    ("code4", ["modifier_settings", "'code4'"]),
]


@pytest.mark.parametrize(("settings", "parts"), BAD, ids=[repr(s) for s, _ in BAD])
def test_invalid_settings_are_clear_errors(settings: Any, parts: list[str]) -> None:
    spec = ref.random_workspace(0)
    for build in (
        lambda: likelihood.compile(spec, modifier_settings=settings),
        lambda: likelihood.Background(spec, modifier_settings=settings),
    ):
        with pytest.raises(InvalidModifierSettings) as info:
            build()
        assert isinstance(info.value, LikelihoodError) and isinstance(info.value, ValueError)
        message = str(info.value)
        assert message.startswith("modifier_settings")
        for part in parts:
            assert part in message, (part, message)
