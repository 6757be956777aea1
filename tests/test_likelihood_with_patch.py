"""``Background.with_patch`` builds exactly the model of the full path.

The reference is ``likelihood.compile(jsonpatch.apply_patch(bkg, patch))``: every array
of the :class:`likelihood.CompiledModel` (dtype, shape and bits, entry order included),
the parameter names and order, bounds, inits, fixed flags, widths, auxdata, data, channels
and POI must be identical.  Checked on a sample of the real patches of 1Lbb, 3L eRJR and
sbottom (regions A, B, C: their patches remove a channel), and on made-up patches that
exercise each case of the fast path (shared and new modifiers, names that sort before,
between and after the background's, several samples in one channel, removed channels,
numbers that fix staterror / shapesys bins) and of the reference path (replace).  One
:class:`Background` takes many patches in a row, so whatever it caches is exercised too.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import numpy as np
import pytest

import likelihood
from likelihood import Background
from likelihood.validate import PatchTarget

MODEL_FIELDS = (
    "parameter_names",
    "poi_name",
    "poi_index",
    "init",
    "bounds",
    "fixed",
    "channels",
    "channel_nbins",
    "data",
    "auxdata",
    "widths",
    "measurement",
    "name",
)


def _same_bits(a: Any, b: Any, where: str) -> None:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype, (where, a.dtype, b.dtype)
        assert a.shape == b.shape, (where, a.shape, b.shape)
        assert a.flags.c_contiguous and b.flags.c_contiguous, where
        assert a.tobytes() == b.tobytes(), where  # bitwise: -0.0, nan payloads, order
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def assert_identical(fast: likelihood.Model, full: likelihood.Model, label: str = "") -> None:
    """Every array and attribute of two models, bit for bit."""
    assert fast.compiled._fields == full.compiled._fields
    for field, x, y in zip(fast.compiled._fields, fast.compiled, full.compiled, strict=True):
        _same_bits(x, y, f"{label}: compiled.{field}")
    for field in MODEL_FIELDS:
        _same_bits(getattr(fast, field), getattr(full, field), f"{label}: {field}")


def _reference(bkg: dict, patch: list, name: str | None = None, **options: Any) -> likelihood.Model:
    model = likelihood.compile(jsonpatch.apply_patch(bkg, patch), **options)
    model.name = name
    return model


# ---------------------------------------------------------------------------------------
# real patches
# ---------------------------------------------------------------------------------------
def _real_cases(shared, every: int) -> list[tuple[str, dict, list[tuple[str, list]]]]:
    cases = []
    for folder in ("1Lbb", "3L_eRJR"):
        bkg = json.loads((shared / folder / "BkgOnly.json").read_text())
        ps = json.loads((shared / folder / "patchset.json").read_text())
        picked = ps["patches"][::every]
        cases.append((folder, bkg, [(p["metadata"]["name"], p["patch"]) for p in picked]))
    for region in ("RegionA", "RegionB", "RegionC"):
        d = shared / "sbottom_multib" / region
        bkg = json.loads((d / "BkgOnly.json").read_text())
        files = sorted(d.glob("patch.*.json"))[:: 2 * every]
        cases.append((region, bkg, [(f.stem, json.loads(f.read_text())) for f in files]))
    return cases


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_patches_identical_to_full_compile(shared_hepdata) -> None:
    """A sample of the published patches (about one in five), one Background each."""
    for label, bkg, patches in _real_cases(shared_hepdata, every=5):
        target = PatchTarget(bkg)
        bg = Background(bkg, validate=False)
        for name, patch in patches:
            assert target.plan(patch) is not None, (label, name)  # the fast path
            fast = bg.with_patch(patch, name=name)
            assert_identical(fast, _reference(bkg, patch, name, validate=False), f"{label} {name}")
        # a fresh Background (nothing cached yet) gives the same model
        name, patch = patches[-1]
        fresh = Background(bkg, validate=False).with_patch(patch, name=name)
        assert_identical(fresh, bg.with_patch(patch, name=name), f"{label} fresh {name}")


# ---------------------------------------------------------------------------------------
# made-up patches: every case of the fast path, and the reference path
# ---------------------------------------------------------------------------------------
def _bkg_sample(name: str, data: list[float], channel: str, extra: list | None = None) -> dict:
    return {
        "name": name,
        "data": data,
        "modifiers": [
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": "jes", "type": "normsys", "data": {"hi": 1.05, "lo": 0.93}},
            {
                "name": "jes",
                "type": "histosys",
                "data": {"hi_data": [y * 1.1 for y in data], "lo_data": [y * 0.95 for y in data]},
            },
            {"name": f"stat_{channel}", "type": "staterror", "data": [0.1 * y for y in data]},
            *(extra or []),
        ],
    }


def _background() -> dict:
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    _bkg_sample("ttbar", [10.0, 6.0, 2.0], "SR"),
                    _bkg_sample(
                        "wjets",
                        [5.0, 3.0, 0.0],
                        "SR",
                        [{"name": "shape_w", "type": "shapesys", "data": [0.5, 0.3, 0.0]}],
                    ),
                ],
            },
            {
                "name": "CR",
                "samples": [
                    _bkg_sample(
                        "ttbar",
                        [100.0, 50.0],
                        "CR",
                        [
                            {"name": "mu_tt", "type": "normfactor", "data": None},
                            {"name": "sf_cr", "type": "shapefactor", "data": None},
                        ],
                    ),
                ],
            },
            {"name": "VR", "samples": [_bkg_sample("ttbar", [20.0], "VR")]},
        ],
        "observations": [
            {"name": "SR", "data": [16.0, 9.0, 3.0]},
            {"name": "CR", "data": [151.0, 49.0]},
            {"name": "VR", "data": [21.0]},
        ],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu_SIG",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.017],
                            "bounds": [[0.9, 1.1]],
                            "inits": [1.0],
                        },
                        {"name": "mu_SIG", "bounds": [[0.0, 5.0]]},
                        {"name": "sig_norm", "inits": [0.2]},
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


def _signal(name: str, data: list, channel: str, scale: float = 1.0, **kw: Any) -> dict:
    """A signal sample; ``kw`` switches on the less common modifiers."""
    mods: list[dict[str, Any]] = [
        {"name": "mu_SIG", "type": "normfactor", "data": None},
        {"name": "lumi", "type": "lumi", "data": None},  # shared with the background
        {"name": "jes", "type": "normsys", "data": {"hi": 1.0 + 0.1 * scale, "lo": 0.9}},
        {
            "name": "jes",
            "type": "histosys",
            "data": {"hi_data": [y * 1.2 for y in data], "lo_data": [y * 0.8 for y in data]},
        },
        {"name": f"stat_{channel}", "type": "staterror", "data": kw.get("stat", [0.2] * len(data))},
        {"name": "sig_norm", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},  # new
        {
            "name": "sig_shape",
            "type": "histosys",
            "data": {"hi_data": [y + 1 for y in data], "lo_data": list(data)},  # all-zero dn
        },
    ]
    if kw.get("shapesys"):
        mods.append({"name": f"sig_ss_{channel}", "type": "shapesys", "data": kw["shapesys"]})
    if kw.get("shapefactor"):
        mods.append({"name": "sf_cr", "type": "shapefactor", "data": None})
    if kw.get("own_stat"):
        mods.append({"name": f"sigstat_{channel}", "type": "staterror", "data": kw["own_stat"]})
    if kw.get("reverse"):
        mods.reverse()  # JSON order must not matter
    return {"name": name, "data": data, "modifiers": mods}


def _made_up_patches() -> list[tuple[str, list]]:
    sr = [3.0, 2, 0.5]  # an int among the floats
    add = "add"
    return [
        (
            "one SR",
            [{"op": add, "path": "/channels/0/samples/2", "value": _signal("sig", sr, "SR")}],
        ),
        (
            "every channel, names before the background's",
            [
                {"op": add, "path": "/channels/0/samples/0", "value": _signal("A_sig", sr, "SR")},
                {
                    "op": add,
                    "path": "/channels/1/samples/-",
                    "value": _signal("A_sig", [1.0, 0.5], "CR", 2.0),
                },
                {
                    "op": add,
                    "path": "/channels/2/samples/1",
                    "value": _signal("A_sig", [0.7], "VR"),
                },
            ],
        ),
        (
            "between, reversed JSON order, zero staterror and shapesys bins",
            [
                {
                    "op": add,
                    "path": "/channels/0/samples/1",
                    "value": _signal(
                        "u_sig",
                        sr,
                        "SR",
                        3.0,
                        stat=[0.2, 0.0, 0.0],
                        shapesys=[0.3, 0.0, 0.1],
                        reverse=True,
                    ),
                },
            ],
        ),
        (
            "two samples in one channel, a shapefactor, an own staterror",
            [
                {
                    "op": add,
                    "path": "/channels/1/samples/0",
                    "value": _signal("zz", [1.0, 2.0], "CR", shapefactor=True),
                },
                {
                    "op": add,
                    "path": "/channels/1/samples/0",
                    "value": _signal("b_sig", [0.0, 2.5], "CR", own_stat=[0.1, 0.3]),
                },
                {"op": add, "path": "/channels/0/samples/-", "value": _signal("zz", sr, "SR", 0.5)},
            ],
        ),
        (
            "removes a channel (as sbottom)",
            [
                {"op": add, "path": "/channels/0/samples/0", "value": _signal("sig", sr, "SR")},
                {"op": add, "path": "/channels/2/samples/0", "value": _signal("sig", [0.4], "VR")},
                {"op": "remove", "path": "/channels/1"},
            ],
        ),
        (
            "removes a channel it added a sample to, and another one",
            [
                {
                    "op": add,
                    "path": "/channels/1/samples/0",
                    "value": _signal("sig", [1.0, 0.0], "CR"),
                },
                {"op": "remove", "path": "/channels/1"},
                {
                    "op": add,
                    "path": "/channels/0/samples/0",
                    "value": _signal("sig", sr, "SR", 4.0),
                },
                {"op": "remove", "path": "/channels/1"},
            ],
        ),
        ("no signal, only a removal", [{"op": "remove", "path": "/channels/2"}]),
    ]


def _reference_path_patches(bkg: dict) -> list[tuple[str, list]]:
    """Valid patches that the fast path leaves to the full compile."""
    sig = _signal("sig", [3.0, 2.0, 0.5], "SR")
    replaced = copy.deepcopy(bkg["channels"][0]["samples"][1])
    replaced["data"] = [4.0, 2.0, 1.0]
    return [
        (
            "replace a background sample",
            [
                {"op": "add", "path": "/channels/0/samples/2", "value": sig},
                {"op": "replace", "path": "/channels/0/samples/1", "value": replaced},
            ],
        ),
        (
            "add a sample and a measurement setting",
            [
                {"op": "add", "path": "/channels/0/samples/2", "value": sig},
                {
                    "op": "add",
                    "path": "/measurements/0/config/parameters/-",
                    "value": {"name": "jes", "bounds": [[-3.0, 3.0]]},
                },
            ],
        ),
    ]


@pytest.mark.parametrize(
    "settings",
    [None, {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}],
)
def test_made_up_patches_identical_to_full_compile(settings: dict | None) -> None:
    bkg = _background()
    target = PatchTarget(bkg)
    bg = Background(bkg, modifier_settings=settings)
    fast_cases = _made_up_patches()
    for name, patch in fast_cases:
        assert target.plan(patch) is not None, name  # these take the fast path
    slow_cases = _reference_path_patches(bkg)
    for name, patch in slow_cases:
        assert target.plan(patch) is None, name  # these take the full compile
    # twice over, in two orders: the caches of the Background must not matter
    sequence = fast_cases + slow_cases
    for name, patch in [*sequence, *reversed(sequence)]:
        fast = bg.with_patch(patch, name=name)
        assert_identical(fast, _reference(bkg, patch, name, modifier_settings=settings), name)
    # the same shapes with other numbers (and zero staterror bins) after the first ones
    for name, patch in fast_cases:
        other = copy.deepcopy(patch)
        for op in other:
            if op["op"] == "add":
                op["value"]["data"] = [
                    0.0 if i == 1 else 2 * y for i, y in enumerate(op["value"]["data"])
                ]
                for m in op["value"]["modifiers"]:
                    if m["type"] == "staterror":
                        m["data"] = [0.0] + m["data"][1:]
        fast = bg.with_patch(other, name=name)
        assert_identical(fast, _reference(bkg, other, name, modifier_settings=settings), name)
