"""Cross-section limits and the theory band, checked against pyhf on hand-scaled signals.

The toy grid's signal yields are made from a known cross-section (SimpleAnalysis
acceptance x xsec x lumi).  Two independent checks with pyhf as the oracle:

* the cross-section limit: a workspace whose signal yields are scaled by hand to the
  cross-section upper limit (``xsec_ul_obs / xsec``) has observed CLs = 0.05 at mu = 1;
* the theory band: a workspace whose signal yields are scaled by hand by 1 + delta
  (1 - delta) has the observed CLs ``cls_obs_up`` (``cls_obs_down``) at mu = 1.
"""

from __future__ import annotations

import copy
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import likelihood
import recast
from cli import main
from recast.patch import make_patchset
from recast.xsec import XsecError, read_xsec, xsec_from_patchset
from recast.yields import read_yields

ROOT = Path(__file__).resolve().parent.parent
POINTS = "m1 in (600, 800) and m2 == 100"
NEAR = "signal_800_100"  # observed CLs 0.2: the theory band and the limit are near it


@pytest.fixture(scope="module")
def toy() -> dict:
    with tarfile.open(ROOT / "fixtures" / "toy_hepdata_archive.tar.gz") as tf:
        member = tf.extractfile("ToyAnalysis/BkgOnly.json")
        assert member is not None
        return json.load(member)


def _xsec_table() -> pd.DataFrame:
    index = pd.read_csv(ROOT / "grids" / "simpleanalysis_index.csv")
    return pd.DataFrame(
        {
            "m1": index["m1"],
            "m2": index["m2"],
            "xsec_fb": index["xsec_pb"] * 1000.0,  # the yields were made from this value
            "xsec_unc_up_rel": 0.10 + index["m1"] / 1e4,
            "xsec_unc_down_rel": 0.08 + index["m1"] / 2e4,
        }
    )


@pytest.fixture(scope="module")
def grid(toy: dict) -> tuple[dict, pd.DataFrame]:
    yields = read_yields(ROOT / "grids" / "simpleanalysis_index.csv", format="simpleanalysis")
    sub = yields.query(POINTS).reset_index(drop=True)
    sub.attrs.update(yields.attrs)
    # no MC-stat modifier on the signal: mu then scales the signal exactly as scaling its
    # yields by hand does (a staterror's width is fixed by the nominal yields)
    patchset = make_patchset(
        toy,
        sub,
        mapping=ROOT / "grids" / "mapping.json",
        hepdata="ins0000000",
        mcstat="none",
        xsec=_xsec_table(),
    )
    results = recast.scan(toy, patchset, jobs=1, upper_limit=True)
    return patchset, results


def _scaled(patch: list[dict], factor: float) -> list[dict]:
    ops = copy.deepcopy(patch)
    for op in ops:
        if op["op"] == "add" and "/samples/" in op["path"]:
            op["value"]["data"] = [factor * v for v in op["value"]["data"]]
    return ops


