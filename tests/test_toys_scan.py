"""``recastkit scan --calctype toybased``: uncertainty columns, the low-count rule, seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from small_models import one_channel_workspace, signal_patch

import likelihood
from cli import main
from likelihood.spec import digest
from recast._scan_worker import TOY_COLUMNS, point_seed
from recast.errors import ScanError
from recast.scan import scan


def _workspace() -> dict:
    # bin 0: 2 background events, bin 1: 50
    return one_channel_workspace([2.0, 50.0], [1.0, 52.0])


def _signal(sr: list[float]) -> list[dict]:
    return signal_patch(sr)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    bkg = _workspace()
    ps = {
        "metadata": {
            "description": "toy scan test",
            "digests": {"sha256": digest(bkg)},
            "labels": ["m1"],
            "references": {},
        },
        "patches": [
            # signal in the 2-event bin: toys; signal only in the 50-event bin: asymptotics
            {"metadata": {"name": "low", "values": [100]}, "patch": _signal([3.0, 0.0])},
            {"metadata": {"name": "high", "values": [200]}, "patch": _signal([0.0, 15.0])},
        ],
        "version": "1.0.0",
    }
    (tmp_path / "BkgOnly.json").write_text(json.dumps(bkg))
    (tmp_path / "patchset.json").write_text(json.dumps(ps))
    return tmp_path / "BkgOnly.json", tmp_path / "patchset.json"


def test_cli_toybased_adds_the_uncertainty_columns(files, tmp_path):
    bkg, ps = files
    out = tmp_path / "toys.csv"
    args = ["scan", str(bkg), str(ps), "-j", "1", "-o", str(out), "--no-progress"]
    toy_args = ["--calctype", "toybased", "--ntoys", "200", "--seed", "4"]
    result = CliRunner().invoke(main, [*args, *toy_args, "--toys-below-events", "5"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out).set_index("patch")
    assert set(TOY_COLUMNS) <= set(df.columns)
    assert df.loc["low", "calctype"] == "toybased" and df.loc["low", "ntoys"] == 200
    assert df.loc["high", "calctype"] == "asymptotics" and df.loc["high", "ntoys"] == 0
    assert df.loc["high", "cls_obs_err"] == 0.0
    assert (df["status"] == "ok").all(), df["message"].tolist()
    # the toy point reproduces likelihood.hypotest_toys with its per-point seed
    spec = likelihood.apply_patch(json.loads(bkg.read_text()), _signal([3.0, 0.0]))
    ref = likelihood.hypotest_toys(
        likelihood.compile(spec), 1.0, ntoys=200, seed=point_seed(4, "low")
    )
    assert df.loc["low", "cls_obs"] == pytest.approx(ref.cls_obs, rel=1e-12)
    assert df.loc["low", "cls_obs_err"] == pytest.approx(ref.cls_obs_err, rel=1e-12)
    assert 0.0 < df.loc["low", "cls_obs_err"] < 0.2
    # the asymptotic point keeps the asymptotic numbers
    spec_h = likelihood.apply_patch(json.loads(bkg.read_text()), _signal([0.0, 15.0]))
    asym = likelihood.hypotest(likelihood.compile(spec_h), 1.0)
    assert df.loc["high", "cls_obs"] == pytest.approx(asym.cls_obs, rel=1e-9)
    # asymptotic scans keep their columns
    plain = tmp_path / "asym.csv"
    result = CliRunner().invoke(main, ["scan", str(bkg), str(ps), "-j", "1", "-o", str(plain)])
    assert result.exit_code == 0, result.output
    assert not set(TOY_COLUMNS) & set(pd.read_csv(plain).columns)


def test_toy_scan_resumes_and_checks_options(files, tmp_path):
    bkg, ps = files
    out = tmp_path / "r.jsonl"
    kw = {"jobs": 1, "calctype": "toybased", "ntoys": 50, "seed": 1}
    first = scan(bkg, ps, points=["low"], output=out, **kw)
    both = scan(bkg, ps, output=out, resume=True, **kw)
    assert both.attrs["summary"]["computed"] == 1
    low = both.set_index("patch").loc["low"]
    assert low["cls_obs"] == first.set_index("patch").loc["low", "cls_obs"]
    assert low["calctype"] == "toybased" and not math.isnan(low["cls_exp_err"])
    with pytest.raises(ScanError, match="calctype"):
        scan(bkg, ps, calctype="toys")
    with pytest.raises(ScanError, match="ntoys"):
        scan(bkg, ps, calctype="toybased", ntoys=0)


def test_low_count_rule():
    model = likelihood.compile(likelihood.apply_patch(_workspace(), _signal([3.0, 0.0])))
    assert list(likelihood.toys.low_count_bins(model, events=5.0)) == [0]
    assert list(likelihood.toys.low_count_bins(model, events=1.0)) == []
    high = likelihood.compile(likelihood.apply_patch(_workspace(), _signal([0.0, 15.0])))
    assert list(likelihood.toys.low_count_bins(high, events=5.0)) == []


def test_best_expected_of_a_toy_table_keys_points_by_their_labels(files):
    """The toy columns (calctype, ntoys, *_err, clsb_obs, clb_obs) are results, not
    point labels: best_expected keeps one row per point, the region of lowest cls_exp."""
    import recast

    bkg, ps = files
    one = scan(bkg, ps, jobs=1, calctype="toybased", ntoys=50, seed=3)
    regions = []
    for name, shift in (("A", 0.0), ("B", -0.01)):
        part = one.copy()
        part.insert(0, "region", name)
        part["cls_exp"] = part["cls_exp"] + shift  # B is the better region everywhere
        part["cls_obs_err"] = part["cls_obs_err"] + (0.001 if name == "B" else 0.0)
        regions.append(part)
    best = recast.best_expected(pd.concat(regions, ignore_index=True))
    assert len(best) == len(one)
    assert set(best["region"]) == {"B"}
    assert sorted(best["patch"]) == sorted(one["patch"])
