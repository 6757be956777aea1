"""Signal yields + background-only workspace -> JSON patches and a PatchSet.

:func:`make_patchset` takes the tidy yields table of :mod:`recast.yields` (one row per
point x region x bin) and a HistFactory background-only workspace and returns a pyhf
PatchSet (format 1.0.0): one RFC 6902 patch per grid point that adds a signal sample to
every channel that gets signal (signal *and* control regions) and removes the channels
asked for.  The format and every rule are described in ``docs/make-patch.md``.

Two modes:

plain
    the signal sample carries the POI normfactor, ``lumi`` when the workspace uses it, the
    MC statistical uncertainty as a ``staterror`` shared with the channel's background, and
    the user's ``sys_<n>`` columns as ``normsys`` / ``histosys``.
template
    the modifier structure of an official signal patch (the nearest grid point, or a named
    one) is carried over to the new yields; histosys shifts keep their relative size.

:func:`yields_from_patchset` does the reverse: it extracts the signal yields of an existing
patchset into the tidy format (useful to re-derive or validate a grid).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from likelihood.errors import LikelihoodError
from likelihood.validate import CHANNEL_REMOVE_PATH as _REMOVE_CHANNEL_RE
from likelihood.validate import SAMPLE_ADD_PATH as _ADD_SAMPLE_RE
from recast._documents import read_json_or_toml
from recast._io import atomic_write_text
from recast.errors import MappingError, RecastError, YieldsError, cli_worded
from recast.yields import (
    check_yields,
    label_columns,
    read_yields,
    systematic_names,
)

__all__ = [
    "make_patchset",
    "yields_from_patchset",
    "read_mapping",
    "write_patchset",
    "write_patch_files",
    "patch_name",
    "MCSTAT_MODES",
    "VALIDATE_MODES",
]

log = logging.getLogger(__name__)

#: Ways to add the signal's MC statistical uncertainty (``mcstat=``).
MCSTAT_MODES: tuple[str, ...] = ("staterror", "none")

_IDENTIFIER_RE = re.compile(r"^[a-zA-Z0-9_]+$")
_HEPDATA_RE = re.compile(r"^(?:ins)?(\d{7})$")
_MISSING = object()


# ---------------------------------------------------------------------------------------
# workspace facts
# ---------------------------------------------------------------------------------------


class _Channel(NamedTuple):
    position: int  # index in the BkgOnly's channel list
    name: str
    nbins: int
    staterror: str | None  # name of the existing staterror modifier, if any


class _Workspace(NamedTuple):
    channels: dict[str, _Channel]
    order: list[str]  # channel names in BkgOnly order
    modifier_types: dict[str, set[str]]  # modifier name -> types used by background samples
    lumi: str | None
    poi: str
    digest: str


def _workspace_facts(
    bkgonly: Mapping[str, Any], measurement: str | None, source: str
) -> _Workspace:
    from likelihood import digest, get_measurement

    try:
        channels_json = bkgonly["channels"]
        meas = get_measurement(bkgonly, measurement)
    except (KeyError, TypeError) as err:
        raise MappingError(f"{source}: not a HistFactory workspace (no /channels)") from err
    except LikelihoodError as err:  # InvalidWorkspace from get_measurement
        raise MappingError(f"{source}: {err}") from err
    poi = (meas.get("config") or {}).get("poi")
    if not isinstance(poi, str) or not poi:
        raise MappingError(
            f"{source}: measurement {meas.get('name')!r} names no POI (/measurements/.../config/poi); "
            "the signal normfactor is named after it"
        )
    channels: dict[str, _Channel] = {}
    order: list[str] = []
    types: dict[str, set[str]] = {}
    lumi = None
    for i, ch in enumerate(channels_json):
        samples = ch.get("samples") or []
        nbins = len(samples[0]["data"]) if samples else 0
        stat = None
        for s in samples:
            for m in s.get("modifiers", []):
                types.setdefault(m["name"], set()).add(m["type"])
                if m["type"] == "staterror" and stat is None:
                    stat = m["name"]
                if m["type"] == "lumi":
                    lumi = m["name"]
        channels[ch["name"]] = _Channel(i, ch["name"], nbins, stat)
        order.append(ch["name"])
    return _Workspace(channels, order, types, lumi, poi, digest(bkgonly))


def _channel_list(ws: _Workspace) -> str:
    return ", ".join(
        f"{n} ({ws.channels[n].nbins} bin{'s' if ws.channels[n].nbins != 1 else ''})"
        for n in ws.order
    )


# ---------------------------------------------------------------------------------------
# mapping
# ---------------------------------------------------------------------------------------


def read_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a region mapping file (JSON, or TOML with ``tomllib`` / ``tomli``).

    See ``docs/make-patch.md`` section 3 for the keys (``regions``, ``ignore``, ``remove``,
    ``drop_unlisted``, ``systematics``).
    """
    p = Path(path)
    doc = read_json_or_toml(p, MappingError)
    _check_mapping_keys(doc, str(p))
    return doc


_MAPPING_KEYS = {"regions", "ignore", "remove", "drop_unlisted", "systematics"}


