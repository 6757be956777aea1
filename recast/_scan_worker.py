"""Worker side of :func:`recast.scan`: evaluate chunks of grid points.

This module runs inside the worker processes (a local process pool, or Dask workers on a
cluster).  It imports only the standard library, numpy and :mod:`likelihood` (no pandas),
so a fresh worker starts quickly.

A task (:class:`ChunkTask`) carries the background-only workspace as a compressed JSON
blob with its digest, the points of the chunk (name + JSON patch) and the settings.  Each
worker compiles the background once (:class:`likelihood.Background`) and keeps it in a
small per-process cache keyed by the digest, so every later chunk of the same likelihood
only applies its signal patches.  Within a chunk, each fit starts from the best fit of the
previous point when both models have the same parameters (neighbouring grid points).

A point never raises: every failure becomes a row with a ``status`` and a ``message``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple

from likelihood._threads import THREAD_ENV, pin_worker_threads, pinned_threads

__all__ = [
    "CLS_COLUMNS",
    "VALUE_COLUMNS",
    "UPPER_LIMIT_COLUMNS",
    "SIGNIFICANCE_COLUMNS",
    "THEORY_COLUMNS",
    "TOY_COLUMNS",
    "THREAD_ENV",
    "BackgroundPayload",
    "ScanSettings",
    "GridPoint",
    "ChunkTask",
    "init_worker",
    "default_jobs",
    "start_pool",
    "kill_pool",
    "workers_started_early",
    "take_early_pool",
]

log = logging.getLogger(__name__)

#: CLs columns, the expected band in pyhf's order (-2 sigma ... +2 sigma).
CLS_COLUMNS: tuple[str, ...] = (
    "cls_obs",
    "cls_exp_m2",
    "cls_exp_m1",
    "cls_exp",
    "cls_exp_p1",
    "cls_exp_p2",
)
#: Every per-point result column, in table order (without the upper-limit columns).
VALUE_COLUMNS: tuple[str, ...] = (*CLS_COLUMNS, "mu_hat", "status", "message", "seconds")
#: Upper-limit columns added by ``upper_limit=True``.
UPPER_LIMIT_COLUMNS: tuple[str, ...] = (
    "mu_ul_obs",
    "mu_ul_exp_m2",
    "mu_ul_exp_m1",
    "mu_ul_exp",
    "mu_ul_exp_p1",
    "mu_ul_exp_p2",
)
#: Discovery columns added by ``significance=True`` (q0, asymptotics; median expected).
SIGNIFICANCE_COLUMNS: tuple[str, ...] = ("p0_obs", "z_obs", "p0_exp", "z_exp")
#: Theory-band columns (observed CLs with the signal scaled by 1 +- its uncertainty).
THEORY_COLUMNS: tuple[str, ...] = ("cls_obs_up", "cls_obs_down")
#: Columns added by ``calctype="toybased"``: how the point was computed, the toys per
#: hypothesis, the statistical uncertainties of the CLs columns and the observed tail
#: probabilities (uncertainties 0 and ntoys 0 where asymptotics was used).
TOY_COLUMNS: tuple[str, ...] = (
    "calctype",
    "ntoys",
    *(f"{c}_err" for c in CLS_COLUMNS),
    "clsb_obs",
    "clb_obs",
)

# How many compiled backgrounds a worker keeps (a multi-region scan cycles through a few).
_CACHE_SIZE = 8
_BACKGROUNDS: OrderedDict[tuple[str, str], Any] = OrderedDict()
# The pid of the scan that started this worker (local pool only), watched between chunks.
_PARENT_PID: int | None = None
_PR_SET_PDEATHSIG = 1


class BackgroundPayload(NamedTuple):
    """The background-only workspace as sent to the workers.

    Attributes
    ----------
    digest : str
        sha256 digest of the workspace (:func:`likelihood.digest`): the worker cache key.
    blob : bytes
        zlib-compressed UTF-8 JSON of the workspace (cheap to pickle and ship).
    source : str
        Where it came from (file name or region), for messages.
    """

    digest: str
    blob: bytes
    source: str

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], digest: str, source: str) -> BackgroundPayload:
        """Pack a workspace (``spec``) whose digest is already known."""
        text = json.dumps(spec, separators=(",", ":"))
        return cls(digest, zlib.compress(text.encode("utf-8"), 6), source)

    def spec(self) -> dict[str, Any]:
        """The workspace, unpacked."""
        return json.loads(zlib.decompress(self.blob).decode("utf-8"))


class ScanSettings(NamedTuple):
    """What to compute at every point (the options of :func:`recast.scan`)."""

    mu: float = 1.0
    test_stat: str = "qtilde"
    expected: str = "aposteriori"
    upper_limit: bool = False
    measurement: str | None = None
    modifier_settings: Mapping[str, Any] | None = None
    significance: bool = False
    bracket: tuple[float, float] | None = None
    # toys (likelihood.hypotest_toys); progress: an object with put((row, n_toys)) or None
    calctype: str = "asymptotics"
    ntoys: int = 1000
    seed: int = 0
    toys_below_events: float | None = None
    progress: Any = None
    toy_executor: Any = None  # a pool for the toys of points computed in the parent


class GridPoint(NamedTuple):
    """One signal point: its row in the result table, its name and its JSON patch.

    ``theory`` is the relative cross-section uncertainty ``(delta_up, delta_down)`` of the
    point when known: the worker then adds ``cls_obs_up`` / ``cls_obs_down``, the observed
    CLs at ``mu * (1 + delta_up)`` and ``mu * (1 - delta_down)``.
    """

    row: int
    name: str
    ops: Sequence[Mapping[str, Any]]
    theory: tuple[float, float] | None = None


class ChunkTask(NamedTuple):
    """A unit of work: a few neighbouring points of one likelihood.

    ``core`` is the statistics core: ``None`` means the :mod:`likelihood` package.  Tests
    pass a picklable stand-in with the same names (``Background``, ``hypotest``,
    ``upper_limit``, ``NoPOIError``, ``InvalidPatch``) to drive the scan machinery alone.
    """

    background: BackgroundPayload
    points: tuple[GridPoint, ...]
    settings: ScanSettings
    core: Any = None


def init_worker(parent_pid: int | None = None) -> None:
    """Initializer of the local worker processes.

    Pins BLAS / OpenMP / numba to one thread (the parent also sets these variables before
    the workers start, so that they apply when numpy is first imported) and ignores
    SIGINT: Ctrl-C in a terminal reaches the whole process group, and the parent alone
    decides how to stop (cancel pending chunks, keep finished rows).

    With ``parent_pid`` (the scan process), the worker exits when its parent dies, even
    by SIGKILL: on Linux the kernel sends it SIGKILL (``prctl(PR_SET_PDEATHSIG)``), and
    everywhere a daemon thread and every chunk check that the parent is still there.

    Then loads every numba kernel of the fits and of the toys
    (:func:`likelihood.fit.warm_up`, :func:`likelihood.toys.warm_up`), and moves what the
    imports and kernels allocated out of the garbage collector's reach (``gc.freeze``):
    those objects live as long as the worker, and without it the interpreter's final
    collection of ~10^5 numba objects makes every worker take ~0.4 s to exit, which the
    end of a scan waits for.
    """
    global _PARENT_PID
    pin_worker_threads()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # every kernel a fit can reach (the L-BFGS-B fallback too) is loaded or compiled now,
    # never in the middle of the scan
    from likelihood.fit import warm_up
    from likelihood.toys import warm_up as warm_up_toys

    warm_up()
    warm_up_toys()
    gc.collect()
    gc.freeze()
    if parent_pid is None:
        return
    _PARENT_PID = parent_pid
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # no libc / prctl: the watcher thread remains
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _exit_if_orphaned()  # the parent may have died before prctl took effect
    threading.Thread(target=_watch_parent, name="recastkit-parent-watch", daemon=True).start()


def default_jobs() -> int:
    """Worker processes of a local pool by default: the usable cores."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ready() -> int:
    """A no-op task (the pid of the worker): submitting one starts a worker of a pool."""
    return os.getpid()


