"""Contour extraction against CLs surfaces whose CLs = 0.05 contour is known exactly.

Every surface is built in significance space, ``Z = Phi^-1(1 - CLs)``, and turned into CLs
with scipy's normal survival function, so the contour of the scan table is the analytic
curve ``Z = Phi^-1(0.95)``.  The points form irregular grids (jittered or uniformly
random), so the Delaunay triangulation is not aligned with anything.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import Delaunay
from scipy.stats import norm

from recast.contour import (
    CURVES,
    contour_distance,
    exclusion_contour,
    export_contours,
    find_crossings,
    read_hepdata_csv,
    read_results,
    significance,
)
from recast.errors import ContourError

Z95 = 1.6448536269514722  # Phi^-1(0.95), tabulated normal quantile


def _table(x: np.ndarray, y: np.ndarray, z: np.ndarray, *, band: float = 0.5) -> pd.DataFrame:
    """A scan table with observed = expected = Z and a band of +-band per sigma in Z."""
    cls = {
        "cls_obs": norm.sf(z),
        "cls_exp": norm.sf(z),
        "cls_exp_m1": norm.sf(z + band),
        "cls_exp_p1": norm.sf(z - band),
        "cls_exp_m2": norm.sf(z + 2 * band),
        "cls_exp_p2": norm.sf(z - 2 * band),
    }
    return pd.DataFrame(
        {
            "patch": [f"p{i}" for i in range(len(x))],
            "m1": x,
            "m2": y,
            **cls,
            "status": "ok",
        }
    )


def _jittered_grid(n: int, lo: float, hi: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """n x n grid over [lo, hi]^2 with interior points jittered by up to +-0.35 spacing."""
    rng = np.random.default_rng(seed)
    h = (hi - lo) / (n - 1)
    gx, gy = np.meshgrid(np.linspace(lo, hi, n), np.linspace(lo, hi, n))
    gx, gy = gx.ravel(), gy.ravel()
    interior = (gx > lo) & (gx < hi) & (gy > lo) & (gy < hi)
    gx[interior] += rng.uniform(-0.35, 0.35, interior.sum()) * h
    gy[interior] += rng.uniform(-0.35, 0.35, interior.sum()) * h
    return gx, gy, h


def _longest_crossed_edge(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Longest edge of the Delaunay triangles through which the contour Z = Zc passes."""
    tri = Delaunay(np.column_stack([x, y]))
    above = z[tri.simplices] > Z95  # (n_tri, 3)
    crossed = tri.simplices[above.any(axis=1) & ~above.all(axis=1)]
    pts = tri.points[crossed]  # (n_crossed, 3, 2)
    edges = pts - np.roll(pts, 1, axis=1)
    return float(np.sqrt((edges**2).sum(axis=-1)).max())


def test_significance_matches_normal_quantiles():
    # tabulated one-sided quantiles; 0 and 1 are clipped to +-z_max
    got = significance([0.5, 0.05, 0.1586552539314570, 0.0, 1.0, np.nan], z_max=5.0)
    assert got[:3] == pytest.approx([0.0, Z95, 1.0], abs=1e-12)
    assert got[3] == 5.0 and got[4] == -5.0
    assert np.isnan(got[5])
    with pytest.raises(ContourError, match="z_max"):
        significance([0.1], z_max=0.0)


