"""Exclusion contours and plots from scan results.

The scan table (one row per signal point, columns ``cls_obs``, ``cls_exp_m2`` ...
``cls_exp_p2``, see :func:`recast.scan`) is turned into contour paths in the plane of two
label columns:

1. rows whose ``status`` is not ``"ok"`` or whose CLs is NaN are dropped (with a warning),
   as are points inside an optional kinematically forbidden region;
2. every CLs value becomes a significance ``Z = Phi^-1(1 - CLs)`` (the one-sided Gaussian
   quantile, Cowan et al., arXiv:1007.1727, eq. 1), clipped to ``[-z_max, z_max]`` because
   CLs = 1 (``mu_hat >= mu``) and CLs = 0 (underflow) have no finite significance.  The
   significance varies far more smoothly with the masses than CLs itself, which spans many
   decades;
3. both axes are mapped to ``[0, 1]`` (after ``log10`` for log axes) so that neither mass
   dominates the triangulation or the radial basis functions, and ``Z`` is interpolated on
   a regular grid, linearly on the Delaunay triangulation of the points
   (:class:`scipy.interpolate.LinearNDInterpolator`) or with radial basis functions
   (:class:`scipy.interpolate.RBFInterpolator`, thin-plate spline by default); nodes
   outside the convex hull of the points or in the forbidden region are masked;
4. the iso-line ``Z = Phi^-1(1 - level)`` is extracted with contourpy (the contour engine
   that ships with matplotlib), without drawing anything.

:func:`plot_exclusion` draws the result in the style of the ATLAS SUSY summary plots and
:func:`plot_brazil` draws CLs against one mass (a "Brazil" plot) with its crossing points.
Plots are drawn on :class:`matplotlib.figure.Figure` objects (never ``pyplot``), so no
global state is touched, and a file is written only when a path is given.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from recast._io import atomic_write
from recast.errors import ContourError, cli_worded

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CURVES",
    "CLS_COLUMNS",
    "Contours",
    "ExclusionPlot",
    "BrazilPlot",
    "HEPDataTable",
    "ContourDistance",
    "significance",
    "exclusion_contour",
    "export_contours",
    "find_crossings",
    "read_hepdata_csv",
    "read_results",
    "contour_distance",
    "plot_exclusion",
    "plot_brazil",
]

log = logging.getLogger(__name__)

#: curve name -> result column holding its CLs values (expected band ascending in CLs)
CLS_COLUMNS: dict[str, str] = {
    "observed": "cls_obs",
    "expected": "cls_exp",
    "expected_m1": "cls_exp_m1",
    "expected_p1": "cls_exp_p1",
    "expected_m2": "cls_exp_m2",
    "expected_p2": "cls_exp_p2",
}
#: every curve name, in the order used for export and plotting
CURVES: tuple[str, ...] = tuple(CLS_COLUMNS)

_METHODS = ("linear", "rbf")
_FORMATS = ("png", "pdf", "svg")
_CLS_SLACK = 1e-9


class Contours(NamedTuple):
    """Exclusion contours extracted from a grid of CLs values.

    Attributes
    ----------
    curves : dict[str, list[numpy.ndarray]]
        Curve name (``"observed"``, ``"expected"``, ``"expected_m1"``, ``"expected_p1"``,
        ``"expected_m2"``, ``"expected_p2"``) -> list of pieces, each an array of shape
        (N, 2) holding (x, y) in data units.  A curve may have several pieces, or none when
        nothing (or everything) in the grid is excluded; a curve whose CLs column is absent
        from the results has no entry.
    level : float
        The CLs value of the contour (0.05 for 95% CL).
    x, y : str
        The result columns on the two axes.
    method : str
        ``"linear"`` or ``"rbf"``.
    logx, logy : bool
        Whether each axis was interpolated in ``log10``.
    x_range, y_range : tuple[float, float]
        The span of the points used, in data units (the interpolation box).
    grid_x : numpy.ndarray, shape (nx,)
        Node positions of the interpolation grid along x, in data units.
    grid_y : numpy.ndarray, shape (ny,)
        Node positions along y.
    significance : dict[str, numpy.ndarray]
        Curve name -> interpolated significance ``Z`` on the grid, shape (ny, nx); NaN outside
        the convex hull of the points and in the forbidden region.
    forbidden : numpy.ndarray or None
        Boolean mask of shape (ny, nx), True where the ``forbidden`` expression holds; None
        when no expression was given.
    points : pandas.DataFrame
        The rows actually used (after the status, NaN and forbidden-region filters).
    """

    curves: dict[str, list[np.ndarray]]
    level: float
    x: str
    y: str
    method: str
    logx: bool
    logy: bool
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    grid_x: np.ndarray
    grid_y: np.ndarray
    significance: dict[str, np.ndarray]
    forbidden: np.ndarray | None
    points: pd.DataFrame


class ExclusionPlot(NamedTuple):
    """What :func:`plot_exclusion` drew.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
    artists : dict[str, Any]
        Role -> matplotlib artist(s): ``"observed"``, ``"expected"`` (lists of
        ``Line2D``, one per piece), ``"band_1sigma"``, ``"band_2sigma"`` (lists of
        ``PathPatch``), ``"points"`` (``PathCollection``), ``"colorbar"``, ``"forbidden"``,
        ``"overlay"`` (list of ``Line2D``), ``"legend"``.  Roles not drawn are absent.
    contours : Contours
        The contours that were drawn.
    """

    figure: Figure
    ax: Axes
    artists: dict[str, Any]
    contours: Contours


class BrazilPlot(NamedTuple):
    """What :func:`plot_brazil` drew.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
    artists : dict[str, Any]
        Role -> artist: ``"observed"``, ``"expected"``, ``"band_1sigma"``,
        ``"band_2sigma"``, ``"level"``, ``"crossings"``, ``"legend"``.
    crossings : dict[str, numpy.ndarray]
        Curve name -> x values, shape (k,), where the curve crosses the CLs level
        (see :func:`find_crossings`).
    """

    figure: Figure
    ax: Axes
    artists: dict[str, Any]
    crossings: dict[str, np.ndarray]


class HEPDataTable(NamedTuple):
    """One table of a HEPData CSV file.

    Attributes
    ----------
    name : str
        The ``#: name:`` header ("" when absent).
    header : dict[str, str]
        Every ``#:`` header line, key -> value.
    data : pandas.DataFrame
        The table, with the column names of the file; numeric columns are float.
    """

    name: str
    header: dict[str, str]
    data: pd.DataFrame


class ContourDistance(NamedTuple):
    """Distance from the vertices of one contour to another, in normalised axis units.

    Attributes
    ----------
    mean, median, max : float
        Statistics of the distance from every vertex to the nearest point of the other
        curve, each axis divided by its range (so 0.01 is 1% of the axis range).
    n : int
        Number of vertices measured.
    """

    mean: float
    median: float
    max: float
    n: int


# ---------------------------------------------------------------------------------------
# significance and input preparation
# ---------------------------------------------------------------------------------------


def significance(cls: Any, *, z_max: float = 5.0) -> np.ndarray:
    """Convert CLs values to a significance ``Z = Phi^-1(1 - CLs)``, clipped.

    Parameters
    ----------
    cls : array_like, shape (n,)
        CLs values in [0, 1].
    z_max : float
        ``Z`` is clipped to ``[-z_max, z_max]``: CLs = 0 and CLs = 1 have no finite
        significance (HistFitter clips the same way).

    Returns
    -------
    numpy.ndarray, shape (n,)
        NaN where the input is NaN.
    """
    from scipy.stats import norm

    values = np.asarray(cls, dtype=float)
    if not z_max > 0 or not math.isfinite(z_max):
        raise ContourError(f"z_max must be a finite positive number, got {z_max!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        z = norm.isf(values)
    return np.clip(z, -z_max, z_max)


def _level_significance(level: float) -> float:
    from scipy.stats import norm

    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ContourError(f"level must be a CLs value strictly between 0 and 1, got {level!r}")
    return float(norm.isf(float(level)))


def _select(
    results: pd.DataFrame,
    columns: Sequence[str],
    *,
    where: str | None,
    required: Sequence[str],
) -> tuple[pd.DataFrame, list[str]]:
    """Filter the results; return the usable rows and the CLs columns present."""
    if not isinstance(results, pd.DataFrame):
        raise ContourError(
            f"results must be a pandas DataFrame (the output of recast.scan), got "
            f"{type(results).__name__}; read a results file with pandas.read_csv first"
        )
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise ContourError(
            f"column(s) {missing} not in the results; available columns: "
            f"{sorted(map(str, results.columns))}"
        )
    frame = results
    if where:
        try:
            frame = frame.query(where, engine="python")
        except Exception as err:
            raise ContourError(
                f"cannot apply where={where!r} to the results ({type(err).__name__}: {err}); "
                f"write a pandas query over the columns {sorted(map(str, results.columns))}, "
                f'e.g. "m_N1 == 60"'
            ) from err
        if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
            raise ContourError(f"where={where!r} selects no row of the {len(results)} results")
    absent = [CLS_COLUMNS[c] for c in required if CLS_COLUMNS[c] not in frame.columns]
    if absent:
        raise ContourError(
            f"the results have no column(s) {absent}; they must hold the CLs columns of "
            f"recast.scan ({', '.join(CLS_COLUMNS.values())})"
        )
    present = [name for name in CURVES if CLS_COLUMNS[name] in frame.columns]
    n_total = len(frame)
    if "status" in frame.columns:
        bad = frame["status"].astype(str) != "ok"
        if bad.any():
            counts = frame.loc[bad, "status"].astype(str).value_counts().to_dict()
            log.warning(
                "excluding %s of %s points whose status is not 'ok' (%s)",
                int(bad.sum()),
                n_total,
                ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
            )
            frame = frame.loc[~bad]
    cls_cols = [CLS_COLUMNS[name] for name in present]
    numeric = {}
    for col in [*columns, *cls_cols]:
        try:
            numeric[col] = pd.to_numeric(frame[col], errors="raise").astype(float)
        except (ValueError, TypeError) as err:
            raise ContourError(
                f"column {col!r} of the results is not numeric ({err}); "
                "check the results file (a label column must hold masses)"
            ) from err
    clean = pd.DataFrame(numeric, index=frame.index)
    for extra in ("patch", "region"):
        if extra in frame.columns and extra not in clean.columns:
            clean[extra] = frame[extra]
    nan = clean[[*columns, *cls_cols]].isna().any(axis=1)
    if nan.any():
        log.warning(
            "excluding %s of %s points with a NaN label or CLs value", int(nan.sum()), n_total
        )
        clean = clean.loc[~nan]
    for col in cls_cols:
        # round-off may put a CLs a hair outside [0, 1]; more than that is an error
        out = (clean[col] < -_CLS_SLACK) | (clean[col] > 1.0 + _CLS_SLACK)
        if out.any():
            row = clean.index[np.flatnonzero(out.to_numpy())[0]]
            who = f" (patch {clean.at[row, 'patch']!r})" if "patch" in clean.columns else ""
            raise ContourError(
                f"column {col!r} holds {float(clean.at[row, col])!r} at row {row!r}{who}, outside "
                "[0, 1]: CLs is a probability; check that the column holds CLs values"
            )
        clean[col] = clean[col].clip(0.0, 1.0)
    return clean, present


def _forbidden_mask(frame: pd.DataFrame, expression: str, *, what: str) -> np.ndarray:
    """Evaluate a boolean expression over the columns of ``frame`` (pandas.eval, no eval)."""
    try:
        value = frame.eval(expression, engine="python")
    except Exception as err:
        raise ContourError(
            f"cannot evaluate forbidden={expression!r} on {what} "
            f"({type(err).__name__}: {err}); write a boolean pandas expression over the axis "
            f'columns {list(map(str, frame.columns))}, e.g. "{frame.columns[-1]} >= '
            f'{frame.columns[0]}"'
        ) from err
    mask = np.asarray(value)
    if mask.shape != (len(frame),) or mask.dtype != bool:
        raise ContourError(
            f"forbidden={expression!r} must give one True/False per point, got "
            f'{mask.dtype} of shape {mask.shape}; use a comparison such as "m2 >= m1"'
        )
    return mask


def _check_duplicates(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    dup = frame.duplicated(subset=list(columns), keep=False)
    if dup.any():
        first = {k: float(v) for k, v in frame.loc[dup, list(columns)].iloc[0].items()}
        times = int((frame[list(columns)] == pd.Series(first)).all(axis=1).sum())
        multi = "region" in frame.columns
        hint = (
            "the table holds several regions (column 'region'): take the best expected "
            "region per point with recast.best_expected(results) or select one with "
            "where=\"region == '...'\""
            if multi
            else 'select one slice of the other labels with where=..., e.g. where="m_N1 == 60"'
        )
        cli_hint = (
            "the table holds several regions (column 'region'): add --best-expected (the best "
            "expected region per point) or select one with --where \"region == '...'\""
            if multi
            else 'select one slice of the other labels with --where, e.g. --where "m_N1 == 60"'
        )
        text = (
            f"{int(dup.sum())} of {len(frame)} rows repeat a {' / '.join(columns)} value (e.g. "
            f"{first} appears {times} times): a contour needs one CLs value per point; "
        )
        raise cli_worded(ContourError(text + hint), text + cli_hint)


class _Axis(NamedTuple):
    lo: float
    hi: float
    log: bool

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        v = np.log10(values) if self.log else values
        lo, hi = (math.log10(self.lo), math.log10(self.hi)) if self.log else (self.lo, self.hi)
        return (v - lo) / (hi - lo)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        if self.log:
            lo, hi = math.log10(self.lo), math.log10(self.hi)
            return np.asarray(10.0 ** (lo + unit * (hi - lo)))
        return self.lo + unit * (self.hi - self.lo)


def _axis(values: np.ndarray, name: str, log_axis: bool) -> _Axis:
    if log_axis and np.any(values <= 0):
        bad = float(values[values <= 0][0])
        raise ContourError(
            f"log axis for {name!r} but it holds the value {bad!r} <= 0; drop --log for this "
            "axis or select positive values with where=..."
        )
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        text = f"every point has {name} = {lo!r}: a contour needs a 2-D grid; for a 1-D scan "
        raise cli_worded(
            ContourError(text + "draw CLs against the other label with plot_brazil"),
            text + "draw CLs against the other label: omit -y (a Brazil plot)",
        )
    return _Axis(lo, hi, log_axis)


def _resolution(resolution: int | tuple[int, int]) -> tuple[int, int]:
    nx, ny = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if not (isinstance(nx, int) and isinstance(ny, int) and nx >= 10 and ny >= 10):
        raise ContourError(
            f"resolution must be an integer >= 10 (or a pair of them), got {resolution!r}"
        )
    return nx, ny


# ---------------------------------------------------------------------------------------
# contour extraction
# ---------------------------------------------------------------------------------------


def exclusion_contour(
    results: pd.DataFrame,
    x: str,
    y: str,
    *,
    level: float = 0.05,
    method: str = "linear",
    logx: bool = False,
    logy: bool = False,
    forbidden: str | None = None,
    where: str | None = None,
    resolution: int | tuple[int, int] = 300,
    z_max: float = 5.0,
    rbf_kernel: str = "thin_plate_spline",
    rbf_smoothing: float = 0.0,
    rbf_neighbors: int | None = None,
) -> Contours:
    """Exclusion contours (observed, expected, expected +-1 and +-2 sigma) in the x-y plane.

    Parameters
    ----------
    results : pandas.DataFrame
        Scan results (:func:`recast.scan`): the columns ``x`` and ``y``, ``cls_obs`` and
        ``cls_exp`` (required), ``cls_exp_m2`` ... ``cls_exp_p2`` (optional), ``status``
        (optional).  One row per point; the points may form any irregular grid.
    x, y : str
        The label columns on the horizontal and vertical axis (e.g. ``"m_sbottom"``).
    level : float
        CLs value of the contour (0.05: 95% CL).
    method : {"linear", "rbf"}
        Linear interpolation on the Delaunay triangulation of the points, or radial basis
        functions (:class:`scipy.interpolate.RBFInterpolator`).
    logx, logy : bool
        Interpolate in ``log10`` of the axis (for masses spanning decades).
    forbidden : str, optional
        Boolean pandas expression over ``x`` and ``y``, e.g. ``"m_N2 >= m_sbottom"``;
        points and grid nodes where it holds are masked out (kinematically forbidden).
        Evaluated with :meth:`pandas.DataFrame.eval`, not Python ``eval``.
    where : str, optional
        A :meth:`pandas.DataFrame.query` selecting the rows to use, e.g. ``"m_N1 == 60"``.
    resolution : int or (int, int)
        Number of interpolation nodes along x and y.
    z_max : float
        Significances are clipped to ``[-z_max, z_max]`` before interpolating.
    rbf_kernel, rbf_smoothing, rbf_neighbors
        ``kernel``, ``smoothing`` and ``neighbors`` of
        :class:`scipy.interpolate.RBFInterpolator`.  The global RBF needs O(n^2) memory
        and O(n^3) time in the number of points n (about 0.3 s for 131 points, 10 s for
        3000); a local RBF over the ``rbf_neighbors`` nearest points (e.g. 50) needs far
        less memory and about half the time at 3000 points.

    Returns
    -------
    Contours

    Raises
    ------
    ContourError
        Unknown column, bad option, fewer than 3 usable points, points on a line, two rows
        for one point (several regions or slices: select first).
    """
    from scipy.interpolate import LinearNDInterpolator, RBFInterpolator
    from scipy.spatial import Delaunay, QhullError

    if method not in _METHODS:
        raise ContourError(f"method must be one of {_METHODS}, got {method!r}")
    if x == y:
        raise ContourError(f"x and y must be two different columns, got {x!r} twice")
    z_level = _level_significance(level)
    nx, ny = _resolution(resolution)
    frame, present = _select(results, [x, y], where=where, required=["observed", "expected"])
    if forbidden:
        inside = _forbidden_mask(frame[[x, y]], forbidden, what="the result points")
        if inside.any():
            log.warning(
                "excluding %s points inside the forbidden region %r", int(inside.sum()), forbidden
            )
            frame = frame.loc[~inside]
    _check_duplicates(frame, [x, y])
    if len(frame) < 3:
        raise ContourError(
            f"only {len(frame)} usable point(s) in the {x}-{y} plane: a contour needs at "
            "least 3 points that are not on one line"
        )
    xv = frame[x].to_numpy(float)
    yv = frame[y].to_numpy(float)
    ax_x, ax_y = _axis(xv, x, logx), _axis(yv, y, logy)
    pts = np.column_stack([ax_x.to_unit(xv), ax_y.to_unit(yv)])
    try:
        tri = Delaunay(pts)
    except QhullError as err:
        raise ContourError(
            f"the {len(pts)} points in the {x}-{y} plane cannot be triangulated (they lie on "
            f"one line?): {str(err).splitlines()[0]}"
        ) from err

    gu = np.linspace(0.0, 1.0, nx)
    gv = np.linspace(0.0, 1.0, ny)
    uu, vv = np.meshgrid(gu, gv)
    nodes = np.column_stack([uu.ravel(), vv.ravel()])
    valid = tri.find_simplex(nodes) >= 0
    grid_x = ax_x.from_unit(gu)
    grid_y = ax_y.from_unit(gv)
    # the grid ends exactly on the extreme points (avoid round-off outside the range)
    grid_x[0], grid_x[-1] = ax_x.lo, ax_x.hi
    grid_y[0], grid_y[-1] = ax_y.lo, ax_y.hi
    forbidden_grid: np.ndarray | None = None
    if forbidden:
        gx, gy = np.meshgrid(grid_x, grid_y)
        node_frame = pd.DataFrame({x: gx.ravel(), y: gy.ravel()})
        forbidden_grid = _forbidden_mask(node_frame, forbidden, what="the interpolation grid")
        valid &= ~forbidden_grid
        forbidden_grid = forbidden_grid.reshape(ny, nx)

    # one column of significances per curve, interpolated together: (n_points, n_curves)
    zs = np.column_stack(
        [significance(frame[CLS_COLUMNS[name]].to_numpy(float), z_max=z_max) for name in present]
    )
    at_nodes = np.full((nodes.shape[0], len(present)), np.nan)
    if method == "linear":
        at_nodes[valid] = LinearNDInterpolator(tri, zs)(nodes[valid])
    else:
        try:
            interp = RBFInterpolator(
                pts, zs, kernel=rbf_kernel, smoothing=rbf_smoothing, neighbors=rbf_neighbors
            )
            at_nodes[valid] = interp(nodes[valid])
        except (ValueError, np.linalg.LinAlgError) as err:
            raise ContourError(
                f"RBF interpolation failed with kernel={rbf_kernel!r}, "
                f"smoothing={rbf_smoothing!r}, neighbors={rbf_neighbors!r}: {err}; try "
                "method='linear' or another kernel "
                "(thin_plate_spline, cubic, quintic, linear)"
            ) from err
    surfaces: dict[str, np.ndarray] = {}
    curves: dict[str, list[np.ndarray]] = {}
    for k, name in enumerate(present):
        values = at_nodes[:, k]
        surface = values.reshape(ny, nx)
        surfaces[name] = surface
        curves[name] = [
            np.column_stack([ax_x.from_unit(p[:, 0]), ax_y.from_unit(p[:, 1])])
            for p in _iso_lines(gu, gv, surface, z_level)
        ]
        log.debug("%s: %s contour piece(s)", name, len(curves[name]))
    if not curves["observed"] and not curves["expected"]:
        log.warning(
            "no CLs = %s contour in the %s-%s plane: the grid is entirely excluded or entirely "
            "allowed (observed CLs from %.3g to %.3g)",
            level,
            x,
            y,
            float(frame["cls_obs"].min()),
            float(frame["cls_obs"].max()),
        )
    return Contours(
        curves=curves,
        level=float(level),
        x=x,
        y=y,
        method=method,
        logx=logx,
        logy=logy,
        x_range=(ax_x.lo, ax_x.hi),
        y_range=(ax_y.lo, ax_y.hi),
        grid_x=grid_x,
        grid_y=grid_y,
        significance=surfaces,
        forbidden=forbidden_grid,
        points=frame,
    )


def _iso_lines(gu: np.ndarray, gv: np.ndarray, surface: np.ndarray, z: float) -> list[np.ndarray]:
    """Iso-lines of ``surface`` (ny, nx) at ``z``, in unit coordinates, longest first."""
    import contourpy

    if not np.isfinite(surface).any():
        return []
    gen = contourpy.contour_generator(
        gu, gv, np.ma.masked_invalid(surface), name="serial", line_type="Separate"
    )
    pieces = [np.asarray(p, dtype=float) for p in gen.lines(z) if len(p) >= 2]
    pieces.sort(key=lambda p: -float(np.sum(np.hypot(*np.diff(p, axis=0).T))))
    return pieces


def _filled(
    gu: np.ndarray, gv: np.ndarray, surface: np.ndarray, lower: float, upper: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Filled polygons of ``lower <= surface <= upper`` as (points (N, 2), path codes (N,))."""
    import contourpy

    if not np.isfinite(surface).any():
        return []
    gen = contourpy.contour_generator(
        gu, gv, np.ma.masked_invalid(surface), name="serial", fill_type="OuterCode"
    )
    filled: Any = gen.filled(lower, upper)  # OuterCode: (list of points, list of codes)
    points, codes = filled
    return [(np.asarray(p, float), np.asarray(c)) for p, c in zip(points, codes, strict=True)]