def _check_mapping_keys(doc: Any, source: str) -> None:
    if not isinstance(doc, Mapping):
        raise MappingError(f"{source}: a mapping is an object with keys {sorted(_MAPPING_KEYS)}")
    unknown = sorted(set(doc) - _MAPPING_KEYS)
    if unknown:
        raise MappingError(
            f"{source}: unknown mapping keys {unknown}; known: {sorted(_MAPPING_KEYS)}"
        )
    regions = doc.get("regions", {})
    if not isinstance(regions, Mapping):
        raise MappingError(f"{source}: /regions must be an object tool region -> channel")
    for key in ("ignore", "remove"):
        val = doc.get(key, [])
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            raise MappingError(f"{source}: /{key} must be a list of names, got {val!r}")
    if not isinstance(doc.get("drop_unlisted", False), bool):
        raise MappingError(f"{source}: /drop_unlisted must be true or false")
    systs = doc.get("systematics", {})
    if not isinstance(systs, Mapping) or not all(isinstance(v, str) for v in systs.values()):
        raise MappingError(f"{source}: /systematics must map sys names to nuisance-parameter names")


class _Target(NamedTuple):
    channel: str
    bin: int


def _resolve_regions(
    df: pd.DataFrame, ws: _Workspace, mapping: Mapping[str, Any], source: str
) -> tuple[dict[tuple[str, int], _Target], set[str]]:
    """Map every (tool region, tool bin) to (channel, channel bin); return also ignored regions."""
    regions_map = mapping.get("regions", {}) or {}
    ignore = set(mapping.get("ignore", []) or [])
    tool_bins = df.groupby("region", sort=False)["bin"].agg(
        lambda s: sorted(set(int(b) for b in s))
    )
    avail = _channel_list(ws)
    # every channel named by the mapping must exist, whether or not the yields use it
    for region, spec in regions_map.items():
        if spec is None:
            continue
        ch = (
            spec
            if isinstance(spec, str)
            else spec.get("channel")
            if isinstance(spec, Mapping)
            else None
        )
        if not isinstance(ch, str):
            raise MappingError(
                f"{source}: /regions/{region} must be a channel name, {{'channel': ..., 'bin'|'bins': ...}} "
                f"or null, got {spec!r}"
            )
        if ch not in ws.channels:
            raise MappingError(
                f"{source}: /regions/{region} maps to unknown channel {ch!r}; the workspace has: {avail}"
            )
    unused = [r for r in regions_map if r not in tool_bins.index]
    if unused:
        log.warning("%s: mapping entries %s match no region of the yields", source, unused)
    targets: dict[tuple[str, int], _Target] = {}
    ignored: set[str] = set()
    for region, bins in tool_bins.items():
        spec = regions_map.get(region, _MISSING)
        if region in ignore or spec is None:
            ignored.add(region)
            continue
        where = f"region {region!r}"
        if spec is _MISSING:
            if region not in ws.channels:
                raise MappingError(
                    f"{source}: unknown region {region!r}: it is not a channel of the BkgOnly and the "
                    f"mapping does not list it. Channels: {avail}. Map it with --mapping "
                    f'("regions": {{"{region}": "<channel>"}}) or ignore it ({{"{region}": null}})'
                )
            spec = region
        if isinstance(spec, str):
            ch = ws.channels[spec]
            if bins != list(range(ch.nbins)):
                raise MappingError(
                    f"{source}: {where} has bins {bins} but channel {ch.name!r} has {ch.nbins} "
                    f"bin(s) (0..{ch.nbins - 1}); wrong bin count. Give all bins, or map single bins "
                    f'with {{"channel": ..., "bin": k}}. Channels: {avail}'
                )
            pairs = [(b, b) for b in bins]
        else:
            ch = ws.channels[spec["channel"]]
            extra = sorted(set(spec) - {"channel", "bin", "bins"})
            if extra or ("bin" in spec and "bins" in spec):
                raise MappingError(
                    f"{source}: /regions/{region}: use either 'bin' or 'bins' (unknown keys {extra})"
                )
            if "bin" in spec:
                k = spec["bin"]
                if bins != [0]:
                    raise MappingError(
                        f"{source}: {where} has bins {bins}; 'bin' maps a one-bin region, use 'bins': [...]"
                    )
                pairs = [(0, k)]
            elif "bins" in spec:
                ks = spec["bins"]
                if (
                    not isinstance(ks, list)
                    or len(ks) != len(bins)
                    or bins != list(range(len(bins)))
                ):
                    raise MappingError(
                        f"{source}: /regions/{region}/bins = {ks!r} must list one channel bin per tool "
                        f"bin; the yields have tool bins {bins}"
                    )
                pairs = list(zip(bins, ks, strict=True))
            else:
                if bins != list(range(ch.nbins)):
                    raise MappingError(
                        f"{source}: {where} has bins {bins} but channel {ch.name!r} has {ch.nbins} bin(s); "
                        f"wrong bin count. Channels: {avail}"
                    )
                pairs = [(b, b) for b in bins]
            for _, k in pairs:
                if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < ch.nbins:
                    raise MappingError(
                        f"{source}: /regions/{region}: bin {k!r} is outside channel {ch.name!r}, which has "
                        f"{ch.nbins} bin(s) (0..{ch.nbins - 1}). Channels: {avail}"
                    )
        for tb, k in pairs:
            tgt = _Target(ch.name, int(k))
            clash = [key for key, t in targets.items() if t == tgt]
            if clash:
                raise MappingError(
                    f"{source}: {where} bin {tb} and region {clash[0][0]!r} bin {clash[0][1]} both go to "
                    f"channel {ch.name!r} bin {k}; each channel bin takes one tool region"
                )
            targets[(region, tb)] = tgt
    # channels must be filled completely
    filled: dict[str, set[int]] = {}
    for t in targets.values():
        filled.setdefault(t.channel, set()).add(t.bin)
    for name, got in filled.items():
        n = ws.channels[name].nbins
        if got != set(range(n)):
            missing = sorted(set(range(n)) - got)
            raise MappingError(
                f"{source}: channel {name!r} has {n} bins but the yields fill only {sorted(got)} "
                f"(missing bins {missing}); map a tool region to every bin (give yield 0 where "
                "the signal is absent)"
            )
    if not targets:
        raise MappingError(
            f"{source}: no region of the yields maps to a channel. Channels: {avail}"
        )
    return targets, ignored


