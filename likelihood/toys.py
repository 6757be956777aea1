"""Toy-based (pseudo-experiment) CLs, with pyhf 0.7.6's ``ToyCalculator`` conventions.

Equations and conventions are in ``docs/likelihood.md`` (section "Toy-based CLs"):

* test statistic on any data set ``x`` (arXiv:1007.1727 eq. 14 / 16 / 12):
  ``t = max(-2 ln L(mu, theta_hat_hat) + 2 ln L(mu_hat, theta_hat), 0)``; ``q_mu`` /
  ``qtilde_mu`` are ``t`` with ``q = 0`` when ``mu_hat > mu`` (tilde: the POI bounded at 0
  by the model's bounds); ``q0`` is ``t`` at ``mu = 0`` with ``q0 = 0`` when ``mu_hat <= 0``.
* pseudo-experiments of the main data (Poisson of the expected counts) AND the auxiliary
  data (Gaussian constraints: normal around the generating parameter with its width;
  Poisson constraints (shapesys): Poisson of ``tau * gamma``), generated at the
  conditional best fit to the *observed* data at ``mu`` (signal + background) and at
  ``mu = 0`` (background only); for ``q0`` the null is ``mu = 0`` and the alternative ``mu``.
* p-values as pyhf's ``EmpiricalDistribution.pvalue``: the fraction of toys with
  ``q >= q_obs``; ``CLs = CLs+b / CLb``.
* expected band as pyhf's ``ToyCalculator.expected_pvalues``: CLs of every
  background-only toy (its own ``q`` taken as observed), then the 2.275, 15.87, 50, 84.13,
  97.72 percentiles (numpy's default linear interpolation), ascending (-2 sigma first).

Statistical uncertainties: binomial for the observed p-values (``sqrt(p (1 - p) / N)``,
propagated to CLs = CLs+b / CLb with independent samples), bootstrap (resampling both toy
samples) for the expected band.

Reproducibility: the toys of one hypothesis are cut into blocks of ``block_size``; block
``k`` of hypothesis ``h`` draws from ``numpy.random.Generator(PCG64(SeedSequence(seed)
.spawn(3)[h].spawn(n_blocks)[k]))``, whatever worker runs it, so the same seed gives
bit-identical results for any number of workers.

The toys' fits are :func:`likelihood.fit` (the numba Newton kernel), each warm-started at
the generating point; generating a block is a handful of vectorised numpy draws (a few
microseconds per toy, against milliseconds per fit), so there is no separate numba kernel
for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from likelihood import _minima, _toykernels
from likelihood import cls as _cls
from likelihood._minima import global_fit
from likelihood._threads import pin_worker_threads, pinned_threads
from likelihood.errors import LikelihoodError, NoPOIError
from likelihood.fit import EDM_TOLERANCE, MAX_STEP, Box, fit
from likelihood.model import Model, as_f8, as_i8, lgamma1, poisson_saturated

__all__ = [
    "hypotest_toys",
    "upper_limit_toys",
    "ToyCLsResult",
    "empirical_pvalue",
    "low_count_bins",
    "TEST_STATS",
    "BAND_PERCENTILES",
    "warm_up",
]

log = logging.getLogger(__name__)

#: test statistics of :func:`hypotest_toys`
TEST_STATS: tuple[str, ...] = ("qtilde", "q", "q0")
#: percentiles of the expected band (-2, -1, 0, +1, +2 sigma of the normal), as pyhf
BAND_PERCENTILES: tuple[float, ...] = (2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681)
#: a fitted twice-NLL this much below another fit's is a better minimum, not rounding
_NLL_TOL = 1e-6
#: test statistics closer than this to the observed one count as ties (>=)
_TIE_TOL = 1e-6
#: Newton iterations of a toy fit (as likelihood.fit)
_MAX_ITER = 300


class ToyCLsResult(NamedTuple):
    """Result of a toy-based hypothesis test at one value of mu.

    For ``test_stat="q0"`` the ``cls_*`` fields hold the discovery p-value ``p0`` (pyhf
    returns CLs+b there): ``cls_obs == clsb_obs == p0``, ``cls_exp`` the band of ``p0``.

    Attributes
    ----------
    cls_obs : float
        Observed CLs = CLs+b / CLb.
    cls_exp : tuple of 5 floats
        Expected CLs at -2, -1, 0, +1, +2 sigma (ascending, as pyhf's ``CLs_exp``).
    clsb_obs, clb_obs : float
        Observed CLs+b and CLb: fractions of signal + background and of background-only
        toys with ``q >= q_obs``.
    cls_obs_err : float
        Statistical (binomial, propagated) uncertainty of ``cls_obs``.
    cls_exp_err : tuple of 5 floats
        Statistical (bootstrap) uncertainty of each ``cls_exp``.
    clsb_obs_err, clb_obs_err : float
        Binomial uncertainties ``sqrt(p (1 - p) / ntoys)``.
    teststat_obs : float
        Observed test statistic.
    mu_hat : float
        Best-fit POI of the free fit to the observed data.
    ntoys : int
        Toys per hypothesis.
    n_failed : int
        Toy fits (of both hypotheses) that did not converge or ended with a negative
        expected rate; their test statistic is kept (at the best point the fit found).
    seed : int
        The seed (given, or drawn when ``seed=None``): pass it again to reproduce.
    status : str
        ``"ok"`` or ``"fit_failed"`` (a fit to the observed data failed, more than
        ``max_failed_fraction`` of the toy fits failed, or CLb is 0).
    message : str
        What went wrong, or notes (e.g. no toy beyond the observed value), or "".
    pars_free : ndarray (n_pars,)
        Best fit to the observed data (a good ``init`` for a neighbouring point).
    teststat_sb, teststat_b : ndarray (ntoys,)
        The sampled test statistics of the two hypotheses (for ``q0``: mu = 0, then mu).
    """

    cls_obs: float
    cls_exp: tuple[float, float, float, float, float]
    clsb_obs: float
    clb_obs: float
    cls_obs_err: float
    cls_exp_err: tuple[float, float, float, float, float]
    clsb_obs_err: float
    clb_obs_err: float
    teststat_obs: float
    mu_hat: float
    ntoys: int
    n_failed: int
    seed: int
    status: str
    message: str
    pars_free: np.ndarray
    teststat_sb: np.ndarray
    teststat_b: np.ndarray


class _BlockTask(NamedTuple):
    """One block of toys of one hypothesis (picklable: runs in a worker process)."""

    model: Model
    gen: np.ndarray
    mu: float
    test_stat: str
    seed: np.random.SeedSequence
    size: int
    restart: bool = True
    mirror: bool = True


class _BlockResult(NamedTuple):
    teststat: np.ndarray
    n_failed: int  # toys whose fits failed in Python too
    n_python: int  # toys that went back to Python (a numba fit did not converge)


# ---------------------------------------------------------------------------------------
# test statistics
def _physical(model: Model, pars: np.ndarray) -> bool:
    """True when every expected main-bin rate at ``pars`` is >= 0."""
    return bool(np.all(model.expected_actualdata(pars) >= 0.0))


def _toy_fit(
    model: Model,
    data: np.ndarray,
    aux: np.ndarray,
    starts: Sequence[np.ndarray],
    fixed_poi: float | None,
) -> tuple[Any, bool]:
    """The start policy's lowest fit (:func:`likelihood._minima.global_fit`: Newton, then
    L-BFGS-B, from every start, and the mirrored restarts) and whether it failed (not
    converged, or a negative expected rate at its best fit)."""
    r = global_fit(model, list(starts), data=data, auxdata=aux, fixed_poi=fixed_poi)
    return r, (not r.success or not math.isfinite(r.twice_nll) or not _physical(model, r.pars))


def _teststat(
    model: Model,
    data: np.ndarray,
    aux: np.ndarray,
    gen: np.ndarray,
    mu: float,
    test_stat: str,
    restart: bool = True,
) -> tuple[float, bool]:
    """Test statistic of one toy in Python, and whether one of its fits failed.

    The fallback of the numba toy loop (:func:`likelihood._toykernels.fit_toys`) for the
    toys whose Newton fits it could not converge: the fits of the start policy
    (:func:`likelihood._minima.global_fit`, with the L-BFGS-B fallback) from the
    generating point and the model's initial values, the conditional one also from the
    free minimum.  The conditional fit is skipped when the statistic is 0 by definition
    (``mu_hat > mu`` for q / qtilde, ``mu_hat <= 0`` for q0, as pyhf's ``where``).
    """
    poi = model.poi_index
    assert poi is not None
    starts = [gen, model.init] if restart else [gen]
    free, failed = _toy_fit(model, data, aux, starts, None)
    mu_hat = float(free.pars[poi])
    if (test_stat == "q0" and mu_hat <= mu) or (test_stat != "q0" and mu_hat > mu):
        return 0.0, failed
    cond, cond_failed = _toy_fit(
        model, data, aux, [_cls._with_poi(st, poi, mu) for st in [*starts, free.pars]], mu
    )
    failed = failed or cond_failed
    nll_free = free.twice_nll
    if math.isfinite(cond.twice_nll) and cond.twice_nll < nll_free - _NLL_TOL:
        # the free fit missed the minimum (the conditional one is lower): refit from there
        again = fit(model, data=data, auxdata=aux, init=cond.pars)
        if math.isfinite(again.twice_nll) and again.twice_nll < nll_free:
            nll_free = again.twice_nll
            mu_hat = float(again.pars[poi])
            if (test_stat == "q0" and mu_hat <= mu) or (test_stat != "q0" and mu_hat > mu):
                return 0.0, failed
    if not (math.isfinite(cond.twice_nll) and math.isfinite(nll_free)):
        return math.nan, True
    return max(cond.twice_nll - nll_free, 0.0), failed


def _draw_block(
    model: Model, gen: np.ndarray, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Main data (size, n_bins) and auxdata (size, n_aux) generated at ``gen``.

    Main bins: Poisson of the expected rates.  Auxdata of Gaussian constraints: normal
    around the generating parameter with the constraint's width; of Poisson constraints
    (shapesys): Poisson of ``tau * gamma`` (= the expected auxdata), as pyhf's
    ``Model.make_pdf(pars).sample``.
    """
    cm = model.compiled
    lam = np.maximum(model.expected_actualdata(gen), 0.0)
    data = rng.poisson(lam, size=(size, lam.shape[0])).astype(np.float64)
    kind = np.asarray(cm.aux_kind)
    aux = np.empty((size, kind.shape[0]))
    gauss = np.flatnonzero(kind == 0)
    pois = np.flatnonzero(kind == 1)
    if gauss.size:
        loc = gen[np.asarray(cm.aux_par)[gauss]]
        scale = np.asarray(cm.aux_scale)[gauss]
        aux[:, gauss] = loc + scale * rng.standard_normal((size, gauss.size))
    if pois.size:
        rate = np.maximum(model.expected_auxdata(gen)[pois], 0.0)
        aux[:, pois] = rng.poisson(rate, size=(size, pois.size))
    return data, aux


def _boxes(model: Model, gen: np.ndarray, mu: float) -> tuple[Box, Box]:
    """The scaled coordinates (:class:`likelihood.fit.Box`) of a toy's free fit and of
    its fit with the POI at ``mu``, as :func:`likelihood.fit.fit` builds them."""
    poi = model.poi_index
    assert poi is not None
    out = []
    for fix_poi in (False, True):
        fix = model.fixed.copy()
        base = as_f8(np.clip(gen, model.bounds[:, 0], model.bounds[:, 1]))
        base[model.fixed] = model.init[model.fixed]
        if fix_poi:
            fix[poi] = True
            base[poi] = mu
        free = as_i8(np.flatnonzero(~fix))
        w = as_f8(model.widths[free])
        lo = as_f8(model.bounds[free, 0] / w)
        hi = as_f8(model.bounds[free, 1] / w)
        out.append(Box(free, w, base, lo, hi))
    return out[0], out[1]


def _policy(model: Model, mirror: bool) -> _toykernels.StartPolicy:
    """The toy fits' start policy: :mod:`likelihood._minima`'s constants."""
    return _toykernels.StartPolicy(
        bool(mirror),
        as_f8(_minima.evenness(model)),
        float(_minima.PULL_MIN),
        float(_minima.EVEN_MIN),
        int(_minima.N_CANDIDATES),
        int(_minima.SCREEN_ITERS),
        int(_minima.MAX_ROUNDS),
        float(_minima.AGREE),
    )


def _fit_block(
    model: Model,
    gen: np.ndarray,
    mu: float,
    test_stat: str,
    data: np.ndarray,
    aux: np.ndarray,
    restart: bool,
    mirror: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Test statistics of the toys ``data`` / ``aux`` (numba, :func:`fit_toys`) and the
    per-toy status of the numba fits (0: every fit converged)."""
    poi = model.poi_index
    assert poi is not None
    box_free, box_cond = _boxes(model, gen, mu)
    gen0 = box_free.base
    starts = np.ascontiguousarray(np.stack([gen0, model.init]) if restart else gen0[None, :])
    # the conditional fits: from the free minimum, and with the start policy also from
    # the free fits' starts (without the initial values: 13% fewer iterations, but one
    # 1Lbb toy in 200 with q off by 0.01, docs/toys.md)
    cond_starts = starts if restart else np.zeros((0, gen0.shape[0]))
    data = as_f8(data)
    aux = as_f8(aux)
    q, status, *_rest = _toykernels.fit_toys(
        model.kernel_model,
        data,
        lgamma1(data),
        aux,
        lgamma1(aux),
        poisson_saturated(aux),
        box_free,
        box_cond,
        starts,
        cond_starts,
        int(poi),
        float(mu),
        test_stat == "q0",
        _MAX_ITER,
        EDM_TOLERANCE,
        MAX_STEP,
        _NLL_TOL,
        _policy(model, mirror),
    )
    return q, status


def _run_block(task: _BlockTask) -> _BlockResult:
    """Generate and fit one block of toys (the worker entry point).

    Every toy is fitted in numba (:func:`_fit_block`); a toy whose numba fits did not
    all converge is fitted again in Python with the L-BFGS-B fallback
    (:func:`_teststat`), and counted in ``n_failed`` only if that fails too.
    """
    rng = np.random.Generator(np.random.PCG64(task.seed))
    data, aux = _draw_block(task.model, task.gen, rng, task.size)
    out, status = _fit_block(
        task.model, task.gen, task.mu, task.test_stat, data, aux, task.restart, task.mirror
    )
    n_failed = 0
    redo = np.flatnonzero(status != 0)
    for i in redo:
        q, failed = _teststat(
            task.model,
            np.ascontiguousarray(data[i]),
            np.ascontiguousarray(aux[i]),
            task.gen,
            task.mu,
            task.test_stat,
            True,
        )
        out[i] = q
        n_failed += int(failed)
    return _BlockResult(out, n_failed, int(redo.size))


def warm_up() -> None:
    """Compile (or load from numba's cache) the toy kernels, for both start policies.

    Called when a toy worker or a scan worker starts (after
    :func:`likelihood.fit.warm_up`), so that no toy kernel is compiled in the middle of
    a scan.  A few toys of the fits' warm-up workspace (every modifier type).
    """
    from likelihood.fit import _warm_up_spec
    from likelihood.model import compile as compile_model

    model = compile_model(_warm_up_spec(), validate=False)
    rng = np.random.Generator(np.random.PCG64(0))
    data, aux = _draw_block(model, model.init, rng, 2)
    data[0, 0] = 0.0  # an empty bin
    for restart in (False, True):
        _fit_block(model, model.init, 1.0, "qtilde", data, aux, restart, restart)


def _init_worker() -> None:
    pin_worker_threads()
    warm_up()


def _run_blocks(
    tasks: Sequence[_BlockTask],
    workers: int,
    executor: Executor | None,
    progress: Callable[[int], None] | None,
) -> list[_BlockResult]:
    """Run every block (here, on ``executor``, or on a pool of ``workers`` processes)."""
    results: list[_BlockResult | None] = [None] * len(tasks)
    if executor is None and workers <= 1:
        for k, task in enumerate(tasks):
            results[k] = _run_block(task)
            if progress is not None:
                progress(task.size)
        return [r for r in results if r is not None]
    own: ProcessPoolExecutor | None = None
    if executor is None:
        with pinned_threads():
            own = ProcessPoolExecutor(
                max_workers=min(workers, len(tasks)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        executor = own
    try:
        with pinned_threads() if own is not None else contextlib.nullcontext():
            futures = {executor.submit(_run_block, task): k for k, task in enumerate(tasks)}
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            k = futures[fut]
            results[k] = fut.result()
            if progress is not None:
                progress(tasks[k].size)
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------------------------
# empirical distributions
def empirical_pvalue(samples: Any, value: Any, *, tolerance: float = 0.0) -> np.ndarray:
    """Fraction of ``samples`` with ``sample >= value - tolerance``.

    With ``tolerance=0`` this is pyhf's ``EmpiricalDistribution.pvalue``.
    :func:`hypotest_toys` uses a tolerance of 1e-6 (fits determine twice-NLL to ~1e-8): a
    discrete statistic takes the observed value exactly on many toys (e.g. every toy
    with 0 events when 0 are observed), and rounding must not decide those ties.

    Parameters
    ----------
    samples : array_like (n,)
        Sampled test statistics.
    value : float or array_like (m,)
        Test statistic value(s).
    tolerance : float
        Samples this much below ``value`` still count as at least as extreme.

    Returns
    -------
    ndarray, shape of ``value``
    """
    s = np.sort(np.asarray(samples, dtype=np.float64))
    v = np.asarray(value, dtype=np.float64)
    return (s.shape[0] - np.searchsorted(s, v - tolerance, side="left")) / s.shape[0]


def _band(q_sb: np.ndarray, q_b: np.ndarray, discovery: bool) -> np.ndarray:
    """Expected band (5,) from the background-only toys (pyhf's ``expected_pvalues``)."""
    clsb = empirical_pvalue(q_sb, q_b, tolerance=_TIE_TOL)
    if discovery:
        values = clsb
    else:
        values = clsb / empirical_pvalue(q_b, q_b, tolerance=_TIE_TOL)
    return np.percentile(values, BAND_PERCENTILES)


def _binomial(p: float, n: int) -> float:
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


# ---------------------------------------------------------------------------------------
# public functions
def _check(model: Model, mu: float, ntoys: int, test_stat: str, workers: int) -> int:
    if model.poi_index is None:
        which = f"model {model.name!r}" if model.name else "the model"
        raise NoPOIError(
            f"{which} has no parameter of interest (measurement {model.measurement!r}): the "
            "patch adds no signal; nothing to test"
        )
    if test_stat not in TEST_STATS:
        raise LikelihoodError(f"test_stat {test_stat!r} is not supported; use one of {TEST_STATS}")
    if not isinstance(ntoys, (int, np.integer)) or isinstance(ntoys, bool) or ntoys < 1:
        raise LikelihoodError(f"ntoys must be a positive integer, got {ntoys!r}")
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise LikelihoodError(f"workers must be a positive integer, got {workers!r}")
    if not math.isfinite(mu):
        raise LikelihoodError(f"mu must be finite, got {mu!r}")
    return model.poi_index


def _seed_int(seed: int | None) -> int:
    if seed is None:
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        return entropy
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LikelihoodError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def hypotest_toys(
    model: Model,
    mu: float = 1.0,
    *,
    ntoys: int = 2000,
    seed: int | None = None,
    test_stat: str = "qtilde",
    workers: int = 1,
    executor: Executor | None = None,
    init: Any = None,
    block_size: int = 50,
    bootstrap: int = 200,
    max_failed_fraction: float = 0.01,
    restart: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ToyCLsResult:
    """Toy-based CLs of the hypothesis ``mu`` (pyhf's ``hypotest(calctype="toybased")``).

    Parameters
    ----------
    model : Model
        A model with a POI.
    mu : float
        Tested signal strength (for ``q0``: the alternative that generates the second
        sample; the null is ``mu = 0``; pyhf uses 1).
    ntoys : int
        Pseudo-experiments per hypothesis (pyhf's ``ntoys``).
    seed : int, optional
        Seed of the toys (``numpy.random.SeedSequence`` entropy).  The same seed gives
        bit-identical results for any ``workers``.  Default: fresh entropy, returned in
        the result's ``seed``.
    test_stat : {"qtilde", "q", "q0"}
        arXiv:1007.1727 eq. 16, 14, 12; the POI's bounds are the model's, as pyhf.
    workers : int
        Processes that share the toys (a spawn process pool with one BLAS thread each);
        1 runs here.  Ignored when ``executor`` is given.
    executor : concurrent.futures.Executor, optional
        Where to run the blocks of toys (e.g. a pool kept across calls).  Not shut down.
    init : array_like (n_pars,), optional
        An extra starting point of the fits to the observed data (as :func:`hypotest`).
    block_size : int
        Toys per block (the unit of seeding and of work); part of what fixes the random
        streams, so keep it to reproduce a result.
    bootstrap : int
        Bootstrap replicas for the uncertainty of the expected band (0: none, NaN).
    max_failed_fraction : float
        Status ``"fit_failed"`` when more than this fraction of the toy fits fails.
    restart : bool
        The start policy of the toy fits (default): from the generating point AND the
        model's initial values, plus the mirrored restarts of
        :func:`likelihood._minima.global_fit`, keeping the lowest minimum.  False: from
        the generating point only, about 3x faster, but 5% of sbottom RegionA toys then
        end in a higher local minimum (docs/toys.md).
    progress : callable, optional
        Called with the number of toys just finished (e.g. ``tqdm.update``).

    Returns
    -------
    ToyCLsResult

    Raises
    ------
    NoPOIError
        The model has no POI.
    LikelihoodError
        Invalid options.
    """
    mu = float(mu)
    poi = _check(model, mu, ntoys, test_stat, workers)
    if not isinstance(block_size, int) or block_size < 1:
        raise LikelihoodError(f"block_size must be a positive integer, got {block_size!r}")
    seed_i = _seed_int(seed)
    discovery = test_stat == "q0"
    mu_null = 0.0 if discovery else mu
    mu_alt = mu if discovery else 0.0
    msgs: list[str] = []

    # --- fits to the observed data: test statistic and generating points ---------------
    nominal = model.init.copy()
    starts = [nominal, *_cls._warm(model, init)]
    free = global_fit(model, starts)
    if not free.success:
        msgs.append(f"free fit: {free.message}")
    gen_fits = []
    for m in (mu_null, mu_alt):
        f = global_fit(
            model,
            [_cls._with_poi(nominal, poi, m), _cls._with_poi(free.pars, poi, m)],
            fixed_poi=m,
        )
        if not f.success:
            msgs.append(f"fit at mu={m:g}: {f.message}")
        gen_fits.append(f)
    cond_obs = gen_fits[0]
    if math.isfinite(cond_obs.twice_nll) and cond_obs.twice_nll < free.twice_nll - _NLL_TOL:
        again = global_fit(model, [cond_obs.pars])
        if again.twice_nll < free.twice_nll:
            free = again
    mu_hat = float(free.pars[poi])
    if (discovery and mu_hat <= mu_null) or (not discovery and mu_hat > mu_null):
        q_obs = 0.0
    else:
        q_obs = max(cond_obs.twice_nll - free.twice_nll, 0.0)

    # --- toys ---------------------------------------------------------------------------
    root = np.random.SeedSequence(seed_i)
    streams = root.spawn(3)  # null, alternative, bootstrap
    n_blocks = -(-ntoys // block_size)
    tasks: list[_BlockTask] = []
    for h, f in enumerate(gen_fits):
        children = streams[h].spawn(n_blocks)
        for k in range(n_blocks):
            size = min(block_size, ntoys - k * block_size)
            tasks.append(
                _BlockTask(
                    model, f.pars.copy(), mu_null, test_stat, children[k], size, restart, restart
                )
            )
    blocks = _run_blocks(tasks, int(workers), executor, progress)
    q_sb = np.concatenate([b.teststat for b in blocks[:n_blocks]])
    q_b = np.concatenate([b.teststat for b in blocks[n_blocks:]])
    n_failed = sum(b.n_failed for b in blocks)
    n_python = sum(b.n_python for b in blocks)
    if n_python:
        log.info(
            "hypotest_toys: %d of %d toys refitted in Python (a numba fit did not converge), "
            "%d of them failed there too",
            n_python,
            2 * ntoys,
            n_failed,
        )
    n_nan = int(np.count_nonzero(~np.isfinite(q_sb)) + np.count_nonzero(~np.isfinite(q_b)))
    if n_failed:
        msgs_note = (
            f"{n_failed} of {2 * ntoys} toys had a fit that did not converge or ended at a "
            "negative expected rate"
        )
        if n_failed > max_failed_fraction * 2 * ntoys or n_nan:
            msgs.append(msgs_note)
        else:
            log.info("hypotest_toys: %s", msgs_note)
    # nan statistics (non-finite fits) compare False: they count as "not beyond q_obs"
    q_sb = np.where(np.isfinite(q_sb), q_sb, -math.inf)
    q_b = np.where(np.isfinite(q_b), q_b, -math.inf)

    # --- p-values -------------------------------------------------------------------------
    clsb = float(empirical_pvalue(q_sb, q_obs, tolerance=_TIE_TOL))
    clb = float(empirical_pvalue(q_b, q_obs, tolerance=_TIE_TOL))
    clsb_err, clb_err = _binomial(clsb, ntoys), _binomial(clb, ntoys)
    notes: list[str] = []
    if discovery:
        cls, cls_err = clsb, clsb_err
    elif clb > 0.0:
        cls = clsb / clb
        cls_err = math.sqrt((clsb_err / clb) ** 2 + (clsb * clb_err / clb**2) ** 2)
    else:
        cls, cls_err = math.nan, math.nan
        msgs.append(
            f"no background-only toy has q >= q_obs = {q_obs:.6g} (CLb = 0): CLs is undefined; "
            "increase ntoys"
        )
    if clsb == 0.0:
        notes.append(
            f"no {'null' if discovery else 'signal+background'} toy has q >= q_obs: "
            f"CLs+b < ~{1.0 / ntoys:.2g} (binomial uncertainty 0); increase ntoys"
        )
    band = _band(q_sb, q_b, discovery)
    band_err = np.full(5, math.nan)
    if bootstrap > 0:
        rng = np.random.Generator(np.random.PCG64(streams[2]))
        reps = np.empty((bootstrap, 5))
        for r in range(bootstrap):
            sb = q_sb[rng.integers(0, ntoys, ntoys)]
            b = q_b[rng.integers(0, ntoys, ntoys)]
            reps[r] = _band(sb, b, discovery)
        band_err = reps.std(axis=0, ddof=1) if bootstrap > 1 else np.zeros(5)
    status = "ok" if not msgs else "fit_failed"
    message = "; ".join(msgs + notes)
    b5 = tuple(float(x) for x in band)
    e5 = tuple(float(x) for x in band_err)
    return ToyCLsResult(
        cls_obs=float(cls),
        cls_exp=(b5[0], b5[1], b5[2], b5[3], b5[4]),
        clsb_obs=clsb,
        clb_obs=clb,
        cls_obs_err=float(cls_err),
        cls_exp_err=(e5[0], e5[1], e5[2], e5[3], e5[4]),
        clsb_obs_err=clsb_err,
        clb_obs_err=clb_err,
        teststat_obs=float(q_obs),
        mu_hat=mu_hat,
        ntoys=int(ntoys),
        n_failed=int(n_failed),
        seed=seed_i,
        status=status,
        message=message,
        pars_free=free.pars,
        teststat_sb=q_sb,
        teststat_b=q_b,
    )


def upper_limit_toys(
    model: Model,
    *,
    level: float = 0.05,
    ntoys: int = 1000,
    seed: int | None = None,
    test_stat: str = "qtilde",
    scan: Any = None,
    n_scan: int = 8,
    workers: int = 1,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> _cls.UpperLimitResult:
    """Toy-based upper limits on mu: CLs(mu) = ``level``, observed and expected band.

    As pyhf's ``upper_limits.linear_grid_scan``: :func:`hypotest_toys` at every ``mu`` of
    a grid, then interpolation of each CLs curve (observed, and the five expected) at
    ``level`` between the two grid points that bracket it (linear in log CLs; pyhf
    interpolates linearly in CLs).  Every grid point uses the same ``seed`` (common random numbers, so the
    curves are smooth in mu).  Cost: ``len(scan)`` toy hypothesis tests, i.e.
    ``2 * ntoys * len(scan)`` toys of up to two fits each.

    Parameters
    ----------
    scan : array_like, optional
        The grid of mu values (increasing).  Default: ``n_scan`` points spread linearly
        from 0.5 x the smallest to 1.5 x the largest asymptotic limit
        (:func:`likelihood.upper_limit`), within the POI's bounds.
    Other parameters as :func:`hypotest_toys`.

    Returns
    -------
    UpperLimitResult
        ``status`` is ``"no_bracket"`` when a curve does not cross ``level`` on the grid
        (that limit is NaN), ``"fit_failed"`` when a toy test failed.
    """
    poi = _check(model, 1.0, ntoys, "q" if test_stat == "q0" else test_stat, workers)
    if test_stat == "q0":
        raise LikelihoodError("upper limits need test_stat 'qtilde' or 'q', not 'q0'")
    if not 0.0 < level < 1.0:
        raise LikelihoodError(f"level must be in (0, 1), got {level!r}")
    seed_i = _seed_int(seed)
    lo_b, hi_b = float(model.bounds[poi, 0]), float(model.bounds[poi, 1])
    if scan is None:
        asym = _cls.upper_limit(model, level=level, test_stat=test_stat)
        finite = [v for v in (asym.mu_ul_obs, *asym.mu_ul_exp) if math.isfinite(v) and v > 0]
        if not finite:
            raise LikelihoodError(
                f"no asymptotic upper limit to place the grid ({asym.status}: {asym.message}); "
                "pass scan="
            )
        grid = np.linspace(max(0.5 * min(finite), lo_b), min(1.5 * max(finite), hi_b), n_scan)
    else:
        grid = np.asarray(scan, dtype=np.float64)
        if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) <= 0):
            raise LikelihoodError("scan must be an increasing 1-d array of at least 2 values")
    curves = np.empty((grid.size, 6))
    failures: list[str] = []
    for j, m in enumerate(grid):
        r = hypotest_toys(
            model,
            float(m),
            ntoys=ntoys,
            seed=seed_i,
            test_stat=test_stat,
            workers=workers,
            executor=executor,
            progress=progress,
        )
        curves[j] = (r.cls_obs, *r.cls_exp)
        if r.status != "ok":
            failures.append(f"mu={m:g}: {r.message}")
    limits: list[float] = []
    msgs: list[str] = []
    for k in range(6):
        c = curves[:, k]
        below = np.flatnonzero(c < level)
        if not np.all(np.isfinite(c)) or below.size == 0 or below[0] == 0:
            limits.append(math.nan)
            msgs.append(
                f"{'observed' if k == 0 else f'expected {(-2, -1, 0, 1, 2)[k - 1]:+d} sigma'}: "
                f"CLs does not cross {level} on the grid [{grid[0]:g}, {grid[-1]:g}]"
            )
            continue
        i = int(below[0])
        # between the last grid point above the level and the first below: linear in
        # log CLs (CLs falls about exponentially with mu), linear if CLs is 0 there
        x0, x1, y0, y1 = grid[i - 1], grid[i], c[i - 1], c[i]
        if y1 > 0.0:
            y0, y1, lv = math.log(y0), math.log(y1), math.log(level)
        else:
            lv = level
        limits.append(float(x0 + (lv - y0) * (x1 - x0) / (y1 - y0)))
    status = "fit_failed" if failures else ("no_bracket" if msgs else "ok")
    return _cls.UpperLimitResult(
        mu_ul_obs=limits[0],
        mu_ul_exp=(limits[1], limits[2], limits[3], limits[4], limits[5]),
        status=status,
        message="; ".join(failures[:3] + msgs),
    )


def low_count_bins(model: Model, *, events: float, signal_fraction: float = 0.01) -> np.ndarray:
    """Main bins where asymptotic formulae are doubtful: little background under the signal.

    A bin is flagged when it holds at least ``signal_fraction`` of the largest signal
    yield of any bin and its expected background is below ``events``; both yields at the
    model's initial parameters (signal: the rate at POI = 1 minus the rate at POI = 0;
    background: the rate at POI = 0).  ``recastkit scan --toys-below-events X`` runs toys
    at a point when any bin is flagged.

    Returns
    -------
    ndarray of int
        Indices of the flagged main bins (channels in ``model.channels`` order).
    """
    poi = model.poi_index
    if poi is None:
        return np.zeros(0, dtype=np.int64)
    bkg = model.expected_actualdata(_cls._with_poi(model.init, poi, 0.0))
    sig = model.expected_actualdata(_cls._with_poi(model.init, poi, 1.0)) - bkg
    top = float(np.max(sig)) if sig.size else 0.0
    if not top > 0.0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((sig >= signal_fraction * top) & (bkg < events)).astype(np.int64)
