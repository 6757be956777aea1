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

__all__ = ["PARTICLE_LABELS", "label_lines"]

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


#: Label columns whose particle is known: column name (lower case) -> mathtext label.
PARTICLE_LABELS: dict[str, str] = {
    "m_sbottom": r"$m(\tilde{b}_1)$",
    "m_sb": r"$m(\tilde{b}_1)$",
    "m_stop": r"$m(\tilde{t}_1)$",
    "m_gluino": r"$m(\tilde{g})$",
    "m_n1": r"$m(\tilde{\chi}^0_1)$",
    "m_n2": r"$m(\tilde{\chi}^0_2)$",
    "m_c1": r"$m(\tilde{\chi}^{\pm}_1)$",
    "mn1": r"$m(\tilde{\chi}^0_1)$",
    "mn2": r"$m(\tilde{\chi}^{\pm}_1/\tilde{\chi}^0_2)$",
    "mc1": r"$m(\tilde{\chi}^{\pm}_1)$",
    "m_slepton": r"$m(\tilde{\ell})$",
}


def _axis_label(
    name: str,
    label: str | None,
    unit: str | None,
    labels: dict[str, str] | None = None,
) -> str:
    """``label`` (with `` [unit]`` appended unless it has a unit), else the particle name.

    Lookup order for the default: ``labels`` (the user's, or the source's), then
    :data:`PARTICLE_LABELS`, then the column name itself.
    """
    if label is None:
        label = (labels or {}).get(name) or PARTICLE_LABELS.get(name.lower()) or name
    if unit and "[" not in label:
        return f"{label} [{unit}]"
    return label


def _label_block(ax: Axes, lines: list[str], *, loc: str = "upper right") -> Any:
    """The experiment-style text block (analysis, sqrt(s) and luminosity, CL) in ``ax``."""
    from matplotlib.offsetbox import AnchoredText

    box = AnchoredText(
        "\n".join(lines),
        loc=loc,
        frameon=True,
        prop={"fontsize": "small", "linespacing": 1.4},
        borderpad=0.6,
    )
    box.patch.set(facecolor="white", edgecolor="none", alpha=0.85)
    box.set_zorder(6)
    ax.add_artist(box)
    return box


def label_lines(
    *,
    analysis: str | None,
    sqrt_s: float | None,
    lumi: float | None,
    level: float,
) -> list[str]:
    """Lines of the label block: analysis name, ``sqrt(s) = 13 TeV, 139 fb^-1``, the CL."""
    lines = []
    if analysis:
        lines.append(analysis)
    energy = []
    if sqrt_s is not None:
        energy.append(f"$\\sqrt{{s}}$ = {sqrt_s:g} TeV")
    if lumi is not None:
        energy.append(f"{lumi:g} fb$^{{-1}}$")
    if energy:
        lines.append(", ".join(energy))
    lines.append(f"All limits at {100.0 * (1.0 - level):g}% CL")
    return lines


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