def start_pool(n_workers: int) -> ProcessPoolExecutor:
    """A local pool of ``n_workers`` spawned workers (:func:`init_worker`), started now.

    A :class:`~concurrent.futures.ProcessPoolExecutor` starts its workers one per task
    submitted; one no-op task per worker starts them all at once, so that their start-up
    (interpreter, numpy, numba, kernels: about a second each) runs while the caller still
    reads its inputs.
    """
    # "spawn": fresh interpreters that read the one-thread variables at start-up.
    with pinned_threads():
        pool = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(os.getpid(),),
        )
        with contextlib.suppress(Exception):  # a pool that breaks now fails its first task
            for _ in range(n_workers):
                pool.submit(ready)
    return pool


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a local pool now: cancel what has not started, terminate its workers."""
    processes: list[Any] = []
    for _ in range(10):  # the pool's manager thread may be changing the dict right now
        try:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            break
        except RuntimeError:
            time.sleep(0.01)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(timeout=5)


# (pool, workers) started by workers_started_early() that no scan has taken yet
_EARLY_POOLS: list[tuple[ProcessPoolExecutor, int]] = []


@contextlib.contextmanager
def workers_started_early(n_workers: int) -> Iterator[None]:
    """Start the local pool of the next :func:`recast.scan` in this block now.

    ``recastkit scan`` enters this before it imports pandas and reads the patchset (about
    a second for a 15 MB one), so that the workers start meanwhile.  The scan takes the
    pool (:func:`take_early_pool`) when it needs ``n_workers`` local workers; otherwise,
    or if no scan runs, the pool is stopped when the block ends.
    """
    entry = (start_pool(n_workers), n_workers)
    _EARLY_POOLS.append(entry)
    try:
        yield
    finally:
        if entry in _EARLY_POOLS:
            _EARLY_POOLS.remove(entry)
            kill_pool(entry[0])


def take_early_pool(n_workers: int) -> ProcessPoolExecutor | None:
    """The pool started by :func:`workers_started_early`, if it has ``n_workers`` workers.

    A pool of another size is stopped (the scan starts the one it needs, or computes in
    this process).  The caller owns the pool returned.
    """
    if not _EARLY_POOLS:
        return None
    pool, size = _EARLY_POOLS.pop()
    if size == n_workers:
        return pool
    kill_pool(pool)
    return None


def _exit_if_orphaned() -> None:
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        os._exit(1)  # nobody will read our results; do not linger as an orphan


def _watch_parent() -> None:
    while True:
        time.sleep(1.0)
        _exit_if_orphaned()


class _Collector(logging.Handler):
    """Keeps the warnings of :mod:`likelihood` for the parent; passes the rest on."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            message = _one_line(record.getMessage())
            if message not in self.messages:
                self.messages.append(message)
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextlib.contextmanager
def _collect_warnings() -> Any:
    """Collect the warnings logged by :mod:`likelihood` (the parent says each once per scan)."""
    logger = logging.getLogger("likelihood")
    collector = _Collector()
    propagate = logger.propagate
    logger.addHandler(collector)
    logger.propagate = False
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)
        logger.propagate = propagate