def _unit_grid(contours: Contours) -> tuple[np.ndarray, np.ndarray, _Axis, _Axis]:
    ax_x = _Axis(*contours.x_range, contours.logx)
    ax_y = _Axis(*contours.y_range, contours.logy)
    return (
        np.linspace(0.0, 1.0, len(contours.grid_x)),
        np.linspace(0.0, 1.0, len(contours.grid_y)),
        ax_x,
        ax_y,
    )


# ---------------------------------------------------------------------------------------
# export and HEPData tables
# ---------------------------------------------------------------------------------------


def _confidence(level: float) -> str:
    return f"{100.0 * (1.0 - level):g}% CL"


_DESCRIPTIONS = {
    "observed": "Observed",
    "expected": "Expected",
    "expected_m1": "Expected -1 sigma",
    "expected_p1": "Expected +1 sigma",
    "expected_m2": "Expected -2 sigma",
    "expected_p2": "Expected +2 sigma",
}


def _pieces(contours: Contours) -> list[tuple[str, int, int, np.ndarray]]:
    out = []
    for name in CURVES:
        pieces = contours.curves.get(name, [])
        out += [(name, i, len(pieces), p) for i, p in enumerate(pieces, start=1)]
    return out


def _write_file(path: Path, write: Any) -> None:
    if not path.parent.is_dir():
        raise ContourError(f"cannot write {path}: the folder {path.parent} does not exist")
    try:
        atomic_write(path, write)
    except OSError as err:
        raise ContourError(f"cannot write {path}: {err}") from err


