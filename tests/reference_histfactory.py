"""A slow, obviously-correct HistFactory, for tests only.

Plain Python loops over the workspace JSON and the :mod:`math` module, nothing else: no
numpy, no vectorisation, no caching.  It computes the expected main-bin rates of every
channel and the full twice negative log-likelihood (with every constant) at a parameter
point given as a dict ``{name: float}`` (scalar parameters) or ``{name: [float, ...]}``
(per-bin parameters), following the conventions of pyhf 0.7.6's ``Model``:

* rate of bin ``b`` of sample ``s``: ``(nominal_sb + sum_histosys delta_sb) * prod factors``
  where the factors are normfactor ``mu``, lumi ``lumi``, normsys ``kappa(alpha)``,
  shapefactor / shapesys / staterror ``gamma_b``;
* normsys interpolation ``code4`` (default; polynomial inside |alpha| < 1, exponential
  outside) or ``code1`` (exponential); histosys ``code4p`` (default; polynomial inside
  |alpha| <= 1, linear outside), ``code0`` (piecewise linear) or ``code2`` (the parabola
  through the three templates inside |alpha| <= 1, continued along its tangents outside:
  HistFactory's code 2, continuous; pyhf 0.7.6 drops the offsets outside |alpha| <= 1);
* main term ``Pois(n | lam) = n ln lam - lam - lgamma(n + 1)`` with ``0 ln 0 = 0``;
* Gaussian constraints ``N(a | theta, sigma)`` with the full normalisation
  ``-ln(sigma) - ln(2 pi) / 2``: normsys and histosys (a = 0, sigma = 1), lumi (auxdata and
  sigmas of the measurement), staterror (a = 1, sigma_b = sqrt(sum_s unc_sb^2) / sum_s
  nom_sb over the samples of the channel that carry the modifier; a bin with sigma 0 is
  fixed and gets sigma 1, as pyhf does);
* shapesys Poisson constraints ``Pois(tau_b | gamma_b tau_b)`` with
  ``tau_b = (nom_b / unc_b)^2``; a bin with zero nominal or zero uncertainty gets tau = 1
  and a fixed gamma, as pyhf does;
* measurement parameter settings (inits, bounds, fixed, auxdata, sigmas, factors) override
  the defaults; settings for parameters no modifier uses are ignored.

The code4 polynomial coefficients are obtained here by solving the six defining
conditions (value, first and second derivative equal to the exponential branches at
alpha = +-1) with Gaussian elimination, independently of pyhf's closed-form inverse.

The module also holds :func:`random_workspace`, a seeded generator of small workspaces
that use every modifier type, for the tests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ParameterInfo",
    "parameters",
    "expected_rates",
    "expected_actualdata",
    "twice_nll",
    "normsys_factor",
    "histosys_delta",
    "poisson_logpdf",
    "normal_logpdf",
    "random_workspace",
    "random_point",
]

NORMSYS_CODES = ("code4", "code1")
HISTOSYS_CODES = ("code4p", "code0", "code2")
_VECTOR_TYPES = frozenset({"shapefactor", "shapesys", "staterror"})


# ------------------------------------------------------------------ elementary terms


def poisson_logpdf(n: float, lam: float) -> float:
    """``n ln(lam) - lam - lgamma(n + 1)``, continuous in ``n``, with ``0 ln 0 = 0``."""
    if n == 0:
        log_term = 0.0
    elif lam > 0:
        log_term = n * math.log(lam)
    elif lam == 0:
        log_term = -math.inf
    else:
        log_term = math.nan
    return log_term - lam - math.lgamma(n + 1.0)


def normal_logpdf(x: float, mean: float, sigma: float) -> float:
    """Log of the Gaussian density with its full normalisation."""
    z = (x - mean) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (plain loops)."""
    n = len(rhs)
    a = [row[:] + [rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            for c in range(col, n + 1):
                a[r][c] -= f * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        s = a[r][n]
        for c in range(r + 1, n):
            s -= a[r][c] * x[c]
        x[r] = s / a[r][r]
    return x


def _code4_coefficients(lo: float, hi: float) -> list[float]:
    """a_1..a_6 of ``f(alpha) = 1 + sum_i a_i alpha^i`` matching, at alpha = +1, the value,
    first and second derivative of ``hi^alpha`` and, at alpha = -1, those of
    ``lo^(-alpha)``."""
    rows: list[list[float]] = []
    rhs: list[float] = []
    for sign, target in ((1.0, hi), (-1.0, lo)):
        ln = math.log(target)
        # f(s) - 1 = target - 1
        rows.append([sign**i for i in range(1, 7)])
        rhs.append(target - 1.0)
        # f'(s) = d/dalpha target^(s*alpha) at alpha = s  ->  s * ln(target) * target
        rows.append([i * sign ** (i - 1) for i in range(1, 7)])
        rhs.append(sign * ln * target)
        # f''(s) = ln(target)^2 * target
        rows.append([i * (i - 1) * sign ** (i - 2) if i >= 2 else 0.0 for i in range(1, 7)])
        rhs.append(ln * ln * target)
    return _solve(rows, rhs)


def normsys_factor(alpha: float, lo: float, hi: float, code: str = "code4") -> float:
    """Multiplicative normsys factor at nuisance parameter value ``alpha``."""
    if code == "code1":
        return hi**alpha if alpha > 0 else lo ** (-alpha)
    if code != "code4":
        raise ValueError(f"unknown normsys interpolation code {code!r}")
    if alpha >= 1.0:
        return hi**alpha
    if alpha <= -1.0:
        return lo ** (-alpha)
    coeffs = _code4_coefficients(lo, hi)
    value = 1.0
    for i, a in enumerate(coeffs, start=1):
        value += a * alpha**i
    return value


def histosys_delta(alpha: float, lo: float, nom: float, hi: float, code: str = "code4p") -> float:
    """Additive histosys shift of one bin at nuisance parameter value ``alpha``.

    ``code0``: ``alpha (hi - nom)`` for alpha > 0, ``alpha (nom - lo)`` otherwise.
    ``code2``: the parabola through ``(-1, lo - nom)``, ``(0, 0)``, ``(1, hi - nom)`` for
    |alpha| <= 1, and its tangent at the nearer end point outside.
    ``code4p``: the same as code0 outside |alpha| <= 1; inside, the polynomial
    ``alpha S + A alpha^2 (15 - 10 alpha^2 + 3 alpha^4)`` with ``S = (du + dd) / 2``,
    ``A = (du - dd) / 16`` (``du = hi - nom``, ``dd = nom - lo``), whose value, first and
    second derivative equal those of the linear branches at alpha = +-1.
    """
    up = hi - nom
    down = nom - lo
    if code == "code0":
        return alpha * up if alpha > 0 else alpha * down
    if code == "code2":
        # the parabola through (-1, -down), (0, 0), (1, up), in Lagrange form ...
        def parabola(x: float) -> float:
            return 0.5 * x * (x + 1.0) * up - 0.5 * x * (x - 1.0) * down

        if -1.0 <= alpha <= 1.0:
            return parabola(alpha)
        # ... and outside its tangent at the nearer end point (slope from the same form)
        end = 1.0 if alpha > 1.0 else -1.0
        slope = 0.5 * (2.0 * end + 1.0) * up - 0.5 * (2.0 * end - 1.0) * down
        return parabola(end) + slope * (alpha - end)
    if code != "code4p":
        raise ValueError(f"unknown histosys interpolation code {code!r}")
    if alpha > 1.0:
        return alpha * up
    if alpha < -1.0:
        return alpha * down
    s = 0.5 * (up + down)
    a = (up - down) / 16.0
    return alpha * s + a * alpha * alpha * (15.0 - 10.0 * alpha**2 + 3.0 * alpha**4)


# ------------------------------------------------------------------ parameters


@dataclass
class ParameterInfo:
    """Everything the reference knows about one (scalar or per-bin) parameter."""

    name: str
    types: set[str]
    size: int
    inits: list[float]
    bounds: list[tuple[float, float]]
    fixed: list[bool]
    constraint: str | None  # None, "normal" or "poisson"
    auxdata: list[float] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)  # normal
    factors: list[float] = field(default_factory=list)  # poisson


def _measurement(spec: Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    for meas in spec["measurements"]:
        if name is None or meas["name"] == name:
            return meas
    raise KeyError(f"no measurement {name!r}")


def _nbins(spec: Mapping[str, Any]) -> dict[str, int]:
    return {obs["name"]: len(obs["data"]) for obs in spec["observations"]}


def parameters(
    spec: Mapping[str, Any], *, measurement: str | None = None
) -> dict[str, ParameterInfo]:
    """Parameters of the model, with pyhf's defaults and the measurement's settings."""
    nbins = _nbins(spec)
    params: dict[str, ParameterInfo] = {}
    # staterror: name -> channel -> (sum of nominals, sum of squared uncertainties) per bin
    stat: dict[str, dict[str, tuple[list[float], list[float]]]] = {}

    for channel in spec["channels"]:
        cname = channel["name"]
        n = nbins[cname]
        for sample in channel["samples"]:
            for mod in sample["modifiers"]:
                mname, mtype = mod["name"], mod["type"]
                if mtype == "normfactor":
                    params.setdefault(
                        mname, ParameterInfo(mname, {mtype}, 1, [1.0], [(0.0, 10.0)], [False], None)
                    )
                elif mtype == "lumi":
                    # inits / bounds / auxdata / sigmas come from the measurement
                    params.setdefault(
                        mname,
                        ParameterInfo(
                            mname, {mtype}, 1, [1.0], [(0.0, 10.0)], [False], "normal", [1.0], [1.0]
                        ),
                    )
                elif mtype in ("normsys", "histosys"):
                    info = params.setdefault(
                        mname,
                        ParameterInfo(
                            mname, set(), 1, [0.0], [(-5.0, 5.0)], [False], "normal", [0.0], [1.0]
                        ),
                    )
                    info.types.add(mtype)
                elif mtype == "shapefactor":
                    params.setdefault(
                        mname,
                        ParameterInfo(
                            mname, {mtype}, n, [1.0] * n, [(0.0, 10.0)] * n, [False] * n, None
                        ),
                    )
                elif mtype == "shapesys":
                    if mname in params:  # pyhf keeps the first sample's constraint
                        continue
                    factors = []
                    fixed = []
                    for b in range(n):
                        nom = sample["data"][b]
                        unc = mod["data"][b]
                        if nom > 0 and unc > 0:
                            factors.append((nom / unc) ** 2)
                            fixed.append(False)
                        else:
                            factors.append(1.0)
                            fixed.append(True)
                    params[mname] = ParameterInfo(
                        mname,
                        {mtype},
                        n,
                        [1.0] * n,
                        [(1e-10, 10.0)] * n,
                        fixed,
                        "poisson",
                        auxdata=list(factors),
                        factors=list(factors),
                    )
                elif mtype == "staterror":
                    noms, uncs2 = stat.setdefault(mname, {}).setdefault(
                        cname, ([0.0] * n, [0.0] * n)
                    )
                    for b in range(n):
                        noms[b] += sample["data"][b]
                        uncs2[b] += mod["data"][b] ** 2
                else:
                    raise ValueError(f"unknown modifier type {mtype!r}")

    for mname, per_channel in stat.items():
        sigmas: list[float] = []
        for _cname, (noms, uncs2) in per_channel.items():
            for b in range(len(noms)):
                sigmas.append(math.sqrt(uncs2[b]) / noms[b] if noms[b] > 0 else 0.0)
        fixed = [s == 0.0 for s in sigmas]
        sigmas = [1.0 if s == 0.0 else s for s in sigmas]
        size = len(sigmas)
        params[mname] = ParameterInfo(
            mname,
            {"staterror"},
            size,
            [1.0] * size,
            [(1e-10, 10.0)] * size,
            fixed,
            "normal",
            auxdata=[1.0] * size,
            sigmas=sigmas,
        )

    for setting in _measurement(spec, measurement)["config"]["parameters"]:
        info = params.get(setting["name"])
        if info is None:
            continue
        if "inits" in setting:
            info.inits = [float(x) for x in setting["inits"]]
        if "bounds" in setting:
            info.bounds = [(float(lo), float(hi)) for lo, hi in setting["bounds"]]
        if "fixed" in setting:
            info.fixed = [bool(setting["fixed"])] * info.size
        if "auxdata" in setting:
            info.auxdata = [float(x) for x in setting["auxdata"]]
        if "sigmas" in setting:
            info.sigmas = [float(x) for x in setting["sigmas"]]
        if "factors" in setting:
            info.factors = [float(x) for x in setting["factors"]]
    return params


def _component(pars: Mapping[str, Any], name: str, b: int | None) -> float:
    value = pars[name]
    if b is None:
        if isinstance(value, Sequence):
            (value,) = value
        return float(value)
    return float(value[b])


# ------------------------------------------------------------------ likelihood


def expected_rates(
    spec: Mapping[str, Any],
    pars: Mapping[str, Any],
    *,
    normsys_code: str = "code4",
    histosys_code: str = "code4p",
) -> dict[str, list[float]]:
    """Expected main-bin rates per channel (JSON channel order of the dict).

    Parameters
    ----------
    spec : mapping
        The workspace.
    pars : mapping
        ``{name: float}`` for scalar parameters, ``{name: [float] * nbins}`` for per-bin
        parameters (shapefactor, shapesys, staterror).
    """
    nbins = _nbins(spec)
    rates: dict[str, list[float]] = {}
    for channel in spec["channels"]:
        cname = channel["name"]
        totals = [0.0] * nbins[cname]
        for sample in channel["samples"]:
            for b in range(nbins[cname]):
                nominal = sample["data"][b]
                delta = 0.0
                factor = 1.0
                for mod in sample["modifiers"]:
                    mname, mtype, data = mod["name"], mod["type"], mod["data"]
                    if mtype in ("normfactor", "lumi"):
                        factor *= _component(pars, mname, None)
                    elif mtype in ("shapefactor", "shapesys", "staterror"):
                        factor *= _component(pars, mname, b)
                    elif mtype == "normsys":
                        alpha = _component(pars, mname, None)
                        factor *= normsys_factor(alpha, data["lo"], data["hi"], normsys_code)
                    elif mtype == "histosys":
                        alpha = _component(pars, mname, None)
                        delta += histosys_delta(
                            alpha, data["lo_data"][b], nominal, data["hi_data"][b], histosys_code
                        )
                    else:
                        raise ValueError(f"unknown modifier type {mtype!r}")
                totals[b] += factor * (nominal + delta)
        rates[cname] = totals
    return rates


def expected_actualdata(
    spec: Mapping[str, Any],
    pars: Mapping[str, Any],
    *,
    normsys_code: str = "code4",
    histosys_code: str = "code4p",
) -> list[float]:
    """Main-bin rates concatenated over the channels sorted by name (pyhf's order)."""
    rates = expected_rates(spec, pars, normsys_code=normsys_code, histosys_code=histosys_code)
    out: list[float] = []
    for cname in sorted(rates):
        out.extend(rates[cname])
    return out


def twice_nll(
    spec: Mapping[str, Any],
    pars: Mapping[str, Any],
    *,
    measurement: str | None = None,
    normsys_code: str = "code4",
    histosys_code: str = "code4p",
    observations: Mapping[str, Sequence[float]] | None = None,
) -> float:
    """``-2 ln L``: Poisson main terms plus every constraint term, all constants included.

    ``observations`` (``{channel: counts}``) replaces the workspace's observations.
    """
    params = parameters(spec, measurement=measurement)
    rates = expected_rates(spec, pars, normsys_code=normsys_code, histosys_code=histosys_code)
    observed = {o["name"]: o["data"] for o in spec["observations"]}
    if observations is not None:
        observed.update({k: list(v) for k, v in observations.items()})

    logl = 0.0
    for cname, lams in rates.items():
        for b, lam in enumerate(lams):
            logl += poisson_logpdf(float(observed[cname][b]), lam)

    for name, info in params.items():
        if info.constraint is None:
            continue
        for k in range(info.size):
            value = _component(pars, name, k if info.types & _VECTOR_TYPES else None)
            if info.constraint == "normal":
                logl += normal_logpdf(info.auxdata[k], value, info.sigmas[k])
            else:
                logl += poisson_logpdf(info.auxdata[k], value * info.factors[k])
    return -2.0 * logl


# ------------------------------------------------------------------ random workspaces


def random_workspace(seed: int, *, max_channels: int = 3, max_bins: int = 4) -> dict[str, Any]:
    """A small random workspace using every modifier type (seeded, reproducible).

    Channels ``ch0..``, each with a ``signal`` sample (normfactor ``mu`` and lumi),
    background samples with shared normsys / histosys (also one name used as both),
    per-channel staterror (one sample without it, a bin without uncertainty), a shapesys
    (with a zero-uncertainty bin), a shapefactor, a second normfactor, Poisson-random
    observations (some zeros); a measurement with lumi settings, a fixed parameter and
    custom bounds / inits.
    """
    rng = random.Random(seed)
    n_channels = rng.randint(1, max_channels)
    channels = []
    observations = []
    for c in range(n_channels):
        n = rng.randint(1, max_bins)
        cname = f"ch{c}"

        def bins(lo: float, hi: float, n: int = n) -> list[float]:
            return [round(rng.uniform(lo, hi), 6) for _ in range(n)]

        def histo(nom: list[float], spread: float) -> dict[str, list[float]]:
            return {
                "hi_data": [round(x * (1 + rng.uniform(-spread, spread)), 6) for x in nom],
                "lo_data": [round(x * (1 + rng.uniform(-spread, spread)), 6) for x in nom],
            }

        signal_nom = bins(0.5, 10.0)
        signal = {
            "name": "signal",
            "data": signal_nom,
            "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None},
                {
                    "name": "sig_xsec",
                    "type": "normsys",
                    "data": {
                        "hi": round(rng.uniform(1.02, 1.3), 4),
                        "lo": round(rng.uniform(0.7, 0.98), 4),
                    },
                },
                {"name": "shared_sys", "type": "histosys", "data": histo(signal_nom, 0.15)},
                {"name": f"staterror_{cname}", "type": "staterror", "data": bins(0.05, 1.0)},
            ],
        }
        bkg1_nom = bins(5.0, 50.0)
        stat_bkg1 = bins(0.2, 3.0)
        stat_bkg1[rng.randrange(n)] = 0.0 if n > 1 else stat_bkg1[0]
        # normsys factors on the same side of 1 (both up), as in real workspaces
        hi_same = round(rng.uniform(1.01, 1.2), 4)
        bkg1 = {
            "name": "bkg1",
            "data": bkg1_nom,
            "modifiers": [
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": "norm_bkg1", "type": "normfactor", "data": None},
                {
                    "name": "jes",
                    "type": "normsys",
                    "data": {
                        "hi": round(rng.uniform(1.01, 1.25), 4),
                        "lo": round(rng.uniform(0.75, 0.99), 4),
                    },
                },
                {
                    "name": "same_side",
                    "type": "normsys",
                    "data": {"hi": hi_same, "lo": round(hi_same * rng.uniform(0.95, 0.999), 4)},
                },
                {"name": "jes", "type": "histosys", "data": histo(bkg1_nom, 0.1)},
                {"name": "shared_sys", "type": "histosys", "data": histo(bkg1_nom, 0.2)},
                {"name": f"staterror_{cname}", "type": "staterror", "data": stat_bkg1},
            ],
        }
        bkg2_nom = bins(1.0, 20.0)
        shapesys_unc = bins(0.1, 4.0)
        if n > 1:
            shapesys_unc[rng.randrange(n)] = 0.0
        if n > 2 and rng.random() < 0.5:
            bkg2_nom[rng.randrange(n)] = 0.0  # an empty bin: its gamma is fixed by pyhf
        if rng.random() < 0.3:  # a bin without MC statistical uncertainty: fixed gamma
            b0 = rng.randrange(n)
            signal["modifiers"][-1]["data"][b0] = 0.0
            stat_bkg1[b0] = 0.0
        bkg2 = {
            "name": "bkg2",
            "data": bkg2_nom,
            "modifiers": [
                {"name": f"shapesys_{cname}", "type": "shapesys", "data": shapesys_unc},
                {
                    "name": "jes",
                    "type": "normsys",
                    "data": {
                        "hi": round(rng.uniform(0.8, 0.99), 4),
                        "lo": round(rng.uniform(1.01, 1.2), 4),
                    },
                },
                {"name": f"uncorr_{cname}", "type": "histosys", "data": histo(bkg2_nom, 0.25)},
            ],
        }
        bkg3 = {
            "name": "bkg3",
            "data": bins(0.0, 8.0),
            "modifiers": [
                {"name": f"sf_{cname}", "type": "shapefactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None},
            ],
        }
        samples = [signal, bkg1, bkg2, bkg3]
        rng.shuffle(samples)
        channels.append({"name": cname, "samples": samples})
        total = [sum(s["data"][b] for s in samples) for b in range(n)]
        counts = [_poisson(rng, t) for t in total]
        if rng.random() < 0.3:
            counts[rng.randrange(n)] = 0
        observations.append({"name": cname, "data": counts})

    rng.shuffle(channels)
    parameters_ = [
        {
            "name": "lumi",
            "auxdata": [1.0],
            "sigmas": [round(rng.uniform(0.01, 0.05), 4)],
            "bounds": [[0.5, 1.5]],
            "inits": [1.0],
        },
        {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]},
        {"name": "norm_bkg1", "bounds": [[0.0, 5.0]], "inits": [1.0]},
    ]
    if rng.random() < 0.5:  # shifted auxiliary measurement of a nuisance parameter
        parameters_.append({"name": "jes", "auxdata": [round(rng.uniform(-0.5, 0.5), 3)]})
    if rng.random() < 0.5:  # a fixed nuisance parameter away from its default init
        parameters_.append({"name": "same_side", "fixed": True, "inits": [0.5]})
    return {
        "channels": channels,
        "observations": observations,
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": parameters_}}],
        "version": "1.0.0",
    }


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method is fine for the small rates used here
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def random_point(
    spec: Mapping[str, Any], seed: int, *, measurement: str | None = None, alpha_max: float = 2.5
) -> dict[str, float | list[float]]:
    """A random parameter point: nuisance parameters in [-alpha_max, alpha_max] (so the
    extrapolation branches |alpha| > 1 are hit), factors and gammas near 1, fixed
    components at their initial value."""
    rng = random.Random(seed)
    point: dict[str, float | list[float]] = {}
    for name, info in sorted(parameters(spec, measurement=measurement).items()):
        values = []
        for k in range(info.size):
            lo, hi = info.bounds[k]
            if info.fixed[k]:
                values.append(info.inits[k])
                continue
            if info.types & {"normsys", "histosys"}:
                lo, hi = max(lo, -alpha_max), min(hi, alpha_max)
            elif "lumi" in info.types:
                lo, hi = max(lo, 0.9), min(hi, 1.1)
            else:
                lo, hi = max(lo, 0.5), min(hi, 1.8)
            values.append(rng.uniform(lo, hi))
        point[name] = values if info.types & _VECTOR_TYPES else values[0]
    return point
