"""pyhf 0.7.6's discovery numbers (q0, asymptotics) on a subset of the shared likelihoods.

For each selected point this asks pyhf 0.7.6 (numpy backend, default scipy SLSQP,
``Model`` defaults normsys code4 / histosys code4p)::

    pyhf.infer.hypotest(0.0, data, model, test_stat="q0", calctype="asymptotics",
                        return_expected_set=True, return_calculator=True)

and records the observed p0, the expected p0 list (pyhf's order: n = 2, 1, 0, -1, -2) and,
from the calculator's fitted parameters, pyhf's twice-NLL at each of its fitted minima
(free, mu = 0 and mu = 1 fits to the data; free and mu = 0 fits to its Asimov data), so
that the test can tell, without pyhf, whether pyhf's fits reached the global minimum.

3L eRJR is given to pyhf with the shapesys of tau ~ 2e11 pruned (pyhf's fits stall on
the published workspace, see ../shared/hepdata/SOURCES.md gotcha 1), as its CLs reference.

Usage: python tests/references/make_pyhf_q0.py [--shared ../shared/hepdata]
Writes ``pyhf-0.7.6_q0.json`` beside itself, atomically (a test-side tool: pyhf is the
oracle of our tests, never a runtime dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUTPUT = HERE / "pyhf-0.7.6_q0.json"
PRUNE_3L = "shape_mcstat_diboson3LISR_CRISR_obs_cuts"
# every STRIDE-th point (sorted by name) of each analysis
STRIDE = {
    "1Lbb": 20,
    "sbottom_RegionA": 50,
    "sbottom_RegionB": 50,
    "sbottom_RegionC": 50,
    "3L_eRJR": 12,
}


def point_specs(shared: Path, analysis: str, stride: int) -> dict[str, dict]:
    """``{name: patched workspace}`` of every ``stride``-th point, sorted by name."""
    import jsonpatch

    out: dict[str, dict] = {}
    if analysis.startswith("sbottom_"):
        region = shared / "sbottom_multib" / analysis.split("_", 1)[1]
        bkg = json.loads((region / "BkgOnly.json").read_text())
        for f in sorted(region.glob("patch.*.json"))[::stride]:
            name = f.name[len("patch.") : -len(".json")]
            out[name] = jsonpatch.apply_patch(bkg, json.loads(f.read_text()))
        return out
    folder = shared / analysis
    bkg = json.loads((folder / "BkgOnly.json").read_text())
    patches = {
        p["metadata"]["name"]: p["patch"]
        for p in json.loads((folder / "patchset.json").read_text())["patches"]
    }
    for name in sorted(patches)[::stride]:
        out[name] = jsonpatch.apply_patch(bkg, patches[name])
    return out


def _pyhf_q0(spec: dict, prune: bool) -> dict:
    import pyhf

    pyhf.set_backend("numpy")
    ws = pyhf.Workspace(spec)
    if prune:
        ws = ws.prune(modifiers=[PRUNE_3L])
    model = ws.model()
    data = ws.data(model)
    t0 = time.perf_counter()
    p0_obs, p0_exp, calc = pyhf.infer.hypotest(
        0.0,
        data,
        model,
        test_stat="q0",
        calctype="asymptotics",
        return_expected_set=True,
        return_calculator=True,
    )
    seconds = time.perf_counter() - t0
    fp = calc.fitted_pars
    asimov = model.expected_data(fp.asimov_pars)

    def twice_nll(pars, on) -> float:
        return float(-2.0 * model.logpdf(pars, on)[0])

    return {
        "p0_obs": float(p0_obs),
        "p0_exp": [float(x) for x in p0_exp],
        "seconds": round(seconds, 2),
        "twice_nll": {
            "free_data": twice_nll(fp.free_fit_to_data, data),
            "mu0_data": twice_nll(fp.fixed_poi_fit_to_data, data),
            "mu1_data": twice_nll(fp.asimov_pars, data),
            "free_asimov": twice_nll(fp.free_fit_to_asimov, asimov),
            "mu0_asimov": twice_nll(fp.fixed_poi_fit_to_asimov, asimov),
        },
        "asimov_data": [float(x) for x in asimov],
        "mu_hat": float(fp.free_fit_to_data[model.config.poi_index]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "hepdata")
    args = parser.parse_args()
    import pyhf

    warnings.simplefilter("ignore")
    results = []
    for analysis, stride in STRIDE.items():
        specs = point_specs(args.shared, analysis, stride)
        for name, spec in specs.items():
            entry = {"analysis": analysis, "name": name}
            entry.update(_pyhf_q0(spec, prune=analysis == "3L_eRJR"))
            print(analysis, name, entry["p0_obs"], entry["seconds"], file=sys.stderr, flush=True)
            results.append(entry)
    document = {
        "generator": "tests/references/make_pyhf_q0.py",
        "pyhf": pyhf.__version__,
        "settings": "hypotest(0.0, test_stat='q0', calctype='asymptotics', "
        "return_expected_set=True); numpy backend, scipy SLSQP; Model defaults",
        "pruned_3L_eRJR": PRUNE_3L,
        "points": results,
    }
    fd, tmp = tempfile.mkstemp(dir=HERE, prefix=".q0-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(tmp, OUTPUT)
    print(f"wrote {OUTPUT} ({len(results)} points)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
