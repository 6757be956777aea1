"""twice-NLL of the core against pyhf 0.7.6 on the real ATLAS likelihoods.

On every workspace in ``../shared/hepdata`` (each background-only one as pyhf's
``Workspace.model(poi_name=None)``, and a few signal-patched ones per analysis), at several
random parameter points, ``Model.twice_nll`` equals pyhf's ``-2 * model.logpdf(pars,
data)`` to 1e-8 relative, mapping the parameters by name.  The expected rates are
compared too, and the plain-loop reference HistFactory joins in as a third opinion.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import reference_histfactory as ref

import likelihood

pyhf = pytest.importorskip("pyhf")

BKGONLY = [
    "sbottom_multib/RegionA/BkgOnly.json",
    "sbottom_multib/RegionB/BkgOnly.json",
    "sbottom_multib/RegionC/BkgOnly.json",
    "1Lbb/BkgOnly.json",
    "3L_eRJR/BkgOnly.json",
    "compressed_ewk/Sleptons_bkgonly.json",
    "compressed_ewk/EWKinos_bkgonly_SR2lOnly.json",
    "2L_jets_ewk/ewk_signal_bkgonly.json",
    "displaced_leptons/Comb_bkgonly.json",
    "displaced_leptons/SRee_bkgonly.json",
    "displaced_leptons/SRmm_bkgonly.json",
]

# (BkgOnly, patch file or patchset, patch name); sbottom patches remove channels too
PATCHED = [
    (
        "sbottom_multib/RegionA/BkgOnly.json",
        "sbottom_multib/RegionA/patch.sbottom_1300_205_60.json",
        None,
    ),
    (
        "sbottom_multib/RegionB/BkgOnly.json",
        "sbottom_multib/RegionB/patch.sbottom_1400_550_60.json",
        None,
    ),
    (
        "sbottom_multib/RegionC/BkgOnly.json",
        "sbottom_multib/RegionC/patch.sbottom_1600_850_60.json",
        None,
    ),
    ("1Lbb/BkgOnly.json", "1Lbb/patchset.json", 0),
    ("1Lbb/BkgOnly.json", "1Lbb/patchset.json", 77),
    ("3L_eRJR/BkgOnly.json", "3L_eRJR/patchset.json", 0),
    ("3L_eRJR/BkgOnly.json", "3L_eRJR/patchset.json", 40),
]

N_POINTS = 4
_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")

_cache: dict[Path, object] = {}


def _read(path: Path) -> object:
    if path not in _cache:
        _cache[path] = likelihood.read_json(path)
    return _cache[path]


def _random_points(model, data, n: int, seed: int) -> list[np.ndarray]:
    """Random points around pyhf's suggested init, inside the bounds, fixed ones at init.

    Nuisance parameters (init 0) move by up to +-1.5 (some beyond |alpha| = 1), factors
    and gammas (init 1) by up to +-20 %, lumi by +-2 %.  A point where pyhf's twice-NLL
    is not finite (a negative rate: some published histosys variations are negative) is
    drawn again with narrower ranges.
    """
    rng = np.random.default_rng(seed)
    init = np.asarray(model.config.suggested_init(), dtype=float)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    fixed = np.asarray(model.config.suggested_fixed(), dtype=bool)
    width = np.where(init == 0.0, 1.5, 0.2 * np.abs(init))
    for name in model.config.parameters:
        if name == "lumi":
            width[model.config.par_slice(name)] = 0.02
    points = []
    for _ in range(n):
        scale = 1.0
        for _attempt in range(30):
            lo = np.maximum(bounds[:, 0], init - scale * width)
            hi = np.minimum(bounds[:, 1], init + scale * width)
            x = np.where(fixed, init, rng.uniform(lo, hi))
            if np.isfinite(model.logpdf(x, data)[0]):
                break
            scale *= 0.8
        else:
            raise AssertionError("no random point with a finite pyhf twice-NLL")
        points.append(x)
    return points


def _to_core(pyhf_model, core_model, x: np.ndarray) -> np.ndarray:
    """Map a pyhf parameter vector onto the core's order by parameter name."""
    index = {name: i for i, name in enumerate(core_model.parameter_names)}
    out = np.full(len(index), np.nan)
    for name in pyhf_model.config.par_order:
        sl = pyhf_model.config.par_slice(name)
        values = x[sl]
        if pyhf_model.config.param_set(name).is_scalar:
            out[index[name]] = values[0]
        else:
            for k, v in enumerate(values):
                out[index[f"{name}[{k}]"]] = v
    assert not np.isnan(out).any(), "a core parameter has no pyhf counterpart"
    return out


def _to_reference(pyhf_model, x: np.ndarray) -> dict[str, object]:
    point: dict[str, object] = {}
    for name in pyhf_model.config.par_order:
        values = [float(v) for v in x[pyhf_model.config.par_slice(name)]]
        point[name] = values[0] if pyhf_model.config.param_set(name).is_scalar else values
    return point


