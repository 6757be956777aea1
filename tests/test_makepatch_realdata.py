"""make-patch on the real ATLAS likelihoods in ../shared/hepdata.

* 1Lbb and 3L eRJR: the official signal yields, extracted into the tidy format, go back
  through template mode and reproduce the official patches (structure and CLs); plain mode
  (POI, lumi, MC stat) equals the official patch with its systematics stripped, and its CLs
  stay close to the official ones.
* Background-only workspaces without official patches (compressed EWK, 2L+jets, displaced
  leptons): a made-up grid over two masses with SR and CR yields gives patchsets that pass
  pyhf's own validation and ``PatchSet.verify``, and the patches scan with the core.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyhf
import pytest

import likelihood
from recast.patch import make_patchset, yields_from_patchset
from recast.yields import read_yields, write_yields

OFFICIAL = {"1Lbb": "ins1755298", "3L_eRJR": "ins1771533"}


def _load(shared: Path, analysis: str) -> tuple[dict[str, Any], dict[str, Any]]:
    bkg = likelihood.read_json(shared / analysis / "BkgOnly.json")
    ps = likelihood.read_json(shared / analysis / "patchset.json")
    return bkg, ps


def _assert_same_json(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON documents, floats equal up to rounding (relative 1e-12)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            _assert_same_json(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_json(x, y, f"{where}/{i}")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("analysis", ["1Lbb", "3L_eRJR"])
def test_template_mode_reproduces_every_official_patch(
    shared_hepdata: Path, tmp_path: Path, analysis: str
) -> None:
    bkg, official = _load(shared_hepdata, analysis)
    df = yields_from_patchset(bkg, official)
    # one row per bin of every signal sample the official patches add
    n_bins = sum(
        len(op["value"]["data"])
        for p in official["patches"]
        for op in p["patch"]
        if op["op"] == "add"
    )
    assert len(df) == n_bins
    assert df.groupby(df.attrs["labels"]).ngroups == len(official["patches"])
    # through the tidy file format and back, bit for bit
    back = read_yields(write_yields(df, tmp_path / "yields.csv"))
    pd.testing.assert_frame_equal(back, df, check_dtype=True)

    made = make_patchset(bkg, back, template=official)
    pyhf.PatchSet(made).verify(bkg)
    assert made["metadata"]["labels"] == official["metadata"]["labels"]
    assert made["metadata"]["references"] == {"hepdata": OFFICIAL[analysis]}
    assert made["metadata"]["digests"] == official["metadata"]["digests"]
    assert len(made["patches"]) == len(official["patches"])
    for mine, theirs in zip(made["patches"], official["patches"], strict=True):
        assert mine["metadata"] == theirs["metadata"]
        _assert_same_json(mine["patch"], theirs["patch"], mine["metadata"]["name"])


@pytest.mark.parametrize(("analysis", "indices"), [("3L_eRJR", (0, 20, 45)), ("1Lbb", (60,))])
def test_template_mode_cls_equal_official(
    shared_hepdata: Path, analysis: str, indices: tuple[int, ...]
) -> None:
    bkg, official = _load(shared_hepdata, analysis)
    made = make_patchset(
        bkg, yields_from_patchset(bkg, official), template=official, validate="none"
    )
    background = likelihood.Background(bkg)
    for i in indices:
        ref = likelihood.hypotest(background.with_patch(official["patches"][i]["patch"]))
        got = likelihood.hypotest(background.with_patch(made["patches"][i]["patch"]))
        assert ref.status == got.status == "ok"
        assert abs(got.cls_obs - ref.cls_obs) < 1e-6
        np.testing.assert_allclose(got.cls_exp, ref.cls_exp, rtol=0, atol=1e-6)


@pytest.mark.parametrize("analysis", ["1Lbb", "3L_eRJR"])
def test_plain_mode_is_the_official_signal_without_systematics(
    shared_hepdata: Path, analysis: str
) -> None:
    """Plain mode = official nominal + POI + lumi + MC stat; built here independently."""
    bkg, official = _load(shared_hepdata, analysis)
    df = yields_from_patchset(bkg, official)
    plain = make_patchset(bkg, df, hepdata=OFFICIAL[analysis], validate="none")
    channels = bkg["channels"]
    stat_names = {
        c["name"]: next(
            (m["name"] for s in c["samples"] for m in s["modifiers"] if m["type"] == "staterror"),
            f"staterror_{c['name']}",
        )
        for c in channels
    }
    for mine, theirs in zip(plain["patches"], official["patches"], strict=True):
        expected = {}
        for op in theirs["patch"]:
            i = int(op["path"].split("/")[2])
            s = op["value"]
            mods = [
                {"name": "mu_SIG", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None},
            ]
            stat = [m for m in s["modifiers"] if m["type"] in ("staterror", "shapesys")]
            if stat and any(x > 0 for x in stat[0]["data"]):
                mods.append(
                    {
                        "name": stat_names[channels[i]["name"]],
                        "type": "staterror",
                        "data": stat[0]["data"],
                    }
                )
            expected[f"/channels/{i}/samples/-"] = {
                "name": theirs["metadata"]["name"],
                "data": s["data"],
                "modifiers": mods,
            }
        got = {op["path"]: op["value"] for op in mine["patch"]}
        _assert_same_json(got, expected, mine["metadata"]["name"])


def test_plain_mode_cls_close_to_official(shared_hepdata: Path) -> None:
    """Plain mode drops the signal systematics (1Lbb: ~90 modifiers per signal sample).

    The signal is then known better and the CLs move, but moderately: over all 125 1Lbb
    points the largest |dCLs_obs| is 0.055 (median 0.003; see docs/make-patch.md).  The
    bound 0.1 leaves room for fit noise while still catching a wrong normalisation: half
    the signal moves CLs_obs by 0.39 and 0.22 at these two points (hypotest at mu=0.5).
    Points: the largest difference (650_250, CLs 0.16) and one near the exclusion line
    (700_50, CLs 0.02).
    """
    bkg, official = _load(shared_hepdata, "1Lbb")
    plain = make_patchset(
        bkg, yields_from_patchset(bkg, official), hepdata="ins1755298", validate="none"
    )
    background = likelihood.Background(bkg)
    for i in (89, 100):
        ref = likelihood.hypotest(background.with_patch(official["patches"][i]["patch"]))
        got = likelihood.hypotest(background.with_patch(plain["patches"][i]["patch"]))
        assert got.status == "ok", got.message
        values = [got.cls_obs, *got.cls_exp]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert list(got.cls_exp) == sorted(got.cls_exp)
        assert abs(got.cls_obs - ref.cls_obs) < 0.1
        assert abs(got.cls_exp[2] - ref.cls_exp[2]) < 0.1


# ---------------------------------------------------------------------------------------
# background-only workspaces without official patches
# ---------------------------------------------------------------------------------------

BKGONLY = [
    ("compressed_ewk/Sleptons_bkgonly.json", "ins1767649"),
    ("compressed_ewk/EWKinos_bkgonly_SR2lOnly.json", "ins1767649"),
    ("2L_jets_ewk/ewk_signal_bkgonly.json", "ins2072870"),
    ("displaced_leptons/SRee_bkgonly.json", "ins1831504"),
    ("displaced_leptons/SRmm_bkgonly.json", "ins1831504"),
    ("displaced_leptons/Comb_bkgonly.json", "ins1831504"),
]
MASSES = [(m1, m2) for m1 in (200, 500) for m2 in (0, 150)]


def _made_up_grid(bkg: dict[str, Any]) -> pd.DataFrame:
    """Signal in every SR and CR; the same shape for all points, the size falls with m1.

    Yield in channel k: A(m1, m2) * w_k, with w_k = 1 + (k mod 3) in SRs and 0.05 in CRs.
    """
    rows = []
    for m1, m2 in MASSES:
        amp = 3.0 * math.exp(-(m1 - 200) / 150.0) * (1.0 - m2 / (m1 + 100.0))
        for k, ch in enumerate(bkg["channels"]):
            w = (1.0 + k % 3) if ch["name"].startswith("SR") else 0.05
            y = amp * w
            rows.append(
                {
                    "m1": m1,
                    "m2": m2,
                    "region": ch["name"],
                    "bin": 0,
                    "yield": y,
                    "stat_unc": 0.1 * y,
                    "sys_sigtheo_up": 0.1,
                    "sys_sigtheo_down": -0.1,
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["labels"] = ["m1", "m2"]
    return df


@pytest.mark.slow
@pytest.mark.parametrize(("path", "ins"), BKGONLY, ids=[p for p, _ in BKGONLY])
def test_bkgonly_workspaces_get_valid_scannable_patches(
    shared_hepdata: Path, tmp_path: Path, path: str, ins: str
) -> None:
    bkg = likelihood.read_json(shared_hepdata / path)
    df = read_yields(write_yields(_made_up_grid(bkg), tmp_path / "grid.json"))
    ps = make_patchset(bkg, df, hepdata=ins)
    assert len(ps["patches"]) == len(MASSES)
    pset = pyhf.PatchSet(ps)  # pyhf's schema
    pset.verify(bkg)  # pyhf's digest
    for patch in pset.patches:
        pyhf.schema.validate(patch.apply(bkg), "workspace.json")  # pyhf's workspace schema
    model = pyhf.Workspace(pset.patches[0].apply(bkg)).model()  # and pyhf builds the model
    assert model.config.poi_name == "mu_SIG"
    assert model.config.param_set("sigtheo").n_parameters == 1
    # the strongest and the weakest signal: both scan, and more signal excludes more
    background = likelihood.Background(bkg)
    strong = likelihood.hypotest(background.with_patch(ps["patches"][0]["patch"]))
    weak = likelihood.hypotest(background.with_patch(ps["patches"][-1]["patch"]))
    for r in (strong, weak):
        assert r.status == "ok", r.message
        assert all(0.0 <= v <= 1.0 for v in (r.cls_obs, *r.cls_exp))
    assert strong.cls_exp[2] < weak.cls_exp[2]


def test_patchset_file_round_trip_is_valid_json(shared_hepdata: Path, tmp_path: Path) -> None:
    from recast.patch import write_patchset

    bkg = likelihood.read_json(shared_hepdata / "displaced_leptons/Comb_bkgonly.json")
    ps = make_patchset(bkg, _made_up_grid(bkg), hepdata="ins1831504")
    out = write_patchset(ps, tmp_path / "ps.json")
    assert json.loads(out.read_text()) == ps
    likelihood.validate_patchset(likelihood.read_json(out), bkgonly=bkg)


def test_simpleanalysis_grid_on_1lbb(shared_hepdata: Path) -> None:
    """The SimpleAnalysis example grid (EwkOneLeptonTwoBjets2018) on the real 1Lbb BkgOnly:
    per-bin SR regions joined by the mapping (JSON and TOML alike), CRs matched by name."""
    from recast.patch import read_mapping

    data = Path(__file__).parent / "data_recast"
    bkg = likelihood.read_json(shared_hepdata / "1Lbb" / "BkgOnly.json")
    df = read_yields(
        data / "simpleanalysis_grid",
        point_pattern=r"_(?P<m1>\d+)_(?P<m2>\d+)\.txt$",
        xsec_pb=data / "simpleanalysis_grid" / "xsec.csv",
        lumi_ifb=139.0,
    )
    mapping_json = read_mapping(data / "simpleanalysis_grid_mapping.json")
    assert read_mapping(data / "simpleanalysis_grid_mapping.toml") == mapping_json
    ps = make_patchset(bkg, df, mapping=mapping_json, hepdata="ins1755298", validate="full")
    pyhf.PatchSet(ps).verify(bkg)
    names = [c["name"] for c in bkg["channels"]]
    ops = {names[int(o["path"].split("/")[2])]: o["value"] for o in ps["patches"][0]["patch"]}
    assert sorted(ops) == sorted(names)  # every SR and CR gets signal
    scale = 0.0253 * 1000 * 139  # xsec [pb] x 1000 x lumi [fb^-1] for point 700_150
    assert ops["SRLMEM_mct2"]["data"] == pytest.approx(
        [0.00305 * scale, 0.0056 * scale, 0.0104 * scale]
    )
    assert ops["WREM_cuts"]["data"] == pytest.approx([0.0006 * scale])
    # MC statistics join the channel's existing staterror
    stat = [m for m in ops["SRLMEM_mct2"]["modifiers"] if m["type"] == "staterror"]
    assert stat[0]["name"] == "staterror_SRLMEM_mct2"
