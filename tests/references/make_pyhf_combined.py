"""Record pyhf 0.7.6's CLs on its own combination of 1Lbb and sbottom RegionA.

pyhf needs minutes per point for this 179-parameter combination, too long for the test
suite, so its answers are recorded here once (``pyhf-0.7.6-combined_1Lbb_sbottomA.json``)
and ``tests/test_combine.py`` compares recastkit's combination with them.  The
combination is built with pyhf only (``tests/pyhf_combine_reference.py``); settings:
normsys code4, histosys code4p, qtilde, asymptotics, mu = 1, numpy backend, scipy SLSQP.

Usage: python tests/references/make_pyhf_combined.py [--shared ../shared/hepdata]
(a test-side tool: pyhf is the oracle of our tests, never a runtime dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUTPUT = HERE / "pyhf-0.7.6-combined_1Lbb_sbottomA.json"
sys.path.insert(0, str(REPO / "tests"))

from pyhf_combine_reference import POINTS, SETTINGS, pyhf_combined  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "hepdata")
    args = parser.parse_args()

    import pyhf

    pyhf.set_backend("numpy")
    results = []
    for i, (values, sb_name) in enumerate(POINTS):
        ws = pyhf_combined(args.shared, i)
        model = ws.model(modifier_settings=SETTINGS)
        start = time.perf_counter()
        obs, exp = pyhf.infer.hypotest(
            1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True
        )
        results.append(
            {
                "point": i,
                "lbb_values": values,
                "sbottom_patch": sb_name,
                "n_parameters": len(model.config.par_names),
                "CLs_obs": float(obs),
                "CLs_exp": [float(v) for v in exp],
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(results[-1], flush=True)
    doc = {
        "pyhf": pyhf.__version__,
        "settings": {
            "modifier_settings": SETTINGS,
            "hypotest": "mu=1, qtilde, asymptotics, numpy, scipy SLSQP",
        },
        "results": results,
    }
    fd, tmp = tempfile.mkstemp(dir=HERE, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle, indent=1)
        handle.write("\n")
    os.replace(tmp, OUTPUT)


if __name__ == "__main__":
    main()
