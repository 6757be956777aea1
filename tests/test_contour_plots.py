"""Exclusion and Brazil plots, rendered headless, and the `recastkit contour` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch
from scipy.stats import norm

from cli import main
from recast.contour import (
    exclusion_contour,
    find_crossings,
    plot_brazil,
    plot_exclusion,
    read_hepdata_csv,
)
from recast.errors import ContourError

Z95 = 1.6448536269514722
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-", ".svg": b"<?xml"}


def _grid(seed: int = 3) -> pd.DataFrame:
    """A triangular mass plane (m2 < m1) with an exclusion reaching m1 ~ 700 + (300 - m2)."""
    rng = np.random.default_rng(seed)
    m1, m2 = np.meshgrid(np.arange(200.0, 1101.0, 100.0), np.arange(0.0, 901.0, 100.0))
    m1, m2 = m1.ravel(), m2.ravel()
    keep = m2 < m1
    m1, m2 = m1[keep], m2[keep]
    z = Z95 + (900.0 - m1 - 0.5 * m2) / 120.0 + rng.normal(0.0, 0.05, m1.size)
    return pd.DataFrame(
        {
            "patch": [f"sig_{a:g}_{b:g}" for a, b in zip(m1, m2, strict=True)],
            "m1": m1,
            "m2": m2,
            "cls_obs": norm.sf(z - 0.2),
            "cls_exp_m2": norm.sf(z + 1.0),
            "cls_exp_m1": norm.sf(z + 0.5),
            "cls_exp": norm.sf(z),
            "cls_exp_p1": norm.sf(z - 0.5),
            "cls_exp_p2": norm.sf(z - 1.0),
            "status": "ok",
        }
    )


def _slice() -> pd.DataFrame:
    grid = _grid()
    return grid[grid["m2"] == 100.0]


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_exclusion_plot_is_written_in_each_format(tmp_path, suffix):
    path = tmp_path / f"exclusion{suffix}"
    plot = plot_exclusion(_grid(), "m1", "m2", forbidden="m2 >= m1", output=path)
    assert path.read_bytes().startswith(MAGIC[suffix])
    assert path.stat().st_size > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left
    assert isinstance(plot.figure, Figure)


def test_exclusion_plot_artists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _grid()
    plot = plot_exclusion(grid, "m1", "m2", band2=True, forbidden="m2 >= m1", title="toy")
    assert list(tmp_path.iterdir()) == []  # nothing written without a path
    art = plot.artists
    # observed solid, expected dashed, drawn from the extracted contour vertices
    (obs,) = art["observed"]
    (exp,) = art["expected"]
    assert isinstance(obs, Line2D) and obs.get_linestyle() == "-"
    assert exp.get_linestyle() == "--"
    np.testing.assert_array_equal(obs.get_xydata(), plot.contours.curves["observed"][0])
    np.testing.assert_array_equal(exp.get_xydata(), plot.contours.curves["expected"][0])
    # the +-1 sigma band is yellow and lies between the -1 and +1 sigma curves
    band = art["band_1sigma"]
    assert band and all(isinstance(p, PathPatch) for p in band)
    assert band[0].get_facecolor()[:3] == pytest.approx((1.0, 210 / 255, 31 / 255), abs=1e-6)
    vertices = np.vstack([p.get_path().vertices for p in band])
    m1_reach = plot.contours.curves["expected_m1"][0][:, 0].max()
    p1_reach = plot.contours.curves["expected_p1"][0][:, 0].min()
    assert vertices[:, 0].max() == pytest.approx(m1_reach, abs=5.0)
    assert vertices[:, 0].min() == pytest.approx(p1_reach, abs=5.0)
    assert art["band_2sigma"]
    # grid points coloured by CLs with a colour bar
    assert isinstance(art["points"], PathCollection)
    assert len(art["points"].get_offsets()) == len(grid)
    np.testing.assert_allclose(art["points"].get_array(), np.clip(grid["cls_obs"], 1e-4, 1))
    assert art["colorbar"].ax.get_ylabel() == "observed CLs"
    assert art["forbidden"]
    labels = [t.get_text() for t in art["legend"].get_texts()]
    assert labels[:2] == [
        "Observed limit (95% CL)",
        r"Expected limit ($\pm 1\sigma_{\mathrm{exp}}$, $\pm 2\sigma_{\mathrm{exp}}$)",
    ]
    assert "kinematically forbidden" in labels
    assert plot.ax.get_xlabel() == "m1 [GeV]" and plot.ax.get_ylabel() == "m2 [GeV]"
    assert plot.ax.get_title() == "toy"


def test_exclusion_plot_into_given_axes_with_overlay(tmp_path, shared_hepdata):
    ref = shared_hepdata / "sbottom_multib" / "reference" / "HEPData-ins1748602-v1-M60_Obs.csv"
    fig = Figure()
    ax = fig.add_subplot()
    contours = exclusion_contour(_grid(), "m1", "m2", method="rbf")
    plot = plot_exclusion(
        contours, ax=ax, overlay=ref, points=False, unit="TeV", xlabel="m(X)", ylabel=None
    )
    assert plot.figure is fig and plot.ax is ax
    assert "points" not in plot.artists and "colorbar" not in plot.artists
    (line,) = plot.artists["overlay"]
    published = read_hepdata_csv(ref)[0].data.to_numpy(float)
    np.testing.assert_array_equal(line.get_xydata(), published)
    assert line.get_linestyle() == ":"
    labels = [t.get_text() for t in plot.artists["legend"].get_texts()]
    assert "M60_Obs (published)" in labels
    assert ax.get_xlabel() == "m(X) [TeV]" and ax.get_ylabel() == "m2 [TeV]"  # unit kept


def test_exclusion_plot_errors(tmp_path):
    with pytest.raises(ContourError, match=r"\.png, \.pdf or \.svg"):
        plot_exclusion(_grid(), "m1", "m2", output=tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ContourError, match="needs the x and y columns"):
        plot_exclusion(_grid(), "m1")
    with pytest.raises(ContourError, match="color_by='cls_zzz' is not a CLs column"):
        plot_exclusion(_grid(), "m1", "m2", color_by="cls_zzz")
    with pytest.raises(ContourError, match="the folder .*nowhere does not exist"):
        plot_exclusion(_grid(), "m1", "m2", output=tmp_path / "nowhere" / "x.png")
    with pytest.raises(ContourError, match=r"\.png, \.pdf or \.svg"):
        plot_brazil(_slice(), "m1", output=tmp_path / "x.eps")
    assert list(tmp_path.iterdir()) == []
    by_expected = plot_exclusion(_grid(), "m1", "m2", color_by="cls_exp")
    np.testing.assert_allclose(
        by_expected.artists["points"].get_array(), np.clip(_grid()["cls_exp"], 1e-4, 1)
    )
    assert by_expected.artists["colorbar"].ax.get_ylabel() == "expected CLs"
    bad = tmp_path / "bad.csv"
    bad.write_text("#: name: words\nchannel,comment\nSR,hello\n")
    with pytest.raises(ContourError, match="no table with two numeric columns"):
        plot_exclusion(_grid(), "m1", "m2", overlay=bad)


def test_brazil_plot_and_crossings(tmp_path):
    table = _slice()
    path = tmp_path / "brazil.png"
    plot = plot_brazil(table, "m1", output=path, title="m2 = 100 GeV")
    assert path.read_bytes().startswith(MAGIC[".png"])
    expected = find_crossings(table, "m1")
    assert plot.crossings.keys() == expected.keys()
    for name, values in expected.items():
        np.testing.assert_array_equal(plot.crossings[name], values)
    # the toy surface crosses at Z = Zc, i.e. m1 = 900 - 50 + 120 * shift (noise 0.05 * 120)
    assert plot.crossings["expected"] == pytest.approx([850.0], abs=15.0)
    assert plot.crossings["observed"] == pytest.approx([850.0 - 24.0], abs=15.0)
    art = plot.artists
    assert art["observed"].get_linestyle() == "-" and art["expected"].get_linestyle() == "--"
    assert art["level"].get_ydata()[0] == 0.05
    offsets = art["crossings"].get_offsets()
    np.testing.assert_allclose(
        offsets[:, 0], np.r_[plot.crossings["observed"], plot.crossings["expected"]]
    )
    np.testing.assert_allclose(offsets[:, 1], 0.05)
    assert plot.ax.get_yscale() == "log"
    # the green band is the +-1 sigma one, the yellow the +-2 sigma one
    assert tuple(art["band_1sigma"].get_facecolor()[0][:3]) == pytest.approx((0.0, 0.8, 0.0))
    assert tuple(art["band_2sigma"].get_facecolor()[0][:3]) == pytest.approx((1.0, 1.0, 0.0))


def test_brazil_plot_needs_one_row_per_mass():
    with pytest.raises(ContourError, match=r"m1 = 200.0 appears in 2 rows \(64 of 64 rows"):
        plot_brazil(_grid(), "m1")
    plot = plot_brazil(_grid(), "m1", where="m2 == 0", logy=False)
    assert plot.ax.get_yscale() == "linear"
    assert list(plot.artists["observed"].get_xdata()) == sorted(_grid().query("m2 == 0")["m1"])


# -- CLI ------------------------------------------------------------------------------------


def test_cli_contour_plot_and_exports(tmp_path):
    results = tmp_path / "results.csv"
    _grid().to_csv(results, index=False)
    runner = CliRunner()
    out = tmp_path / "exclusion.pdf"
    result = runner.invoke(
        main,
        [
            "contour", str(results), "-x", "m1", "-y", "m2", "-o", str(out),
            "--export", str(tmp_path / "c.json"), "--method", "rbf", "--band2",
            "--forbidden", "m2 >= m1", "--title", "toy",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(MAGIC[".pdf"])
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["method"] == "rbf" and doc["curves"][0]["name"] == "observed"
    direct = exclusion_contour(_grid(), "m1", "m2", method="rbf", forbidden="m2 >= m1")
    np.testing.assert_allclose(doc["curves"][0]["x"], direct.curves["observed"][0][:, 0])
    assert f"{len(_grid())} points in the m1-m2 plane, rbf interpolation" in result.output
    assert "observed: 1 piece(s)" in result.output
    # CSV export only, no plot
    result = runner.invoke(
        main,
        ["contour", str(results), "-x", "m1", "-y", "m2", "--export", str(tmp_path / "c.csv"),
         "--resolution", "50"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tables = read_hepdata_csv(tmp_path / "c.csv")
    assert [t.header["curve"] for t in tables][:2] == ["observed", "expected"]
    coarse = exclusion_contour(_grid(), "m1", "m2", resolution=50).curves["observed"][0]
    np.testing.assert_array_equal(tables[0].data.to_numpy(), coarse)


def test_cli_brazil_mode_prints_crossings(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in _grid().to_dict(orient="records")))
    out = tmp_path / "brazil.svg"
    result = CliRunner().invoke(
        main, ["contour", str(results), "-x", "m1", "--where", "m2 == 100", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(MAGIC[".svg"])
    observed = find_crossings(_slice(), "m1")["observed"]
    assert f"observed: CLs = 0.05 at m1 = {observed[0]:.6g}" in result.output


def test_cli_contour_errors_are_one_line(tmp_path):
    results = tmp_path / "results.csv"
    _grid().to_csv(results, index=False)
    runner = CliRunner()
    result = runner.invoke(main, ["contour", str(results), "-x", "m1", "-y", "mass"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: column(s) ['mass'] not in the results")
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(main, ["contour", str(results), "-x", "m1"])  # no slice chosen
    assert result.exit_code == 1 and "appears in" in result.output
    result = runner.invoke(main, ["contour", str(results), "-x", "m1", "--band2"])
    assert result.exit_code == 2 and "need a 2-D plane" in result.output
    (tmp_path / "r.txt").write_text("x")
    result = runner.invoke(main, ["contour", str(tmp_path / "r.txt"), "-x", "m1"])
    assert result.exit_code == 1 and "unknown results format" in result.output


def test_cli_best_expected_takes_the_lowest_expected_region_per_point(tmp_path):
    # two regions; region B is the more sensitive one for m1 >= 700 only: the contour of
    # the best-expected table follows A below and B above
    a = _grid().assign(region="A")
    b = _grid().assign(region="B")
    better = b["m1"] >= 700
    for col in ("cls_obs", "cls_exp", "cls_exp_m1", "cls_exp_p1", "cls_exp_m2", "cls_exp_p2"):
        b.loc[better, col] = a.loc[better, col] / 10.0
        b.loc[~better, col] = np.minimum(a.loc[~better, col] * 10.0, 1.0)
    results = tmp_path / "results.csv"
    pd.concat([a, b], ignore_index=True).to_csv(results, index=False)
    runner = CliRunner()
    result = runner.invoke(main, ["contour", str(results), "-x", "m1", "-y", "m2"])
    assert result.exit_code == 1 and "--best-expected" in result.output
    export = tmp_path / "c.csv"
    result = runner.invoke(
        main,
        [
            "contour",
            str(results),
            "-x",
            "m1",
            "-y",
            "m2",
            "--best-expected",
            "--export",
            str(export),
        ],
    )
    assert result.exit_code == 0, result.output
    best = pd.concat([a[~better], b[better]], ignore_index=True)
    direct = exclusion_contour(best, "m1", "m2")
    (table, *_) = read_hepdata_csv(export)
    np.testing.assert_allclose(table.data.to_numpy(), direct.curves["observed"][0])


def test_several_overlays_get_their_own_style_and_label(shared_hepdata):
    folder = shared_hepdata / "3L_eRJR" / "reference" / "HEPData-ins1771533-v1-csv"
    files = [folder / "ObservedLimit3LeRJR.csv", folder / "ExpectedLimit3LeRJR.csv"]
    plot = plot_exclusion(
        _grid(), "m1", "m2", overlay=files, overlay_label=["ATLAS obs.", "ATLAS exp."]
    )
    obs, exp = plot.artists["overlay"]
    np.testing.assert_array_equal(obs.get_xydata(), read_hepdata_csv(files[0])[0].data.to_numpy())
    np.testing.assert_array_equal(exp.get_xydata(), read_hepdata_csv(files[1])[0].data.to_numpy())
    assert (obs.get_linestyle(), exp.get_linestyle()) == (":", "-.")
    labels = [t.get_text() for t in plot.artists["legend"].get_texts()]
    assert labels[2:4] == ["ATLAS obs.", "ATLAS exp."]
    default = plot_exclusion(_grid(), "m1", "m2", overlay=files)
    labels = [t.get_text() for t in default.artists["legend"].get_texts()]
    assert labels[2:4] == ["Observed Limit 3LeRJR (published)", "Expected Limit 3LeRJR (published)"]
    with pytest.raises(ContourError, match="1 overlay label"):
        plot_exclusion(_grid(), "m1", "m2", overlay=files, overlay_label=["one"])


def test_extraction_options_are_refused_with_contours():
    contours = exclusion_contour(_grid(), "m1", "m2")
    with pytest.raises(ContourError, match="forbidden, where cannot be applied"):
        plot_exclusion(contours, forbidden="m2 >= m1", where="m1 > 0")
    with pytest.raises(ContourError, match="not m1-m3"):
        plot_exclusion(contours, "m1", "m3")
    assert plot_exclusion(contours, "m1", "m2", level=0.05).contours is contours
