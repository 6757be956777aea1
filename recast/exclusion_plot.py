"""The exclusion plot: contours in a mass plane, in the style of the ATLAS SUSY plots."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from recast.errors import ContourError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


from recast.contour_extraction import (
    CLS_COLUMNS,
    Contours,
    _confidence,
    _filled,
    _level_significance,
    _unit_grid,
    exclusion_contour,
)
from recast.hepdata_tables import OverlayCurve, _overlay_curves
from recast.plot_style import (
    _BAND1_COLOUR,
    _BAND2_COLOUR,
    _EXPECTED_COLOUR,
    _OBSERVED_COLOUR,
    _OVERLAY_STYLES,
    _axis_label,
    _label_block,
    _new_axes,
    _padded,
    _patches,
    _plot_format,
    _save,
    label_lines,
)

log = logging.getLogger(__name__)

__all__ = ["ExclusionPlot", "plot_exclusion"]


class ExclusionPlot(NamedTuple):
    """What :func:`plot_exclusion` drew.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
    artists : dict[str, Any]
        Role -> matplotlib artist(s): ``"observed"``, ``"expected"`` (lists of
        ``Line2D``, one per piece), ``"band_1sigma"``, ``"band_2sigma"`` (lists of
        ``PathPatch``), ``"observed_up"``, ``"observed_down"`` (dotted theory lines, lists
        of ``Line2D``), ``"points"`` (``PathCollection``, or a list of them, one per
        region with ``best_expected`` results), ``"colorbar"``, ``"forbidden"`` (list of
        ``PathPatch``), ``"forbidden_edge"`` (list of ``Line2D``), ``"overlay"`` (list of
        ``Line2D``), ``"label_block"`` (``AnchoredText``), ``"legend"``.  Roles not drawn
        are absent.
    contours : Contours
        The contours that were drawn.
    """

    figure: Figure
    ax: Axes
    artists: dict[str, Any]
    contours: Contours


def plot_exclusion(
    results: pd.DataFrame | Contours,
    x: str | None = None,
    y: str | None = None,
    *,
    ax: Axes | None = None,
    level: float = 0.05,
    method: str = "rbf",
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
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    analysis: str | None = None,
    sqrt_s: float | None = None,
    lumi: float | None = None,
    label_block: bool = True,
    output: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    figsize: tuple[float, float] = (7.0, 5.6),
) -> ExclusionPlot:
    """Draw the exclusion in the x-y plane, in the style of the ATLAS SUSY summary plots.

    Observed contour solid (dark red) with its +-1 sigma theory lines dotted (when the
    results have ``cls_obs_up`` / ``cls_obs_down``), expected dashed (dark blue) with its
    +-1 sigma band in yellow (and +-2 sigma in pale yellow with ``band2``), the grid
    points coloured by CLs with a colour bar (one marker shape per region when the results
    come from :func:`recast.best_expected`), the forbidden region over the whole axes along
    its exact boundary, the label block (analysis, sqrt(s) and luminosity, "All limits at
    95% CL"), and optionally published contours (HEPData CSV).

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
        every table); each file gets its own line style and legend entry.  A warning is
        logged when an overlay's values do not fit the plot's axes (other columns, or x
        and y swapped).  Its ``cmenergies`` header gives ``sqrt_s`` when that is not set.
    overlay_label : str or list of str, optional
        Legend text of the overlay(s), one per file; default: the table name +
        " (published)".
    unit : str or None
        Axis unit, appended to the axis labels (also to ``xlabel`` / ``ylabel`` unless
        they hold a ``[...]`` unit already).
    xlabel, ylabel : str, optional
        Axis labels; default: ``labels[x]``, else the particle of a known column name
        (``m_sbottom`` -> m(b~1), :data:`recast.plot_style.PARTICLE_LABELS`), else the
        column name.
    labels : mapping, optional
        Column -> axis label (mathtext allowed), e.g. ``{"m1": r"$m(\tilde{t}_1)$"}``.
    title : str, optional
    analysis : str, optional
        Analysis name for the label block (e.g. ``"ATLAS-SUSY-2018-31, 1908.03122"``).
    sqrt_s : float, optional
        Centre-of-mass energy in TeV for the label block.
    lumi : float, optional
        Integrated luminosity in fb^-1 for the label block.
    label_block : bool
        Draw the label block (top right, inside the axes).
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
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    _plot_format(output)
    if points and color_by not in CLS_COLUMNS.values():
        raise ContourError(
            f"color_by={color_by!r} is not a CLs column; choose one of {list(CLS_COLUMNS.values())}"
        )
    contours = _contours_for_plot(
        results, x, y, level=level, method=method, logx=logx, logy=logy,
        forbidden=forbidden, where=where,
    )  # fmt: skip
    curves = [c for path in _as_paths(overlay) for c in [(path, _overlay_curves(path))]]
    fig, axes = _new_axes(ax, figsize)
    if contours.logx:
        axes.set_xscale("log")
    if contours.logy:
        axes.set_yscale("log")
    xlim = _padded(contours.x_range, contours.logx)
    ylim = _padded(contours.y_range, contours.logy, top=0.32 if label_block else 0.18)
    axes.set_xlim(*xlim)
    axes.set_ylim(*ylim)
    artists: dict[str, Any] = {}
    handles: list[Any] = []
    texts: list[str] = []

    band2_handle = _band(axes, contours, "expected_m2", "expected_p2", _BAND2_COLOUR, "band_2sigma", artists) if band2 else None  # fmt: skip
    band1_handle = _band(axes, contours, "expected_m1", "expected_p1", _BAND1_COLOUR, "band_1sigma", artists)  # fmt: skip
    _draw_forbidden(axes, contours, xlim, ylim, artists)
    if points:
        _draw_points(fig, axes, contours, color_by, artists, handles, texts)

    def lines(name: str, **style: Any) -> list[Any]:
        return [
            axes.plot(p[:, 0], p[:, 1], zorder=3, **style)[0] for p in contours.curves.get(name, [])
        ]

    artists["expected"] = lines("expected", ls="--", lw=2.0, color=_EXPECTED_COLOUR)
    artists["observed"] = lines("observed", ls="-", lw=2.5, color=_OBSERVED_COLOUR)
    theory = [n for n in ("observed_up", "observed_down") if n in contours.curves]
    for name in theory:
        artists[name] = lines(name, ls=":", lw=1.4, color=_OBSERVED_COLOUR)
    conf = _confidence(contours.level)
    obs_label = f"Observed limit ({conf})"
    if theory:
        obs_label = f"Observed limit ($\\pm 1\\sigma^{{\\mathrm{{theory}}}}$, {conf})"
    obs_line = Line2D([], [], ls="-", lw=2.5, color=_OBSERVED_COLOUR)
    obs_handle: Any = obs_line
    if theory:
        dotted = Line2D([], [], ls=":", lw=1.4, color=_OBSERVED_COLOUR)
        obs_handle = (dotted, obs_line)
    handles.insert(0, obs_handle)
    texts.insert(0, obs_label)
    exp_line = Line2D([], [], ls="--", lw=2.0, color=_EXPECTED_COLOUR)
    exp_handle: Any = exp_line
    exp_label = "Expected limit"
    parts = [h for h in (band2_handle, band1_handle) if h is not None]
    if parts:
        exp_handle = (*parts, exp_line)
        sigmas = ["$\\pm 1\\sigma_{\\mathrm{exp}}$"] if band1_handle is not None else []
        sigmas += ["$\\pm 2\\sigma_{\\mathrm{exp}}$"] if band2_handle is not None else []
        exp_label += f" ({', '.join(sigmas)})"
    handles.insert(1, exp_handle)
    texts.insert(1, exp_label)

    fitting: list[OverlayCurve] = []
    if curves:
        fitting = _draw_overlays(
            axes, contours, curves, overlay_label, xlim, ylim, artists, handles, texts
        )
    if "forbidden" in artists:
        handles.append(Patch(facecolor="0.92", edgecolor="0.6", hatch="//"))
        texts.append("kinematically forbidden")

    axis_labels = _source_labels(contours, fitting, unit)
    axis_labels.update(labels or {})
    axes.set_xlabel(_axis_label(contours.x, xlabel, unit, axis_labels))
    axes.set_ylabel(_axis_label(contours.y, ylabel, unit, axis_labels))
    if title:
        axes.set_title(title)
    if label_block:
        if sqrt_s is None:
            sqrt_s = _overlay_energy([c for _, cs in curves for c in cs])
        artists["label_block"] = _label_block(
            axes,
            label_lines(analysis=analysis, sqrt_s=sqrt_s, lumi=lumi, level=contours.level),
        )
    artists["legend"] = axes.legend(
        handles,
        texts,
        loc="upper left",
        frameon=True,
        framealpha=0.9,
        edgecolor="none",
        fontsize="small",
        handler_map={tuple: HandlerTuple(ndivide=1)},
    )
    _save(fig, output, dpi)
    return ExclusionPlot(figure=fig, ax=axes, artists=artists, contours=contours)


