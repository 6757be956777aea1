"""make_patchset on a small hand-written workspace: structure, mapping, errors, CLI.

pyhf is the independent oracle of validity: every generated PatchSet must pass
``pyhf.PatchSet(...).verify(bkgonly)`` and every patched workspace ``pyhf.Workspace``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyhf
import pytest
from click.testing import CliRunner

from cli import main
from recast.errors import MappingError, RecastError, YieldsError
from recast.patch import (
    make_patchset,
    patch_name,
    read_mapping,
    write_patch_files,
    yields_from_patchset,
)
from recast.yields import read_yields

DATA = Path(__file__).parent / "data_recast"


def _bkgonly() -> dict[str, Any]:
    """Three channels in a non-alphabetical order: a 3-bin SR, a CR, a VR."""

    def bkg(
        data: list[float], stat: str, extra: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return {
            "name": "ttbar",
            "data": data,
            "modifiers": [
                {"name": "mu_top", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": stat, "type": "staterror", "data": [0.1 * x for x in data]},
                {"name": "JES", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                *(extra or []),
            ],
        }

    return {
        "channels": [
            {"name": "SR_a", "samples": [bkg([5.0, 3.0, 1.0], "staterror_SR_a")]},
            {"name": "CR_top", "samples": [bkg([100.0], "staterror_CR_top")]},
            {"name": "VR_x", "samples": [bkg([20.0], "staterror_VR_x")]},
        ],
        "observations": [
            {"name": "SR_a", "data": [6.0, 2.0, 1.0]},
            {"name": "CR_top", "data": [98.0]},
            {"name": "VR_x", "data": [22.0]},
        ],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu_SIG",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.017],
                            "bounds": [[0.9, 1.1]],
                            "inits": [1.0],
                        }
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


def _yields(tmp_path: Path, text: str, name: str = "y.csv") -> pd.DataFrame:
    p = tmp_path / name
    p.write_text(text)
    return read_yields(p)


GRID = """m1,m2,region,bin,yield,stat_unc
300,50,SR_a,0,4.0,0.4
300,50,SR_a,1,8.0,0.4
300,50,SR_a,2,12.0,0.4
300,50,CR_top,0,0.4,0.04
400,50,SR_a,0,2.0,0.2
400,50,SR_a,1,4.0,0.2
400,50,SR_a,2,6.0,0.2
400,50,CR_top,0,0.2,0.02
"""


def _pyhf_check(ps: dict[str, Any], bkg: dict[str, Any]) -> list[pyhf.pdf.Model]:
    pset = pyhf.PatchSet(ps)
    pset.verify(bkg)
    models = []
    for p in pset.patches:
        ws = pyhf.Workspace(p.apply(bkg))  # validates against pyhf's schema
        models.append(ws.model())
    return models


def test_plain_patchset_structure_and_pyhf_validity(tmp_path: Path) -> None:
    bkg = _bkgonly()
    df = _yields(tmp_path, GRID)
    ps = make_patchset(bkg, df, hepdata="ins1234567", validate="full")
    assert ps["version"] == "1.0.0"
    meta = ps["metadata"]
    assert meta["labels"] == ["m1", "m2"]
    assert meta["references"] == {"hepdata": "ins1234567"}
    assert meta["digests"]["sha256"] == pyhf.utils.digest(bkg)
    names = [p["metadata"]["name"] for p in ps["patches"]]
    assert names == ["signal_300_50", "signal_400_50"]
    assert [p["metadata"]["values"] for p in ps["patches"]] == [[300, 50], [400, 50]]
    ops = ps["patches"][0]["patch"]
    # SR_a is channel 0, CR_top channel 1; appended at the end of the samples
    assert [(o["op"], o["path"]) for o in ops] == [
        ("add", "/channels/0/samples/-"),
        ("add", "/channels/1/samples/-"),
    ]
    sr = ops[0]["value"]
    assert sr["name"] == "signal_300_50" and sr["data"] == [4.0, 8.0, 12.0]
    mods = {(m["name"], m["type"]): m["data"] for m in sr["modifiers"]}
    assert mods[("mu_SIG", "normfactor")] is None
    assert mods[("lumi", "lumi")] is None
    # MC stat shares the channel's existing staterror (same gamma parameters)
    assert mods[("staterror_SR_a", "staterror")] == pytest.approx([0.4, 0.4, 0.4])
    assert len(mods) == 3
    models = _pyhf_check(ps, bkg)
    for m in models:
        assert m.config.poi_name == "mu_SIG"
        assert "staterror_SR_a" in m.config.parameters
        # the signal adds no new staterror parameter set
        assert not any(p.startswith("staterror_signal") for p in m.config.parameters)
    # the signal rates enter pyhf's model: expected data at mu=1 minus mu=0
    m = models[0]
    pars = m.config.suggested_init()
    pars0 = list(pars)
    pars0[m.config.poi_index] = 0.0
    diff = m.expected_actualdata(pars) - m.expected_actualdata(pars0)
    # pyhf orders channels alphabetically: CR_top, SR_a, VR_x
    assert diff.tolist() == pytest.approx([0.4, 4.0, 8.0, 12.0, 0.0])


def test_systematics_normsys_histosys_and_correlation(tmp_path: Path) -> None:
    bkg = _bkgonly()
    text = (
        "m1,region,bin,yield,sys_JES_up,sys_JES_down,sys_sigtheo_up,sys_sigtheo_down\n"
        "1,SR_a,0,2.0,0.1,-0.1,0.2,-0.1\n"
        "1,SR_a,1,4.0,0.1,-0.1,0.3,-0.2\n"
        "1,SR_a,2,6.0,0.1,-0.1,0.4,-0.3\n"
        "1,CR_top,0,1.0,0.0,0.0,0.0,0.0\n"
    )
    ps = make_patchset(bkg, _yields(tmp_path, text), hepdata="ins1234567")
    sr, cr = (op["value"] for op in ps["patches"][0]["patch"])
    mods = {(m["name"], m["type"]): m["data"] for m in sr["modifiers"]}
    # the same relative shift in every bin -> normsys; per-bin shifts -> histosys
    assert mods[("JES", "normsys")] == {"hi": pytest.approx(1.1), "lo": pytest.approx(0.9)}
    assert mods[("sigtheo", "histosys")]["hi_data"] == pytest.approx([2.4, 5.2, 8.4])
    assert mods[("sigtheo", "histosys")]["lo_data"] == pytest.approx([1.8, 3.2, 4.2])
    # no shift at all -> no modifier; no stat_unc -> no staterror
    assert {m["type"] for m in cr["modifiers"]} == {"normfactor", "lumi"}
    (model,) = _pyhf_check(ps, bkg)
    # JES is one parameter shared by background and signal (correlated)
    assert model.config.param_set("JES").n_parameters == 1
    assert "sigtheo" in model.config.parameters


def test_systematic_clashing_with_a_background_modifier_type(tmp_path: Path) -> None:
    text = "m1,region,bin,yield,sys_mu_top_up,sys_mu_top_down\n1,CR_top,0,1.0,0.1,-0.1\n"
    with pytest.raises(
        MappingError, match="'mu_top' clashes with the workspace's \\['normfactor'\\]"
    ):
        make_patchset(_bkgonly(), _yields(tmp_path, text), hepdata="ins1234567")
    # renaming it through the mapping resolves the clash
    ps = make_patchset(
        _bkgonly(),
        _yields(tmp_path, text),
        hepdata="ins1234567",
        mapping={"systematics": {"mu_top": "xsec_unc"}},
    )
    assert ps["patches"][0]["patch"][0]["value"]["modifiers"][-1]["name"] == "xsec_unc"


def test_unmapped_channels_drop_unlisted_and_remove(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bkg = _bkgonly()
    text = "m1,region,yield\n1,CR_top,1.0\n"
    with caplog.at_level("WARNING", logger="recast.patch"):
        ps = make_patchset(bkg, _yields(tmp_path, text), hepdata="ins1234567")
    assert "SR_a looks like a signal region but gets no signal" in caplog.text
    assert [o["path"] for o in ps["patches"][0]["patch"]] == ["/channels/1/samples/-"]
    ps = make_patchset(bkg, _yields(tmp_path, text), hepdata="ins1234567", drop_unlisted=True)
    # removals after the adds, by index, descending (VR_x is 2, SR_a is 0)
    assert [(o["op"], o["path"]) for o in ps["patches"][0]["patch"]] == [
        ("add", "/channels/1/samples/-"),
        ("remove", "/channels/2"),
        ("remove", "/channels/0"),
    ]
    _pyhf_check(ps, bkg)
    ps = make_patchset(bkg, _yields(tmp_path, text), hepdata="ins1234567", remove=["VR_x"])
    assert ps["patches"][0]["patch"][-1] == {"op": "remove", "path": "/channels/2"}
    (model,) = _pyhf_check(ps, bkg)
    assert model.config.channels == ["CR_top", "SR_a"]


def test_mapping_bins_and_toml(tmp_path: Path) -> None:
    bkg = _bkgonly()
    text = (
        "m1,region,bin,yield\n"
        "1,toolSR_low,0,1.0\n1,toolSR_mid,0,2.0\n1,toolSR_high,0,3.0\n"
        "1,toolCR,0,0.5\n1,toolCR,1,0.25\n1,other_analysis_SR,0,9.0\n"
    )
    mapping = {
        "regions": {
            "toolSR_low": {"channel": "SR_a", "bin": 0},
            "toolSR_mid": {"channel": "SR_a", "bin": 1},
            "toolSR_high": {"channel": "SR_a", "bin": 2},
            "other_analysis_SR": None,
        },
        "ignore": [],
    }
    df = _yields(tmp_path, text.replace("1,toolCR,0,0.5\n1,toolCR,1,0.25\n", ""))
    ps = make_patchset(bkg, df, mapping=mapping, hepdata="ins1234567")
    assert ps["patches"][0]["patch"][0]["value"]["data"] == [1.0, 2.0, 3.0]
    toml = tmp_path / "map.toml"
    toml.write_text(
        'ignore = ["other_analysis_SR"]\n[regions]\n'
        'toolSR_low = { channel = "SR_a", bin = 0 }\n'
        'toolSR_mid = { channel = "SR_a", bin = 1 }\n'
        'toolSR_high = { channel = "SR_a", bin = 2 }\n'
    )
    assert read_mapping(toml)["ignore"] == ["other_analysis_SR"]
    ps2 = make_patchset(bkg, df, mapping=toml, hepdata="ins1234567")
    assert ps2["patches"] == ps["patches"]
    # 'bins' maps a multi-bin tool region in another order
    df3 = _yields(tmp_path, "m1,region,bin,yield\n1,T,0,1.0\n1,T,1,2.0\n1,T,2,3.0\n", "y3.csv")
    ps3 = make_patchset(
        bkg,
        df3,
        mapping={"regions": {"T": {"channel": "SR_a", "bins": [2, 1, 0]}}},
        hepdata="ins1234567",
    )
    assert ps3["patches"][0]["patch"][0]["value"]["data"] == [3.0, 2.0, 1.0]


@pytest.mark.parametrize(
    ("text", "mapping", "error", "match"),
    [
        (
            "m1,region,yield\n1,SR_unknown,1\n",
            None,
            MappingError,
            r"unknown region 'SR_unknown'.*Channels: SR_a \(3 bins\), CR_top \(1 bin\), VR_x \(1 bin\)",
        ),
        (
            "m1,region,bin,yield\n1,SR_a,0,1\n1,SR_a,1,1\n",
            None,
            MappingError,
            r"region 'SR_a' has bins \[0, 1\] but channel 'SR_a' has 3 bin\(s\).*wrong bin count",
        ),
        (
            "m1,region,bin,yield\n1,CR_top,0,1\n1,CR_top,1,1\n",
            None,
            MappingError,
            "wrong bin count",
        ),
        (
            "m1,region,yield\n1,T,1\n",
            {"regions": {"T": "SR_nope"}},
            MappingError,
            "maps to unknown channel 'SR_nope'; the workspace has: SR_a",
        ),
        (
            "m1,region,yield\n1,T,1\n",
            {"regions": {"T": {"channel": "SR_a", "bin": 3}}},
            MappingError,
            r"bin 3 is outside channel 'SR_a', which has 3 bin\(s\)",
        ),
        (
            "m1,region,yield\n1,T,1\n",
            {"regions": {"T": {"channel": "SR_a", "bin": 0}}},
            MappingError,
            r"channel 'SR_a' has 3 bins but the yields fill only \[0\]",
        ),
        (
            "m1,region,yield\n1,T,1\n1,U,1\n",
            {"regions": {"T": "CR_top", "U": "CR_top"}},
            MappingError,
            "both go to channel 'CR_top' bin 0",
        ),
        (
            "m1,region,yield\n1,T,1\n",
            {"regoins": {}},
            MappingError,
            r"unknown mapping keys \['regoins'\]",
        ),
        (
            "m1,region,yield\n1,CR_top,1\n",
            {"remove": ["VR_nope"]},
            MappingError,
            "cannot remove unknown channel 'VR_nope'",
        ),
        (
            "m1,region,yield\n1,CR_top,1\n",
            {"remove": ["CR_top"]},
            MappingError,
            "also to be removed",
        ),
        (
            "m1,region,bin,yield\n1,SR_a,0,1\n1,SR_a,1,1\n1,SR_a,2,1\n2,SR_a,0,1\n",
            None,
            YieldsError,
            r"point \{'m1': 2\} lacks region/bin \[\('SR_a', 1\), \('SR_a', 2\)\]",
        ),
    ],
)
def test_mapping_and_grid_errors(
    tmp_path: Path, text: str, mapping: dict[str, Any] | None, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make_patchset(_bkgonly(), _yields(tmp_path, text), mapping=mapping, hepdata="ins1234567")


def test_hepdata_reference_is_required_and_checked(tmp_path: Path) -> None:
    df = _yields(tmp_path, "m1,region,yield\n1,CR_top,1\n")
    with pytest.raises(RecastError, match="requires metadata.references.hepdata"):
        make_patchset(_bkgonly(), df)
    with pytest.raises(RecastError, match="'ins' \\+ 7 digits"):
        make_patchset(_bkgonly(), df, hepdata="1234")
    assert make_patchset(_bkgonly(), df, hepdata="1755298")["metadata"]["references"] == {
        "hepdata": "ins1755298"
    }


def test_patch_names_values_and_sample_name(tmp_path: Path) -> None:
    assert patch_name("sig", [350.5, -2, "a.b"]) == "sig_350p5_m2_a_b"
    df = _yields(tmp_path, "mn2,mn1,region,yield\n350.0,100.5,CR_top,1\n")
    ps = make_patchset(
        _bkgonly(), df, hepdata="ins1234567", name_prefix="ERJR", sample_name="sig_{mn2:.0f}"
    )
    p = ps["patches"][0]
    assert p["metadata"] == {"name": "ERJR_350p0_100p5", "values": [350.0, 100.5]}
    assert p["patch"][0]["value"]["name"] == "sig_350"
    df = _yields(tmp_path, "m1,name,region,yield\n1,my_point,CR_top,1\n", "n.csv")
    assert (
        make_patchset(_bkgonly(), df, hepdata="ins1234567")["patches"][0]["metadata"]["name"]
        == "my_point"
    )


def test_template_mode_scales_histosys_and_reproduces_template(tmp_path: Path) -> None:
    bkg = _bkgonly()
    tsample = {
        "name": "official_sig",
        "data": [2.0, 4.0, 0.0],
        "modifiers": [
            {"name": "mu_SIG", "type": "normfactor", "data": None},
            {"name": "JES", "type": "normsys", "data": {"hi": 1.2, "lo": 0.7}},
            {
                "name": "theo",
                "type": "histosys",
                "data": {"hi_data": [2.2, 5.0, 0.0], "lo_data": [1.8, 3.0, 0.0]},
            },
            {"name": "staterror_SR_a", "type": "staterror", "data": [0.2, 0.8, 0.0]},
        ],
    }
    template = {
        "metadata": {
            "description": "t",
            "digests": {"sha256": pyhf.utils.digest(bkg)},
            "labels": ["m1"],
            "references": {"hepdata": "ins7654321"},
        },
        "version": "1.0.0",
        "patches": [
            {
                "metadata": {"name": "t_100", "values": [100]},
                "patch": [
                    {"op": "add", "path": "/channels/0/samples/1", "value": tsample},
                    {"op": "remove", "path": "/channels/2"},
                ],
            },
            {
                "metadata": {"name": "t_900", "values": [900]},
                "patch": [
                    {
                        "op": "add",
                        "path": "/channels/0/samples/1",
                        "value": {**tsample, "name": "far"},
                    }
                ],
            },
        ],
    }
    # the template's own yields reproduce it exactly
    back = yields_from_patchset(bkg, template)
    assert back["stat_unc"].tolist() == [0.2, 0.8, 0.0, 0.2, 0.8, 0.0]
    ps = make_patchset(bkg, back, template=template)
    assert ps["metadata"]["references"] == {"hepdata": "ins7654321"}
    for mine, official in zip(ps["patches"], template["patches"], strict=True):
        assert mine == official
    # new yields: nearest template point (m1=200 -> t_100), shifts keep relative size
    df = _yields(tmp_path, "m1,region,bin,yield\n200,SR_a,0,4.0\n200,SR_a,1,2.0\n200,SR_a,2,1.0\n")
    (p,) = make_patchset(bkg, df, template=template)["patches"]
    assert p["patch"][0]["path"] == "/channels/0/samples/1"
    assert p["patch"][1] == {"op": "remove", "path": "/channels/2"}
    s = p["patch"][0]["value"]
    assert s["name"] == "official_sig" and s["data"] == [4.0, 2.0, 1.0]
    mods = {m["name"] + "/" + m["type"]: m["data"] for m in s["modifiers"]}
    assert mods["theo/histosys"]["hi_data"] == pytest.approx([4.4, 2.5, 1.0])  # 0 nominal: no shift
    assert mods["theo/histosys"]["lo_data"] == pytest.approx([3.6, 1.5, 1.0])
    assert mods["JES/normsys"] == {"hi": 1.2, "lo": 0.7}
    assert mods["staterror_SR_a/staterror"] == pytest.approx([0.4, 0.4, 0.0])
    _pyhf_check(make_patchset(bkg, df, template=template), bkg)
    # other label names: matched by position, with a warning
    other_names = _yields(
        tmp_path, "mass,region,bin,yield\n200,SR_a,0,4.0\n200,SR_a,1,2.0\n200,SR_a,2,1.0\n", "o.csv"
    )
    (q,) = make_patchset(bkg, other_names, template=template)["patches"]
    assert q["patch"] == p["patch"]
    # a named template point
    (p,) = make_patchset(bkg, df, template=template, template_point="t_900")["patches"]
    assert p["patch"][0]["value"]["name"] == "far" and len(p["patch"]) == 1
    # a template for another workspace is refused
    other = json.loads(json.dumps(template))
    other["metadata"]["digests"]["sha256"] = "0" * 64
    with pytest.raises(
        MappingError, match="the template patches another background-only workspace"
    ):
        make_patchset(bkg, df, template=other)


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def test_cli_make_patch_simpleanalysis_and_per_point_files(tmp_path: Path) -> None:
    bkg = _bkgonly()
    bkg_path = tmp_path / "BkgOnly.json"
    bkg_path.write_text(json.dumps(bkg))
    runs = tmp_path / "runs"
    runs.mkdir()
    for m1, acc in ((300, 0.02), (400, 0.01)):
        (runs / f"MyAna_{m1}_50.txt").write_text(
            "SR,events,acceptance,err\nAll,10000,10000,10000\n"
            f"SRlow,1,{acc},0.001\nSRmid,1,{acc},0.001\nSRhigh,1,{acc},0.001\nCR,1,{acc / 10},0.0001\n"
        )
    mapping = tmp_path / "map.json"
    mapping.write_text(
        json.dumps(
            {
                "regions": {
                    "SRlow": {"channel": "SR_a", "bin": 0},
                    "SRmid": {"channel": "SR_a", "bin": 1},
                    "SRhigh": {"channel": "SR_a", "bin": 2},
                    "CR": "CR_top",
                }
            }
        )
    )
    out = tmp_path / "out" / "patchset.json"
    res = CliRunner().invoke(
        main,
        [
            "make-patch",
            str(bkg_path),
            str(runs),
            "--point-pattern",
            r"_(?P<m1>\d+)_(?P<m2>\d+)\.txt$",
            "--xsec",
            "0.5",
            "--lumi",
            "139",
            "--mapping",
            str(mapping),
            "--hepdata",
            "ins1234567",
            "--remove",
            "VR_x",
            "-o",
            str(out),
            "--per-point-dir",
            str(tmp_path / "pp"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 2 patches" in res.output
    ps = json.loads(out.read_text())
    pyhf.PatchSet(ps).verify(bkg)
    assert ps["patches"][0]["patch"][0]["value"]["data"] == pytest.approx([0.02 * 500 * 139] * 3)
    files = sorted(p.name for p in (tmp_path / "pp").iterdir())
    assert files == ["patch.signal_300_50.json", "patch.signal_400_50.json"]
    assert json.loads((tmp_path / "pp" / files[0]).read_text()) == ps["patches"][0]["patch"]


@pytest.mark.parametrize(
    ("yields_text", "extra", "match"),
    [
        ("m1,region,yield\n1,SR_unknown,1\n", [], "unknown region 'SR_unknown'"),
        ("m1,region,bin,yield\n1,SR_a,0,1\n", [], "wrong bin count"),
        ("m1,region,yield\n1,CR_top,-1\n", [], "yield = -1.0 is out of range"),
        ("m1,region,yield\n1,CR_top,nan\n", [], "not a finite number"),
        ("m1,yield\n1,1\n", [], "missing column 'region'"),
        ("m1,region,yield\n1,CR_top,1\n1,CR_top,2\n", [], "duplicate rows"),
        ("m1,region,yield\n1,CR_top,1\n,CR_top,2\n", [], "labels inconsistent across rows"),
        ("m1,region,yield\n1,CR_top,1\n", ["--hepdata", "x"], "'ins' \\+ 7 digits"),
    ],
)
def test_cli_errors_write_nothing(
    tmp_path: Path, yields_text: str, extra: list[str], match: str
) -> None:
    bkg_path = tmp_path / "BkgOnly.json"
    bkg_path.write_text(json.dumps(_bkgonly()))
    y = tmp_path / "y.csv"
    y.write_text(yields_text)
    out = tmp_path / "out.json"
    args = [
        "-q",
        "make-patch",
        str(bkg_path),
        str(y),
        "-o",
        str(out),
        "--per-point-dir",
        str(tmp_path / "pp"),
    ]
    if "--hepdata" not in extra:
        args += ["--hepdata", "ins1234567"]
    res = CliRunner().invoke(main, args + extra)
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    assert __import__("re").search(match, res.output)
    assert not out.exists() and not (tmp_path / "pp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "BkgOnly.json",
        "y.csv",
    ]  # no temp files left


def test_cli_needs_an_output(tmp_path: Path) -> None:
    bkg_path = tmp_path / "BkgOnly.json"
    bkg_path.write_text(json.dumps(_bkgonly()))
    y = tmp_path / "y.csv"
    y.write_text("m1,region,yield\n1,CR_top,1\n")
    res = CliRunner().invoke(main, ["make-patch", str(bkg_path), str(y)])
    assert res.exit_code == 2 and "--output" in res.output


def test_write_patch_files_layout(tmp_path: Path) -> None:
    ps = make_patchset(_bkgonly(), _yields(tmp_path, GRID), hepdata="ins1234567")
    files = write_patch_files(ps, tmp_path / "d")
    assert [f.name for f in files] == ["patch.signal_300_50.json", "patch.signal_400_50.json"]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"m1": 1, "region": "CR_top", "yield": float("nan")}], "row 0: column 'yield' = nan"),
        ([{"m1": 1, "region": "CR_top", "yield": -2.0}], r"row 0: yield = -2\.0 is out of range"),
        (
            [
                {"m1": 1, "region": "CR_top", "yield": 1.0},
                {"m1": 1, "region": "CR_top", "yield": 2.0},
            ],
            r"duplicate rows .* \(rows \[0, 1\]\)",
        ),
        ([{"m1": None, "region": "CR_top", "yield": 1.0}], "label 'm1' is empty"),
        ([{"m1": 1, "yield": 1.0}], "missing column 'region'"),
    ],
)
def test_dataframe_input_gets_the_same_checks(rows: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(YieldsError, match=match):
        make_patchset(_bkgonly(), pd.DataFrame(rows), hepdata="ins1234567")


def test_cli_make_patch_from_madanalysis5(tmp_path: Path) -> None:
    bkg = _bkgonly()
    bkg_path = tmp_path / "BkgOnly.json"
    bkg_path.write_text(json.dumps(bkg))
    mapping = tmp_path / "map.toml"
    mapping.write_text('ignore = ["SR_high"]\n[regions]\nSR_low = "VR_x"\n')
    out = tmp_path / "ps.json"
    args = [
        "make-patch",
        str(bkg_path),
        str(DATA / "madanalysis5_grid"),
        "--point-pattern",
        r"stop_(?P<m1>\d+)_(?P<m2>\d+)/",
        "--xsec",
        "0.5",
        "--lumi",
        "139",
        "--mapping",
        str(mapping),
        "--hepdata",
        "ins1234567",
        "-o",
        str(out),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    ps = json.loads(out.read_text())
    pyhf.PatchSet(ps).verify(bkg)
    ops = ps["patches"][0]["patch"]
    # CR_top (channel 1) by name, SR_low -> VR_x (channel 2); SR_high ignored
    assert [o["path"] for o in ops] == ["/channels/1/samples/-", "/channels/2/samples/-"]
    assert ops[1]["value"]["data"] == pytest.approx([120 / 20000 * 500 * 139])
    # the MC statistics join the staterror of VR_x's background
    assert ops[1]["value"]["modifiers"][-1]["name"] == "staterror_VR_x"
