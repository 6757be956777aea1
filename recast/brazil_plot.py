"""The Brazil plot: CLs against one mass with the expected band and the crossings."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


from recast.contour_extraction import CLS_COLUMNS, _confidence, _slice_1d, find_crossings
from recast.errors import ContourError
from recast.plot_style import (
    _BRAZIL_GREEN,
    _BRAZIL_YELLOW,
    _axis_label,
    _label_block,
    _new_axes,
    _plot_format,
    _save,
    label_lines,
)

log = logging.getLogger(__name__)

__all__ = ["BrazilPlot", "plot_brazil", "export_brazil"]


class BrazilPlot(NamedTuple):
    """What :func:`plot_brazil` drew.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
    artists : dict[str, Any]
        Role -> artist: ``"observed"``, ``"expected"``, ``"band_1sigma"``,
        ``"band_2sigma"``, ``"level"``, ``"crossings"``, ``"label_block"``, ``"legend"``.
    crossings : dict[str, numpy.ndarray]
        Curve name -> x values, shape (k,), where the curve crosses the CLs level
        (see :func:`find_crossings`).
    """

    figure: Figure
    ax: Axes
    artists: dict[str, Any]
    crossings: dict[str, np.ndarray]


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
    analysis: str | None = None,
    sqrt_s: float | None = None,
    lumi: float | None = None,
    label_block: bool = True,
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
    unit, xlabel, output, dpi, figsize
        As in :func:`plot_exclusion` (``xlabel`` keeps the unit).
    title : str, optional
        Title; the slice ``where`` is named in it (default title: ``CLs along <x>,
        <where>``).
    analysis, sqrt_s, lumi, label_block
        The label block, as in :func:`plot_exclusion` (top left, artist
        ``"label_block"``).
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
        # no lower bound: a CLs of 1e-12 is drawn where it is, not clipped; only CLs = 0
        # exactly (underflow) sits on the bottom edge
        central = np.concatenate([col["observed"], col["expected"]])
        positive = central[central > 0]
        lowest = float(positive.min()) if len(positive) else level
        floor = min(lowest, level) / 3.0
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
    if title is None and where:
        title = f"CLs along {x}, {where}"
    elif title and where and where not in title:
        title = f"{title} ({where})"
    if title:
        axes.set_title(title)
    handles, labels = axes.get_legend_handles_labels()
    if not len(cx):
        keep = [i for i, lab in enumerate(labels) if lab != "crossings"]
        handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    if label_block:
        artists["label_block"] = _label_block(
            axes, label_lines(analysis=analysis, sqrt_s=sqrt_s, lumi=lumi, level=level),
            loc="upper left",
        )  # fmt: skip
    artists["legend"] = axes.legend(
        handles, labels, loc="lower right" if label_block else "best", fontsize="small",
        frameon=False,
    )  # fmt: skip
    _save(fig, output, dpi)
    return BrazilPlot(figure=fig, ax=axes, artists=artists, crossings=crossings)


def export_brazil(
    results: pd.DataFrame,
    x: str,
    path: str | os.PathLike[str],
    *,
    level: float = 0.05,
    where: str | None = None,
    logx: bool = False,
    z_max: float = 5.0,
) -> Path:
    """Write the curves of a Brazil plot as a HEPData-style CSV table.

    One table: ``#:`` header lines (``name``, ``description``, ``level``, ``where`` and one
    ``crossing <curve>`` line per curve with the x values where it crosses the level),
    the column header ``<x>, cls_obs, cls_exp_m2 ... cls_exp_p2`` (the columns present,
    plus ``region`` for best-expected results) and one row per point, sorted by ``x``;
    :func:`recast.contour.read_hepdata_csv` reads it back.

    Returns
    -------
    pathlib.Path
        The path written (atomically).
    """
    import csv
    import io

    from recast.hepdata_tables import _write_file

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ContourError(f"cannot export a Brazil plot as {path}: use a .csv suffix")
    frame, present = _slice_1d(results, x, where=where, logx=logx)
    crossings = find_crossings(frame, x, level=level, logx=logx, z_max=z_max)
    columns = [x, *(CLS_COLUMNS[n] for n in present)]
    if "region" in frame.columns:
        columns.append("region")
    buf = io.StringIO()
    buf.write(f"#: name: CLs along {x}\n")
    buf.write(
        f"#: description: observed and expected CLs against {x}"
        f"{f' ({where})' if where else ''}; CLs = {level:g} is the {_confidence(level)} "
        "exclusion (recastkit)\n"
    )
    buf.write(f"#: level: {level!r}\n")
    if where:
        buf.write(f"#: where: {where}\n")
    for name, values in crossings.items():
        buf.write(f"#: crossing {name}: {' '.join(repr(float(v)) for v in values) or '-'}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for rec in frame[columns].itertuples(index=False):
        writer.writerow([v if isinstance(v, str) else repr(float(v)) for v in rec])
    data = buf.getvalue().encode()
    _write_file(path, lambda handle: handle.write(data))
    log.info("wrote the CLs curves along %s to %s", x, path)
    return path
