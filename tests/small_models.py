"""Tiny HistFactory workspaces for the scan, upper-limit, toy and significance tests.

One channel ``SR`` with one background sample (a normsys ``norm_bkg`` of +-10%) and a
POI ``mu_SIG`` that only a signal patch (:func:`signal_patch`) brings in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def one_channel_workspace(
    background: Sequence[float],
    observed: Sequence[float],
    *,
    poi_bounds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The workspace; ``poi_bounds`` adds a measurement setting of ``mu_SIG``."""
    parameters: list[dict[str, Any]] = []
    if poi_bounds is not None:
        parameters.append({"name": "mu_SIG", "bounds": [list(poi_bounds)], "inits": [1.0]})
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "bkg",
                        "data": [float(b) for b in background],
                        "modifiers": [
                            {"name": "norm_bkg", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}
                        ],
                    }
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [float(n) for n in observed]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu_SIG", "parameters": parameters}}],
        "version": "1.0.0",
    }


def signal_patch(sr: Sequence[float]) -> list[dict[str, Any]]:
    """The patch adding a signal sample with yields ``sr`` and the normfactor ``mu_SIG``."""
    return [
        {
            "op": "add",
            "path": "/channels/0/samples/1",
            "value": {
                "name": "signal",
                "data": list(sr),
                "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
            },
        }
    ]
