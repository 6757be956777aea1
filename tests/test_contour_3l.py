"""The 3L eRJR exclusion (ATLAS-SUSY-2018-06) against ATLAS's published contours.

pyhf 0.7.6's CLs for the 64 points (on the workspace with its one degenerate shapesys
removed, SOURCES.md gotcha 1) give the observed and expected CLs = 0.05 contours in the
mn2-mn1 plane; their mean distance to HEPData's ``ObservedLimit3LeRJR`` and
``ExpectedLimit3LeRJR`` curves, each axis divided by the range of the grid, is compared
for the default method and for linear interpolation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recast.contour import contour_distance, exclusion_contour, read_hepdata_csv

BAND = ("cls_exp_m2", "cls_exp_m1", "cls_exp", "cls_exp_p1", "cls_exp_p2")


@pytest.fixture(scope="module")
def reference(shared_hepdata: Path) -> tuple[pd.DataFrame, dict]:
    folder = shared_hepdata / "3L_eRJR" / "reference"
    doc = json.loads((folder / "pyhf-0.7.6_cls_pruned.json").read_text())
    assert doc["labels"] == ["mn2", "mn1"]
    rows = [
        {
            "patch": r["name"],
            "mn2": float(r["values"][0]),
            "mn1": float(r["values"][1]),
            "cls_obs": r["CLs_obs"],
            **dict(zip(BAND, r["CLs_exp"], strict=True)),
        }
        for r in doc["results"]
    ]
    csv = folder / "HEPData-ins1771533-v1-csv"
    published = {}
    for curve, stem in (("observed", "ObservedLimit3LeRJR"), ("expected", "ExpectedLimit3LeRJR")):
        (table,) = read_hepdata_csv(csv / f"{stem}.csv")
        published[curve] = table.data.to_numpy(float)
    return pd.DataFrame(rows), published


@pytest.mark.parametrize(
    ("curve", "default_bound", "linear_measured"),
    # measured: observed 0.0070 (rbf) / 0.0161 (linear); expected 0.0084 / 0.0139
    [("observed", 0.0075, 0.0161), ("expected", 0.009, 0.0139)],
)
def test_default_contour_within_one_percent_of_the_published_one(
    reference, curve, default_bound, linear_measured
):
    results, published = reference
    distances = {}
    for method in (None, "linear"):
        options = {} if method is None else {"method": method}
        contours = exclusion_contour(results, "mn2", "mn1", forbidden="mn1 >= mn2", **options)
        assert contours.x_range == (100.0, 500.0) and contours.y_range == (0.0, 300.0)
        distances[method] = contour_distance(
            contours.curves[curve], published[curve], x_range=contours.x_range,
            y_range=contours.y_range,
        )  # fmt: skip
    assert distances[None].mean < default_bound < 0.01, distances[None]
    assert distances[None].max < 0.03, distances[None]
    # the default is no worse than the former default (linear) on this reference
    assert distances["linear"].mean == pytest.approx(linear_measured, abs=5e-4)
    assert distances[None].mean < distances["linear"].mean
