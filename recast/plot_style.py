"""Shared pieces of the plots: colours, figures, axis labels, the label block, saving."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recast.errors import ContourError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


from recast.contour_extraction import _Axis
from recast.hepdata_tables import _write_file

log = logging.getLogger(__name__)

__all__: list[str] = []

_FORMATS = ("png", "pdf", "svg")

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


def _padded(span: tuple[float, float], log_axis: bool, top: float = 0.03) -> tuple[float, float]:
    lo, hi = span
    if log_axis:
        a, b = math.log10(lo), math.log10(hi)
        pad = b - a
        return 10 ** (a - 0.03 * pad), 10 ** (b + top * pad)
    pad = hi - lo
    return lo - 0.03 * pad, hi + top * pad