def _core(task: ChunkTask) -> Any:
    return task.core if task.core is not None else importlib.import_module("likelihood")


def _background(task: ChunkTask, core: Any) -> Any:
    """The compiled background of ``task``, from this process's cache when possible."""
    settings = task.settings
    key = (
        task.background.digest,
        json.dumps([settings.measurement, settings.modifier_settings], sort_keys=True),
    )
    bkg = _BACKGROUNDS.get(key)
    if bkg is not None:
        _BACKGROUNDS.move_to_end(key)
        return bkg
    start = time.perf_counter()
    bkg = core.Background(
        task.background.spec(),
        measurement=settings.measurement,
        modifier_settings=(
            dict(settings.modifier_settings) if settings.modifier_settings is not None else None
        ),
    )
    _BACKGROUNDS[key] = bkg
    while len(_BACKGROUNDS) > _CACHE_SIZE:
        _BACKGROUNDS.popitem(last=False)
    log.debug(
        "pid %s compiled background %s (%s) in %.2f s",
        os.getpid(),
        task.background.source,
        task.background.digest[:12],
        time.perf_counter() - start,
    )
    return bkg


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _empty_row(point: GridPoint, settings: ScanSettings) -> dict[str, Any]:
    row: dict[str, Any] = {"row": point.row, "patch": point.name}
    for col in (*CLS_COLUMNS, "mu_hat"):
        row[col] = math.nan
    if settings.upper_limit:
        for col in UPPER_LIMIT_COLUMNS:
            row[col] = math.nan
    if settings.significance:
        for col in SIGNIFICANCE_COLUMNS:
            row[col] = math.nan
    if point.theory is not None:
        for col in THEORY_COLUMNS:
            row[col] = math.nan
    if settings.calctype == "toybased":
        row.update({col: math.nan for col in TOY_COLUMNS})
        row["calctype"] = ""
    row["status"] = "error"
    row["message"] = ""
    row["seconds"] = math.nan
    return row


def point_seed(seed: int, name: str) -> int:
    """Seed of the toys of the point ``name`` in a scan with ``seed`` (distinct per point)."""
    return int(seed) * 2**32 + zlib.crc32(name.encode("utf-8"))


