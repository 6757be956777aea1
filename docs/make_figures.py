"""Regenerate the pictures in docs/ from real scans (run from the repository root).

    python docs/make_figures.py [--jobs N] [--cache DIR]

* ``docs/demo_exclusion.png``: ``recastkit demo`` (the toy analysis, with its toy
  cross-section uncertainty: dotted +-1 sigma theory lines);
* ``docs/exclusion_sbottom.png``: ATLAS-SUSY-2018-31 (sbottom multi-b), m(N1) = 60 GeV,
  our scan of the three regions, best expected region per point, ATLAS's published
  observed contour overlaid;
* ``docs/exclusion_1Lbb.png``: ATLAS-SUSY-2019-08 (1Lbb), our scan of all 125 points.

Needs ``../shared/hepdata`` (the real likelihoods).  Scan results are kept in ``--cache``
(default ``/tmp/recastkit-figures``) and reused by a second run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import recast
from recast.contour import plot_exclusion

SHARED = Path("../shared/hepdata")
DOCS = Path("docs")


def _scan(likelihoods, path: Path, jobs: int, where: str | None = None):
    if path.is_file():
        return recast.contour.read_results(path)
    return recast.scan(likelihoods, where=where, jobs=jobs, output=path, progress=True)


def demo() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = recast.run_demo(tmp, jobs=1)
        shutil.copyfile(results.attrs["files"].plot, DOCS / "demo_exclusion.png")


def sbottom(cache: Path, jobs: int) -> None:
    folder = SHARED / "sbottom_multib"
    labels = ["m_sbottom", "m_N2", "m_N1"]
    regions = [
        recast.load_likelihood(folder, region=r, labels=labels)
        for r in ("RegionA", "RegionB", "RegionC")
    ]
    results = _scan(regions, cache / "sbottom_m60.csv", jobs, where="m_N1 == 60")
    best = recast.best_expected(results)
    plot_exclusion(
        best,
        "m_sbottom",
        "m_N2",
        forbidden="m_N2 >= m_sbottom",
        overlay=folder / "reference" / "HEPData-ins1748602-v1-M60_Obs.csv",
        overlay_label="ATLAS observed (HEPData, arXiv:1908.03122)",
        labels={"m_N2": r"$m(\tilde{\chi}^0_2)$"},
        title=r"sbottom multi-b, $m(\tilde{\chi}^0_1)$ = 60 GeV, best expected region",
        analysis="ATLAS-SUSY-2018-31 likelihoods, recastkit",
        sqrt_s=13.0,
        lumi=139.0,
        output=DOCS / "exclusion_sbottom.png",
        figsize=(7.6, 6.0),
    )


def one_lbb(cache: Path, jobs: int) -> None:
    lik = recast.load_likelihood(SHARED / "1Lbb")
    results = _scan(lik, cache / "1Lbb.csv", jobs)
    plot_exclusion(
        results,
        "m1",
        "m2",
        # the Wh decay needs m(C1/N2) - m(N1) > m(h) = 125 GeV
        forbidden="m2 >= m1 - 125",
        labels={
            "m1": r"$m(\tilde{\chi}^{\pm}_1/\tilde{\chi}^0_2)$",
            "m2": r"$m(\tilde{\chi}^0_1)$",
        },
        title=r"1Lbb: $\tilde{\chi}^{\pm}_1\tilde{\chi}^0_2 \to W h\,\tilde{\chi}^0_1\tilde{\chi}^0_1$",
        analysis="ATLAS-SUSY-2019-08 likelihoods, recastkit",
        sqrt_s=13.0,
        lumi=139.0,
        output=DOCS / "exclusion_1Lbb.png",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "recastkit-figures"
    )
    parser.add_argument("--only", choices=["demo", "sbottom", "1Lbb"], default=None)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "demo"):
        demo()
    if args.only in (None, "sbottom"):
        sbottom(args.cache, args.jobs)
    if args.only in (None, "1Lbb"):
        one_lbb(args.cache, args.jobs)


if __name__ == "__main__":
    main()
