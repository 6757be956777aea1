"""Validation of workspaces, patches and patchsets: real inputs pass, bad inputs fail well.

Every bad-input test asserts the exception class and that the message names the place
(file, JSON pointer) and the offending value.  The fast structural pre-check of
``likelihood.validate`` is checked against jsonschema (our schema files) on the real
workspaces and on random mutations.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import reference_histfactory as ref

import likelihood
from likelihood import validate as V
from likelihood.errors import InvalidPatch, InvalidSpecification, InvalidWorkspace
from likelihood.spec import digest

BKGONLY = [
    "sbottom_multib/RegionA/BkgOnly.json",
    "sbottom_multib/RegionB/BkgOnly.json",
    "sbottom_multib/RegionC/BkgOnly.json",
    "1Lbb/BkgOnly.json",
    "3L_eRJR/BkgOnly.json",
    "compressed_ewk/Sleptons_bkgonly.json",
    "compressed_ewk/EWKinos_bkgonly_SR2lOnly.json",
    "2L_jets_ewk/ewk_signal_bkgonly.json",
    "displaced_leptons/Comb_bkgonly.json",
    "displaced_leptons/SRee_bkgonly.json",
    "displaced_leptons/SRmm_bkgonly.json",
]


def small_workspace() -> dict[str, Any]:
    """Two channels, every modifier type, valid."""
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": [3.0, 1.5],
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {"name": "lumi", "type": "lumi", "data": None},
                            {"name": "staterror_SR", "type": "staterror", "data": [0.3, 0.2]},
                        ],
                    },
                    {
                        "name": "ttbar",
                        "data": [20.0, 8.0],
                        "modifiers": [
                            {"name": "jes", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                            {
                                "name": "jes",
                                "type": "histosys",
                                "data": {"hi_data": [21.0, 8.5], "lo_data": [19.5, 7.0]},
                            },
                            {"name": "staterror_SR", "type": "staterror", "data": [1.0, 0.5]},
                            {"name": "sf", "type": "shapefactor", "data": None},
                            {"name": "mcstat_tt", "type": "shapesys", "data": [2.0, 1.0]},
                        ],
                    },
                ],
            },
            {
                "name": "CR",
                "samples": [
                    {
                        "name": "ttbar",
                        "data": [100.0, 50.0],
                        "modifiers": [
                            {"name": "mu_tt", "type": "normfactor", "data": None},
                            {"name": "sf", "type": "shapefactor", "data": None},
                        ],
                    }
                ],
            },
        ],
        "observations": [{"name": "SR", "data": [25, 9]}, {"name": "CR", "data": [98, 55]}],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.017],
                            "bounds": [[0.9, 1.1]],
                            "inits": [1.0],
                        },
                        {"name": "mu_tt", "bounds": [[0.0, 5.0]], "inits": [1.0]},
                        {"name": "jes", "fixed": False},
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


def small_patchset(bkg: dict[str, Any]) -> dict[str, Any]:
    def signal(n: float) -> dict[str, Any]:
        return {
            "name": "point_signal",
            "data": [n, n / 2],
            "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
        }

    return {
        "metadata": {
            "description": "test signal grid",
            "digests": {"sha256": digest(bkg, "sha256")},
            "labels": ["m1", "m2"],
            "references": {"hepdata": "ins1234567"},
        },
        "patches": [
            {
                "metadata": {"name": f"pt_{m1}_{m2}", "values": [m1, m2]},
                "patch": [
                    {"op": "add", "path": "/channels/0/samples/-", "value": signal(m1 / 100)}
                ],
            }
            for m1, m2 in [(300, 0), (400, 0), (400, 100)]
        ],
        "version": "1.0.0",
    }


def raises(error: type[Exception], func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(error) as info:
        func(*args, **kwargs)
    return str(info.value)


def assert_names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in message:\n{message}"


# ----------------------------------------------------------------- real documents pass


def test_small_documents_are_valid() -> None:
    ws = small_workspace()
    V.validate_workspace(ws, require_poi=True)
    V.validate_patchset(small_patchset(ws), bkgonly=ws)


@pytest.mark.parametrize("relpath", BKGONLY)
def test_real_workspaces_are_valid(shared_hepdata: Path, relpath: str) -> None:
    spec = likelihood.read_json(shared_hepdata / relpath)
    V.validate_workspace(spec, source=relpath)
    # the BkgOnly workspaces lack their POI until a signal patch adds it (SOURCES.md)
    if relpath.startswith(("1Lbb", "3L", "sbottom")):
        msg = raises(InvalidWorkspace, V.validate_workspace, spec, source=relpath, require_poi=True)
        assert_names(msg, relpath, "/measurements/0/config/poi", "'mu_SIG'")


def test_dangling_parameter_setting_is_a_warning(
    shared_hepdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 3L eRJR fixes mu_BG, which no modifier uses: legal, worth a warning
    spec = likelihood.read_json(shared_hepdata / "3L_eRJR/BkgOnly.json")
    with caplog.at_level(logging.WARNING, logger="likelihood.validate"):
        V.validate_workspace(spec, source="3L_eRJR/BkgOnly.json")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'mu_BG'" in w and "/measurements/0/config/parameters/" in w for w in warnings)


def test_negative_histosys_variation_is_a_warning(
    shared_hepdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = likelihood.read_json(shared_hepdata / "2L_jets_ewk/ewk_signal_bkgonly.json")
    with caplog.at_level(logging.WARNING, logger="likelihood.validate"):
        V.validate_workspace(spec)
    assert any("negative lo_data" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
@pytest.mark.parametrize("analysis", ["1Lbb", "3L_eRJR"])
def test_real_patchsets_are_valid_and_match_their_bkgonly(
    shared_hepdata: Path, analysis: str
) -> None:
    bkg = likelihood.read_json(shared_hepdata / analysis / "BkgOnly.json")
    patchset = likelihood.read_json(shared_hepdata / analysis / "patchset.json")
    V.validate_patchset(patchset, source=f"{analysis}/patchset.json", bkgonly=bkg)
    # the stored digest is pyhf's (pyhf.utils.digest), cross-checked with pyhf itself
    pyhf = pytest.importorskip("pyhf")
    assert (
        digest(bkg, "sha256") == pyhf.utils.digest(bkg) == patchset["metadata"]["digests"]["sha256"]
    )
    # every fifth patched workspace is valid, with its POI
    for entry in patchset["patches"][::5]:
        spec = likelihood.apply_patch(bkg, entry["patch"], source=entry["metadata"]["name"])
        V.validate_workspace(spec, source=entry["metadata"]["name"], require_poi=True)


@pytest.mark.parametrize("region", ["RegionA", "RegionB", "RegionC"])
def test_sbottom_legacy_patches_are_valid(shared_hepdata: Path, region: str) -> None:
    folder = shared_hepdata / "sbottom_multib" / region
    bkg = likelihood.read_json(folder / "BkgOnly.json")
    files = sorted(folder.glob("patch.*.json"))
    assert len(files) > 200
    for i, path in enumerate(files):
        ops = likelihood.read_json(path)
        V.validate_patch(ops, source=path.name)
        if i % 20 == 0 or path.name == "patch.sbottom_1500_1495_60.json":
            spec = likelihood.apply_patch(bkg, ops, source=path.name)
            if region == "RegionB" and path.name == "patch.sbottom_1500_1495_60.json":
                # this patch adds no signal (SOURCES.md gotcha 9): valid, but without POI
                V.validate_workspace(spec, source=path.name)
                msg = raises(
                    InvalidWorkspace, V.validate_workspace, spec, source=path.name, require_poi=True
                )
                assert_names(msg, path.name, "POI 'mu_SIG'")
            else:
                V.validate_workspace(spec, source=path.name, require_poi=True)


# ----------------------------------------------------------------- fast path == schema


def _schema_errors(doc: Any, schema: str) -> list[Any]:
    return list(V._validator(schema).iter_errors(doc))


def _finite(doc: Any) -> bool:
    return not list(V._non_finite(doc, []))


@pytest.mark.parametrize(
    "relpath",
    [
        "sbottom_multib/RegionA/BkgOnly.json",
        "3L_eRJR/BkgOnly.json",
        "displaced_leptons/Comb_bkgonly.json",
    ],
)
def test_fast_check_agrees_with_schema_on_real_workspaces(
    shared_hepdata: Path, relpath: str
) -> None:
    spec = likelihood.read_json(shared_hepdata / relpath)
    assert _schema_errors(spec, "workspace") == []
    assert V._fast_workspace(spec)


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_nodes(v, (*path, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_nodes(v, (*path, i)))
    return out


_REPLACEMENTS: list[Any] = [
    None,
    True,
    0,
    -1,
    2.5,
    math.nan,
    math.inf,
    "",
    "x",
    "lumi",
    [],
    [1.0],
    ["a"],
    {},
    {"hi": 1.0},
]


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    path = rng.choice(_nodes(doc))
    if not path:
        return rng.choice(_REPLACEMENTS)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    action = rng.random()
    if action < 0.25 and isinstance(parent, dict):
        del parent[key]
    elif action < 0.35 and isinstance(parent, dict):
        parent["unexpected"] = 1
    elif action < 0.45 and isinstance(parent, list):
        del parent[key]
    elif action < 0.55 and isinstance(parent[key], str):
        parent[key] = rng.choice(["", "not a type", "bad name!", "/x~2", "code9", "normsyss"])
    else:
        parent[key] = copy.deepcopy(rng.choice(_REPLACEMENTS))
    return doc


@pytest.mark.slow
def test_fast_check_is_sound_on_random_mutations() -> None:
    """fast True => jsonschema finds nothing and every number is finite; and the fast
    path is taken for most valid documents (it is not trivially False)."""
    rng = random.Random(2024)
    base_ws = [small_workspace(), ref.random_workspace(1), ref.random_workspace(2)]
    base_ps = small_patchset(base_ws[0])
    fast_true = valid = 0
    for _ in range(1000):
        ws = _mutate(rng.choice(base_ws), rng)
        is_valid = not _schema_errors(ws, "workspace") and _finite(ws)
        if V._fast_workspace(ws):
            fast_true += 1
            assert is_valid, json.dumps(ws)[:500]
        valid += is_valid
    assert fast_true >= 0.9 * valid > 0
    fast_true = valid = 0
    for _ in range(1000):
        ps = _mutate(base_ps, rng)
        is_valid = not _schema_errors(ps, "patchset") and _finite(ps)
        if is_valid:  # the value schemas of the added samples, too
            is_valid = all(
                not list(V._validator("model", "/definitions/sample").iter_errors(op["value"]))
                for p in ps["patches"]
                for op in p["patch"]
                if op["op"] in ("add", "replace") and op["path"].startswith("/channels/0/samples/")
            )
        if V._fast_patchset(ps):
            fast_true += 1
            assert is_valid, json.dumps(ps)[:500]
        valid += is_valid
    assert fast_true >= 0.9 * valid > 0


def test_every_mutation_either_passes_or_raises_our_error() -> None:
    rng = random.Random(7)
    for _ in range(300):
        ws = _mutate(small_workspace(), rng)
        try:
            V.validate_workspace(ws, source="mutated.json")
        except InvalidWorkspace as err:
            assert str(err).startswith("workspace mutated.json")
            assert "/" in str(err)


# ----------------------------------------------------------------- malformed files


def test_malformed_json_file(tmp_path: Path) -> None:
    path = tmp_path / "BkgOnly.json"
    path.write_text('{"channels": [\n  {"name": "SR",, }\n]}')
    msg = raises(InvalidSpecification, likelihood.read_json, path)
    assert_names(msg, str(path), "line 2")


def test_nan_constant_in_json_file(tmp_path: Path) -> None:
    path = tmp_path / "ws.json"
    path.write_text('{"a": [1.0, NaN]}')
    msg = raises(InvalidSpecification, likelihood.read_json, path)
    assert_names(msg, str(path), "NaN")


# ----------------------------------------------------------------- schema violations


def _ws_error(mutate: Callable[[dict[str, Any]], object], **kwargs: Any) -> str:
    ws = small_workspace()
    mutate(ws)
    return raises(InvalidWorkspace, V.validate_workspace, ws, source="ws.json", **kwargs)


def test_missing_top_level_key() -> None:
    msg = _ws_error(lambda ws: ws.pop("observations"))
    assert_names(msg, "ws.json", "schema violation at /:", "'observations'")


def test_missing_sample_key() -> None:
    msg = _ws_error(lambda ws: ws["channels"][0]["samples"][1].pop("modifiers"))
    assert_names(msg, "/channels/0/samples/1", "'modifiers'", "add them")


def test_wrong_type() -> None:
    msg = _ws_error(lambda ws: ws["channels"][1]["samples"][0]["data"].__setitem__(1, "50"))
    assert_names(msg, "/channels/1/samples/0/data/1", "'50'", "str", "number")


def test_unexpected_key() -> None:
    msg = _ws_error(lambda ws: ws["channels"][0].update(nbins=2))
    assert_names(msg, "/channels/0", "'nbins'", "remove")


def test_wrong_version() -> None:
    msg = _ws_error(lambda ws: ws.update(version="2.0.0"))
    assert_names(msg, "/version", "'2.0.0'", "'1.0.0'")


def test_unknown_modifier_type() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][1]["modifiers"][0].update(type="normsyst")
    )
    assert_names(
        msg,
        "/channels/0/samples/1/modifiers/0/type",
        "unknown modifier type 'normsyst'",
        "histosys",
    )


@pytest.mark.parametrize(
    "index, data, where",
    [
        (0, {"hi": 1.1}, "/channels/0/samples/1/modifiers/0/data"),  # normsys without lo
        (1, [21.0, 8.5], "/channels/0/samples/1/modifiers/1/data"),  # histosys as a list
        (2, None, "/channels/0/samples/1/modifiers/2/data"),  # staterror without data
        (3, [1.0, 1.0], "/channels/0/samples/1/modifiers/3/data"),  # shapefactor with data
    ],
)
def test_modifier_data_shape(index: int, data: Any, where: str) -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][1]["modifiers"][index].update(data=data)
    )
    assert_names(msg, where)


def test_lumi_modifier_must_be_named_lumi() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][0]["modifiers"][1].update(name="luminosity")
    )
    assert_names(msg, "/channels/0/samples/0/modifiers/1/name", "'luminosity'", "'lumi'")


# ----------------------------------------------------------------- semantic errors


def test_inconsistent_bin_count_of_a_sample() -> None:
    msg = _ws_error(lambda ws: ws["channels"][1]["samples"][0]["data"].append(3.0))
    assert_names(msg, "/channels/1/samples/0/data", "3 bin(s)", "'CR' has 2", "/observations/1")


def test_inconsistent_bin_count_of_a_modifier() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][1]["modifiers"][1]["data"]["lo_data"].pop()
    )
    assert_names(
        msg, "/channels/0/samples/1/modifiers/1/data/lo_data", "histosys", "'jes'", "1 bin(s)"
    )
    msg = _ws_error(lambda ws: ws["channels"][0]["samples"][0]["modifiers"][2]["data"].append(0.1))
    assert_names(msg, "/channels/0/samples/0/modifiers/2/data", "staterror", "3 bin(s)")


def test_missing_observation() -> None:
    msg = _ws_error(lambda ws: ws["observations"].pop(1))
    assert_names(msg, "/channels/1/name", "channel 'CR' has no observation", "/observations")


def test_duplicate_names() -> None:
    msg = _ws_error(lambda ws: ws["channels"][1].update(name="SR"))
    assert_names(msg, "/channels/1/name", "duplicate channel name 'SR'")
    msg = _ws_error(lambda ws: ws["channels"][0]["samples"][1].update(name="signal"))
    assert_names(msg, "/channels/0/samples/1/name", "duplicate sample name 'signal'")
    msg = _ws_error(lambda ws: ws["measurements"].append(copy.deepcopy(ws["measurements"][0])))
    assert_names(msg, "/measurements/1/name", "duplicate measurement name 'meas'")
    msg = _ws_error(lambda ws: ws["observations"].append({"name": "SR", "data": [1, 2]}))
    assert_names(msg, "/observations/2/name", "duplicate observation name 'SR'")
    msg = _ws_error(
        lambda ws: ws["channels"][1]["samples"][0]["modifiers"].append(
            {"name": "mu_tt", "type": "normfactor", "data": None}
        )
    )
    assert_names(msg, "/channels/1/samples/0/modifiers/2", "duplicate normfactor modifier 'mu_tt'")


def test_modifier_name_with_incompatible_types() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][1]["samples"][0]["modifiers"].append(
            {"name": "jes", "type": "normfactor", "data": None}
        )
    )
    assert_names(
        msg,
        "/channels/1/samples/0/modifiers/2/type",
        "'jes'",
        "normfactor",
        "histosys",
        "/channels/0/samples/1/modifiers/0",
    )


def test_shared_vector_modifier_with_other_bin_count() -> None:
    def grow_cr(ws: dict[str, Any]) -> None:
        ws["channels"][1]["samples"][0]["data"].append(10.0)
        ws["observations"][1]["data"].append(12)

    msg = _ws_error(grow_cr)
    assert_names(
        msg,
        "/channels/1/samples/0/modifiers/1",
        "shapefactor modifier 'sf'",
        "3 parameter(s)",
        "has 2",
    )


def test_shapesys_name_reused() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][0]["modifiers"].append(
            {"name": "mcstat_tt", "type": "shapesys", "data": [0.1, 0.1]}
        )
    )
    assert_names(
        msg, "'mcstat_tt'", "/channels/0/samples/0/modifiers/3", "/channels/0/samples/1/modifiers/4"
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_yield(bad: float) -> None:
    msg = _ws_error(lambda ws: ws["channels"][0]["samples"][1]["data"].__setitem__(1, bad))
    assert_names(msg, "/channels/0/samples/1/data/1", repr(bad), "non-finite")


def test_non_finite_modifier_data() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][1]["modifiers"][0]["data"].update(hi=math.nan)
    )
    assert_names(msg, "/channels/0/samples/1/modifiers/0/data/hi", "nan")


def test_negative_nominal_yield() -> None:
    msg = _ws_error(lambda ws: ws["channels"][1]["samples"][0]["data"].__setitem__(0, -4.5))
    assert_names(
        msg, "/channels/1/samples/0/data/0", "-4.5", "negative nominal yield", "'ttbar'", "'CR'"
    )


def test_negative_observation() -> None:
    msg = _ws_error(lambda ws: ws["observations"][0]["data"].__setitem__(1, -1))
    assert_names(msg, "/observations/0/data/1", "-1", "negative observed count")


def test_negative_uncertainty_and_non_positive_normsys() -> None:
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][1]["modifiers"][4]["data"].__setitem__(0, -2.0)
    )
    assert_names(msg, "/channels/0/samples/1/modifiers/4/data/0", "-2.0", "shapesys")
    msg = _ws_error(
        lambda ws: ws["channels"][0]["samples"][1]["modifiers"][0]["data"].update(lo=0.0)
    )
    assert_names(msg, "/channels/0/samples/1/modifiers/0/data/lo", "lo = 0.0", "> 0")


def test_missing_poi_when_required() -> None:
    def drop_mu(ws: dict[str, Any]) -> None:
        ws["channels"][0]["samples"][0]["modifiers"].pop(0)

    ws = small_workspace()
    drop_mu(ws)
    V.validate_workspace(ws)  # fine as a background-only workspace
    msg = _ws_error(drop_mu, require_poi=True)
    assert_names(msg, "/measurements/0/config/poi", "POI 'mu'", "normfactor")
    # a per-bin parameter cannot be the POI
    msg = _ws_error(lambda ws: ws["measurements"][0]["config"].update(poi="sf"), require_poi=True)
    assert_names(msg, "/measurements/0/config/poi", "'sf'", "scalar")
    # the compiled background-only model has no POI, and hypotest says so
    model = likelihood.compile(ws)
    assert model.poi_index is None and model.poi_name is None
    with pytest.raises(likelihood.NoPOIError):
        likelihood.hypotest(model, 1.0)


# ----------------------------------------------------------------- measurement settings


def _setting(ws: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in ws["measurements"][0]["config"]["parameters"] if p["name"] == name)


def test_bad_measurement_settings() -> None:
    msg = _ws_error(lambda ws: _setting(ws, "mu_tt").update(bounds=[[0.0, 5.0], [0.0, 1.0]]))
    assert_names(
        msg,
        "/measurements/0/config/parameters/1/bounds",
        "'mu_tt'",
        "1 component(s)",
        "bounds has 2",
    )
    msg = _ws_error(lambda ws: _setting(ws, "mu_tt").update(bounds=[[5.0, 0.0]], inits=[1.0]))
    assert_names(msg, "/measurements/0/config/parameters/1/bounds/0", "[5.0, 0.0]", "lower > upper")
    msg = _ws_error(lambda ws: _setting(ws, "mu_tt").update(inits=[7.0]))
    assert_names(msg, "/measurements/0/config/parameters/1/inits/0", "7.0", "outside its bounds")
    msg = _ws_error(lambda ws: _setting(ws, "lumi").update(sigmas=[0.0]))
    assert_names(msg, "/measurements/0/config/parameters/0/sigmas/0", "sigma 0.0", "'lumi'")
    msg = _ws_error(lambda ws: _setting(ws, "mu_tt").update(auxdata=[1.0]))
    assert_names(msg, "/measurements/0/config/parameters/1/auxdata", "normfactor", "remove it")
    msg = _ws_error(
        lambda ws: ws["measurements"][0]["config"]["parameters"].append(
            {"name": "jes", "fixed": True}
        )
    )
    assert_names(msg, "/measurements/0/config/parameters/3/name", "'jes' is configured twice")
    msg = _ws_error(lambda ws: _setting(ws, "jes").update(fixed="yes"))
    assert_names(msg, "/measurements/0/config/parameters/2/fixed", "'yes'", "boolean")
    sf_setting = {"name": "sf", "inits": [1.0, 1.0, 1.0]}
    msg = _ws_error(lambda ws: ws["measurements"][0]["config"]["parameters"].append(sf_setting))
    assert_names(
        msg, "/measurements/0/config/parameters/3/inits", "'sf' has 2 component(s)", "inits has 3"
    )


def test_sigmas_and_factors_only_where_pyhf_takes_them() -> None:
    msg = _ws_error(lambda ws: _setting(ws, "jes").update(sigmas=[2.0]))
    assert_names(
        msg, "/measurements/0/config/parameters/2/sigmas", "'jes'", "histosys/normsys", "no sigmas"
    )
    msg = _ws_error(lambda ws: _setting(ws, "lumi").update(factors=[2.0]))
    assert_names(msg, "/measurements/0/config/parameters/0/factors", "'lumi'", "no factors")


def test_staterror_shared_between_channels() -> None:
    def share(ws: dict[str, Any]) -> None:
        ws["channels"][1]["samples"][0]["modifiers"].append(
            {"name": "staterror_SR", "type": "staterror", "data": [1.0, 1.0]}
        )

    msg = _ws_error(share)
    assert_names(
        msg,
        "/channels/1/samples/0/modifiers/2",
        "staterror modifier 'staterror_SR'",
        "['SR']",
        "per channel",
    )


def test_lumi_needs_auxdata_and_sigmas() -> None:
    msg = _ws_error(lambda ws: _setting(ws, "lumi").pop("sigmas"))
    assert_names(msg, "/measurements/0/config/parameters", "'lumi'", "auxdata and sigmas")


def test_unknown_measurement_name() -> None:
    msg = _ws_error(lambda ws: None, measurement="other")
    assert_names(msg, "/measurements", "'other'", "['meas']")


def test_unknown_parameter_setting_is_only_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    ws = small_workspace()
    ws["measurements"][0]["config"]["parameters"].append({"name": "mu_BG", "fixed": True})
    with caplog.at_level(logging.WARNING, logger="likelihood.validate"):
        V.validate_workspace(ws, source="ws.json", require_poi=True)
    assert any("'mu_BG'" in r.getMessage() and "ws.json" in r.getMessage() for r in caplog.records)


def test_compile_validates(tmp_path: Path) -> None:
    ws = small_workspace()
    ws["channels"][0]["samples"][0]["data"][0] = -1.0
    with pytest.raises(InvalidWorkspace, match=r"/channels/0/samples/0/data/0"):
        likelihood.compile(ws)


# ----------------------------------------------------------------- patches and patchsets


def test_patch_that_does_not_apply() -> None:
    ops = [
        {
            "op": "add",
            "path": "/channels/0/samples/-",
            "value": {"name": "s", "data": [1.0, 1.0], "modifiers": []},
        },
        {"op": "remove", "path": "/channels/7"},
    ]
    V.validate_patch(ops)  # well-formed
    msg = raises(
        InvalidPatch, likelihood.apply_patch, small_workspace(), ops, source="patch.x.json"
    )
    assert_names(msg, "patch.x.json", "operation 1", "remove /channels/7")


def test_patch_schema_violations() -> None:
    msg = raises(
        InvalidPatch, V.validate_patch, [{"op": "ad", "path": "/channels/0"}], source="p.json"
    )
    assert_names(msg, "patch p.json", "/0/op", "unknown JSON patch operation 'ad'")
    msg = raises(InvalidPatch, V.validate_patch, [{"op": "add", "path": "/channels/0/samples/-"}])
    assert_names(msg, "/0", "'value'")
    msg = raises(InvalidPatch, V.validate_patch, [{"op": "remove", "path": "channels/1"}])
    assert_names(msg, "/0/path", "'channels/1'", "pattern")
    msg = raises(InvalidPatch, V.validate_patch, {"op": "remove", "path": "/channels/1"})
    assert_names(msg, "at /:", "dict", "array")


def test_patch_with_a_bad_sample() -> None:
    sample = {"name": "signal", "data": [1.0, math.nan], "modifiers": []}
    msg = raises(
        InvalidPatch,
        V.validate_patch,
        [{"op": "add", "path": "/channels/0/samples/3", "value": sample}],
    )
    assert_names(msg, "/0/value/data/1", "nan")
    del sample["modifiers"]
    sample["data"] = [1.0, 2.0]
    msg = raises(
        InvalidPatch,
        V.validate_patch,
        [{"op": "add", "path": "/channels/0/samples/3", "value": sample}],
        source="pt",
    )
    assert_names(
        msg, "patch pt, operation 0 (add /channels/0/samples/3)", "/0/value", "'modifiers'"
    )
    bad_mod = {"name": "x", "type": "magic", "data": None}
    msg = raises(
        InvalidPatch,
        V.validate_patch,
        [{"op": "add", "path": "/channels/1/samples/0/modifiers/-", "value": bad_mod}],
    )
    assert_names(msg, "/0/value/type", "unknown modifier type 'magic'")


def test_patch_with_negative_or_inconsistent_signal() -> None:
    sample = {"name": "signal", "data": [1.0, -0.5], "modifiers": []}
    ops = [{"op": "add", "path": "/channels/0/samples/2", "value": sample}]
    msg = raises(InvalidPatch, V.validate_patch, ops, source="pt_1")
    assert_names(msg, "patch pt_1", "/0/value/data/1", "-0.5", "negative nominal yield")
    sample["data"] = [1.0, 0.5]
    sample["modifiers"] = [{"name": "stat", "type": "staterror", "data": [0.1]}]
    msg = raises(InvalidPatch, V.validate_patch, ops)
    assert_names(msg, "/0/value/modifiers/0/data", "staterror", "1 bin(s)", "2")
    channel = {
        "name": "SR2",
        "samples": [
            {
                "name": "s",
                "data": [1.0],
                "modifiers": [{"name": "k", "type": "normsys", "data": {"hi": 1.1, "lo": -0.9}}],
            }
        ],
    }
    msg = raises(
        InvalidPatch, V.validate_patch, [{"op": "add", "path": "/channels/-", "value": channel}]
    )
    assert_names(msg, "/0/value/samples/0/modifiers/0/data/lo", "-0.9")


def test_patchset_digest_mismatch() -> None:
    ws = small_workspace()
    patchset = small_patchset(ws)
    other = copy.deepcopy(ws)
    other["observations"][0]["data"][0] = 26
    msg = raises(InvalidPatch, V.validate_patchset, patchset, source="patchset.json", bkgonly=other)
    assert_names(
        msg,
        "patchset.json",
        "/metadata/digests/sha256",
        patchset["metadata"]["digests"]["sha256"],
        digest(other, "sha256"),
    )


def test_bad_patch_names_and_values() -> None:
    ws = small_workspace()
    ps = small_patchset(ws)
    ps["patches"][1]["metadata"]["name"] = "pt 400-0!"
    msg = raises(InvalidPatch, V.validate_patchset, ps, source="ps.json")
    assert_names(msg, "ps.json", "/patches/1/metadata/name", "'pt 400-0!'", "pattern")

    ps = small_patchset(ws)
    ps["patches"][2]["metadata"]["name"] = ps["patches"][0]["metadata"]["name"]
    msg = raises(InvalidPatch, V.validate_patchset, ps)
    assert_names(msg, "/patches/2/metadata/name", "duplicate patch name 'pt_300_0'")

    ps = small_patchset(ws)
    ps["patches"][2]["metadata"]["values"] = [300, 0]
    msg = raises(InvalidPatch, V.validate_patchset, ps)
    assert_names(msg, "/patches/2/metadata/values", "duplicate values [300, 0]", "pt_300_0")

    ps = small_patchset(ws)
    ps["patches"][0]["metadata"]["values"] = [300]
    msg = raises(InvalidPatch, V.validate_patchset, ps)
    assert_names(msg, "/patches/0/metadata/values", "1 value(s)", "['m1', 'm2']")


def test_patchset_metadata_schema() -> None:
    ws = small_workspace()
    ps = small_patchset(ws)
    del ps["metadata"]["digests"]
    msg = raises(InvalidPatch, V.validate_patchset, ps, source="ps.json")
    assert_names(msg, "ps.json", "/metadata", "'digests'")
    ps = small_patchset(ws)
    ps["metadata"]["references"]["hepdata"] = "1234567"
    msg = raises(InvalidPatch, V.validate_patchset, ps)
    assert_names(msg, "/metadata/references/hepdata", "'1234567'")
    ps = small_patchset(ws)
    ps["patches"][1]["patch"][0]["op"] = "append"
    msg = raises(InvalidPatch, V.validate_patchset, ps)
    assert_names(msg, "/patches/1/patch/0/op", "'append'")


def test_schemas_are_valid_draft7_and_shipped() -> None:
    for name in ("workspace", "model", "measurement", "patch", "patchset"):
        schema = V.load_schema(name)
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema["$id"].endswith(f"/{name}.json")