def _toys(
    core: Any, model: Any, point: GridPoint, settings: ScanSettings, asym: Any, row: Any
) -> None:
    """Replace the asymptotic CLs of ``row`` by toys, unless the point does not need them."""
    events = settings.toys_below_events
    if events is not None and len(core.low_count_bins(model, events=events)) == 0:
        row.update({f"{c}_err": 0.0 for c in CLS_COLUMNS})
        row.update(calctype="asymptotics", ntoys=0, clsb_obs=float(asym.clsb_obs))
        row["clb_obs"] = float(asym.clb_obs)
        return
    queue = settings.progress

    def report(n: int) -> None:
        queue.put((point.row, n))

    res = core.hypotest_toys(
        model,
        settings.mu,
        ntoys=settings.ntoys,
        seed=point_seed(settings.seed, point.name),
        test_stat=settings.test_stat,
        init=asym.pars_free,
        executor=settings.toy_executor,
        progress=report if queue is not None else None,
    )
    row["cls_obs"] = float(res.cls_obs)
    for col, value in zip(CLS_COLUMNS[1:], res.cls_exp, strict=True):
        row[col] = float(value)
    row["cls_obs_err"] = float(res.cls_obs_err)
    for col, value in zip(CLS_COLUMNS[1:], res.cls_exp_err, strict=True):
        row[f"{col}_err"] = float(value)
    row.update(calctype="toybased", ntoys=int(res.ntoys), clsb_obs=float(res.clsb_obs))
    row["clb_obs"] = float(res.clb_obs)
    row["mu_hat"] = float(res.mu_hat)
    row["status"] = str(res.status)
    row["message"] = _one_line(res.message)


def _extra_failed(row: dict[str, Any], what: str, err: Exception) -> None:
    """An extra computation of a point (upper limit, significance, theory band) raised:
    the row keeps its CLs values and gets status ``error``."""
    log.debug("%s of %s failed", what, row["patch"], exc_info=True)
    row["status"] = "error"
    row["message"] = _one_line(f"{what}: {type(err).__name__}: {err}")


def _extra_status(row: dict[str, Any], what: str, status: str, message: str) -> None:
    """The first extra computation that is not ``ok`` sets the row's status and message."""
    if status != "ok" and row["status"] == "ok":
        row["status"] = str(status)
        row["message"] = _one_line(f"{what}: {message}")


def _upper_limit(core: Any, model: Any, settings: ScanSettings, row: dict[str, Any]) -> None:
    """Add the upper limits to ``row``; a failure keeps the CLs values and sets the status."""
    try:
        if row.get("calctype") == "toybased":
            ul = core.upper_limit_toys(
                model,
                ntoys=settings.ntoys,
                seed=point_seed(settings.seed, row["patch"]),
                test_stat=settings.test_stat,
                executor=settings.toy_executor,
            )
        else:
            extra = {} if settings.bracket is None else {"bracket": settings.bracket}
            ul = core.upper_limit(
                model, test_stat=settings.test_stat, expected=settings.expected, **extra
            )
    except Exception as err:
        _extra_failed(row, "upper limit", err)
        return
    row["mu_ul_obs"] = float(ul.mu_ul_obs)
    for col, value in zip(UPPER_LIMIT_COLUMNS[1:], ul.mu_ul_exp, strict=True):
        row[col] = float(value)
    _extra_status(row, "upper limit", ul.status, ul.message)


def _significance(
    core: Any, model: Any, settings: ScanSettings, row: dict[str, Any], init: Any
) -> None:
    """Add the discovery columns to ``row``; a failure keeps the CLs values, sets the status."""
    try:
        d = core.discovery(model, expected=settings.expected, init=init)
    except Exception as err:
        _extra_failed(row, "significance", err)
        return
    row["p0_obs"] = float(d.p0_obs)
    row["z_obs"] = float(d.z_obs)
    row["p0_exp"] = float(d.p0_exp[2])
    row["z_exp"] = float(d.z_exp[2])
    _extra_status(row, "significance", d.status, d.message)


def _theory_band(
    model: Any, settings: ScanSettings, theory: tuple[float, float], init: Any, row: dict[str, Any]
) -> None:
    """``cls_obs_up`` / ``cls_obs_down``: observed CLs with the signal scaled by 1 +- delta."""
    from likelihood.theory import observed_cls

    up, down = theory
    mus = [settings.mu * (1.0 + up), settings.mu * (1.0 - down)]
    wanted = [i for i, d in enumerate((up, down)) if math.isfinite(d)]
    if not wanted:
        return
    try:
        res = observed_cls(
            model,
            [mus[i] for i in wanted],
            test_stat=settings.test_stat,
            expected=settings.expected,
            init=init,
        )
    except Exception as err:
        _extra_failed(row, "theory band", err)
        return
    for i, value in zip(wanted, res.cls_obs, strict=True):
        row[THEORY_COLUMNS[i]] = float(value)
    _extra_status(row, "theory band", res.status, res.message)


