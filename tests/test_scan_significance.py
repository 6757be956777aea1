"""``recast.scan(..., significance=True)`` and ``recastkit scan --significance``: the
discovery columns equal :func:`likelihood.discovery` point by point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from small_models import one_channel_workspace, signal_patch

import likelihood
import recast
from cli import main
from likelihood.spec import apply_patch, digest

COLUMNS = ["p0_obs", "z_obs", "p0_exp", "z_exp"]


def _workspace() -> dict:
    return one_channel_workspace([10.0, 5.0], [16.0, 6.0])


def _signal(sr: list[float]) -> list[dict]:
    return signal_patch(sr)


@pytest.fixture
def grid(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    bkg = _workspace()
    ps = {
        "metadata": {
            "description": "significance test",
            "digests": {"sha256": digest(bkg)},
            "labels": ["m1", "m2"],
            "references": {},
        },
        "patches": [
            {"metadata": {"name": "sig_100_0", "values": [100, 0]}, "patch": _signal([5.0, 1.0])},
            {"metadata": {"name": "sig_200_0", "values": [200, 0]}, "patch": _signal([2.0, 1.5])},
            {"metadata": {"name": "sig_300_0", "values": [300, 0]}, "patch": []},  # no signal
        ],
        "version": "1.0.0",
    }
    (tmp_path / "BkgOnly.json").write_text(json.dumps(bkg))
    (tmp_path / "patchset.json").write_text(json.dumps(ps))
    return tmp_path / "BkgOnly.json", tmp_path / "patchset.json", bkg, ps


def _check_rows(df: pd.DataFrame, bkg: dict, ps: dict) -> None:
    for patch in ps["patches"][:2]:
        row = df[df["patch"] == patch["metadata"]["name"]].iloc[0]
        assert row["status"] == "ok", row["message"]
        want = likelihood.discovery(likelihood.compile(apply_patch(bkg, patch["patch"])))
        assert row["p0_obs"] == pytest.approx(want.p0_obs, rel=1e-6)
        assert row["z_obs"] == pytest.approx(want.z_obs, rel=1e-6)
        assert row["p0_exp"] == pytest.approx(want.p0_exp[2], rel=1e-6)
        assert row["z_exp"] == pytest.approx(want.z_exp[2], rel=1e-6)
        assert row["z_obs"] > 0.3  # the excess is visible
    no_signal = df[df["patch"] == "sig_300_0"].iloc[0]
    assert no_signal["status"] == "no_signal"
    assert all(math.isnan(no_signal[c]) for c in COLUMNS)


def test_scan_significance_columns(grid) -> None:
    bkg_path, ps_path, bkg, ps = grid
    df = recast.scan(bkg_path, ps_path, jobs=1, significance=True)
    assert list(df.columns[-4:]) == COLUMNS
    assert all(df[c].dtype == "float64" for c in COLUMNS)
    _check_rows(df, bkg, ps)
    plain = recast.scan(bkg_path, ps_path, jobs=1)
    assert not set(COLUMNS) & set(plain.columns)
    pd.testing.assert_series_equal(plain["cls_obs"], df["cls_obs"])


def test_cli_significance_and_resume(grid, tmp_path: Path) -> None:
    bkg_path, ps_path, bkg, ps = grid
    out = tmp_path / "results.csv"
    args = ["scan", str(bkg_path), str(ps_path), "-j", "1", "--no-progress", "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--significance"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert list(df.columns[-4:]) == COLUMNS
    _check_rows(df, bkg, ps)
    # resume with the same options keeps the rows; without --significance it is refused
    again = CliRunner().invoke(main, [*args, "--significance", "--resume"])
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(out)[COLUMNS], df[COLUMNS])
    other = CliRunner().invoke(main, [*args, "--resume"])
    assert other.exit_code == 1
    assert "--significance" in other.stderr
