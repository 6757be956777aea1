"""Exclusion contours from scan results: significance-space interpolation and iso-lines.

See :mod:`recast.contour` for the method.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from recast.errors import ContourError

if TYPE_CHECKING:  # pragma: no cover
    pass


log = logging.getLogger(__name__)

__all__ = [
    "CURVES",
    "CLS_COLUMNS",
    "Contours",
    "significance",
    "exclusion_contour",
    "find_crossings",
]

#: curve name -> result column holding its CLs values (expected band ascending in CLs)
CLS_COLUMNS: dict[str, str] = {
    "observed": "cls_obs",
    "expected": "cls_exp",
    "expected_m1": "cls_exp_m1",
    "expected_p1": "cls_exp_p1",
    "expected_m2": "cls_exp_m2",
    "expected_p2": "cls_exp_p2",
    "observed_up": "cls_obs_up",
    "observed_down": "cls_obs_down",
}
#: every curve name, in the order used for export and plotting
CURVES: tuple[str, ...] = tuple(CLS_COLUMNS)

_METHODS = ("linear", "rbf")
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
    forbidden_expression : str or None
        The ``forbidden`` expression (the plots draw its region over the whole axes).
    extrapolated : numpy.ndarray or None
        Boolean mask (ny, nx) of the nodes outside the convex hull of the points whose
        significance was carried over from the nearest node inside (``extend=True``), so
        that the contours reach the grid edge and the kinematic boundary; None without.
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
    forbidden_expression: str | None = None
    extrapolated: np.ndarray | None = None


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
        raise _cli_worded(ContourError(text + hint), text + cli_hint)


def _cli_worded(err: ContourError, cli: str) -> ContourError:
    """The error with its command-line wording (``cli_message``, printed by the CLI).

    The same as ``recast.errors.cli_worded`` of the reliability branch (issue 17).
    """
    err.cli_message = cli  # type: ignore[attr-defined]
    return err


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
        raise ContourError(
            f"every point has {name} = {lo!r}: a contour needs a 2-D grid; for a 1-D scan "
            "draw CLs against the other label with plot_brazil (CLI: omit -y)"
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
    method: str = "rbf",
    logx: bool = False,
    logy: bool = False,
    forbidden: str | None = None,
    where: str | None = None,
    resolution: int | tuple[int, int] = 300,
    z_max: float = 5.0,
    rbf_kernel: str = "thin_plate_spline",
    rbf_smoothing: float = 0.0,
    rbf_neighbors: int | None = None,
    extend: bool = True,
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
    method : {"rbf", "linear"}
        Radial basis functions (:class:`scipy.interpolate.RBFInterpolator`, the default:
        closest to ATLAS's published contours, 0.49% of the axis ranges on sbottom and
        0.70% on 3L eRJR against 0.53% and 1.6% for linear), or linear interpolation on
        the Delaunay triangulation of the points.
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
        less memory and about half the time at 3000 points.  HistFitter's
        ``harvestToContours`` smooths coarse grids the same way (RBF with a smoothing
        term); ``rbf_smoothing`` > 0 trades exactness at the points for smoothness.
    extend : bool
        Between the convex hull of the points and the edge of their bounding box (or the
        forbidden region), carry each node's significance over from the nearest node
        inside the hull (a constant extrapolation, no new values), so that the contours
        run on to the grid edge and to the kinematic boundary instead of stopping at the
        outermost points, as the published ATLAS contours do.  ``False``: mask them.

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
            # a spline may overshoot between points: never beyond the clipping of Z
            at_nodes[valid] = np.clip(interp(nodes[valid]), -z_max, z_max)
        except (ValueError, np.linalg.LinAlgError) as err:
            raise ContourError(
                f"RBF interpolation failed with kernel={rbf_kernel!r}, "
                f"smoothing={rbf_smoothing!r}, neighbors={rbf_neighbors!r}: {err}; try "
                "method='linear' or another kernel "
                "(thin_plate_spline, cubic, quintic, linear)"
            ) from err
    extrapolated = None
    if extend:
        at_nodes, extrapolated = _extend(at_nodes, valid, forbidden_grid, nx, ny)
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
        forbidden_expression=forbidden or None,
        extrapolated=extrapolated,
    )


def _extend(
    at_nodes: np.ndarray, valid: np.ndarray, forbidden: np.ndarray | None, nx: int, ny: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the nodes outside the hull (not forbidden) from the nearest interpolated node."""
    from scipy.ndimage import distance_transform_edt

    inside = valid.reshape(ny, nx)
    if not inside.any():
        return at_nodes, np.zeros((ny, nx), dtype=bool)
    allowed = np.ones((ny, nx), dtype=bool) if forbidden is None else ~forbidden
    gap = allowed & ~inside
    # nearest node inside the hull, distances in the unit square (both axes [0, 1])
    _, (iy, ix) = distance_transform_edt(
        ~inside, sampling=(1.0 / (ny - 1), 1.0 / (nx - 1)), return_indices=True
    )
    source = (iy * nx + ix).ravel()
    out = at_nodes.copy()
    flat = gap.ravel()
    out[flat] = at_nodes[source[flat]]
    return out, gap


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


def _confidence(level: float) -> str:
    return f"{100.0 * (1.0 - level):g}% CL"


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
        raise _cli_worded(ContourError(text + hint), text + cli_hint)
    if len(frame) < 2:
        raise ContourError(f"only {len(frame)} usable point(s) along {x}: need at least 2")
    if logx and (frame[x] <= 0).any():
        raise ContourError(f"log axis for {x!r} but it holds values <= 0")
    return frame.sort_values(x, kind="stable"), present