@pytest.mark.parametrize(
    ("method", "options"),
    [("linear", {}), ("rbf", {}), ("rbf", {"rbf_neighbors": 20})],
)
def test_linear_surface_gives_the_exact_line(method, options):
    # Z linear in (x, y): Delaunay-linear interpolation and the thin-plate spline (whose
    # polynomial part is linear) both reproduce it exactly, so the contour is the line
    # 0.8 (x - 500) + 0.6 (y - 300) = 0 up to round-off.
    rng = np.random.default_rng(1)
    x = np.concatenate([[100, 900, 100, 900], rng.uniform(100, 900, 150)])
    y = np.concatenate([[100, 100, 700, 700], rng.uniform(100, 700, 150)])
    z = Z95 + (0.8 * (x - 500) + 0.6 * (y - 300)) / 250.0
    contours = exclusion_contour(_table(x, y, z), "m1", "m2", method=method, **options)
    assert set(contours.curves) == set(CURVES[:6])  # no theory-band columns in the table
    (line,) = contours.curves["observed"]
    residual = 0.8 * (line[:, 0] - 500) + 0.6 * (line[:, 1] - 300)  # distance from the line
    tol = 1e-9 if method == "linear" else 1e-5 * 800
    assert np.abs(residual).max() < tol
    # the curve spans the whole box: it starts and ends on the box edges
    ends = line[[0, -1]]
    on_edge = np.isclose(ends[:, 0], 100) | np.isclose(ends[:, 0], 900)
    on_edge |= np.isclose(ends[:, 1], 100) | np.isclose(ends[:, 1], 700)
    assert on_edge.all()
    # Z_m1 = Z + 0.5: the -1 sigma curve excludes more, 0.5 * 250 = 125 GeV further into
    # the allowed side; the +1 sigma curve 125 GeV less far
    (m1,) = contours.curves["expected_m1"]
    (p1,) = contours.curves["expected_p1"]
    assert 0.8 * (m1[:, 0] - 500) + 0.6 * (m1[:, 1] - 300) == pytest.approx(-125.0, abs=1e-3)
    assert 0.8 * (p1[:, 0] - 500) + 0.6 * (p1[:, 1] - 300) == pytest.approx(125.0, abs=1e-3)


@pytest.mark.parametrize("method", ["linear", "rbf"])
def test_circle_within_tolerance_from_grid_spacing(method):
    # Z = Zc + k (R^2 - r^2) / (2R): the contour is the circle r = R; |grad Z| = k on it and
    # the Hessian is -k/R. Linear interpolation over a triangle of longest edge L errs by at
    # most L^2/2 * k/R in Z (second-order Taylor bound), i.e. L^2 / (2R) in position, with L
    # over the triangles the circle crosses; the regular output grid adds
    # (cell diagonal)^2 / (2R).  The thin-plate spline must do at least as well.
    cx, cy, radius, k = 600.0, 500.0, 250.0, 1.0 / 100.0
    x, y, h = _jittered_grid(15, 200.0, 1000.0, seed=7)
    z = Z95 + k * (radius**2 - (x - cx) ** 2 - (y - cy) ** 2) / (2 * radius)
    contours = exclusion_contour(_table(x, y, z), "m1", "m2", method=method, resolution=400)
    (circle,) = contours.curves["observed"]
    assert np.allclose(circle[0], circle[-1])  # closed: it lies inside the box
    r = np.hypot(circle[:, 0] - cx, circle[:, 1] - cy)
    longest = _longest_crossed_edge(x, y, z)
    cell = 800.0 / 399 * np.sqrt(2)
    tol = (longest**2 + cell**2) / (2 * radius)
    assert 1.2 * h < longest < 2.0 * h  # the grid really is irregular
    assert tol < 0.1 * radius  # a bound that means something (~0.08 R here)
    assert np.abs(r - radius).max() < tol, (np.abs(r - radius).max(), tol)
    # and it goes all the way round
    angles = np.sort(np.arctan2(circle[:, 1] - cy, circle[:, 0] - cx))
    assert np.diff(angles).max() < 0.2


def test_rbf_is_more_accurate_than_linear_on_a_smooth_surface():
    cx, cy, radius, k = 600.0, 500.0, 250.0, 1.0 / 100.0
    x, y, _ = _jittered_grid(12, 200.0, 1000.0, seed=3)
    z = Z95 + k * (radius**2 - (x - cx) ** 2 - (y - cy) ** 2) / (2 * radius)
    err = {}
    for method in ("linear", "rbf"):
        (c,) = exclusion_contour(_table(x, y, z), "m1", "m2", method=method).curves["observed"]
        err[method] = np.abs(np.hypot(c[:, 0] - cx, c[:, 1] - cy) - radius).max()
    assert err["rbf"] < err["linear"]


def test_log_axes_interpolate_in_log_space():
    # Z linear in log10(x) and y: with logx the contour is exactly log10(x) = 2 + y / 500
    rng = np.random.default_rng(5)
    lx = np.concatenate([[1, 3, 1, 3], rng.uniform(1, 3, 120)])
    y = np.concatenate([[0, 0, 800, 800], rng.uniform(0, 800, 120)])
    z = Z95 + 2.0 * (lx - 2.0 - y / 500.0)
    table = _table(10**lx, y, z)
    (curve,) = exclusion_contour(table, "m1", "m2", logx=True).curves["observed"]
    assert np.abs(np.log10(curve[:, 0]) - 2.0 - curve[:, 1] / 500.0).max() < 1e-9
    # interpolating linearly in x instead bends the line between the points
    (lin,) = exclusion_contour(table, "m1", "m2").curves["observed"]
    assert np.abs(np.log10(lin[:, 0]) - 2.0 - lin[:, 1] / 500.0).max() > 1e-3
    with pytest.raises(ContourError, match="log axis"):
        exclusion_contour(table.assign(m2=table.m2 - 1.0), "m1", "m2", logy=True)


