"""Time one asymptotic CLs hypothesis test per signal point: pyhf vs recastkit.

Side by side in one run, on one core: pyhf 0.7.6 (numpy backend, scipy SLSQP, the settings
of the references in ``shared/hepdata``: qtilde, mu = 1, normsys code4, histosys code4p)
and recastkit (``Background.with_patch`` + ``hypotest``), on 1Lbb and sbottom RegionA
(10 patches each by default).  Prints per-analysis medians and their ratio; the cost of
``upper_limit`` (observed + five expected limits) against ``hypotest`` on the same points;
the largest shared models (compressed-EWK Sleptons, 38 channels, and 2L jets EWK, with a
made-up signal in every SR bin); a scaling table (time per point against the number of
parameters over every shared workspace); then the cold start of recastkit in a fresh
process (import, compile, first hypotest), with the numba cache absent and present.

Usage::

    python benchmarks/bench_hypotest.py [--shared PATH] [--points N] [--skip-pyhf]
        [--pyhf-large] [--quick]

This is a benchmark, not a test; timings on a shared machine are noisy.
"""

from __future__ import annotations

import os

# one core, one BLAS thread: set before numpy is imported anywhere
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent


def _pin_one_core() -> str:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        return f"pinned to CPU {cpus[0]} (of {len(cpus)})"
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return "not pinned (no sched_setaffinity)"