def _pyhf_cls_obs(bkgonly: dict, ops: list[dict]) -> float:
    pyhf = pytest.importorskip("pyhf")
    import jsonpatch

    pyhf.set_backend("numpy")
    ws = pyhf.Workspace(jsonpatch.apply_patch(bkgonly, ops))
    model = ws.model()
    return float(pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde"))


def test_make_patch_stores_the_cross_section_in_the_metadata(grid, toy):
    patchset, _ = grid
    table = _xsec_table().set_index(["m1", "m2"])
    for patch in patchset["patches"]:
        meta = patch["metadata"]
        row = table.loc[tuple(meta["values"])]
        assert meta["xsec"]["unit"] == "fb"
        assert meta["xsec"]["value"] == pytest.approx(row["xsec_fb"], rel=1e-12)
        assert meta["xsec"]["uncertainty_up"] == pytest.approx(
            row["xsec_fb"] * row["xsec_unc_up_rel"], rel=1e-12
        )
        assert meta["xsec"]["uncertainty_down"] == pytest.approx(
            row["xsec_fb"] * row["xsec_unc_down_rel"], rel=1e-12
        )
    likelihood.validate_patchset(patchset)
    pyhf = pytest.importorskip("pyhf")
    pyhf.PatchSet(patchset).verify(toy)  # pyhf accepts the extra metadata field
    back = xsec_from_patchset(patchset)
    assert list(back["patch"]) == [p["metadata"]["name"] for p in patchset["patches"]]


def test_cross_section_limits_are_mu_limits_times_xsec(grid, toy):
    patchset, results = grid
    assert (results["status"] == "ok").all(), results["message"].tolist()
    assert set(results["xsec_unit"]) == {"fb"}
    for col in ("obs", "exp_m2", "exp_m1", "exp", "exp_p1", "exp_p2"):
        np.testing.assert_allclose(
            results[f"xsec_ul_{col}"] / results["xsec"], results[f"mu_ul_{col}"], rtol=1e-12
        )
    # independent: the signal scaled by hand to the cross-section limit sits at CLs = 0.05
    # (pyhf takes ~8 s per hypotest here: one point, the one near the contour)
    patches = {p["metadata"]["name"]: p["patch"] for p in patchset["patches"]}
    assert ((results["xsec_ul_obs"] / results["xsec"]).between(0.2, 3.0)).all()
    row = results.set_index("patch").loc[NEAR]
    cls = _pyhf_cls_obs(toy, _scaled(patches[NEAR], row["xsec_ul_obs"] / row["xsec"]))
    assert cls == pytest.approx(0.05, abs=5e-4)


def test_theory_band_equals_hand_scaled_signal(grid, toy):
    patchset, results = grid
    patches = {p["metadata"]["name"]: p["patch"] for p in patchset["patches"]}
    for row in results.itertuples():
        assert row.xsec_unc_up != row.xsec_unc_down
        # a larger cross-section excludes more: CLs_up < CLs < CLs_down
        assert row.cls_obs_up < row.cls_obs < row.cls_obs_down, row.patch
    row = results.set_index("patch").loc[NEAR]
    up, down = row["xsec_unc_up"] / row["xsec"], row["xsec_unc_down"] / row["xsec"]
    for factor, value in ((1 + up, row["cls_obs_up"]), (1 - down, row["cls_obs_down"])):
        cls = _pyhf_cls_obs(toy, _scaled(patches[NEAR], factor))
        assert value == pytest.approx(cls, rel=2e-3, abs=2e-5), factor


def test_observed_cls_equals_hypotest_at_each_mu(toy, grid):
    patchset, _ = grid
    model = likelihood.Background(toy).with_patch(patchset["patches"][1]["patch"])
    first = likelihood.hypotest(model, 1.0)
    res = likelihood.observed_cls(model, [0.7, 1.0, 1.4], init=first.pars_free)
    assert res.status == "ok" and res.mu == (0.7, 1.0, 1.4)
    for mu, value in zip(res.mu, res.cls_obs, strict=True):
        assert value == pytest.approx(likelihood.hypotest(model, mu).cls_obs, rel=1e-6)


def test_scan_xsec_file_option_and_cli(tmp_path, toy, grid):
    patchset, results = grid
    bare = copy.deepcopy(patchset)
    for patch in bare["patches"]:
        del patch["metadata"]["xsec"]
    ws_path, ps_path = tmp_path / "BkgOnly.json", tmp_path / "patchset.json"
    ws_path.write_text(json.dumps(toy))
    ps_path.write_text(json.dumps(bare))
    # pb table, symmetric absolute uncertainty: the columns come in pb
    table = _xsec_table()
    pb = pd.DataFrame({"m1": table["m1"], "m2": table["m2"], "xsec_pb": table["xsec_fb"] / 1000.0})
    pb["xsec_unc_pb"] = 0.15 * pb["xsec_pb"]
    xsec_csv = tmp_path / "xsec.csv"
    pb.to_csv(xsec_csv, index=False)
    out = tmp_path / "results.csv"
    run = CliRunner().invoke(
        main,
        ["scan", str(ws_path), str(ps_path), "-j", "1", "--xsec", str(xsec_csv), "-o", str(out),
         "--no-progress"],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    got = pd.read_csv(out)
    assert set(got["xsec_unit"]) == {"pb"}
    np.testing.assert_allclose(got["xsec"] * 1000.0, results["xsec"], rtol=1e-12)
    np.testing.assert_allclose(got["xsec_unc_up"], got["xsec_unc_down"])
    assert "xsec_ul_obs" not in got.columns  # no --upper-limit
    assert (got["cls_obs_up"] < got["cls_obs"]).all()
    # without a cross-section there are no cross-section columns
    plain = recast.scan(toy, bare, jobs=1, points=[bare["patches"][0]["metadata"]["name"]])
    assert not {"xsec", "cls_obs_up"} & set(plain.columns)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (pd.DataFrame({"m1": [1], "m2": [0], "xsec": [1.0]}), "xsec_fb, xsec_pb"),
        (pd.DataFrame({"m1": [1], "m2": [0], "xsec_fb": [1.0], "xsec_pb": [1.0]}), "exactly one"),
        (pd.DataFrame({"m1": [1], "xsec_fb": [1.0]}), r"label\(s\) \['m2'\]"),
        (pd.DataFrame({"m1": [1], "m2": [0], "xsec_fb": [-1.0]}), "row 1: xsec_fb"),
        (pd.DataFrame({"m1": [1, 1], "m2": [0, 0], "xsec_fb": [1.0, 2.0]}), "already on row 1"),
        (
            pd.DataFrame({"m1": [1], "m2": [0], "xsec_fb": [1.0], "xsec_unc_down_fb": [1.5]}),
            "not smaller",
        ),
    ],
)
def test_bad_cross_section_tables(table, match):
    with pytest.raises(XsecError, match=match):
        read_xsec(table, ["m1", "m2"])