def test_forbidden_region_is_masked_and_its_points_dropped(caplog):
    x, y, _ = _jittered_grid(12, 100.0, 1000.0, seed=11)
    z = Z95 + (700.0 - x) / 150.0  # excluded for x < 700
    table = _table(x, y, z)
    forbidden = y >= x
    table.loc[forbidden, ["cls_obs", "cls_exp"]] = 1.0  # garbage there must not matter
    with caplog.at_level(logging.WARNING, logger="recast.contour"):
        contours = exclusion_contour(table, "m1", "m2", forbidden="m2 >= m1", method="linear")
    assert f"excluding {int(forbidden.sum())} points inside the forbidden region" in caplog.text
    (line,) = contours.curves["observed"]
    cell = 900.0 / 299
    # exact inside the hull of the points; beyond it (between the outermost points and the
    # diagonal) the significance is carried over from the nearest node: within a cell
    ix = np.abs(contours.grid_x[None, :] - line[:, :1]).argmin(axis=1)
    iy = np.abs(contours.grid_y[None, :] - line[:, 1:]).argmin(axis=1)
    assert contours.extrapolated is not None
    outside = contours.extrapolated[iy, ix]
    assert outside.any() and not outside.all()
    assert np.abs(line[~outside, 0] - 700.0).max() < 1e-9
    assert np.abs(line[:, 0] - 700.0).max() < cell
    assert (line[:, 1] < line[:, 0] + 2 * cell).all()
    assert line[:, 1].max() > 700.0 - 2 * cell  # runs on to the forbidden edge
    assert contours.forbidden is not None
    gx, gy = np.meshgrid(contours.grid_x, contours.grid_y)
    assert np.array_equal(contours.forbidden, gy >= gx)
    assert np.isnan(contours.significance["observed"][contours.forbidden]).all()
    with pytest.raises(ContourError, match="cannot evaluate forbidden='m3 > m1'"):
        exclusion_contour(table, "m1", "m2", forbidden="m3 > m1")
    with pytest.raises(ContourError, match="one True/False per point"):
        exclusion_contour(table, "m1", "m2", forbidden="m1 + m2")


def test_clipped_cls_zero_and_one_give_a_finite_contour():
    # CLs exactly 0 (underflow) left, exactly 1 (mu_hat >= mu) right: Z clipped to +-5,
    # so the contour sits where the clipped linear ramp crosses Zc
    x, y, _ = _jittered_grid(10, 0.0, 100.0, seed=2)
    table = _table(x, y, np.zeros_like(x))
    table["cls_obs"] = np.where(x < 40, 0.0, np.where(x > 60, 1.0, 0.5))
    contours = exclusion_contour(table, "m1", "m2")
    (line,) = contours.curves["observed"]
    assert np.isfinite(line).all()
    assert 20.0 < line[:, 0].min() and line[:, 0].max() < 60.0
    z = contours.significance["observed"]
    assert np.nanmax(z) == pytest.approx(5.0) and np.nanmin(z) == pytest.approx(-5.0)


def test_status_and_nan_rows_are_excluded_with_a_warning(caplog):
    x, y, _ = _jittered_grid(8, 0.0, 100.0, seed=4)
    table = _table(x, y, Z95 + (50.0 - x) / 20.0)
    table.loc[3, "status"] = "fit_failed"
    table.loc[3, "cls_obs"] = 1e-9  # a failed point must not pull the contour
    table.loc[5, "status"] = "no_signal"
    table.loc[9, "cls_exp"] = np.nan
    with caplog.at_level(logging.WARNING, logger="recast.contour"):
        contours = exclusion_contour(table, "m1", "m2")
    assert (
        "excluding 2 of 64 points whose status is not 'ok' (fit_failed: 1, no_signal: 1)"
        in caplog.text
    )
    assert "excluding 1 of 64 points with a NaN label or CLs value" in caplog.text
    assert len(contours.points) == 61
    assert not {3, 5, 9} & set(contours.points.index)


