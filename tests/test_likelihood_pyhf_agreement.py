"""Agreement with pyhf 0.7.6 on every point of the real ATLAS likelihoods.

References: ``../shared/hepdata/<analysis>/reference/pyhf-0.7.6_cls*.json`` (pyhf's CLs for
every point: qtilde, asymptotics, mu = 1, normsys code4, histosys code4p, SLSQP).  For
every point, |cls_obs - pyhf| and every |cls_exp_k - pyhf| must be <= 1e-3, and the median
difference <= 1e-5 per analysis.

pyhf is not always right.  On some sbottom points one of pyhf's five fits (free / mu = 1
/ mu = 0 fits to the data, mu = 1 and free fits to the Asimov data) stops *above* the
minimum, and its default answer is off by up to a few 1e-2.  For those points pyhf 0.7.6
was run again with fits that converge (``tests/references/make_pyhf_converged.py``:
SLSQP at tolerance 1e-12 and MINUIT strategy 2), and recastkit is compared with those
answers instead (``tests/pyhf_reference.py``).  ``test_pyhf_failure_evidence_live``
shows on one of them, with pyhf itself, that its default fit ends above our minimum.

3L eRJR is computed on the workspace *as published* (with the shapesys of tau ~ 2e11 that
makes pyhf's fits stall); its reference was computed by pyhf with that modifier removed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pyhf_reference import (
    converged_entries,
    converged_entry,
    distance,
    pyhf_answers,
    pyhf_fits_end_above_ours,
)

import likelihood
from likelihood.cls import hypotest
from likelihood.model import Background

pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning")]

TOL_MAX = 1e-3
TOL_MEDIAN = 1e-5

ANALYSES = ["1Lbb", "3L_eRJR", "sbottom_RegionA", "sbottom_RegionB", "sbottom_RegionC"]


def _points(shared: Path, analysis: str):
    """(background-only spec, [(name, patch)], {name: reference result})."""
    if analysis.startswith("sbottom_"):
        region = analysis.split("_", 1)[1]
        d = shared / "sbottom_multib" / region
        bkg = json.loads((d / "BkgOnly.json").read_text())
        pts = [
            (f.stem[len("patch.") :], json.loads(f.read_text()))
            for f in sorted(d.glob("patch.*.json"))
        ]
        ref_file = shared / "sbottom_multib" / "reference" / f"pyhf-0.7.6_cls_{region}.json"
    else:
        d = shared / analysis
        bkg = json.loads((d / "BkgOnly.json").read_text())
        ps = json.loads((d / "patchset.json").read_text())
        pts = [(p["metadata"]["name"], p["patch"]) for p in ps["patches"]]
        name = "pyhf-0.7.6_cls_pruned.json" if analysis == "3L_eRJR" else "pyhf-0.7.6_cls.json"
        ref_file = d / "reference" / name
    ref = {r["name"]: r for r in json.loads(ref_file.read_text())["results"]}
    return bkg, pts, ref


@pytest.mark.slow
@pytest.mark.parametrize("analysis", ANALYSES)
def test_every_point_agrees_with_pyhf(shared_hepdata: Path, analysis: str) -> None:
    bkg, pts, _ = _points(shared_hepdata, analysis)
    answers = pyhf_answers(shared_hepdata, analysis)
    bg = Background(bkg, validate=False)
    diffs: dict[str, float] = {}
    no_signal: list[str] = []
    for name, patch in pts:
        model = bg.with_patch(patch, name=name)
        if model.poi_index is None:
            with pytest.raises(likelihood.NoPOIError):
                hypotest(model)
            no_signal.append(name)
            continue
        r = hypotest(model, 1.0)
        assert r.status == "ok", f"{analysis} {name}: {r.status} {r.message}"
        assert all(math.isfinite(v) for v in (r.cls_obs, *r.cls_exp, r.mu_hat)), name
        assert name in answers, f"{name} missing from the reference"
        diffs[name] = distance([r.cls_obs, *r.cls_exp], answers[name])
    assert len(diffs) + len(no_signal) == len(pts)
    if analysis == "sbottom_RegionB":
        assert no_signal == ["sbottom_1500_1495_60"]
    else:
        assert no_signal == []
    bad = {n: d for n, d in diffs.items() if d > TOL_MAX}
    # where no pyhf answer is within tolerance, pyhf's own fits must be shown to stop
    # above our minima of the same function (tests/pyhf_reference.py)
    region = analysis.split("_", 1)[1] if analysis.startswith("sbottom_") else None
    for name in list(bad):
        entry = converged_entry(region, name) if region else None
        if entry is not None:
            pyhf_fits_end_above_ours(bg.with_patch(dict(pts)[name], name=name), entry)
            del bad[name]
    assert not bad, f"{analysis}: {len(bad)} points differ from pyhf by more than {TOL_MAX}: {bad}"
    assert float(np.median(list(diffs.values()))) <= TOL_MEDIAN


@pytest.mark.slow
def test_pyhf_default_fits_stop_above_our_minima_on_every_replaced_point(
    shared_hepdata: Path,
) -> None:
    """Every sbottom point whose shared reference was replaced by converged pyhf answers
    is one where a default pyhf fit stops above the minimum (or gave NaN)."""
    entries = converged_entries()
    assert len(entries) > 0
    backgrounds: dict[str, Background] = {}
    for entry in entries:
        region, name = entry["region"], entry["name"]
        folder = shared_hepdata / "sbottom_multib" / region
        if region not in backgrounds:
            bkg = json.loads((folder / "BkgOnly.json").read_text())
            backgrounds[region] = Background(bkg, validate=False)
        patch = json.loads((folder / f"patch.{name}.json").read_text())
        pyhf_fits_end_above_ours(backgrounds[region].with_patch(patch, name=name), entry)


def test_pyhf_regression_points(shared_hepdata: Path) -> None:
    """The five sbottom points that pyhf's own regression test pins."""
    ref = json.loads(
        (
            shared_hepdata / "sbottom_multib" / "reference" / "pyhf_test_regression_CLs.json"
        ).read_text()
    )
    for point in ref["points"]:
        d = shared_hepdata / "sbottom_multib"
        bkg = json.loads((d / point["region"] / "BkgOnly.json").read_text())
        patch = json.loads((d / point["patch_file"]).read_text())
        r = hypotest(Background(bkg, validate=False).with_patch(patch))
        assert r.status == "ok"
        assert r.cls_obs == pytest.approx(point["CLs_obs"], abs=5e-5)
        np.testing.assert_allclose(r.cls_exp, point["CLs_exp_band"], atol=5e-5)


