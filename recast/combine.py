"""Combining several published likelihoods into one workspace (and one signal patchset).

A combination is one HistFactory workspace whose channels are the (disjoint) channels of
several analyses, whose nuisance parameters are shared where the analyses mean the same
uncertainty and kept apart where they do not, and whose external constraint terms and
measurement parameter settings appear once.  The signal patches of the analyses combine
too: one patch per grid point, matched by the point's label values, rewritten for the
channel names and channel indices of the combined workspace.

Rules (``docs/combine.md`` explains them with examples):

channels
    keep their names; names that occur in more than one analysis are an error unless
    ``prefixes`` are given (then those channels become ``<prefix>_<channel>``), or every
    channel is prefixed with ``always_prefix=True``.
parameters
    ``correlate="auto"``: a parameter name used by several analyses is one shared
    parameter when its constraint is of the same kind everywhere (normsys/histosys:
    unit Gaussian; lumi; normfactor; shapefactor of the same size).  A same-named
    parameter whose constraint differs is kept apart (renamed ``<analysis>_<param>`` in each
    analysis) with a warning.  MC-statistical parameters (staterror, shapesys) belong to
    their channel and are never shared.  ``rename`` (``{"ANA:param": "new"}``) renames or
    correlates explicitly.  The POI of every analysis becomes one POI.
settings
    measurement parameter settings (bounds, inits, fixed, auxdata, sigmas) are merged
    once per combined parameter; settings that differ are an error naming both analyses
    unless ``settings`` gives the value to use (starting values only warn).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from recast._documents import read_json_or_toml
from recast.errors import CombineError

__all__ = [
    "combine",
    "combine_likelihoods",
    "Combination",
    "read_combine_mapping",
    "write_combination",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_MCSTAT = frozenset({"staterror", "shapesys"})
_SETTING_KEYS = ("bounds", "fixed", "auxdata", "sigmas", "factors")
_JOINS = ("exact", "inner", "outer")
SUMMARY_COLUMNS = ["analysis", "source", "kind", "name", "combined_name", "status", "note"]


class Combination(NamedTuple):
    """The result of :func:`combine_likelihoods`.

    Attributes
    ----------
    workspace : dict
        The combined HistFactory workspace (validated).
    patchset : dict or None
        The combined PatchSet (validated against ``workspace``); None when no patchsets
        were given.
    summary : pandas.DataFrame
        One row per channel and per parameter of every analysis: columns ``analysis,
        source, kind ("channel" | "parameter"), name, combined_name, status, note``.
        Status of a channel: ``kept``, ``prefixed``, ``dropped``; of a parameter:
        ``poi``, ``shared`` (one parameter of several analyses), ``own`` (one analysis
        only), ``renamed`` (mapping), ``kept_apart`` (same name, other constraint),
        ``dropped`` (only in dropped channels).
    points : pandas.DataFrame
        One row per grid point of any input patchset: the label columns, ``patch`` (name
        in the combined patchset, empty if left out), ``analyses`` (comma-separated names
        of the analyses that have the point) and ``kept`` (bool).  No rows without
        patchsets.
    """

    workspace: dict[str, Any]
    patchset: dict[str, Any] | None
    summary: pd.DataFrame
    points: pd.DataFrame


# ---------------------------------------------------------------------------------------
# inputs


class _Input:
    """One analysis: its workspace, its measurement and its parameters."""

    def __init__(self, index: int, name: str, source: str, spec: dict[str, Any]) -> None:
        from likelihood.spec import get_measurement

        self.index = index
        self.name = name
        self.source = source
        self.spec = spec
        self.measurement = get_measurement(spec)
        self.poi: str = self.measurement["config"]["poi"]
        self.channels: list[str] = [c["name"] for c in spec["channels"]]
        self.config: dict[str, dict[str, Any]] = {
            p["name"]: dict(p) for p in self.measurement["config"].get("parameters", [])
        }
        self.kept: list[int] = list(range(len(self.channels)))
        self.types: dict[str, set[str]] = {}
        self.sizes: dict[str, int] = {}
        self.all_types: dict[str, set[str]] = _modifier_types(spec["channels"])

    @property
    def label(self) -> str:
        return f"{self.name} ({self.source})"

    def collect(self) -> None:
        """Parameters of the channels that are kept."""
        channels = [self.spec["channels"][k] for k in self.kept]
        self.types = _modifier_types(channels)
        self.sizes = {}
        for c in channels:
            for s in c["samples"]:
                for m in s["modifiers"]:
                    if m["type"] == "shapefactor":
                        self.sizes[m["name"]] = len(s["data"])

    def known(self) -> set[str]:
        return set(self.all_types) | set(self.config) | {self.poi}


def _modifier_types(channels: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in channels:
        for s in c["samples"]:
            for m in s["modifiers"]:
                out.setdefault(m["name"], set()).add(m["type"])
    return out


def _default_name(path: Path) -> str:
    stem = path.name[: -len(".json")] if path.name.lower().endswith(".json") else path.stem
    stem = re.sub(r"(?i)[_.-]?bkg_?only$", "", stem)
    if not stem:
        stem = path.resolve().parent.name
    stem = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_")
    return stem or "analysis"


def _load_inputs(workspaces: Any, prefixes: Sequence[str] | None) -> list[_Input]:
    from likelihood.errors import InvalidSpecification
    from likelihood.spec import read_json
    from likelihood.validate import validate_workspace

    if isinstance(workspaces, Mapping) and "channels" in workspaces:
        raise CombineError("combine takes a list of workspaces (at least two), not one workspace")
    items: list[tuple[str | None, Any]]
    if isinstance(workspaces, Mapping):
        items = [(str(k), v) for k, v in workspaces.items()]
    elif isinstance(workspaces, Sequence) and not isinstance(workspaces, (str, bytes)):
        items = [(None, w) for w in workspaces]
    else:
        raise CombineError(
            "combine takes a list of workspaces (dicts or paths), or a mapping name -> workspace"
        )
    if len(items) < 2:
        raise CombineError(f"a combination needs at least two workspaces, got {len(items)}")
    if prefixes is not None:
        if len(prefixes) != len(items):
            raise CombineError(
                f"give one prefix per workspace: {len(prefixes)} prefix(es) {list(prefixes)} "
                f"for {len(items)} workspaces"
            )
        items = [(str(p), w) for p, (_, w) in zip(prefixes, items, strict=True)]
    inputs = []
    for i, (name, ws) in enumerate(items):
        if isinstance(ws, (str, os.PathLike)):
            source = str(ws)
            try:
                spec = read_json(ws)
            except InvalidSpecification as err:
                raise CombineError(f"cannot read workspace {i + 1}: {err}") from err
            default = _default_name(Path(ws))
        elif isinstance(ws, Mapping):
            spec = copy.deepcopy(dict(ws))
            source = f"workspace {i + 1}"
            default = f"ana{i + 1}"
        else:
            raise CombineError(f"workspace {i + 1}: give a dict or a path, got {type(ws).__name__}")
        validate_workspace(spec, source=source)
        if len(spec["measurements"]) > 1:
            log.warning(
                "%s has %d measurements; the combination uses the first, %r",
                source,
                len(spec["measurements"]),
                spec["measurements"][0]["name"],
            )
        inputs.append(_Input(i, name or default, source, spec))
    names = [x.name for x in inputs]
    if prefixes is None and len(set(names)) != len(names):
        # derived names repeat (e.g. two BkgOnly.json): number them
        seen: dict[str, int] = {}
        for x in inputs:
            seen[x.name] = seen.get(x.name, 0) + 1
        for x in inputs:
            if seen[x.name] > 1:
                x.name = f"{x.name}{x.index + 1}"
        names = [x.name for x in inputs]
    for x in inputs:
        if not _NAME.match(x.name):
            raise CombineError(
                f"{x.source}: analysis name {x.name!r} may hold only letters, digits and _ "
                "(it prefixes channel and parameter names); give another prefix"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CombineError(f"the analysis names (prefixes) repeat: {dupes}; give distinct ones")
    return inputs


# ---------------------------------------------------------------------------------------
# mapping file


def read_combine_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a combination mapping file (JSON, or TOML with ``tomllib`` / ``tomli``).

    Two forms.  Flat: ``{"ANA1:JES_1": "JES_1", "ANA2:lumi": "lumi"}`` (each key
    ``<analysis>:<parameter>``, each value the name in the combination).  Sectioned:
    ``{"rename": {...flat form...}, "settings": {"lumi": {"fixed": true}}, "labels":
    {"ANA": {"mn2": "m1"}}}`` where ``settings`` gives measurement settings of combined
    parameters (overriding the inputs') and ``labels`` renames the point labels of an
    analysis' patchset.  TOML needs Python >= 3.11 (``tomllib``) or the ``tomli`` package
    on 3.10.

    Returns
    -------
    dict
        ``{"rename": {str: str}, "settings": {str: dict}, "labels": {str: {str: str}}}``.
    """
    p = Path(path)
    doc = read_json_or_toml(p, CombineError)
    return _parse_mapping(doc, str(p))


