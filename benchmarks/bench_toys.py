"""Toys per second per core: recastkit's hypotest_toys vs pyhf's ToyCalculator.

Side by side in one run, on one core: pyhf 0.7.6 (numpy backend, scipy optimizer, the
toy part only, ``ToyCalculator.distributions``: a few toys suffice) and recastkit
(``likelihood.hypotest_toys``, whole call including the fits to the observed data), on
sbottom RegionA 1300_205_60 and 1Lbb C1N2_Wh_hbb_700_0.  Prints toys/s per core and the
ratio, the number of toys whose fits failed, then (``--goal``) the wall time of 10 000
toys per hypothesis of the 1Lbb point on 2 workers (the issue's goal: <= 30 s).

"Toys" counts pseudo-experiments of both hypotheses: ``ntoys`` per hypothesis, as pyhf's
``ntoys``, is ``2 * ntoys`` toys.  The goal, 10 000 toys per hypothesis in 30 s on 2
cores, is 20 000 toys in 60 core-seconds: 333 toys/s per core.

recastkit runs with its default start policy (``restart=True``: every toy fit from the
generating point and the model's initial values plus the mirrored restarts) and with
``restart=False`` (the generating point only: faster, some toys in a higher local
minimum); pyhf fits every toy from its initial values once.

pyhf 0.7.6's toy code calls ``np.percentile(interpolation=...)``, which numpy 2 removed;
this script patches pyhf's numpy backend for its own run (method= instead), nothing else.

Usage::

    python benchmarks/bench_toys.py [--shared PATH] [--ntoys N] [--pyhf-toys N] [--goal]

This is a benchmark, not a test; timings on a shared machine are noisy.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}


def _cases(shared: Path) -> list[tuple[str, dict, list]]:
    d = shared / "sbottom_multib" / "RegionA"
    sb = (
        "sbottom RegionA 1300_205_60",
        json.loads((d / "BkgOnly.json").read_text()),
        json.loads((d / "patch.sbottom_1300_205_60.json").read_text()),
    )
    ps = json.loads((shared / "1Lbb" / "patchset.json").read_text())
    patch = next(p for p in ps["patches"] if p["metadata"]["name"] == "C1N2_Wh_hbb_700_0")
    lbb = (
        "1Lbb C1N2_Wh_hbb_700_0",
        json.loads((shared / "1Lbb" / "BkgOnly.json").read_text()),
        patch["patch"],
    )
    return [sb, lbb]


def _time_pyhf(bkg: dict, patch: list, ntoys: int) -> float:
    """Seconds per toy of pyhf's ToyCalculator (both hypotheses' toys, fits included)."""
    import jsonpatch
    import numpy as np
    import pyhf
    from pyhf.tensor.numpy_backend import numpy_backend

    def percentile(self, tensor_in, q, axis=None, interpolation="linear"):
        return np.percentile(tensor_in, q, axis=axis, method=interpolation)

    numpy_backend.percentile = percentile  # numpy 2 shim, this process only
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    model = pyhf.Workspace(jsonpatch.apply_patch(bkg, patch)).model(modifier_settings=SETTINGS)
    ws_data = pyhf.Workspace(jsonpatch.apply_patch(bkg, patch)).data(model)
    calc = pyhf.infer.calculators.ToyCalculator(ws_data, model, ntoys=ntoys, track_progress=False)
    np.random.seed(0)  # noqa: NPY002 - pyhf samples with numpy's global state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        calc.distributions(1.0)
        dt = time.perf_counter() - t0
    return dt / (2 * ntoys)


def _time_ours(
    bkg: dict, patch: list, ntoys: int, workers: int = 1, restart: bool = True
) -> tuple[float, object]:
    import likelihood

    model = likelihood.Background(bkg, modifier_settings=SETTINGS).with_patch(patch)
    likelihood.hypotest_toys(model, 1.0, ntoys=4, seed=1, bootstrap=0)  # JIT / cache warm-up
    t0 = time.perf_counter()
    res = likelihood.hypotest_toys(
        model, 1.0, ntoys=ntoys, seed=1, workers=workers, restart=restart
    )
    return time.perf_counter() - t0, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "hepdata")
    ap.add_argument("--ntoys", type=int, default=300, help="our toys per hypothesis")
    ap.add_argument("--pyhf-toys", type=int, default=3, help="pyhf's toys per hypothesis")
    ap.add_argument("--skip-pyhf", action="store_true")
    ap.add_argument("--goal", action="store_true", help="10 000 toys of 1Lbb on 2 workers")
    ap.add_argument("--goal-toys", type=int, default=10_000, help="toys per hypothesis (--goal)")
    args = ap.parse_args(argv)
    print(
        "toys per second per core (one process, one BLAS thread; a toy is one pseudo-"
        "experiment of one hypothesis); noisy on a shared machine.  Goal: 10 000 toys per "
        "hypothesis of 1Lbb in 30 s on 2 cores = 333 toys/s per core"
    )
    for name, bkg, patch in _cases(args.shared):
        dt1, res1 = _time_ours(bkg, patch, args.ntoys, restart=False)
        dt, res = _time_ours(bkg, patch, args.ntoys)
        ours = 2 * args.ntoys / dt
        line = (
            f"{name}: recastkit {ours:8.1f} toys/s ({2 * args.ntoys} toys in {dt:.1f} s, "
            f"{res.n_failed} failed, CLs {res.cls_obs:.3f} +- {res.cls_obs_err:.3f}); one start "
            f"per fit (restart=False): {2 * args.ntoys / dt1:.1f} toys/s ({res1.n_failed} failed)"
        )
        if not args.skip_pyhf:
            per = _time_pyhf(bkg, patch, args.pyhf_toys)
            line += (
                f"; pyhf {1 / per:6.2f} toys/s ({2 * args.pyhf_toys} toys); ratio {ours * per:.0f}x"
            )
        print(line, flush=True)
    if args.goal:
        name, bkg, patch = _cases(args.shared)[1]
        for restart in (False, True):
            dt, res = _time_ours(bkg, patch, args.goal_toys, workers=2, restart=restart)
            print(
                f"goal: {name}, {args.goal_toys} toys per hypothesis on 2 workers, "
                f"restart={restart}: {dt:.1f} s (goal: 10 000 in <= 30 s); {res.n_failed} "
                f"failed toy fits; CLs {res.cls_obs:.4f} +- {res.cls_obs_err:.4f}, "
                f"status {res.status}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