# ---------------------------------------------------------------------------------------
# naming
# ---------------------------------------------------------------------------------------


def _format_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v)).replace("-", "m")
    if isinstance(v, (float, np.floating)):
        return repr(float(v)).replace("-", "m").replace("+", "").replace(".", "p")
    return re.sub(r"[^a-zA-Z0-9_]", "_", str(v))


def patch_name(prefix: str, values: Sequence[Any]) -> str:
    """Patch name ``<prefix>_<v1>_<v2>...`` (``.`` -> ``p``, ``-`` -> ``m``; ``350.5`` -> ``350p5``)."""
    name = "_".join([prefix, *(_format_value(v) for v in values)])
    if not _IDENTIFIER_RE.match(name):
        raise YieldsError(
            f"patch name {name!r} must match ^[a-zA-Z0-9_]+$; choose another name prefix"
        )
    return name


def _py(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# ---------------------------------------------------------------------------------------
# building one sample
# ---------------------------------------------------------------------------------------


class _PointYields(NamedTuple):
    data: dict[str, np.ndarray]  # channel -> yields (nbins,)
    stat: dict[str, np.ndarray] | None  # channel -> abs. stat unc (nbins,)
    sys: dict[
        str, dict[str, tuple[np.ndarray, np.ndarray]]
    ]  # channel -> name -> (up, down) relative


def _sys_modifiers(
    name: str, nominal: np.ndarray, up: np.ndarray, down: np.ndarray
) -> list[dict[str, Any]]:
    if not np.any(up) and not np.any(down):
        return []
    if np.all(up == up[0]) and np.all(down == down[0]):
        return [
            {
                "name": name,
                "type": "normsys",
                "data": {"hi": float(1.0 + up[0]), "lo": float(1.0 + down[0])},
            }
        ]
    return [
        {
            "name": name,
            "type": "histosys",
            "data": {
                "hi_data": [float(x) for x in nominal * (1.0 + up)],
                "lo_data": [float(x) for x in nominal * (1.0 + down)],
            },
        }
    ]


def _plain_sample(
    sample_name: str, channel: _Channel, ws: _Workspace, py: _PointYields, mcstat: str
) -> dict[str, Any]:
    nominal = py.data[channel.name]
    modifiers: list[dict[str, Any]] = [{"name": ws.poi, "type": "normfactor", "data": None}]
    if ws.lumi is not None:
        modifiers.append({"name": ws.lumi, "type": "lumi", "data": None})
    if mcstat == "staterror" and py.stat is not None:
        unc = py.stat[channel.name]
        if np.any(unc > 0):
            modifiers.append(
                {
                    "name": channel.staterror or f"staterror_{channel.name}",
                    "type": "staterror",
                    "data": [float(x) for x in unc],
                }
            )
    for sname, (up, down) in py.sys.get(channel.name, {}).items():
        modifiers.extend(_sys_modifiers(sname, nominal, up, down))
    return {"name": sample_name, "data": [float(x) for x in nominal], "modifiers": modifiers}


def _scaled(
    values: Sequence[float], nominal_t: Sequence[float], nominal: np.ndarray
) -> list[float]:
    out = []
    for v, nt, n in zip(values, nominal_t, nominal, strict=True):
        if nt == n:
            out.append(float(v))
        elif nt != 0:
            out.append(float(v) / float(nt) * float(n))
        else:
            out.append(float(n))
    return out


def _template_sample(
    tsample: Mapping[str, Any],
    sample_name: str | None,
    channel: _Channel,
    py: _PointYields,
) -> dict[str, Any]:
    nominal = py.data[channel.name]
    nom_t = list(tsample["data"])
    if len(nom_t) != channel.nbins:
        raise MappingError(
            f"template sample {tsample.get('name')!r} in channel {channel.name!r} has {len(nom_t)} bins, "
            f"the channel {channel.nbins}: the template belongs to another workspace"
        )
    user_sys = py.sys.get(channel.name, {})
    modifiers: list[dict[str, Any]] = []
    for m in tsample.get("modifiers", []):
        mtype, data = m["type"], m.get("data")
        if m["name"] in user_sys and mtype in ("normsys", "histosys"):
            continue  # replaced by the user's systematic below
        if mtype == "histosys":
            data = {
                "hi_data": _scaled(data["hi_data"], nom_t, nominal),
                "lo_data": _scaled(data["lo_data"], nom_t, nominal),
            }
        elif mtype in ("staterror", "shapesys"):
            if py.stat is not None:
                data = [float(x) for x in py.stat[channel.name]]
            else:
                data = [
                    float(v) / float(nt) * float(n) if nt else 0.0
                    for v, nt, n in zip(data, nom_t, nominal, strict=True)
                ]
        else:
            data = copy.deepcopy(data)
        modifiers.append({"name": m["name"], "type": mtype, "data": data})
    for sname, (up, down) in user_sys.items():
        modifiers.extend(_sys_modifiers(sname, nominal, up, down))
    out = {
        k: copy.deepcopy(v) for k, v in tsample.items() if k not in ("name", "data", "modifiers")
    }
    return {
        "name": sample_name or tsample["name"],
        "data": [float(x) for x in nominal],
        "modifiers": modifiers,
        **out,
    }


# ---------------------------------------------------------------------------------------
# template handling
# ---------------------------------------------------------------------------------------


class _TemplatePatch(NamedTuple):
    name: str
    values: tuple[Any, ...]
    adds: dict[int, tuple[str, dict[str, Any]]]  # channel index -> (path, sample)
    other: list[dict[str, Any]]  # non-signal, non-remove operations, in order
    removes: set[int]


def _load_template(
    template: str | os.PathLike[str] | Mapping[str, Any], ws: _Workspace
) -> tuple[dict[str, Any], str]:
    from likelihood import read_json

    if isinstance(template, Mapping):
        ps, source = dict(template), "template patchset"
    else:
        ps, source = read_json(template), str(template)
    if not isinstance(ps, Mapping) or not isinstance(ps.get("patches"), list):
        raise MappingError(f"{source}: a template must be a PatchSet with a 'patches' list")
    got = ((ps.get("metadata") or {}).get("digests") or {}).get("sha256")
    if got is not None and got != ws.digest:
        raise MappingError(
            f"{source}: metadata.digests.sha256 {got[:12]}... differs from the BkgOnly's digest "
            f"{ws.digest[:12]}...: the template patches another background-only workspace"
        )
    return dict(ps), source


def _parse_template_patch(p: Mapping[str, Any], ws: _Workspace, source: str) -> _TemplatePatch:
    meta = p.get("metadata") or {}
    adds: dict[int, tuple[str, dict[str, Any]]] = {}
    other: list[dict[str, Any]] = []
    removes: set[int] = set()
    nch = len(ws.order)
    for k, op in enumerate(p.get("patch") or []):
        path = str(op.get("path", ""))
        m_add = _ADD_SAMPLE_RE.match(path)
        m_rm = _REMOVE_CHANNEL_RE.match(path)
        if (
            op.get("op") == "add"
            and m_add
            and isinstance(op.get("value"), Mapping)
            and "data" in op["value"]
        ):
            i = int(m_add.group(1))
            if i >= nch or i in adds:
                raise MappingError(
                    f"{source}: patch {meta.get('name')!r} operation {k} ({path}) does not fit the BkgOnly"
                )
            adds[i] = (path, dict(op["value"]))
        elif op.get("op") == "remove" and m_rm:
            removes.add(int(m_rm.group(1)))
        else:
            other.append(dict(op))
    return _TemplatePatch(
        str(meta.get("name")), tuple(meta.get("values") or ()), adds, other, removes
    )


def _nearest_template(
    values: Sequence[Any], candidates: Sequence[Mapping[str, Any]], source: str
) -> Mapping[str, Any]:
    try:
        x = np.asarray([float(v) for v in values])
    except (TypeError, ValueError) as err:
        raise MappingError(
            f"{source}: nearest template point needs numeric labels, got {list(values)}; name the template point"
        ) from err
    best, best_d = None, math.inf
    for p in candidates:
        v = (p.get("metadata") or {}).get("values") or []
        try:
            y = np.asarray([float(t) for t in v])
        except (TypeError, ValueError):
            continue
        if y.shape != x.shape:
            continue
        d = float(np.sum((x - y) ** 2))
        if d < best_d and _adds_signal(p):
            best, best_d = p, d
    if best is None:
        raise MappingError(
            f"{source}: no template patch with {len(x)} numeric values that adds a signal"
        )
    return best


def _adds_signal(p: Mapping[str, Any]) -> bool:
    return any(
        op.get("op") == "add" and _ADD_SAMPLE_RE.match(str(op.get("path", "")))
        for op in p.get("patch") or []
    )


# ---------------------------------------------------------------------------------------
# make_patchset
# ---------------------------------------------------------------------------------------


def _as_bkgonly(bkgonly: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    from likelihood import read_json

    if isinstance(bkgonly, Mapping):
        return dict(bkgonly), "BkgOnly workspace"
    return read_json(bkgonly), str(bkgonly)


def _normalise_hepdata(value: str | None) -> str | None:
    if value is None:
        return None
    m = _HEPDATA_RE.match(str(value).strip())
    if not m:
        raise RecastError(
            f"hepdata reference {value!r} must be an INSPIRE id 'ins' + 7 digits, e.g. ins1755298"
        )
    return f"ins{m.group(1)}"


def make_patchset(
    bkgonly: Mapping[str, Any] | str | os.PathLike[str],
    yields: pd.DataFrame | str | os.PathLike[str],
    *,
    mapping: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
    measurement: str | None = None,
    template: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    template_point: str | None = None,
    sample_name: str | None = None,
    name_prefix: str = "signal",
    mcstat: str = "staterror",
    drop_unlisted: bool = False,
    remove: Iterable[str] = (),
    hepdata: str | None = None,
    description: str | None = None,
    validate: str = "fast",
    progress: bool = False,
    xsec: pd.DataFrame | str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Build a PatchSet that adds the signal of every grid point to a background-only workspace.

    Parameters
    ----------
    bkgonly : mapping or path-like
        The background-only workspace (``BkgOnly.json``).
    yields : pandas.DataFrame or path-like
        Tidy yields (:func:`recast.read_yields`); a path is read with ``read_yields(path)``.
    mapping : mapping or path-like, optional
        Region mapping (dict, or a JSON / TOML file, see :func:`read_mapping`).  Default: tool
        regions are matched to channels by name.
    labels : sequence of str, optional
        Point-label columns; default ``yields.attrs["labels"]`` or the non-reserved columns.
    measurement : str, optional
        Measurement whose POI names the signal normfactor (default: the first one).
    template : mapping or path-like, optional
        An official PatchSet whose signal modifier structure is carried over (template mode).
    template_point : str, optional
        Name of the template patch to use for every point; default: per point, the template
        patch with the nearest label values.
    sample_name : str, optional
        Format string of the signal sample name (fields: ``name`` = patch name, and the
        labels).  Default ``"{name}"`` in plain mode, the template's sample name in
        template mode.
    name_prefix : str
        Patch names are ``<name_prefix>_<values>`` unless the yields have a ``name`` column.
    mcstat : {"staterror", "none"}
        How ``stat_unc`` enters (plain mode, and template channels without MC-stat modifier).
    drop_unlisted : bool
        Remove every channel that gets no signal.
    remove : iterable of str
        Channels to remove (e.g. validation regions).
    hepdata : str, optional
        INSPIRE id of the analysis (``ins1755298``), required by the PatchSet format unless
        the template carries one.
    description : str, optional
        PatchSet description.
    validate : {"fast", "full", "none"}
        ``fast``: PatchSet schema and digest, every patch's operations and signal data, and
        the first patched workspace in full; ``full``: every patched workspace in full
        (schema + semantics; about 0.05 s per point on 1Lbb); ``none``: nothing.
    progress : bool
        Show a tqdm progress bar over the points.
    xsec : pandas.DataFrame or path-like, optional
        Cross-section table (label columns, ``xsec_fb`` or ``xsec_pb``, optional
        uncertainties; see :mod:`recast.xsec`): every patch gets
        ``metadata.xsec = {"value", "unit", "uncertainty_up", "uncertainty_down"}``,
        which :func:`recast.scan` turns into cross-section limits and the theory band.
        Every point needs a row.

    Returns
    -------
    dict
        The PatchSet (pyhf format 1.0.0), JSON-serialisable.

    Raises
    ------
    YieldsError, MappingError
        Bad yields, unknown regions or channels, wrong bin counts, conflicting names.
    likelihood.errors.InvalidSpecification
        The result fails validation (a bug, or a broken BkgOnly / template).
    """
    hepdata = _normalise_hepdata(hepdata)
    bkg, bkg_source = _as_bkgonly(bkgonly)
    ws = _workspace_facts(bkg, measurement, bkg_source)
    if isinstance(yields, pd.DataFrame):
        df = check_yields(yields, labels=labels)  # the same checks as for a file
    else:
        df = read_yields(yields, labels=labels)
    ysource = str(df.attrs.get("source", "yields"))
    labels = label_columns(df)
    xsec_rows = None
    if xsec is not None:
        from recast.xsec import lookup, read_xsec

        xsec_rows = lookup(read_xsec(xsec, labels), labels)
    if validate not in VALIDATE_MODES:
        raise RecastError(f"validate={validate!r}: choose one of {', '.join(VALIDATE_MODES)}")
    if mcstat not in MCSTAT_MODES:
        raise RecastError(f"mcstat={mcstat!r}: choose one of {', '.join(MCSTAT_MODES)}")
    if not _IDENTIFIER_RE.match(name_prefix):
        raise YieldsError(f"name prefix {name_prefix!r} must match ^[a-zA-Z0-9_]+$")

    # mapping
    if mapping is None:
        mdoc: dict[str, Any] = {}
        msource = ysource
    elif isinstance(mapping, Mapping):
        mdoc, msource = dict(mapping), "mapping"
        _check_mapping_keys(mdoc, msource)
    else:
        mdoc, msource = read_mapping(mapping), str(mapping)
    targets, ignored = _resolve_regions(df, ws, mdoc, msource)
    if ignored:
        log.info("ignoring tool regions %s", sorted(ignored))
    df = df[~df["region"].isin(ignored)]

    # systematics: names, renames, compatibility with the background
    sys_rename = dict(mdoc.get("systematics", {}) or {})
    sys_names = systematic_names(df)
    for s in sys_rename:
        if s not in sys_names:
            log.warning("%s: /systematics/%s matches no sys_%s_up/down column", msource, s, s)
    np_names = {s: sys_rename.get(s, s) for s in sys_names}
    reserved = {ws.poi} | ({ws.lumi} if ws.lumi else set())
    for s, npn in np_names.items():
        if not _IDENTIFIER_RE.match(npn) and not re.match(r"^[\w.\-]+$", npn):
            raise YieldsError(f"{ysource}: systematic name {npn!r} is not a valid parameter name")
        bad = ws.modifier_types.get(npn, set()) - {"normsys", "histosys"}
        if npn in reserved or bad:
            raise MappingError(
                f"{msource}: systematic sys_{s} -> nuisance parameter {npn!r} clashes with the "
                f"workspace's {sorted(bad) or ['POI/lumi']} modifier of that name; rename it "
                "(mapping /systematics)"
            )
        if npn in ws.modifier_types:
            log.info(
                "systematic %s is correlated with the background nuisance parameter %s", s, npn
            )

    # channels to remove
    to_remove = set(mdoc.get("remove", []) or []) | set(remove)
    for ch in sorted(to_remove):
        if ch not in ws.channels:
            raise MappingError(
                f"cannot remove unknown channel {ch!r}; channels: {_channel_list(ws)}"
            )
    signal_channels = {t.channel for t in targets.values()}
    clash = sorted(signal_channels & to_remove)
    if clash:
        raise MappingError(
            f"channels {clash} get signal yields and are also to be removed; choose one"
        )
    if drop_unlisted or mdoc.get("drop_unlisted", False):
        to_remove |= set(ws.order) - signal_channels
    unlisted = [c for c in ws.order if c not in signal_channels and c not in to_remove]
    for c in unlisted:
        if "SR" in c:
            log.warning(
                "channel %s looks like a signal region but gets no signal yields (kept without signal)",
                c,
            )
        else:
            log.info("channel %s gets no signal yields (kept without signal)", c)

    # template
    tps: dict[str, Any] | None = None
    tsource = ""
    fixed_template: _TemplatePatch | None = None
    if template is not None:
        tps, tsource = _load_template(template, ws)
        tlabels = list((tps.get("metadata") or {}).get("labels") or [])
        if template_point is not None:
            found = [
                p for p in tps["patches"] if (p.get("metadata") or {}).get("name") == template_point
            ]
            if not found:
                names = [(p.get("metadata") or {}).get("name") for p in tps["patches"]]
                raise MappingError(
                    f"{tsource}: no patch named {template_point!r}; e.g. {names[:5]}"
                )
            fixed_template = _parse_template_patch(found[0], ws, tsource)
        elif tlabels != labels:
            if len(tlabels) != len(labels):
                text = (
                    f"{tsource}: the template has {len(tlabels)} labels {tlabels}, the yields "
                    f"{len(labels)} {labels}; the nearest template point is found by label "
                    "values: name the template point instead "
                )
                raise cli_worded(
                    MappingError(text + "(template_point='NAME')"),
                    text + "(--template PATCHSET:NAME)",
                )
            log.warning(
                "template labels %s differ from the yields' labels %s: matched by position (%s)",
                tlabels,
                labels,
                ", ".join(f"{a}~{b}" for a, b in zip(labels, tlabels, strict=True)),
            )
        if hepdata is None:
            hepdata = ((tps.get("metadata") or {}).get("references") or {}).get("hepdata")
    hepdata = _normalise_hepdata(hepdata)

    # per point
    stat_col = "stat_unc" in df.columns
    expected_keys = set(targets)
    groups = df.groupby(labels, sort=False)
    patches: list[dict[str, Any]] = []
    seen_names: dict[str, tuple[Any, ...]] = {}
    iterator: Iterable[Any] = groups
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(groups, total=groups.ngroups, desc="make-patch", unit="point")
    warned_extra = False
    for key, rows in iterator:
        values = tuple(_py(v) for v in (key if isinstance(key, tuple) else (key,)))
        point = dict(zip(labels, values, strict=True))
        got = set(zip(rows["region"], rows["bin"].astype(int), strict=True))
        if got != expected_keys:
            # a point may leave out whole channels (no signal there), never part of one
            got_channels = {targets[k].channel for k in got}
            lacking = sorted(k for k in expected_keys - got if targets[k].channel in got_channels)
            if lacking:
                raise YieldsError(
                    f"{ysource}: point {point} lacks region/bin {lacking[:6]} of channel(s) "
                    f"{sorted({targets[k].channel for k in lacking})} that it fills otherwise; give "
                    "every bin of a channel (yield 0 where the signal is absent)"
                )
            log.debug(
                "point %s gives no signal to channels %s",
                point,
                sorted({targets[k].channel for k in expected_keys - got}),
            )
        if "name" in rows.columns:
            name = str(rows["name"].iloc[0])
        else:
            name = patch_name(name_prefix, values)
        if name in seen_names:
            raise YieldsError(
                f"{ysource}: points {dict(zip(labels, seen_names[name], strict=True))} and {point} get the same patch name {name!r}"
            )
        seen_names[name] = values
        py = _point_yields(rows, targets, ws, np_names, stat_col)
        fmt_fields = {**{k: v for k, v in point.items()}, "name": name}
        ops: list[dict[str, Any]]
        if tps is None:
            sname = _format_sample_name(sample_name or "{name}", fmt_fields)
            ops = [
                {
                    "op": "add",
                    "path": f"/channels/{ws.channels[c].position}/samples/-",
                    "value": _plain_sample(sname, ws.channels[c], ws, py, mcstat),
                }
                for c in ws.order
                if c in py.data
            ]
            extra_ops: list[dict[str, Any]] = []
            tremoves: set[int] = set()
        else:
            tp = fixed_template or _parse_template_patch(
                _nearest_template(values, tps["patches"], tsource), ws, tsource
            )
            log.debug("point %s uses template patch %s", name, tp.name)
            tname = _format_sample_name(sample_name, fmt_fields) if sample_name else None
            ops = []
            for i, (path, tsample) in tp.adds.items():
                cname = ws.order[i]
                if cname not in py.data:
                    log.info("template channel %s gets no yields: no signal there", cname)
                    continue
                ops.append(
                    {
                        "op": "add",
                        "path": path,
                        "value": _template_sample(tsample, tname, ws.channels[cname], py),
                    }
                )
            for c in ws.order:
                if c in py.data and ws.channels[c].position not in tp.adds:
                    if not warned_extra:
                        log.warning(
                            "channel %s has no signal in the template: plain-mode sample added", c
                        )
                        warned_extra = True
                    ops.append(
                        {
                            "op": "add",
                            "path": f"/channels/{ws.channels[c].position}/samples/-",
                            "value": _plain_sample(
                                tname or _format_sample_name("{name}", fmt_fields),
                                ws.channels[c],
                                ws,
                                py,
                                mcstat,
                            ),
                        }
                    )
            extra_ops = [copy.deepcopy(op) for op in tp.other]
            tremoves = {i for i in tp.removes if ws.order[i] not in py.data}
        removes = sorted({ws.channels[c].position for c in to_remove} | tremoves, reverse=True)
        ops.extend(extra_ops)
        ops.extend({"op": "remove", "path": f"/channels/{i}"} for i in removes)
        meta: dict[str, Any] = {"name": name, "values": list(values)}
        if xsec_rows is not None:
            meta["xsec"] = _xsec_of_point(xsec_rows, xsec, point, values)
        patches.append({"metadata": meta, "patch": ops})

    if hepdata is None:
        text = "the PatchSet format requires metadata.references.hepdata: give the analysis' "
        raise cli_worded(
            RecastError(text + "INSPIRE id, e.g. hepdata='ins1755298'"),
            text + "INSPIRE id, e.g. --hepdata ins1755298",
        )
    mode = (
        f"template mode from {Path(tsource).name if tsource else 'a template'}"
        if tps is not None
        else "plain mode"
    )
    patchset = {
        "metadata": {
            "description": description
            or f"signal patchset made by recastkit make-patch ({mode}) from {Path(ysource).name}",
            "digests": {"sha256": ws.digest},
            "labels": list(labels),
            "references": {"hepdata": hepdata},
        },
        "version": "1.0.0",
        "patches": patches,
    }
    _validate(patchset, bkg, bkg_source, mode=validate, progress=progress)
    log.info("made %d patches (%s) for %d channels", len(patches), mode, len(signal_channels))
    return patchset


def _xsec_of_point(
    rows: Mapping[tuple[Any, ...], Mapping[str, Any]],
    source: Any,
    point: Mapping[str, Any],
    values: Sequence[Any],
) -> dict[str, Any]:
    from recast.xsec import point_key, xsec_metadata

    row = rows.get(point_key(values))
    if row is None:
        where = source if isinstance(source, (str, os.PathLike)) else "the cross-section table"
        raise YieldsError(f"{where}: no cross-section for point {dict(point)}; add a row")
    return xsec_metadata(row)


def _format_sample_name(fmt: str, fields: Mapping[str, Any]) -> str:
    try:
        return fmt.format(**fields)
    except (KeyError, IndexError, ValueError) as err:
        raise YieldsError(
            f"sample name {fmt!r}: cannot format ({err}); fields are {sorted(fields)}"
        ) from err


def _point_yields(
    rows: pd.DataFrame,
    targets: Mapping[tuple[str, int], _Target],
    ws: _Workspace,
    np_names: Mapping[str, str],
    stat_col: bool,
) -> _PointYields:
    data: dict[str, np.ndarray] = {}
    stat: dict[str, np.ndarray] | None = {} if stat_col else None
    sys: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    regions = rows["region"].to_numpy()
    bins = rows["bin"].to_numpy()
    y = rows["yield"].to_numpy(dtype=float)
    su = rows["stat_unc"].to_numpy(dtype=float) if stat_col else None
    sys_arrays = {
        s: (rows[f"sys_{s}_up"].to_numpy(dtype=float), rows[f"sys_{s}_down"].to_numpy(dtype=float))
        for s in np_names
    }
    for k in range(len(rows)):
        t = targets[(regions[k], int(bins[k]))]
        n = ws.channels[t.channel].nbins
        if t.channel not in data:
            data[t.channel] = np.zeros(n)
            if stat is not None:
                stat[t.channel] = np.zeros(n)
            sys[t.channel] = {np_names[s]: (np.zeros(n), np.zeros(n)) for s in np_names}
        data[t.channel][t.bin] = y[k]
        if stat is not None and su is not None:
            stat[t.channel][t.bin] = su[k]
        for s, (up, down) in sys_arrays.items():
            sys[t.channel][np_names[s]][0][t.bin] = up[k]
            sys[t.channel][np_names[s]][1][t.bin] = down[k]
    return _PointYields(data, stat, sys)


VALIDATE_MODES: tuple[str, ...] = ("fast", "full", "none")


def _validate(
    patchset: Mapping[str, Any],
    bkg: Mapping[str, Any],
    bkg_source: str,
    *,
    mode: str,
    progress: bool,
) -> None:
    """Validate a generated PatchSet before it is returned (and written), through the
    validation boundary (:mod:`likelihood.validate`).

    ``fast``: PatchSet schema, points and digest; every patch against the background
    (:class:`likelihood.validate.PatchTarget`: each added sample checked in the context of
    its channel and of the background's parameters; a bad one raises what
    ``compile(apply_patch(bkg, patch))`` raises, with the JSON path and the value).
    ``full``: in addition, every patched workspace fully validated (schema + semantics).
    """
    from likelihood.errors import InvalidSpecification
    from likelihood.validate import PatchTarget, validate_patchset, validate_workspace

    if mode == "none":
        return
    validate_patchset(patchset, source="generated patchset", bkgonly=bkg, patches=False)
    target = PatchTarget(bkg)
    iterator: Iterable[Any] = patchset["patches"]
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="validate", unit="patch")
    for p in iterator:
        name = p["metadata"]["name"]
        try:
            target.check(p["patch"], source=name)
        except InvalidSpecification as err:
            raise type(err)(f"{bkg_source} + patch {name}: {err}") from err
        if mode == "full":
            validate_workspace(
                target.apply(p["patch"], source=name), source=f"{bkg_source} + patch {name}"
            )


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------


def write_patchset(
    patchset: Mapping[str, Any], path: str | os.PathLike[str], *, indent: int | None = None
) -> Path:
    """Write a PatchSet as JSON atomically (temp file in the same folder, then rename)."""
    p = Path(path)
    atomic_write_text(p, json.dumps(patchset, indent=indent, allow_nan=False) + "\n")
    return p


def write_patch_files(patchset: Mapping[str, Any], directory: str | os.PathLike[str]) -> list[Path]:
    """Write each patch as ``directory/patch.<name>.json`` (a list of operations), atomically.

    This is the layout of legacy HEPData archives (one JSON Patch file per point).
    """
    d = Path(directory)
    out = []
    for p in patchset["patches"]:
        name = p["metadata"]["name"]
        out.append(d / f"patch.{name}.json")
        atomic_write_text(out[-1], json.dumps(p["patch"], allow_nan=False) + "\n")
    return out


# ---------------------------------------------------------------------------------------
# reverse: patchset -> tidy yields
# ---------------------------------------------------------------------------------------


def yields_from_patchset(
    bkgonly: Mapping[str, Any] | str | os.PathLike[str],
    patchset: Mapping[str, Any] | str | os.PathLike[str],
) -> pd.DataFrame:
    """Extract the signal yields of a PatchSet into the tidy format.

    Every ``add`` of a sample to ``/channels/<i>/samples/<j>`` gives rows ``region`` = the
    channel's name, ``bin``, ``yield`` = the sample's data and, when the sample has a
    ``staterror`` or ``shapesys`` modifier, ``stat_unc`` = its absolute uncertainty.  The
    ``name`` column holds the patch names; labels are the PatchSet's labels.  Patches that
    add no sample give no rows (logged).

    Returns
    -------
    pandas.DataFrame
        Columns ``<labels>, name, region, bin, yield[, stat_unc]``; ``attrs["labels"]`` set.
    """
    from likelihood import read_json

    bkg, _ = _as_bkgonly(bkgonly)
    ps = dict(patchset) if isinstance(patchset, Mapping) else read_json(patchset)
    labels = list(ps["metadata"]["labels"])
    names = [c["name"] for c in bkg["channels"]]
    records: list[dict[str, Any]] = []
    any_stat = False
    for p in ps["patches"]:
        meta = p["metadata"]
        values = list(meta["values"])
        per_channel: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for op in p["patch"]:
            m = _ADD_SAMPLE_RE.match(str(op.get("path", "")))
            if op.get("op") != "add" or not m or not isinstance(op.get("value"), Mapping):
                continue
            sample = op["value"]
            cname = names[int(m.group(1))]
            data = np.asarray(sample["data"], dtype=float)
            stat = None
            for mod in sample.get("modifiers", []):
                if mod["type"] in ("staterror", "shapesys"):
                    stat = np.asarray(mod["data"], dtype=float)
            if cname in per_channel:
                old, old_stat = per_channel[cname]
                log.warning(
                    "patch %s adds two samples to channel %s: yields summed", meta["name"], cname
                )
                stat = None if stat is None or old_stat is None else np.hypot(stat, old_stat)
                data = data + old
            per_channel[cname] = (data, stat)
        if not per_channel:
            log.warning("patch %s adds no signal sample: no rows", meta["name"])
        for cname in names:
            if cname not in per_channel:
                continue
            data, stat = per_channel[cname]
            for b, y in enumerate(data):
                rec = dict(zip(labels, values, strict=True))
                rec.update(name=meta["name"], region=cname, bin=b, **{"yield": float(y)})
                if stat is not None:
                    rec["stat_unc"] = float(stat[b])
                    any_stat = True
                records.append(rec)
    df = pd.DataFrame.from_records(records)
    if any_stat and "stat_unc" in df.columns and df["stat_unc"].isna().any():
        df["stat_unc"] = df["stat_unc"].fillna(0.0)
    df.attrs["labels"] = labels
    df.attrs["source"] = "patchset"
    return df