def _parse_mapping(doc: Any, source: str) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise CombineError(f'{source}: a mapping is an object {{"ANA:param": "new name"}}')
    rename: dict[str, str] = {}
    settings: dict[str, dict[str, Any]] = {}
    labels: dict[str, dict[str, str]] = {}
    for key, value in doc.items():
        if key == "rename":
            if not isinstance(value, Mapping):
                raise CombineError(f"{source}: /rename must be an object ANA:param -> name")
            for k, v in value.items():
                rename[str(k)] = v
        elif key == "settings":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, Mapping) for v in value.values()
            ):
                raise CombineError(
                    f"{source}: /settings must map parameter names to settings objects, e.g. "
                    '{"lumi": {"fixed": true}}'
                )
            settings = {str(k): dict(v) for k, v in value.items()}
        elif key == "labels":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, Mapping) and all(isinstance(n, str) for n in v.values())
                for v in value.values()
            ):
                raise CombineError(
                    f"{source}: /labels must map analysis names to label renames, e.g. "
                    '{"3L_eRJR": {"mn2": "m1", "mn1": "m2"}}'
                )
            labels = {str(k): {str(a): b for a, b in v.items()} for k, v in value.items()}
        elif ":" in str(key):
            rename[str(key)] = value
        else:
            raise CombineError(
                f"{source}: key {key!r} is neither ANA:param nor 'rename' / 'settings' / "
                "'labels'; write "
                'renames as {"ANA1:JES_1": "JES_1"}'
            )
    for k, v in rename.items():
        if not isinstance(v, str) or not v:
            raise CombineError(f"{source}: {k!r} must map to a parameter name, got {v!r}")
    return {"rename": rename, "settings": settings, "labels": labels}


# ---------------------------------------------------------------------------------------
# channels


def _drop(inputs: list[_Input], drop_channels: Sequence[str]) -> set[tuple[int, str]]:
    by_name = {x.name: x for x in inputs}
    dropped: set[tuple[int, str]] = set()
    for item in drop_channels:
        ana, sep, channel = str(item).rpartition(":")
        if sep and ana in by_name:
            targets = [by_name[ana]]
        elif sep:
            raise CombineError(
                f"drop channel {item!r}: no analysis named {ana!r}; analyses: {', '.join(by_name)}"
            )
        else:
            targets = [x for x in inputs if channel in x.channels]
        hits = [x for x in targets if channel in x.channels]
        if not hits:
            where = "; ".join(f"{x.label}: {', '.join(x.channels)}" for x in targets or inputs)
            raise CombineError(f"drop channel {item!r}: no such channel ({where})")
        if not sep and len(hits) > 1:
            raise CombineError(
                f"drop channel {channel!r}: it is in {', '.join(x.label for x in hits)}; "
                f"write ANA:{channel} to say which"
            )
        for x in hits:
            dropped.add((x.index, channel))
    for x in inputs:
        x.kept = [k for k, c in enumerate(x.channels) if (x.index, c) not in dropped]
        if not x.kept:
            raise CombineError(f"{x.label}: every channel is dropped; leave it out instead")
        x.collect()
    return dropped


def _channel_names(
    inputs: list[_Input], prefixed: bool, always: bool
) -> dict[tuple[int, str], str]:
    owners: dict[str, list[_Input]] = {}
    for x in inputs:
        for k in x.kept:
            owners.setdefault(x.channels[k], []).append(x)
    clashes = {c: xs for c, xs in owners.items() if len(xs) > 1}
    if clashes and not (prefixed or always):
        c, xs = next(iter(clashes.items()))
        more = (
            f" (and {len(clashes) - 1} more: {', '.join(list(clashes)[1:4])})"
            if len(clashes) > 1
            else ""
        )
        raise CombineError(
            f"channel name clash: {c!r} is in {' and '.join(x.label for x in xs)}{more}; give "
            "one prefix per workspace (prefixes=[...] / --prefix NAME; clashing channels become "
            "NAME_<channel>) or always_prefix=True / --always-prefix, or drop one of them "
            "(drop_channels=[...] / --drop-channel ANA:CHANNEL)"
        )
    names: dict[tuple[int, str], str] = {}
    for x in inputs:
        for k in x.kept:
            c = x.channels[k]
            names[(x.index, c)] = f"{x.name}_{c}" if (always or c in clashes) else c
    final = list(names.values())
    repeated = sorted({n for n in final if final.count(n) > 1})
    if repeated:
        raise CombineError(
            f"after prefixing, channel names still repeat: {repeated}; choose other prefixes"
        )
    return names


# ---------------------------------------------------------------------------------------
# parameters


