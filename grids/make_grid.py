#!/usr/bin/env python
"""Write the bundled recasting-tool yields grid for the toy analysis, deterministically.

The grid is a NEW signal model for the toy one-lepton search of
``fixtures/toy_hepdata_archive.tar.gz``: pair-produced stops that decay as
stop -> b chargino, chargino -> W neutralino, with the chargino mass halfway between the
stop (``m1``) and neutralino (``m2``) masses.  The official patchset of the toy covers
stop -> top neutralino only; reinterpreting the search for this model is what
``recastkit make-patch`` + ``recastkit scan`` are for.

It writes, next to this script:

``ToyAnalysis_<m1>_<m2>.txt``
    one ATLAS SimpleAnalysis acceptance file per grid point (``OutputHandler::saveRegions``
    layout: ``SR,events,acceptance,err``, a totals row ``All,N,sum w,sum w^2``, one row per
    region, 6 significant digits), the native format ``recastkit make-patch`` reads;
``simpleanalysis_index.csv``
    ``file,m1,m2,xsec_pb,lumi_ifb``: which file is which point, with the signal
    cross-section (pb) and the analysis luminosity (fb^-1);
``yields.csv``
    the same yields in the tidy format (``m1,m2,region,bin,yield,stat_unc``), computed
    from the SimpleAnalysis numbers exactly as the reader does;
``mapping.json``
    tool region -> workspace channel / bin, the extra tool region the likelihood does not
    have, and the validation region to remove.

The acceptances come from a simple parametric model of the toy selection, sampled with
50 000 unit-weight MC events per point after a generator-level one-lepton filter (binomial counts from numpy's legacy
``RandomState``, whose streams are frozen), so they carry realistic MC statistical noise.
Only the standard library and numpy are needed::

    python grids/make_grid.py            # (re)write every file
    python grids/make_grid.py --check    # exit 1 if the files on disk differ
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SEED",
    "FILTER_EFFICIENCY",
    "N_GENERATED",
    "LUMI_IFB",
    "GRID",
    "SMALL_GRID",
    "TOOL_REGIONS",
    "MAPPING",
    "cross_section_pb",
    "expected_acceptance",
    "simpleanalysis_text",
    "build_files",
    "write_grid",
    "main",
]

HERE = Path(__file__).resolve().parent
SEED = 7_2026
N_GENERATED = 50_000
LUMI_IFB = 139.0
ANALYSIS = "ToyAnalysis"
INDEX_NAME = "simpleanalysis_index.csv"

#: (m1, m2) = (m_stop, m_neutralino) in GeV: m1 = 300..1000, m2 = 0..600, m1 - m2 >= 100.
GRID: tuple[tuple[int, int], ...] = tuple(
    (m1, m2) for m1 in range(300, 1001, 100) for m2 in range(0, 601, 100) if m1 - m2 >= 100
)
#: A coarse sub-grid (every 200 GeV) for quick runs (``recastkit demo --small``).
SMALL_GRID: tuple[tuple[int, int], ...] = tuple(
    (m1, m2) for m1, m2 in GRID if m1 % 200 == 0 and m2 % 200 == 0
)

#: The regions the (toy) SimpleAnalysis implementation declares, in its order.
TOOL_REGIONS: tuple[str, ...] = (
    "CR_ttbar",
    "CR_wjets",
    "VR_ttbar",
    "SR_lowDM_bin0",
    "SR_lowDM_bin1",
    "SR_lowDM_bin2",
    "SR_highDM_bin0",
    "SR_highDM_bin1",
    "SR_highDM_bin2",
    "SR_highDM_bin3",
    "SR_boosted",
)

#: Tool region -> workspace channel / bin (the format of docs/make-patch.md, section 3).
MAPPING: dict[str, object] = {
    "regions": {
        "CR_ttbar": "CR_ttbar_cuts",
        "CR_wjets": "CR_wjets_cuts",
        **{f"SR_lowDM_bin{i}": {"channel": "SR_lowDM_meff", "bin": i} for i in range(3)},
        **{f"SR_highDM_bin{i}": {"channel": "SR_highDM_meff", "bin": i} for i in range(4)},
        # the tool also implements a boosted signal region the likelihood does not contain
        "SR_boosted": None,
        # the validation region is not used in the fit; its channel is removed below
        "VR_ttbar": None,
    },
    "remove": ["VR_ttbar_cuts"],
}


#: Efficiency of the generator-level one-lepton filter; the cross-section SimpleAnalysis
#: acceptances refer to is the filtered one, ``xsec_pb = sigma x FILTER_EFFICIENCY``.
FILTER_EFFICIENCY = 0.05


def cross_section_pb(m1: float) -> float:
    """Toy stop-pair cross-section at 13 TeV in pb (exponential fit to NNLO+NNLL values)."""
    return 0.61 * math.exp(-(m1 - 500.0) / 104.0)


def expected_acceptance(m1: float, m2: float) -> dict[str, float]:
    """True acceptance x efficiency of each tool region for the point (m1, m2).

    Relative to the events that pass the generator filter (:data:`FILTER_EFFICIENCY`).

    The one-lepton branching fraction of the W W b b final state (about 0.44) and softer
    leptons than in stop -> top neutralino make the selection less efficient than for the
    official model; compressed spectra land in the low-DM region, and the m_eff spectrum
    moves to higher bins with the produced mass.
    """
    dm = m1 - m2
    total = 0.44 * 2.6e-3 / FILTER_EFFICIENCY * max(0.0, 1.0 - math.exp(-(dm - 60.0) / 220.0))
    f_low = min(0.95, 0.75 * math.exp(-(dm - 100.0) / 300.0))
    out: dict[str, float] = {
        "CR_ttbar": 0.05 * total,
        "CR_wjets": 0.02 * total,
        "VR_ttbar": 0.03 * total,
        "SR_boosted": 0.15 * total * min(1.0, max(0.0, (m1 - 400.0) / 600.0)),
    }
    for prefix, nbins, frac in (("SR_lowDM", 3, f_low), ("SR_highDM", 4, 1.0 - f_low)):
        centre = (nbins - 1) * min(1.0, max(0.0, (m1 - 300.0) / 750.0))
        shape = np.exp(-0.5 * ((np.arange(nbins) - centre) / 1.2) ** 2)
        shape /= shape.sum()
        for i in range(nbins):
            out[f"{prefix}_bin{i}"] = total * frac * float(shape[i])
    return {r: out[r] for r in TOOL_REGIONS}


def _g6(x: float) -> str:
    """A number as C++ ``std::ostream`` prints it by default (6 significant digits)."""
    return f"{x:.6g}"


def simpleanalysis_text(counts: dict[str, int], n_generated: int = N_GENERATED) -> str:
    """The ``ToyAnalysis.txt`` acceptance file SimpleAnalysis writes for one point.

    Unit event weights: ``acceptance = k / N`` and ``err = sqrt(k) / N`` for ``k`` selected
    of ``N`` generated events.
    """
    lines = ["SR,events,acceptance,err", f"All,{n_generated},{n_generated},{n_generated}"]
    for region in TOOL_REGIONS:
        k = counts[region]
        lines.append(f"{region},{k},{_g6(k / n_generated)},{_g6(math.sqrt(k) / n_generated)}")
    return "\n".join(lines) + "\n"


def build_files(seed: int = SEED) -> dict[str, str]:
    """Relative path (POSIX) -> text of every file the script writes."""
    rng = np.random.RandomState(seed)
    files: dict[str, str] = {}
    index = ["file,m1,m2,xsec_pb,lumi_ifb"]
    tidy = ["m1,m2,region,bin,yield,stat_unc"]
    for m1, m2 in GRID:
        acc = expected_acceptance(m1, m2)
        counts = {r: int(rng.binomial(N_GENERATED, acc[r])) for r in TOOL_REGIONS}
        name = f"{ANALYSIS}_{m1}_{m2}.txt"
        text = simpleanalysis_text(counts)
        files[name] = text
        xsec = float(_g6(cross_section_pb(m1) * FILTER_EFFICIENCY))
        index.append(f"{name},{m1},{m2},{_g6(xsec)},{LUMI_IFB:g}")
        # the tidy rows: yield = acceptance x xsec_pb x 1000 x lumi_ifb (docs/make-patch.md)
        scale = xsec * 1000.0 * LUMI_IFB
        for line in text.splitlines()[2:]:
            region, _, a, err = line.split(",")
            tidy.append(f"{m1},{m2},{region},0,{float(a) * scale!r},{float(err) * scale!r}")
    files[INDEX_NAME] = "\n".join(index) + "\n"
    files["yields.csv"] = "\n".join(tidy) + "\n"
    files["mapping.json"] = json.dumps(MAPPING, indent=2) + "\n"
    return files


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_grid(output_dir: str | os.PathLike[str] = HERE, *, seed: int = SEED) -> list[Path]:
    """Write every file of :func:`build_files` under ``output_dir`` (atomically)."""
    out = Path(output_dir)
    written = []
    for rel, text in build_files(seed).items():
        path = out / rel
        _write_atomic(path, text)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the grid, or ``--check`` the files on disk against a fresh build."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=HERE,
        help="where to write (default: next to this script)",
    )
    parser.add_argument(
        "--check", action="store_true", help="compare the files on disk with a fresh build"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = []
        for rel, text in build_files().items():
            path = args.output_dir / rel
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
        if stale:
            print(
                f"{len(stale)} files differ from a fresh build, e.g. {stale[:3]}; rerun make_grid.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output_dir}: up to date")
        return 0
    paths = write_grid(args.output_dir)
    print(f"wrote {len(paths)} files under {args.output_dir} ({len(GRID)} grid points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