def test_level_changes_the_contour():
    x, y, _ = _jittered_grid(10, 0.0, 100.0, seed=6)
    table = _table(x, y, 3.0 - x / 25.0)  # Z = 3 - x/25
    for level in (0.05, 0.01, 0.32):
        (line,) = exclusion_contour(table, "m1", "m2", level=level).curves["observed"]
        assert line[:, 0] == pytest.approx(25.0 * (3.0 - norm.isf(level)), abs=1e-9)


def test_missing_band_columns_give_only_the_curves_present():
    x, y, _ = _jittered_grid(6, 0.0, 10.0, seed=1)
    table = _table(x, y, Z95 + 5.0 - x).drop(columns=["cls_exp_m2", "cls_exp_p2"])
    contours = exclusion_contour(table, "m1", "m2")
    assert set(contours.curves) == {"observed", "expected", "expected_m1", "expected_p1"}


def test_entirely_excluded_grid_has_no_curve(caplog):
    x, y, _ = _jittered_grid(6, 0.0, 10.0, seed=1)
    with caplog.at_level(logging.WARNING, logger="recast.contour"):
        contours = exclusion_contour(_table(x, y, np.full_like(x, 4.0)), "m1", "m2")
    assert contours.curves["observed"] == [] and contours.curves["expected"] == []
    assert "entirely excluded or entirely allowed" in caplog.text


@pytest.mark.parametrize(
    ("mutate", "kwargs", "match"),
    [
        (lambda t: t, {"x": "m3"}, r"column\(s\) \['m3'\] not in the results"),
        (lambda t: t, {"method": "cubic"}, "method must be one of"),
        (lambda t: t, {"level": 1.5}, "level must be a CLs value"),
        (lambda t: t, {"y": "m1"}, "two different columns"),
        (lambda t: t.drop(columns="cls_exp"), {}, r"no column\(s\) \['cls_exp'\]"),
        (lambda t: t.head(2), {}, "only 2 usable point"),
        (lambda t: t.assign(m1=np.arange(len(t)), m2=5.0), {}, "every point has m2 = 5.0"),
        (
            lambda t: t.assign(m1=np.arange(len(t)), m2=2.0 * np.arange(len(t))),
            {},
            "cannot be triangulated",
        ),
        (
            lambda t: pd.concat([t, t.head(1)]),
            {},
            r"2 of 26 rows repeat a m1 / m2 value \(e.g. \{'m1': 0.0, 'm2': 0.0\} appears 2",
        ),
        (
            lambda t: pd.concat([t.assign(region="A"), t.assign(region="B")]),
            {},
            r"best_expected",
        ),
        (lambda t: t.assign(cls_obs=t.cls_obs * 3.0), {}, r"outside \[0, 1\]"),
        (lambda t: t.assign(m1="heavy"), {}, "'m1' of the results is not numeric"),
        (lambda t: t, {"where": "m1 > 1e9"}, "selects no row"),
        (lambda t: t, {"where": "m1 >>> 3"}, "cannot apply where="),
        (lambda t: t, {"resolution": 3}, "resolution must be"),
        (lambda t: t, {"method": "rbf", "rbf_kernel": "nope"}, "RBF interpolation failed"),
    ],
)
def test_bad_input_raises_contour_error(mutate, kwargs, match):
    x, y, _ = _jittered_grid(5, 0.0, 10.0, seed=1)
    table = mutate(_table(x, y, Z95 + 5.0 - x))
    args = {"x": "m1", "y": "m2", **kwargs}
    with pytest.raises(ContourError, match=match):
        exclusion_contour(table, args.pop("x"), args.pop("y"), **args)


def test_out_of_range_cls_error_names_the_patch():
    x, y, _ = _jittered_grid(5, 0.0, 10.0, seed=1)
    table = _table(x, y, Z95 + 5.0 - x)
    table.loc[7, "cls_exp"] = -0.2
    with pytest.raises(ContourError, match=r"-0\.2 at row 7 \(patch 'p7'\)"):
        exclusion_contour(table, "m1", "m2")
    # round-off just outside [0, 1] is accepted and clipped
    table.loc[7, "cls_exp"] = 1.0 + 1e-12
    table.loc[8, "cls_exp"] = -1e-12
    contours = exclusion_contour(table, "m1", "m2")
    assert contours.points["cls_exp"].between(0.0, 1.0).all()
    with pytest.raises(ContourError, match="pandas DataFrame"):
        exclusion_contour(table.to_dict(), "m1", "m2")  # type: ignore[arg-type]