def _kind(types: set[str], size: int | None) -> str:
    """The constraint kind of a parameter: what must agree for it to be shared."""
    if types & _MCSTAT:
        return "mcstat"
    if types <= {"normsys", "histosys"}:
        return "gaussian"
    if types == {"shapefactor"}:
        return f"shapefactor[{size}]"
    if len(types) == 1:
        return next(iter(types))
    return "+".join(sorted(types))


def _describe(types: set[str]) -> str:
    return "/".join(sorted(types)) if types else "measurement setting only"


class _Params:
    """The name of every parameter of every analysis in the combination."""

    def __init__(
        self,
        inputs: list[_Input],
        *,
        poi: str,
        rename: Mapping[str, str],
        correlate: Any,
        mapping_source: str,
    ) -> None:
        self.inputs = inputs
        self.poi = poi
        self.mode = correlate
        self.claims: dict[str, int] | None = None  # set while rewriting one combined patch
        self.warned: set[tuple[int, str]] = set()
        self.final: list[dict[str, str]] = [{} for _ in inputs]
        self.status: list[dict[str, tuple[str, str]]] = [{} for _ in inputs]
        self.explicit: list[set[str]] = [set() for _ in inputs]
        by_name = {x.name: x for x in inputs}

        for key, new in rename.items():
            ana, _, par = key.partition(":")
            if ana not in by_name:
                raise CombineError(
                    f"mapping {mapping_source}: {key!r}: no analysis named {ana!r}; analyses: "
                    f"{', '.join(x.label for x in inputs)}"
                )
            x = by_name[ana]
            if par not in x.known():
                close = sorted(p for p in x.known() if par.lower()[:4] in p.lower())[:5]
                hint = f"; similar: {', '.join(close)}" if close else ""
                raise CombineError(
                    f"mapping {mapping_source}: {key!r}: {x.label} has no parameter {par!r}{hint}"
                )
            if par == x.poi:
                raise CombineError(
                    f"mapping {mapping_source}: {key!r} is the POI of {x.label}; the POIs of "
                    f"all analyses become one POI {poi!r} (choose its name with poi= / --poi)"
                )
            if not _NAME.match(new.replace("[", "").replace("]", "")):
                raise CombineError(f"mapping {mapping_source}: {key!r} -> {new!r}: not a name")
            if "lumi" in x.all_types.get(par, set()) and new != "lumi":
                raise CombineError(
                    f"mapping {mapping_source}: {key!r} -> {new!r}: {par!r} is a lumi "
                    "parameter, and a HistFactory workspace has one luminosity parameter "
                    "named 'lumi' (its constraint appears once); give its settings instead"
                )
            self.final[x.index][par] = new
            self.explicit[x.index].add(par)
            self.status[x.index][par] = ("renamed", f"mapping: {par} -> {new}")

        for x in inputs:
            self.final[x.index][x.poi] = poi
            note = f"POI {x.poi} -> {poi}" if x.poi != poi else "POI"
            self.status[x.index][x.poi] = ("poi", note)
            targets = [self.final[x.index][p] for p in sorted(self.explicit[x.index])]
            for new in set(targets):
                sources = [p for p in self.explicit[x.index] if self.final[x.index][p] == new]
                others = [p for p in self._names(x) if p not in self.explicit[x.index]]
                if len(sources) > 1 or (new in others and new not in sources):
                    merged = sorted(set(sources) | ({new} & set(others)))
                    raise CombineError(
                        f"mapping {mapping_source}: {x.label}: {merged} would all become "
                        f"{new!r}; one analysis cannot merge its own parameters"
                    )

        # the remaining names: shared, or kept apart
        users: dict[str, list[_Input]] = {}
        for x in inputs:
            for p in self._names(x):
                if p not in self.final[x.index]:
                    users.setdefault(p, []).append(x)
        for p, xs in users.items():
            if len(xs) == 1:
                self.final[xs[0].index][p] = p
                self.status[xs[0].index][p] = ("own", "")
                continue
            kinds = {x.name: _kind(x.types[p], x.sizes.get(p)) for x in xs if x.types.get(p)}
            why = ""
            wanted = False
            if "mcstat" in kinds.values():
                why = "MC-statistical parameters belong to their channel"
                log.info("parameter %r is in %s: %s; kept apart", p, list(kinds), why)
                wanted = False
            elif "lumi" in kinds.values() or p == "lumi":
                if len(set(kinds.values())) > 1:
                    real = ", ".join(
                        f"{_describe(y.types[p])} in {y.label}" for y in xs if y.types.get(p)
                    )
                    raise CombineError(
                        f"parameter {p!r} is the luminosity in one analysis and not in "
                        f"another ({real}); rename the other one with a mapping"
                    )
                wanted = True  # one lumi per workspace, always shared
            elif len(set(kinds.values())) > 1:
                real = ", ".join(
                    f"{_describe(y.types[p])} in {y.label}" for y in xs if y.types.get(p)
                )
                why = f"same name, other constraint: {real}"
                log.warning(
                    "parameter %r has the same name but another constraint: %s; kept apart "
                    "(one per analysis); correlate it explicitly with a mapping if that is meant",
                    p,
                    real,
                )
                wanted = False
            else:
                wanted = self._wanted(p)
            if not why and wanted:
                for x in xs:
                    self.final[x.index][p] = p
                    with_others = ", ".join(y.name for y in xs if y is not x)
                    self.status[x.index][p] = ("shared", f"with {with_others}")
                continue
            if not why:
                why = "correlate='none'" if self.mode == "none" else "not in correlate"
            for x in xs:
                self.final[x.index][p] = f"{x.name}_{p}"
                self.status[x.index][p] = ("kept_apart", why)
        taken: dict[str, list[str]] = {}
        for x in inputs:
            for p, new in self.final[x.index].items():
                taken.setdefault(new, []).append(f"{x.name}:{p}")
        for x in inputs:
            for p, new in self.final[x.index].items():
                if self.status[x.index][p][0] == "kept_apart":
                    clash = [k for k in taken[new] if k != f"{x.name}:{p}"]
                    if clash:
                        raise CombineError(
                            f"{x.label}: parameter {p!r} is kept apart as {new!r}, but "
                            f"{clash[0]} has that name too; rename one with a mapping"
                        )
        # explicit correlations must be compatible constraints
        for new, keys in taken.items():
            if len(keys) < 2:
                continue
            anas = [k.partition(":")[0] for k in keys]
            same = [k for k in keys if anas.count(k.partition(":")[0]) > 1]
            if same:
                raise CombineError(
                    f"parameters {', '.join(same)} would all become {new!r}; one analysis "
                    "cannot merge its own parameters: rename one with a mapping"
                )
            kinds2 = {}
            for k in keys:
                ana, _, p = k.partition(":")
                x = by_name[ana]
                if x.types.get(p):
                    kinds2[k] = _kind(x.types[p], x.sizes.get(p))
            if len(set(kinds2.values())) > 1 and new != poi:
                raise CombineError(
                    f"parameters {', '.join(kinds2)} would be one parameter {new!r}, but their "
                    f"constraints differ ({', '.join(f'{k}: {v}' for k, v in kinds2.items())}); "
                    "give them different names in the mapping"
                )

    def _names(self, x: _Input) -> list[str]:
        out = list(x.types)
        out += [p for p in x.config if p not in x.types and p not in x.all_types]
        if x.poi not in out:
            out.append(x.poi)
        return out

    def _wanted(self, p: str) -> bool:
        if self.mode == "auto":
            return True
        if self.mode == "none":
            return False
        return p in self.mode

    def name(self, x: _Input, par: str, mtype: str | None = None) -> str:
        """The combined name of parameter ``par`` of analysis ``x`` (also patch-only ones)."""
        if mtype == "lumi":
            return "lumi"  # the schema allows one luminosity parameter, named lumi
        if par in self.final[x.index]:
            return self.final[x.index][par]
        # a parameter that only a signal patch brings in (e.g. a signal cross-section
        # uncertainty): shared by name, as in the workspace, except MC statistics and
        # when nothing is to be shared
        apart = mtype in _MCSTAT or not self._wanted(par)
        elsewhere = any(par in self.final[y.index].values() for y in self.inputs if y is not x)
        if elsewhere and not apart and mtype is not None:
            theirs = {
                _kind(y.types[q], None).split("[")[0]
                for y in self.inputs
                if y is not x
                for q, f in self.final[y.index].items()
                if f == par and y.types.get(q)
            }
            if theirs and _kind({mtype}, None).split("[")[0] not in theirs:
                apart = True
                if (x.index, par) not in self.warned:
                    self.warned.add((x.index, par))
                    log.warning(
                        "a signal patch of %s brings in %s %r, a parameter of another kind in "
                        "another analysis; kept apart as %r",
                        x.label,
                        mtype,
                        par,
                        f"{x.name}_{par}",
                    )
        if elsewhere and apart:
            return f"{x.name}_{par}"
        if self.claims is not None and apart:
            # two analyses' patches bring in the same new name (e.g. staterror_SR of
            # two prefixed SR channels): the first keeps it
            if self.claims.setdefault(par, x.index) != x.index:
                return f"{x.name}_{par}"
        return par