def test_make_patch_needs_a_cross_section_for_every_point(toy):
    yields = read_yields(ROOT / "grids" / "simpleanalysis_index.csv", format="simpleanalysis")
    table = _xsec_table().query("m1 != 800")
    with pytest.raises(recast.YieldsError, match="no cross-section for point"):
        make_patchset(
            toy, yields, mapping=ROOT / "grids" / "mapping.json", hepdata="ins0000000",
            xsec=table, validate="none",
        )  # fmt: skip


def test_read_xsec_csv_relative_and_absolute(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("m1,m2,xsec_pb,xsec_unc_rel\n300,0,2.0,0.1\n400,0p5,1.0,\n")
    got = read_xsec(path, ["m1", "m2"])
    assert got["xsec_unit"].tolist() == ["pb", "pb"]
    assert got["xsec_unc_up"].iloc[0] == pytest.approx(0.2)
    assert got["m2"].iloc[1] == 0.5
    assert math.isnan(got["xsec_unc_down"].iloc[1])


def _keys(table: pd.DataFrame) -> list[tuple[float, float]]:
    return list(zip(table["m1"], table["m2"], strict=True))


@pytest.mark.parametrize("native", [False, True])
def test_cli_make_patch_xsec_stores_the_metadata(tmp_path, toy, native):
    ws_path = tmp_path / "BkgOnly.json"
    ws_path.write_text(json.dumps(toy))
    table = _xsec_table()
    if native:
        # the SimpleAnalysis index: xsec_pb scales the acceptances and is stored as well
        yields_path = ROOT / "grids" / "simpleanalysis_index.csv"
        xsec_csv = yields_path
        expect = dict(zip(_keys(table), table["xsec_fb"] / 1e3, strict=True))
        unit = "pb"
    else:
        yields_path = ROOT / "grids" / "yields.csv"
        xsec_csv = tmp_path / "xsec.csv"
        table.to_csv(xsec_csv, index=False)
        expect = dict(zip(_keys(table), table["xsec_fb"], strict=True))
        unit = "fb"
    out = tmp_path / "patchset.json"
    args = ["make-patch", str(ws_path), str(yields_path), "--mapping",
            str(ROOT / "grids" / "mapping.json"), "--hepdata", "ins0000000"]  # fmt: skip
    run = CliRunner().invoke(main, [*args, "--xsec", str(xsec_csv), "-o", str(out)])
    assert run.exit_code == 0, run.output
    patches = json.loads(out.read_text())["patches"]
    assert len(patches) == len(expect)
    for patch in patches:
        meta = patch["metadata"]
        assert meta["xsec"]["unit"] == unit
        assert meta["xsec"]["value"] == pytest.approx(expect[tuple(meta["values"])], rel=1e-12)
        assert ("uncertainty_up" in meta["xsec"]) is (not native)
    if native:
        # the yields are the same as without --xsec (the index gives the same xsec_pb)
        run = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "plain.json")])
        assert run.exit_code == 0, run.output
        plain = json.loads((tmp_path / "plain.json").read_text())["patches"]
        assert [p["patch"] for p in plain] == [p["patch"] for p in patches]