def export_contours(
    contours: Contours, path: str | os.PathLike[str], *, format: str | None = None
) -> Path:
    """Write contours as CSV or JSON tables (x, y per curve), ready for HEPData.

    CSV: one table per curve piece, in HEPData's CSV layout: ``#: key: value`` header lines
    (``name``, ``description``, ``curve``, ``piece``, ``level``, ``method``), a column header
    line with the axis names, the rows, and a blank line between tables;
    :func:`read_hepdata_csv` reads it back.  JSON: ``{"level", "confidence", "x", "y",
    "method", "curves": [{"name", "piece", "level", "x": [...], "y": [...]}, ...]}``.

    Parameters
    ----------
    contours : Contours
    path : path-like
        Output file; written atomically.
    format : {"csv", "json"}, optional
        Default: from the file suffix.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "json"):
        raise ContourError(
            f"cannot tell the export format of {path}: use a .csv or .json suffix or "
            f"format='csv'|'json' (got {fmt!r})"
        )
    pieces = _pieces(contours)
    if fmt == "json":
        doc = {
            "level": contours.level,
            "confidence": _confidence(contours.level),
            "x": contours.x,
            "y": contours.y,
            "method": contours.method,
            "curves": [
                {
                    "name": name,
                    "piece": piece,
                    "level": contours.level,
                    "x": p[:, 0].tolist(),
                    "y": p[:, 1].tolist(),
                }
                for name, piece, _, p in pieces
            ],
        }
        data = (json.dumps(doc, indent=1) + "\n").encode()
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for k, (name, piece, n_pieces, p) in enumerate(pieces):
            if k:
                buf.write("\n")
            of = f", piece {piece} of {n_pieces}" if n_pieces > 1 else ""
            buf.write(f"#: name: {_DESCRIPTIONS[name]} limit{of}\n")
            buf.write(
                f"#: description: {_DESCRIPTIONS[name]} {_confidence(contours.level)} exclusion "
                f"contour (CLs = {contours.level:g}) in the {contours.x}-{contours.y} plane, "
                f"{contours.method} interpolation of Z = Phi^-1(1 - CLs) (recastkit){of}\n"
            )
            buf.write(f"#: curve: {name}\n#: piece: {piece}\n#: level: {contours.level!r}\n")
            buf.write(f"#: method: {contours.method}\n")
            writer.writerow([contours.x, contours.y])
            for xv, yv in p:
                writer.writerow([repr(float(xv)), repr(float(yv))])
        data = buf.getvalue().encode()
    _write_file(path, lambda handle: handle.write(data))
    log.info("wrote %s contour piece(s) to %s", len(pieces), path)
    return path


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a scan results file (as written by :func:`recast.scan` with ``output=``).

    Parameters
    ----------
    path : path-like
        ``*.csv`` (header + one row per point), ``*.json`` (an array of row objects) or
        ``*.jsonl`` / ``*.ndjson`` (one row object per line); JSON ``null`` becomes NaN.

    Returns
    -------
    pandas.DataFrame
        One row per point.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".jsonl", ".ndjson"):
        raise ContourError(
            f"{path}: unknown results format {suffix or '(no suffix)'!r}; give the *.csv, "
            "*.json or *.jsonl file written by `recastkit scan -o ...`"
        )
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            text = path.read_text(encoding="utf-8")
            if suffix == ".json":
                records = json.loads(text)
            else:
                records = []
                for lineno, line in enumerate(text.splitlines(), start=1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise ContourError(
                                f"{path}:{lineno}: not a JSON object ({err.msg}); the results "
                                "file is damaged"
                            ) from err
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ContourError(
                    f"{path}: expected a JSON array of row objects (one per point), got "
                    f"{type(records).__name__}"
                )
            frame = pd.DataFrame.from_records(records)
    except ContourError:
        raise
    except json.JSONDecodeError as err:
        raise ContourError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from err
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        raise ContourError(f"cannot read the results file {path}: {err}") from err
    if len(frame) == 0:
        raise ContourError(f"{path} holds no result row")
    return frame


def read_hepdata_csv(path: str | os.PathLike[str]) -> list[HEPDataTable]:
    """Read a HEPData CSV file (one or several tables, ``#:`` comment headers).

    Parameters
    ----------
    path : path-like
        A HEPData table downloaded as CSV (e.g. ``HEPData-ins1748602-v1-M60_Obs.csv``) or
        a file written by :func:`export_contours`.

    Returns
    -------
    list[HEPDataTable]
        In file order.  Columns that parse as numbers are float; HEPData's ``-`` (no value)
        becomes NaN.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ContourError(f"cannot read the HEPData CSV {path}: {err}") from err
    tables: list[HEPDataTable] = []
    header: dict[str, str] = {}
    columns: list[str] | None = None
    rows: list[list[str]] = []

    def close() -> None:
        nonlocal header, columns, rows
        if columns is not None:
            # HEPData writes one block per dependent variable; later blocks of the same
            # table repeat only the qualifiers, so they inherit the table's header
            if "name" not in header and tables:
                header = {**tables[-1].header, **header}
            tables.append(_make_table(header, columns, rows))
            header = {}
        columns, rows = None, []

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            close()
            continue
        if line.startswith("#"):
            if columns is not None:
                close()
            body = line.lstrip("#").lstrip(":").strip()
            key, sep, value = body.partition(": ")
            if not sep:
                key, _, value = body.partition(",")
            header[key.strip()] = value.strip()
            continue
        cells = next(csv.reader([raw]))
        if columns is None:
            columns = [c.strip() for c in cells]
        elif len(cells) != len(columns):
            raise ContourError(
                f"{path}:{lineno}: {len(cells)} values but the table header has "
                f"{len(columns)} columns ({columns}); the CSV is malformed"
            )
        else:
            rows.append(cells)
    close()
    if not tables:
        raise ContourError(f"{path} holds no table (expected a HEPData CSV with a header line)")
    return tables


def _make_table(header: dict[str, str], columns: list[str], rows: list[list[str]]) -> HEPDataTable:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    for col in frame.columns:
        text = frame[col].astype(str).str.strip()
        missing = text.isin(["-", ""])  # HEPData writes no value as "" or "-"
        converted = pd.to_numeric(text.where(~missing), errors="coerce")
        if converted[~missing].notna().all():
            frame[col] = converted.astype(float)
    return HEPDataTable(name=header.get("name", ""), header=dict(header), data=frame)


def _overlay_curves(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    out = []
    for table in read_hepdata_csv(path):
        numeric = [c for c in table.data.columns if table.data[c].dtype == float]
        if len(numeric) < 2:
            continue
        xy = table.data[numeric[:2]].to_numpy(float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) >= 2:
            out.append((table.name or Path(path).stem, xy))
    if not out:
        raise ContourError(
            f"{path} holds no table with two numeric columns: a contour overlay needs a "
            "HEPData table of (x, y) points"
        )
    return out


def contour_distance(
    curve: Sequence[np.ndarray] | np.ndarray,
    reference: Sequence[np.ndarray] | np.ndarray,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
) -> ContourDistance:
    """Distance from every vertex of ``curve`` to the polyline(s) ``reference``.

    Both axes are divided by their range first, so the distances are fractions of the axis
    ranges (how far a recast contour lies from a published one, say).

    Parameters
    ----------
    curve : array (N, 2) or list of them
        The vertices measured.
    reference : array (M, 2) or list of them
        Polyline(s); the distance is to the nearest point of any segment.
    x_range, y_range : (float, float)
        The axis ranges used for normalisation.

    Returns
    -------
    ContourDistance
    """
    a = _stack_pieces(curve, "curve")
    refs = [np.asarray(r, float) for r in _as_pieces(reference)]
    if not refs or all(len(r) == 0 for r in refs):
        raise ContourError("the reference curve is empty")
    sx = float(x_range[1] - x_range[0])
    sy = float(y_range[1] - y_range[0])
    if not (sx > 0 and sy > 0):
        raise ContourError(f"axis ranges must be increasing, got {x_range} and {y_range}")
    scale = np.array([sx, sy])
    pts = a / scale
    best = np.full(len(pts), np.inf)
    for ref in refs:
        r = ref / scale
        if len(r) == 1:
            best = np.minimum(best, np.hypot(*(pts - r[0]).T))
            continue
        p0, p1 = r[:-1], r[1:]
        d = p1 - p0
        length2 = np.einsum("ij,ij->i", d, d)
        rel = pts[:, None, :] - p0[None, :, :]
        t = np.einsum("nij,ij->ni", rel, d) / np.where(length2 > 0, length2, 1.0)
        t = np.clip(t, 0.0, 1.0)
        nearest = p0[None, :, :] + t[..., None] * d[None, :, :]
        dist = np.sqrt(((pts[:, None, :] - nearest) ** 2).sum(axis=-1)).min(axis=1)
        best = np.minimum(best, dist)
    return ContourDistance(
        mean=float(best.mean()),
        median=float(np.median(best)),
        max=float(best.max()),
        n=len(best),
    )


def _as_pieces(curves: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(curves, np.ndarray) and curves.ndim == 2:
        return [curves]
    return [np.asarray(c, float) for c in curves]


def _stack_pieces(curves: Sequence[np.ndarray] | np.ndarray, what: str) -> np.ndarray:
    pieces = [p for p in _as_pieces(curves) if len(p)]
    if not pieces:
        raise ContourError(f"the {what} is empty: nothing to measure")
    out = np.vstack(pieces)
    if out.ndim != 2 or out.shape[1] != 2:
        raise ContourError(f"the {what} must be (N, 2) arrays of x, y; got shape {out.shape}")
    return out


# ---------------------------------------------------------------------------------------
# crossings (one label)
# ---------------------------------------------------------------------------------------


def find_crossings(
    results: pd.DataFrame,
    x: str,
    *,
    level: float = 0.05,
    where: str | None = None,
    logx: bool = False,
    z_max: float = 5.0,
) -> dict[str, np.ndarray]:
    """Where CLs crosses ``level`` along one label (e.g. the mass limit of a 1-D scan).

    Between neighbouring points (sorted by ``x``) the significance ``Z = Phi^-1(1 - CLs)``
    is interpolated linearly in ``x`` (in ``log10 x`` with ``logx``).

    Parameters
    ----------
    results : pandas.DataFrame
        Scan results with one row per value of ``x`` (select a slice with ``where``).
    x : str
        The label column.
    level : float
    where : str, optional
        A :meth:`pandas.DataFrame.query` selecting the rows.
    logx : bool
    z_max : float
        Significance clipping, as in :func:`exclusion_contour`.

    Returns
    -------
    dict[str, numpy.ndarray]
        Curve name -> crossing positions, shape (k,), ascending (empty when CLs never
        crosses the level).
    """
    frame, present = _slice_1d(results, x, where=where, logx=logx)
    z_level = _level_significance(level)
    xs = frame[x].to_numpy(float)
    t = np.log10(xs) if logx else xs
    out: dict[str, np.ndarray] = {}
    for name in present:
        z = significance(frame[CLS_COLUMNS[name]].to_numpy(float), z_max=z_max) - z_level
        found: list[float] = []
        for i in range(len(z) - 1):
            a, b = z[i], z[i + 1]
            if a == 0.0:
                found.append(float(t[i]))
            elif a * b < 0.0:
                found.append(float(t[i] + a / (a - b) * (t[i + 1] - t[i])))
        if len(z) and z[-1] == 0.0:
            found.append(float(t[-1]))
        arr = np.array(found, dtype=float)
        out[name] = 10.0**arr if logx else arr
    return out


def _slice_1d(
    results: pd.DataFrame, x: str, *, where: str | None, logx: bool
) -> tuple[pd.DataFrame, list[str]]:
    frame, present = _select(results, [x], where=where, required=["observed", "expected"])
    dup = frame.duplicated(subset=[x], keep=False)
    if dup.any():
        value = float(frame.loc[dup, x].iloc[0])
        multi = "region" in frame.columns
        hint = (
            "pick one region (where=\"region == '...'\") or the best expected per point "
            "(recast.best_expected)"
            if multi
            else 'select one slice of the other labels with where=..., e.g. where="m2 == 0"'
        )
        cli_hint = (
            "add --best-expected (the best expected region per point) or pick one region "
            "with --where \"region == '...'\""
            if multi
            else 'select one slice of the other labels with --where, e.g. --where "m2 == 0"'
        )
        text = (
            f"{x} = {value!r} appears in {int((frame[x] == value).sum())} rows ({int(dup.sum())} "
            f"of {len(frame)} rows repeat a {x} value): a CLs-versus-{x} plot needs one row "
            f"per {x}; "
        )
        raise cli_worded(ContourError(text + hint), text + cli_hint)
    if len(frame) < 2:
        raise ContourError(f"only {len(frame)} usable point(s) along {x}: need at least 2")
    if logx and (frame[x] <= 0).any():
        raise ContourError(f"log axis for {x!r} but it holds values <= 0")
    return frame.sort_values(x, kind="stable"), present


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------

_OBSERVED_COLOUR = "#b2182b"
_EXPECTED_COLOUR = "#08306b"
_BAND1_COLOUR = "#ffd21f"
_BAND2_COLOUR = "#fff3b0"
_BRAZIL_GREEN = "#00cc00"
_BRAZIL_YELLOW = "#ffff00"
_OVERLAY_STYLES = (("black", ":"), ("0.4", "-."), ("#6a3d9a", ":"), ("#1f78b4", "-."))


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        if fig is None:  # pragma: no cover - an Axes always belongs to a figure
            raise ContourError("the given Axes belongs to no figure")
        return fig, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _axis_label(name: str, label: str | None, unit: str | None) -> str:
    if label is not None:
        return label
    return f"{name} [{unit}]" if unit else name


def _plot_format(output: str | os.PathLike[str] | None) -> str | None:
    """The format of a plot file from its suffix (checked before anything is drawn)."""
    if output is None:
        return None
    path = Path(output)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in _FORMATS:
        raise ContourError(
            f"cannot save a plot as {path}: use a .png, .pdf or .svg suffix (got {fmt!r})"
        )
    if not path.parent.is_dir():
        raise ContourError(f"cannot write {path}: the folder {path.parent} does not exist")
    return fmt


def _save(fig: Figure, output: str | os.PathLike[str] | None, dpi: int) -> None:
    fmt = _plot_format(output)
    if output is None or fmt is None:
        return
    _write_file(Path(output), lambda handle: fig.savefig(handle, format=fmt, dpi=dpi))
    log.info("wrote %s", output)


def _patches(
    polygons: list[tuple[np.ndarray, np.ndarray]], ax_x: _Axis, ax_y: _Axis, **style: Any
) -> list[Any]:
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    out = []
    for points, codes in polygons:
        xy = np.column_stack([ax_x.from_unit(points[:, 0]), ax_y.from_unit(points[:, 1])])
        out.append(PathPatch(MplPath(xy, codes), **style))
    return out


def plot_exclusion(
    results: pd.DataFrame | Contours,
    x: str | None = None,
    y: str | None = None,
    *,
    ax: Axes | None = None,
    level: float = 0.05,
    method: str = "linear",
    logx: bool = False,
    logy: bool = False,
    forbidden: str | None = None,
    where: str | None = None,
    band2: bool = False,
    points: bool = True,
    color_by: str = "cls_obs",
    overlay: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    overlay_label: str | Sequence[str] | None = None,
    unit: str | None = "GeV",
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    output: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    figsize: tuple[float, float] = (7.0, 5.6),
) -> ExclusionPlot:
    """Draw the exclusion in the x-y plane, in the style of the ATLAS SUSY summary plots.

    Observed contour solid (dark red), expected dashed (dark blue) with its +-1 sigma band
    in yellow (and +-2 sigma in pale yellow with ``band2``), the grid points coloured by
    CLs with a colour bar, the forbidden region hatched, and optionally a published contour
    (HEPData CSV) as a dotted black line.

    Parameters
    ----------
    results : pandas.DataFrame or Contours
        Scan results (then ``x`` and ``y`` are required and the contours are extracted
        with :func:`exclusion_contour` and the options ``level``, ``method``, ``logx``,
        ``logy``, ``forbidden``, ``where``), or contours already extracted.
    x, y : str
        Label columns on the axes.
    ax : matplotlib.axes.Axes, optional
        Draw into this Axes; default: a new :class:`matplotlib.figure.Figure`.
    band2 : bool
        Also draw the +-2 sigma band.
    points : bool
        Mark the grid points, coloured by ``color_by`` (a CLs column; log colour scale).
    overlay : path or list of paths, optional
        HEPData CSV file(s) with a published contour (the first two numeric columns of
        every table); each file gets its own line style and legend entry.
    overlay_label : str or list of str, optional
        Legend text of the overlay(s), one per file; default: the table name +
        " (published)".
    unit : str or None
        Axis unit for the default labels ``"<column> [<unit>]"``.
    xlabel, ylabel, title : str, optional
    output : path, optional
        Write the figure (``.png``, ``.pdf`` or ``.svg``); nothing is written without it.
    dpi : int
        Resolution of raster output.
    figsize : (float, float)
        Size in inches of a new figure.

    Returns
    -------
    ExclusionPlot
    """
    from matplotlib.colors import LogNorm
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    _plot_format(output)
    if points and color_by not in CLS_COLUMNS.values():
        raise ContourError(
            f"color_by={color_by!r} is not a CLs column; choose one of {list(CLS_COLUMNS.values())}"
        )
    if isinstance(results, Contours):
        contours = results
        if (x is not None and x != contours.x) or (y is not None and y != contours.y):
            raise ContourError(
                f"the contours are in the {contours.x}-{contours.y} plane, not {x}-{y}"
            )
        given = {
            "level": level != 0.05 and level != contours.level,
            "method": method != "linear" and method != contours.method,
            "logx": logx and not contours.logx,
            "logy": logy and not contours.logy,
            "forbidden": forbidden is not None,
            "where": where is not None,
        }
        if any(given.values()):
            raise ContourError(
                f"{', '.join(k for k, v in given.items() if v)} cannot be applied to contours "
                "already extracted: pass them to exclusion_contour, or pass the results table "
                "to plot_exclusion"
            )
    else:
        if x is None or y is None:
            raise ContourError("plot_exclusion needs the x and y columns of the results")
        contours = exclusion_contour(
            results,
            x,
            y,
            level=level,
            method=method,
            logx=logx,
            logy=logy,
            forbidden=forbidden,
            where=where,
        )
    fig, axes = _new_axes(ax, figsize)
    gu, gv, ax_x, ax_y = _unit_grid(contours)
    z_level = _level_significance(contours.level)
    sig = contours.significance
    artists: dict[str, Any] = {}
    handles: list[Any] = []
    labels: list[str] = []

    def band(lo: str, hi: str, colour: str, role: str) -> Patch | None:
        if lo not in sig or hi not in sig:
            return None
        # inside the band: the -n sigma curve excludes (Z_lo > Z_c) while +n does not
        field = np.minimum(sig[lo] - z_level, z_level - sig[hi])
        top = float(np.nanmax(field)) if np.isfinite(field).any() else 0.0
        if not top > 0:
            return None
        patches = _patches(
            _filled(gu, gv, field, 0.0, top + 1.0), ax_x, ax_y, facecolor=colour, lw=0, zorder=1
        )
        for patch in patches:
            axes.add_patch(patch)
        artists[role] = patches
        return Patch(facecolor=colour, edgecolor="none")

    band2_handle = (
        band("expected_m2", "expected_p2", _BAND2_COLOUR, "band_2sigma") if band2 else None
    )
    band1_handle = band("expected_m1", "expected_p1", _BAND1_COLOUR, "band_1sigma")

    if contours.forbidden is not None and contours.forbidden.any():
        polys = _filled(gu, gv, contours.forbidden.astype(float), 0.5, 1.5)
        patches = _patches(
            polys, ax_x, ax_y, facecolor="0.92", edgecolor="0.6", hatch="//", lw=0, zorder=0.5
        )
        for patch in patches:
            axes.add_patch(patch)
        artists["forbidden"] = patches

    if points:
        if color_by not in contours.points.columns:
            raise ContourError(
                f"color_by={color_by!r} is not a column of the results; choose one of "
                f"{[c for c in contours.points.columns if str(c).startswith('cls')]}"
            )
        cvals = contours.points[color_by].to_numpy(float)
        vmin = 1e-4
        scatter = axes.scatter(
            contours.points[contours.x],
            contours.points[contours.y],
            c=np.clip(cvals, vmin, 1.0),
            norm=LogNorm(vmin=vmin, vmax=1.0),
            cmap="PuBuGn_r",
            s=16,
            edgecolors="0.25",
            linewidths=0.4,
            zorder=4,
        )
        artists["points"] = scatter
        cbar = fig.colorbar(scatter, ax=axes, pad=0.02)
        cbar.set_label(
            {"cls_obs": "observed CLs", "cls_exp": "expected CLs"}.get(color_by, color_by)
        )
        cbar.ax.axhline(contours.level, color=_OBSERVED_COLOUR, lw=1.5)
        artists["colorbar"] = cbar

    expected = [
        axes.plot(p[:, 0], p[:, 1], ls="--", lw=2.0, color=_EXPECTED_COLOUR, zorder=3)[0]
        for p in contours.curves.get("expected", [])
    ]
    observed = [
        axes.plot(p[:, 0], p[:, 1], ls="-", lw=2.5, color=_OBSERVED_COLOUR, zorder=3)[0]
        for p in contours.curves.get("observed", [])
    ]
    artists["observed"], artists["expected"] = observed, expected
    conf = _confidence(contours.level)
    handles.append(Line2D([], [], ls="-", lw=2.5, color=_OBSERVED_COLOUR))
    labels.append(f"Observed limit ({conf})")
    exp_line = Line2D([], [], ls="--", lw=2.0, color=_EXPECTED_COLOUR)
    exp_handle: Any = exp_line
    exp_label = "Expected limit"
    parts = [h for h in (band2_handle, band1_handle) if h is not None]
    if parts:
        exp_handle = (*parts, exp_line)
        sigmas = ["$\\pm 1\\sigma$"] if band1_handle is not None else []
        sigmas += ["$\\pm 2\\sigma$"] if band2_handle is not None else []
        exp_label += f" ({', '.join(sigmas)})"
    handles.append(exp_handle)
    labels.append(exp_label)

    if overlay is not None:
        paths = [overlay] if isinstance(overlay, (str, os.PathLike)) else list(overlay)
        texts = (
            [overlay_label] * len(paths)
            if overlay_label is None or isinstance(overlay_label, str)
            else list(overlay_label)
        )
        if len(texts) != len(paths):
            raise ContourError(
                f"{len(texts)} overlay label(s) for {len(paths)} overlay file(s): give one "
                "label per file, in the same order"
            )
        lines = []
        for k, (path, text) in enumerate(zip(paths, texts, strict=True)):
            colour, style = _OVERLAY_STYLES[k % len(_OVERLAY_STYLES)]
            curves = _overlay_curves(path)
            for _, xy in curves:
                lines += axes.plot(xy[:, 0], xy[:, 1], ls=style, lw=2.0, color=colour, zorder=3.5)
            handles.append(Line2D([], [], ls=style, lw=2.0, color=colour))
            labels.append(text or f"{curves[0][0]} (published)")
        artists["overlay"] = lines
    if "forbidden" in artists:
        handles.append(Patch(facecolor="0.92", edgecolor="0.6", hatch="//"))
        labels.append("kinematically forbidden")

    axes.set_xlabel(_axis_label(contours.x, xlabel, unit))
    axes.set_ylabel(_axis_label(contours.y, ylabel, unit))
    if contours.logx:
        axes.set_xscale("log")
    if contours.logy:
        axes.set_yscale("log")
    axes.set_xlim(*_padded(contours.x_range, contours.logx))
    axes.set_ylim(*_padded(contours.y_range, contours.logy, top=0.18))
    if title:
        axes.set_title(title)
    artists["legend"] = axes.legend(
        handles,
        labels,
        loc="upper left",
        frameon=True,
        framealpha=0.9,
        edgecolor="none",
        fontsize="small",
        handler_map={tuple: HandlerTuple(ndivide=1)},
    )
    _save(fig, output, dpi)
    return ExclusionPlot(figure=fig, ax=axes, artists=artists, contours=contours)


def _padded(span: tuple[float, float], log_axis: bool, top: float = 0.03) -> tuple[float, float]:
    lo, hi = span
    if log_axis:
        a, b = math.log10(lo), math.log10(hi)
        pad = b - a
        return 10 ** (a - 0.03 * pad), 10 ** (b + top * pad)
    pad = hi - lo
    return lo - 0.03 * pad, hi + top * pad


def plot_brazil(
    results: pd.DataFrame,
    x: str,
    *,
    ax: Axes | None = None,
    level: float = 0.05,
    where: str | None = None,
    logx: bool = False,
    logy: bool = True,
    unit: str | None = "GeV",
    xlabel: str | None = None,
    title: str | None = None,
    output: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    figsize: tuple[float, float] = (7.0, 5.0),
    z_max: float = 5.0,
) -> BrazilPlot:
    """CLs against one label with the expected band (a "Brazil" plot) and the crossings.

    Observed CLs solid black with markers, expected dashed, +-1 sigma green and +-2 sigma
    yellow, the CLs level as a red line, and a marker where each of the observed and
    expected curves crosses it (:func:`find_crossings`).

    Parameters
    ----------
    results : pandas.DataFrame
        Scan results with one row per value of ``x`` (select a slice with ``where``).
    x : str
        The label column on the horizontal axis.
    ax : matplotlib.axes.Axes, optional
    level : float
    where : str, optional
    logx, logy : bool
        Log scale for the mass and for CLs (default log CLs).
    unit, xlabel, title, output, dpi, figsize
        As in :func:`plot_exclusion`.
    z_max : float
        Significance clipping for the crossings.

    Returns
    -------
    BrazilPlot
    """
    _plot_format(output)
    frame, present = _slice_1d(results, x, where=where, logx=logx)
    crossings = find_crossings(frame, x, level=level, logx=logx, z_max=z_max)
    fig, axes = _new_axes(ax, figsize)
    xs = frame[x].to_numpy(float)
    col = {name: frame[CLS_COLUMNS[name]].to_numpy(float) for name in present}
    floor = 0.0
    if logy:
        # the axis shows a few decades below the smallest observed / expected CLs (and the
        # level); what lies lower is drawn on the bottom edge
        central = np.concatenate([col["observed"], col["expected"]])
        positive = central[central > 0]
        lowest = float(positive.min()) if len(positive) else level
        floor = max(1e-8, min(lowest, level) / 3.0)
    artists: dict[str, Any] = {}
    if "expected_m2" in col and "expected_p2" in col:
        artists["band_2sigma"] = axes.fill_between(
            xs,
            np.maximum(col["expected_m2"], floor),
            np.maximum(col["expected_p2"], floor),
            color=_BRAZIL_YELLOW,
            lw=0,
            label=r"Expected $\pm 2\sigma$",
        )
    if "expected_m1" in col and "expected_p1" in col:
        artists["band_1sigma"] = axes.fill_between(
            xs,
            np.maximum(col["expected_m1"], floor),
            np.maximum(col["expected_p1"], floor),
            color=_BRAZIL_GREEN,
            lw=0,
            label=r"Expected $\pm 1\sigma$",
        )
    artists["expected"] = axes.plot(
        xs, np.maximum(col["expected"], floor), "k--", lw=1.5, label="Expected CLs"
    )[0]
    artists["observed"] = axes.plot(
        xs, np.maximum(col["observed"], floor), "k-", marker="o", ms=4, lw=1.8, label="Observed CLs"
    )[0]
    artists["level"] = axes.axhline(
        level, color="red", lw=1.2, label=f"CLs = {level:g} ({_confidence(level)})"
    )
    cx = np.concatenate([crossings["observed"], crossings["expected"]])
    artists["crossings"] = axes.scatter(
        cx,
        np.full(len(cx), level),
        marker="D",
        s=40,
        facecolors="white",
        edgecolors="red",
        zorder=5,
        label="crossings",
    )
    for name, style in (("observed", "-"), ("expected", "--")):
        for value in crossings[name]:
            axes.annotate(
                f"{value:.4g}",
                (value, level),
                xytext=(6, 8) if style == "-" else (6, -16),
                textcoords="offset points",
                fontsize="small",
                color="red",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0},
                zorder=6,
            )
    if logx:
        axes.set_xscale("log")
    if logy:
        axes.set_yscale("log")
        axes.set_ylim(floor, 1.5)
    else:
        axes.set_ylim(0.0, 1.05)
    axes.set_xlabel(_axis_label(x, xlabel, unit))
    axes.set_ylabel("CLs")
    if title:
        axes.set_title(title)
    handles, labels = axes.get_legend_handles_labels()
    if not len(cx):
        keep = [i for i, lab in enumerate(labels) if lab != "crossings"]
        handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    artists["legend"] = axes.legend(handles, labels, loc="best", fontsize="small", frameon=False)
    _save(fig, output, dpi)
    return BrazilPlot(figure=fig, ax=axes, artists=artists, crossings=crossings)