def _contours_for_plot(
    results: pd.DataFrame | Contours,
    x: str | None,
    y: str | None,
    *,
    level: float,
    method: str,
    logx: bool,
    logy: bool,
    forbidden: str | None,
    where: str | None,
) -> Contours:
    if not isinstance(results, Contours):
        if x is None or y is None:
            raise ContourError("plot_exclusion needs the x and y columns of the results")
        return exclusion_contour(
            results, x, y, level=level, method=method, logx=logx, logy=logy,
            forbidden=forbidden, where=where,
        )  # fmt: skip
    contours = results
    if (x is not None and x != contours.x) or (y is not None and y != contours.y):
        raise ContourError(f"the contours are in the {contours.x}-{contours.y} plane, not {x}-{y}")
    given = {
        "level": level != 0.05 and level != contours.level,
        "method": method != "rbf" and method != contours.method,
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
    return contours


def _as_paths(overlay: Any) -> list[Any]:
    if overlay is None:
        return []
    return [overlay] if isinstance(overlay, (str, os.PathLike)) else list(overlay)


def _band(
    axes: Axes, contours: Contours, lo: str, hi: str, colour: str, role: str, artists: dict
) -> Any:
    """Fill where the -n sigma curve excludes and the +n sigma one does not."""
    from matplotlib.patches import Patch

    sig = contours.significance
    if lo not in sig or hi not in sig:
        return None
    z_level = _level_significance(contours.level)
    gu, gv, ax_x, ax_y = _unit_grid(contours)
    # the band is the region between the two iso-lines; one field that is positive inside
    # it, min(Z_lo - Zc, Zc - Z_hi), has a kink (not a spike) where the two curves meet
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


_COMPARISON = re.compile(r"^(?P<a>[^<>=!&|]+?)\s*(?P<op>>=|<=|>|<)\s*(?P<b>[^<>=!&|]+)$")


def forbidden_field(expression: str, x: str, y: str, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """A field on the nodes (len(gy), len(gx)) that is >= 0 exactly where ``expression`` holds.

    For a single comparison ``A >= B`` (or ``>``, ``<=``, ``<``) it is ``A - B`` (or
    ``B - A``): continuous, so the region's edge is its true boundary (a straight line for
    ``m2 >= m1``), not a staircase of grid cells; for any other boolean expression it is
    +-0.5 from the truth value.
    """
    xx, yy = np.meshgrid(gx, gy)
    frame = pd.DataFrame({x: xx.ravel(), y: yy.ravel()})
    m = _COMPARISON.match(expression.strip())
    if m and " and " not in expression and " or " not in expression:
        try:
            diff = np.asarray(frame.eval(f"({m['a']}) - ({m['b']})", engine="python"), dtype=float)
        except Exception:  # not arithmetic after all: fall back to the truth value
            diff = None
        if diff is not None and diff.shape == (len(frame),):
            sign = 1.0 if m["op"] in (">=", ">") else -1.0
            return (sign * diff).reshape(len(gy), len(gx))
    from recast.contour_extraction import _forbidden_mask

    mask = _forbidden_mask(frame, expression, what="the plot area")
    return mask.astype(float).reshape(len(gy), len(gx)) - 0.5


def _draw_forbidden(
    axes: Axes, contours: Contours, xlim: tuple, ylim: tuple, artists: dict
) -> None:
    """The forbidden region over the whole axes, filled up to its exact boundary."""
    import contourpy
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    expression = contours.forbidden_expression
    if expression:
        n = 400
        (x0, x1), (y0, y1) = (float(v) for v in xlim), (float(v) for v in ylim)
        gx = np.geomspace(x0, x1, n) if contours.logx else np.linspace(x0, x1, n)
        gy = np.geomspace(y0, y1, n) if contours.logy else np.linspace(y0, y1, n)
        field = forbidden_field(expression, contours.x, contours.y, gx, gy)
        if not (field >= 0).any():
            return
        gen = contourpy.contour_generator(gx, gy, field, name="serial", fill_type="OuterCode")
        filled: Any = gen.filled(0.0, float(np.nanmax(field)) + 1.0)
        patches = [
            PathPatch(MplPath(np.asarray(p, float), np.asarray(c)),
                      facecolor="0.92", edgecolor="0.6", hatch="//", lw=0, zorder=0.5)
            for p, c in zip(*filled, strict=True)
        ]  # fmt: skip
        lines: Any = gen.lines(0.0)
        edges = [
            axes.plot(p[:, 0], p[:, 1], color="0.45", lw=1.0, zorder=0.6)[0]
            for p in map(np.asarray, lines)
            if len(p) >= 2
        ]
        artists["forbidden_edge"] = edges
    elif contours.forbidden is not None and contours.forbidden.any():
        gu, gv, ax_x, ax_y = _unit_grid(contours)
        polys = _filled(gu, gv, contours.forbidden.astype(float), 0.5, 1.5)
        patches = _patches(
            polys, ax_x, ax_y, facecolor="0.92", edgecolor="0.6", hatch="//", lw=0, zorder=0.5
        )
    else:
        return
    for patch in patches:
        axes.add_patch(patch)
    artists["forbidden"] = patches


_REGION_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _draw_points(
    fig: Figure,
    axes: Axes,
    contours: Contours,
    color_by: str,
    artists: dict,
    handles: list,
    texts: list,
) -> None:
    """Grid points coloured by CLs; one marker per region for best-expected results."""
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    pts = contours.points
    if color_by not in pts.columns:
        raise ContourError(
            f"color_by={color_by!r} is not a column of the results; choose one of "
            f"{[c for c in pts.columns if str(c).startswith('cls')]}"
        )
    vmin = 1e-4
    norm = LogNorm(vmin=vmin, vmax=1.0)
    style: dict[str, Any] = {
        "cmap": "PuBuGn_r",
        "norm": norm,
        "edgecolors": "0.25",
        "linewidths": 0.4,
    }
    regions = sorted(pts["region"].astype(str).unique()) if "region" in pts.columns else []
    if len(regions) > 1:
        scatters = []
        for k, region in enumerate(regions):
            sub = pts[pts["region"].astype(str) == region]
            marker = _REGION_MARKERS[k % len(_REGION_MARKERS)]
            scatters.append(
                axes.scatter(
                    sub[contours.x],
                    sub[contours.y],
                    c=np.clip(sub[color_by].to_numpy(float), vmin, 1.0),
                    marker=marker,
                    s=20,
                    zorder=4,
                    **style,
                )  # fmt: skip
            )
            handles.append(
                Line2D([], [], ls="none", marker=marker, color="0.5", markeredgecolor="0.25")
            )
            texts.append(f"best expected: {region} ({len(sub)})")
        artists["points"] = scatters
        mappable = scatters[0]
    else:
        mappable = axes.scatter(
            pts[contours.x], pts[contours.y],
            c=np.clip(pts[color_by].to_numpy(float), vmin, 1.0), s=16, zorder=4, **style,
        )  # fmt: skip
        artists["points"] = mappable
    cbar = fig.colorbar(mappable, ax=axes, pad=0.02)
    cbar.set_label({"cls_obs": "observed CLs", "cls_exp": "expected CLs"}.get(color_by, color_by))
    cbar.ax.axhline(contours.level, color=_OBSERVED_COLOUR, lw=1.5)
    artists["colorbar"] = cbar


def _fraction_inside(xy: np.ndarray, xlim: tuple, ylim: tuple) -> float:
    dx, dy = xlim[1] - xlim[0], ylim[1] - ylim[0]
    ok = (
        (xy[:, 0] >= xlim[0] - 0.1 * dx)
        & (xy[:, 0] <= xlim[1] + 0.1 * dx)
        & (xy[:, 1] >= ylim[0] - 0.1 * dy)
        & (xy[:, 1] <= ylim[1] + 0.1 * dy)
    )
    return float(ok.mean())


def _name(text: str) -> str:
    """A column name without its unit, lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", re.sub(r"\[[^\]]*\]", "", str(text)).lower())


def _check_overlay(
    path: Any, curve: OverlayCurve, contours: Contours, xlim: tuple, ylim: tuple
) -> bool:
    """Warn when a published curve does not fit the plot's axes (other or swapped columns).

    Two checks: the overlay's column names against the axis columns (a mismatch is only
    reported when the names match the other way round: swapped), and its points against
    the axis ranges (most of them outside: another plane, or other units).
    """
    cx, cy = (_name(c) for c in curve.columns)
    ax_x, ax_y = _name(contours.x), _name(contours.y)
    problem = None
    if cx == ax_y and cy == ax_x and cx != cy:
        problem = "its columns are the plot's axes swapped (x and y exchanged)"
    else:
        inside = _fraction_inside(curve.xy, xlim, ylim)
        if inside < 0.5:
            swapped = _fraction_inside(curve.xy[:, ::-1], xlim, ylim)
            problem = f"only {100.0 * inside:.0f}% of its points lie on the plot's axes; " + (
                "its columns look swapped: x and y exchanged fit the plot"
                if swapped >= 0.9
                else "is it a curve of another plane, or in other units?"
            )
    if problem:
        log.warning(
            "overlay %s (%s, columns %r, %r) does not fit the axes %r, %r: %s",
            path,
            curve.name,
            curve.columns[0],
            curve.columns[1],
            contours.x,
            contours.y,
            problem,
        )
    return problem is None


def _draw_overlays(
    axes: Axes,
    contours: Contours,
    curves: list[tuple[Any, list[OverlayCurve]]],
    overlay_label: str | Sequence[str] | None,
    xlim: tuple,
    ylim: tuple,
    artists: dict,
    handles: list,
    texts: list,
) -> list[OverlayCurve]:
    """Draw the published curves; return those that fit the plot's axes."""
    from matplotlib.lines import Line2D

    names = (
        [overlay_label] * len(curves)
        if overlay_label is None or isinstance(overlay_label, str)
        else list(overlay_label)
    )
    if len(names) != len(curves):
        raise ContourError(
            f"{len(names)} overlay label(s) for {len(curves)} overlay file(s): give one "
            "label per file, in the same order"
        )
    drawn = []
    fitting: list[OverlayCurve] = []
    for k, ((path, pieces), text) in enumerate(zip(curves, names, strict=True)):
        colour, style = _OVERLAY_STYLES[k % len(_OVERLAY_STYLES)]
        for curve in pieces:
            if _check_overlay(path, curve, contours, xlim, ylim):
                fitting.append(curve)
            drawn += axes.plot(
                curve.xy[:, 0], curve.xy[:, 1], ls=style, lw=2.0, color=colour, zorder=3.5
            )
        handles.append(Line2D([], [], ls=style, lw=2.0, color=colour))
        texts.append(text or f"{pieces[0].name} (published)")
    artists["overlay"] = drawn
    return fitting


def _source_labels(
    contours: Contours, fitting: list[OverlayCurve], unit: str | None
) -> dict[str, str]:
    """Axis labels the published record gives: the column headers of a fitting overlay.

    Only for columns whose particle :data:`recast.plot_style.PARTICLE_LABELS` does not
    know (a generic ``m1``), and only when the header's unit (``$m(...)$ [GeV]``) is the
    plot's ``unit``.
    """
    from recast.plot_style import PARTICLE_LABELS

    out: dict[str, str] = {}
    if fitting:
        for name, header in zip((contours.x, contours.y), fitting[0].columns, strict=True):
            found = re.search(r"\[([^\]]*)\]", header)
            same_unit = found is None or unit is None or found.group(1).strip() == unit
            if name.lower() not in PARTICLE_LABELS and header.strip() and same_unit:
                out[name] = header.strip()
    return out


def _overlay_energy(curves: list[OverlayCurve]) -> float | None:
    """sqrt(s) in TeV from a HEPData table header (``cmenergies [GeV],13000``), if any."""
    for curve in curves:
        for key, value in curve.header.items():
            if key.lower().startswith("cmenergies"):
                try:
                    energy = float(str(value).split(",")[-1])
                except ValueError:
                    continue
                if math.isfinite(energy) and energy > 0:
                    return energy / 1000.0 if "gev" in key.lower() else energy
    return None
