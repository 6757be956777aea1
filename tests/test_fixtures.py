"""The bundled toy HEPData archive: deterministic, genuine format, valid, physically sensible.

The archive ``fixtures/toy_hepdata_archive.tar.gz`` is written by
``fixtures/make_toy_analysis.py``.  These tests regenerate it and compare bytes, check the
HEPData layout, validate both documents with recastkit and with pyhf (the independent
oracle), and check that the official grid is partly excluded (pyhf CLs).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import math
import sys
import tarfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

import likelihood

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
ARCHIVE = FIXTURES / "toy_hepdata_archive.tar.gz"
MANIFEST = FIXTURES / "toy_hepdata_archive.manifest.json"


def _load_generator() -> ModuleType:
    path = FIXTURES / "make_toy_analysis.py"
    spec = importlib.util.spec_from_file_location("recastkit_make_toy_analysis", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def members() -> dict[str, bytes]:
    with tarfile.open(ARCHIVE, "r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


@pytest.fixture(scope="module")
def bkgonly(members: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(members["ToyAnalysis/BkgOnly.json"])


@pytest.fixture(scope="module")
def patchset(members: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(members["ToyAnalysis/patchset.json"])


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


# --------------------------------------------------------------------------------------
# determinism


def test_regenerated_tar_stream_is_byte_identical(manifest: dict[str, Any]) -> None:
    with gzip.open(ARCHIVE, "rb") as fh:
        committed = fh.read()
    fresh = gen.tar_bytes()
    assert fresh == committed, "run `python fixtures/make_toy_analysis.py` and commit the result"
    assert hashlib.sha256(fresh).hexdigest() == manifest["sha256_tar"]
    # a second build in the same process gives the same bytes (no hidden global state)
    assert gen.tar_bytes() == fresh


def test_regenerated_archive_is_byte_identical(manifest: dict[str, Any]) -> None:
    assert hashlib.sha256(ARCHIVE.read_bytes()).hexdigest() == manifest["sha256_tar_gz"]
    if zlib.ZLIB_RUNTIME_VERSION != manifest["zlib_runtime_version"]:
        pytest.skip(
            f"gzip bytes depend on the zlib build: this is {zlib.ZLIB_RUNTIME_VERSION}, "
            f"the archive was written with {manifest['zlib_runtime_version']} "
            "(the tar stream itself is compared by another test)"
        )
    assert gen.archive_bytes() == ARCHIVE.read_bytes()


def test_manifest_matches_a_fresh_build(manifest: dict[str, Any]) -> None:
    fresh = gen.manifest()
    for key in ("sha256_tar", "bkgonly_sha256", "members", "channels", "labels", "n_patches"):
        assert fresh[key] == manifest[key], key


def test_different_seed_changes_the_observed_data() -> None:
    # the seed really drives the content (guards against an ignored seed argument)
    a = gen.build_bkgonly(gen.SEED)["observations"]
    b = gen.build_bkgonly(gen.SEED + 1)["observations"]
    assert a != b


def test_script_writes_atomically_and_check_detects_tampering(tmp_path: Path) -> None:
    assert gen.main(["--output-dir", str(tmp_path)]) == 0
    written = tmp_path / gen.ARCHIVE_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [gen.ARCHIVE_NAME, gen.MANIFEST_NAME]
    )
    with gzip.open(written, "rb") as fh:
        assert fh.read() == gen.tar_bytes()
    assert gen.main(["--output-dir", str(tmp_path), "--check"]) == 0
    # same tar content recompressed differently: --check reports the gzip difference
    with gzip.open(written, "rb") as fh:
        payload = fh.read()
    written.write_bytes(gzip.compress(payload, compresslevel=1, mtime=12345))
    assert gen.main(["--output-dir", str(tmp_path), "--check"]) == 1
    # a changed member: --check fails on the content
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"{}"
        info = tarfile.TarInfo("ToyAnalysis/BkgOnly.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    written.write_bytes(gzip.compress(buf.getvalue()))
    assert gen.main(["--output-dir", str(tmp_path), "--check"]) == 1
    written.unlink()
    assert gen.main(["--output-dir", str(tmp_path), "--check"]) == 1


# --------------------------------------------------------------------------------------
# HEPData archive layout


def test_archive_layout_is_hepdata_like(manifest: dict[str, Any]) -> None:
    with tarfile.open(ARCHIVE, "r:gz") as tar:
        infos = tar.getmembers()
    names = [m.name for m in infos]
    # one top folder, as ATLAS records have; tarfile reports the folder without its "/"
    assert names == ["ToyAnalysis", *sorted(manifest["members"])]
    assert set(manifest["members"]) == {
        "ToyAnalysis/BkgOnly.json",
        "ToyAnalysis/patchset.json",
        "ToyAnalysis/README.md",
    }
    for m in infos:
        assert m.isfile() or m.isdir(), f"{m.name}: links or devices are not allowed"
        assert m.mtime == gen.TAR_MTIME and m.uid == 0 and m.gid == 0
        assert m.uname == "" and m.gname == ""
        assert m.mode == (0o755 if m.isdir() else 0o644)
        assert not m.name.startswith("/") and ".." not in m.name.split("/")
    # gzip header: mtime 0 (bytes 4..7) and no FNAME flag (bit 3 of byte 3)
    head = ARCHIVE.read_bytes()[:10]
    assert head[:2] == b"\x1f\x8b"
    assert head[4:8] == b"\x00\x00\x00\x00"
    assert not head[3] & 0x08


def test_readme_inside_names_the_grid(members: dict[str, bytes], patchset: dict[str, Any]) -> None:
    readme = members["ToyAnalysis/README.md"].decode()
    first, last = (
        patchset["patches"][0]["metadata"]["name"],
        patchset["patches"][-1]["metadata"]["name"],
    )
    assert first in readme and last in readme
    assert patchset["metadata"]["digests"]["sha256"] in readme


# --------------------------------------------------------------------------------------
# validity: recastkit and pyhf


def test_bkgonly_and_patchset_pass_recastkit_validation(
    bkgonly: dict[str, Any], patchset: dict[str, Any]
) -> None:
    likelihood.validate_workspace(bkgonly, source="ToyAnalysis/BkgOnly.json")
    likelihood.validate_patchset(patchset, source="ToyAnalysis/patchset.json")
    for entry in patchset["patches"]:
        likelihood.validate_patch(entry["patch"], source=entry["metadata"]["name"])
        patched = likelihood.apply_patch(bkgonly, entry["patch"], source=entry["metadata"]["name"])
        # as in ATLAS's sbottom patches, the removed validation region keeps its observation
        assert "VR_ttbar_cuts" not in [c["name"] for c in patched["channels"]]
        assert "VR_ttbar_cuts" in [o["name"] for o in patched["observations"]]
        likelihood.validate_workspace(patched, source=entry["metadata"]["name"], require_poi=True)


def test_digest_is_pyhfs(bkgonly: dict[str, Any], patchset: dict[str, Any]) -> None:
    pyhf = pytest.importorskip("pyhf")
    stored = patchset["metadata"]["digests"]["sha256"]
    assert stored == pyhf.utils.digest(bkgonly)
    assert stored == gen.manifest()["bkgonly_sha256"]
    # the HEPData convention: json.dumps(sort_keys=True) with the default separators
    assert stored == likelihood.digest(bkgonly)


def test_patchset_digest_check_with_recastkit(
    bkgonly: dict[str, Any], patchset: dict[str, Any]
) -> None:
    likelihood.validate_patchset(patchset, source="ToyAnalysis/patchset.json", bkgonly=bkgonly)
    other = json.loads(json.dumps(bkgonly))
    other["observations"][0]["data"][0] += 1.0
    with pytest.raises(likelihood.InvalidPatch, match="digests/sha256"):
        likelihood.validate_patchset(patchset, source="ToyAnalysis/patchset.json", bkgonly=other)


def test_bkgonly_and_patchset_pass_pyhf_validation(
    bkgonly: dict[str, Any], patchset: dict[str, Any]
) -> None:
    pyhf = pytest.importorskip("pyhf")
    ws = pyhf.Workspace(bkgonly)  # schema validation
    pset = pyhf.PatchSet(patchset)  # schema validation
    pset.verify(ws)  # digest
    assert pset.labels == ["m_stop", "m_lsp"]
    assert len(pset.patches) == len(gen.SIGNAL_GRID)
    for patch in pset.patches:
        patched = pyhf.Workspace(patch.apply(ws))
        model = patched.model()
        assert model.config.poi_name == "mu_SIG"
        # the patches drop the validation region
        assert "VR_ttbar_cuts" not in model.config.channels
        assert model.config.channel_nbins == {
            "CR_ttbar_cuts": 1,
            "CR_wjets_cuts": 1,
            "SR_highDM_meff": 4,
            "SR_lowDM_meff": 3,
        }


def test_bkgonly_alone_has_no_poi(bkgonly: dict[str, Any]) -> None:
    # as in every ATLAS BkgOnly.json: the measurement names mu_SIG, no sample carries it
    assert likelihood.get_measurement(bkgonly)["config"]["poi"] == "mu_SIG"
    names = {m["name"] for c in bkgonly["channels"] for s in c["samples"] for m in s["modifiers"]}
    assert "mu_SIG" not in names


# --------------------------------------------------------------------------------------
# content: what the issue asks for


def test_workspace_has_every_required_ingredient(bkgonly: dict[str, Any]) -> None:
    channels = {c["name"]: c for c in bkgonly["channels"]}
    assert [c["name"] for c in bkgonly["channels"]] != sorted(channels)  # ATLAS-like, unsorted
    srs = [n for n in channels if n.startswith("SR")]
    crs = [n for n in channels if n.startswith("CR")]
    assert len(srs) >= 2 and len(crs) >= 2
    assert all(len(channels[n]["samples"][0]["data"]) >= 3 for n in srs)  # several bins
    types = {m["type"] for c in bkgonly["channels"] for s in c["samples"] for m in s["modifiers"]}
    assert {"normsys", "histosys", "staterror", "shapesys", "lumi", "normfactor"} <= types
    normfactors = {
        m["name"]
        for c in bkgonly["channels"]
        for s in c["samples"]
        for m in s["modifiers"]
        if m["type"] == "normfactor"
    }
    assert "mu_ttbar" in normfactors


def test_patches_follow_atlas_conventions(
    bkgonly: dict[str, Any], patchset: dict[str, Any]
) -> None:
    n_channels = len(bkgonly["channels"])
    vr_index = [c["name"] for c in bkgonly["channels"]].index("VR_ttbar_cuts")
    for entry in patchset["patches"]:
        name, values = entry["metadata"]["name"], entry["metadata"]["values"]
        assert name == f"stop_{values[0]}_{values[1]}"
        assert values[0] - values[1] >= 200
        ops = entry["patch"]
        adds = [op for op in ops if op["op"] == "add"]
        removes = [op for op in ops if op["op"] == "remove"]
        assert ops[-len(removes) :] == removes  # removals come after the additions
        assert [op["path"] for op in removes] == [f"/channels/{vr_index}"]
        for op in adds:
            _, _, ci, _, si = op["path"].split("/")
            assert int(ci) < n_channels and int(ci) != vr_index
            assert int(si) == len(bkgonly["channels"][int(ci)]["samples"])  # explicit index
            mods = {m["name"]: m["type"] for m in op["value"]["modifiers"]}
            assert mods["mu_SIG"] == "normfactor" and mods["lumi"] == "lumi"
            assert all(v > 0 for v in op["value"]["data"])
        # signal contamination: both control regions get a signal sample too
        added = {bkgonly["channels"][int(op["path"].split("/")[2])]["name"] for op in adds}
        assert added == {"CR_ttbar_cuts", "CR_wjets_cuts", "SR_lowDM_meff", "SR_highDM_meff"}


def test_observed_data_are_plausible_poisson_counts(bkgonly: dict[str, Any]) -> None:
    for channel, obs in zip(bkgonly["channels"], bkgonly["observations"], strict=True):
        assert channel["name"] == obs["name"]
        expected = np.sum([s["data"] for s in channel["samples"]], axis=0)
        data = np.asarray(obs["data"])
        assert np.all(data >= 0) and np.all(data == np.round(data))
        # within 5 sigma of the background (data drawn with mu_ttbar 0.92, mu_wjets 1.08)
        assert np.all(np.abs(data - expected) < 5.0 * np.sqrt(expected) + 3.0), channel["name"]


@pytest.mark.slow
def test_official_grid_is_partly_excluded_according_to_pyhf(
    bkgonly: dict[str, Any], patchset: dict[str, Any]
) -> None:
    # An independent check that the toy gives an interesting contour: pyhf (the oracle)
    # excludes a light point and does not exclude a heavy one.
    pyhf = pytest.importorskip("pyhf")
    pyhf.set_backend("numpy")
    pset = pyhf.PatchSet(patchset)
    cls = {}
    for name in ("stop_500_100", "stop_1000_0"):
        ws = pyhf.Workspace(pset[name].apply(bkgonly))
        model = ws.model()
        cls[name] = float(pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde"))
    assert math.isfinite(cls["stop_500_100"]) and cls["stop_500_100"] < 0.05
    assert cls["stop_1000_0"] > 0.3


# --------------------------------------------------------------------------------------
# grids/: the recasting-tool yields of the new model

GRIDS = REPO / "grids"


def _load_grid_generator() -> ModuleType:
    path = GRIDS / "make_grid.py"
    spec = importlib.util.spec_from_file_location("recastkit_make_grid", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


grid = _load_grid_generator()


def test_grid_files_are_a_fresh_build() -> None:
    fresh = grid.build_files()
    for rel, text in fresh.items():
        assert (GRIDS / rel).read_text(encoding="utf-8") == text, f"rerun grids/make_grid.py: {rel}"
    # no stale native files from an older grid
    on_disk = {p.name for p in GRIDS.glob("ToyAnalysis_*.txt")}
    assert on_disk == {rel for rel in fresh if rel.endswith(".txt")}
    assert grid.main(["--check"]) == 0


def test_grid_check_detects_a_changed_file(tmp_path: Path) -> None:
    assert grid.main(["--output-dir", str(tmp_path)]) == 0
    assert grid.main(["--output-dir", str(tmp_path), "--check"]) == 0
    victim = tmp_path / "ToyAnalysis_700_100.txt"
    victim.write_text(victim.read_text().replace("All,50000", "All,50001"))
    assert grid.main(["--output-dir", str(tmp_path), "--check"]) == 1


def test_grid_covers_a_new_model_over_two_masses() -> None:
    index = pd.read_csv(GRIDS / "simpleanalysis_index.csv")
    assert list(index.columns) == ["file", "m1", "m2", "xsec_pb", "lumi_ifb"]
    assert 40 <= len(index) <= 80
    assert len(set(zip(index["m1"], index["m2"], strict=True))) == len(index)
    assert (index["m1"] - index["m2"] >= 100).all()
    assert index["m1"].nunique() >= 5 and index["m2"].nunique() >= 5
    # a different model from the official patchset (not the same names or grid)
    official = {(m1, m2) for m1, m2 in gen.SIGNAL_GRID}
    assert set(zip(index["m1"], index["m2"], strict=True)) != official
    # cross-sections fall with the produced mass
    xs = index.groupby("m1")["xsec_pb"].first()
    assert (np.diff(xs.to_numpy()) < 0).all()


def test_simpleanalysis_files_follow_the_tool_layout() -> None:
    index = pd.read_csv(GRIDS / "simpleanalysis_index.csv")
    for name in index["file"]:
        lines = (GRIDS / name).read_text().splitlines()
        assert lines[0] == "SR,events,acceptance,err"
        assert lines[1] == f"All,{grid.N_GENERATED},{grid.N_GENERATED},{grid.N_GENERATED}"
        regions = [ln.split(",")[0] for ln in lines[2:]]
        assert regions == list(grid.TOOL_REGIONS)
        for ln in lines[2:]:
            _, k, acc, err = ln.split(",")
            # unit weights: acceptance = k / N, err = sqrt(k) / N, 6 significant digits
            assert float(acc) == pytest.approx(int(k) / grid.N_GENERATED, rel=1e-5)
            assert float(err) == pytest.approx(math.sqrt(int(k)) / grid.N_GENERATED, rel=1e-5)


def test_native_and_tidy_yields_read_to_the_same_table() -> None:
    import recast

    native = recast.read_yields(GRIDS / "simpleanalysis_index.csv", format="simpleanalysis")
    tidy = recast.read_yields(GRIDS / "yields.csv")
    assert native.attrs["labels"] == tidy.attrs["labels"] == ["m1", "m2"]
    key = ["m1", "m2", "region", "bin"]
    merged = native.merge(tidy, on=key, suffixes=("_native", "_tidy"), validate="one_to_one")
    assert len(merged) == len(native) == len(tidy) == 46 * len(grid.TOOL_REGIONS)
    np.testing.assert_allclose(merged["yield_native"], merged["yield_tidy"], rtol=1e-12)
    np.testing.assert_allclose(merged["stat_unc_native"], merged["stat_unc_tidy"], rtol=1e-12)
    assert (native["yield"] >= 0).all()


def test_mapping_covers_every_tool_region_and_fits_the_workspace(
    bkgonly: dict[str, Any],
) -> None:
    mapping = json.loads((GRIDS / "mapping.json").read_text())
    assert set(mapping["regions"]) == set(grid.TOOL_REGIONS)
    nbins = {c["name"]: len(c["samples"][0]["data"]) for c in bkgonly["channels"]}
    filled: dict[str, set[int]] = {}
    for target in mapping["regions"].values():
        if target is None:
            continue
        if isinstance(target, str):
            filled.setdefault(target, set()).update(range(nbins[target]))
        else:
            assert 0 <= target["bin"] < nbins[target["channel"]]
            filled.setdefault(target["channel"], set()).add(target["bin"])
    # every bin of every SR and CR gets signal; the VR is removed
    for channel, n in nbins.items():
        if channel in mapping["remove"]:
            assert channel.startswith("VR") and channel not in filled
        else:
            assert filled[channel] == set(range(n)), channel


def test_make_patchset_from_the_grid_gives_a_valid_patchset(bkgonly: dict[str, Any]) -> None:
    import recast

    yields = recast.read_yields(GRIDS / "simpleanalysis_index.csv", format="simpleanalysis")
    patchset = recast.make_patchset(
        bkgonly, yields, mapping=GRIDS / "mapping.json", hepdata="ins0000000", name_prefix="new"
    )
    likelihood.validate_patchset(patchset, source="grid patchset")
    assert len(patchset["patches"]) == 46
    assert patchset["metadata"]["labels"] == ["m1", "m2"]
    # the signal of a point equals the grid's yields (SR_highDM bin 1 of m1=700, m2=100)
    entry = next(p for p in patchset["patches"] if p["metadata"]["values"] == [700, 100])
    channels = [c["name"] for c in bkgonly["channels"]]
    op = next(
        o
        for o in entry["patch"]
        if o["op"] == "add" and channels[int(o["path"].split("/")[2])] == "SR_highDM_meff"
    )
    row = yields.query("m1 == 700 and m2 == 100 and region == 'SR_highDM_bin1'")
    assert op["value"]["data"][1] == pytest.approx(float(row["yield"].iloc[0]), rel=1e-12)
