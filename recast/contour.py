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

The code is cut by concept: :mod:`recast.contour_extraction` (significance, interpolation,
iso-lines, crossings), :mod:`recast.hepdata_tables` (HEPData CSV, results files, export,
distances), :mod:`recast.exclusion_plot`, :mod:`recast.brazil_plot` and
:mod:`recast.plot_style`; this module gathers their public names.
"""

from __future__ import annotations

from recast.brazil_plot import BrazilPlot, export_brazil, plot_brazil
from recast.contour_extraction import (
    CLS_COLUMNS,
    CURVES,
    Contours,
    exclusion_contour,
    find_crossings,
    significance,
)
from recast.exclusion_plot import ExclusionPlot, plot_exclusion
from recast.hepdata_tables import (
    ContourDistance,
    HEPDataTable,
    contour_distance,
    export_contours,
    read_hepdata_csv,
    read_results,
)

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
    "export_brazil",
]