def _cases(shared: Path, n: int) -> list[tuple[str, dict, list[tuple[str, list]]]]:
    bkg = json.loads((shared / "1Lbb" / "BkgOnly.json").read_text())
    ps = json.loads((shared / "1Lbb" / "patchset.json").read_text())
    step = max(1, len(ps["patches"]) // n)
    one_lbb = [(p["metadata"]["name"], p["patch"]) for p in ps["patches"][::step][:n]]
    d = shared / "sbottom_multib" / "RegionA"
    files = sorted(d.glob("patch.*.json"))
    step = max(1, len(files) // n)
    sbottom = [(f.stem, json.loads(f.read_text())) for f in files[::step][:n]]
    return [
        ("1Lbb", bkg, one_lbb),
        ("sbottom RegionA", json.loads((d / "BkgOnly.json").read_text()), sbottom),
    ]


def _time_pyhf(bkg: dict, patches: list[tuple[str, list]]) -> list[float]:
    import jsonpatch
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    out = []
    for _name, patch in patches:
        t0 = time.perf_counter()
        spec = jsonpatch.apply_patch(bkg, patch)
        ws = pyhf.Workspace(spec)
        model = ws.model(
            modifier_settings={
                "normsys": {"interpcode": "code4"},
                "histosys": {"interpcode": "code4p"},
            }
        )
        pyhf.infer.hypotest(
            1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True
        )
        out.append(time.perf_counter() - t0)
    return out


def _time_recastkit(bkg: dict, patches: list[tuple[str, list]]) -> tuple[list[float], float]:
    import likelihood

    t0 = time.perf_counter()
    bg = likelihood.Background(bkg)
    t_bkg = time.perf_counter() - t0
    # warm-up: numba compilation / cache load is the cold start, measured separately
    likelihood.hypotest(bg.with_patch(patches[0][1]))
    out = []
    for name, patch in patches:
        t0 = time.perf_counter()
        r = likelihood.hypotest(bg.with_patch(patch, name=name))
        out.append(time.perf_counter() - t0)
        if r.status != "ok":
            print(f"    warning: {name}: {r.status} {r.message}")
    return out, t_bkg


def _time_with_patch(bkg: dict, patches: list[tuple[str, list]]) -> list[float]:
    """``Background.with_patch`` alone (validation + model), best of 3 per patch."""
    import likelihood

    bg = likelihood.Background(bkg)
    out = []
    for name, patch in patches:
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            bg.with_patch(patch, name=name)
            best = min(best, time.perf_counter() - t0)
        out.append(best)
    return out


class _FitCounter:
    """Counts the fits (and their Newton iterations) and the screened restarts of the start
    policy while active (``likelihood._minima``'s ``fit`` and ``_screen``)."""

    def __init__(self) -> None:
        self.fits = self.iters = self.screens = 0

    def __enter__(self) -> _FitCounter:
        from likelihood import _minima

        self._minima, self._fit, self._screen = _minima, _minima.fit, _minima._screen

        def fit(*args: object, **kw: object) -> object:
            r = self._fit(*args, **kw)
            self.fits += 1
            self.iters += r.n_iter
            return r

        def screen(*args: object, **kw: object) -> object:
            self.screens += 1
            return self._screen(*args, **kw)

        _minima.fit, _minima._screen = fit, screen
        return self

    def __exit__(self, *exc: object) -> None:
        self._minima.fit, self._minima._screen = self._fit, self._screen


def _upper_limit_cost(label: str, bkg: dict, patches: list[tuple[str, list]]) -> None:
    import likelihood

    bg = likelihood.Background(bkg)
    likelihood.upper_limit(bg.with_patch(patches[0][1]))  # warm-up
    ratios, t_cls, t_ul, counts = [], [], [], []
    for name, patch in patches:
        model = bg.with_patch(patch, name=name)
        with _FitCounter() as c_cls:
            t0 = time.perf_counter()
            likelihood.hypotest(model)
            t1 = time.perf_counter()
        with _FitCounter() as c_ul:
            ul = likelihood.upper_limit(model)
            t2 = time.perf_counter()
        t_cls.append(t1 - t0)
        t_ul.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
        counts.append((c_cls, c_ul))
        if ul.status != "ok":
            print(f"    warning: {name}: {ul.status} {ul.message}")
    med = statistics.median
    print(
        f"  {label:16s}: hypotest median {med(t_cls) * 1e3:7.1f} ms, upper_limit "
        f"{med(t_ul) * 1e3:7.1f} ms: {med(ratios):.1f}x the CLs cost (median of "
        f"{len(ratios)} points, range {min(ratios):.1f}-{max(ratios):.1f}x)"
    )
    print(
        f"  {'':16s}  fits per point (Newton iterations, screened restarts): hypotest "
        f"{med(c.fits for c, _ in counts):.0f} ({med(c.iters for c, _ in counts):.0f}, "
        f"{med(c.screens for c, _ in counts):.0f}), upper_limit "
        f"{med(u.fits for _, u in counts):.0f} ({med(u.iters for _, u in counts):.0f}, "
        f"{med(u.screens for _, u in counts):.0f}); iterations "
        f"{med(u.iters / max(c.iters, 1) for c, u in counts):.1f}x"
    )


def _made_up_signal(bkg: dict) -> list[dict]:
    """A signal sample in every SR channel: 0.3 sqrt(b) + 0.2 events per bin, mu_SIG."""
    ops = []
    for i, ch in enumerate(bkg["channels"]):
        if not ch["name"].startswith("SR"):
            continue
        nb = len(ch["samples"][0]["data"])
        tot = [sum(s["data"][b] for s in ch["samples"]) for b in range(nb)]
        data = [0.3 * max(t, 0.0) ** 0.5 + 0.2 for t in tot]
        mods = [
            {"name": "mu_SIG", "type": "normfactor", "data": None},
            {"name": "sig_theory", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
        ]
        sample = {"name": "signal_made_up", "data": data, "modifiers": mods}
        ops.append({"op": "add", "path": f"/channels/{i}/samples/-", "value": sample})
    return ops


def _large_models(shared: Path) -> list[tuple[str, dict]]:
    out = []
    for rel in ("compressed_ewk/Sleptons_bkgonly.json", "2L_jets_ewk/ewk_signal_bkgonly.json"):
        path = shared / rel
        if path.is_file():
            out.append((rel, json.loads(path.read_text())))
    return out


def _time_one(bkg: dict, patch: list, repeat: int) -> tuple[list[float], int, int]:
    import likelihood

    bg = likelihood.Background(bkg)
    model = bg.with_patch(patch)
    likelihood.hypotest(model)  # warm-up
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = likelihood.hypotest(bg.with_patch(patch))
        out.append(time.perf_counter() - t0)
    if r.status != "ok":
        print(f"    warning: {r.status} {r.message}")
    return out, model.n_pars, model.n_bins


def _time_made_up(bkg: dict, repeat: int) -> tuple[list[float], int]:
    ours, n_pars, _ = _time_one(bkg, _made_up_signal(bkg), repeat)
    return ours, n_pars


def _all_workspaces(shared: Path) -> list[tuple[str, dict, list]]:
    """Every shared background-only workspace with one signal: a published one where the
    folder has signal patches, else the made-up one."""
    out = []
    for folder in ("1Lbb", "3L_eRJR"):
        bkg = json.loads((shared / folder / "BkgOnly.json").read_text())
        ps = json.loads((shared / folder / "patchset.json").read_text())
        p = ps["patches"][len(ps["patches"]) // 2]
        out.append((f"{folder} + {p['metadata']['name']}", bkg, p["patch"]))
    for region in ("RegionA", "RegionB", "RegionC"):
        d = shared / "sbottom_multib" / region
        bkg = json.loads((d / "BkgOnly.json").read_text())
        patch = json.loads((d / "patch.sbottom_1300_205_60.json").read_text())
        out.append((f"sbottom {region} + 1300_205_60", bkg, patch))
    for rel in (
        "displaced_leptons/SRee_bkgonly.json",
        "displaced_leptons/Comb_bkgonly.json",
        "2L_jets_ewk/ewk_signal_bkgonly.json",
        "compressed_ewk/Sleptons_bkgonly.json",
        "compressed_ewk/EWKinos_bkgonly_SR2lOnly.json",
    ):
        path = shared / rel
        if path.is_file():
            bkg = json.loads(path.read_text())
            if _made_up_signal(bkg):
                out.append((f"{rel} + made-up", bkg, _made_up_signal(bkg)))
    return out


_COLD = """
import time, json, sys
t0 = time.perf_counter()
import likelihood
bkg = json.loads(open(sys.argv[1]).read())
patch = json.loads(open(sys.argv[2]).read())
r = likelihood.hypotest(likelihood.Background(bkg).with_patch(patch))
print(json.dumps({"seconds": time.perf_counter() - t0, "status": r.status}))
"""


# the same cold start, stage by stage (each import on top of the previous ones)
_COLD_STAGES = """
import time, json, sys
stages = []
t0 = last = time.perf_counter()
def mark(label):
    global last
    now = time.perf_counter()
    stages.append((label, now - last))
    last = now
import numpy
mark("import numpy")
import numba
mark("import numba")
import scipy.special
mark("import scipy.special")
import likelihood.cls, likelihood.model
mark("import likelihood (cls, model, fit, kernels)")
bkg = json.loads(open(sys.argv[1]).read())
patch = json.loads(open(sys.argv[2]).read())
model = likelihood.Background(bkg).with_patch(patch)
mark("read JSON, Background, with_patch")
likelihood.hypotest(model)
mark("first hypotest (numba target set-up, kernels from the cache)")
likelihood.hypotest(model)
mark("second hypotest (the warm cost)")
print(json.dumps({"stages": stages, "scipy_modules": sum(m.startswith("scipy") for m in sys.modules)}))
"""


def _cold_start(shared: Path) -> None:
    d = shared / "sbottom_multib" / "RegionA"
    args = [str(d / "BkgOnly.json"), str(d / "patch.sbottom_1300_205_60.json")]
    with tempfile.TemporaryDirectory(prefix="recastkit-numba-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("numba cache absent", "numba cache present"):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _COLD, *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"  {label}: failed: {proc.stderr.strip()[-500:]}")
                continue
            inner = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"  {label:20s}: {wall:7.2f} s wall for a fresh process "
                f"({inner['seconds']:.2f} s import + compile + first hypotest, "
                f"status {inner['status']})"
            )
        # where the time of a cold start with the cache present goes (best of 3 runs)
        runs = []
        for _ in range(3):
            proc = subprocess.run(
                [sys.executable, "-c", _COLD_STAGES, *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO,
            )
            if proc.returncode != 0:
                print(f"  stages: failed: {proc.stderr.strip()[-500:]}")
                return
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1])["stages"])
        best = min(runs, key=lambda r: sum(t for label, t in r[:-1]))
        print("  cold start with the cache present, stage by stage (fastest of 3 runs):")
        for label, t in best:
            print(f"    {t * 1e3:7.1f} ms  {label}")
        print(f"    {sum(t for _, t in best[:-1]) * 1e3:7.1f} ms  to the first result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared" / "hepdata",
        help="folder of the real likelihoods (default: ../shared/hepdata beside the repository)",
    )
    parser.add_argument("--points", type=int, default=10, help="patches per analysis (default 10)")
    parser.add_argument("--skip-pyhf", action="store_true", help="time recastkit only")
    parser.add_argument(
        "--pyhf-large", action="store_true", help="also time pyhf on the largest models (slow)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    shared = args.shared.resolve()
    if not (shared / "1Lbb" / "BkgOnly.json").is_file():
        print(f"error: no likelihoods at {shared}; pass --shared", file=sys.stderr)
        return 2
    print(f"bench_hypotest: {_pin_one_core()}, BLAS threads 1, python {sys.version.split()[0]}")
    for label, bkg, patches in _cases(shared, args.points):
        print(f"\n{label}: {len(patches)} patches, hypotest(mu=1, qtilde, expected band)")
        ours, t_bkg = _time_recastkit(bkg, patches)
        med_ours = statistics.median(ours)
        print(
            f"  recastkit : median {med_ours * 1e3:8.1f} ms/point  (min {min(ours) * 1e3:.1f}, "
            f"max {max(ours) * 1e3:.1f}; background compiled once in {t_bkg * 1e3:.0f} ms)"
        )
        wp = _time_with_patch(bkg, patches)
        print(f"    of which with_patch: median {statistics.median(wp) * 1e3:6.2f} ms/point")
        if args.skip_pyhf:
            continue
        theirs = _time_pyhf(bkg, patches)
        med_theirs = statistics.median(theirs)
        print(
            f"  pyhf 0.7.6: median {med_theirs * 1e3:8.1f} ms/point  (min {min(theirs) * 1e3:.1f}, "
            f"max {max(theirs) * 1e3:.1f})"
        )
        print(f"  ratio pyhf / recastkit: {med_theirs / med_ours:7.1f}x")
    ul_points = 5 if args.quick else 10
    print(f"\nupper_limit vs hypotest ({ul_points} points each, same process, warm):")
    for label, bkg, patches in _cases(shared, ul_points):
        _upper_limit_cost(label, bkg, patches)
    print("\nlargest shared models, made-up signal in every SR bin (recastkit ms/point):")
    for label, bkg in _large_models(shared):
        ours, n_pars = _time_made_up(bkg, 2 if args.quick else 4)
        line = f"  {label:34s} {n_pars:4d} params: median {statistics.median(ours) * 1e3:8.1f} ms"
        if args.pyhf_large and not args.skip_pyhf:
            theirs = _time_pyhf(bkg, [("made-up", _made_up_signal(bkg))])
            line += f"; pyhf {theirs[0]:.1f} s ({theirs[0] / statistics.median(ours):.0f}x)"
        print(line)
    print("\nscaling: time per point against the number of parameters (recastkit):")
    print(f"  {'workspace':44s} {'params':>6s} {'bins':>5s} {'ms/point':>9s}")
    for label, bkg, patch in _all_workspaces(shared):
        ours, n_pars, n_bins = _time_one(bkg, patch, 2 if args.quick else 3)
        print(f"  {label:44s} {n_pars:6d} {n_bins:5d} {statistics.median(ours) * 1e3:9.1f}")
    print("\ncold start (fresh process, sbottom RegionA, one point):")
    _cold_start(shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
