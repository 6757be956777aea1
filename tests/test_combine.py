"""recast.combine and `recastkit combine` on the real ATLAS likelihoods, pyhf as the oracle."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import likelihood
import recast
from cli import main
from likelihood.spec import apply_patch, digest
from recast.errors import CombineError

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------
# helpers


def canonical(ws: dict) -> dict:
    """A workspace in canonical order (what pyhf.Workspace.sorted does, plus the keys)."""
    out = copy.deepcopy(ws)
    out["channels"].sort(key=lambda c: c["name"])
    for c in out["channels"]:
        c["samples"].sort(key=lambda s: s["name"])
        for s in c["samples"]:
            s["modifiers"].sort(key=lambda m: (m["name"], m["type"]))
    out["observations"].sort(key=lambda o: o["name"])
    for m in out["measurements"]:
        m["config"]["parameters"].sort(key=lambda p: p["name"])
    return json.loads(json.dumps(out, sort_keys=True))


def signal(yields: float, name: str = "signal") -> dict:
    return {
        "name": name,
        "data": [yields],
        "modifiers": [
            {"name": "mu_SIG", "type": "normfactor", "data": None},
            {"name": "lumi", "type": "lumi", "data": None},
        ],
    }


def patchset(bkgonly: dict, points: dict[tuple, list], labels=("m_N", "ctau")) -> dict:
    return {
        "metadata": {
            "description": "made-up signal for the combination tests",
            "digests": {"sha256": digest(bkgonly)},
            "labels": list(labels),
            "references": {"hepdata": "ins1831504"},
        },
        "patches": [
            {"metadata": {"name": f"p_{v[0]}_{v[1]}", "values": list(v)}, "patch": ops}
            for v, ops in points.items()
        ],
        "version": "1.0.0",
    }


# made-up signal yields (SRee, SRmm) per point (m_N [GeV], ctau [mm])
SIGNAL = {(300, 10): (2.5, 1.2), (400, 10): (1.1, 3.0), (500, 100): (0.4, 0.9)}


@pytest.fixture(scope="module")
def displaced(shared_hepdata):
    d = shared_hepdata / "displaced_leptons"
    return {
        "dir": d,
        "ee": d / "SRee_bkgonly.json",
        "mm": d / "SRmm_bkgonly.json",
        "comb": d / "Comb_bkgonly.json",
        "ee_ws": likelihood.read_json(d / "SRee_bkgonly.json"),
        "mm_ws": likelihood.read_json(d / "SRmm_bkgonly.json"),
        "comb_ws": likelihood.read_json(d / "Comb_bkgonly.json"),
    }


def displaced_patchsets(dl, points=SIGNAL):
    ee = patchset(
        dl["ee_ws"],
        {v: [{"op": "add", "path": "/channels/0/samples/1", "value": signal(s[0])}]
         for v, s in points.items()},
    )  # fmt: skip
    mm = patchset(
        dl["mm_ws"],
        {v: [{"op": "add", "path": "/channels/0/samples/1", "value": signal(s[1])}]
         for v, s in points.items()},
    )  # fmt: skip
    return ee, mm


def comb_without_srem(comb: dict) -> dict:
    out = copy.deepcopy(comb)
    out["channels"] = [c for c in out["channels"] if c["name"] != "SRem_cuts"]
    out["observations"] = [o for o in out["observations"] if o["name"] != "SRem_cuts"]
    return out


# ---------------------------------------------------------------------------------------
# displaced leptons: SRee + SRmm == ATLAS's Comb without SRem


def test_displaced_combination_equals_atlas_comb_without_srem(displaced):
    combined = recast.combine([displaced["ee"], displaced["mm"]])
    expected = comb_without_srem(displaced["comb_ws"])
    assert canonical(combined) == canonical(expected)
    # one lumi setting, one POI
    names = [p["name"] for p in combined["measurements"][0]["config"]["parameters"]]
    assert names.count("lumi") == 1
    assert combined["measurements"][0]["config"]["poi"] == "mu_SIG"


def test_dropping_channels_of_atlas_comb_gives_the_same(displaced):
    # SRee from its own file, SRmm from Comb (dropping Comb's SRee and SRem)
    result = recast.combine_likelihoods(
        [displaced["ee"], displaced["comb"]],
        drop_channels=["Comb:SRee_cuts", "SRem_cuts"],
    )
    assert canonical(result.workspace) == canonical(comb_without_srem(displaced["comb_ws"]))
    s = result.summary
    dropped = s[s["status"] == "dropped"]
    assert set(dropped["name"]) == {"SRee_cuts", "SRem_cuts", "ucbSRee", "ucbSRem"}
    assert set(dropped["analysis"]) == {"Comb"}


def test_displaced_cls_equals_atlas_comb(displaced):
    ee, mm = displaced_patchsets(displaced)
    result = recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, mm])
    ps = result.patchset
    assert [p["metadata"]["values"] for p in ps["patches"]] == [list(v) for v in SIGNAL]
    assert ps["metadata"]["digests"]["sha256"] == digest(result.workspace)
    for p, (values, (s_ee, s_mm)) in zip(ps["patches"], SIGNAL.items(), strict=True):
        ours = likelihood.compile(apply_patch(result.workspace, p["patch"]))
        # the same signal in ATLAS's own combination, SRem removed
        comb_ops = [
            {"op": "add", "path": "/channels/0/samples/1", "value": signal(s_ee)},
            {"op": "add", "path": "/channels/1/samples/1", "value": signal(s_mm)},
            {"op": "remove", "path": "/channels/2"},
            {"op": "remove", "path": "/observations/2"},
        ]
        atlas = likelihood.compile(apply_patch(displaced["comb_ws"], comb_ops))
        assert canonical(apply_patch(result.workspace, p["patch"])) == canonical(
            apply_patch(displaced["comb_ws"], comb_ops)
        )
        a = likelihood.hypotest(ours, 1.0)
        b = likelihood.hypotest(atlas, 1.0)
        assert a.status == b.status == "ok", values
        assert a.cls_obs == pytest.approx(b.cls_obs, abs=1e-9)
        assert a.cls_exp == pytest.approx(b.cls_exp, abs=1e-9)
        assert 0.0 < a.cls_obs < 1.0


def test_displaced_cls_equals_pyhf_hypotest(displaced):
    pyhf = pytest.importorskip("pyhf")
    ee, mm = displaced_patchsets(displaced, {(300, 10): SIGNAL[(300, 10)]})
    result = recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, mm])
    spec = apply_patch(result.workspace, result.patchset["patches"][0]["patch"])
    # pyhf's own combination of the patched inputs
    left = pyhf.Workspace(apply_patch(displaced["ee_ws"], ee["patches"][0]["patch"]))
    right = pyhf.Workspace(apply_patch(displaced["mm_ws"], mm["patches"][0]["patch"]))
    ws = pyhf.Workspace.combine(left, right, join="outer")
    assert canonical(spec) == canonical(dict(ws))
    pyhf.set_backend("numpy")
    model = ws.model()
    obs, exp = pyhf.infer.hypotest(
        1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True
    )
    ours = likelihood.hypotest(likelihood.compile(spec), 1.0)
    assert ours.status == "ok"
    assert ours.cls_obs == pytest.approx(float(obs), abs=2e-4)
    assert ours.cls_exp == pytest.approx([float(v) for v in exp], abs=2e-4)


# ---------------------------------------------------------------------------------------
# 1Lbb + sbottom RegionA against pyhf.Workspace.combine


@pytest.fixture(scope="module")
def lbb_sbottom(shared_hepdata):
    import sys

    sys.path.insert(0, str(HERE))
    import pyhf_combine_reference as ref

    raws = [ref.inputs(shared_hepdata, i) for i in range(len(ref.POINTS))]
    raw = raws[0]
    sb_ps = {
        "metadata": {
            "description": "official sbottom RegionA patches, labelled like the 1Lbb points",
            "digests": {"sha256": digest(raw["sb"])},
            "labels": ["m1", "m2"],
            "references": {"hepdata": "ins1748602"},
        },
        "patches": [
            {"metadata": {"name": f"sbottom_point{i}", "values": r["values"]}, "patch": r["sb_ops"]}
            for i, r in enumerate(raws)
        ],
        "version": "1.0.0",
    }
    lbb_ps = dict(raw["lbb_patchset"], patches=[r["lbb_patch"] for r in raws])
    result = recast.combine_likelihoods(
        {"lbb": raw["lbb"], "sbA": raw["sb"]},
        patchsets=[lbb_ps, sb_ps],
        settings=ref.LUMI_SETTINGS,
    )
    assert [p["metadata"]["values"] for p in result.patchset["patches"]] == [
        r["values"] for r in raws
    ]
    return {"ref": ref, "raw": raw, "result": result, "sb_ps": sb_ps, "lbb_ps": lbb_ps}


@pytest.fixture(scope="module")
def pyhf_lbb_sbottom(lbb_sbottom, shared_hepdata):
    pytest.importorskip("pyhf")
    return lbb_sbottom["ref"].pyhf_combined(shared_hepdata, 0)


def test_lbb_sbottom_twice_nll_equals_pyhf_combine(lbb_sbottom, pyhf_lbb_sbottom):
    ref = lbb_sbottom["ref"]
    result = lbb_sbottom["result"]
    ops = result.patchset["patches"][0]["patch"]
    # sbottom's "remove /channels/1" (its VR) now removes the combined index 9
    assert {"op": "remove", "path": "/channels/9"} in ops
    spec = apply_patch(result.workspace, ops)
    pyws = pyhf_lbb_sbottom
    assert canonical(spec) == canonical(dict(pyws))

    model = pyws.model(modifier_settings=ref.SETTINGS)
    ours = likelihood.compile(spec)
    names = list(model.config.par_names)
    assert sorted(names) == sorted(ours.parameter_names)
    assert ours.poi_name == model.config.poi_name == "mu_SIG"
    order = [list(ours.parameter_names).index(n) for n in names]
    data = pyws.data(model)
    lo, hi = np.array(model.config.suggested_bounds()).T
    init = np.array(model.config.suggested_init())
    rng = np.random.default_rng(14)
    for _ in range(5):
        x = np.clip(init + rng.normal(0.0, 0.3, init.size), lo + 1e-6, hi - 1e-6)
        pars = np.empty_like(x)
        pars[order] = x
        expected = float(-2.0 * model.logpdf(x, data)[0])
        assert ours.twice_nll(pars) == pytest.approx(expected, rel=1e-10, abs=1e-8)


def test_lbb_sbottom_cls_equals_recorded_pyhf(lbb_sbottom, pyhf_lbb_sbottom):
    recorded = json.loads(
        (HERE / "references" / "pyhf-0.7.6-combined_1Lbb_sbottomA.json").read_text()
    )["results"]
    result = lbb_sbottom["result"]
    assert [r["lbb_values"] for r in recorded] == [
        p["metadata"]["values"] for p in result.patchset["patches"]
    ]
    for rec, patch in zip(recorded, result.patchset["patches"], strict=True):
        spec = apply_patch(result.workspace, patch["patch"])
        ours = likelihood.hypotest(likelihood.compile(spec), 1.0)
        assert ours.status == "ok"
        assert ours.cls_obs == pytest.approx(rec["CLs_obs"], abs=2e-4)
        assert ours.cls_exp == pytest.approx(rec["CLs_exp"], abs=2e-4)
        if rec["point"] == 0:
            # the same answer on pyhf's combined workspace (identical likelihood)
            other = likelihood.hypotest(likelihood.compile(dict(pyhf_lbb_sbottom)), 1.0)
            assert other.cls_obs == pytest.approx(ours.cls_obs, abs=1e-9)
            assert other.cls_exp == pytest.approx(ours.cls_exp, abs=1e-9)


def test_dropped_channel_skips_its_patch_operations(lbb_sbottom):
    raw = lbb_sbottom["raw"]
    result = recast.combine_likelihoods(
        {"lbb": raw["lbb"], "sbA": raw["sb"]},
        patchsets=[lbb_sbottom["lbb_ps"], lbb_sbottom["sb_ps"]],
        settings={"lumi": {"fixed": True}},
        drop_channels=["sbA:VRtt_meff"],
    )
    ops = result.patchset["patches"][0]["patch"]
    assert not any(op["op"] == "remove" for op in ops)
    full = lbb_sbottom["result"]
    a = apply_patch(result.workspace, ops)
    b = apply_patch(full.workspace, full.patchset["patches"][0]["patch"])
    # the official sbottom patches remove the VR channel but leave its observation
    # (pyhf ignores an observation without channel); dropping removes both
    assert [o["name"] for o in b["observations"] if o["name"] == "VRtt_meff"] == ["VRtt_meff"]
    b["observations"] = [o for o in b["observations"] if o["name"] != "VRtt_meff"]
    assert canonical(a) == canonical(b)


def test_lumi_conflict_names_both_files(shared_hepdata):
    a = shared_hepdata / "1Lbb" / "BkgOnly.json"
    b = shared_hepdata / "sbottom_multib" / "RegionA" / "BkgOnly.json"
    with pytest.raises(CombineError) as err:
        recast.combine([a, b])
    msg = str(err.value)
    assert "'lumi'" in msg and "fixed" in msg and str(a) in msg and str(b) in msg
    assert "\n" not in msg


# ---------------------------------------------------------------------------------------
# naming rules


def test_prefixes_and_patch_rewriting_on_clashing_channels(displaced):
    ee, _ = displaced_patchsets(displaced)
    result = recast.combine_likelihoods(
        [displaced["ee"], displaced["ee"]],
        prefixes=["A", "B"],
        patchsets=[ee, ee],
    )
    ws = result.workspace
    assert [c["name"] for c in ws["channels"]] == ["A_SRee_cuts", "B_SRee_cuts"]
    assert [o["name"] for o in ws["observations"]] == ["A_SRee_cuts", "B_SRee_cuts"]
    ops = result.patchset["patches"][0]["patch"]
    assert [op["path"] for op in ops] == ["/channels/0/samples/1", "/channels/1/samples/1"]
    model = likelihood.compile(apply_patch(ws, ops))
    assert model.channels == ("A_SRee_cuts", "B_SRee_cuts")
    # the same-named normsys is shared (same constraint kind)
    shared = result.summary[result.summary["status"] == "shared"]
    assert "ucbSRee" in set(shared["name"])
    assert "ucbSRee" in model.parameter_names


def test_same_name_other_constraint_is_kept_apart_with_a_warning(displaced, caplog):
    other = copy.deepcopy(displaced["mm_ws"])
    other["channels"][0]["samples"][0]["modifiers"] = [
        {"name": "ucbSRee", "type": "normfactor", "data": None}
    ]
    with caplog.at_level(logging.WARNING, logger="recast.combine"):
        result = recast.combine_likelihoods({"ee": displaced["ee_ws"], "mm": other})
    assert any("ucbSRee" in r.getMessage() and "kept apart" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    model = likelihood.compile(result.workspace)
    assert {"ee_ucbSRee", "mm_ucbSRee"} <= set(model.parameter_names)
    assert "ucbSRee" not in model.parameter_names
    rows = result.summary.set_index(["analysis", "name"])
    assert rows.loc[("mm", "ucbSRee"), "status"] == "kept_apart"


def test_mapping_renames_and_correlates(displaced, tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text('"SRee:ucbSRee" = "ucb"\n"SRmm:ucbSRmm" = "ucb"\n')
    result = recast.combine_likelihoods([displaced["ee"], displaced["mm"]], mapping=path)
    model = likelihood.compile(result.workspace)
    assert "ucb" in model.parameter_names
    assert not {"ucbSRee", "ucbSRmm"} & set(model.parameter_names)
    renamed = result.summary[result.summary["status"] == "renamed"]
    assert set(renamed["combined_name"]) == {"ucb"}
    # JSON, sectioned form with a setting
    path2 = tmp_path / "mapping.json"
    path2.write_text(json.dumps({"rename": {"SRee:ucbSRee": "ucb_ee"},
                                 "settings": {"ucb_ee": {"bounds": [[-3.0, 3.0]]}}}))  # fmt: skip
    ws = recast.combine([displaced["ee"], displaced["mm"]], mapping=path2)
    pars = {p["name"]: p for p in ws["measurements"][0]["config"]["parameters"]}
    assert pars["ucb_ee"]["bounds"] == [[-3.0, 3.0]]


def test_correlate_none_keeps_same_named_parameters_apart(displaced):
    result = recast.combine_likelihoods(
        [displaced["ee"], displaced["ee"]], prefixes=["A", "B"], correlate="none"
    )
    model = likelihood.compile(result.workspace)
    assert {"A_ucbSRee", "B_ucbSRee"} <= set(model.parameter_names)
    # lumi and the POI stay one parameter each
    names = [p["name"] for p in result.workspace["measurements"][0]["config"]["parameters"]]
    assert names.count("lumi") == 1 and "mu_SIG" in names


def test_joins(displaced):
    ee, mm = displaced_patchsets(displaced)
    mm["patches"] = mm["patches"][:2]  # SRmm lacks the point (500, 100)
    with pytest.raises(CombineError, match="SRee .* has 1 point.* missing in SRmm"):
        recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, mm])
    inner = recast.combine_likelihoods(
        [displaced["ee"], displaced["mm"]], patchsets=[ee, mm], join="inner"
    )
    assert [p["metadata"]["values"] for p in inner.patchset["patches"]] == [[300, 10], [400, 10]]
    assert inner.points["kept"].tolist() == [True, True, False]
    outer = recast.combine_likelihoods(
        [displaced["ee"], displaced["mm"]], patchsets=[ee, mm], join="outer"
    )
    last = outer.patchset["patches"][2]
    assert last["metadata"]["values"] == [500, 100]
    assert [op["path"] for op in last["patch"]] == ["/channels/0/samples/1"]
    assert outer.points["analyses"].tolist() == ["SRee,SRmm", "SRee,SRmm", "SRee"]
    # values match numerically (300 == 300.0)
    mm2 = copy.deepcopy(mm)
    for p in mm2["patches"]:
        p["metadata"]["values"] = [float(v) for v in p["metadata"]["values"]]
    again = recast.combine_likelihoods(
        [displaced["ee"], displaced["mm"]], patchsets=[ee, mm2], join="inner"
    )
    assert len(again.patchset["patches"]) == 2


# ---------------------------------------------------------------------------------------
# the command line: errors are one line, exit 1, nothing written


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, res.output
    return lines[0]


def test_cli_combine_writes_and_scan_reads_it(displaced, tmp_path):
    ee, mm = displaced_patchsets(displaced)
    (tmp_path / "ee.json").write_text(json.dumps(ee))
    (tmp_path / "mm.json").write_text(json.dumps(mm))
    out = tmp_path / "combined.json"
    res = _run(["combine", displaced["ee"], displaced["mm"], "-o", out,
                "--patchset", tmp_path / "ee.json", "--patchset", tmp_path / "mm.json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    ps_path = tmp_path / "combined_patchset.json"
    assert "2 channels" in res.output and "3 points" in res.output
    ws = json.loads(out.read_text())
    likelihood.validate_patchset(json.loads(ps_path.read_text()), bkgonly=ws)
    results = tmp_path / "results.csv"
    res = _run(["scan", out, ps_path, "-j", "1", "-o", results, "--no-progress"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(results)
    assert df["status"].tolist() == ["ok"] * 3
    assert df[["m_N", "ctau"]].values.tolist() == [list(v) for v in SIGNAL]


@pytest.mark.parametrize("case", ["clash", "setting", "mapping", "points", "labels"])
def test_cli_errors_write_nothing(displaced, tmp_path, case):
    ee_path, mm_path = displaced["ee"], displaced["mm"]
    out = tmp_path / "combined.json"
    args = ["combine", ee_path, mm_path, "-o", out]
    expect: list[str] = []
    if case == "clash":
        args = ["combine", ee_path, ee_path, "-o", out]
        expect = ["SRee_cuts", str(ee_path), "--prefix"]
    elif case == "setting":
        other = copy.deepcopy(displaced["mm_ws"])
        other["measurements"][0]["config"]["parameters"][0]["sigmas"] = [0.02]
        mm_path = tmp_path / "SRmm_changed.json"
        mm_path.write_text(json.dumps(other))
        args = ["combine", ee_path, mm_path, "-o", out]
        expect = ["'lumi'", "sigmas", "0.017", "0.02", str(ee_path), str(mm_path)]
    elif case == "mapping":
        mapping = tmp_path / "map.json"
        mapping.write_text(json.dumps({"SRee:JES_1": "JES_1"}))
        args += ["--mapping", mapping]
        expect = [str(mapping), "JES_1", "SRee", str(ee_path)]
    else:
        ee, mm = displaced_patchsets(displaced)
        if case == "points":
            mm["patches"] = mm["patches"][1:]
        else:
            mm["metadata"]["labels"] = ["m_N", "lifetime"]
        (tmp_path / "ee.json").write_text(json.dumps(ee))
        (tmp_path / "mm.json").write_text(json.dumps(mm))
        args += ["--patchset", tmp_path / "ee.json", "--patchset", tmp_path / "mm.json"]
        expect = ["points do not match", str(tmp_path / "ee.json"), str(tmp_path / "mm.json")]
        expect += ["m_N=300"] if case == "points" else ["lifetime"]
    res = _run(args)
    assert res.exit_code == 1, res.output
    line = _error_line(res)
    for text in expect:
        assert text in line, (text, line)
    assert not out.exists()
    assert not (tmp_path / "combined_patchset.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".combined")]


def test_combined_patch_through_the_validation_boundary(displaced):
    ee, mm = displaced_patchsets(displaced, {(300, 10): (1.0, 1.0)})
    ee["patches"][0]["patch"][0]["value"]["data"] = [-5.0]  # negative signal yield
    # refused before anything is written: by the input check (validate_patchset with
    # bkgonly) or, at the latest, by the check of every combined patch
    with pytest.raises(likelihood.InvalidWorkspace, match="p_300_10.*negative nominal yield -5.0"):
        recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, mm])


def test_prefixed_channels_keep_mc_statistics_apart_like_pyhf(displaced):
    pyhf = pytest.importorskip("pyhf")
    import pandas as pd

    def grid(scale):
        return pd.DataFrame(
            {"m1": [100, 200], "region": ["SRee_cuts"] * 2,
             "yield": [2.0 * scale, 1.0 * scale], "stat_unc": [0.3, 0.2]}
        )  # fmt: skip

    ws = displaced["ee_ws"]
    ps_a = recast.make_patchset(ws, grid(1.0), hepdata="ins1831504")
    ps_b = recast.make_patchset(ws, grid(2.0), hepdata="ins1831504")
    result = recast.combine_likelihoods([ws, ws], prefixes=["A", "B"], patchsets=[ps_a, ps_b])
    for k in range(2):
        spec = apply_patch(result.workspace, result.patchset["patches"][k]["patch"])
        left = pyhf.Workspace(apply_patch(ws, ps_a["patches"][k]["patch"])).rename(
            channels={"SRee_cuts": "A_SRee_cuts"}
        )
        right = pyhf.Workspace(apply_patch(ws, ps_b["patches"][k]["patch"])).rename(
            channels={"SRee_cuts": "B_SRee_cuts"},
            modifiers={"staterror_SRee_cuts": "B_staterror_SRee_cuts"},
        )
        expected = pyhf.Workspace.combine(left, right, join="outer")
        assert canonical(spec) == canonical(dict(expected))
        model = likelihood.compile(spec)
        assert {"staterror_SRee_cuts[0]", "B_staterror_SRee_cuts[0]"} <= set(model.parameter_names)


def test_legacy_patch_folders_with_removals_match_pyhf(shared_hepdata, tmp_path):
    """sbottom RegionA (removes channel 1) + RegionC (removes 2, 4, 5): per-point folders."""
    pyhf = pytest.importorskip("pyhf")
    import shutil

    sb = shared_hepdata / "sbottom_multib"
    names = ["sbottom_1300_205_60", "sbottom_1600_850_60"]
    folders = {}
    for region in ("RegionA", "RegionC"):
        folders[region] = tmp_path / region
        folders[region].mkdir()
        for n in names:
            shutil.copy(sb / region / f"patch.{n}.json", folders[region])
    out = tmp_path / "out" / "ac.json"
    res = _run(
        ["combine", sb / "RegionA" / "BkgOnly.json", sb / "RegionC" / "BkgOnly.json", "-o", out,
         "--patchset", folders["RegionA"], "--patchset", folders["RegionC"],
         "--hepdata", "ins1748602"]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ws = json.loads(out.read_text())
    ps = json.loads((tmp_path / "out" / "ac_patchset.json").read_text())
    assert [p["metadata"]["name"] for p in ps["patches"]] == names
    assert [p["metadata"]["values"] for p in ps["patches"]] == [[1300, 205, 60], [1600, 850, 60]]
    removes = [op["path"] for op in ps["patches"][0]["patch"] if op["op"] == "remove"]
    # RegionA removes its channel 1; RegionC's removals (5, 4, 2 of its own 6 channels)
    # come after RegionA's 2 remaining channels
    own = [op["path"] for op in likelihood.read_json(folders["RegionC"] / f"patch.{names[0]}.json")
           if op["op"] == "remove"]  # fmt: skip
    assert own == ["/channels/5", "/channels/4", "/channels/2"]
    assert removes == ["/channels/1", "/channels/7", "/channels/6", "/channels/4"]
    for p, n in zip(ps["patches"], names, strict=True):
        spec = apply_patch(ws, p["patch"])
        left = pyhf.Workspace(
            apply_patch(likelihood.read_json(sb / "RegionA" / "BkgOnly.json"),
                        likelihood.read_json(sb / "RegionA" / f"patch.{n}.json"))
        )  # fmt: skip
        right = pyhf.Workspace(
            apply_patch(likelihood.read_json(sb / "RegionC" / "BkgOnly.json"),
                        likelihood.read_json(sb / "RegionC" / f"patch.{n}.json"))
        )  # fmt: skip
        expected = dict(pyhf.Workspace.combine(left, right, join="outer"))
        assert canonical(spec) == canonical(expected)


def test_analysis_without_signal_contributes_background_only(displaced):
    ee, _ = displaced_patchsets(displaced)
    result = recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, None])
    assert len(result.patchset["patches"]) == len(SIGNAL)
    for p in result.patchset["patches"]:
        assert [op["path"] for op in p["patch"]] == ["/channels/0/samples/1"]
    assert set(result.points["analyses"]) == {"SRee"}
    with pytest.raises(CombineError, match="one patchset per workspace"):
        recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee])


def test_poi_name_taken_by_another_parameter_is_an_error(displaced):
    other = copy.deepcopy(displaced["mm_ws"])
    other["measurements"][0]["config"]["poi"] = "mu_signal"
    other["channels"][0]["samples"][0]["modifiers"].append(
        {"name": "mu_SIG", "type": "normfactor", "data": None}
    )
    with pytest.raises(CombineError, match="mm:mu_SIG.*mm:mu_signal|mm:mu_signal.*mm:mu_SIG"):
        recast.combine({"ee": displaced["ee_ws"], "mm": other})
    # with another name for the combined POI, it combines (ee's mu_SIG is the POI)
    ws = recast.combine({"ee": displaced["ee_ws"], "mm": other}, poi="mu_comb")
    assert ws["measurements"][0]["config"]["poi"] == "mu_comb"


def test_patch_parameter_of_another_kind_is_kept_apart(displaced, caplog):
    ee, mm = displaced_patchsets(displaced, {(300, 10): (1.0, 1.0)})
    # SRee's signal brings a normfactor named like SRmm's normsys
    ee["patches"][0]["patch"][0]["value"]["modifiers"].append(
        {"name": "ucbSRmm", "type": "normfactor", "data": None}
    )
    with caplog.at_level(logging.WARNING, logger="recast.combine"):
        result = recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, mm])
    assert any("SRee_ucbSRmm" in r.getMessage() for r in caplog.records)
    model = likelihood.compile(
        apply_patch(result.workspace, result.patchset["patches"][0]["patch"])
    )
    assert {"SRee_ucbSRmm", "ucbSRmm"} <= set(model.parameter_names)


def test_patch_that_adds_a_channel_and_its_observation(displaced):
    ee, mm = displaced_patchsets(displaced, {(300, 10): (1.0, 2.0)})
    new_channel = {"name": "CR_new", "samples": [signal(3.0, "bkg_cr")]}
    new_channel["samples"][0]["modifiers"] = [
        {"name": "ucbSRee", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}
    ]
    ee["patches"][0]["patch"] += [
        {"op": "add", "path": "/channels/1", "value": new_channel},
        {"op": "add", "path": "/observations/-", "value": {"name": "CR_new", "data": [4.0]}},
        {"op": "add", "path": "/channels/1/samples/1", "value": signal(0.5)},
    ]
    result = recast.combine_likelihoods(
        [displaced["ee"], displaced["mm"]], patchsets=[ee, mm], always_prefix=True
    )
    ops = result.patchset["patches"][0]["patch"]
    assert [(op["op"], op["path"]) for op in ops] == [
        ("add", "/channels/0/samples/1"),
        ("add", "/channels/1"),  # after SRee's own channel, before SRmm's
        ("add", "/observations/1"),
        ("add", "/channels/1/samples/1"),
        ("add", "/channels/2/samples/1"),  # SRmm's channel moved to index 2
    ]
    assert ops[1]["value"]["name"] == ops[2]["value"]["name"] == "SRee_CR_new"
    spec = apply_patch(result.workspace, ops)
    assert [c["name"] for c in spec["channels"]] == [
        "SRee_SRee_cuts",
        "SRee_CR_new",
        "SRmm_SRmm_cuts",
    ]
    model = likelihood.compile(spec)
    assert model.channel_nbins["SRee_CR_new"] == 1


def test_cli_correlate_list(displaced, tmp_path):
    out = tmp_path / "c.json"
    res = _run(["combine", displaced["ee"], displaced["ee"], "--prefix", "A", "--prefix", "B",
                "--correlate", "ucbSRee", "-o", out])  # fmt: skip
    assert res.exit_code == 0, res.output
    model = likelihood.compile(json.loads(out.read_text()))
    assert "ucbSRee" in model.parameter_names
    res = _run(["combine", displaced["ee"], displaced["ee"], "--prefix", "A", "--prefix", "B",
                "--correlate", "lumi", "-o", out])  # fmt: skip
    assert res.exit_code == 0, res.output
    model = likelihood.compile(json.loads(out.read_text()))
    assert {"A_ucbSRee", "B_ucbSRee"} <= set(model.parameter_names)


def test_relabel_matches_points_named_differently(displaced, tmp_path):
    ee, mm = displaced_patchsets(displaced)
    mm["metadata"]["labels"] = ["mass", "ctau"]
    with pytest.raises(CombineError, match="labels"):
        recast.combine_likelihoods([displaced["ee"], displaced["mm"]], patchsets=[ee, mm])
    path = tmp_path / "m.toml"
    path.write_text('[labels.SRmm]\nmass = "m_N"\n')
    result = recast.combine_likelihoods(
        [displaced["ee"], displaced["mm"]], patchsets=[ee, mm], mapping=path
    )
    assert result.patchset["metadata"]["labels"] == ["m_N", "ctau"]
    assert len(result.patchset["patches"]) == len(SIGNAL)
    with pytest.raises(CombineError, match="no label 'mas'"):
        recast.combine_likelihoods(
            [displaced["ee"], displaced["mm"]], patchsets=[ee, mm], relabel={"SRmm": {"mas": "m_N"}}
        )
