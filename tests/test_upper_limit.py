"""Upper limits: robust to curves that do not cross in the default bracket, ``--bracket``.

A point whose CLs is fine never becomes ``no_bracket`` because one expected curve stays
above 0.05 up to the POI's upper bound: that limit is ``inf`` (beyond the bound), the
rest of the row is ``ok`` and the message names the curve.  An explicit bracket that a
curve does not cross gives ``no_bracket``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from small_models import one_channel_workspace, signal_patch

import likelihood
from cli import main
from likelihood.cls import hypotest, upper_limit
from likelihood.spec import digest

pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def _workspace(poi_hi: float) -> dict:
    return one_channel_workspace([100.0, 50.0], [96.0, 49.0], poi_bounds=(0.0, poi_hi))


def _signal(sr: list[float]) -> list[dict]:
    return signal_patch(sr)


def _model(poi_hi: float, sig: list[float]) -> likelihood.Model:
    return likelihood.compile(likelihood.apply_patch(_workspace(poi_hi), _signal(sig)))


def test_limits_are_the_crossings_of_hypotest() -> None:
    model = _model(10.0, [12.0, 6.0])
    ul = upper_limit(model)
    assert ul.status == "ok", ul.message
    assert list(ul.mu_ul_exp) == sorted(ul.mu_ul_exp)
    assert hypotest(model, ul.mu_ul_obs).cls_obs == pytest.approx(0.05, abs=1e-6)
    for k in range(5):
        assert hypotest(model, ul.mu_ul_exp[k]).cls_exp[k] == pytest.approx(0.05, abs=1e-6)


def test_curve_beyond_the_poi_bound_is_inf_and_the_row_stays_ok() -> None:
    # a weak signal and a POI bounded at 2.5: the upper expected curves stay above 0.05
    sig = [8.0, 4.0]
    wide = upper_limit(_model(50.0, sig))
    assert wide.status == "ok"
    bound = 0.5 * (wide.mu_ul_exp[3] + wide.mu_ul_exp[4])  # between the +1 and +2 sigma
    model = _model(bound, sig)
    ul = upper_limit(model)
    assert ul.status == "ok", ul.message
    assert math.isinf(ul.mu_ul_exp[4]) and ul.mu_ul_exp[4] > 0
    assert "expected +2 sigma" in ul.message and "beyond the bound" in ul.message
    # the other curves are the same limits as with the wide bounds
    np.testing.assert_allclose(ul.mu_ul_exp[:4], wide.mu_ul_exp[:4], rtol=1e-5)
    assert ul.mu_ul_obs == pytest.approx(wide.mu_ul_obs, rel=1e-5)
    assert hypotest(model, bound).cls_exp[4] > 0.05


def test_explicit_bracket() -> None:
    model = _model(10.0, [12.0, 6.0])
    full = upper_limit(model)
    lo, hi = 0.5 * full.mu_ul_exp[0], 1.5 * full.mu_ul_exp[4]
    ok = upper_limit(model, bracket=(lo, hi))
    assert ok.status == "ok"
    np.testing.assert_allclose(ok.mu_ul_exp, full.mu_ul_exp, rtol=1e-5)
    narrow = upper_limit(model, bracket=(lo, full.mu_ul_exp[2]))
    assert narrow.status == "no_bracket"
    assert math.isnan(narrow.mu_ul_exp[4]) and "pass another bracket" in narrow.message
    with pytest.raises(likelihood.LikelihoodError, match="bracket"):
        upper_limit(model, bracket=(2.0, 1.0))


def test_scan_bracket_option(tmp_path: Path) -> None:
    bkg = _workspace(10.0)
    ps = {
        "metadata": {
            "description": "bracket test",
            "digests": {"sha256": digest(bkg)},
            "labels": ["m1"],
            "references": {},
        },
        "patches": [{"metadata": {"name": "sig_1", "values": [1]}, "patch": _signal([12.0, 6.0])}],
    }
    (tmp_path / "bkg.json").write_text(json.dumps(bkg))
    (tmp_path / "ps.json").write_text(json.dumps(ps))
    out = tmp_path / "r.csv"
    args = ["scan", str(tmp_path / "bkg.json"), str(tmp_path / "ps.json"), "--upper-limit"]
    res = CliRunner().invoke(main, [*args, "--bracket", "0.01,9", "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "ok"
    expected = upper_limit(likelihood.compile(likelihood.apply_patch(bkg, _signal([12.0, 6.0]))))
    assert row["mu_ul_obs"] == pytest.approx(expected.mu_ul_obs, rel=1e-5)
    bad = CliRunner().invoke(main, [*args, "--bracket", "5,1", "-o", str(tmp_path / "b.csv")])
    assert bad.exit_code == 1
    assert "bracket" in bad.output


def test_a_root_search_that_does_not_converge_is_fit_failed(monkeypatch) -> None:
    # no root can meet a zero tolerance: every limit is NaN and the row says why
    import likelihood.cls as cls

    monkeypatch.setattr(cls, "_ROOT_TOL", 0.0)
    monkeypatch.setattr(cls, "_ROOT_TOL_LOOSE", 0.0)
    ul = upper_limit(_model(10.0, [12.0, 6.0]))
    assert ul.status == "fit_failed"
    assert math.isnan(ul.mu_ul_obs) and all(math.isnan(x) for x in ul.mu_ul_exp)
    assert "root search did not converge" in ul.message


def _real_model(shared: Path, analysis: str, point: str) -> likelihood.Model:
    if analysis == "1Lbb":
        bkg = json.loads((shared / "1Lbb" / "BkgOnly.json").read_text())
        ps = json.loads((shared / "1Lbb" / "patchset.json").read_text())
        patch = next(p["patch"] for p in ps["patches"] if p["metadata"]["name"] == point)
    else:
        folder = shared / "sbottom_multib" / analysis
        bkg = json.loads((folder / "BkgOnly.json").read_text())
        patch = json.loads((folder / f"patch.{point}.json").read_text())
    return likelihood.Background(bkg).with_patch(patch)


@pytest.mark.parametrize(
    ("analysis", "point"),
    [
        # the warm-started Asimov and observed fits follow a basin that is not the lowest
        # near several roots: the verification finds lower minima, the roots move
        ("RegionA", "sbottom_650_131_1"),
        # the parameters extrapolated from mu = 0 and 1 to mu = 2 give a negative rate
        ("1Lbb", "C1N2_Wh_hbb_175_25"),
        # mu_hat ~ 1e-16 next to the mu = 0 fit; every limit beyond the POI bound
        ("RegionB", "sbottom_1200_630_500"),
    ],
)
def test_real_limits_are_the_crossings_of_hypotest(shared_hepdata, analysis, point) -> None:
    model = _real_model(shared_hepdata, analysis, point)
    ul = upper_limit(model)
    assert ul.status == "ok", ul.message
    finite = [x for x in ul.mu_ul_exp if math.isfinite(x)]
    assert finite == sorted(finite)
    hi = float(model.bounds[model.poi_index, 1])
    at_bound = hypotest(model, hi)
    for k, x in enumerate([ul.mu_ul_obs, *ul.mu_ul_exp]):
        if math.isinf(x):
            cls_hi = at_bound.cls_obs if k == 0 else at_bound.cls_exp[k - 1]
            assert cls_hi > 0.05
            continue
        r = hypotest(model, x)
        assert r.status == "ok", r.message
        cls_at = r.cls_obs if k == 0 else r.cls_exp[k - 1]
        assert cls_at == pytest.approx(0.05, abs=1e-6), (k, x)