@pytest.mark.slow
def test_references_recomputed_with_pyhf(shared_hepdata: Path) -> None:
    """Guard the stored references: recompute two cheap sbottom points with pyhf itself."""
    pyhf = pytest.importorskip("pyhf")
    bkg, pts, ref = _points(shared_hepdata, "sbottom_RegionA")
    patches = dict(pts)
    for name in ("sbottom_1300_205_60", "sbottom_900_250_60"):
        spec = likelihood.apply_patch(bkg, patches[name])
        ws = pyhf.Workspace(spec)
        pm = ws.model()
        obs, exp = pyhf.infer.hypotest(
            1.0, ws.data(pm), pm, test_stat="qtilde", return_expected_set=True
        )
        assert float(obs) == pytest.approx(ref[name]["CLs_obs"], abs=1e-4)
        np.testing.assert_allclose(np.asarray(exp, dtype=float), ref[name]["CLs_exp"], atol=1e-4)
        ours = hypotest(likelihood.compile(spec, validate=False))
        assert ours.cls_obs == pytest.approx(float(obs), abs=1e-4)


@pytest.mark.slow
def test_pyhf_failure_evidence_live(shared_hepdata: Path) -> None:
    """On a listed point, pyhf's own fit stops above the minimum that we find."""
    pyhf = pytest.importorskip("pyhf")
    from likelihood.cls import asimov_data
    from likelihood.fit import fit

    bkg, pts, ref = _points(shared_hepdata, "sbottom_RegionA")
    name = "sbottom_500_131_1"
    assert name in {e["name"] for e in converged_entries() if e["region"] == "RegionA"}
    spec = likelihood.apply_patch(bkg, dict(pts)[name])
    ws = pyhf.Workspace(spec)
    pm = ws.model()
    calc = pyhf.infer.calculators.AsymptoticCalculator(ws.data(pm), pm, test_stat="qtilde")
    calc.teststatistic(1.0)
    fitted = calc.fitted_pars
    asimov = pm.expected_data(fitted.asimov_pars)
    pyhf_value = float(-2 * pm.logpdf(fitted.fixed_poi_fit_to_asimov, asimov)[0])
    model = likelihood.compile(spec, validate=False)
    n = pm.config.nmaindata
    ours = fit(model, data=asimov[:n], auxdata=asimov[n:], fixed_poi=1.0)
    assert ours.success
    assert ours.twice_nll < pyhf_value - 1e-3
    # and our Asimov data is pyhf's (same mu = 0 fit)
    pars_a = np.empty(model.n_pars)
    for k, pname in enumerate(pm.config.par_names):
        pars_a[model.par_index(pname)] = fitted.asimov_pars[k]
    main, aux = asimov_data(model, pars_a)
    np.testing.assert_allclose(np.concatenate([main, aux]), asimov, rtol=1e-12)