def test_where_selects_a_slice():
    x, y, _ = _jittered_grid(8, 0.0, 80.0, seed=9)
    a = _table(x, y, Z95 + (40.0 - x) / 10.0).assign(m3=60.0)
    b = _table(x, y, Z95 + (20.0 - x) / 10.0).assign(m3=1.0)
    both = pd.concat([a, b], ignore_index=True)
    (line,) = exclusion_contour(both, "m1", "m2", where="m3 == 60", method="linear").curves[
        "observed"
    ]
    assert line[:, 0] == pytest.approx(40.0, abs=1e-9)


# -- export -------------------------------------------------------------------------------


def _circle_contours():
    x, y, _ = _jittered_grid(10, 0.0, 100.0, seed=8)
    z = Z95 + (30.0**2 - (x - 50.0) ** 2 - (y - 50.0) ** 2) / 600.0
    return exclusion_contour(_table(x, y, z), "m1", "m2", resolution=60)


def test_export_csv_round_trips_through_the_hepdata_reader(tmp_path):
    contours = _circle_contours()
    path = export_contours(contours, tmp_path / "contour.csv")
    assert path == tmp_path / "contour.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contour.csv"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    path.chmod(0o640)
    export_contours(contours, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the replaced file's mode is kept
    tables = read_hepdata_csv(path)
    expected_pieces = [(n, p) for n in CURVES for p in contours.curves.get(n, [])]
    assert len(tables) == len(expected_pieces) == 6
    for table, (name, piece) in zip(tables, expected_pieces, strict=True):
        assert table.header["curve"] == name
        assert float(table.header["level"]) == 0.05
        assert list(table.data.columns) == ["m1", "m2"]
        np.testing.assert_array_equal(table.data.to_numpy(), piece)  # repr floats: exact
    assert tables[0].name == "Observed limit"
    assert "95% CL" in tables[0].header["description"]


def test_export_json_holds_every_curve(tmp_path):
    contours = _circle_contours()
    doc = json.loads(export_contours(contours, tmp_path / "c.json").read_text())
    assert (doc["level"], doc["x"], doc["y"], doc["confidence"]) == (0.05, "m1", "m2", "95% CL")
    names = [c["name"] for c in doc["curves"]]
    assert names == list(CURVES[:6])
    obs = doc["curves"][0]
    np.testing.assert_array_equal(
        np.column_stack([obs["x"], obs["y"]]), contours.curves["observed"][0]
    )
    with pytest.raises(ContourError, match=r"\.csv or \.json suffix"):
        export_contours(contours, tmp_path / "c.txt")
    with pytest.raises(ContourError, match="does not exist"):
        export_contours(contours, tmp_path / "missing" / "c.csv")


def test_read_results_csv_json_jsonl(tmp_path):
    x, y, _ = _jittered_grid(5, 0.0, 10.0, seed=1)
    table = _table(x, y, Z95 + 5.0 - x)
    table.loc[2, "cls_obs"] = np.nan
    table.to_csv(tmp_path / "r.csv", index=False)
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in table.to_dict(orient="records")
    ]
    (tmp_path / "r.json").write_text(json.dumps(records))
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name in ("r.csv", "r.json", "r.jsonl"):
        got = read_results(tmp_path / name)
        assert list(got.columns) == list(table.columns)
        assert np.isnan(got.loc[2, "cls_obs"])
        np.testing.assert_allclose(got["cls_exp"].to_numpy(float), table["cls_exp"].to_numpy())
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ContourError, match=r"bad\.jsonl:2: not a JSON object"):
        read_results(tmp_path / "bad.jsonl")
    with pytest.raises(ContourError, match="unknown results format '.txt'"):
        read_results(tmp_path / "r.txt")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ContourError, match="holds no result row"):
        read_results(tmp_path / "empty.json")


# -- crossings and distances ----------------------------------------------------------------


