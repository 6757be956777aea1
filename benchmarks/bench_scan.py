"""Benchmark of ``recastkit scan`` on the ATLAS 1Lbb likelihood (ATLAS-SUSY-2019-08).

Prints:

- points/s with 1 worker (in-process) and 2 workers (a process pool), each measured on
  warm workers (background compiled, kernels loaded), best of ``--repeat`` alternated
  runs, and the speedup 2 vs 1;
- the wall time of the whole grid (125 points) through a fresh ``recastkit scan ... -j 2``
  subprocess, start-up included (interpreter, imports, workers, kernels loaded from numba's
  cache), against pyhf's serial time for the same points (the goal: <= 3 s on 2 cores).

pyhf 0.7.6 needs about 11 s per point on this likelihood (``seconds`` in the reference
file).  Timings on a shared machine are noisy: run it on an idle one, several times.

Usage::

    python benchmarks/bench_scan.py [--hepdata ../shared/hepdata] [--points 125] [--no-cli]
        [--cli-only]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recast._scan_worker import THREAD_ENV, init_worker  # noqa: E402

# one thread per worker, in this process too (the 1-worker run computes here): set before
# numpy is imported, as `recastkit scan` does
for _key, _value in THREAD_ENV.items():
    os.environ.setdefault(_key, _value)

from likelihood._threads import pinned_threads as _pinned_threads  # noqa: E402
from recast.scan import scan  # noqa: E402


def _timed(bkgonly: dict, patchset: dict, names: list[str], verify: bool, **kw: object) -> float:
    start = time.perf_counter()
    df = scan(bkgonly, patchset, points=names, verify=verify, **kw)
    wall = time.perf_counter() - start
    bad = df[df["status"] != "ok"]
    if len(bad):
        print(f"  warning: {len(bad)} point(s) not ok: {bad['status'].value_counts().to_dict()}")
    return wall


def _throughput(
    bkgonly: dict, patchset: dict, names: list[str], verify: bool, repeat: int
) -> tuple[list[float], list[float]]:
    """Wall times of ``repeat`` runs with 1 worker (in-process) and 2 warm workers, alternated.

    Alternating the two and keeping the best of each makes the comparison fairer on a
    machine whose load from other processes changes during the benchmark.
    """
    with _pinned_threads():
        pool = ProcessPoolExecutor(
            max_workers=2,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
        )
    one: list[float] = []
    two: list[float] = []
    with pool:
        # warm-up: one point per worker (each compiles the background and loads the
        # kernels), and one in this process
        scan(bkgonly, patchset, points=names[:1], jobs=1, verify=verify)
        scan(bkgonly, patchset, points=names[:2], executor=pool, chunk_size=1, verify=verify)
        for _ in range(repeat):
            one.append(_timed(bkgonly, patchset, names, verify, jobs=1))
            two.append(_timed(bkgonly, patchset, names, verify, executor=pool))
    return one, two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hepdata", type=Path, default=REPO.parent / "shared" / "hepdata")
    parser.add_argument("--points", type=int, default=125, help="points for the throughput runs")
    parser.add_argument("--repeat", type=int, default=3, help="alternated timing runs")
    parser.add_argument("--no-cli", action="store_true", help="skip the full-grid subprocess run")
    parser.add_argument(
        "--cli-only", action="store_true", help="only the full-grid subprocess runs"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the patchset digest check (as scan's)"
    )
    args = parser.parse_args()

    folder = args.hepdata / "1Lbb"
    bkgonly = json.loads((folder / "BkgOnly.json").read_text())
    patchset = json.loads((folder / "patchset.json").read_text())
    names = [p["metadata"]["name"] for p in patchset["patches"]][: args.points]
    ref = json.loads((folder / "reference" / "pyhf-0.7.6_cls.json").read_text())["results"]
    pyhf_s = sum(r["seconds"] for r in ref) / len(ref)

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"1Lbb: {len(names)} points; cores usable: {len(os.sched_getaffinity(0))}; load {load}")
    print(f"pyhf 0.7.6 reference: {pyhf_s:.1f} s/point ({len(ref) * pyhf_s / 60:.0f} min serial)")
    if not args.cli_only:
        one, two = _throughput(bkgonly, patchset, names, not args.no_verify, args.repeat)
        n = len(names)
        print(f"1 worker  runs: {', '.join(f'{t:.1f}' for t in one)} s")
        print(f"2 workers runs: {', '.join(f'{t:.1f}' for t in two)} s")
        rate1, rate2 = n / min(one), n / min(two)
        print(f"1 worker : {rate1:7.2f} points/s  (best, {1 / rate1 * 1e3:.0f} ms/point)")
        print(f"2 workers: {rate2:7.2f} points/s  (best)")
        print(f"speedup 2 vs 1 worker: {rate2 / rate1:.2f}x (best of {len(one)} alternated runs)")
        print(f"per point vs pyhf: {pyhf_s * rate1:.0f}x faster (1 worker)")
        print(f"load average after: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")

    if not args.no_cli:
        walls = []
        for _ in range(min(2, args.repeat)):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "results.csv"
                cmd = [
                    sys.executable,
                    "-m",
                    "cli",
                    "scan",
                    str(folder / "BkgOnly.json"),
                    str(folder / "patchset.json"),
                    "-o",
                    str(out),
                    "-j",
                    "2",
                    "--no-progress",
                    *(["--no-verify"] if args.no_verify else []),
                ]
                start = time.perf_counter()
                proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
                walls.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    print(proc.stderr)
                    raise SystemExit(proc.returncode)
                n = len(out.read_text().splitlines()) - 1
        serial = n * pyhf_s
        print(
            f"full grid, fresh `recastkit scan -j 2` subprocess (start-up included): "
            f"{n} points in {', '.join(f'{w:.2f}' for w in walls)} s (goal <= 3 s); "
            f"pyhf 0.7.6 serial {serial:.0f} s: {serial / min(walls):.0f}x faster"
        )


if __name__ == "__main__":
    main()