def _pyhf_names(pyhf_model) -> set[str]:
    names = set()
    for name in pyhf_model.config.par_order:
        ps = pyhf_model.config.param_set(name)
        if ps.is_scalar:
            names.add(name)
        else:
            names.update(f"{name}[{k}]" for k in range(ps.n_parameters))
    return names


def _compare(
    spec: dict, pyhf_model, pyhf_data, core_model, seed: int, *, with_reference: bool
) -> None:
    assert set(core_model.parameter_names) == _pyhf_names(pyhf_model)
    assert core_model.channels == tuple(pyhf_model.config.channels)
    for c in core_model.channels:
        assert core_model.channel_nbins[c] == pyhf_model.config.channel_nbins[c]
    np.testing.assert_array_equal(core_model.data, pyhf_data[: pyhf_model.config.nmaindata])

    for k, x in enumerate(_random_points(pyhf_model, pyhf_data, N_POINTS, seed)):
        want = float(-2.0 * pyhf_model.logpdf(x, pyhf_data)[0])
        xc = _to_core(pyhf_model, core_model, x)
        got = core_model.twice_nll(xc)
        assert got == pytest.approx(want, rel=1e-8), f"point {k}"
        np.testing.assert_allclose(
            core_model.expected_actualdata(xc), pyhf_model.expected_actualdata(x), rtol=1e-10
        )
        if with_reference and k == 0:
            point = _to_reference(pyhf_model, x)
            assert ref.twice_nll(spec, point) == pytest.approx(want, rel=1e-10)
            np.testing.assert_allclose(
                ref.expected_actualdata(spec, point),
                pyhf_model.expected_actualdata(x),
                rtol=1e-10,
            )


@pytest.mark.parametrize("relpath", BKGONLY)
def test_bkgonly_twice_nll_equals_pyhf(shared_hepdata: Path, relpath: str) -> None:
    spec = _read(shared_hepdata / relpath)
    ws = pyhf.Workspace(spec)
    pyhf_model = ws.model(poi_name=None)
    data = np.asarray(ws.data(pyhf_model))
    core_model = likelihood.compile(spec)
    assert core_model.poi_index is None
    _compare(spec, pyhf_model, data, core_model, seed=len(relpath), with_reference=True)


@pytest.mark.parametrize(
    "bkgonly, patchfile, index",
    PATCHED,
    ids=[f"{p.split('/')[0]}-{Path(f).stem}-{i}" for p, f, i in PATCHED],
)
def test_patched_twice_nll_equals_pyhf(
    shared_hepdata: Path, bkgonly: str, patchfile: str, index: int | None
) -> None:
    bkg = _read(shared_hepdata / bkgonly)
    doc = _read(shared_hepdata / patchfile)
    ops = doc["patches"][index]["patch"] if index is not None else doc
    spec = likelihood.apply_patch(bkg, ops)
    ws = pyhf.Workspace(spec)
    pyhf_model = ws.model()
    data = np.asarray(ws.data(pyhf_model))
    core_model = likelihood.compile(spec)
    assert core_model.poi_name == pyhf_model.config.poi_name
    assert core_model.parameter_names[core_model.poi_index] == pyhf_model.config.poi_name
    _compare(spec, pyhf_model, data, core_model, seed=index or 7, with_reference=False)
    # the same model through the "signal as data" path
    with_patch = likelihood.Background(bkg).with_patch(ops)
    x = _to_core(pyhf_model, core_model, _random_points(pyhf_model, data, 1, 11)[0])
    perm = [core_model.parameter_names.index(n) for n in with_patch.parameter_names]
    assert with_patch.twice_nll(x[perm]) == pytest.approx(core_model.twice_nll(x), rel=1e-12)


@pytest.mark.parametrize(
    "relpath",
    [
        "sbottom_multib/RegionC/BkgOnly.json",
        "1Lbb/BkgOnly.json",
        "2L_jets_ewk/ewk_signal_bkgonly.json",
    ],
)
def test_gradient_matches_finite_differences_on_real_workspaces(
    shared_hepdata: Path, relpath: str
) -> None:
    # (3L eRJR is left out on purpose: its tau ~ 2e11 shapesys constraint makes the
    # twice-NLL ~ 1e13, far beyond what finite differences can resolve)
    spec = _read(shared_hepdata / relpath)
    ws = pyhf.Workspace(spec)
    pyhf_model = ws.model(poi_name=None)
    data = np.asarray(ws.data(pyhf_model))
    core_model = likelihood.compile(spec)
    x = _to_core(pyhf_model, core_model, _random_points(pyhf_model, data, 1, 5)[0])
    value, grad = core_model.twice_nll_and_grad(x)
    assert value == pytest.approx(core_model.twice_nll(x), rel=1e-13)
    fd = np.empty_like(x)
    for i in range(len(x)):
        h = 1e-5 * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        fd[i] = (core_model.twice_nll(up) - core_model.twice_nll(down)) / (2.0 * h)
    # rounding error of a central difference: a few eps * |value| / h
    atol = 20 * np.finfo(float).eps * abs(value) / 1e-5 + 1e-8
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=atol)
