"""Reading signal yields: the tidy format (CSV / JSON) and ATLAS SimpleAnalysis output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recast.errors import YieldsError
from recast.yields import (
    label_columns,
    parse_madanalysis5_cutflow,
    parse_simpleanalysis_text,
    read_yields,
    systematic_names,
    write_yields,
)

DATA = Path(__file__).parent / "data_recast"
SA_GRID = DATA / "simpleanalysis_grid"
SA_PATTERN = r"_(?P<m1>\d+)_(?P<m2>\d+)\.txt$"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# tidy CSV / JSON
# ---------------------------------------------------------------------------------------


def test_tidy_csv_reads_labels_types_and_defaults(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "y.csv",
        "# comment line\n"
        "m1,m2,region,yield,stat_unc,sys_JES_up,sys_JES_down\n"
        "700,150,SR,10.5,1.25,0.05,-0.04\n"
        "700,150,CR,2.0,0.5,0.01,-0.01\n"
        "800,100,SR,4.5,0.75,0.05,-0.04\n"
        "800,100,CR,1.0,0.25,0.01,-0.01\n",
    )
    df = read_yields(p)
    assert df.attrs["labels"] == ["m1", "m2"] == label_columns(df)
    assert df["m1"].dtype == np.int64 and df["m2"].dtype == np.int64
    assert df["bin"].tolist() == [0, 0, 0, 0]  # default bin
    assert df["yield"].tolist() == [10.5, 2.0, 4.5, 1.0]
    assert df["stat_unc"].tolist() == [1.25, 0.5, 0.75, 0.25]
    assert systematic_names(df) == ["JES"]
    assert df["sys_JES_down"].tolist() == [-0.04, -0.01, -0.04, -0.01]


def test_tidy_float_labels_stay_float(tmp_path: Path) -> None:
    p = _write(tmp_path / "y.csv", "mn2,mn1,region,yield\n350.0,100.5,SR,1\n")
    df = read_yields(p)
    assert df["mn2"].dtype == float and df["mn1"].tolist() == [100.5]


def test_tidy_efficiency_converts_with_units(tmp_path: Path) -> None:
    # yield = efficiency x xsec[pb] x 1000 [fb/pb] x lumi[fb^-1]
    p = _write(
        tmp_path / "y.csv",
        "m1,region,bin,efficiency,xsec_pb,lumi_ifb,stat_unc\n"
        "500,SR,0,0.01,0.2,139,0.001\n"
        "500,SR,1,0.02,0.2,139,0.002\n",
    )
    df = read_yields(p)
    assert df["yield"].tolist() == pytest.approx([0.01 * 0.2 * 1000 * 139, 0.02 * 0.2 * 1000 * 139])
    # stat_unc is given on the efficiency and scaled with it
    assert df["stat_unc"].tolist() == pytest.approx([0.001 * 0.2e3 * 139, 0.002 * 0.2e3 * 139])
    assert "efficiency" not in df.columns


def test_tidy_json_records_and_rows_object(tmp_path: Path) -> None:
    rows = [
        {"m1": 700, "m2": 150, "region": "SR", "bin": 0, "yield": 3.0},
        {"m1": 700, "m2": 150, "region": "SR", "bin": 1, "yield": 4.0},
    ]
    a = read_yields(_write(tmp_path / "a.json", json.dumps(rows)))
    b = read_yields(_write(tmp_path / "b.json", json.dumps({"labels": ["m1", "m2"], "rows": rows})))
    for df in (a, b):
        assert df.attrs["labels"] == ["m1", "m2"]
        assert df["yield"].tolist() == [3.0, 4.0] and df["bin"].tolist() == [0, 1]


def test_write_yields_round_trips_csv_and_json(tmp_path: Path) -> None:
    df = read_yields(
        _write(
            tmp_path / "y.csv",
            "m1,m2,name,region,bin,yield,stat_unc\n"
            "700,150,pt_700_150,SR,0,0.1234567890123456,0.01\n"
            "700,150,pt_700_150,SR,1,1e-9,0.0\n",
        )
    )
    for suffix in (".csv", ".json"):
        out = write_yields(df, tmp_path / f"out{suffix}")
        back = read_yields(out)
        pd.testing.assert_frame_equal(back, df, check_dtype=True)
        assert back.attrs["labels"] == ["m1", "m2"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("m1,region,events\n1,SR,3\n", "name the column yield"),
        ("m1,yield\n1,3\n", "missing column 'region'"),
        ("m1,region,foo\n1,SR,3\n", "missing column 'yield'"),
        ("m1,region,yield\n1,SR,-1\n", r"line 2: yield = -1\.0 is out of range"),
        ("m1,region,yield\n1,SR,nan\n", "line 2: column 'yield' = 'nan' is not a finite number"),
        ("m1,region,yield\n1,SR,\n", "line 2: column 'yield' = '' is not a finite number"),
        ("m1,region,yield\n1,SR,inf\n", "not a finite number"),
        (
            "m1,region,yield\n1,SR,3\n1,SR,4\n",
            r"duplicate rows for point \{'m1': 1\}, region 'SR', bin 0 \(lines \[2, 3\]\)",
        ),
        ("m1,region,yield\n1,SR,3\n,SR,4\n", r"line 3: label 'm1' is empty \(labels inconsistent"),
        (
            "m1,region,yield\n1,SR,3\nabc,SR,4\n",
            "line 3: label 'm1' = 'abc' is not a number while other rows",
        ),
        ("m1,region,bin,yield\n1,SR,0.5,3\n", "bin 0.5 is not an integer"),
        ("m1,region,yield,efficiency,xsec_pb,lumi_ifb\n1,SR,3,0.1,1,1\n", "either 'yield' or"),
        ("m1,region,efficiency,xsec_pb\n1,SR,0.1,1\n", r"missing \['lumi_ifb'\]"),
        (
            "m1,region,efficiency,xsec_pb,lumi_ifb\n1,SR,1.5,1,139\n",
            "efficiency = 1.5 is out of range",
        ),
        ("m1,region,efficiency,xsec_fb,lumi_ifb\n1,SR,0.5,1,139\n", "xsec_pb = xsec_fb / 1000"),
        (
            "m1,region,efficiency,xsec_pb,lumi_ifb\n1,SR,0.5,0,139\n",
            "xsec_pb = 0.0 is out of range",
        ),
        ("m1,region,yield,sys_a_up\n1,SR,3,0.1\n", "has no partner 'sys_a_down'"),
        (
            "m1,region,yield,sys_a_up,sys_a_down\n1,SR,3,0.1,-1.5\n",
            "sys_a_down = -1.5 is out of range",
        ),
        ("region,yield\nSR,3\n", "no point-label columns"),
        ("m1,region,yield\n1,SR,3,4\n", "line 2: 4 fields, but the header has 3"),
        ("m1,name,region,yield\n1,a,SR,3\n2,a,CR,3\n", "point 'a' has different label values"),
        ("m1,name,region,yield\n1,a,SR,3\n1,b,CR,3\n", "carries several names"),
        ("m1,name,region,yield\n1,a-b,SR,3\n", r"must match \^\[a-zA-Z0-9_\]\+\$"),
    ],
)
def test_tidy_bad_input_is_a_clear_error(tmp_path: Path, text: str, match: str) -> None:
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(YieldsError, match=match) as info:
        read_yields(p)
    assert str(p) in str(info.value)  # the message names the file


def test_tidy_json_rows_with_different_keys(tmp_path: Path) -> None:
    rows = [
        {"m1": 1, "m2": 2, "region": "SR", "yield": 1.0},
        {"m1": 1, "region": "CR", "yield": 1.0},
    ]
    with pytest.raises(YieldsError, match=r"row 1 has different columns.*missing \['m2'\]"):
        read_yields(_write(tmp_path / "y.json", json.dumps(rows)))


def test_tidy_json_nan_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "y.json", '[{"m1": 1, "region": "SR", "yield": NaN}]')
    with pytest.raises(YieldsError, match="NaN"):
        read_yields(p)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(YieldsError, match="no such file"):
        read_yields(tmp_path / "nope.csv")
    p = _write(tmp_path / "y.csv", "m1,region,yield\n1,SR,1\n")
    with pytest.raises(YieldsError, match="unknown yields format 'madgraph'"):
        read_yields(p, format="madgraph")


# ---------------------------------------------------------------------------------------
# SimpleAnalysis
# ---------------------------------------------------------------------------------------


def test_simpleanalysis_text_layout() -> None:
    text = (SA_GRID / "EwkOneLeptonTwoBjets2018_700_150.txt").read_text()
    acc = parse_simpleanalysis_text(text, source="x")
    assert list(acc.columns) == ["region", "events", "acceptance", "err"]
    assert "All" not in acc["region"].tolist()  # the totals row is not a region
    assert acc["region"].iloc[0] == "SRLMEM_mct2_bin0"
    assert acc["acceptance"].iloc[0] == 0.00305 and acc["events"].iloc[0] == 61
    # with unit weights err = sqrt(n) / N: the example file is self-consistent
    np.testing.assert_allclose(acc["err"], np.sqrt(acc["events"]) / 20000, rtol=1e-5)
    np.testing.assert_allclose(acc["acceptance"], acc["events"] / 20000, rtol=1e-12)


def test_simpleanalysis_folder_with_xsec_csv() -> None:
    df = read_yields(
        SA_GRID, point_pattern=SA_PATTERN, xsec_pb=SA_GRID / "xsec.csv", lumi_ifb=139.0
    )
    assert df.attrs["labels"] == ["m1", "m2"]
    assert sorted(set(zip(df["m1"], df["m2"], strict=True))) == [(700, 150), (800, 100)]
    row = df[(df["m1"] == 700) & (df["region"] == "SRLMEM_mct2_bin0")].iloc[0]
    assert row["yield"] == pytest.approx(0.00305 * 0.0253 * 1000 * 139)
    assert row["stat_unc"] == pytest.approx(0.000390512 * 0.0253 * 1000 * 139)
    assert (df["bin"] == 0).all() and len(df) == 28


def test_simpleanalysis_index_csv_and_subfolders(tmp_path: Path) -> None:
    for m1 in (300, 400):
        d = tmp_path / "runs" / f"{m1}_50"
        d.mkdir(parents=True)
        _write(
            d / "MyAna.txt",
            "SR,events,acceptance,err\nAll,1000,250.5,62.8\nSRA,10,0.01,0.003\nCRB,5,0.005,0.002\n",
        )
    idx = _write(
        tmp_path / "index.csv",
        "file,m1,m2,xsec_pb,lumi_ifb\nruns/300_50/MyAna.txt,300,50,2.0,139\nruns/400_50/MyAna.txt,400,50,1.0,139\n",
    )
    df = read_yields(idx)
    assert read_yields(idx, format="simpleanalysis").equals(df)
    assert df[(df["m1"] == 300) & (df["region"] == "SRA")]["yield"].item() == pytest.approx(
        0.01 * 2.0e3 * 139
    )
    assert df[(df["m1"] == 400) & (df["region"] == "CRB")]["yield"].item() == pytest.approx(
        0.005 * 1.0e3 * 139
    )
    # the same folder read with a pattern on the relative path
    df2 = read_yields(
        tmp_path / "runs", point_pattern=r"(?P<m1>\d+)_(?P<m2>\d+)/", xsec_pb=1.0, lumi_ifb=139
    )
    assert sorted(df2["m1"].unique().tolist()) == [300, 400]


def test_simpleanalysis_decimal_p_in_names(tmp_path: Path) -> None:
    _write(
        tmp_path / "Ana_350p5_100p0.txt", "SR,events,acceptance,err\nAll,10,10,10\nSR,1,0.1,0.1\n"
    )
    df = read_yields(
        tmp_path, point_pattern=r"_(?P<mn2>[\dp]+)_(?P<mn1>[\dp]+)\.txt", xsec_pb=1, lumi_ifb=1
    )
    assert df["mn2"].tolist() == [350.5] and df["mn1"].tolist() == [100.0]


def test_simpleanalysis_variation_columns_and_prefixed_blocks(tmp_path: Path) -> None:
    text = (
        "SR,events,acceptance,err,var1,var2\n"
        "AnaA__All,100,100,100,1,1\n"
        "AnaA__SR1,10,0.1,0.0316228,0.1,0.1\n"
        "AnaB__All,100,50,25,1,1\n"
        "AnaB__SR1,20,0.2,0.0447214,0.2,0.2\n"
    )
    acc = parse_simpleanalysis_text(text)
    assert acc["region"].tolist() == ["AnaA__SR1", "AnaB__SR1"]
    assert acc["acceptance"].tolist() == [0.1, 0.2]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("region,yield\nSR,1\n", "not a SimpleAnalysis acceptance file"),
        ("SR,events,acceptance,err\nSR1,1,0.1,0.1\n", "before the 'All' totals row"),
        ("SR,events,acceptance,err\nAll,0,0,0\nSR1,0,0,0\n", "sum of event weights is 0"),
        (
            "SR,events,acceptance,err\nAll,10,10,10\nSR1,1,-0.1,0.1\n",
            "acceptance of region 'SR1' is -0.1",
        ),
        ("SR,events,acceptance,err\nAll,10,10,10\nSR1,1,nan,0.1\n", "not finite"),
        (
            "SR,events,acceptance,err\nAll,10,10,10\nSR1,1,0.1,0.1\nSR1,1,0.1,0.1\n",
            "appears on lines",
        ),
        ("SR,events,acceptance,err\nAll,10,10,10\n", "no region rows"),
        ("", "empty file"),
    ],
)
def test_simpleanalysis_bad_files(tmp_path: Path, text: str, match: str) -> None:
    p = _write(tmp_path / "Ana_1_2.txt", text)
    with pytest.raises(YieldsError, match=match):
        read_yields(p, format="simpleanalysis", point_pattern=SA_PATTERN, xsec_pb=1.0, lumi_ifb=139)


def test_simpleanalysis_needs_labels_xsec_and_lumi(tmp_path: Path) -> None:
    with pytest.raises(YieldsError, match="give point_pattern"):
        read_yields(SA_GRID, xsec_pb=1.0, lumi_ifb=139)
    with pytest.raises(YieldsError, match="needs the signal cross-section"):
        read_yields(SA_GRID, point_pattern=SA_PATTERN, lumi_ifb=139)
    with pytest.raises(YieldsError, match="needs the analysis luminosity"):
        read_yields(SA_GRID, point_pattern=SA_PATTERN, xsec_pb=1.0)
    with pytest.raises(YieldsError, match="no file name matches the point pattern"):
        read_yields(SA_GRID, point_pattern=r"_(?P<m1>\d+)GeV", xsec_pb=1.0, lumi_ifb=139)
    with pytest.raises(YieldsError, match="does not match the point pattern"):
        read_yields(
            SA_GRID / "EwkOneLeptonTwoBjets2018_700_150.txt",
            point_pattern=r"_(?P<m1>\d+)GeV",
            xsec_pb=1.0,
            lumi_ifb=139,
        )
    xs = _write(tmp_path / "xs.csv", "m1,m2,xsec_pb\n700,150,0.1\n")
    with pytest.raises(YieldsError, match=r"no cross-section for point \{'m1': 800, 'm2': 100\}"):
        read_yields(SA_GRID, point_pattern=SA_PATTERN, xsec_pb=xs, lumi_ifb=139)
    with pytest.raises(YieldsError, match="xsec_pb = -1"):
        read_yields(SA_GRID, point_pattern=SA_PATTERN, xsec_pb=-1.0, lumi_ifb=139)


def test_simpleanalysis_duplicate_points(tmp_path: Path) -> None:
    for name in ("Ana_1_2.txt", "Other_1_2.txt"):
        _write(tmp_path / name, "SR,events,acceptance,err\nAll,10,10,10\nSR,1,0.1,0.1\n")
    with pytest.raises(YieldsError, match="duplicate points"):
        read_yields(tmp_path, point_pattern=SA_PATTERN, xsec_pb=1.0, lumi_ifb=1.0)


def test_yield_conversion_is_exact_for_simple_numbers(tmp_path: Path) -> None:
    _write(tmp_path / "A_1_1.txt", "SR,events,acceptance,err\nAll,4,4,4\nSR,1,0.25,0.25\n")
    df = read_yields(tmp_path, point_pattern=SA_PATTERN, xsec_pb=0.5, lumi_ifb=2.0)
    assert math.isclose(df["yield"].item(), 0.25 * 0.5 * 1000 * 2.0)


def test_simpleanalysis_folder_skips_other_txt_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "Ana_1_2.txt", "SR,events,acceptance,err\nAll,10,10,10\nSR,1,0.1,0.1\n")
    _write(tmp_path / "notes.txt", "not a result file\n")
    with caplog.at_level("WARNING", logger="recast.yields"):
        df = read_yields(tmp_path, point_pattern=SA_PATTERN, xsec_pb=1.0, lumi_ifb=1.0)
    assert len(df) == 1
    assert "do not match the point pattern" in caplog.text and "notes.txt" in caplog.text


# ---------------------------------------------------------------------------------------
# MadAnalysis 5
# ---------------------------------------------------------------------------------------

MA5_GRID = DATA / "madanalysis5_grid"


def test_madanalysis5_cutflow_layout() -> None:
    f = MA5_GRID / "stop_300_50/Output/SAF/defaultset/toy_analysis_0/Cutflows/SR_low.saf"
    acc, err, events = parse_madanalysis5_cutflow(f.read_text(), source=str(f))
    # unit weights, 20000 generated, 120 after the last of three cuts
    assert acc == 120 / 20000 and events == 120
    assert err == pytest.approx(math.sqrt(120) / 20000, rel=1e-12)


def test_madanalysis5_negative_weights_are_signed() -> None:
    text = (
        '<SAFheader>\n</SAFheader>\n\n<InitialCounter>\n"Initial number of events"      #\n'
        "90              10              # nentries\n"
        "9.000000e+01    -1.000000e+01   # sum of weights\n"
        "9.000000e+01    1.000000e+01    # sum of weights^2\n</InitialCounter>\n\n"
        '<Counter>\n"cut"                           # 1st cut\n'
        "20              4               # nentries\n"
        "2.000000e+01    -4.000000e+00   # sum of weights\n"
        "2.000000e+01    4.000000e+00    # sum of weights^2\n</Counter>\n"
    )
    acc, err, events = parse_madanalysis5_cutflow(text)
    assert acc == pytest.approx(16 / 80) and err == pytest.approx(math.sqrt(24) / 80)
    assert events == 24


def test_madanalysis5_grid_folder() -> None:
    df = read_yields(
        MA5_GRID, point_pattern=r"stop_(?P<m1>\d+)_(?P<m2>\d+)/", xsec_pb=0.5, lumi_ifb=139
    )
    assert read_yields(
        MA5_GRID,
        format="madanalysis5",
        point_pattern=r"stop_(?P<m1>\d+)_(?P<m2>\d+)/",
        xsec_pb=0.5,
        lumi_ifb=139,
    ).equals(df)
    assert sorted(df["region"].unique()) == ["CR_top", "SR_high", "SR_low"]
    row = df[(df["m1"] == 400) & (df["region"] == "SR_high")].iloc[0]
    assert row["yield"] == pytest.approx(90 / 20000 * 0.5e3 * 139)
    assert row["stat_unc"] == pytest.approx(math.sqrt(90) / 20000 * 0.5e3 * 139)


def test_madanalysis5_index(tmp_path: Path) -> None:
    idx = _write(
        tmp_path / "index.csv",
        "file,m1,m2,xsec_pb,lumi_ifb\n"
        f"{MA5_GRID}/stop_300_50/Output/SAF/defaultset/toy_analysis_0,300,50,2.0,139\n",
    )
    df = read_yields(idx)  # the index lists folders: MadAnalysis 5
    assert df[df["region"] == "CR_top"]["yield"].item() == pytest.approx(30 / 20000 * 2e3 * 139)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("SR,events\n", "no <InitialCounter> block"),
        (
            '<InitialCounter>\n"x" #\n1 0 # nentries\n1.0 0.0 # sum of weights\n'
            "1.0 0.0 # sum of weights^2\n</InitialCounter>\n",
            "no <Counter>",
        ),
        (
            '<InitialCounter>\n"x" #\n1 0 # nentries\n1.0 0.0 # sum of weights\n'
            '</InitialCounter>\n<Counter>\n"c" # 1st cut\n1 0 # nentries\n1.0 0.0 # sum of weights\n'
            "1.0 0.0 # sum of weights^2\n</Counter>\n",
            "name line and 3 number lines",
        ),
        (
            '<InitialCounter>\n"x" #\n1 0 # nentries\n0.0 0.0 # sum of weights\n'
            '1.0 0.0 # sum of weights^2\n</InitialCounter>\n<Counter>\n"c" # 1st cut\n1 0 # nentries\n'
            "1.0 0.0 # sum of weights\n1.0 0.0 # sum of weights^2\n</Counter>\n",
            "initial sum of weights is 0.0",
        ),
        (
            '<InitialCounter>\n"x" #\n1 0 # nentries\n1.0 0.0 # sum of weights\n'
            '1.0 0.0 # sum of weights^2\n</InitialCounter>\n<Counter>\n"c" # 1st cut\n1 1 # nentries\n'
            "0.1 -0.5 # sum of weights\n1.0 0.0 # sum of weights^2\n</Counter>\n",
            "negative event weights dominate",
        ),
        (
            '<InitialCounter>\n"x" #\n1 0 # nentries\nnan 0.0 # sum of weights\n'
            '1.0 0.0 # sum of weights^2\n</InitialCounter>\n<Counter>\n"c" # 1st cut\n1 0 # nentries\n'
            "1.0 0.0 # sum of weights\n1.0 0.0 # sum of weights^2\n</Counter>\n",
            "not finite",
        ),
    ],
)
def test_madanalysis5_bad_cutflows(tmp_path: Path, text: str, match: str) -> None:
    d = tmp_path / "p_1_2" / "Cutflows"
    d.mkdir(parents=True)
    _write(d / "SR.saf", text)
    with pytest.raises(YieldsError, match=match) as info:
        read_yields(
            tmp_path,
            format="madanalysis5",
            point_pattern=SA_PATTERN.replace(r"\.txt$", "/"),
            xsec_pb=1.0,
            lumi_ifb=1.0,
        )
    assert "SR.saf" in str(info.value)