def test_crossings_of_an_analytic_one_dimensional_scan():
    # Z linear in x: the crossing is exact; the +-1 sigma curves are shifted by 0.5 / 0.004
    x = np.array([200.0, 350.0, 400.0, 610.0, 800.0, 1000.0])
    table = _table(x, np.zeros_like(x), Z95 + (600.0 - x) * 0.004)
    cross = find_crossings(table, "m1")
    assert cross["observed"] == pytest.approx([600.0], abs=1e-9)
    assert cross["expected_m1"] == pytest.approx([725.0], abs=1e-9)
    assert cross["expected_p1"] == pytest.approx([475.0], abs=1e-9)
    # a non-monotonic CLs curve crosses twice; a point exactly on the level counts once
    table2 = _table(x, np.zeros_like(x), Z95 + np.array([-1.0, 1.0, 0.0, -1.0, -1.0, -2.0]))
    assert find_crossings(table2, "m1")["observed"] == pytest.approx([275.0, 400.0])
    with pytest.raises(ContourError, match=r"m1 = 200.0 appears in 2 rows \(2 of 7 rows"):
        find_crossings(pd.concat([table, table.head(1)]), "m1")


def test_crossings_in_log_space():
    x = np.array([10.0, 100.0, 1000.0])
    table = _table(x, np.zeros_like(x), Z95 + (2.5 - np.log10(x)))
    assert find_crossings(table, "m1", logx=True)["observed"] == pytest.approx([10**2.5])
    assert find_crossings(table, "m1")["observed"] == pytest.approx([100.0 + 0.5 * 900.0])


def test_contour_distance_is_normalised_by_the_axis_ranges():
    reference = np.array([[0.0, 0.0], [100.0, 0.0]])
    curve = np.array([[50.0, 10.0], [50.0, 0.0], [150.0, 0.0]])
    d = contour_distance(curve, reference, x_range=(0.0, 100.0), y_range=(0.0, 1000.0))
    # (50, 10) is 10/1000 away; (150, 0) is 50/100 from the segment's end
    assert d.n == 3
    assert d.max == pytest.approx(0.5)
    assert d.mean == pytest.approx((0.01 + 0.0 + 0.5) / 3)
    assert d.median == pytest.approx(0.01)
    with pytest.raises(ContourError, match="empty"):
        contour_distance([], reference, x_range=(0, 1), y_range=(0, 1))


def test_input_table_is_not_modified():
    x, y, _ = _jittered_grid(6, 0.0, 10.0, seed=1)
    table = _table(x, y, Z95 + 5.0 - x)
    table.loc[0, "status"] = "fit_failed"
    before = table.copy()
    exclusion_contour(table, "m1", "m2", forbidden="m2 > 9", where="m1 >= 0")
    find_crossings(table[table.m2 == 0], "m1")
    pd.testing.assert_frame_equal(table, before)


def test_read_hepdata_csv_multi_table_file(shared_hepdata):
    path = shared_hepdata / "3L_eRJR" / "reference" / "HEPData-ins1771533-v1-csv" / "ResultsSR.csv"
    tables = read_hepdata_csv(path)
    assert len(tables) == 7
    # later blocks of one HEPData table repeat only qualifiers: they inherit its header
    assert {t.name for t in tables} == {"Results SR"}
    assert all(t.header["data_file"] == "Results_SR.yaml" for t in tables)
    first, expected = tables[0], tables[1]
    assert list(first.data.columns) == ["Signal channel", r"$N_\text{obs}$", "error +", "error -"]
    assert first.data[r"$N_\text{obs}$"].tolist() == [51.0, 30.0]
    assert first.data["error -"].isna().all() and first.data["error +"].isna().all()
    assert expected.data["error -"].tolist() == [-5.0, -2.1]
    assert first.data["Signal channel"].tolist() == [r"$\text{SR-low}$", r"$\text{SR-ISR}$"]
    bad = path.parent / "does-not-exist.csv"
    with pytest.raises(ContourError, match="cannot read the HEPData CSV"):
        read_hepdata_csv(bad)


def test_read_hepdata_csv_rejects_ragged_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("#: name: t\na,b\n1,2\n3\n")
    with pytest.raises(ContourError, match=r"t\.csv:4: 1 values but the table header has 2"):
        read_hepdata_csv(path)
    path.write_text("#: name: only a header\n")
    with pytest.raises(ContourError, match="holds no table"):
        read_hepdata_csv(path)
