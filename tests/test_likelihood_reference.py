"""The numba core against the slow plain-loop reference HistFactory.

``tests/reference_histfactory.py`` is checked against pyhf here (rates, twice-NLL, inits,
bounds, fixed flags on random workspaces) and against analytic properties of the
interpolation codes; then the core's ``Model.expected_actualdata``, ``twice_nll`` and
``twice_nll_and_grad`` are checked against the reference at random parameter points of
seeded random workspaces that use every modifier type and every interpolation code.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import reference_histfactory as ref

import likelihood

CODES = [(n, h) for n in ref.NORMSYS_CODES for h in ref.HISTOSYS_CODES]
SEEDS = range(10)


def _settings(codes: tuple[str, str]) -> dict[str, dict[str, str]]:
    return {"normsys": {"interpcode": codes[0]}, "histosys": {"interpcode": codes[1]}}


_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")


def _vector(names: tuple[str, ...] | list[str], point: dict[str, object]) -> np.ndarray:
    """A parameter dict of the reference as a vector in the order of ``names``."""
    out = np.empty(len(names))
    for i, name in enumerate(names):
        m = _INDEXED.match(name)
        if m and m.group(1) in point:
            out[i] = point[m.group(1)][int(m.group(2))]  # type: ignore[index]
        else:
            value = point[name]
            out[i] = value[0] if isinstance(value, list) else value  # type: ignore[index]
    return out


def _reference_names(spec: dict) -> set[str]:
    names = set()
    for name, info in ref.parameters(spec).items():
        if info.types & {"shapefactor", "shapesys", "staterror"}:
            names.update(f"{name}[{k}]" for k in range(info.size))
        else:
            names.add(name)
    return names


# ----------------------------------------------------------------- the reference itself


@pytest.mark.parametrize("lo, hi", [(0.8, 1.25), (0.9, 1.3), (1.05, 1.1), (0.7, 0.95)])
def test_reference_code4_is_smooth_and_exact_at_the_knots(lo: float, hi: float) -> None:
    f = lambda a: ref.normsys_factor(a, lo, hi, "code4")  # noqa: E731
    assert f(0.0) == pytest.approx(1.0, abs=1e-14)
    # exponential branches: kappa^alpha
    assert f(2.0) == pytest.approx(hi**2, rel=1e-14)
    assert f(-1.5) == pytest.approx(lo**1.5, rel=1e-14)
    h = 1e-4
    for knot, branch in ((1.0, lambda a: hi**a), (-1.0, lambda a: lo ** (-a))):
        assert f(knot) == pytest.approx(branch(knot), rel=1e-12)
        # first and second derivative of the polynomial side equal the exponential's
        inner = knot - math.copysign(2 * h, knot)
        d1_poly = (f(inner + h) - f(inner - h)) / (2 * h)
        d1_exp = (branch(inner + h) - branch(inner - h)) / (2 * h)
        assert d1_poly == pytest.approx(d1_exp, rel=1e-5)


@pytest.mark.parametrize("lo, nom, hi", [(8.0, 10.0, 13.0), (11.0, 10.0, 12.0), (-1.0, 2.0, 3.5)])
def test_reference_code4p_is_smooth_and_linear_outside(lo: float, nom: float, hi: float) -> None:
    d = lambda a: ref.histosys_delta(a, lo, nom, hi, "code4p")  # noqa: E731
    assert d(0.0) == 0.0
    assert d(1.0) == pytest.approx(hi - nom, rel=1e-14)
    assert d(-1.0) == pytest.approx(lo - nom, rel=1e-14)
    assert d(2.5) == pytest.approx(2.5 * (hi - nom), rel=1e-14)
    assert d(-3.0) == pytest.approx(3.0 * (lo - nom), rel=1e-14)
    h = 1e-5
    for knot in (1.0, -1.0):
        slope_lin = (hi - nom) if knot > 0 else (nom - lo)
        inner = knot - math.copysign(2 * h, knot)
        slope = (d(inner + h) - d(inner - h)) / (2 * h)
        assert slope == pytest.approx(slope_lin, rel=1e-6, abs=1e-9)
        curvature = (d(inner + h) - 2 * d(inner) + d(inner - h)) / h**2
        assert abs(curvature) < 1e-3 * (1 + abs(slope_lin))
    # code0 is the piecewise-linear interpolation
    assert ref.histosys_delta(0.5, lo, nom, hi, "code0") == pytest.approx(0.5 * (hi - nom))
    assert ref.histosys_delta(-0.5, lo, nom, hi, "code0") == pytest.approx(0.5 * (lo - nom))


def test_reference_poisson_and_normal_terms() -> None:
    # analytic values: Pois(3 | 2) = 2^3 e^-2 / 3!, N(0 | 1, 2) density
    assert ref.poisson_logpdf(3.0, 2.0) == pytest.approx(math.log(8 * math.exp(-2) / 6), rel=1e-14)
    assert ref.poisson_logpdf(0.0, 0.0) == 0.0
    assert ref.poisson_logpdf(0.0, 1.5) == pytest.approx(-1.5, rel=1e-15)
    dens = math.exp(-0.5 * 0.25) / (2.0 * math.sqrt(2 * math.pi))
    assert ref.normal_logpdf(0.0, 1.0, 2.0) == pytest.approx(math.log(dens), rel=1e-14)


@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_pyhf(seed: int) -> None:
    pyhf = pytest.importorskip("pyhf")
    pyhf.set_backend("numpy")
    spec = ref.random_workspace(seed)
    for codes in CODES:
        ws = pyhf.Workspace(spec)
        model = ws.model(modifier_settings=_settings(codes))
        data = ws.data(model)
        params = ref.parameters(spec)
        for name, info in params.items():
            sl = model.config.par_slice(name)
            assert list(model.config.suggested_init()[sl]) == info.inits, name
            assert [tuple(b) for b in model.config.suggested_bounds()[sl]] == info.bounds, name
            assert list(model.config.suggested_fixed()[sl]) == info.fixed, name
        # pyhf 0.7.6's code2 drops the offsets outside |alpha| <= 1 (discontinuous there,
        # tests/test_likelihood_codes.py shows it); compare code2 inside only
        alpha_max = 1.0 if codes[1] == "code2" else 2.5
        for k in range(3):
            point = ref.random_point(spec, 1000 * seed + k, alpha_max=alpha_max)
            vec = np.zeros(model.config.npars)
            for name, value in point.items():
                vec[model.config.par_slice(name)] = value
            got = ref.twice_nll(spec, point, normsys_code=codes[0], histosys_code=codes[1])
            want = float(-2.0 * model.logpdf(vec, data)[0])
            assert got == pytest.approx(want, rel=1e-12), (codes, k)
            rates = ref.expected_actualdata(
                spec, point, normsys_code=codes[0], histosys_code=codes[1]
            )
            np.testing.assert_allclose(rates, model.expected_actualdata(vec), rtol=1e-12)


# ----------------------------------------------------------------- the core vs the reference


@pytest.mark.parametrize("codes", CODES, ids=["-".join(c) for c in CODES])
@pytest.mark.parametrize("seed", SEEDS)
def test_core_matches_reference(seed: int, codes: tuple[str, str]) -> None:
    spec = ref.random_workspace(seed)
    model = likelihood.compile(spec, modifier_settings=_settings(codes))
    names = list(model.parameter_names)
    assert len(names) == len(set(names))
    assert set(names) == _reference_names(spec)
    assert model.poi_name == "mu"
    assert names[model.poi_index] == "mu"
    assert model.channels == tuple(sorted(c["name"] for c in spec["channels"]))

    # inits, bounds and fixed flags as pyhf sets them (the reference reproduces pyhf's)
    params = ref.parameters(spec)
    init = {n: info.inits for n, info in params.items()}
    bounds = {n: [list(b) for b in info.bounds] for n, info in params.items()}
    fixed = {n: info.fixed for n, info in params.items()}
    np.testing.assert_array_equal(model.init, _vector(names, init))
    np.testing.assert_array_equal(
        model.bounds[:, 0], _vector(names, {n: [b[0] for b in v] for n, v in bounds.items()})
    )
    np.testing.assert_array_equal(
        model.bounds[:, 1], _vector(names, {n: [b[1] for b in v] for n, v in bounds.items()})
    )
    np.testing.assert_array_equal(model.fixed, _vector(names, fixed).astype(bool))

    observed = {o["name"]: o["data"] for o in spec["observations"]}
    np.testing.assert_array_equal(model.data, [x for c in model.channels for x in observed[c]])

    for k in range(4):
        point = ref.random_point(spec, 7919 * seed + k)
        vec = _vector(names, point)
        want_rates = ref.expected_actualdata(
            spec, point, normsys_code=codes[0], histosys_code=codes[1]
        )
        np.testing.assert_allclose(model.expected_actualdata(vec), want_rates, rtol=1e-10)
        want = ref.twice_nll(spec, point, normsys_code=codes[0], histosys_code=codes[1])
        assert model.twice_nll(vec) == pytest.approx(want, rel=1e-10)
        value, _grad = model.twice_nll_and_grad(vec)
        assert value == pytest.approx(want, rel=1e-10)

    # other observed data (e.g. Asimov data) through the `data` argument
    rng = np.random.default_rng(seed)
    other = {c: [float(x) for x in rng.poisson(5.0, len(observed[c]))] for c in model.channels}
    point = ref.random_point(spec, seed + 99)
    vec = _vector(names, point)
    want = ref.twice_nll(
        spec, point, normsys_code=codes[0], histosys_code=codes[1], observations=other
    )
    data = np.array([x for c in model.channels for x in other[c]])
    assert model.twice_nll(vec, data=data) == pytest.approx(want, rel=1e-10)


def _central_differences(f, x: np.ndarray, rel_step: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(x)
    for i in range(len(x)):
        h = rel_step * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2.0 * h)
    return grad


@pytest.mark.parametrize("codes", CODES, ids=["-".join(c) for c in CODES])
@pytest.mark.parametrize("seed", SEEDS)
def test_core_gradient_matches_finite_differences(seed: int, codes: tuple[str, str]) -> None:
    spec = ref.random_workspace(seed)
    model = likelihood.compile(spec, modifier_settings=_settings(codes))
    names = list(model.parameter_names)
    for k in range(3):
        point = ref.random_point(spec, 104729 * seed + k)
        vec = _vector(names, point)
        # keep clear of the kinks of code0 / code1 at alpha = 0 (not differentiable there)
        vec = np.where(np.abs(vec) < 1e-3, 1e-2, vec)
        value, grad = model.twice_nll_and_grad(vec)
        assert value == pytest.approx(model.twice_nll(vec), rel=1e-13)
        assert grad.shape == (len(names),)
        fd = _central_differences(model.twice_nll, vec)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, abs(value)) ** 0.5)


def test_core_gradient_on_extrapolation_branches() -> None:
    # every nuisance parameter beyond |alpha| = 1 (exponential / linear extrapolation)
    spec = ref.random_workspace(3)
    for codes in CODES:
        model = likelihood.compile(spec, modifier_settings=_settings(codes))
        params = ref.parameters(spec)
        point = ref.random_point(spec, 5)
        for i, (name, info) in enumerate(sorted(params.items())):
            if info.types & {"normsys", "histosys"}:
                point[name] = 1.7 if i % 2 else -1.9
        vec = _vector(list(model.parameter_names), point)
        want = ref.twice_nll(spec, point, normsys_code=codes[0], histosys_code=codes[1])
        value, grad = model.twice_nll_and_grad(vec)
        assert value == pytest.approx(want, rel=1e-10)
        fd = _central_differences(model.twice_nll, vec)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, abs(value)) ** 0.5)
