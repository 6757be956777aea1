"""`recastkit fetch` and `recastkit cache` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hepdata_server import Fault, HEPDataServer, make_tar

from cli import main

ARCHIVE = "_archives/sbottom_multib_hepdata.89408.v3.r2.tar.gz"
RES_DOI = "10.17182/hepdata.89408.v3/r2"


@pytest.fixture(scope="module")
def server(shared_hepdata: Path) -> HEPDataServer:
    with HEPDataServer() as srv:
        srv.add_record(89408, 1748602, 3)
        srv.add_resource(89408, 91234, shared_hepdata / ARCHIVE, "likelihoods.tar.gz", doi=RES_DOI)
        yield srv


@pytest.fixture()
def runner(server: HEPDataServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RECASTKIT_HEPDATA_URL", server.url)
    monkeypatch.setenv("RECASTKIT_DOI_URL", server.doi_url)
    server.clear_log()
    server.faults.clear()
    return CliRunner()


def test_fetch_prints_the_likelihoods_table(
    runner: CliRunner, tmp_path: Path, server: HEPDataServer
) -> None:
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["fetch", "ins1748602", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the byte progress bar goes to stderr
    assert lines[0].split()[:5] == ["name", "format", "points", "labels", "digest"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:4]}
    assert {k: v[2] for k, v in rows.items()} == {
        "RegionA": "217",
        "RegionB": "218",
        "RegionC": "215",
    }
    assert all(v[3] == "m_sbottom,m_N2,m_N1" for v in rows.values())
    content = cache / "hepdata-resource-91234" / "content"
    assert rows["RegionA"][5] == str(content / "RegionA" / "BkgOnly.json")
    assert f"3 likelihood(s) in {content}" in result.stdout
    assert "B/s" in result.stderr  # tqdm byte progress bar
    # second run: cache hit, no request
    server.clear_log()
    again = runner.invoke(main, ["fetch", "ins1748602", "--cache-dir", str(cache)])
    assert again.exit_code == 0 and server.requests == []


def test_fetch_json_labels_and_inspire_flag(runner: CliRunner, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = runner.invoke(
        main,
        [
            "fetch",
            "1748602",
            "--inspire",
            "--cache-dir",
            str(cache),
            "--labels",
            "msb,mn2,mn1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert Path(doc["path"]).is_dir() and doc["source"] == "1748602"
    lik = {d["name"]: d for d in doc["likelihoods"]}
    assert [lik[r]["n_points"] for r in ("RegionA", "RegionB", "RegionC")] == [217, 218, 215]
    assert lik["RegionB"]["labels"] == ["msb", "mn2", "mn1"]
    assert lik["RegionB"]["format"] == "legacy_patches" and lik["RegionB"]["digest_ok"] is None


def test_offline_miss_exits_nonzero_and_says_how_to_fetch(
    runner: CliRunner, tmp_path: Path, server: HEPDataServer
) -> None:
    result = runner.invoke(main, ["fetch", RES_DOI, "--offline", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "not in the cache" in result.output
    assert f"run `recastkit fetch {RES_DOI}` without --offline" in result.output
    assert server.requests == []


def test_errors_are_one_line(runner: CliRunner, tmp_path: Path, server: HEPDataServer) -> None:
    server.inject(Fault(r"/record/resource/", "html"))
    result = runner.invoke(main, ["fetch", RES_DOI, "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    error = result.stderr.rsplit("\r", 1)[-1]  # after the progress bar's carriage returns
    assert error.startswith("Error: ") and error.count("\n") == 1
    assert "got an HTML page" in error and result.stdout == ""
    bad = make_tar(tmp_path / "bad.tgz", {"../../evil.json": b"{}"})
    result = runner.invoke(main, ["fetch", str(bad), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1 and "contains '..'" in result.output
    result = runner.invoke(
        main, ["fetch", "https://example.org/a.tar.gz", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "--force" in result.output
    result = runner.invoke(main, ["fetch", "1748602", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "--inspire" in result.output


def test_refresh_and_cache_list_and_clear(
    runner: CliRunner, tmp_path: Path, server: HEPDataServer, shared_hepdata: Path
) -> None:
    cache = tmp_path / "cache"
    assert runner.invoke(main, ["fetch", RES_DOI, "--cache-dir", str(cache)]).exit_code == 0
    local = runner.invoke(main, ["fetch", str(shared_hepdata / ARCHIVE), "--cache-dir", str(cache)])
    assert local.exit_code == 0, local.output
    server.clear_log()
    assert (
        runner.invoke(main, ["fetch", RES_DOI, "--refresh", "--cache-dir", str(cache)]).exit_code
        == 0
    )
    assert any(p.startswith("/record/resource/91234") for p in server.paths())

    listing = runner.invoke(main, ["cache", "list", "--cache-dir", str(cache)])
    assert listing.exit_code == 0, listing.output
    assert "hepdata-resource-91234" in listing.output and "2 entries" in listing.output
    doc = json.loads(
        runner.invoke(main, ["cache", "list", "--cache-dir", str(cache), "--json"]).output
    )
    assert len(doc["entries"]) == 2 and {e["size"] for e in doc["entries"]} == {
        (shared_hepdata / ARCHIVE).stat().st_size
    }

    declined = runner.invoke(main, ["cache", "clear", "--cache-dir", str(cache)], input="n\n")
    assert declined.exit_code == 0 and "Nothing removed" in declined.output
    one = runner.invoke(
        main,
        ["cache", "clear", "--cache-dir", str(cache), "--key", "hepdata-resource-91234", "--yes"],
    )
    assert one.exit_code == 0 and "Removed 1 entry" in one.output
    unknown = runner.invoke(
        main, ["cache", "clear", "--cache-dir", str(cache), "--key", "nope", "--yes"]
    )
    assert unknown.exit_code == 1 and "cache list" in unknown.output
    cleared = runner.invoke(main, ["cache", "clear", "--cache-dir", str(cache), "--yes"])
    assert cleared.exit_code == 0 and "Removed 1 entry" in cleared.output
    empty = runner.invoke(main, ["cache", "list", "--cache-dir", str(cache)])
    assert "is empty" in empty.output
    # after clearing, the source index no longer points anywhere: offline is a miss again
    miss = runner.invoke(main, ["fetch", RES_DOI, "--offline", "--cache-dir", str(cache)])
    assert miss.exit_code == 1


def test_cache_dir_from_environment(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECASTKIT_CACHE", str(tmp_path / "envcache"))
    result = runner.invoke(main, ["fetch", RES_DOI, "--json"])
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.output)["path"]).is_relative_to(tmp_path / "envcache")
    monkeypatch.delenv("RECASTKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    result = runner.invoke(main, ["cache", "list"])
    assert result.exit_code == 0 and str(tmp_path / "xdg" / "recastkit") in result.output


def test_fetch_folder_with_patchset_as_json(runner: CliRunner, shared_hepdata: Path) -> None:
    result = runner.invoke(main, ["fetch", str(shared_hepdata / "3L_eRJR"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["path"] == str((shared_hepdata / "3L_eRJR").resolve())
    (lik,) = doc["likelihoods"]
    assert lik["format"] == "patchset" and lik["n_points"] == 64
    assert lik["labels"] == ["mn2", "mn1"] and isinstance(lik["digest_ok"], bool)
    assert lik["patchset"] == str(shared_hepdata / "3L_eRJR" / "patchset.json")