def _evaluate_point(
    bkg: Any, core: Any, point: GridPoint, settings: ScanSettings, warm: tuple[Any, Any] | None
) -> tuple[dict[str, Any], tuple[Any, Any] | None]:
    """One grid point -> (result row, warm start for the next point or None)."""
    start = time.perf_counter()
    row = _empty_row(point, settings)
    next_warm = None
    try:
        model = bkg.with_patch(point.ops, name=point.name)
        names = tuple(model.parameter_names)
        init = warm[1] if warm is not None and warm[0] == names else None
        res = core.hypotest(
            model,
            settings.mu,
            test_stat=settings.test_stat,
            expected=settings.expected,
            init=init,
        )
        row["cls_obs"] = float(res.cls_obs)
        for col, value in zip(CLS_COLUMNS[1:], res.cls_exp, strict=True):
            row[col] = float(value)
        row["mu_hat"] = float(res.mu_hat)
        row["status"] = str(res.status)
        row["message"] = _one_line(res.message)
        if res.status == "ok" and res.pars_free is not None:
            next_warm = (names, res.pars_free)
        if settings.calctype == "toybased":
            _toys(core, model, point, settings, res, row)
        if settings.upper_limit:
            _upper_limit(core, model, settings, row)
        if settings.significance:
            _significance(core, model, settings, row, init)
        if point.theory is not None and res.status == "ok":
            _theory_band(model, settings, point.theory, res.pars_free, row)
    except core.NoPOIError as err:
        row["status"] = "no_signal"
        row["message"] = _one_line(
            "the patch adds no signal (the patched model has no parameter of interest), "
            f"so the point is not sensitive: {err}"
        )
    except getattr(core, "InvalidSpecification", core.InvalidPatch) as err:
        # the background compiled, so an invalid specification here is the patch's: it
        # does not apply (InvalidPatch) or the patched workspace is invalid
        # (InvalidWorkspace, with the JSON path and the value)
        row["status"] = "invalid_patch"
        row["message"] = _one_line(str(err))
    except ArithmeticError as err:  # ZeroDivisionError, OverflowError: p-values underflow
        log.debug("point %s: arithmetic failure", point.name, exc_info=True)
        row["status"] = "fit_failed"
        row["message"] = _one_line(
            f"the CLs arithmetic broke down at mu={settings.mu:g} ({err}): the tested signal "
            "is far beyond what the data allow, so the p-values underflow; test a smaller mu "
            "or check the signal yields"
        )
    except Exception as err:  # a failing point never stops the scan
        log.debug("point %s failed", point.name, exc_info=True)
        row["status"] = "error"
        row["message"] = _one_line(f"{type(err).__name__}: {err}")
    row["seconds"] = time.perf_counter() - start
    return row, next_warm


def _evaluate_chunk(task: ChunkTask) -> list[dict[str, Any]]:
    """Evaluate every point of a chunk; the worker entry point.

    Parameters
    ----------
    task : ChunkTask
        The background payload, the points (ordered so that neighbours follow each other)
        and the settings.

    Returns
    -------
    list of dict
        One row per point, with keys ``row``, ``patch``, the CLs columns, ``mu_hat``,
        ``status``, ``message``, ``seconds`` (and the upper-limit columns when asked); the
        first row may carry ``_warnings``, the warnings logged while computing the chunk
        (the parent logs each once per scan).

    Raises
    ------
    likelihood.errors.LikelihoodError
        Only when the background-only workspace itself cannot be compiled; every failure
        of a point is reported in its row instead.
    """
    _exit_if_orphaned()
    core = _core(task)
    start = time.perf_counter()
    with _collect_warnings() as warnings:
        # A background that does not compile is an error of the whole scan, not of a
        # point: it propagates, and the parent stops the scan with a clear message.
        bkg = _background(task, core)
        setup = time.perf_counter() - start
        rows = []
        warm: tuple[Any, Any] | None = None
        for point in task.points:
            row, warm = _evaluate_point(bkg, core, point, task.settings, warm)
            rows.append(row)
    if rows:
        # the one-off compilation is part of the cost of the first point
        rows[0]["seconds"] += setup
        if warnings:
            rows[0]["_warnings"] = list(warnings)
    return rows
