"""pyhf's own combination of two real likelihoods: the oracle of ``test_combine.py``.

The combination is built with pyhf and jsonpatch only (no recastkit code): each analysis'
official signal patch is applied to its BkgOnly.json, the measurements are renamed to one
name, the settings that recastkit is told to use are written into the inputs, and
``pyhf.Workspace.combine(..., join="outer")`` joins them.  The points pair an official
1Lbb patch with an official sbottom RegionA patch (a made-up "model" that populates both
analyses; what matters is that both sides compute the same likelihood).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["POINTS", "SETTINGS", "LUMI_SETTINGS", "inputs", "pyhf_combined"]

SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
# 1Lbb fixes lumi, sbottom leaves it free: the combination is told to fix it everywhere
LUMI_SETTINGS = {"lumi": {"fixed": True}}
# (1Lbb patch values [m1, m2], sbottom RegionA legacy patch name)
POINTS = [([300, 150], "sbottom_1000_131_1"), ([700, 0], "sbottom_1300_205_60")]


@functools.lru_cache(maxsize=8)
def _load(path: Path) -> Any:
    return json.loads(path.read_text())  # read once; callers copy before changing


def inputs(shared: Path, point: int) -> dict[str, Any]:
    """The raw inputs of one point: both BkgOnly, the 1Lbb patch, the sbottom patch ops."""
    values, sb_name = POINTS[point]
    lbb_ps = _load(shared / "1Lbb" / "patchset.json")
    lbb_patch = next(p for p in lbb_ps["patches"] if p["metadata"]["values"] == values)
    return {
        "lbb": _load(shared / "1Lbb" / "BkgOnly.json"),
        "lbb_patchset": lbb_ps,
        "lbb_patch": lbb_patch,
        "sb": _load(shared / "sbottom_multib" / "RegionA" / "BkgOnly.json"),
        "sb_ops": _load(shared / "sbottom_multib" / "RegionA" / f"patch.{sb_name}.json"),
        "values": values,
    }


def pyhf_combined(shared: Path, point: int) -> Any:
    """pyhf.Workspace of the combination of the two patched workspaces."""
    import jsonpatch
    import pyhf

    raw = inputs(shared, point)
    lbb = jsonpatch.apply_patch(raw["lbb"], raw["lbb_patch"]["patch"])
    sb = copy.deepcopy(raw["sb"])
    for par in sb["measurements"][0]["config"]["parameters"]:
        if par["name"] in LUMI_SETTINGS:
            par.update(LUMI_SETTINGS[par["name"]])
    sb = jsonpatch.apply_patch(sb, raw["sb_ops"])
    left = pyhf.Workspace(lbb)
    right = pyhf.Workspace(sb).rename(
        measurements={sb["measurements"][0]["name"]: lbb["measurements"][0]["name"]}
    )
    return pyhf.Workspace.combine(left, right, join="outer")
