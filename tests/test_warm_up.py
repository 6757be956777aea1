"""``likelihood.fit.warm_up``: every kernel a scan point can reach is loaded before the scan.

A scan worker calls ``warm_up()`` when it starts (``recast._scan_worker.init_worker``), so
that no numba kernel is compiled (or loaded from numba's cache) in the middle of a scan.
The check runs in a fresh interpreter: after ``warm_up()``, a hypotest, L-BFGS-B fits (the
fallback of Newton), an upper limit and a discovery test on a real published likelihood
add no specialisation to any kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import json, sys
import likelihood
import likelihood.fit
from likelihood import _kernels

fit = sys.modules["likelihood.fit"]


def loaded():
    return {n: len(f.signatures) for n, f in vars(_kernels).items() if hasattr(f, "signatures")}


fit.warm_up()
before = loaded()
optimize_at_warm_up = "scipy.optimize" in sys.modules
bkg, patch = (json.loads(open(p).read()) for p in sys.argv[1:3])
model = likelihood.Background(bkg).with_patch(patch)
statuses = [likelihood.hypotest(model).status]
for kw in ({}, {"fixed_poi": 1.0}):
    statuses.append(fit.fit(model, method="lbfgsb", **kw).status)
statuses.append(likelihood.upper_limit(model).status)
statuses.append(likelihood.discovery(model).status)
print(json.dumps({"before": before, "after": loaded(), "statuses": statuses,
                  "optimize_at_warm_up": optimize_at_warm_up}))
"""


def test_warm_up_loads_every_kernel_a_point_reaches(shared_hepdata: Path, repo_root: Path):
    folder = shared_hepdata / "sbottom_multib" / "RegionA"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(folder / "BkgOnly.json"),
            str(folder / "patch.sbottom_1300_205_60.json"),
        ],
        capture_output=True,
        text=True,
        cwd=repo_root,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["statuses"] == ["ok"] * 5
    before, after = out["before"], out["after"]
    # the entry points of the fits are loaded (one specialisation each)...
    for name in ("newton_minimize", "convergence", "scaled_value_grad", "rates", "twice_nll"):
        assert before[name] >= 1, name
    # ... and nothing new is loaded or compiled by a point, its fallback or its extras
    grown = {n: (before[n], after[n]) for n in after if after[n] != before.get(n)}
    assert not grown, f"kernels loaded after warm_up(): {grown}"
    # the fallback's kernels are loaded without importing scipy.optimize at start-up
    assert out["optimize_at_warm_up"] is False
