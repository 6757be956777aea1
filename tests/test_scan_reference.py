"""``recastkit scan`` on the real ATLAS likelihoods, against pyhf 0.7.6's numbers.

- the full 1Lbb grid (125 points) and the three sbottom regions (650 points), through the
  command line, within the core's tolerance of the pyhf references in ``shared/hepdata``;
- ``--best-expected`` picks the region that pyhf's own numbers say is most sensitive;
- a scan stopped by SIGINT / SIGTERM half-way and resumed has exactly one row per point,
  equal to an uninterrupted scan;
- a real Dask ``LocalCluster`` gives the same table as the local process pool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pyhf_reference import converged_entry, distance, pyhf_answers, pyhf_fits_end_above_ours

import recast
from cli import main
from likelihood.model import Background
from recast.scan import scan

CLS = ["cls_obs", "cls_exp_m2", "cls_exp_m1", "cls_exp", "cls_exp_p1", "cls_exp_p2"]
# the core's tolerance against pyhf (two pyhf runs differ by up to 4e-5 themselves)
MAX_DIFF = 1e-3
MEDIAN_DIFF = 1e-5
REPO = Path(__file__).resolve().parent.parent


def read_csv(path: Path) -> pd.DataFrame:
    """A result CSV with exact floats (parsed by float(), whatever the pandas version)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in df.columns:
        if col not in ("region", "patch", "status", "message"):
            df[col] = [float(v) if v else np.nan for v in df[col]]
    return df


def compare(
    df: pd.DataFrame,
    answers: dict[str, list[list[float]]],
    what: str,
    *,
    folder: Path | None = None,
) -> None:
    """Every point in the reference, every CLs within MAX_DIFF of pyhf (tests/pyhf_reference.py),
    the median within MEDIAN_DIFF.  ``folder`` (an sbottom region): where no pyhf answer is
    within MAX_DIFF, pyhf's own fits must be shown to stop above our minima."""
    assert sorted(df["patch"]) == sorted(answers), what
    diffs, names = [], []
    for row in df.itertuples(index=False):
        if not answers[row.patch]:  # pyhf could not fit it: the point must not be reported as ok
            assert row.status == "no_signal", (what, row.patch, row.status, row.message)
            continue
        assert row.status == "ok", (what, row.patch, row.status, row.message)
        d = distance([getattr(row, c) for c in CLS], answers[row.patch])
        entry = converged_entry(what, row.patch) if folder is not None else None
        if d > MAX_DIFF and entry is not None:
            bkg = json.loads((folder / "BkgOnly.json").read_text())
            patch = json.loads((folder / f"patch.{row.patch}.json").read_text())
            pyhf_fits_end_above_ours(Background(bkg).with_patch(patch, name=row.patch), entry)
            continue
        diffs.append(d)
        names.append(row.patch)
    d = np.array(diffs)
    assert d.max() <= MAX_DIFF, (what, d.max(), names[int(d.argmax())])
    assert np.median(d) <= MEDIAN_DIFF, (what, np.median(d))