def _norm(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [_norm(e) for e in v]
    return v


def _defaults(types: set[str], is_poi: bool) -> dict[str, Any]:
    if is_poi or types & {"normfactor", "shapefactor"}:
        return {"bounds": [[0.0, 10.0]], "inits": [1.0], "fixed": False}
    if types and types <= {"normsys", "histosys"}:
        return {
            "bounds": [[-5.0, 5.0]],
            "inits": [0.0],
            "fixed": False,
            "auxdata": [0.0],
            "sigmas": [1.0],
        }
    return {"fixed": False}


def _fix(x: _Input, p: str, new: str, key: str, value: Any) -> str:
    setting = f'{{"settings": {{"{new}": {{"{key}": {json.dumps(value)}}}}}}}'
    if new == "lumi":
        return f"give the value to use in the mapping, e.g. {setting} (one lumi per workspace)"
    return (
        f'keep them apart with a mapping {{"{x.name}:{p}": "{x.name}_{p}"}} or give the '
        f"value to use in the mapping, e.g. {setting}"
    )


def _merge_settings(
    inputs: list[_Input],
    params: _Params,
    overrides: Mapping[str, Mapping[str, Any]],
    dropped_params: set[tuple[int, str]],
) -> list[dict[str, Any]]:
    """One measurement parameter entry per combined parameter; conflicts are errors."""
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str], _Input] = {}
    present: dict[str, list[tuple[_Input, str]]] = {}
    for x in inputs:
        for p in params._names(x):
            present.setdefault(params.final[x.index][p], []).append((x, p))
    for x in inputs:
        for p, cfg in x.config.items():
            if (x.index, p) in dropped_params:
                continue
            new = params.name(x, p)
            entry = merged.setdefault(new, {"name": new})
            for key, value in cfg.items():
                if key == "name":
                    continue
                if key not in entry:
                    entry[key] = copy.deepcopy(value)
                    origin[(new, key)] = x
                    continue
                if _norm(entry[key]) == _norm(value) or new in overrides and key in overrides[new]:
                    continue
                first = origin[(new, key)]
                if key == "inits":
                    log.warning(
                        "parameter %r: starting value %s in %s, %s in %s; using the first",
                        new, entry[key], first.label, value, x.label,
                    )  # fmt: skip
                    continue
                if new == params.poi:
                    log.warning(
                        "POI %r: %s is %s in %s but %s in %s; using %s",
                        new, key, entry[key], first.label, value, x.label, entry[key],
                    )  # fmt: skip
                    continue
                raise CombineError(
                    f"conflicting setting of parameter {new!r}: {key} is "
                    f"{json.dumps(entry[key])} in {first.label} but {json.dumps(value)} in "
                    f"{x.label}; {_fix(x, p, new, key, entry[key])}"
                )
    # an analysis that leaves a setting at its default while another sets it
    for new, entry in merged.items():
        for x, p in present.get(new, []):
            given = x.config.get(p, {})
            defaults = _defaults(x.types.get(p, set()), p == x.poi)
            for key in _SETTING_KEYS:
                if key not in entry or key not in defaults or key in given:
                    continue
                if new in overrides and key in overrides[new]:
                    continue
                if _norm(entry[key]) != _norm(defaults[key]):
                    first = origin[(new, key)]
                    if new == params.poi:
                        log.warning(
                            "POI %r: %s is %s in %s and the default %s in %s; using %s",
                            new, key, entry[key], first.label, defaults[key], x.label,
                            entry[key],
                        )  # fmt: skip
                        continue
                    raise CombineError(
                        f"conflicting setting of parameter {new!r}: {key} is "
                        f"{json.dumps(entry[key])} in {first.label} but "
                        f"{json.dumps(defaults[key])} (the default) in {x.label}; "
                        f"{_fix(x, p, new, key, entry[key])}"
                    )
    for new, values in overrides.items():
        if new not in present and new not in merged:
            raise CombineError(
                f"settings for {new!r}: the combination has no parameter of that name"
            )
        entry = merged.setdefault(new, {"name": new})
        for key, value in values.items():
            if key == "name":
                continue
            entry[key] = copy.deepcopy(value)
    return list(merged.values())


# ---------------------------------------------------------------------------------------
# the workspace


def _rename_sample(sample: Mapping[str, Any], x: _Input, params: _Params) -> dict[str, Any]:
    out = copy.deepcopy(dict(sample))
    mods = out.get("modifiers")
    if isinstance(mods, list):
        for m in mods:
            if isinstance(m, dict) and isinstance(m.get("name"), str):
                m["name"] = params.name(x, m["name"], m.get("type"))
    return out


def _rename_channel(
    channel: Mapping[str, Any], x: _Input, params: _Params, name: str
) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in channel.items() if k != "samples"}
    out["name"] = name
    out["samples"] = [_rename_sample(s, x, params) for s in channel.get("samples", [])]
    return out


