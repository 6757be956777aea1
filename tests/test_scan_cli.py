"""``recastkit scan`` on bad inputs: one clear line on stderr and exit status 1.

The numbers of the command (against pyhf), resume after a signal and Dask are tested in
``test_scan_reference.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from small_models import one_channel_workspace, signal_patch

from cli import main
from likelihood.spec import digest


def _workspace(scale: float = 1.0) -> dict:
    return one_channel_workspace([10.0 * scale, 5.0], [11.0, 4.0])


def _signal(sr: list[float]) -> list[dict]:
    return signal_patch(sr)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    bkg = _workspace()
    ps = {
        "metadata": {
            "description": "cli test",
            "digests": {"sha256": digest(bkg)},
            "labels": ["m1", "m2"],
            "references": {},
        },
        "patches": [
            {"metadata": {"name": "sig_100_0", "values": [100, 0]}, "patch": _signal([5.0, 1.0])},
            {"metadata": {"name": "sig_200_0", "values": [200, 0]}, "patch": _signal([2.0, 1.0])},
            {
                "metadata": {"name": "sig_300_0", "values": [300, 0]},
                "patch": [{"op": "replace", "path": "/channels/4/name", "value": "x"}],
            },
        ],
        "version": "1.0.0",
    }
    (tmp_path / "BkgOnly.json").write_text(json.dumps(bkg))
    (tmp_path / "patchset.json").write_text(json.dumps(ps))
    return tmp_path / "BkgOnly.json", tmp_path / "patchset.json"


def invoke(*args: str):
    return CliRunner().invoke(main, ["scan", *map(str, args)])


def assert_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_digest_mismatch_is_an_error(files, tmp_path):
    bkg, ps = files
    other = tmp_path / "Other.json"
    other.write_text(json.dumps(_workspace(scale=3.0)))
    assert_error(invoke(other, ps), "/metadata/digests/sha256", "--no-verify", str(ps))


def test_unknown_where_column(files):
    bkg, ps = files
    assert_error(invoke(bkg, ps, "--where", "mass > 3"), "mass", "the columns are patch, m1, m2")


def test_unknown_point(files):
    bkg, ps = files
    assert_error(invoke(bkg, ps, "--points", "sig_100_1"), "no patch named 'sig_100_1'")


def test_patch_that_does_not_apply_is_the_point_status(files, tmp_path):
    bkg, ps = files
    out = tmp_path / "r.csv"
    result = invoke(bkg, ps, "--points", "sig_300_0", "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    text = out.read_text().splitlines()
    assert text[0].split(",")[:3] == ["patch", "m1", "m2"]
    assert len(text) == 2
    assert text[1].startswith("sig_300_0,300,0,")
    assert ",invalid_patch," in text[1] and "/channels/4" in text[1]
    assert "1 points: 0 ok, 1 failed (1 invalid_patch), 0 no_signal" in result.stderr


def test_existing_output_needs_resume_or_overwrite(files, tmp_path):
    bkg, ps = files
    out = tmp_path / "r.csv"
    out.write_text("patch\n")
    assert_error(invoke(bkg, ps, "-o", out), "--resume", "--overwrite")
    assert_error(invoke(bkg, ps, "-o", tmp_path / "r.xlsx"), "*.csv, *.json or *.jsonl")


def test_option_conflicts(files):
    bkg, ps = files
    assert_error(invoke(bkg, ps, "--scheduler", "tcp://127.0.0.1:1"), "--executor dask")
    assert_error(invoke(bkg, ps, "--region", "A"), "--region")
    assert_error(invoke(bkg), "give the patchset")
    assert_error(invoke(bkg, ps, "--resume"), "resume needs the output")


def test_unknown_region_lists_the_regions(shared_hepdata):
    result = invoke(shared_hepdata / "sbottom_multib", "--region", "RegionZ")
    assert_error(result, "unknown region 'RegionZ'", "RegionA", "RegionB", "RegionC")


def test_several_regions_need_a_choice(shared_hepdata):
    folder = shared_hepdata / "sbottom_multib"
    assert_error(invoke(folder), "RegionA", "--region")
    assert_error(invoke(folder, "--region", "RegionA", "--all-regions"), "not both")
