"""CLs over whole signal grids, in parallel, resumable: :func:`scan` and :func:`best_expected`.

A grid is a background-only workspace plus one JSON patch per signal point (a pyhf
PatchSet, or a folder of legacy ``patch.<name>.json`` files).  :func:`scan` splits the
points into chunks of neighbours, evaluates the chunks on an executor (by default a local
process pool with one BLAS thread per worker; any :class:`concurrent.futures.Executor`,
e.g. a Dask cluster), and returns one row per point.  Each worker compiles the background
once and then only applies the signal patches; each fit starts from the previous point's
best fit.

With ``output=``, every point is appended to the file (flushed and fsynced) as soon as
its chunk returns, so an interruption loses no finished point; ``resume=True`` skips the points
already there.  See ``docs/scan.md``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from likelihood._threads import pinned_threads
from recast._results import ResultFile, result_format, write_table
from recast._scan_worker import (
    CLS_COLUMNS,
    SIGNIFICANCE_COLUMNS,
    THEORY_COLUMNS,
    TOY_COLUMNS,
    UPPER_LIMIT_COLUMNS,
    VALUE_COLUMNS,
    BackgroundPayload,
    ChunkTask,
    GridPoint,
    ScanSettings,
    _evaluate_chunk,
    default_jobs,
    init_worker,
    kill_pool,
    start_pool,
    take_early_pool,
)
from recast.errors import ScanError, cli_worded
from recast.xsec import XSEC_COLUMNS, XSEC_LIMIT_COLUMNS

__all__ = ["scan", "best_expected", "write_results", "dask_client", "ScanInterrupted", "STATUSES"]

log = logging.getLogger(__name__)

#: The values of the ``status`` column: every status a row can carry.  All but ``error``
#: are final (``resume`` keeps such rows); ``no_bracket``: an upper limit (``upper_limit``)
#: whose CLs curve does not cross the level inside the range searched (limit NaN, CLs kept).
STATUSES: tuple[str, ...] = (
    "ok",
    "fit_failed",
    "no_signal",
    "invalid_patch",
    "no_bracket",
    "error",
)

_TEST_STATS = ("qtilde", "q")
_EXPECTED = ("aposteriori", "apriori")
_CALCTYPES = ("asymptotics", "toybased")
_MAX_CHUNK = 16
#: How often a chunk is submitted when the worker computing it dies (SIGKILL, out of memory).
_MAX_ATTEMPTS = 3


class ScanInterrupted(KeyboardInterrupt):
    """The scan was stopped (Ctrl-C / SIGTERM); the finished rows are kept.

    Attributes
    ----------
    done : int
        Points with a result (including those of an earlier run when resuming).
    total : int
        Points selected for the scan.
    output : pathlib.Path or None
        The result file holding the finished rows.
    """

    def __init__(self, done: int, total: int, output: Path | None) -> None:
        super().__init__(f"scan interrupted after {done} of {total} points")
        self.done = done
        self.total = total
        self.output = output


class _Grid(NamedTuple):
    region: str | None
    bkgonly: Mapping[str, Any]
    patchset: Mapping[str, Any]
    labels: list[str]
    source: str  # the patchset, for messages
    digest: str
    bkg_source: str = ""  # the background-only workspace, for messages


# ---------------------------------------------------------------------------------------
# inputs


def _is_likelihood(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("name", "bkgonly", "patchset", "labels"))


def _read_document(path: str | os.PathLike[str], what: str) -> Any:
    from likelihood.errors import InvalidSpecification
    from likelihood.spec import read_json

    try:
        return read_json(path)
    except InvalidSpecification as err:
        raise ScanError(f"cannot read the {what}: {err}") from err


def _patchset_from_folder(
    folder: Path, bkgonly: Mapping[str, Any], labels: Sequence[str] | None
) -> dict[str, Any]:
    """Turn a folder of legacy ``patch.<name>.json`` files into a PatchSet document
    (:func:`recast.archive.legacy_patchset`, the one converter)."""
    from recast.archive import legacy_patchset
    from recast.errors import ArchiveError

    try:
        return legacy_patchset(folder, bkgonly, labels=labels)
    except ArchiveError as err:
        raise ScanError(str(err)) from err


def _check_patchset(patchset: Any, source: str) -> None:
    """The points of the patchset, through the validation boundary (cheap for a 15 MB
    patchset): names, values, duplicates.  Each patch is checked when its point is
    computed (a bad one gives an ``invalid_patch`` row, not a failed scan)."""
    from likelihood.errors import InvalidPatch
    from likelihood.validate import validate_patchset_points

    try:
        validate_patchset_points(patchset, source=source)
    except InvalidPatch as err:
        raise ScanError(str(err)) from err


def _verify_digest(grid: _Grid) -> None:
    digests = grid.patchset.get("metadata", {}).get("digests")
    if not isinstance(digests, Mapping) or "sha256" not in digests:
        log.warning(
            "%s: the patchset records no sha256 digest of its BkgOnly; not checked", grid.source
        )
        return
    expected = str(digests["sha256"]).lower()
    if expected != grid.digest:
        text = (
            f"{grid.source}: /metadata/digests/sha256 is {expected}, but the background-only "
            f"workspace has sha256 {grid.digest}: the patches were made for another BkgOnly. "
            "Use the BkgOnly.json published with this patchset, or pass "
        )
        raise cli_worded(
            ScanError(text + "verify=False if you know they belong together"),
            text + "--no-verify if you know they belong together",
        )


def _grid(
    bkgonly: Any,
    patchset: Any,
    region: str | None,
    labels: Sequence[str] | None,
    source: str,
) -> _Grid:
    from likelihood.spec import digest

    if isinstance(bkgonly, (str, os.PathLike)):
        source = str(bkgonly)
        bkgonly = _read_document(bkgonly, "background-only workspace")
    if not isinstance(bkgonly, Mapping) or "channels" not in bkgonly:
        raise ScanError(
            f"{source}: not a HistFactory workspace (a JSON object with /channels); give the "
            "background-only workspace (BkgOnly.json) first"
        )
    if patchset is None:
        raise ScanError(
            f"{source}: no signal patches; give a patchset file or a folder of "
            "patch.<name>.json files after the BkgOnly.json"
        )
    ps_source = f"patchset of {source}"
    if isinstance(patchset, (str, os.PathLike)):
        ps_source = str(patchset)
        path = Path(patchset)
        if path.is_dir():
            patchset = _patchset_from_folder(path, bkgonly, labels)
        else:
            patchset = _read_document(path, "patchset")
    _check_patchset(patchset, ps_source)
    names = list(patchset["metadata"].get("labels", []))
    if labels is not None:
        if len(labels) != len(names):
            raise ScanError(
                f"{ps_source}: labels {list(labels)} do not match the {len(names)} value(s) "
                f"per point of the patchset (labels {names})"
            )
        names = list(labels)
    return _Grid(region, bkgonly, patchset, names, ps_source, digest(bkgonly).lower(), source)


def _resolve_grids(bkgonly: Any, patchset: Any, labels: Sequence[str] | None) -> list[_Grid]:
    if _is_likelihood(bkgonly):
        likelihoods = [bkgonly]
    elif isinstance(bkgonly, Sequence) and not isinstance(bkgonly, (str, bytes)):
        likelihoods = list(bkgonly)
        if not likelihoods or not all(_is_likelihood(x) for x in likelihoods):
            raise ScanError(
                "scan takes a BkgOnly workspace (dict or path) with a patchset, a Likelihood "
                "from recast.load_likelihood, or a list of Likelihoods (one per region)"
            )
    else:
        return [_grid(bkgonly, patchset, None, labels, "background-only workspace")]
    if patchset is not None:
        raise ScanError("give no separate patchset with a Likelihood: it carries its own")
    grids = []
    for lh in likelihoods:
        source = str(getattr(lh, "bkgonly_path", None) or lh.name)
        grids.append(_grid(lh.bkgonly, lh.patchset, lh.name, labels or lh.labels, source))
    names = [g.region for g in grids]
    if len(set(names)) != len(names):
        raise ScanError(f"the likelihoods to scan repeat a region name: {names}")
    return grids


# ---------------------------------------------------------------------------------------
# the point table and the selection


def _point_table(grids: Sequence[_Grid], multi: bool) -> tuple[pd.DataFrame, list[str]]:
    labels: list[str] = []
    for g in grids:
        labels.extend(x for x in g.labels if x not in labels)
    records = []
    for gi, g in enumerate(grids):
        for pi, patch in enumerate(g.patchset["patches"]):
            rec: dict[str, Any] = {"_grid": gi, "_patch": pi}
            if multi:
                rec["region"] = g.region
            rec["patch"] = patch["metadata"]["name"]
            rec.update(zip(g.labels, patch["metadata"].get("values", []), strict=True))
            records.append(rec)
    head = ["_grid", "_patch", *(["region"] if multi else []), "patch"]
    table = pd.DataFrame.from_records(records, columns=[*head, *labels])
    return table, labels


def _select(
    table: pd.DataFrame, points: Sequence[str] | str | None, where: str | None
) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    if points is not None:
        names = [p.strip() for p in points.split(",")] if isinstance(points, str) else list(points)
        names = [n for n in names if n]
        known = set(table["patch"])
        unknown = [n for n in names if n not in known]
        if unknown:
            hints = difflib.get_close_matches(unknown[0], sorted(known), n=3)
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            text = (
                f"no patch named {', '.join(map(repr, unknown[:5]))} in the patchset "
                f"({len(known)} patches){hint}"
            )
            raise cli_worded(ScanError(f"points: {text}"), f"--points: {text}")
        mask &= table["patch"].isin(names)
    if where:
        public = table.drop(columns=["_grid", "_patch"])
        try:
            result = public.eval(where, engine="python")
        except pd.errors.UndefinedVariableError as err:
            text = f"{where!r}: {err}; the columns are {', '.join(public.columns)}"
            raise cli_worded(ScanError(f"where {text}"), f"--where {text}") from err
        except Exception as err:  # pandas raises many kinds for a bad expression
            text = (
                f"{where!r} is not a valid pandas query on the columns "
                f"{', '.join(public.columns)}: {type(err).__name__}: {err}"
            )
            raise cli_worded(ScanError(f"where {text}"), f"--where {text}") from err
        if not isinstance(result, pd.Series) or result.dtype != bool:
            text = (
                f"{where!r} must be a condition (true/false per point), e.g. "
                f"'{(public.columns[-1])} > 500'"
            )
            raise cli_worded(ScanError(f"where {text}"), f"--where {text}")
        mask &= result
    return mask


def _chunk_sizes(n: int, n_workers: int, fixed: int | None) -> list[int]:
    """Sizes of the chunks of ``n`` points: ``fixed``, or guided (large first, small last).

    Guided: each chunk takes about 1/(2 * workers) of the points still to hand out, at
    most 16, so that the first chunks amortise the set-up and keep warm starts, and the
    last ones are small enough for the workers to finish together.
    """
    sizes = []
    left = n
    while left > 0:
        size = fixed or max(1, min(_MAX_CHUNK, math.ceil(left / (2 * n_workers))))
        size = min(size, left)
        sizes.append(size)
        left -= size
    return sizes


def _chunks(
    table: pd.DataFrame, rows: Sequence[int], labels: Sequence[str], sizes: Sequence[int]
) -> Iterator[list[int]]:
    """Split ``rows`` of one grid into chunks of neighbours (sorted by the label values)."""
    sub = table.loc[list(rows)]
    keys = [c for c in labels if c in sub.columns and sub[c].notna().all()]
    if keys:
        try:
            sub = sub.sort_values(keys, kind="stable")
        except TypeError:  # values of mixed types: keep the patchset order
            pass
    ordered = list(sub.index)
    start = 0
    for size in sizes:
        yield ordered[start : start + size]
        start += size


# ---------------------------------------------------------------------------------------
# executors


def _default_jobs() -> int:
    return default_jobs()


def _executor_workers(executor: Any) -> int | None:
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int):
        return n
    client = getattr(executor, "_client", None) or (
        executor if hasattr(executor, "nthreads") else None
    )
    if client is not None:
        with contextlib.suppress(Exception):
            return int(sum(client.nthreads().values())) or None
    return None


def _as_executor(executor: Any) -> Executor:
    # a dask.distributed Client: use its concurrent.futures interface
    if not isinstance(executor, Executor) and hasattr(executor, "get_executor"):
        return executor.get_executor()
    if not hasattr(executor, "submit"):
        raise ScanError(
            f"executor must be a concurrent.futures.Executor or a dask.distributed Client, "
            f"got {type(executor).__name__}"
        )
    return executor


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None) -> Iterator[Any]:
    """A ``dask.distributed`` client for :func:`scan` (needs the ``dask`` extra).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``), e.g. one started by
        dask-jobqueue on HTCondor or Slurm.  Without it, a local cluster of ``n_workers``
        single-threaded worker processes on 127.0.0.1 is started, and closed on exit.
    n_workers : int, optional
        Workers of the local cluster (default: the usable cores).

    Yields
    ------
    distributed.Client
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ScanError(
            "the Dask executor needs dask.distributed: pip install 'recastkit[dask]'"
        ) from err
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as err:
            raise ScanError(
                f"cannot connect to the Dask scheduler at {scheduler}: {err}; check the "
                "address (tcp://host:port) and that the scheduler runs"
            ) from err
        try:
            yield client
        finally:
            client.close()
        return
    with pinned_threads():
        cluster = LocalCluster(
            n_workers=n_workers or _default_jobs(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


class _Runner:
    """Submits chunk tasks to an executor (or runs them here) and yields finished rows.

    When a worker of our own pool dies (SIGKILL, the out-of-memory killer), the pool
    breaks and every chunk not yet returned fails with ``BrokenProcessPool``: the runner
    starts a new pool and submits those chunks again, up to ``_MAX_ATTEMPTS`` times per
    chunk; a chunk is the same unit of work every time, so its numbers do not change.
    """

    def __init__(self, executor: Any, jobs: int | None, n_tasks: int) -> None:
        self.poll: Callable[[], None] | None = None  # called while waiting (toy progress)
        self.owned: list[Any] = []  # toy pool / progress manager: shut down with the runner
        self.own_pool: ProcessPoolExecutor | None = None
        self.executor: Executor | None = None
        self.futures: dict[Future, ChunkTask] = {}
        self.n_workers = 0
        n = min(jobs or _default_jobs(), n_tasks) if executor is None else 0
        # workers started before the inputs were read (recastkit scan), when they fit
        early = take_early_pool(n)
        if executor is not None:
            self.executor = _as_executor(executor)
            return
        if n > 1:
            self.n_workers = n
            if early is not None:
                self.own_pool = self.executor = early
            else:
                self._start_pool()

    def _start_pool(self) -> None:
        self.own_pool = start_pool(self.n_workers)
        self.executor = self.own_pool

    def _submit(self, tasks: Sequence[ChunkTask]) -> list[ChunkTask]:
        """Submit ``tasks``; return those that could not be (the pool broke meanwhile)."""
        assert self.executor is not None
        # our own pool starts its workers on demand while tasks are submitted
        with pinned_threads() if self.own_pool is not None else contextlib.nullcontext():
            for k, task in enumerate(tasks):
                try:
                    self.futures[self.executor.submit(_evaluate_chunk, task)] = task
                except (BrokenProcessPool, OSError, RuntimeError):
                    # the pool broke meanwhile: BrokenProcessPool, or, when a worker dies
                    # while the pool is being told of new work, its closed wake-up pipe
                    # ("handle is closed") or its shut-down manager
                    return list(tasks[k:])
        return []

    def run(self, tasks: Sequence[ChunkTask]) -> Iterator[tuple[ChunkTask, Any]]:
        """Yield ``(task, rows or exception)`` as tasks finish."""
        if self.executor is None:
            for task in tasks:
                try:
                    yield task, _evaluate_chunk(task)
                except Exception as err:
                    yield task, err
            return
        attempts = {id(task): 1 for task in tasks}
        unsent = self._submit(tasks)
        while self.futures or unsent:
            done: set[Future] = set()
            if not unsent:
                done, _ = wait(list(self.futures), timeout=0.5, return_when=FIRST_COMPLETED)
            if self.poll is not None:
                self.poll()
            lost: list[ChunkTask] = []
            for fut in done:
                task = self.futures.pop(fut)
                try:
                    rows = fut.result()
                except BrokenProcessPool:
                    lost.append(task)
                    continue
                except Exception as err:
                    yield task, err
                    continue
                yield task, rows
            if not lost and not unsent:
                continue
            # the pool is broken: every chunk still out fails the same way
            for fut, task in list(self.futures.items()):
                try:
                    rows = fut.result()
                except BrokenProcessPool:
                    lost.append(task)
                except Exception as err:
                    yield task, err
                else:
                    yield task, rows
            self.futures.clear()
            retry = [t for t in unsent if attempts[id(t)] < _MAX_ATTEMPTS]  # never started
            lost.extend(t for t in unsent if attempts[id(t)] >= _MAX_ATTEMPTS)
            unsent = []
            retry.extend(t for t in lost if attempts[id(t)] < _MAX_ATTEMPTS)
            for task in lost:
                if attempts[id(task)] >= _MAX_ATTEMPTS:
                    yield (
                        task,
                        BrokenProcessPool(
                            f"the worker process died {_MAX_ATTEMPTS} times while computing this "
                            "chunk (killed, or out of memory)"
                        ),
                    )
            if not retry:
                continue
            if self.own_pool is None:  # someone else's executor: we cannot restart it
                for task in retry:
                    yield task, BrokenProcessPool("a worker process of the executor died")
                continue
            log.warning(
                "a worker process died (killed, or out of memory); starting new workers and "
                "submitting its %d unfinished chunk(s) again",
                len(retry),
            )
            self._kill_pool()
            self._start_pool()
            for task in retry:
                attempts[id(task)] += 1
            unsent = self._submit(retry)

    def _kill_pool(self) -> None:
        if self.own_pool is None:
            return
        kill_pool(self.own_pool)
        self.own_pool = None
        self.executor = None

    def _shutdown_owned(self) -> None:
        for obj in self.owned:
            with contextlib.suppress(Exception):
                obj.shutdown()
        self.owned = []

    def stop(self) -> None:
        """Cancel what has not started; stop our own workers at once."""
        self._shutdown_owned()
        for fut in list(self.futures):
            fut.cancel()
        self._kill_pool()

    def close(self) -> None:
        self._shutdown_owned()
        if self.own_pool is not None:
            self.own_pool.shutdown(wait=True)
            self.own_pool = None


# ---------------------------------------------------------------------------------------
# results


def _result_columns(
    multi: bool,
    labels: Sequence[str],
    upper_limit: bool,
    significance: bool = False,
    xsec: tuple[bool, bool] = (False, False),
    toys: bool = False,
) -> list[str]:
    has_xsec, has_theory = xsec
    return [
        *(["region"] if multi else []),
        "patch",
        *labels,
        *VALUE_COLUMNS,
        *(UPPER_LIMIT_COLUMNS if upper_limit else ()),
        *(SIGNIFICANCE_COLUMNS if significance else ()),
        *(XSEC_COLUMNS if has_xsec else ()),
        *(XSEC_LIMIT_COLUMNS if has_xsec and upper_limit else ()),
        *(THEORY_COLUMNS if has_theory else ()),
        *(TOY_COLUMNS if toys else ()),
    ]


def _attach_xsec(
    table: pd.DataFrame, grids: Sequence[_Grid], labels: Sequence[str], xsec: Any
) -> tuple[bool, bool]:
    """Add the cross-section columns to the point table; (any xsec, any uncertainty)."""
    from recast.xsec import lookup, point_key, read_xsec, xsec_from_patchset

    found: list[dict[str, Any] | None] = []
    if xsec is not None:
        rows = lookup(read_xsec(xsec, labels), labels)
        for rec in table[list(labels)].to_dict("records"):
            found.append(rows.get(point_key([rec[lab] for lab in labels])))
        missing = sum(r is None for r in found)
        if missing:
            log.warning("the cross-section table gives no value for %d point(s)", missing)
    else:
        per_grid = []
        for g in grids:
            frame = xsec_from_patchset(g.patchset, source=g.source)
            per_grid.append({r["patch"]: r for r in frame.to_dict("records")})
        for gi, name in zip(table["_grid"], table["patch"], strict=True):
            found.append(per_grid[gi].get(name))
    if all(r is None for r in found):
        return False, False
    units = {r["xsec_unit"] for r in found if r is not None}
    if len(units) > 1:
        raise ScanError(f"the cross-sections are given in several units {sorted(units)}")
    for col in XSEC_COLUMNS:
        default = "" if col == "xsec_unit" else math.nan
        table[col] = [default if r is None else r[col] for r in found]
    theory = table[["xsec_unc_up", "xsec_unc_down"]].notna().any(axis=None)
    return True, bool(theory)


def _theory(table: pd.DataFrame, i: int) -> tuple[float, float] | None:
    """Relative cross-section uncertainty (up, down) of point ``i``, or None."""
    if "xsec_unc_up" not in table.columns:
        return None
    value = float(table.at[i, "xsec"])
    up, down = float(table.at[i, "xsec_unc_up"]), float(table.at[i, "xsec_unc_down"])
    if not (math.isfinite(up) or math.isfinite(down)):
        return None
    return up / value, down / value


def _float_or_nan(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _previous_rows(
    rf: ResultFile, table: pd.DataFrame, columns: Sequence[str], multi: bool
) -> dict[int, dict[str, Any]]:
    """Rows of an earlier run, keyed by table row; "error" rows are dropped (retried)."""
    prev = rf.read()
    if prev.empty:
        return {}
    if set(prev.columns) != set(columns):
        text = (
            f"{rf.path}: its columns {list(prev.columns)} differ from this scan's "
            f"{list(columns)}: it was written with other options ("
        )
        raise cli_worded(
            ScanError(
                text
                + "upper_limit, significance, regions, labels). Resume with the same options, choose "
                "another output file, or start over with overwrite=True"
            ),
            text
            + "--upper-limit, --significance, regions, labels). Resume with the same options, choose "
            "another -o file, or start over with --overwrite",
        )
    key_cols = ["region", "patch"] if multi else ["patch"]
    index = {
        tuple(str(v) for v in key): i
        for i, key in zip(table.index, table[key_cols].itertuples(index=False), strict=True)
    }
    rows: dict[int, dict[str, Any]] = {}
    foreign = []
    for rec in prev.to_dict("records"):
        key = tuple(str(rec[c]) for c in key_cols)
        i = index.get(key)
        if i is None:
            foreign.append(key)
            continue
        status = rec.get("status")
        if not isinstance(status, str) or status not in STATUSES or status == "error":
            continue
        row: dict[str, Any] = {}
        for col in (
            *CLS_COLUMNS,
            "mu_hat",
            "seconds",
            *UPPER_LIMIT_COLUMNS,
            *SIGNIFICANCE_COLUMNS,
            *THEORY_COLUMNS,
            *TOY_COLUMNS[1:],
        ):
            if col in rec:
                row[col] = _float_or_nan(rec[col])
        if "calctype" in rec:
            row["calctype"] = rec["calctype"] if isinstance(rec["calctype"], str) else ""
        message = rec.get("message")
        row["status"] = status
        row["message"] = message if isinstance(message, str) else ""
        rows[i] = row
    if foreign:
        text = (
            f"{rf.path}: {len(foreign)} row(s) name points that are not in this grid (e.g. "
            f"{'/'.join(foreign[0])}); it holds another scan. Choose another "
        )
        raise cli_worded(
            ScanError(text + "output file or start over with overwrite=True"),
            text + "-o file or start over with --overwrite",
        )
    return rows


def _record(
    table: pd.DataFrame, i: int, values: Mapping[str, Any], columns: Sequence[str]
) -> dict[str, Any]:
    rec = {c: table.at[i, c] for c in columns if c in table.columns}
    rec.update({c: values.get(c, math.nan) for c in columns if c not in table.columns})
    if "xsec_ul_obs" in rec:
        # mu multiplies the whole signal: the cross-section limit is mu_ul times the
        # cross-section the patch was made with, in the unit of the user's table
        for col in ("obs", "exp_m2", "exp_m1", "exp", "exp_p1", "exp_p2"):
            rec[f"xsec_ul_{col}"] = _float_or_nan(rec[f"mu_ul_{col}"]) * _float_or_nan(rec["xsec"])
    return rec


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=list(columns))
    numeric = (
        *UPPER_LIMIT_COLUMNS,
        *SIGNIFICANCE_COLUMNS,
        *XSEC_COLUMNS[:3],
        *XSEC_LIMIT_COLUMNS,
        *THEORY_COLUMNS,
        *TOY_COLUMNS[2:],
    )
    for col in (*CLS_COLUMNS, "mu_hat", "seconds", *numeric):
        if col in df.columns:
            df[col] = df[col].astype("float64")
    for col in ("status", "message"):
        df[col] = df[col].fillna("").astype(str)
    return df


def _summary(df: pd.DataFrame, new: int, wall: float) -> dict[str, Any]:
    counts = df["status"].value_counts()
    ok = int(counts.get("ok", 0))
    no_signal = int(counts.get("no_signal", 0))
    return {
        "points": len(df),
        "computed": new,
        "ok": ok,
        "no_signal": no_signal,
        "failed": len(df) - ok - no_signal,
        "statuses": {str(k): int(v) for k, v in counts.items()},
        "wall_seconds": wall,
        "points_per_second": new / wall if wall > 0 else math.nan,
    }


# ---------------------------------------------------------------------------------------
# the scan


def scan(
    bkgonly: Any,
    patchset: Any = None,
    *,
    mu: float = 1.0,
    jobs: int | None = None,
    executor: Any = None,
    upper_limit: bool = False,
    expected: str = "aposteriori",
    test_stat: str = "qtilde",
    points: Sequence[str] | str | None = None,
    where: str | None = None,
    output: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    chunk_size: int | None = None,
    verify: bool = True,
    labels: Sequence[str] | None = None,
    measurement: str | None = None,
    modifier_settings: Mapping[str, Any] | None = None,
    significance: bool = False,
    xsec: pd.DataFrame | str | os.PathLike[str] | None = None,
    bracket: tuple[float, float] | None = None,
    calctype: str = "asymptotics",
    ntoys: int = 1000,
    seed: int = 0,
    toys_below_events: float | None = None,
) -> pd.DataFrame:
    """CLs at ``mu`` (asymptotic, or from toys) for every point of a signal grid.

    Parameters
    ----------
    bkgonly : mapping, path-like, Likelihood or list of Likelihood
        The background-only workspace (a dict, or the path of ``BkgOnly.json``), or a
        :class:`recast.Likelihood` from :func:`recast.load_likelihood` (then ``patchset``
        is None), or a list of Likelihoods (several regions of one analysis, scanned into
        one table with a ``region`` column).
    patchset : mapping or path-like, optional
        A pyhf PatchSet (dict or file, e.g. from ``recastkit make-patch``), or a folder of
        legacy per-point ``patch.<name>.json`` files (the values of each point are the
        numbers in its name; ``labels`` names them).
    mu : float, default 1.0
        Signal strength tested.
    jobs : int, optional
        Worker processes of the local pool (default: the usable cores).  ``jobs=1`` runs
        in this process.  Ignored when ``executor`` is given.
    executor : concurrent.futures.Executor or distributed.Client, optional
        Where to run the chunks instead of a local pool (e.g. ``client.get_executor()`` of a
        Dask cluster, see :func:`dask_client`).  It is not shut down.
    upper_limit : bool, default False
        Also compute the 95% CL upper limits on mu (observed and expected band).  A curve
        whose CLs stays above 0.05 up to the POI's upper bound gets the limit ``inf`` and
        the row stays ``ok`` (its ``message`` names the curve).
    bracket : (float, float), optional
        With ``upper_limit``: search the limits in ``[lo, hi]`` only (default: from
        ``[0, 1]``, widened up to the POI's upper bound).
    expected : {"aposteriori", "apriori"}
        Expected band from the background-only fit to data, or from the nominal model.
    test_stat : {"qtilde", "q"}
        Test statistic (arXiv:1007.1727).
    points : sequence of str or str, optional
        Patch names to scan (a list or comma-separated); default all.
    where : str, optional
        A pandas query on the label columns (and ``patch``, ``region``), e.g. ``"m1 > 500"``.
    output : path-like, optional
        ``*.csv``, ``*.json`` or ``*.jsonl``: every point is appended as its chunk returns
        (flushed + fsynced); at the end the file is rewritten atomically in grid order.
    resume : bool, default False
        Keep the points already in ``output`` (except rows with status "error", which are
        computed again) and compute only the others.
    overwrite : bool, default False
        Replace an existing ``output`` (otherwise an existing file is an error unless
        ``resume``).
    progress : bool, default False
        Show a tqdm progress bar (points/s, ETA) on stderr.
    chunk_size : int, optional
        Points per task.  Default: guided, at most 16, each chunk about 1/(2 * workers) of
        the points left, so that the last chunks are small and the workers end together.
    verify : bool, default True
        Check that the patchset's sha256 digest is the background-only workspace's.
    labels : sequence of str, optional
        Names of the point values (label columns), e.g. for legacy patch files.
    measurement : str, optional
        Measurement of the workspace to use (default: the first).
    modifier_settings : mapping, optional
        Interpolation codes, as :func:`likelihood.compile` (default: code4 / code4p).
    significance : bool, default False
        Also the discovery p-value and significance (:func:`likelihood.discovery`, q0,
        asymptotics): columns ``p0_obs, z_obs, p0_exp, z_exp`` (observed, and the median
        expected for the signal at mu = 1).
    xsec : pandas.DataFrame or path-like, optional
        Signal cross-section per point (a table as described in :mod:`recast.xsec`, keyed
        by the label columns).  Default: the ``metadata.xsec`` that make-patch stores in
        each patch, when present.  Adds the columns ``xsec, xsec_unc_up, xsec_unc_down,
        xsec_unit`` (absolute, in the table's unit), with ``upper_limit`` the cross-section
        limits ``xsec_ul_obs, xsec_ul_exp_m2 ... xsec_ul_exp_p2`` (= ``mu_ul * xsec``), and
        with an uncertainty the theory band ``cls_obs_up, cls_obs_down``: the observed CLs
        with the signal scaled by ``1 + delta_up`` and ``1 - delta_down``
        (:func:`likelihood.observed_cls`).
    calctype : {"asymptotics", "toybased"}
        ``"toybased"``: CLs from pseudo-experiments (:func:`likelihood.hypotest_toys`,
        ``ntoys`` per hypothesis, one point per worker); adds the columns ``calctype,
        ntoys, cls_obs_err ... cls_exp_p2_err, clsb_obs, clb_obs``.  With
        ``upper_limit``, the limits come from :func:`likelihood.upper_limit_toys`
        (8 toy tests per point).
    ntoys : int, default 1000
        Toys per hypothesis and point.
    seed : int, default 0
        Seed of the toys; point ``name`` uses ``seed * 2**32 + crc32(name)``, so a point
        gets the same toys whatever the chunking, workers or selection.
    toys_below_events : float, optional
        With ``"toybased"``: run toys only at points where a bin with signal has an
        expected background below this many events (:func:`likelihood.toys.low_count_bins`);
        the other points keep the asymptotic CLs (``calctype`` "asymptotics", errors 0).

    Returns
    -------
    pandas.DataFrame
        One row per point, in patchset order (region by region), with columns ``[region]``,
        ``patch``, one per label, ``cls_obs, cls_exp_m2, cls_exp_m1, cls_exp, cls_exp_p1,
        cls_exp_p2, mu_hat, status, message, seconds`` (and ``mu_ul_obs, mu_ul_exp_m2 ...
        mu_ul_exp_p2`` with ``upper_limit``, then ``p0_obs, z_obs, p0_exp, z_exp`` with
        ``significance``).  ``status`` is one of :data:`STATUSES`; the
        values are NaN unless it is "ok" (or "fit_failed" with partial values).
        ``df.attrs["summary"]`` holds the counts and the wall time.

    Raises
    ------
    ScanError
        Bad inputs or options (unreadable files, digest mismatch, unknown point or
        ``where`` column, an output of another scan...).  A failing point never raises:
        it is a row with its status and message.
    ScanInterrupted
        On KeyboardInterrupt (Ctrl-C): pending chunks are cancelled and the finished rows
        are kept in ``output``; run again with ``resume=True`` to continue.
    """
    return _scan(
        bkgonly,
        patchset,
        mu=mu,
        jobs=jobs,
        executor=executor,
        upper_limit=upper_limit,
        expected=expected,
        test_stat=test_stat,
        points=points,
        where=where,
        output=output,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        chunk_size=chunk_size,
        verify=verify,
        labels=labels,
        measurement=measurement,
        modifier_settings=modifier_settings,
        significance=significance,
        core=None,
        xsec=xsec,
        bracket=bracket,
        calctype=calctype,
        ntoys=ntoys,
        seed=seed,
        toys_below_events=toys_below_events,
    )


def _check_options(
    mu: float,
    jobs: int | None,
    expected: str,
    test_stat: str,
    chunk_size: int | None,
    output: Any,
    resume: bool,
    overwrite: bool,
) -> None:
    if not isinstance(mu, (int, float)) or not math.isfinite(mu):
        raise ScanError(f"mu must be a finite number, got {mu!r}")
    if test_stat not in _TEST_STATS:
        raise ScanError(f"test_stat must be one of {_TEST_STATS}, got {test_stat!r}")
    if expected not in _EXPECTED:
        raise ScanError(f"expected must be one of {_EXPECTED}, got {expected!r}")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ScanError(f"jobs must be a positive integer, got {jobs!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ScanError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if resume and overwrite:
        raise cli_worded(
            ScanError("resume and overwrite exclude each other: choose one"),
            "--resume and --overwrite exclude each other: choose one",
        )
    if resume and output is None:
        raise cli_worded(
            ScanError("resume needs the output file of the earlier run: pass output="),
            "--resume needs the output file of the earlier run: add -o results.csv",
        )
    if output is not None:
        result_format(output)


def _bracket(bracket: Any) -> tuple[float, float] | None:
    if bracket is None:
        return None
    try:
        lo, hi = (float(x) for x in bracket)
    except (TypeError, ValueError) as err:
        raise ScanError(f"bracket must be two numbers (lo, hi), got {bracket!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
        raise ScanError(f"bracket must satisfy 0 <= lo < hi, got {bracket!r}")
    return (lo, hi)


def _scan(
    bkgonly: Any,
    patchset: Any,
    *,
    mu: float,
    jobs: int | None,
    executor: Any,
    upper_limit: bool,
    expected: str,
    test_stat: str,
    points: Sequence[str] | str | None,
    where: str | None,
    output: str | os.PathLike[str] | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    chunk_size: int | None,
    verify: bool,
    labels: Sequence[str] | None,
    measurement: str | None,
    modifier_settings: Mapping[str, Any] | None,
    core: Any,
    significance: bool = False,
    on_rows: Callable[[int], None] | None = None,
    xsec: Any = None,
    bracket: tuple[float, float] | None = None,
    calctype: str = "asymptotics",
    ntoys: int = 1000,
    seed: int = 0,
    toys_below_events: float | None = None,
) -> pd.DataFrame:
    """:func:`scan` with the statistics core as a parameter (tests pass a stand-in)."""
    started = time.perf_counter()
    _check_options(mu, jobs, expected, test_stat, chunk_size, output, resume, overwrite)
    toys = _check_toy_options(calctype, ntoys, seed, toys_below_events)
    grids = _resolve_grids(bkgonly, patchset, labels)
    if verify:
        for g in grids:
            _verify_digest(g)
    multi = len(grids) > 1
    for g in grids:
        _check_mu(g, mu, measurement)
    table, label_names = _point_table(grids, multi)
    if table.empty:
        raise ScanError(
            f"{', '.join(g.source for g in grids)}: the patchset holds no patches (no signal "
            "point to scan); give a patchset with at least one patch"
        )
    selected = _select(table, points, where)
    if not selected.any():
        raise cli_worded(
            ScanError(
                f"no point selected by points={points!r} and where={where!r} out of the "
                f"{len(table)} points of the grid"
            ),
            f"no point selected by --points {points!r} / --where {where!r} out of the "
            f"{len(table)} points of the grid",
        )
    has_xsec = _attach_xsec(table, grids, label_names, xsec)
    columns = _result_columns(multi, label_names, upper_limit, significance, has_xsec, toys)
    settings = ScanSettings(
        float(mu),
        test_stat,
        expected,
        bool(upper_limit),
        measurement,
        dict(modifier_settings) if modifier_settings is not None else None,
        significance=bool(significance),
        bracket=_bracket(bracket),
    )
    if toys:
        settings = settings._replace(
            calctype=calctype,
            ntoys=int(ntoys),
            seed=int(seed),
            toys_below_events=None if toys_below_events is None else float(toys_below_events),
        )

    rf = ResultFile(output, columns) if output is not None else None
    results: dict[int, dict[str, Any]] = {}
    if rf is not None and rf.exists():
        if resume:
            results = _previous_rows(rf, table, columns, multi)
            log.info("resuming: %d point(s) already in %s", len(results), rf.path)
        elif not overwrite:
            raise cli_worded(
                ScanError(
                    f"{rf.path} exists: pass resume=True to continue that scan, or "
                    "overwrite=True to start over"
                ),
                f"{rf.path} exists: add --resume to continue that scan, or --overwrite to "
                "start over",
            )
    wanted = [i for i in table.index[selected]]
    todo = [i for i in wanted if i not in results]
    final_rows = sorted(set(wanted) | set(results))

    # tasks: chunks of neighbours, never mixing likelihoods
    n_workers = (_executor_workers(_as_executor(executor)) if executor is not None else None) or (
        jobs or _default_jobs()
    )
    tasks = []
    for gi, g in enumerate(grids):
        rows = [i for i in todo if table.at[i, "_grid"] == gi]
        if not rows:
            continue
        # a background that does not compile is blamed on the BkgOnly, not the patchset
        bkg_name = g.bkg_source or g.source
        payload = BackgroundPayload.from_spec(
            g.bkgonly, g.digest, f"{g.region} ({bkg_name})" if g.region else bkg_name
        )
        patches = g.patchset["patches"]
        sizes = _chunk_sizes(len(rows), n_workers, chunk_size)
        for chunk in _chunks(table, rows, g.labels, sizes):
            pts = tuple(
                GridPoint(
                    i,
                    patches[table.at[i, "_patch"]]["metadata"]["name"],
                    patches[table.at[i, "_patch"]]["patch"],
                    _theory(table, i),
                )
                for i in chunk
            )
            tasks.append(ChunkTask(payload, pts, settings, core))
    log.info(
        "scan: %d point(s) to compute in %d chunk(s) of <= %d (%d already done), %d likelihood(s)",
        len(todo),
        len(tasks),
        max((len(t.points) for t in tasks), default=0),
        len(final_rows) - len(todo),
        len(grids),
    )

    def records(rows: Sequence[int]) -> list[dict[str, Any]]:
        return [_record(table, i, results[i], columns) for i in rows if i in results]

    if rf is not None:
        rf.start(records(final_rows))

    from tqdm.auto import tqdm

    if not todo:
        log.info("scan: all %d selected point(s) are already in %s", len(final_rows), output)
    # with toys the bar counts toys (2 * ntoys per point; a point without toys counts
    # its share when it is done)
    per_point = 2 * int(ntoys) if toys else 1
    bar = tqdm(
        total=len(todo) * per_point,
        disable=not progress or not todo,
        unit="toy" if toys else "pt",
        desc="scan",
        dynamic_ncols=True,
        smoothing=0.1,
    )
    counts = {"ok": 0, "failed": 0}
    runner = _Runner(executor, jobs, len(tasks)) if tasks else None
    reported: dict[int, int] = {}
    poll: Callable[[], None] | None = None
    if toys and runner is not None and runner.executor is None and (jobs or _default_jobs()) > 1:
        # the points run here (one task): their toys go to a pool of their own
        with pinned_threads():
            toy_pool = ProcessPoolExecutor(
                max_workers=jobs or _default_jobs(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
            )
        runner.owned.append(toy_pool)
        tasks = [t._replace(settings=t.settings._replace(toy_executor=toy_pool)) for t in tasks]
    if toys and progress and runner is not None:
        tasks, poll = _toy_progress(tasks, runner, bar, reported)
        runner.poll = poll
    computed = 0
    warned: set[str] = set()
    try:
        if runner is not None:
            for task, outcome in runner.run(tasks):
                if isinstance(outcome, BaseException):
                    outcome_rows = _failed_chunk(task, outcome)
                else:
                    outcome_rows = outcome
                _forward_warnings(task, outcome_rows, warned)
                if poll is not None:
                    poll()
                for row in outcome_rows:
                    i = row["row"]
                    results[i] = row
                    kind = row["status"] if row["status"] in ("ok", "no_signal") else "failed"
                    counts[kind] = counts.get(kind, 0) + 1
                if rf is not None:
                    rf.append(records([row["row"] for row in outcome_rows]))
                computed += len(outcome_rows)
                bar.set_postfix(counts, refresh=False)  # before update, which redraws
                bar.update(sum(per_point - reported.pop(r["row"], 0) for r in outcome_rows))
                if on_rows is not None:
                    on_rows(computed)
            runner.close()
    except KeyboardInterrupt as err:
        if runner is not None:
            runner.stop()
        bar.close()
        done = len([i for i in final_rows if i in results])
        if rf is not None:
            _finalize_after_failure(rf, records(final_rows))
        log.warning("scan interrupted: %d of %d point(s) done", done, len(final_rows))
        raise ScanInterrupted(done, len(final_rows), rf.path if rf else None) from err
    except BaseException:
        if runner is not None:
            runner.stop()
        bar.close()
        if rf is not None:
            _finalize_after_failure(rf, records(final_rows))
        raise
    bar.close()

    df = _frame(records(final_rows), columns)
    if rf is not None:
        rf.finalize(df.to_dict("records"))
    wall = time.perf_counter() - started
    df.attrs["summary"] = _summary(df, computed, wall)
    s = df.attrs["summary"]
    log.info(
        "scan done: %d point(s): %d ok, %d failed, %d no_signal; %d computed in %.1f s",
        s["points"],
        s["ok"],
        s["failed"],
        s["no_signal"],
        computed,
        wall,
    )
    return df


def _finalize_after_failure(rf: ResultFile, rows: list[dict[str, Any]]) -> None:
    """Sort the finished rows into the output; if even that fails (disk full), keep the journal.

    The journal holds every finished row (never a partial one), so ``resume`` recovers
    them; the error that stopped the scan is the one reported.
    """
    try:
        rf.finalize(rows)
    except ScanError as err:
        rf.close()
        log.warning("%s; the rows finished so far stay in %s", err, rf.journal)


def _forward_warnings(task: ChunkTask, rows: Sequence[dict[str, Any]], seen: set[str]) -> None:
    """Log once per scan the warnings a worker collected while computing a chunk."""
    source = task.background.source
    for row in rows:
        for message in row.pop("_warnings", ()):
            text = str(message)
            for prefix in ("workspace background-only workspace: ", "background-only workspace: "):
                if text.startswith(prefix):
                    text = f"{source}: {text[len(prefix) :]}"
            if text not in seen:
                seen.add(text)
                log.warning("%s", text)


def _poi_bounds(bkgonly: Mapping[str, Any], measurement: str | None) -> tuple[str, float, float]:
    """Name and bounds of the POI of the measurement used (normfactor default [0, 10])."""
    measurements = bkgonly.get("measurements") or []
    chosen = next(
        (m for m in measurements if isinstance(m, Mapping) and m.get("name") == measurement),
        measurements[0] if measurements and measurement is None else None,
    )
    config = chosen.get("config", {}) if isinstance(chosen, Mapping) else {}
    poi = config.get("poi") if isinstance(config, Mapping) else None
    low, high = 0.0, 10.0
    for par in config.get("parameters", []) if isinstance(config, Mapping) else []:
        if isinstance(par, Mapping) and par.get("name") == poi:
            bounds: Any = par.get("bounds")
            with contextlib.suppress(TypeError, ValueError, IndexError):
                low, high = float(bounds[0][0]), float(bounds[0][1])
    return str(poi), low, high


def _check_mu(grid: _Grid, mu: float, measurement: str | None) -> None:
    """Refuse a tested mu below the lower bound of the POI (no fit can reach it)."""
    poi, low, high = _poi_bounds(grid.bkgonly, measurement)
    source = grid.region or grid.bkg_source or grid.source
    if mu < low:
        raise cli_worded(
            ScanError(
                f"mu={mu:g} is below the lower bound {low:g} of the parameter of interest "
                f"{poi!r} ({source}: bounds [{low:g}, {high:g}]); test mu >= {low:g}"
            ),
            f"--mu {mu:g} is below the lower bound {low:g} of the parameter of interest "
            f"{poi!r} ({source}: bounds [{low:g}, {high:g}]); give --mu >= {low:g}",
        )
    if mu > high:
        log.warning(
            "mu=%g is above the upper bound %g of %r (%s): points where the fit cannot follow "
            "get status fit_failed",
            mu,
            high,
            poi,
            source,
        )


def _failed_chunk(task: ChunkTask, err: BaseException) -> list[dict[str, Any]]:
    """Rows for a chunk whose task raised: a background that does not compile stops the scan."""
    from likelihood.errors import LikelihoodError

    if isinstance(err, LikelihoodError):
        raise ScanError(
            f"{task.background.source}: the background-only workspace cannot be compiled: {err}"
        ) from err
    message = " ".join(
        f"the worker failed: {type(err).__name__}: {err}; a resumed scan computes this point "
        "again".split()
    )
    log.warning("chunk of %d point(s) failed: %s", len(task.points), message)
    rows = []
    for point in task.points:
        row: dict[str, Any] = {c: math.nan for c in (*CLS_COLUMNS, "mu_hat", "seconds")}
        if task.settings.upper_limit:
            row.update({c: math.nan for c in UPPER_LIMIT_COLUMNS})
        if task.settings.significance:
            row.update({c: math.nan for c in SIGNIFICANCE_COLUMNS})
        row.update(row=point.row, patch=point.name, status="error", message=message)
        rows.append(row)
    return rows


def _check_toy_options(calctype: str, ntoys: Any, seed: Any, toys_below_events: Any) -> bool:
    """Validate the toy options; True when the scan runs toys."""
    if calctype not in _CALCTYPES:
        raise ScanError(f"calctype must be one of {_CALCTYPES}, got {calctype!r}")
    if isinstance(ntoys, bool) or not isinstance(ntoys, int) or ntoys < 1:
        raise ScanError(f"ntoys must be a positive integer, got {ntoys!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ScanError(f"seed must be a non-negative integer, got {seed!r}")
    if toys_below_events is not None and not (
        isinstance(toys_below_events, (int, float)) and toys_below_events > 0
    ):
        raise ScanError(f"toys_below_events must be a positive number, got {toys_below_events!r}")
    return calctype == "toybased"


class _DirectProgress:
    """Toy progress of chunks computed in this process: straight to the bar."""

    def __init__(self, bar: Any, reported: dict[int, int]) -> None:
        self.bar = bar
        self.reported = reported

    def put(self, item: tuple[int, int]) -> None:
        row, n = item
        self.reported[row] = self.reported.get(row, 0) + n
        self.bar.update(n)


def _toy_progress(
    tasks: list[ChunkTask], runner: _Runner, bar: Any, reported: dict[int, int]
) -> tuple[list[ChunkTask], Callable[[], None] | None]:
    """Let the workers report finished toys: tasks with a progress queue and its poller.

    In this process the toys go straight to the bar; our own pool gets a manager queue
    that the parent drains while it waits; other executors (Dask) report per point.
    """
    if runner.executor is None:
        sink = _DirectProgress(bar, reported)
        return [t._replace(settings=t.settings._replace(progress=sink)) for t in tasks], None
    if runner.own_pool is None:
        return tasks, None
    import queue as queue_mod

    manager = multiprocessing.get_context("spawn").Manager()
    runner.owned.append(manager)
    q = manager.Queue()

    def poll() -> None:
        while True:
            try:
                row, n = q.get_nowait()
            except (queue_mod.Empty, OSError, EOFError):
                return
            reported[row] = reported.get(row, 0) + n
            bar.update(n)

    return [t._replace(settings=t.settings._replace(progress=q)) for t in tasks], poll


def write_results(results: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a result table (e.g. of :func:`best_expected`) atomically as CSV, JSON or JSONL.

    The format follows the suffix of ``path`` (``.csv``, ``.json``, ``.jsonl``), as the
    ``output`` of :func:`scan`: floats exactly (``repr``), NaN as an empty CSV field or
    JSON ``null``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    result_format(path)
    write_table(results, path)
    return Path(path)


# ---------------------------------------------------------------------------------------
# best expected region


_NON_LABEL = {
    "region",
    "patch",
    *VALUE_COLUMNS,
    *UPPER_LIMIT_COLUMNS,
    *SIGNIFICANCE_COLUMNS,
    *THEORY_COLUMNS,
    *TOY_COLUMNS,
    *XSEC_COLUMNS,
    *XSEC_LIMIT_COLUMNS,
}


def best_expected(results: pd.DataFrame) -> pd.DataFrame:
    """Per point, the region with the lowest expected CLs (as ATLAS combines regions).

    Parameters
    ----------
    results : pandas.DataFrame
        A scan table with a ``region`` column (several likelihoods of one analysis).

    Returns
    -------
    pandas.DataFrame
        One row per point (same label values; the patch name when there are no labels):
        the row of the region whose ``cls_exp`` is lowest among its rows with status "ok";
        when no region is "ok" for a point, its first row.  The ``region`` column says
        which region was taken.  Points in order of first appearance.
    """
    missing = {"patch", "status", "cls_exp"} - set(results.columns)
    if missing:
        raise ScanError(
            f"best_expected needs a scan result table; columns {sorted(missing)} are missing"
        )
    if "region" not in results.columns:
        log.info("best_expected: no region column (one likelihood); the table is unchanged")
        return results.reset_index(drop=True).copy()
    labels = [c for c in results.columns if c not in _NON_LABEL]
    keys = labels if labels and results[labels].notna().all().all() else ["patch"]
    df = results.reset_index(drop=True)
    ok = df["status"].eq("ok") & df["cls_exp"].notna()
    order = pd.DataFrame(
        {
            "_bad": ~ok,
            "_value": df["cls_exp"].where(ok, math.inf),
            "_pos": range(len(df)),
            "_group": df.groupby(keys, sort=False, dropna=False).ngroup(),
        }
    )
    best = order.sort_values(["_group", "_bad", "_value", "_pos"], kind="stable")
    chosen = best.drop_duplicates("_group", keep="first")["_pos"].to_numpy()
    out = df.iloc[chosen].reset_index(drop=True)
    out.attrs = {}
    return out