def run_cli(*args: object) -> object:
    result = CliRunner().invoke(main, ["scan", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_cli_full_1lbb_grid_matches_pyhf(shared_hepdata, tmp_path):
    folder = shared_hepdata / "1Lbb"
    out = tmp_path / "1lbb.csv"
    result = run_cli(folder / "BkgOnly.json", folder / "patchset.json", "-o", out, "--no-progress")
    assert "125 points: 125 ok, 0 failed, 0 no_signal" in result.stderr
    df = read_csv(out)
    assert list(df.columns[:3]) == ["patch", "m1", "m2"]
    ps = json.loads((folder / "patchset.json").read_text())
    assert df["patch"].tolist() == [p["metadata"]["name"] for p in ps["patches"]]
    compare(df, pyhf_answers(shared_hepdata, "1Lbb"), "1Lbb")


@pytest.mark.slow
def test_cli_sbottom_all_regions_best_expected(shared_hepdata, tmp_path):
    folder = shared_hepdata / "sbottom_multib"
    out = tmp_path / "sbottom.csv"
    result = run_cli(
        folder, "--all-regions", "--best-expected", "-o", out, "--no-progress", "--chunk-size", "16"
    )
    df = read_csv(out)
    assert list(df.columns[:5]) == ["region", "patch", "m1", "m2", "m3"]
    assert df.groupby("region").size().to_dict() == {"RegionA": 217, "RegionB": 218, "RegionC": 215}
    refs = {}
    for region in ("RegionA", "RegionB", "RegionC"):
        refs[region] = pyhf_answers(shared_hepdata, f"sbottom_{region}")
        compare(df[df["region"] == region], refs[region], region, folder=folder / region)
    # gotcha 9: the RegionB patch without signal is reported, not fatal
    nosig = df[(df["region"] == "RegionB") & (df["patch"] == "sbottom_1500_1495_60")]
    assert nosig["status"].tolist() == ["no_signal"]
    assert "650 points: 649 ok, 0 failed, 1 no_signal" in result.stderr

    # best expected: per point the region with the lowest expected CLs in pyhf's numbers
    best = read_csv(tmp_path / "sbottom_best.csv")
    assert best["patch"].is_unique
    assert set(best["patch"]) == set(df["patch"])
    agree = 0
    for row in best.itertuples(index=False):
        candidates = {
            r: refs[r][row.patch][0][CLS.index("cls_exp")] for r in refs if refs[r].get(row.patch)
        }
        values = sorted(candidates.values())
        if len(values) > 1 and values[1] - values[0] < 1e-4:
            continue  # a tie within the tolerance: either region is right
        agree += row.region == min(candidates, key=candidates.get)
        assert row.region == min(candidates, key=candidates.get), row.patch
    assert agree >= len(best) // 2  # most points are decided by pyhf, not ties


def rows_in(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def start_scan(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "scan", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test runner started in the background (CI) may ignore SIGINT, and the child
        # would inherit that: give the scan the default Ctrl-C behaviour of a terminal
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after(proc: subprocess.Popen, out: Path, n_rows: int, signum: int) -> int:
    deadline = time.monotonic() + 240
    while rows_in(out) < n_rows:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the scan made no progress"
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert "--resume" in stderr, stderr
    return proc.returncode


@pytest.mark.slow
def test_interrupted_scan_resumes_to_the_uninterrupted_table(shared_hepdata, tmp_path):
    folder = shared_hepdata / "sbottom_multib"
    out = tmp_path / "regionA.csv"
    args = [
        str(folder),
        "--region",
        "RegionA",
        "-o",
        str(out),
        "-j",
        "2",
        "--chunk-size",
        "4",
        "--no-progress",
    ]
    n_total = 217
    # Ctrl-C after some rows: exit 130, finished rows kept
    assert interrupt_after(start_scan(args), out, 30, signal.SIGINT) == 130
    first = read_csv(out)
    assert 30 <= len(first) < n_total
    assert first["patch"].is_unique
    # resumed, then stopped by SIGTERM: exit 143, more rows, still one per point
    assert (
        interrupt_after(start_scan([*args, "--resume"]), out, len(first) + 30, signal.SIGTERM)
        == 143
    )
    second = read_csv(out)
    assert len(first) < len(second) < n_total
    assert second["patch"].is_unique
    assert set(first["patch"]) <= set(second["patch"])
    # resumed to the end
    proc = start_scan([*args, "--resume"])
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert f"computed {n_total - len(second)} " in stderr
    resumed = read_csv(out)

    lh = recast.load_likelihood(folder, "RegionA")
    full = scan(lh, jobs=1)
    assert resumed["patch"].tolist() == full["patch"].tolist()
    assert (resumed["status"] == full["status"]).all()
    # equal up to the fit tolerance: the fits of resumed points start from other neighbours
    np.testing.assert_allclose(resumed[CLS].to_numpy(), full[CLS].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(resumed["mu_hat"], full["mu_hat"], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_process_pool_table(shared_hepdata):
    distributed = pytest.importorskip("distributed")
    lh = recast.load_likelihood(shared_hepdata / "sbottom_multib", "RegionC")
    where = "m3 == 60 and m1 <= 500"
    pooled = scan(lh, where=where, jobs=2, chunk_size=3)
    assert 8 <= len(pooled) <= 20
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = scan(lh, where=where, executor=client, chunk_size=3)
        assert sum(client.nthreads().values()) == 2
    pd.testing.assert_frame_equal(
        pooled.drop(columns="seconds"), on_dask.drop(columns="seconds"), check_exact=True
    )
    assert (on_dask["status"] == "ok").all(), on_dask["message"].tolist()
    assert on_dask[CLS].stack().between(0, 1).all()


@pytest.mark.slow
def test_cli_dask_executor_gives_the_process_pool_table(shared_hepdata, tmp_path):
    folder = shared_hepdata / "sbottom_multib"
    where = "m3 == 60 and m1 <= 400"
    out = tmp_path / "dask.csv"
    run_cli(
        folder,
        "--region",
        "RegionA",
        "--where",
        where,
        "--executor",
        "dask",
        "-j",
        "2",
        "--chunk-size",
        "2",
        "-o",
        out,
        "--no-progress",
    )
    on_dask = read_csv(out)
    pooled = scan(recast.load_likelihood(folder, "RegionA"), where=where, jobs=2, chunk_size=2)
    assert on_dask["patch"].tolist() == pooled["patch"].tolist()
    assert len(pooled) >= 4
    np.testing.assert_array_equal(on_dask[CLS].to_numpy(), pooled[CLS].to_numpy())


def test_upper_limits_are_where_cls_crosses_005(shared_hepdata):
    """By definition, CLs at mu = the upper limit is 0.05 (observed and median expected)."""
    lh = recast.load_likelihood(shared_hepdata / "sbottom_multib", "RegionA")
    names = ["sbottom_1300_205_60", "sbottom_1400_950_60"]
    limits = scan(lh, points=names, jobs=1, upper_limit=True)
    assert (limits["status"] == "ok").all(), limits["message"].tolist()
    assert (limits["mu_ul_obs"] > 0).all()
    band = limits[["mu_ul_exp_m2", "mu_ul_exp_m1", "mu_ul_exp", "mu_ul_exp_p1", "mu_ul_exp_p2"]]
    assert (band.diff(axis=1).iloc[:, 1:] > 0).all().all()  # ordered -2s < ... < +2s
    for row in limits.itertuples(index=False):
        at_obs = scan(lh, points=[row.patch], jobs=1, mu=row.mu_ul_obs)
        assert at_obs["cls_obs"].iloc[0] == pytest.approx(0.05, abs=2e-3)
        at_exp = scan(lh, points=[row.patch], jobs=1, mu=row.mu_ul_exp)
        assert at_exp["cls_exp"].iloc[0] == pytest.approx(0.05, abs=2e-3)
    # CLs(mu=1) below 0.05 <=> the observed limit is below 1
    assert ((limits["cls_obs"] < 0.05) == (limits["mu_ul_obs"] < 1)).all()
