"""Labels travel with the cached entry; scan takes every source fetch takes; make-patch
infers --hepdata from the cache (issue 17: bugs 1, 2, 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hepdata_server import HEPDataServer, make_tar, small_workspace

import recast
from cli import main

INSPIRE = 7654321


def _legacy_files(regions: tuple[str, ...] = ("RegionA", "RegionB")) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for j, region in enumerate(regions):
        bkg = small_workspace(2, scale=1 + j)
        files[f"lh/{region}/BkgOnly.json"] = json.dumps(bkg).encode()
        for a, b in ((300, 50), (400, 50), (400, 100)):
            sample = {
                "name": "signal",
                "data": [a / (50.0 + 25 * j), b / 25.0],
                "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
            }
            patch = [{"op": "add", "path": "/channels/0/samples/1", "value": sample}]
            files[f"lh/{region}/patch.model_{a}_{b}.json"] = json.dumps(patch).encode()
    return files


@pytest.fixture()
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECASTKIT_CACHE", str(tmp_path / "cache"))
    return make_tar(tmp_path / "legacy_likelihoods.tar.gz", _legacy_files())


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_scan_takes_a_local_archive(archive: Path, tmp_path: Path, runner: CliRunner) -> None:
    out = tmp_path / "all.csv"
    result = runner.invoke(
        main,
        ["scan", str(archive), "--all-regions", "--best-expected", "-o", str(out), "-j", "1"],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert sorted(set(table.region)) == ["RegionA", "RegionB"] and len(table) == 6
    assert (table.status == "ok").all()
    best = pd.read_csv(tmp_path / "all_best.csv")
    assert len(best) == 3
    one = tmp_path / "a.csv"
    result = runner.invoke(
        main, ["scan", str(archive), "--region", "RegionA", "-o", str(one), "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    a = pd.read_csv(one)
    assert "region" not in a.columns and len(a) == 3
    # the same numbers as the extracted folder gives
    folder = recast.fetch(archive)
    ref = recast.scan(recast.load_likelihood(folder, "RegionA"), jobs=1)
    assert a.cls_obs.tolist() == pytest.approx(ref.cls_obs.tolist(), rel=1e-9)
    # a JSON file alone is still refused with the BKGONLY PATCHSET hint
    bkg = folder / "lh" / "RegionA" / "BkgOnly.json"
    result = runner.invoke(main, ["scan", str(bkg)])
    assert result.exit_code == 1 and "give the patchset" in result.output


def test_fetch_labels_are_remembered_by_scan(
    archive: Path, tmp_path: Path, runner: CliRunner
) -> None:
    default = runner.invoke(main, ["fetch", str(archive), "--json"])
    assert [lh["labels"] for lh in json.loads(default.output)["likelihoods"]] == [["m1", "m2"]] * 2
    result = runner.invoke(main, ["fetch", str(archive), "--labels", "m_C1,m_N1"])
    assert result.exit_code == 0, result.output
    assert "m_C1,m_N1" in result.output
    # later commands of the same entry, without --labels
    again = runner.invoke(main, ["fetch", str(archive), "--json"])
    doc = json.loads(again.output)
    assert [lh["labels"] for lh in doc["likelihoods"]] == [["m_C1", "m_N1"]] * 2
    assert recast.load_likelihood(archive, "RegionB").labels == ["m_C1", "m_N1"]
    manifest = json.loads((Path(doc["path"]).parent / "manifest.json").read_text())
    assert manifest["labels"] == ["m_C1", "m_N1"]
    out = tmp_path / "r.csv"
    result = runner.invoke(
        main, ["scan", str(archive), "--region", "RegionB", "-o", str(out), "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out).columns[:3]) == ["patch", "m_C1", "m_N1"]
    # ... and the folder inside the cache: scan BKGONLY DIR
    folder = Path(doc["path"]) / "lh" / "RegionA"
    out2 = tmp_path / "dir.csv"
    result = runner.invoke(
        main, ["scan", str(folder / "BkgOnly.json"), str(folder), "-o", str(out2), "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out2).columns[:3]) == ["patch", "m_C1", "m_N1"]
    # the wrong number of labels is refused, and not remembered
    bad = runner.invoke(main, ["fetch", str(archive), "--labels", "a,b,c"])
    assert bad.exit_code == 1 and "give 2 label(s)" in bad.output
    assert json.loads((Path(doc["path"]).parent / "manifest.json").read_text())["labels"] == [
        "m_C1",
        "m_N1",
    ]


def test_known_record_labels_and_make_patch_infers_hepdata(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = make_tar(tmp_path / "rec.tgz", _legacy_files(("RegionA",))).read_bytes()
    cache = tmp_path / "cache"
    with HEPDataServer() as srv:
        srv.add_record(7100, INSPIRE, 2)
        srv.add_resource(7100, 77, blob, "rec.tgz")
        monkeypatch.setenv("RECASTKIT_HEPDATA_URL", srv.url)
        monkeypatch.setattr("recast.resolve.KNOWN_LABELS", {f"ins{INSPIRE}": ["m_gluino", "m_N1"]})
        result = runner.invoke(
            main, ["fetch", f"ins{INSPIRE}", "--cache-dir", str(cache), "--json"]
        )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["likelihoods"][0]["labels"] == ["m_gluino", "m_N1"]
    bkg = Path(doc["likelihoods"][0]["bkgonly"])
    yields = tmp_path / "y.csv"
    yields.write_text("m1,m2,region,bin,yield\n100,10,SR,0,1.0\n100,10,SR,1,2.0\n")
    out = tmp_path / "ps.json"
    result = runner.invoke(main, ["make-patch", str(bkg), str(yields), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"--hepdata ins{INSPIRE} inferred" in result.output
    assert json.loads(out.read_text())["metadata"]["references"] == {"hepdata": f"ins{INSPIRE}"}
    # outside the cache nothing is inferred: the PatchSet format still needs the id
    outside = tmp_path / "BkgOnly.json"
    outside.write_text(json.dumps(small_workspace(2)))
    result = runner.invoke(main, ["make-patch", str(outside), str(yields), "-o", str(out)])
    assert (
        result.exit_code == 1 and "--hepdata" in result.output and "inferred" not in result.output
    )


def test_sbottom_is_labelled_as_atlas_names_the_masses(
    shared_hepdata: Path, tmp_path: Path
) -> None:
    archive = shared_hepdata / "_archives/sbottom_multib_hepdata.89408.v3.r2.tar.gz"
    lik = recast.load_likelihood(archive, "RegionA", cache_dir=tmp_path)
    assert lik.labels == ["m_sbottom", "m_N2", "m_N1"]
    assert lik.patchset["metadata"]["labels"] == ["m_sbottom", "m_N2", "m_N1"]
