"""What the plots draw, artist by artist: label block, theory lines, contours closed onto
the boundary, the forbidden region over the whole axes, best-expected markers, overlay
checks, smoothing, and the Brazil plot's export, title and y range."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from scipy.stats import norm

import recast
from cli import main
from recast.contour import (
    contour_distance,
    exclusion_contour,
    export_contours,
    find_crossings,
    plot_brazil,
    plot_exclusion,
    read_hepdata_csv,
)

Z95 = 1.6448536269514722


def _grid(seed: int = 3, noise: float = 0.05, step: float = 100.0) -> pd.DataFrame:
    """Triangular plane m2 < m1 (diagonal rows at m2 = m1 - step), exclusion to m1 ~ 800."""
    rng = np.random.default_rng(seed)
    m1, m2 = np.meshgrid(np.arange(200.0, 1101.0, step), np.arange(0.0, 901.0, step))
    m1, m2 = m1.ravel(), m2.ravel()
    keep = m2 < m1
    m1, m2 = m1[keep], m2[keep]
    z = Z95 + (900.0 - m1 - 0.5 * m2) / 120.0 + rng.normal(0.0, noise, m1.size)
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
            # a cross-section 10% higher / lower: Z moves by +-0.3 here
            "cls_obs_up": norm.sf(z + 0.1),
            "cls_obs_down": norm.sf(z - 0.5),
            "status": "ok",
        }
    )


def test_label_block_text_and_options():
    plot = plot_exclusion(
        _grid(), "m1", "m2", forbidden="m2 >= m1", analysis="ATLAS-SUSY-2018-31",
        sqrt_s=13.0, lumi=139.0,
    )  # fmt: skip
    text = plot.artists["label_block"].txt.get_text().splitlines()
    assert text == [
        "ATLAS-SUSY-2018-31",
        r"$\sqrt{s}$ = 13 TeV, 139 fb$^{-1}$",
        "All limits at 95% CL",
    ]
    # another level, no analysis, no energy: only the CL line
    plot = plot_exclusion(_grid(), "m1", "m2", level=0.1)
    assert plot.artists["label_block"].txt.get_text() == "All limits at 90% CL"
    assert "label_block" not in plot_exclusion(_grid(), "m1", "m2", label_block=False).artists


def test_theory_lines_are_dotted_and_ordered():
    plot = plot_exclusion(_grid(), "m1", "m2", forbidden="m2 >= m1")
    art, curves = plot.artists, plot.contours.curves
    reach = {}
    for name in ("observed_up", "observed_down"):
        (line,) = art[name]
        assert isinstance(line, Line2D) and line.get_linestyle() == ":"
        assert line.get_color() == art["observed"][0].get_color()
        np.testing.assert_array_equal(line.get_xydata(), curves[name][0])
    for name in ("observed_up", "observed", "observed_down"):
        # where the line meets the m2 = 0 edge
        xy = curves[name][0]
        reach[name] = xy[np.argmin(xy[:, 1]), 0]
    # a larger cross-section excludes further; Z shifts of +0.3 / -0.3 are 36 GeV in m1
    assert reach["observed_down"] < reach["observed"] < reach["observed_up"]
    assert reach["observed_up"] - reach["observed"] == pytest.approx(36.0, abs=6.0)
    labels = [t.get_text() for t in art["legend"].get_texts()]
    assert "theory" in labels[0]
    # without the columns there are no theory lines
    plain = plot_exclusion(_grid().drop(columns=["cls_obs_up", "cls_obs_down"]), "m1", "m2")
    assert (
        "observed_up" not in plain.artists
        and "theory" not in plain.artists["legend"].get_texts()[0].get_text()
    )


@pytest.mark.parametrize("name", ["observed", "expected", "observed_up", "expected_p1"])
def test_contours_close_onto_the_grid_edge_and_the_kinematic_boundary(name):
    grid = _grid()
    contours = exclusion_contour(grid, "m1", "m2", forbidden="m2 >= m1")
    (piece,) = contours.curves[name]
    start, end = piece[np.argmin(piece[:, 1])], piece[np.argmax(piece[:, 1])]
    cell = 900.0 / 299
    # one end on the bottom edge of the grid, the other on the diagonal m2 = m1 (the
    # points stop at m2 = m1 - 100: the line runs on beyond them)
    assert start[1] == pytest.approx(contours.y_range[0], abs=1e-9)
    assert end[0] - end[1] < 2 * cell
    # without extension the same curve stops at the outermost points, 100 GeV short
    (short,) = exclusion_contour(grid, "m1", "m2", forbidden="m2 >= m1", extend=False).curves[name]
    top = short[np.argmax(short[:, 1])]
    assert top[0] - top[1] > 90.0


def test_forbidden_region_covers_the_whole_axes_along_its_exact_boundary():
    plot = plot_exclusion(_grid(), "m1", "m2", forbidden="m2 >= m1")
    xlim, ylim = plot.ax.get_xlim(), plot.ax.get_ylim()
    vertices = np.vstack([p.get_path().vertices for p in plot.artists["forbidden"]])
    # from the left edge of the axes to their top, beyond the points' bounding box
    assert vertices[:, 0].min() == pytest.approx(xlim[0])
    assert vertices[:, 1].max() == pytest.approx(ylim[1])
    assert vertices[:, 1].max() > plot.contours.y_range[1] + 100.0
    # every vertex is in the region (m2 >= m1), up to round-off
    assert (vertices[:, 1] - vertices[:, 0] >= -1e-9 * 900).all()
    # the edge is the straight line m2 = m1, not a staircase of grid cells
    (edge,) = plot.artists["forbidden_edge"]
    xy = edge.get_xydata()
    np.testing.assert_allclose(xy[:, 1], xy[:, 0], atol=1e-9 * 900)
    assert xy[:, 0].min() <= max(xlim[0], ylim[0]) + 1e-6
    assert xy[:, 1].max() >= min(xlim[1], ylim[1]) - 1e-6
    # an expression that is not one comparison: the truth value on a fine grid
    other = plot_exclusion(_grid(), "m1", "m2", forbidden="(m2 >= m1) | (m1 > 1090)")
    v2 = np.vstack([p.get_path().vertices for p in other.artists["forbidden"]])
    assert v2[:, 0].max() == pytest.approx(other.ax.get_xlim()[1])


def test_best_expected_region_marked_per_point():
    a, b = _grid(), _grid(seed=4)
    b["cls_exp"] = np.where(b["m1"] > 600, b["cls_exp"] * 0.5, b["cls_exp"] * 2.0)
    both = pd.concat([a.assign(region="SR_A"), b.assign(region="SR_B")], ignore_index=True)
    best = recast.best_expected(both)
    plot = plot_exclusion(best, "m1", "m2", forbidden="m2 >= m1")
    scatters = plot.artists["points"]
    assert len(scatters) == 2 and all(isinstance(s, PathCollection) for s in scatters)
    n = best["region"].value_counts()
    assert [len(s.get_offsets()) for s in scatters] == [n["SR_A"], n["SR_B"]]
    # the markers differ, and the legend says which is which
    assert scatters[0].get_paths()[0] != scatters[1].get_paths()[0]
    labels = [t.get_text() for t in plot.artists["legend"].get_texts()]
    assert f"best expected: SR_A ({n['SR_A']})" in labels
    assert f"best expected: SR_B ({n['SR_B']})" in labels
    b_points = best.loc[best["region"] == "SR_B", ["m1", "m2"]].to_numpy()
    np.testing.assert_array_equal(np.asarray(scatters[1].get_offsets()), b_points)


def test_overlay_that_does_not_fit_the_axes_warns(tmp_path, caplog):
    grid = _grid()
    contours = exclusion_contour(grid, "m1", "m2", forbidden="m2 >= m1")
    good = export_contours(contours, tmp_path / "good.csv")
    (table, *_) = read_hepdata_csv(good)
    # the same curve with its columns swapped, as a HEPData table would be for y-x axes
    swapped = tmp_path / "swapped.csv"
    xy = table.data.to_numpy(float)
    swapped.write_text("m2 [GeV],m1 [GeV]\n" + "".join(f"{b:.10g},{a:.10g}\n" for a, b in xy))
    far = tmp_path / "far.csv"  # another plane: values far outside the axes
    far.write_text("m1,m2\n" + "".join(f"{10 * a:.10g},{10 * b + 5000:.10g}\n" for a, b in xy))
    with caplog.at_level(logging.WARNING):
        plot_exclusion(contours, overlay=good)
    assert "overlay" not in caplog.text
    with caplog.at_level(logging.WARNING):
        plot_exclusion(contours, overlay=swapped)
    assert "overlay" in caplog.text and "axes swapped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plot_exclusion(contours, overlay=far)
    assert "0% of its points lie on the plot's axes" in caplog.text
    # a fitting HEPData table names the axes (generic columns m1, m2), unit included
    named = tmp_path / "named.csv"
    named.write_text(
        "$m(\\tilde{t}_1)$ [GeV],$m(\\tilde{\\chi}^0_1)$ [GeV]\n"
        + "".join(f"{a:.10g},{b:.10g}\n" for a, b in xy)
    )
    plot = plot_exclusion(contours, overlay=named)
    assert plot.ax.get_xlabel() == r"$m(\tilde{t}_1)$ [GeV]"
    assert plot.ax.get_ylabel() == r"$m(\tilde{\chi}^0_1)$ [GeV]"
    assert plot_exclusion(contours, overlay=named, unit="TeV").ax.get_xlabel() == "m1 [TeV]"


def test_smoothing_keeps_the_contour_on_the_points():
    # noiseless plane: smoothing must not move the contour (the truth is m1 = 900 - m2/2
    # - 120 * 0.2 for the observed curve); noisy plane: it brings it closer to the truth
    def distance(grid, smoothing):
        c = exclusion_contour(grid, "m1", "m2", rbf_smoothing=smoothing, extend=False)
        (obs,) = c.curves["observed"]
        truth = 900.0 - 24.0 - 0.5 * obs[:, 1]
        return float(np.abs(obs[:, 0] - truth).mean())

    clean = _grid(noise=0.0)
    assert distance(clean, 0.0) < 0.5
    # measured 3.1 GeV: 3% of the grid spacing of 100 GeV
    assert distance(clean, 1.0) < 5.0
    for seed in (5, 6, 7):
        noisy = _grid(seed=seed, noise=0.4)
        # measured 12 vs 22, 18 vs 47, 13 vs 26 GeV
        assert distance(noisy, 1.0) < 0.7 * distance(noisy, 0.0)


def test_particle_labels_and_units_by_default():
    grid = _grid().rename(columns={"m1": "m_sbottom", "m2": "m_N1"})
    plot = plot_exclusion(grid, "m_sbottom", "m_N1", labels={"m_N1": "LSP mass"})
    assert plot.ax.get_xlabel() == r"$m(\tilde{b}_1)$ [GeV]"
    assert plot.ax.get_ylabel() == "LSP mass [GeV]"
    plot = plot_exclusion(grid, "m_sbottom", "m_N1", xlabel="m(sb) [TeV]", unit="GeV")
    assert plot.ax.get_xlabel() == "m(sb) [TeV]"  # an explicit unit is kept


def test_brazil_title_names_the_slice_and_y_range_clips_nothing():
    grid = _grid()
    grid.loc[grid["m1"] == 200, "cls_obs"] = 1e-14  # far below the usual 1e-8 floor
    plot = plot_brazil(grid, "m1", where="m2 == 100")
    assert plot.ax.get_title() == "CLs along m1, m2 == 100"
    y = plot.artists["observed"].get_ydata()
    lo, hi = plot.ax.get_ylim()
    assert lo < y.min() and y.max() < hi
    assert y.min() == pytest.approx(1e-14)
    titled = plot_brazil(grid, "m1", where="m2 == 100", title="toy", analysis="A", lumi=139)
    assert titled.ax.get_title() == "toy (m2 == 100)"
    block = titled.artists["label_block"].txt.get_text().splitlines()
    assert block == ["A", "139 fb$^{-1}$", "All limits at 95% CL"]
    assert (
        "label_block" not in plot_brazil(grid, "m1", where="m2 == 100", label_block=False).artists
    )


def test_cli_brazil_export_round_trips(tmp_path):
    grid = _grid()
    results = tmp_path / "results.csv"
    grid.to_csv(results, index=False)
    out = tmp_path / "brazil.csv"
    run = CliRunner().invoke(
        main,
        ["contour", str(results), "-x", "m1", "--where", "m2 == 100", "--export", str(out),
         "-o", str(tmp_path / "brazil.png")],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    (table,) = read_hepdata_csv(out)
    row = grid[grid["m2"] == 100].sort_values("m1")
    np.testing.assert_array_equal(table.data["m1"], row["m1"])
    np.testing.assert_array_equal(table.data["cls_obs"], row["cls_obs"])
    crossings = find_crossings(grid, "m1", where="m2 == 100")
    got = [float(v) for v in table.header["crossing observed"].split()]
    np.testing.assert_allclose(got, crossings["observed"], rtol=1e-15)
    assert table.header["where"] == "m2 == 100"


def test_cli_contour_options_reach_the_plot(tmp_path):
    grid = _grid()
    results = tmp_path / "results.csv"
    grid.to_csv(results, index=False)
    png = tmp_path / "x.png"
    run = CliRunner().invoke(
        main,
        ["contour", str(results), "-x", "m1", "-y", "m2", "--forbidden", "m2 >= m1",
         "--labels", "m1=$m(\\tilde{t}_1)$", "--analysis", "toy", "--sqrt-s", "13",
         "--lumi", "139", "--smoothing", "0.5", "-o", str(png), "--export", str(tmp_path / "c.csv")],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    curves = {t.header["curve"] for t in read_hepdata_csv(tmp_path / "c.csv")}
    assert {"observed", "observed_up", "observed_down", "expected"} <= curves


def _one_lbb(shared: Path) -> pd.DataFrame:
    """pyhf's CLs of the 125 1Lbb points as a scan table."""
    doc = json.loads((shared / "1Lbb" / "reference" / "pyhf-0.7.6_cls.json").read_text())
    band = ("cls_exp_m2", "cls_exp_m1", "cls_exp", "cls_exp_p1", "cls_exp_p2")
    rows = []
    for r in doc["results"]:
        m1, m2 = r["name"].split("_")[-2:]
        rows.append(
            {"m1": float(m1), "m2": float(m2), "cls_obs": r["CLs_obs"],
             **dict(zip(band, r["CLs_exp"], strict=True))}
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("extend", [True, False])
def test_no_spikes_in_the_band_along_the_1lbb_diagonal(shared_hepdata, extend):
    # every vertex of the filled +-1 sigma band lies on its two edges (the -1 and +1 sigma
    # contours), or on the grid edge, or on the kinematic limit m1 - m2 = m(h): anything
    # else is a spike.  Stopping at the outermost points (extend=False, the old default)
    # leaves slivers along the hull's jagged diagonal
    contours = exclusion_contour(
        _one_lbb(shared_hepdata), "m1", "m2", forbidden="m2 >= m1 - 125", extend=extend
    )
    plot = plot_exclusion(contours, points=False, label_block=False)
    v = np.vstack([p.get_path().vertices for p in plot.artists["band_1sigma"]])
    edges = contours.curves["expected_m1"] + contours.curves["expected_p1"]
    (x0, x1), (y0, y1) = contours.x_range, contours.y_range
    on_box = np.isclose(v[:, 0], x0) | np.isclose(v[:, 0], x1) | np.isclose(v[:, 1], y0)
    on_limit = (v[:, 1] - (v[:, 0] - 125.0)) / (y1 - y0) > -0.01
    free = v[~on_box & ~on_limit]
    gap = np.array(
        [contour_distance(p[None], edges, x_range=(x0, x1), y_range=(y0, y1)).max for p in free]
    )
    if extend:
        assert gap.max() < 1e-9  # measured 2e-16
    else:
        assert (gap > 0.01).sum() > 10  # measured 37 vertices up to 3.4% of the ranges