class _Plan(NamedTuple):
    inputs: list[_Input]
    params: _Params
    channel_names: dict[tuple[int, str], str]
    workspace: dict[str, Any]
    summary: pd.DataFrame
    always_prefix: bool
    prefixed: bool
    relabel: dict[str, dict[str, str]]


def _plan(
    workspaces: Any,
    *,
    prefixes: Sequence[str] | None,
    always_prefix: bool,
    correlate: Any,
    rename: Mapping[str, str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    mapping: str | os.PathLike[str] | Mapping[str, Any] | None,
    drop_channels: Sequence[str],
    poi: str | None,
) -> _Plan:
    from likelihood.validate import validate_workspace

    if isinstance(correlate, str):
        if correlate not in ("auto", "none"):
            raise CombineError(
                f"correlate must be 'auto', 'none' or parameter names, got {correlate!r}"
            )
    elif isinstance(correlate, Collection):
        correlate = frozenset(str(c) for c in correlate)
    else:
        raise CombineError(
            f"correlate must be 'auto', 'none' or parameter names, got {correlate!r}"
        )
    inputs = _load_inputs(workspaces, prefixes)
    mapping_source = "rename"
    rename_all: dict[str, str] = {}
    settings_all: dict[str, dict[str, Any]] = {}
    relabel: dict[str, dict[str, str]] = {}
    if mapping is not None:
        if isinstance(mapping, Mapping):
            doc = _parse_mapping(mapping, "mapping")
            mapping_source = "mapping"
        else:
            doc = read_combine_mapping(mapping)
            mapping_source = str(mapping)
        rename_all.update(doc["rename"])
        settings_all.update(doc["settings"])
        relabel.update(doc["labels"])
    if rename:
        rename_all.update(_parse_mapping(dict(rename), "rename")["rename"])
    if settings:
        settings_all.update(_parse_mapping({"settings": dict(settings)}, "settings")["settings"])

    _drop(inputs, list(drop_channels))
    channel_names = _channel_names(inputs, prefixes is not None, always_prefix)
    common_poi = poi or inputs[0].poi
    params = _Params(
        inputs,
        poi=common_poi,
        rename=rename_all,
        correlate=correlate,
        mapping_source=mapping_source,
    )
    # parameters that only dropped channels used: their settings go too
    dropped_params = {
        (x.index, p) for x in inputs for p in x.all_types if p not in x.types and p != x.poi
    }
    parameters = _merge_settings(inputs, params, settings_all, dropped_params)

    channels = []
    observations = []
    for x in inputs:
        for k in x.kept:
            c = x.channels[k]
            new = channel_names[(x.index, c)]
            channels.append(_rename_channel(x.spec["channels"][k], x, params, new))
        for o in x.spec["observations"]:
            if (x.index, o["name"]) in channel_names:
                entry = copy.deepcopy(dict(o))
                entry["name"] = channel_names[(x.index, o["name"])]
                observations.append(entry)
    first = inputs[0].measurement
    workspace = {
        "channels": channels,
        "measurements": [
            {
                "name": first["name"],
                "config": {"poi": common_poi, "parameters": parameters},
            }
        ],
        "observations": observations,
        "version": "1.0.0",
    }
    validate_workspace(workspace, source="combined workspace")

    rows = []
    for x in inputs:
        for c in x.channels:
            renamed = channel_names.get((x.index, c))
            if renamed is None:
                status, note = "dropped", "drop_channels"
            elif renamed != c:
                status, note = "prefixed", ""
            else:
                status, note = "kept", ""
            rows.append((x.name, x.source, "channel", c, renamed or "", status, note))
        for p in params._names(x):
            status, note = params.status[x.index].get(p, ("own", ""))
            rows.append((x.name, x.source, "parameter", p, params.final[x.index][p], status, note))
        for p in sorted(x.all_types):
            if p not in x.types and p != x.poi:
                rows.append((x.name, x.source, "parameter", p, "", "dropped", "dropped channels"))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return _Plan(
        inputs,
        params,
        channel_names,
        workspace,
        summary,
        always_prefix,
        prefixes is not None,
        relabel,
    )


# ---------------------------------------------------------------------------------------
# patches


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"not a JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _render(parts: Sequence[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Rewriter:
    """Rewrites one analysis' patch ops onto the combined workspace, op by op.

    It follows the channel and observation lists of the analysis' own workspace (as its
    patch sees them) and those of the combined workspace, so that indices stay right
    after ``remove /channels/N`` and ``add /channels/N`` of earlier operations.
    """

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.out_ch: list[tuple[int, Any]] = []
        self.out_obs: list[tuple[int, Any]] = []
        self.in_ch: list[list[tuple[int, Any]]] = []
        self.in_obs: list[list[tuple[int, Any]]] = []
        self.names: set[str] = set()
        for x in plan.inputs:
            self.in_ch.append([(x.index, c) for c in x.channels])
            self.in_obs.append([(x.index, o["name"]) for o in x.spec["observations"]])
            for k in x.kept:
                self.out_ch.append((x.index, x.channels[k]))
            for o in x.spec["observations"]:
                if (x.index, o["name"]) in plan.channel_names:
                    self.out_obs.append((x.index, o["name"]))
        self.names = set(plan.channel_names.values())
        self.new_names: dict[tuple[int, Any], str] = {}
        self.counter = 0
        plan.params.claims = {}

    def _insert_at(
        self, own: list[tuple[int, Any]], out: list[tuple[int, Any]], i: int, idx: int
    ) -> int:
        for tok in own[idx:]:
            if tok in out:
                return out.index(tok)
        for tok in reversed(own[:idx]):
            if tok in out:
                return out.index(tok) + 1
        pos = 0
        for j, tok in enumerate(out):
            if tok[0] <= i:
                pos = j + 1
        return pos

    def _new_channel_name(self, x: _Input, name: str, where: str) -> str:
        clash = name in self.names
        if self.plan.always_prefix or (clash and self.plan.prefixed):
            name = f"{x.name}_{name}"
            clash = name in self.names
        if clash:
            raise CombineError(
                f"{where}: the patch adds channel {name!r}, which the combination has already; "
                "give prefixes (prefixes= / --prefix) or always_prefix=True / --always-prefix"
            )
        return name

    def rewrite(self, x: _Input, op: Mapping[str, Any], where: str) -> dict[str, Any] | None:
        i = x.index
        kind = op.get("op")
        try:
            parts = _pointer(str(op.get("path")))
        except ValueError as err:
            raise CombineError(f"{where}: {err}") from err
        if "from" in op or kind in ("move", "copy"):
            raise CombineError(
                f"{where}: {kind} {op.get('path')}: move/copy operations cannot be rewritten "
                "for a combination; write the patch with add/remove/replace"
            )
        new = dict(op)
        if not parts or parts[0] not in ("channels", "observations", "measurements"):
            raise CombineError(
                f"{where}: {kind} {op.get('path')}: only /channels, /observations and "
                "/measurements/<i>/config/parameters can be patched in a combination"
            )
        head = parts[0]
        if head == "measurements":
            return self._measurement(x, op, parts, where)
        own = self.in_ch[i] if head == "channels" else self.in_obs[i]
        out = self.out_ch if head == "channels" else self.out_obs
        if len(parts) < 2:
            raise CombineError(f"{where}: {kind} {op.get('path')}: cannot patch the whole list")
        idx_s = parts[1]
        if idx_s == "-":
            idx = len(own)
        else:
            try:
                idx = int(idx_s)
            except ValueError as err:
                raise CombineError(f"{where}: {op.get('path')}: {idx_s!r} is not an index") from err
            if not 0 <= idx <= len(own) or (
                idx == len(own) and not (kind == "add" and len(parts) == 2)
            ):
                raise CombineError(
                    f"{where}: {kind} {op.get('path')}: index {idx} is out of range (the "
                    f"workspace {x.label} has {len(own)} {head} at this point)"
                )
        if len(parts) == 2:
            if kind == "add":
                tok = (i, ("new", self.counter))
                self.counter += 1
                pos = self._insert_at(own, out, i, idx)
                own.insert(idx, tok)
                out.insert(pos, tok)
                value = op.get("value")
                if isinstance(value, Mapping) and isinstance(value.get("name"), str):
                    if head == "channels":
                        name = self._new_channel_name(x, value["name"], where)
                        self.names.add(name)
                        self.new_names[(i, value["name"])] = name
                        new["value"] = _rename_channel(value, x, self.plan.params, name)
                    else:
                        entry = copy.deepcopy(dict(value))
                        entry["name"] = self._channel(x, value["name"])
                        new["value"] = entry
                new["path"] = _render([head, pos])
                return new
            tok = own[idx]
            if kind == "remove":
                own.pop(idx)
            if tok not in out:
                return None  # a dropped channel
            pos = out.index(tok)
            if kind == "remove":
                out.pop(pos)
            elif "value" in op and isinstance(op["value"], Mapping):
                value = op["value"]
                if head == "channels":
                    new["value"] = _rename_channel(
                        value, x, self.plan.params, self._channel(x, value.get("name", ""))
                    )
                else:
                    entry = copy.deepcopy(dict(value))
                    entry["name"] = self._channel(x, value.get("name", ""))
                    new["value"] = entry
            new["path"] = _render([head, pos])
            return new
        tok = own[idx]
        if tok not in out:
            return None
        pos = out.index(tok)
        rest = parts[2:]
        if "value" in op:
            new["value"] = self._value(x, head, rest, op["value"])
        new["path"] = _render([head, pos, *rest])
        return new

    def _channel(self, x: _Input, name: str) -> str:
        return self.plan.channel_names.get(
            (x.index, name), self.new_names.get((x.index, name), name)
        )

    def _value(self, x: _Input, head: str, rest: list[str], value: Any) -> Any:
        params = self.plan.params
        if head == "observations":
            if rest == ["name"] and isinstance(value, str):
                return self._channel(x, value)
            return copy.deepcopy(value)
        if rest == ["name"]:
            return self._channel(x, value) if isinstance(value, str) else value
        if rest == ["samples"] and isinstance(value, list):
            return [_rename_sample(s, x, params) if isinstance(s, Mapping) else s for s in value]
        if len(rest) == 2 and rest[0] == "samples" and isinstance(value, Mapping):
            return _rename_sample(value, x, params)
        if len(rest) == 3 and rest[2] == "modifiers" and isinstance(value, list):
            return _rename_sample({"modifiers": value}, x, params)["modifiers"]
        if len(rest) == 4 and rest[2] == "modifiers" and isinstance(value, Mapping):
            return _rename_sample({"modifiers": [value]}, x, params)["modifiers"][0]
        if len(rest) == 5 and rest[2] == "modifiers" and rest[4] == "name":
            return params.name(x, value) if isinstance(value, str) else value
        return copy.deepcopy(value)

    def _measurement(
        self, x: _Input, op: Mapping[str, Any], parts: list[str], where: str
    ) -> dict[str, Any] | None:
        own_index = x.spec["measurements"].index(
            next(m for m in x.spec["measurements"] if m["name"] == x.measurement["name"])
        )
        if len(parts) >= 2 and parts[1] != str(own_index):
            return None  # a measurement the combination does not use
        if (
            op.get("op") == "add"
            and len(parts) == 5
            and parts[2:4] == ["config", "parameters"]
            and isinstance(op.get("value"), Mapping)
        ):
            value = dict(op["value"])
            value["name"] = self.plan.params.name(x, str(value.get("name", "")))
            for entry in self.plan.workspace["measurements"][0]["config"]["parameters"]:
                if entry["name"] == value["name"]:
                    if {k: _norm(v) for k, v in entry.items()} == {
                        k: _norm(v) for k, v in value.items()
                    }:
                        return None
                    raise CombineError(
                        f"{where}: the patch sets parameter {value['name']!r} to "
                        f"{json.dumps(op['value'])}, but the combination has {json.dumps(entry)}"
                    )
            return {"op": "add", "path": "/measurements/0/config/parameters/-", "value": value}
        raise CombineError(
            f"{where}: {op.get('op')} {op.get('path')}: of a measurement only "
            "'add /measurements/<i>/config/parameters/-' can be rewritten for a combination"
        )


def _value_key(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return ("s", str(v))
    return ("n", float(v))


def _legacy_folder(path: Path, bkgonly: dict[str, Any]) -> dict[str, Any]:
    """A folder of legacy ``patch.<name>.json`` files as a PatchSet (as scan reads it)."""
    try:
        from recast.archive import legacy_patchset  # type: ignore[attr-defined]
    except ImportError:
        from recast.scan import _patchset_from_folder

        return _patchset_from_folder(path, bkgonly, None)
    return dict(legacy_patchset(path, bkgonly, labels=None))


def _load_patchset(ps: Any, x: _Input) -> tuple[dict[str, Any], str]:
    from likelihood.validate import validate_patch, validate_patchset

    if ps is None:
        return {}, ""
    if isinstance(ps, (str, os.PathLike)):
        path = Path(ps)
        source = str(path)
        if path.is_dir():
            doc = _legacy_folder(path, x.spec)
            for p in doc["patches"]:
                validate_patch(p["patch"], source=f"{source}, patch {p['metadata']['name']}")
            return doc, source
        from likelihood.errors import InvalidSpecification
        from likelihood.spec import read_json

        try:
            doc = read_json(path)
        except InvalidSpecification as err:
            raise CombineError(f"cannot read the patchset of {x.name}: {err}") from err
    elif isinstance(ps, Mapping):
        doc = dict(ps)
        source = f"patchset of {x.name}"
    else:
        raise CombineError(f"patchset of {x.name}: give a dict or a path, got {type(ps).__name__}")
    validate_patchset(doc, source=source, bkgonly=x.spec)
    return doc, source


def _patch_checker(workspace: dict[str, Any]) -> Any:
    """``check(ops, name)``: the core's check of ``apply_patch(workspace, ops)``.

    ``likelihood.validate.PatchTarget`` (raises what compiling the patched workspace
    raises, with a fast path for signal patches) where the core has it, else
    :func:`likelihood.validate_workspace` on the patched workspace.
    """
    try:
        from likelihood.validate import PatchTarget  # type: ignore[attr-defined]
    except ImportError:
        from likelihood.spec import apply_patch
        from likelihood.validate import validate_workspace

        def check(ops: Any, name: str) -> None:
            validate_workspace(apply_patch(workspace, ops, source=name))

        return check
    target = PatchTarget(workspace)
    return lambda ops, name: target.check(ops, source=name)


def _combine_patchsets(
    plan: _Plan,
    patchsets: Sequence[Any],
    join: str,
    hepdata: str | None,
    validate: bool,
    progress: bool = False,
    relabel: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    from likelihood.errors import InvalidSpecification
    from likelihood.spec import digest
    from likelihood.validate import validate_patchset

    inputs = plan.inputs
    relabel = dict(relabel or {})
    for ana in relabel:
        if ana not in {x.name for x in inputs}:
            raise CombineError(
                f"label renames for {ana!r}: no analysis of that name; analyses: "
                f"{', '.join(x.name for x in inputs)}"
            )
    if len(patchsets) != len(inputs):
        raise CombineError(
            f"give one patchset per workspace, in the same order: {len(patchsets)} "
            f"patchset(s) for {len(inputs)} workspaces"
        )
    loaded = [_load_patchset(ps, x) for ps, x in zip(patchsets, inputs, strict=True)]
    with_ps = [(x, doc, src) for x, (doc, src) in zip(inputs, loaded, strict=True) if doc]
    if not with_ps:
        return None, pd.DataFrame(columns=["patch", "analyses", "kept"])
    x0, doc0, src0 = with_ps[0]
    own_labels: dict[int, list[str]] = {}
    for x, doc, src in with_ps:
        renames = dict(relabel.get(x.name, {}))
        unknown = sorted(set(renames) - set(doc["metadata"]["labels"]))
        if unknown:
            raise CombineError(
                f"label renames for {x.name}: {src} has no label {unknown[0]!r}; its labels: "
                f"{doc['metadata']['labels']}"
            )
        own_labels[x.index] = [renames.get(lab, lab) for lab in doc["metadata"]["labels"]]
    labels = own_labels[x0.index]
    for x, _doc, src in with_ps[1:]:
        other = own_labels[x.index]
        if sorted(other) != sorted(labels) or len(set(other)) != len(other):
            raise CombineError(
                f"the points do not match: {src0} ({x0.name}) has labels {labels} but {src} "
                f"({x.name}) has {other}; the patchsets must label their points alike "
                f'(rename labels with the mapping\'s "labels": {{"{x.name}": {{"old": "new"}}}})'
            )
    refs = [
        (doc.get("metadata", {}).get("references") or {}).get("hepdata") for _, doc, _ in with_ps
    ]
    hep = hepdata or next((r for r in refs if r), None)
    if hep is None:
        raise CombineError(
            "the PatchSet format needs metadata.references.hepdata, and no input patchset has "
            "one: give hepdata='insNNNNNNN' (--hepdata)"
        )
    # point key -> (values, {analysis index: patch})
    points: dict[tuple[Any, ...], tuple[list[Any], dict[int, Mapping[str, Any]]]] = {}
    for x, doc, _ in with_ps:
        order = [own_labels[x.index].index(lab) for lab in labels]
        for p in doc["patches"]:
            values = [p["metadata"]["values"][j] for j in order]
            key = tuple(_value_key(v) for v in values)
            points.setdefault(key, (values, {}))[1][x.index] = p
    n_all = len(with_ps)
    partial = {k: v for k, v in points.items() if len(v[1]) < n_all}
    names = {x.index: x.name for x in inputs}
    srcs = {x.index: src for x, _, src in with_ps}

    def _show(values: list[Any]) -> str:
        return ",".join(f"{lab}={v}" for lab, v in zip(labels, values, strict=True))

    if partial:
        # (analysis that lacks points, analysis that has them) -> examples
        missing: dict[tuple[int, int], list[str]] = {}
        for values, got in partial.values():
            for x, _, _ in with_ps:
                if x.index not in got:
                    missing.setdefault((x.index, min(got)), []).append(_show(values))
        report = "; ".join(
            f"{names[h]} ({srcs[h]}) has {len(v)} point(s) missing in {names[i]} ({srcs[i]}), "
            f"e.g. {v[0]}"
            for (i, h), v in missing.items()
        )
        if join == "exact":
            raise CombineError(
                f"the points do not match: {report}; use join='inner' / --join inner (common "
                "points only) or join='outer' / --join outer (every point, with the analyses "
                "that have it)"
            )
        log.warning("points present in some analyses only (join=%s): %s", join, report)
    keep = [k for k, v in points.items() if join == "outer" or len(v[1]) == n_all]
    if not keep:
        raise CombineError(
            f"the points do not match: no point is in every patchset "
            f"({', '.join(f'{names[x.index]}: {src}' for x, _, src in with_ps)}); "
            "use join='outer' / --join outer to keep every point"
        )
    patches: list[dict[str, Any]] = []
    used: set[str] = set()
    records = []
    keep_set = set(keep)
    items: Any = points.items()
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, total=len(points), desc="combine patches", unit="point")
    for key, (values, got) in items:
        rec: dict[str, Any] = dict(zip(labels, values, strict=True))
        rec["analyses"] = ",".join(names[i] for i in sorted(got))
        rec["kept"] = key in keep_set
        rec["patch"] = ""
        if key in keep_set:
            first = got[min(got)]
            name = str(first["metadata"]["name"])
            if name in used:
                name = re.sub(r"[^A-Za-z0-9_]", "_", "combined_" + "_".join(map(str, values)))
            while name in used:
                name += "_"
            used.add(name)
            rw = _Rewriter(plan)
            ops = []
            for i in sorted(got):
                x = inputs[i]
                where = f"{srcs[i]}, patch {got[i]['metadata']['name']!r}"
                for k, op in enumerate(got[i]["patch"]):
                    out = rw.rewrite(x, op, f"{where}, operation {k}")
                    if out is not None:
                        ops.append(out)
            patches.append({"metadata": {"name": name, "values": values}, "patch": ops})
            rec["patch"] = name
        records.append(rec)
    description = "recastkit combination of " + ", ".join(
        f"{x.name}" + (f" ({r})" if r else "") for (x, _, _), r in zip(with_ps, refs, strict=True)
    )
    combined = {
        "metadata": {
            "description": description,
            "digests": {"sha256": digest(plan.workspace)},
            "labels": labels,
            "references": {"hepdata": hep},
        },
        "patches": patches,
        "version": "1.0.0",
    }
    validate_patchset(combined, source="combined patchset", bkgonly=plan.workspace)
    if validate:
        checked: Any = patches
        if progress:
            from tqdm.auto import tqdm

            checked = tqdm(patches, desc="validate", unit="patch")
        check = _patch_checker(plan.workspace)
        for p in checked:
            name = p["metadata"]["name"]
            try:
                check(p["patch"], name)
            except InvalidSpecification as err:
                raise type(err)(
                    f"combined patchset, patch {name!r} on the combined workspace: {err}"
                ) from err
    table = pd.DataFrame(records, columns=[*labels, "patch", "analyses", "kept"])
    return combined, table


# ---------------------------------------------------------------------------------------
# public functions


def combine_likelihoods(
    workspaces: Sequence[Mapping[str, Any] | str | os.PathLike[str]]
    | Mapping[str, Mapping[str, Any] | str | os.PathLike[str]],
    *,
    patchsets: Sequence[Mapping[str, Any] | str | os.PathLike[str] | None] | None = None,
    join: str = "exact",
    prefixes: Sequence[str] | None = None,
    always_prefix: bool = False,
    correlate: str | Collection[str] = "auto",
    rename: Mapping[str, str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    mapping: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    drop_channels: Sequence[str] = (),
    poi: str | None = None,
    relabel: Mapping[str, Mapping[str, str]] | None = None,
    hepdata: str | None = None,
    validate: bool = True,
    progress: bool = False,
) -> Combination:
    """Combine several analyses' workspaces (and their signal patchsets) into one.

    Parameters
    ----------
    workspaces : sequence of (dict or path), or mapping name -> (dict or path)
        Background-only workspaces, at least two.  Their names (used as prefixes, in
        mapping keys and in the summary) are ``prefixes``, else the mapping keys, else
        the file names without ``_bkgonly`` / ``BkgOnly`` (the folder name for a plain
        ``BkgOnly.json``), else ``ana1, ana2, ...``.
    patchsets : sequence, optional
        One patchset per workspace (dict, ``patchset.json`` path, folder of legacy
        ``patch.<name>.json`` files, or None for an analysis without signal).
    join : {"exact", "inner", "outer"}
        Points are matched by their label values.  ``exact``: every patchset must have
        the same points (else an error listing the differences); ``inner``: the points
        common to all; ``outer``: every point, each with the analyses that have it.
    prefixes : sequence of str, optional
        One name per workspace.  Given, channels whose names clash become
        ``<prefix>_<channel>``; not given, a clash is an error.
    always_prefix : bool
        Prefix every channel.
    correlate : "auto", "none" or collection of str
        Which same-named parameters are shared: ``auto`` those with the same kind of
        constraint; ``none`` none (the POI and explicit renames excepted); a collection:
        those names only.  The others are renamed ``<analysis>_<name>``.
    rename : mapping, optional
        ``{"ANA:param": "new name"}``: renames (or correlates, by giving the same name)
        parameters explicitly.  Unknown analyses or parameters are an error.
    settings : mapping, optional
        ``{"param": {"fixed": True, ...}}``: measurement settings of combined parameters,
        overriding the inputs' (and resolving their conflicts).
    mapping : path or mapping, optional
        A mapping file (JSON or TOML) with renames and settings, see
        :func:`read_combine_mapping`; ``rename`` and ``settings`` are applied after it.
    drop_channels : sequence of str
        Channels to leave out, ``ANA:CHANNEL`` or a ``CHANNEL`` name found in one
        workspace only.  Signal patch operations into them are left out too.
    poi : str, optional
        Name of the combined POI (default: the first analysis's POI).
    relabel : mapping, optional
        ``{"ANA": {"old label": "new label"}}``: label renames, for patchsets that name the
        same point coordinates differently (also the ``labels`` section of a mapping file).
    hepdata : str, optional
        INSPIRE id for the combined patchset (default: the first input's reference).
    validate : bool
        Also apply every combined patch and validate the patched workspace.
    progress : bool
        Show tqdm progress bars over the points.

    Returns
    -------
    Combination
        ``(workspace, patchset, summary, points)``.

    Raises
    ------
    recast.errors.CombineError
        Clashing channel names, conflicting parameter settings, unknown names in the
        mapping, points that do not match, ... (one line naming the files and names).
    likelihood.errors.InvalidWorkspace, likelihood.errors.InvalidPatch
        An input or the result fails validation.
    """
    if join not in _JOINS:
        raise CombineError(f"join must be one of {', '.join(_JOINS)}, got {join!r}")
    plan = _plan(
        workspaces,
        prefixes=prefixes,
        always_prefix=always_prefix,
        correlate=correlate,
        rename=rename,
        settings=settings,
        mapping=mapping,
        drop_channels=drop_channels,
        poi=poi,
    )
    patchset = None
    points = pd.DataFrame(columns=["patch", "analyses", "kept"])
    if patchsets is not None:
        names = {**plan.relabel, **{k: dict(v) for k, v in (relabel or {}).items()}}
        patchset, points = _combine_patchsets(
            plan, list(patchsets), join, hepdata, validate, progress, names
        )
    return Combination(plan.workspace, patchset, plan.summary, points)


def combine(
    workspaces: Sequence[Mapping[str, Any] | str | os.PathLike[str]]
    | Mapping[str, Mapping[str, Any] | str | os.PathLike[str]],
    *,
    prefixes: Sequence[str] | None = None,
    always_prefix: bool = False,
    correlate: str | Collection[str] = "auto",
    rename: Mapping[str, str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    mapping: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    drop_channels: Sequence[str] = (),
    poi: str | None = None,
) -> dict[str, Any]:
    """Combine several background-only workspaces into one validated workspace.

    The options are those of :func:`combine_likelihoods` (which also combines signal
    patchsets and returns the summary table); this returns only the workspace.

    Returns
    -------
    dict
        The combined HistFactory workspace.
    """
    return combine_likelihoods(
        workspaces,
        prefixes=prefixes,
        always_prefix=always_prefix,
        correlate=correlate,
        rename=rename,
        settings=settings,
        mapping=mapping,
        drop_channels=drop_channels,
        poi=poi,
    ).workspace


def write_combination(
    result: Combination,
    output: str | os.PathLike[str],
    *,
    patchset_output: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the combined workspace (and patchset) as JSON, each atomically.

    Both documents are serialised before either file is written, so a failure leaves
    no file behind.
    """
    from recast._io import atomic_write_text

    texts = [(Path(output), json.dumps(result.workspace, indent=1, allow_nan=False) + "\n")]
    if result.patchset is not None:
        if patchset_output is None:
            raise CombineError("the combination has a patchset: give patchset_output")
        texts.append((Path(patchset_output), json.dumps(result.patchset, allow_nan=False) + "\n"))
    if len(texts) == 2 and texts[0][0].resolve() == texts[1][0].resolve():
        raise CombineError(f"{output}: the workspace and the patchset need different files")
    return [atomic_write_text(path, text) for path, text in texts]
