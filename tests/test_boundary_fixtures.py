"""Every path that accepts a patch rejects every bad input identically (issue 11 section 1).

The reference is ``compile(apply_patch(bkgonly, patch, source=name))``.  Each fixture of
``BAD`` is fed to every path of ``PATHS``; each path must reject it with the reference's
exception type and message:

- ``Background.with_patch`` and ``validate_patch(..., bkgonly=)``: the very same message;
- ``validate_patchset(..., bkgonly=)`` and make-patch's validation: the same type, the
  message after the name of the patchset / point;
- ``recast.scan`` on a one-point patchset: a row with status ``invalid_patch`` whose
  message is the reference message (on one line).

Another path (e.g. ``recast.combine``) is one more entry of ``PATHS``.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

import likelihood
from likelihood.errors import InvalidPatch, InvalidSpecification, InvalidWorkspace
from likelihood.validate import PatchTarget, validate_patch, validate_patchset

NAME = "pt_1"


def background() -> dict[str, Any]:
    """Two channels (3 and 2 bins), normsys / histosys / staterror / shapesys / lumi."""

    def bkg_sample(name: str, data: list[float], channel: str) -> dict[str, Any]:
        n = len(data)
        return {
            "name": name,
            "data": data,
            "modifiers": [
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": "jes", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}},
                {
                    "name": "jer",
                    "type": "histosys",
                    "data": {
                        "hi_data": [y * 1.1 for y in data],
                        "lo_data": [y * 0.9 for y in data],
                    },
                },
                {
                    "name": f"staterror_{channel}",
                    "type": "staterror",
                    "data": [0.1 * y for y in data],
                },
                {"name": f"shape_{channel}_{name}", "type": "shapesys", "data": [0.2] * n},
            ],
        }

    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    bkg_sample("ttbar", [10.0, 6.0, 2.0], "SR"),
                    bkg_sample("wjets", [5.0, 3.0, 1.0], "SR"),
                ],
            },
            {
                "name": "CR",
                "samples": [
                    {
                        **bkg_sample("ttbar", [100.0, 50.0], "CR"),
                        "modifiers": [
                            *bkg_sample("ttbar", [100.0, 50.0], "CR")["modifiers"],
                            {"name": "mu_tt", "type": "normfactor", "data": None},
                        ],
                    }
                ],
            },
        ],
        "observations": [{"name": "SR", "data": [16, 9, 3]}, {"name": "CR", "data": [98, 55]}],
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
                        {"name": "mu_SIG", "bounds": [[0.0, 10.0]], "inits": [1.0]},
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


def signal(channel: str = "SR", data: list[float] | None = None) -> dict[str, Any]:
    data = [2.0, 1.0, 0.5] if data is None else data
    return {
        "name": "signal",
        "data": data,
        "modifiers": [
            {"name": "mu_SIG", "type": "normfactor", "data": None},
            {"name": "lumi", "type": "lumi", "data": None},
            {"name": "jes", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            {
                "name": "jer",
                "type": "histosys",
                "data": {"hi_data": [y * 1.2 for y in data], "lo_data": [y * 0.8 for y in data]},
            },
            {"name": f"staterror_{channel}", "type": "staterror", "data": [0.1] * len(data)},
            {"name": "sig_theory", "type": "normsys", "data": {"hi": 1.2, "lo": 0.8}},
        ],
    }


def add(value: Any, path: str = "/channels/0/samples/-") -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def _mod(sample: dict[str, Any], k: int, **data: Any) -> dict[str, Any]:
    sample["modifiers"][k]["data"] = dict(sample["modifiers"][k]["data"], **data)
    return sample


def _with(func: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    s = signal()
    func(s)
    return s


class Bad(NamedTuple):
    patch: Any
    names: tuple[str, ...]  # what the reference message must name (path, value)


BAD: dict[str, Bad] = {
    "negative yield": Bad(
        [add(signal(data=[2.0, -5.0, 0.5]))],
        ("/channels/0/samples/2/data/1", "-5.0", "negative nominal yield"),
    ),
    "NaN yield": Bad([add(signal(data=[2.0, math.nan, 0.5]))], ("/data/1", "nan")),
    "inf yield": Bad([add(signal(data=[math.inf, 1.0, 0.5]))], ("/data/0", "inf")),
    "wrong bin count": Bad([add(signal(data=[2.0, 1.0]))], ("/channels/0/samples/2/data", "2 bin")),
    "normsys lo <= 0": Bad(
        [add(_mod(signal(), 2, lo=-1.0))], ("/channels/0/samples/2/modifiers/2/data/lo", "-1.0")
    ),
    "normsys lo = 0": Bad([add(_mod(signal(), 2, lo=0.0))], ("/modifiers/2/data/lo", "0.0")),
    "normsys hi <= 0": Bad([add(_mod(signal(), 5, hi=0))], ("/modifiers/5/data/hi", "= 0")),
    "histosys wrong length": Bad(
        [add(_mod(signal(), 3, hi_data=[1.0, 2.0]))], ("/modifiers/3/data/hi_data", "2 bin")
    ),
    "negative staterror": Bad(
        [add(_with(lambda s: s["modifiers"][4].update(data=[0.1, -0.1, 0.1])))],
        ("/modifiers/4/data/1", "-0.1"),
    ),
    "duplicate sample name": Bad(
        [add(_with(lambda s: s.update(name="ttbar")))], ("/channels/0/samples/2/name", "'ttbar'")
    ),
    "sample added twice": Bad([add(signal()), add(signal())], ("duplicate sample name 'signal'",)),
    "duplicate modifier": Bad(
        [add(_with(lambda s: s["modifiers"].append(dict(s["modifiers"][2]))))],
        ("/modifiers/6", "duplicate normsys modifier 'jes'"),
    ),
    "unknown modifier type": Bad(
        [add(_with(lambda s: s["modifiers"].append({"name": "x", "type": "magic", "data": None})))],
        ("/modifiers/6/type", "'magic'"),
    ),
    "schema: unexpected key": Bad(
        [add(_with(lambda s: s.update(colour="red")))], ("/channels/0/samples/2", "'colour'")
    ),
    "schema: missing modifiers": Bad(
        [add(_with(lambda s: s.pop("modifiers")))], ("/channels/0/samples/2", "'modifiers'")
    ),
    "schema: yield is a string": Bad(
        [add(_with(lambda s: s["data"].__setitem__(1, "1.0")))],
        ("/channels/0/samples/2/data/1", "'1.0'"),
    ),
    "lumi modifier not named lumi": Bad(
        [add(_with(lambda s: s["modifiers"][1].update(name="lumi2")))], ("/modifiers/1",)
    ),
    "incompatible modifier types": Bad(
        [
            add(
                _with(
                    lambda s: s["modifiers"].append(
                        {"name": "mu_tt", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}
                    )
                )
            )
        ],
        ("/modifiers/5/type", "'mu_tt'", "normfactor", "['normsys']"),
    ),
    "shapesys name reused": Bad(
        [
            add(
                _with(
                    lambda s: s["modifiers"].append(
                        {"name": "shape_SR_ttbar", "type": "shapesys", "data": [0.1] * 3}
                    )
                )
            )
        ],
        ("/modifiers/6", "'shape_SR_ttbar'"),
    ),
    "staterror of another channel": Bad(
        [add(_with(lambda s: s["modifiers"][4].update(name="staterror_CR")))],
        ("/channels/0/samples/2/modifiers/4", "'staterror_CR'", "the same name has 3"),
    ),
    "sample to a missing channel": Bad(
        [add(signal(), "/channels/2/samples/-")], ("operation 0", "/channels/2/samples/-")
    ),
    "sample index beyond the end": Bad(
        [add(signal(), "/channels/0/samples/7")], ("operation 0", "/channels/0/samples/7")
    ),
    "removed channel out of range": Bad(
        [add(signal()), {"op": "remove", "path": "/channels/2"}],
        ("operation 1", "remove /channels/2"),
    ),
    "sample to a channel shifted away": Bad(
        [
            {"op": "remove", "path": "/channels/0"},
            add(signal("CR", [1.0, 1.0]), "/channels/1/samples/-"),
        ],
        ("operation 1", "/channels/1/samples/-"),
    ),
    "all channels removed": Bad(
        [{"op": "remove", "path": "/channels/1"}, {"op": "remove", "path": "/channels/0"}],
        ("/channels", "[]"),
    ),
    "removal leaves a bad sample": Bad(
        [{"op": "remove", "path": "/channels/1"}, add(signal(data=[1.0, -2.0, 1.0]))],
        ("/channels/0/samples/2/data/1", "-2.0"),
    ),
    "unknown operation": Bad(
        [{"op": "frobnicate", "path": "/channels/0"}], ("operation 0", "frobnicate")
    ),
    "operation is not an object": Bad(["add"], ("operation 0", "'add'")),
    "patch is not a list": Bad({"op": "add"}, ("list of operations", "dict")),
    "replace makes a negative observation": Bad(
        [add(signal()), {"op": "replace", "path": "/observations/0/data/0", "value": -1}],
        ("/observations/0/data/0", "-1"),
    ),
    "replace makes a bad setting": Bad(
        [
            add(signal()),
            {
                "op": "replace",
                "path": "/measurements/0/config/parameters/1/bounds",
                "value": [[2.0, 1.0]],
            },
        ],
        ("/measurements/0/config/parameters/1/bounds/0", "lower > upper"),
    ),
    "setting of the wrong size": Bad(
        [
            add(
                _with(
                    lambda s: s["modifiers"].append(
                        {"name": "lumi", "type": "staterror", "data": [0.1] * 3}
                    )
                )
            )
        ],
        ("'lumi'",),
    ),
}


def reference(bkg: dict[str, Any], patch: Any) -> InvalidSpecification:
    with pytest.raises(InvalidSpecification) as info:
        likelihood.compile(likelihood.apply_patch(bkg, patch, source=NAME))
    return info.value


def _raised(func: Callable[[], Any]) -> BaseException:
    with pytest.raises(InvalidSpecification) as info:
        func()
    return info.value


def one_point(bkg: dict[str, Any], patch: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "description": "one bad point",
            "digests": {"sha256": likelihood.digest(bkg)},
            "labels": ["m1"],
            "references": {"hepdata": "ins1234567"},
        },
        "patches": [{"metadata": {"name": NAME, "values": [100]}, "patch": patch}],
        "version": "1.0.0",
    }


def _exact(err: BaseException, ref: BaseException) -> None:
    assert type(err) is type(ref)
    assert str(err) == str(ref)


def _prefixed(err: BaseException, ref: BaseException) -> None:
    assert type(err) is type(ref)
    assert str(err).endswith(": " + str(ref)), str(err)


def _scan_row(bkg: dict[str, Any], patch: Any) -> dict[str, Any]:
    import recast

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way
        table = recast.scan(bkg, one_point(bkg, patch), jobs=1)
    assert len(table) == 1
    return table.iloc[0].to_dict()


def _scan_check(bkg: dict[str, Any], patch: Any, ref: BaseException) -> None:
    row = _scan_row(bkg, patch)
    assert row["status"] == "invalid_patch", row
    assert row["message"] == " ".join(str(ref).split())
    assert math.isnan(row["cls_obs"])


def _makepatch_check(bkg: dict[str, Any], patch: Any, ref: BaseException) -> None:
    from recast.patch import _validate

    ps = one_point(bkg, patch)
    _prefixed(_raised(lambda: _validate(ps, bkg, "bkg.json", mode="fast", progress=False)), ref)
    _prefixed(_raised(lambda: _validate(ps, bkg, "bkg.json", mode="full", progress=False)), ref)


def _other_analysis(bkg: dict[str, Any]) -> dict[str, Any]:
    """A valid workspace like ``bkg`` whose channel names differ (a second analysis)."""
    other = copy.deepcopy(bkg)
    for c in other["channels"]:
        c["name"] = "X_" + c["name"]
    for o in other["observations"]:
        o["name"] = "X_" + o["name"]
    return other


def _combine_check(bkg: dict[str, Any], patch: Any, ref: BaseException) -> None:
    import recast

    _prefixed(
        _raised(
            lambda: recast.combine_likelihoods(
                {"a": bkg, "b": _other_analysis(bkg)}, patchsets=[one_point(bkg, patch), None]
            )
        ),
        ref,
    )


#: name -> check(bkgonly, patch, reference error)
PATHS: dict[str, Callable[[dict[str, Any], Any, BaseException], None]] = {
    "Background.with_patch": lambda bkg, patch, ref: _exact(
        _raised(lambda: likelihood.Background(bkg).with_patch(patch, name=NAME)), ref
    ),
    "validate_patch(bkgonly=)": lambda bkg, patch, ref: _exact(
        _raised(lambda: validate_patch(patch, source=NAME, bkgonly=bkg)), ref
    ),
    "validate_patchset(bkgonly=)": lambda bkg, patch, ref: _prefixed(
        _raised(lambda: validate_patchset(one_point(bkg, patch), bkgonly=bkg)), ref
    ),
    "make-patch validation": _makepatch_check,
    "recast.scan": _scan_check,
    "recast.combine_likelihoods": _combine_check,
}


def test_the_background_and_a_good_patch_pass_every_path() -> None:
    bkg = background()
    likelihood.validate_workspace(bkg)
    patch = [add(signal()), add(signal("CR", [3.0, 1.0]), "/channels/1/samples/0")]
    assert PatchTarget(bkg).plan(patch) is not None  # the fast path takes it
    fast = likelihood.Background(bkg).with_patch(patch, name=NAME)
    full = likelihood.compile(likelihood.apply_patch(bkg, patch))
    assert fast.parameter_names == full.parameter_names
    for a, b in zip(fast.compiled, full.compiled, strict=True):
        assert np.array_equal(a, b)
    validate_patch(patch, bkgonly=bkg)
    validate_patchset(one_point(bkg, patch), bkgonly=bkg)
    row = _scan_row(bkg, patch)
    assert row["status"] == "ok" and 0.0 < row["cls_obs"] < 1.0


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_path_rejects_a_bad_patch_identically(case: str) -> None:
    bkg = background()
    bad = BAD[case]
    ref = reference(bkg, copy.deepcopy(bad.patch))
    # the reference names the place and the value
    for part in bad.names:
        assert part in str(ref), f"{part!r} not in {ref}"
    assert isinstance(ref, (InvalidPatch, InvalidWorkspace))
    for name, check in PATHS.items():
        try:
            check(bkg, copy.deepcopy(bad.patch), ref)
        except AssertionError as err:
            raise AssertionError(f"path {name!r} on fixture {case!r}: {err}") from err


def test_malformed_json_is_named_with_file_and_line(tmp_path: Path) -> None:
    import recast
    from recast.errors import ScanError

    bkg = tmp_path / "BkgOnly.json"
    bkg.write_text(json.dumps(background()))
    bad = tmp_path / "patchset.json"
    bad.write_text('{"metadata": {"labels": ["m1"]},\n "patches": [,]}')
    ref = _raised(lambda: likelihood.read_json(bad))
    assert "line 2" in str(ref) and str(bad) in str(ref)
    with pytest.raises(ScanError) as info:
        recast.scan(bkg, bad, jobs=1)
    assert str(ref) in str(info.value)


def test_duplicate_values_are_refused_naming_both_patches() -> None:
    bkg = background()
    ps = one_point(bkg, [add(signal())])
    ps["patches"].append(
        {"metadata": {"name": "pt_2", "values": [100.0]}, "patch": [add(signal())]}
    )
    msg = str(_raised(lambda: validate_patchset(ps, source="ps.json")))
    for part in (
        "ps.json",
        "/patches/1/metadata/values",
        "duplicate values [100.0]",
        "'pt_1'",
        "'pt_2'",
    ):
        assert part in msg, msg
    import recast
    from recast.errors import ScanError

    with pytest.raises(ScanError, match=r"duplicate values .*'pt_1' and 1 'pt_2'"):
        recast.scan(bkg, ps, jobs=1)


def test_patchset_fast_path_checks_every_patch() -> None:
    bkg = background()
    ps = one_point(bkg, [add(signal(data=[2.0, -5.0, 0.5]))])
    # without the background: the patch's own checks (paths inside the patchset)
    msg = str(_raised(lambda: validate_patchset(ps, source="ps.json")))
    assert "/patches/0/patch/0/value/data/1" in msg and "-5.0" in msg


def test_scan_1lbb_negative_yield_and_bad_normsys_are_invalid_patch(shared_hepdata: Path) -> None:
    """The issue's example: 1Lbb C1N2_Wh_hbb_1000_100 with -5.0 in one SR bin gave status
    ok and cls_obs 0.5285; a signal normsys with lo = -1 gave fit_failed with NaN-NLL
    messages and RuntimeWarnings."""
    import recast

    bkg = likelihood.read_json(shared_hepdata / "1Lbb" / "BkgOnly.json")
    ps = likelihood.read_json(shared_hepdata / "1Lbb" / "patchset.json")
    (point,) = [p for p in ps["patches"] if p["metadata"]["name"] == "C1N2_Wh_hbb_1000_100"]
    negative = copy.deepcopy(point)
    negative["metadata"] = {"name": "negative_yield", "values": [1000, 101]}
    (k,) = [i for i, op in enumerate(negative["patch"]) if op["path"].startswith("/channels/5/")]
    negative["patch"][k]["value"]["data"][1] = -5.0
    lo = copy.deepcopy(point)
    lo["metadata"] = {"name": "normsys_lo", "values": [1000, 102]}
    mods = lo["patch"][k]["value"]["modifiers"]
    j = next(i for i, m in enumerate(mods) if m["type"] == "normsys")
    mods[j]["data"]["lo"] = -1.0
    ps = {**ps, "patches": [negative, lo]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = recast.scan(bkg, ps, jobs=1)
    rows = {r["patch"]: r for r in table.to_dict("records")}
    sr = negative["patch"][k]["path"].split("/")
    assert rows["negative_yield"]["status"] == "invalid_patch"
    assert f"/channels/5/samples/{sr[-1]}/data/1" in rows["negative_yield"]["message"]
    assert "-5.0" in rows["negative_yield"]["message"]
    assert rows["normsys_lo"]["status"] == "invalid_patch"
    assert f"/modifiers/{j}/data/lo" in rows["normsys_lo"]["message"]
    assert "-1.0" in rows["normsys_lo"]["message"]
    assert all(math.isnan(r["cls_obs"]) for r in rows.values())


def _mutations(rng: Any, patch: list[Any]) -> Any:
    """A random small corruption of a good patch (values, keys, lengths, paths, types)."""
    patch = copy.deepcopy(patch)
    op = rng.choice(patch)
    sample = op["value"]
    choice = rng.randrange(12)
    bad_numbers = [-1.0, -1e-9, 0.0, math.nan, math.inf, "1", True, None, 10**400, 1e308]
    if choice == 0:
        sample["data"][rng.randrange(len(sample["data"]))] = rng.choice(bad_numbers)
    elif choice == 1:
        sample["data"].append(1.0) if rng.random() < 0.5 else sample["data"].pop()
    elif choice == 2:
        m = rng.choice([m for m in sample["modifiers"] if m["type"] == "normsys"])
        m["data"][rng.choice(["hi", "lo"])] = rng.choice(bad_numbers)
    elif choice == 3:
        m = rng.choice([m for m in sample["modifiers"] if m["type"] == "histosys"])
        key = rng.choice(["hi_data", "lo_data"])
        m["data"][key] = m["data"][key][:-1] if rng.random() < 0.5 else m["data"][key] + [1.0]
    elif choice == 4:
        m = rng.choice(sample["modifiers"])
        m["type"] = rng.choice(
            [
                "normfactor",
                "lumi",
                "normsys",
                "histosys",
                "shapesys",
                "shapefactor",
                "staterror",
                "x",
            ]
        )
    elif choice == 5:
        m = rng.choice(sample["modifiers"])
        m["name"] = rng.choice(
            ["mu_tt", "jes", "jer", "lumi", "staterror_CR", "shape_SR_ttbar", ""]
        )
    elif choice == 6:
        sample["modifiers"].append(copy.deepcopy(rng.choice(sample["modifiers"])))
    elif choice == 7:
        del sample[rng.choice(["name", "data", "modifiers"])]
    elif choice == 8:
        sample["name"] = rng.choice(["ttbar", "wjets", "signal", "", 3])
    elif choice == 9:
        op["path"] = rng.choice(
            [
                "/channels/2/samples/-",
                "/channels/0/samples/3",
                "/channels/01/samples/-",
                "/channels/1",
            ]
        )
    elif choice == 10:
        patch.insert(
            rng.randrange(len(patch) + 1), {"op": "remove", "path": f"/channels/{rng.randrange(3)}"}
        )
    else:
        m = rng.choice([m for m in sample["modifiers"] if m["type"] == "staterror"])
        m["data"][rng.randrange(len(m["data"]))] = rng.choice(bad_numbers)
    return patch


def test_fast_path_agrees_with_the_reference_on_random_corruptions() -> None:
    """with_patch accepts exactly what compile(apply_patch) accepts, gives the same model,
    and rejects with the same exception and message, on random corruptions."""
    import random

    rng = random.Random(11)
    bkg = background()
    bg = likelihood.Background(bkg)
    good = [add(signal()), add(signal("CR", [3.0, 1.0]), "/channels/1/samples/0")]
    outcomes = {"accepted": 0, "rejected": 0}
    for _ in range(400):
        patch = _mutations(rng, good)
        try:
            full = likelihood.compile(likelihood.apply_patch(bkg, patch, source=NAME))
        except InvalidSpecification as ref:
            err = _raised(lambda patch=patch: bg.with_patch(patch, name=NAME))
            _exact(err, ref)
            outcomes["rejected"] += 1
            continue
        fast = bg.with_patch(patch, name=NAME)
        assert fast.parameter_names == full.parameter_names
        for a, b in zip(fast.compiled, full.compiled, strict=True):
            assert np.array_equal(a, b, equal_nan=True)
        outcomes["accepted"] += 1
    assert outcomes["accepted"] > 20 and outcomes["rejected"] > 200, outcomes


def test_invalid_bkgonly_is_blamed_on_the_bkgonly_not_the_patchset(tmp_path: Path) -> None:
    """issue 16 item 8: with --no-verify a schema error of the BkgOnly named the patchset."""
    import recast
    from recast.errors import ScanError

    bkg = background()
    ps = one_point(bkg, [add(signal())])
    bkg["channels"][1]["samples"][0]["colour"] = "red"
    bkg_file, ps_file = tmp_path / "BkgOnly.json", tmp_path / "patchset.json"
    bkg_file.write_text(json.dumps(bkg))
    ps_file.write_text(json.dumps(ps))
    with pytest.raises(ScanError) as info:
        recast.scan(bkg_file, ps_file, jobs=1, verify=False)
    msg = str(info.value)
    assert msg.startswith(f"{bkg_file}: the background-only workspace"), msg
    assert "/channels/1/samples/0" in msg and "'colour'" in msg
    assert str(ps_file) not in msg


def test_the_fast_apply_equals_jsonpatch() -> None:
    """PatchTarget.apply (make-patch's full validation) is apply_patch, with shallow copies."""
    bkg = background()
    before = json.dumps(bkg, sort_keys=True)
    target = PatchTarget(bkg)
    patches = [
        [add(signal()), add(signal("CR", [3.0, 1.0]), "/channels/1/samples/0")],
        [
            {"op": "remove", "path": "/channels/0"},
            add(signal("CR", [1.0, 1.0]), "/channels/0/samples/1"),
        ],
        [add(signal(), "/channels/0/samples/1"), {"op": "remove", "path": "/channels/1"}],
        [{"op": "replace", "path": "/observations/0/data/0", "value": 17}],
    ]
    for patch in patches:
        fast = target.apply(copy.deepcopy(patch), source=NAME)
        assert json.dumps(fast, sort_keys=True) == json.dumps(
            likelihood.apply_patch(bkg, copy.deepcopy(patch), source=NAME), sort_keys=True
        )
    for bad in (BAD["sample to a missing channel"], BAD["removed channel out of range"]):
        ref = _raised(lambda bad=bad: likelihood.apply_patch(bkg, bad.patch, source=NAME))
        _exact(_raised(lambda bad=bad: target.apply(bad.patch, source=NAME)), ref)
    assert json.dumps(bkg, sort_keys=True) == before  # the background is never modified


def test_real_patches_take_the_fast_path(shared_hepdata: Path) -> None:
    """Every published patch of 1Lbb, 3L eRJR and sbottom RegionB is accepted by the fast
    path (a silent fall-back to the reference path would only show as slowness)."""
    for folder in ("1Lbb", "3L_eRJR"):
        bkg = likelihood.read_json(shared_hepdata / folder / "BkgOnly.json")
        ps = likelihood.read_json(shared_hepdata / folder / "patchset.json")
        target = PatchTarget(bkg)
        for p in ps["patches"]:
            assert target.plan(p["patch"]) is not None, (folder, p["metadata"]["name"])
    d = shared_hepdata / "sbottom_multib" / "RegionB"
    target = PatchTarget(likelihood.read_json(d / "BkgOnly.json"))
    plans = [target.plan(likelihood.read_json(f)) for f in sorted(d.glob("patch.*.json"))]
    assert all(p is not None for p in plans)
    assert any(p.removed for p in plans if p is not None)  # sbottom patches remove channels
