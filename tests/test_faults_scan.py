"""``recastkit scan`` / ``make-patch`` under real faults (issue 16, items 3, 4, 5, 8, 9, 10).

Every test drives the real command in a subprocess and injects the real fault: SIGKILL of
a pool worker or of the scan itself, an output folder on a read-only or full tmpfs (when
``mount`` works here, i.e. as root), or an ``OSError`` raised at the OS boundary
(``os.write``) inside the subprocess.  Each checks the exit status, the one-line message
(no traceback) and what is on disk afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from likelihood.spec import digest

_SCRIPT = Path(sys.executable).with_name("recastkit")
_CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "import cli; cli.main()"]

# A fault injected at the OS boundary: os.write on the result file returns short once past
# a byte budget, then fails with ENOSPC (what a full disk does).
_ENOSPC = """
import errno, os, sys
_real, _budget = os.write, int(os.environ["FAULT_BUDGET"])
def _write(fd, data):
    global _budget
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = ""
    if not target.endswith(".csv"):
        return _real(fd, data)
    if _budget <= 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    n = _real(fd, bytes(data[:_budget]))
    _budget -= n
    return n
os.write = _write
import cli
sys.argv[0] = "recastkit"
cli.main()
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env.update(extra)
    return env


def run(*args: object, timeout: float = 240, cli: list[str] | None = None, **env: str):
    return subprocess.run(
        [*(cli or _CLI), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
    )


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single ``Error:`` line of a failed command (exit 1, no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# ---------------------------------------------------------------------------------------
# a small synthetic grid (fits in milliseconds) for the file-system faults


def _workspace(negative_lo: bool = False) -> dict:
    modifiers = [{"name": "norm_bkg", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]
    if negative_lo:  # legal, but the validation warns about it
        modifiers.append(
            {"name": "shape", "type": "histosys", "data": {"hi_data": [12, 6], "lo_data": [-1, 4]}}
        )
    return {
        "channels": [
            {
                "name": "SR",
                "samples": [{"name": "bkg", "data": [10.0, 5.0], "modifiers": modifiers}],
            }
        ],
        "observations": [{"name": "SR", "data": [11.0, 4.0]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu_SIG", "parameters": []}}],
        "version": "1.0.0",
    }


def _patch(s1: float, s2: float) -> list[dict]:
    sample = {
        "name": "signal",
        "data": [s1, s2],
        "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
    }
    return [{"op": "add", "path": "/channels/0/samples/1", "value": sample}]


def small_grid(folder: Path, n: int = 120, negative_lo: bool = False) -> tuple[Path, Path]:
    bkg = _workspace(negative_lo)
    patches = [
        {
            "metadata": {"name": f"sig_{i}", "values": [100 + 10 * i]},
            "patch": _patch(0.05 * (i + 1), 0.02 * (i + 1)),
        }
        for i in range(n)
    ]
    ps = {
        "metadata": {
            "description": "fault tests",
            "digests": {"sha256": digest(bkg)},
            "labels": ["m1"],
            "references": {},
        },
        "patches": patches,
        "version": "1.0.0",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "BkgOnly.json").write_text(json.dumps(bkg))
    (folder / "patchset.json").write_text(json.dumps(ps))
    return folder / "BkgOnly.json", folder / "patchset.json"


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["patch"]: row for row in csv.DictReader(fh)}


def same_numbers(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        for col in ("cls_obs", "cls_exp_m2", "cls_exp", "cls_exp_p2", "mu_hat", "status"):
            assert a[name][col] == b[name][col], (name, col, a[name][col], b[name][col])


# ---------------------------------------------------------------------------------------
# real mounts (root only): a read-only and a nearly full tmpfs


def _mount(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


@contextlib.contextmanager
def tmpfs(target: Path, options: str) -> Iterator[Path]:
    if not _mount(target, options):
        pytest.skip("cannot mount a tmpfs here (not root); the injected-OSError tests cover it")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_output_on_a_read_only_mount(tmp_path):
    bkg, ps = small_grid(tmp_path / "in", n=3)
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        proc = run("scan", bkg, ps, "-j", "1", "-o", ro / "r.csv", "--no-progress")
        one_line_error(proc, f"{ro / 'r.csv'}", "Read-only file system", "--resume")
        assert list(ro.iterdir()) == []


def test_make_patch_output_on_a_read_only_mount(tmp_path, repo_root):
    grids = repo_root / "grids"
    bkg = tmp_path / "BkgOnly.json"
    proc = run("fetch", repo_root / "fixtures" / "toy_hepdata_archive.tar.gz", "--json",
               RECASTKIT_CACHE=str(tmp_path / "cache"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lik = json.loads(proc.stdout)["likelihoods"][0]
    bkg = Path(lik["bkgonly"])
    args = ("make-patch", bkg, grids / "yields.csv", "--mapping", grids / "mapping.json",
            "--hepdata", "ins0000000")  # fmt: skip
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        one_line_error(run(*args, "-o", ro / "p.json"), str(ro), "Read-only file system")
        one_line_error(run(*args, "--per-point-dir", ro / "pp"), str(ro), "Read-only file system")
        assert list(ro.iterdir()) == []


def test_make_patch_on_a_full_disk_writes_nothing(tmp_path, repo_root):
    grids = repo_root / "grids"
    subprocess.run(["tar", "xzf", str(repo_root / "fixtures" / "toy_hepdata_archive.tar.gz"),
                    "-C", str(tmp_path)], check=True)  # fmt: skip
    args = ("make-patch", tmp_path / "ToyAnalysis" / "BkgOnly.json", grids / "yields.csv",
            "--mapping", grids / "mapping.json", "--hepdata", "ins0000000")  # fmt: skip
    with tmpfs(tmp_path / "full", "size=64k") as full:
        (full / "filler").write_bytes(b"\0" * (64 - 8) * 1024)
        one_line_error(run(*args, "-o", full / "p.json"), str(full / "p.json"), "No space left")
        assert [p.name for p in full.iterdir()] == ["filler"]  # no partial or temporary file


def test_full_disk_stops_the_scan_cleanly_and_resume_recovers(tmp_path):
    bkg, ps = small_grid(tmp_path / "in", n=40)
    reference = tmp_path / "ref.csv"
    proc = run("scan", bkg, ps, "-j", "1", "--chunk-size", "1", "-o", reference, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    with tmpfs(tmp_path / "full", "size=64k") as full:
        filler = full / "filler"
        filler.write_bytes(b"\0" * (64 - 4) * 1024)  # leaves one page for the results
        out = full / "r.csv"
        proc = run("scan", bkg, ps, "-j", "1", "--chunk-size", "1", "-o", out, "--no-progress")
        one_line_error(proc, str(out), "No space left on device", "--resume")
        text = out.read_text()
        assert text.endswith("\n"), "a partial row was left in the file"
        kept = read_rows(out)
        assert 0 < len(kept) < 40
        assert all(row["status"] == "ok" for row in kept.values())
        assert sorted(p.name for p in full.iterdir()) == ["filler", "r.csv"]  # no temporary files
        filler.unlink()
        proc = run("scan", bkg, ps, "-j", "1", "--chunk-size", "1", "-o", out, "--resume",
                   "--no-progress")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        same_numbers(read_rows(out), read_rows(reference))


def test_injected_enospc_never_leaves_a_partial_row(tmp_path):
    budget = 700
    """The same fault without a mount: os.write of the result file fails with ENOSPC."""
    bkg, ps = small_grid(tmp_path / "in", n=20)
    out = tmp_path / "r.csv"
    proc = run("scan", bkg, ps, "-j", "1", "--chunk-size", "1", "-o", out, "--no-progress",
               cli=[sys.executable, "-c", _ENOSPC], FAULT_BUDGET=str(budget))  # fmt: skip
    one_line_error(proc, str(out), "No space left on device")
    text = out.read_text()
    assert text.endswith("\n")
    rows = read_rows(out)
    # every kept row is whole (the final atomic rewrite may add the row whose append failed)
    assert len(rows) < 20 and all(None not in r.values() for r in rows.values())
    assert all(r["status"] == "ok" for r in rows.values())
    assert len(rows) >= 2
    proc = run("scan", bkg, ps, "-j", "1", "--chunk-size", "1", "-o", out, "--resume",
               "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(read_rows(out)) == 20


# ---------------------------------------------------------------------------------------
# signals: a real grid, real processes


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in task.read_text().split())
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaps counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _rows_in(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _start_scan(args: list[object], out: Path) -> tuple[subprocess.Popen, list[int]]:
    """Start a scan with two workers; return once both compute and a row is on disk."""
    proc = subprocess.Popen(
        [*_CLI, *map(str, args), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
        if len(workers) == 2 and _rows_in(out) >= 1:
            return proc, workers
        if proc.poll() is not None:
            pytest.fail(f"the scan ended before the fault: {proc.communicate()[1]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the scan did not start two workers within 120 s")


@pytest.fixture
def lbb_scan(shared_hepdata: Path) -> list[object]:
    folder = shared_hepdata / "1Lbb"
    return ["scan", folder / "BkgOnly.json", folder / "patchset.json",
            "--where", "m1 <= 250", "-j", "2", "--chunk-size", "2", "--no-progress"]  # fmt: skip


def test_scan_survives_a_killed_worker(lbb_scan, tmp_path):
    reference = tmp_path / "reference.csv"
    proc = run(*lbb_scan, "-o", reference)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "r.csv"
    proc, workers = _start_scan(lbb_scan, out)
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "a worker process died" in stderr  # the fault hit a running scan
    rows = read_rows(out)
    assert len(rows) == 16 and {r["status"] for r in rows.values()} == {"ok"}
    same_numbers(rows, read_rows(reference))


def test_workers_die_with_a_killed_scan(lbb_scan, tmp_path):
    proc, workers = _start_scan(lbb_scan, tmp_path / "r.csv")
    children = _children(proc.pid)
    assert any("resource_tracker" in _cmdline(c) for c in children)
    assert set(workers) <= set(children)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [(c, _cmdline(c)[:80]) for c in children if _alive(c)]
    assert not alive, f"still running 5 s after the scan was killed: {alive}"
    assert _rows_in(tmp_path / "r.csv") >= 1  # what finished is kept


# ---------------------------------------------------------------------------------------
# options and messages


def test_mu_below_the_poi_bound_is_refused_up_front(tmp_path):
    bkg, ps = small_grid(tmp_path, n=3)
    proc = run("scan", bkg, ps, "--mu", "-1", "-o", tmp_path / "r.csv")
    one_line_error(proc, "--mu -1", "lower bound 0", "'mu_SIG'")
    assert not (tmp_path / "r.csv").exists()


def test_huge_mu_is_a_clear_status(shared_hepdata, tmp_path):
    folder = shared_hepdata / "1Lbb"
    out = tmp_path / "r.csv"
    proc = run("scan", folder / "BkgOnly.json", folder / "patchset.json", "--mu", "1e6",
               "--points", "C1N2_Wh_hbb_300_0", "-j", "1", "-o", out, "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "is above the upper bound 5 of 'mu_SIG' (" in proc.stderr
    (row,) = read_rows(out).values()
    assert row["status"] == "fit_failed", row
    assert "mu=1e+06" in row["message"] and "Error" not in row["message"], row["message"]
    assert row["cls_obs"] == "" or math.isfinite(float(row["cls_obs"]))


def test_empty_patchset_says_so(tmp_path):
    bkg, ps = small_grid(tmp_path, n=0)
    one_line_error(run("scan", bkg, ps), "holds no patches")


def test_existing_output_is_worded_for_each_caller(tmp_path):
    from recast import scan
    from recast.errors import ScanError

    bkg, ps = small_grid(tmp_path, n=2)
    out = tmp_path / "r.csv"
    out.write_text("patch\n")
    line = one_line_error(run("scan", bkg, ps, "-o", out), "add --resume", "--overwrite")
    assert "resume=True" not in line
    with pytest.raises(ScanError, match="pass resume=True") as info:
        scan(bkg, ps, output=out, jobs=1)
    assert "--resume" not in str(info.value)


def test_resume_of_a_finished_scan_shows_no_bar_and_counts_keep_up(tmp_path):
    bkg, ps = small_grid(tmp_path, n=30)
    out = tmp_path / "r.csv"
    first = run("scan", bkg, ps, "-j", "1", "--chunk-size", "3", "-o", out)
    assert first.returncode == 0, first.stderr
    assert "30/30 [" in first.stderr and "ok=30," in first.stderr  # the last redraw is current
    again = run("scan", bkg, ps, "-j", "1", "-o", out, "--resume")
    assert again.returncode == 0, again.stderr
    assert "pt/s" not in again.stderr and "0pt" not in again.stderr, again.stderr
    assert "scan: 30 points: 30 ok, 0 failed, 0 no_signal; computed 0" in again.stderr


def test_workspace_warnings_are_said_once_per_scan(tmp_path):
    bkg, ps = small_grid(tmp_path, n=24, negative_lo=True)
    proc = run("scan", bkg, ps, "-j", "2", "--chunk-size", "3", "-o", tmp_path / "r.csv")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "negative lo_data" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"WARNING recast.scan: {bkg}: /channels/0/samples/0/"), lines[0]


def test_dask_executor_is_quiet_at_default_verbosity(tmp_path):
    pytest.importorskip("distributed")
    bkg, ps = small_grid(tmp_path, n=4)
    proc = run("scan", bkg, ps, "--executor", "dask", "-j", "1", "-o", tmp_path / "r.csv",
               "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "INFO" not in proc.stderr and "distributed" not in proc.stderr, proc.stderr
    assert len(read_rows(tmp_path / "r.csv")) == 4


def test_workers_killed_again_and_again_give_error_rows_exit_1_and_resume(tmp_path):
    """Bounded resubmission: a scan whose workers are always killed ends, exit 1."""
    bkg, ps = small_grid(tmp_path, n=8)
    out = tmp_path / "r.csv"
    proc = subprocess.Popen(
        [*_CLI, "scan", str(bkg), str(ps), "-j", "2", "-o", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    killed: set[int] = set()
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        for child in _children(proc.pid):
            if child not in killed and "spawn_main" in _cmdline(child):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
                killed.add(child)
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=30)
    assert len(killed) >= 3  # the first pool and at least two restarts
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    one_line_error(done, "8 point(s) have status error", "--resume")
    rows = read_rows(out)
    assert {r["status"] for r in rows.values()} == {"error"}
    assert all("died 3 times" in r["message"] for r in rows.values())
    again = run("scan", bkg, ps, "-j", "1", "-o", out, "--resume", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in read_rows(out).values()} == {"ok"}
