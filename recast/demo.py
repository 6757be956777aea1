"""The bundled example: the whole recastkit chain on a toy analysis, offline.

:func:`run_demo` runs the real code paths, in the order a user would:

1. :func:`recast.fetch` of the bundled HEPData archive ``fixtures/toy_hepdata_archive.tar.gz``
   through a cache under the output folder (no network);
2. :func:`recast.load_likelihood` finds ``BkgOnly.json`` and the official patchset in it;
3. :func:`recast.read_yields` reads the signal yields of a new model, as ATLAS
   SimpleAnalysis writes them (``grids/ToyAnalysis_<m1>_<m2>.txt``), and :func:`recast.make_patchset`
   turns them, with the region mapping ``grids/mapping.json``, into a patchset;
4. :func:`recast.scan` computes the asymptotic CLs of every grid point in parallel;
5. :func:`recast.exclusion_contour`, :func:`recast.export_contours` and
   :func:`recast.plot_exclusion` draw the exclusion contour with its expected band.

The example data are found by :func:`example_dir` in a source checkout, after
``pip install .`` (under ``<sys.prefix>/share/recastkit``), or where
``RECASTKIT_EXAMPLE_DIR`` points.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from recast._io import atomic_write_json
from recast.errors import RecastError

__all__ = [
    "ExampleData",
    "DemoFiles",
    "SMALL_WHERE",
    "SQRT_S_TEV",
    "theory_uncertainty",
    "example_dir",
    "example_data",
    "run_demo",
]

log = logging.getLogger(__name__)

#: Environment variable naming a folder that holds ``fixtures/`` and ``grids/``.
EXAMPLE_DIR_ENV = "RECASTKIT_EXAMPLE_DIR"
#: Selection of the coarse sub-grid used by ``small=True`` (every 200 GeV).
SMALL_WHERE = "m1 % 200 == 0 and m2 % 200 == 0"
#: The masses on the axes of the new model's plane, and its kinematic limit.
X, Y = "m1", "m2"
FORBIDDEN = "m2 >= m1"
NAME_PREFIX = "stopbC1"


#: Relative theory uncertainty of the toy stop-pair cross-section (a toy: 7% at 300 GeV
#: growing to 15% at 1 TeV, the size of NNLO+NNLL uncertainties); it gives the dotted
#: +-1 sigma (theory) lines of the demo's plot.
def theory_uncertainty(m1: float) -> float:
    """Relative uncertainty of the toy cross-section at the produced mass ``m1`` (GeV)."""
    return 0.07 + 0.08 * (float(m1) - 300.0) / 700.0


#: Centre-of-mass energy (TeV) of the toy analysis, for the plot's label block.
SQRT_S_TEV = 13.0
# The PatchSet schema requires an INSPIRE reference; the toy analysis has none and uses the
# all-zero id, as its official patchset does.
TOY_HEPDATA_ID = "ins0000000"

_ARCHIVE = Path("fixtures") / "toy_hepdata_archive.tar.gz"
_GRID_INDEX = Path("grids") / "simpleanalysis_index.csv"
_MAPPING = Path("grids") / "mapping.json"
_TIDY = Path("grids") / "yields.csv"


class ExampleData(NamedTuple):
    """Paths of the bundled example files."""

    root: Path
    """Folder holding ``fixtures/`` and ``grids/``."""
    archive: Path
    """The toy HEPData archive (``fixtures/toy_hepdata_archive.tar.gz``)."""
    simpleanalysis_index: Path
    """Index CSV of the SimpleAnalysis output of the new model (``file,m1,m2,xsec_pb,lumi_ifb``)."""
    mapping: Path
    """Tool region -> workspace channel mapping (``grids/mapping.json``)."""
    tidy_yields: Path
    """The same yields in the tidy CSV format (``grids/yields.csv``)."""


class DemoFiles(NamedTuple):
    """What :func:`run_demo` wrote (also in ``results.attrs["files"]``)."""

    results: Path
    patchset: Path
    plot: Path
    contours: Path
    likelihood: Path


def _candidates() -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    env = os.environ.get(EXAMPLE_DIR_ENV)
    if env:
        out.append((f"${EXAMPLE_DIR_ENV}", Path(env).expanduser()))
    # a source checkout (editable install, or running from the repository)
    out.append(("source checkout", Path(__file__).resolve().parent.parent))
    # a regular install: data-files under <prefix>/share/recastkit
    prefixes = [Path(sys.prefix), Path(sysconfig.get_path("data"))]
    user_data = sysconfig.get_path("data", f"{os.name}_user") if os.name == "posix" else None
    if user_data:
        prefixes.append(Path(user_data))
    for prefix in prefixes:
        cand = ("installed data", prefix / "share" / "recastkit")
        if cand not in out:
            out.append(cand)
    return out


def _complete(root: Path) -> bool:
    return all((root / rel).is_file() for rel in (_ARCHIVE, _GRID_INDEX, _MAPPING))


def example_dir() -> Path:
    """The folder holding the bundled example (``fixtures/`` and ``grids/``).

    Looked for, in order: ``$RECASTKIT_EXAMPLE_DIR``; the source checkout next to the
    ``recast`` package (editable installs); ``<sys.prefix>/share/recastkit`` (and the
    user-scheme data folder), where ``pip install .`` puts it.

    Raises
    ------
    RecastError
        None of them holds the example; the message lists the places searched.
    """
    tried = []
    for what, root in _candidates():
        if _complete(root):
            log.debug("example data: %s (%s)", root, what)
            return root
        tried.append(f"{root} ({what})")
        if what.startswith("$"):
            raise RecastError(
                f"${EXAMPLE_DIR_ENV}={root} does not hold the recastkit example: expected "
                f"{_ARCHIVE}, {_GRID_INDEX} and {_MAPPING} below it; point it at a recastkit "
                "source checkout or unset it"
            )
    raise RecastError(
        "cannot find the bundled example data (fixtures/ and grids/); looked in "
        + "; ".join(tried)
        + f". Reinstall recastkit with `pip install .` from a source checkout, or set "
        f"{EXAMPLE_DIR_ENV} to a checkout"
    )


def example_data(root: str | os.PathLike[str] | None = None) -> ExampleData:
    """Paths of the bundled example files, under ``root`` (default: :func:`example_dir`)."""
    base = example_dir() if root is None else Path(root)
    if not _complete(base):
        raise RecastError(
            f"{base} does not hold the recastkit example: expected {_ARCHIVE}, {_GRID_INDEX} "
            f"and {_MAPPING} below it"
        )
    return ExampleData(
        root=base,
        archive=base / _ARCHIVE,
        simpleanalysis_index=base / _GRID_INDEX,
        mapping=base / _MAPPING,
        tidy_yields=base / _TIDY,
    )


def _kernels_cached(package: Path | None = None) -> bool:
    """True when numba's on-disk cache holds kernels of every jitted module of ``package``.

    numba writes ``<module>.<function>-<line>.pyXY.nbi`` index files into the module's
    ``__pycache__`` (or ``$NUMBA_CACHE_DIR``); an index older than its source is stale.
    ``package`` defaults to the folder of :mod:`likelihood`.
    """
    if package is None:
        import likelihood

        package = Path(likelihood.__file__).parent
    folders = [package / "__pycache__"]
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if cache_dir:
        folders.extend(Path(cache_dir).rglob("likelihood"))
    sources = [p for p in package.glob("*.py") if "@njit" in p.read_text(errors="replace")
               or "njit(" in p.read_text(errors="replace")]  # fmt: skip
    for src in sources:
        index = [p for d in folders for p in d.glob(f"{src.stem}.*.nbi")]
        if not index or min(p.stat().st_mtime for p in index) < src.stat().st_mtime:
            return False
    return bool(sources)


def run_demo(
    output_dir: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    small: bool = False,
    progress: bool = False,
    example: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run fetch -> make-patch -> scan -> contour on the bundled toy analysis.

    Parameters
    ----------
    output_dir : path-like
        Folder for the outputs (created; existing outputs are replaced): ``results.csv``
        (one row per grid point), ``patchset.json`` (the new model's signal patches),
        ``exclusion.png`` (the plot), ``exclusion_contours.csv`` (the contour lines, HEPData
        CSV layout), and ``cache/`` (the fetched archive).
    jobs : int, optional
        Worker processes of the scan (default: the usable cores; 1 runs in-process).
    small : bool
        Scan only the coarse sub-grid :data:`SMALL_WHERE` (13 of the 46 points).
    progress : bool
        Show progress bars (the CLI sets it).
    example : path-like, optional
        Folder holding ``fixtures/`` and ``grids/`` (default: :func:`example_dir`).
    echo : callable, optional
        Called with one line of text at the start of each step (the CLI passes
        ``click.echo``); the same lines are logged at INFO level.

    Returns
    -------
    pandas.DataFrame
        The scan results (:func:`recast.scan` columns: ``patch, m1, m2, cls_obs,
        cls_exp_m2 ... cls_exp_p2, mu_hat, status, message, seconds, xsec, xsec_unc_up,
        xsec_unc_down, xsec_unit, cls_obs_up, cls_obs_down``), one row per point.
        ``attrs["files"]`` is a :class:`DemoFiles` with the paths written, and
        ``attrs["timings"]`` the seconds spent per step.
    """
    # imported here: `import recast.demo` stays cheap and free of import cycles
    from recast.contour import exclusion_contour, export_contours, plot_exclusion
    from recast.fetching import fetch, load_likelihood
    from recast.patch import make_patchset
    from recast.scan import scan
    from recast.yields import read_yields

    def step(text: str) -> None:
        log.info("demo: %s", text)
        if echo is not None:
            echo(text)

    data = example_data(example)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    step(f"1/4 fetch      {data.archive.name} (offline, cache in {out / 'cache'})")
    folder = fetch(data.archive, cache_dir=out / "cache", offline=True)
    lik = load_likelihood(folder)
    timings["fetch"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step(
        f"2/4 make-patch {data.simpleanalysis_index.name} (SimpleAnalysis) + "
        f"{data.mapping.name} -> signal patches for {lik.name} "
        f"({len(lik.bkgonly['channels'])} channels)"
    )
    yields = read_yields(data.simpleanalysis_index, format="simpleanalysis")
    if small:
        labels = list(yields.attrs.get("labels", [X, Y]))
        attrs = dict(yields.attrs)
        yields = yields.query(SMALL_WHERE).reset_index(drop=True)
        yields.attrs.update(attrs)
        yields.attrs["labels"] = labels
    # the cross-section the acceptances were scaled with (the index's xsec_pb) and its
    # toy theory uncertainty go into every patch's metadata.xsec
    index = pd.read_csv(data.simpleanalysis_index)
    xsec = pd.DataFrame(
        {
            X: index[X],
            Y: index[Y],
            "xsec_pb": index["xsec_pb"],
            "xsec_unc_rel": [theory_uncertainty(m) for m in index[X]],
        }
    )
    lumi = float(index["lumi_ifb"].iloc[0])
    patchset = make_patchset(
        lik.bkgonly,
        yields,
        xsec=xsec,
        mapping=data.mapping,
        hepdata=TOY_HEPDATA_ID,
        name_prefix=NAME_PREFIX,
        description=(
            "recastkit demo: stop -> b chargino -> b W neutralino (a new model) for the toy "
            "one-lepton stop search, from SimpleAnalysis acceptances"
        ),
    )
    patchset_path = out / "patchset.json"
    atomic_write_json(patchset_path, patchset, indent=1)
    timings["make_patch"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step(
        f"3/4 scan       {len(patchset['patches'])} points"
        + ("" if _kernels_cached() else " (compiling the numba kernels once; cached afterwards)")
    )
    results_path = out / "results.csv"
    results = scan(
        lik.bkgonly,
        patchset,
        jobs=jobs,
        output=results_path,
        overwrite=True,
        progress=progress,
    )
    timings["scan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step(
        "4/4 contour    observed exclusion with its +-1 sigma (theory) lines, expected with "
        "its +-1 sigma band"
    )
    contours = exclusion_contour(results, X, Y, forbidden=FORBIDDEN)
    contours_path = export_contours(contours, out / "exclusion_contours.csv")
    plot_path = out / "exclusion.png"
    plot_exclusion(
        contours,
        ax=None,
        title=(
            r"recastkit demo: toy 1-lepton search, new model "
            r"$\tilde{t}_1 \to b\,\tilde{\chi}^{\pm}_1 \to b\,W\,\tilde{\chi}^0_1$"
        ),
        labels={X: r"$m(\tilde{t}_1)$", Y: r"$m(\tilde{\chi}^0_1)$"},
        analysis="toy 1-lepton stop search",
        sqrt_s=SQRT_S_TEV,
        lumi=lumi,
        output=plot_path,
    )
    timings["contour"] = time.perf_counter() - t0

    results.attrs["files"] = DemoFiles(
        results=results_path,
        patchset=patchset_path,
        plot=plot_path,
        contours=Path(contours_path),
        likelihood=Path(lik.bkgonly_path),
    )
    results.attrs["timings"] = timings
    return results
