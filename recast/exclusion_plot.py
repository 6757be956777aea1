"""The exclusion plot: contours in a mass plane, in the style of the ATLAS SUSY plots."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
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
from recast.hepdata_tables import _overlay_curves
from recast.plot_style import (
    _BAND1_COLOUR,
    _BAND2_COLOUR,
    _EXPECTED_COLOUR,
    _OBSERVED_COLOUR,
    _OVERLAY_STYLES,
    _axis_label,
    _new_axes,
    _padded,
    _patches,
    _plot_format,
    _save,
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
        ``PathPatch``), ``"points"`` (``PathCollection``), ``"colorbar"``, ``"forbidden"``,
        ``"overlay"`` (list of ``Line2D``), ``"legend"``.  Roles not drawn are absent.
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
