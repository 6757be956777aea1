"""The validation boundary: HistFactory JSON workspaces, JSON patches and patchsets.

This module is the only place that knows what a valid workspace, patch, sample and
modifier are: the schemas, the fast structural pre-check, the semantic rules, the one
:data:`MODIFIER_TYPES`, the paths of the operations that add a sample
(:data:`SAMPLE_ADD_PATH`) or remove a channel (:data:`CHANNEL_REMOVE_PATH`), and the one
fast path of a signal patch applied to its background (:class:`PatchTarget`).  Every
path that accepts a workspace or a patch (``compile``, ``Background.with_patch``, the
``validate_*`` functions, make-patch, scan, combine) calls it.

Two stages, as pyhf does it:

1. **Schema**: our own JSON Schemas (Draft 7, in :mod:`likelihood.schemas`), written
   against the HistFactory JSON 1.0.0 format, check the structure: required keys, types,
   no unknown keys, known modifier types and the shape of each modifier's ``data``.
2. **Semantics**: what a schema cannot say: bin counts that agree within a channel, one
   observation per channel, unique names, finite numbers, non-negative observations and
   nominal yields, modifier names reused with compatible types and sizes, and measurement
   parameter settings that fit the parameters they configure.

Every problem raises an :class:`~likelihood.errors.InvalidSpecification` subclass whose
message names the document (``source``), the JSON pointer of the offending element
(``/channels/2/samples/0/data/3``), the bad value, and how to fix it.  Suspicious but
legal content (negative histosys variations, a measurement setting for a parameter that
no modifier uses) is logged as a warning instead.

See ``docs/workspace-validation.md`` for the complete list of checks.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from likelihood._codes import MODIFIER_TYPES, SHARABLE_TYPES, UNCONSTRAINED_TYPES, VECTOR_TYPES
from likelihood.errors import InvalidPatch, InvalidSpecification, InvalidWorkspace
from likelihood.spec import apply_patch, digest, json_path

if TYPE_CHECKING:  # jsonschema is imported when a schema is needed (the fast path does not)
    import jsonschema
    import referencing

__all__ = [
    "MODIFIER_TYPES",
    "SAMPLE_ADD_PATH",
    "CHANNEL_REMOVE_PATH",
    "PatchTarget",
    "PatchPlan",
    "AddedSample",
    "validate_workspace",
    "validate_patch",
    "validate_patchset",
    "validate_patchset_points",
    "load_schema",
]

log = logging.getLogger(__name__)


#: JSON pointer of an operation that adds one sample to a channel (``/channels/3/samples/-``)
SAMPLE_ADD_PATH = re.compile(r"^/channels/(0|[1-9][0-9]*)/samples/(0|[1-9][0-9]*|-)$")
#: JSON pointer of an operation that removes a whole channel (``/channels/3``)
CHANNEL_REMOVE_PATH = re.compile(r"^/channels/(0|[1-9][0-9]*)$")

# The modifier-type names live in likelihood._codes (MODIFIER_TYPES, in pyhf's builder
# order, is re-exported here): per-bin types, unconstrained types, types sharing a parameter
_VECTOR_TYPES = VECTOR_TYPES
_UNCONSTRAINED_TYPES = UNCONSTRAINED_TYPES
_COMPATIBLE_TYPES = (SHARABLE_TYPES,)

_SCHEMA_FILES = ("model.json", "measurement.json", "workspace.json", "patch.json", "patchset.json")

# At most this many problems are listed in one message.
_MAX_PROBLEMS = 10


# --------------------------------------------------------------------------------------
# schemas


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Return one of the bundled JSON Schemas (``"workspace"``, ``"model"``,
    ``"measurement"``, ``"patch"`` or ``"patchset"``), read with :mod:`importlib.resources`."""
    filename = name if name.endswith(".json") else f"{name}.json"
    if filename not in _SCHEMA_FILES:
        raise ValueError(f"no bundled schema {name!r}; available: {list(_SCHEMA_FILES)}")
    text = resources.files("likelihood.schemas").joinpath(filename).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _registry() -> referencing.Registry:
    import referencing
    import referencing.jsonschema

    resources_ = []
    for filename in _SCHEMA_FILES:
        schema = load_schema(filename)
        resource = referencing.Resource.from_contents(
            schema, default_specification=referencing.jsonschema.DRAFT7
        )
        resources_.append((schema["$id"], resource))
    registry: referencing.Registry = referencing.Registry().with_resources(resources_)
    return registry


@functools.cache
def _validator(name: str, pointer: str = "") -> jsonschema.protocols.Validator:
    """A Draft 7 validator for a bundled schema, or a definition inside it."""
    import jsonschema

    schema: dict[str, Any] = load_schema(name)
    if pointer:
        schema = {"$ref": f"{schema['$id']}#{pointer}"}
    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(
        schema, registry=_registry()
    )
    return validator


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_schema_error(err: jsonschema.ValidationError) -> str:
    """One sentence for a schema violation: what is wrong with which value, and the fix."""
    kw = err.validator
    inst = err.instance
    schema_val = err.validator_value
    if kw == "required":
        missing = [k for k in schema_val if isinstance(inst, Mapping) and k not in inst]
        return f"missing required key(s) {missing}; add them"
    if kw == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in inst if k not in allowed) if isinstance(inst, Mapping) else []
        return f"unexpected key(s) {extra}; remove them (allowed keys: {allowed})"
    if kw == "type":
        return (
            f"value {_short(inst)} has type {type(inst).__name__}, expected JSON type "
            f"{schema_val!r}; correct the value"
        )
    if kw == "enum":
        path = list(err.absolute_path)
        if path and path[-1] == "type":
            return (
                f"unknown modifier type {_short(inst)}; HistFactory JSON 1.0.0 knows "
                f"{list(schema_val)}"
            )
        if path and path[-1] == "op":
            return f"unknown JSON patch operation {_short(inst)}; RFC 6902 knows {list(schema_val)}"
        return f"value {_short(inst)} is not one of {list(schema_val)}"
    if kw == "const":
        return f"value {_short(inst)} must be {schema_val!r}"
    if kw in ("minItems", "maxItems"):
        n = len(inst) if isinstance(inst, Sized) else "?"
        word = "at least" if kw == "minItems" else "at most"
        return f"array {_short(inst)} has {n} item(s), needs {word} {schema_val}"
    if kw == "minLength":
        return f"string {_short(inst)} must not be empty"
    if kw == "pattern":
        return f"string {_short(inst)} does not match the pattern {schema_val!r}"
    if kw == "minProperties":
        return f"object {_short(inst)} needs at least {schema_val} key(s)"
    if kw == "not":
        return f"{_short(inst)} has a key that this operation must not have"
    message = err.message
    return message if len(message) <= 300 else message[:297] + "..."


def _schema_check(
    doc: Any,
    schema: str,
    *,
    where: str,
    error: type[InvalidSpecification],
    pointer: str = "",
    prefix: Sequence[str | int] = (),
) -> None:
    import jsonschema

    validator = _validator(schema, pointer)
    errors = list(validator.iter_errors(doc))
    if not errors:
        return
    # Deepest, most specific errors first; `best_match` descends into if/then branches.
    best = jsonschema.exceptions.best_match(errors)
    if best is None:  # pragma: no cover - best_match only returns None for no errors
        return
    others = [e for e in errors if e is not best]
    lines = [
        f"{where}: schema violation at {json_path([*prefix, *best.absolute_path])}: "
        f"{_describe_schema_error(best)}"
    ]
    for e in others[: _MAX_PROBLEMS - 1]:
        lines.append(
            f"  also at {json_path([*prefix, *e.absolute_path])}: {_describe_schema_error(e)}"
        )
    if len(others) > _MAX_PROBLEMS - 1:
        lines.append(f"  ... and {len(others) - _MAX_PROBLEMS + 1} more schema violation(s)")
    raise error("\n".join(lines))


# --------------------------------------------------------------------------------------
# fast path
#
# jsonschema needs ~3 s for a 1 MB workspace (1Lbb) and ~0.4 s per 1Lbb signal patch, which
# would dominate the time per grid point.  These plain-Python predicates accept a document
# only if it certainly satisfies the bundled schema AND holds finite numbers only; when
# they say False (or for any document they do not understand), the slow path runs
# jsonschema for the precise message.  Soundness (fast True => schema-valid) is tested
# against jsonschema on every real workspace and on thousands of random mutations
# (tests/test_likelihood_validation.py).

_POINTER = re.compile(r"^(/([^~]|~[01])*)*$")
_IDENTIFIER = re.compile(r"^[a-zA-Z0-9_]+$")
_SHA256 = re.compile(r"^[a-fA-F0-9]{64}$")
_MD5 = re.compile(r"^[a-fA-F0-9]{32}$")
_HEPDATA = re.compile(r"^ins[0-9]{7}$")


# an integer beyond this does not fit a float64: as good as infinite
_FLOAT_MAX = 1.7976931348623157e308


def _fast_number(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    return isinstance(x, int) and not isinstance(x, bool) and -_FLOAT_MAX <= x <= _FLOAT_MAX


def _fast_numbers(seq: Any) -> bool:
    if not isinstance(seq, list) or not seq:
        return False
    for x in seq:
        if isinstance(x, float):
            if not math.isfinite(x):
                return False
        elif not isinstance(x, int) or isinstance(x, bool) or not -_FLOAT_MAX <= x <= _FLOAT_MAX:
            return False
    return True


def _fast_name(x: Any) -> bool:
    return isinstance(x, str) and len(x) > 0


def _fast_keys(obj: Any, required: frozenset[str], allowed: frozenset[str]) -> bool:
    if not isinstance(obj, dict):
        return False
    keys = obj.keys()
    return required <= keys and keys <= allowed


_K_MOD = frozenset({"name", "type", "data"})
_K_NORMSYS = frozenset({"hi", "lo"})
_K_HISTOSYS = frozenset({"hi_data", "lo_data"})
_K_SAMPLE = frozenset({"name", "data", "modifiers"})
_K_CHANNEL = frozenset({"name", "samples"})
_K_OBS = frozenset({"name", "data"})
_K_MEAS = frozenset({"name", "config"})
_K_CONFIG = frozenset({"poi", "parameters"})
_K_PAR_REQ = frozenset({"name"})
_K_PAR = frozenset({"name", "inits", "bounds", "auxdata", "factors", "sigmas", "fixed"})
_K_WS = frozenset({"channels", "measurements", "observations", "version"})
_K_OP = frozenset({"op", "path"})
_K_OP_ALL = frozenset({"op", "path", "from", "value"})
_K_PS = frozenset({"metadata", "patches", "version"})
_K_PS_META = frozenset({"description", "digests", "labels", "references"})
_K_PATCH = frozenset({"metadata", "patch"})
_K_PATCH_META = frozenset({"name", "values"})
_K_EMPTY: frozenset[str] = frozenset()


def _fast_modifier(m: Any) -> bool:
    if not _fast_keys(m, _K_MOD, _K_MOD) or not _fast_name(m["name"]):
        return False
    mtype, data = m["type"], m["data"]
    if mtype == "histosys":
        return (
            _fast_keys(data, _K_HISTOSYS, _K_HISTOSYS)
            and _fast_numbers(data["hi_data"])
            and _fast_numbers(data["lo_data"])
        )
    if mtype == "normsys":
        return (
            _fast_keys(data, _K_NORMSYS, _K_NORMSYS)
            and _fast_number(data["hi"])
            and _fast_number(data["lo"])
        )
    if mtype in ("staterror", "shapesys"):
        return _fast_numbers(data)
    if mtype in ("normfactor", "shapefactor"):
        return data is None
    if mtype == "lumi":
        return data is None and m["name"] == "lumi"
    return False


def _fast_sample(s: Any) -> bool:
    return (
        _fast_keys(s, _K_SAMPLE, _K_SAMPLE)
        and _fast_name(s["name"])
        and _fast_numbers(s["data"])
        and isinstance(s["modifiers"], list)
        and all(_fast_modifier(m) for m in s["modifiers"])
    )


def _fast_channel(c: Any) -> bool:
    return (
        _fast_keys(c, _K_CHANNEL, _K_CHANNEL)
        and _fast_name(c["name"])
        and isinstance(c["samples"], list)
        and len(c["samples"]) > 0
        and all(_fast_sample(s) for s in c["samples"])
    )


def _fast_observation(o: Any) -> bool:
    return _fast_keys(o, _K_OBS, _K_OBS) and _fast_name(o["name"]) and _fast_numbers(o["data"])


def _fast_parameter(p: Any) -> bool:
    if not _fast_keys(p, _K_PAR_REQ, _K_PAR) or not _fast_name(p["name"]):
        return False
    for key in ("inits", "auxdata", "factors", "sigmas"):
        if key in p and not _fast_numbers(p[key]):
            return False
    if "bounds" in p:
        bounds = p["bounds"]
        if not isinstance(bounds, list) or not bounds:
            return False
        if not all(_fast_numbers(b) and len(b) == 2 for b in bounds):
            return False
    return "fixed" not in p or isinstance(p["fixed"], bool)


def _fast_measurement(m: Any) -> bool:
    if not _fast_keys(m, _K_MEAS, _K_MEAS) or not _fast_name(m["name"]):
        return False
    config = m["config"]
    return (
        _fast_keys(config, _K_CONFIG, _K_CONFIG)
        and isinstance(config["poi"], str)
        and isinstance(config["parameters"], list)
        and all(_fast_parameter(p) for p in config["parameters"])
    )


def _fast_workspace(spec: Any) -> bool:
    """True only if ``spec`` satisfies workspace.json and holds finite numbers only."""
    if not _fast_keys(spec, _K_WS, _K_WS) or spec["version"] != "1.0.0":
        return False
    if not isinstance(spec["version"], str):
        return False
    for key, check in (
        ("channels", _fast_channel),
        ("observations", _fast_observation),
        ("measurements", _fast_measurement),
    ):
        items = spec[key]
        if not isinstance(items, list) or not items or not all(check(x) for x in items):
            return False
    return True


def _fast_finite_json(obj: Any) -> bool:
    """True if ``obj`` is made of JSON types only, with finite numbers."""
    if isinstance(obj, str) or obj is None or isinstance(obj, bool):
        return True
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, int):
        return -_FLOAT_MAX <= obj <= _FLOAT_MAX
    if isinstance(obj, list):
        return all(_fast_finite_json(x) for x in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _fast_finite_json(v) for k, v in obj.items())
    return False


# path patterns of add / replace values with a fast check of their own
_VALUE_FAST: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"^/channels/(\d+|-)$"), _fast_channel),
    (re.compile(r"^/channels/\d+/samples/(\d+|-)$"), _fast_sample),
    (re.compile(r"^/channels/\d+/samples/\d+/modifiers/(\d+|-)$"), _fast_modifier),
    (re.compile(r"^/observations/(\d+|-)$"), _fast_observation),
    (re.compile(r"^/measurements/(\d+|-)$"), _fast_measurement),
    (re.compile(r"^/measurements/\d+/config/parameters/(\d+|-)$"), _fast_parameter),
)


def _fast_operation(op: Any) -> bool:
    if not _fast_keys(op, _K_OP, _K_OP_ALL):
        return False
    kind, path = op["op"], op["path"]
    if not isinstance(path, str) or not _POINTER.match(path):
        return False
    if kind in ("add", "replace", "test"):
        if "value" not in op or "from" in op:
            return False
    elif kind in ("move", "copy"):
        if "from" not in op or "value" in op:
            return False
        return isinstance(op["from"], str) and _POINTER.match(op["from"]) is not None
    elif kind == "remove":
        return "from" not in op and "value" not in op
    else:
        return False
    value = op["value"]
    if kind != "test":
        for pattern, check in _VALUE_FAST:
            if pattern.match(path):
                return bool(check(value))
    return _fast_finite_json(value)


def _fast_patch(ops: Any) -> bool:
    """True only if ``ops`` satisfies patch.json, the value schemas, and is finite."""
    return isinstance(ops, list) and all(_fast_operation(op) for op in ops)


def _fast_patchset(ps: Any, *, patches: bool = True) -> bool:
    """True only if ``ps`` satisfies patchset.json and is finite (with ``patches``: the
    operations of every patch included, else they are not looked at)."""
    if not _fast_keys(ps, _K_PS, _K_PS) or not isinstance(ps["version"], str):
        return False
    if ps["version"] != "1.0.0":
        return False
    meta = ps["metadata"]
    if not isinstance(meta, dict) or not _K_PS_META <= meta.keys():
        return False
    if not isinstance(meta["description"], str):
        return False
    digests = meta["digests"]
    if not _fast_keys(digests, frozenset({"sha256"}), frozenset({"sha256", "md5"})):
        return False
    if not isinstance(digests["sha256"], str) or not _SHA256.match(digests["sha256"]):
        return False
    if "md5" in digests and not (isinstance(digests["md5"], str) and _MD5.match(digests["md5"])):
        return False
    labels = meta["labels"]
    if not isinstance(labels, list) or not labels:
        return False
    if not all(isinstance(x, str) and _IDENTIFIER.match(x) for x in labels):
        return False
    refs = meta["references"]
    if not _fast_keys(refs, _K_EMPTY, frozenset({"hepdata"})) or not refs:
        return False
    if "hepdata" in refs and not (
        isinstance(refs["hepdata"], str) and _HEPDATA.match(refs["hepdata"])
    ):
        return False
    if not _fast_finite_json(meta):
        return False
    patches = ps["patches"]
    if not isinstance(patches, list) or not patches:
        return False
    for patch in patches:
        if not _fast_keys(patch, _K_PATCH, _K_PATCH):
            return False
        pmeta = patch["metadata"]
        if not isinstance(pmeta, dict) or not _K_PATCH_META <= pmeta.keys():
            return False
        name, values = pmeta["name"], pmeta["values"]
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            return False
        if not isinstance(values, list):
            return False
        if not all(isinstance(v, str) or _fast_number(v) for v in values):
            return False
        if not _fast_finite_json(pmeta):
            return False
        if patches and not _fast_patch(patch["patch"]):
            return False
    return True


# --------------------------------------------------------------------------------------
# problem collection


class _Problems:
    """Collects semantic problems, then raises them together."""

    def __init__(
        self, where: str, error: type[InvalidSpecification], *, quiet: bool = False
    ) -> None:
        self.where = where
        self.error = error
        self.items: list[str] = []
        # quiet: no log lines for legal oddities (the per-point checks of a patch repeat
        # what the background's own validation already logged once)
        self.quiet = quiet

    def log(self, level: int, msg: str, *args: Any) -> None:
        if not self.quiet:
            log.log(level, msg, *args)

    def add(self, parts: Sequence[str | int], text: str) -> None:
        self.items.append(f"{json_path(parts)}: {text}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        n = len(self.items)
        head = f"{self.where}: {n} problem(s) found" if n > 1 else f"{self.where}"
        if n == 1:
            raise self.error(f"{head}: {self.items[0]}")
        lines = [head + ":"] + [f"  {item}" for item in self.items[:_MAX_PROBLEMS]]
        if n > _MAX_PROBLEMS:
            lines.append(f"  ... and {n - _MAX_PROBLEMS} more")
        raise self.error("\n".join(lines))


def _non_finite(obj: Any, parts: list[str | int]) -> Iterator[tuple[list[str | int], float]]:
    """Yield (path, value) of every NaN or infinite number anywhere in a JSON document
    (an integer too large for a float64 counts as infinite)."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            yield list(parts), obj
    elif isinstance(obj, int) and not isinstance(obj, bool):
        if not -_FLOAT_MAX <= obj <= _FLOAT_MAX:
            yield list(parts), obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            parts.append(k)
            yield from _non_finite(v, parts)
            parts.pop()
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            parts.append(i)
            yield from _non_finite(v, parts)
            parts.pop()


def _check_finite(doc: Any, problems: _Problems, prefix: Sequence[str | int] = ()) -> None:
    for parts, value in _non_finite(doc, list(prefix)):
        problems.add(
            parts,
            f"non-finite number {_short(value, 40)}; every yield, uncertainty and setting must be "
            "a finite number (regenerate the file without NaN/inf)",
        )


def _duplicates(names: Sequence[Any]) -> dict[Any, list[int]]:
    seen: dict[Any, list[int]] = {}
    for i, name in enumerate(names):
        seen.setdefault(name, []).append(i)
    return {k: v for k, v in seen.items() if len(v) > 1}


# --------------------------------------------------------------------------------------
# workspace


def validate_workspace(
    spec: Any,
    *,
    source: str | None = None,
    require_poi: bool = False,
    measurement: str | None = None,
) -> None:
    """Validate a HistFactory JSON 1.0.0 workspace: schema, then semantic checks.

    Parameters
    ----------
    spec : mapping
        The workspace (``{"channels", "observations", "measurements", "version"}``).
    source : str, optional
        Name of the document in error messages (usually its file path).
    require_poi : bool, default False
        Also require that the POI of the measurement (``measurement`` or, when None, every
        measurement) is a scalar parameter of some modifier.  Background-only workspaces
        published on HEPData lack their POI until a signal patch adds it, so this is off by
        default.
    measurement : str, optional
        Name of the measurement that will be used; it must exist.

    Raises
    ------
    InvalidWorkspace
        Naming ``source``, the JSON pointer of every problem (up to 10), the offending
        value and the fix.
    """
    where = f"workspace {source}" if source else "workspace"
    problems = _Problems(where, InvalidWorkspace)
    if not _fast_workspace(spec):
        _schema_check(spec, "workspace", where=where, error=InvalidWorkspace)
        _check_finite(spec, problems)
        problems.raise_if_any()

    params = _check_channels(spec, problems)
    _check_measurements(spec, params, problems, require_poi=require_poi, measurement=measurement)
    problems.raise_if_any()


class _Param:
    """What the modifiers of a workspace say about one parameter name."""

    __slots__ = ("types", "size", "first", "channels")

    def __init__(self, mtype: str, size: int, first: list[str | int], channel: str) -> None:
        self.types = {mtype}
        self.size = size
        self.first = first
        self.channels = {channel}

    def copy(self) -> _Param:
        new = _Param.__new__(_Param)
        new.types, new.size, new.first = set(self.types), self.size, self.first
        new.channels = set(self.channels)
        return new


def _check_channels(spec: Mapping[str, Any], problems: _Problems) -> dict[str, _Param]:
    channels = spec["channels"]
    observations = spec["observations"]

    for name, idx in _duplicates([c["name"] for c in channels]).items():
        problems.add(
            ["channels", idx[1], "name"],
            f"duplicate channel name {name!r} (channels {idx}); give every channel a unique name",
        )
    for name, idx in _duplicates([o["name"] for o in observations]).items():
        problems.add(
            ["observations", idx[1], "name"],
            f"duplicate observation name {name!r} (observations {idx}); "
            "give every channel exactly one observation",
        )

    obs_by_name: dict[str, tuple[int, list[Any]]] = {}
    for j, obs in enumerate(observations):
        obs_by_name.setdefault(obs["name"], (j, obs["data"]))
        for b, n in enumerate(obs["data"]):
            if n < 0:
                problems.add(
                    ["observations", j, "data", b],
                    f"negative observed count {n!r} in channel {obs['name']!r}; "
                    "observations are event counts >= 0",
                )
    channel_names = {c["name"] for c in channels}
    for j, obs in enumerate(observations):
        if obs["name"] not in channel_names:
            # Legal, and common: signal patches remove validation-region channels and
            # leave their observations behind (sbottom); pyhf ignores them too.
            problems.log(
                logging.INFO,
                "%s: %s: observation %r has no channel of that name; it is ignored",
                problems.where,
                json_path(["observations", j, "name"]),
                obs["name"],
            )

    params: dict[str, _Param] = {}
    for c, channel in enumerate(channels):
        cname = channel["name"]
        if cname in obs_by_name:
            nbins = len(obs_by_name[cname][1])
            nbins_from = f"its observation /observations/{obs_by_name[cname][0]}"
        else:
            problems.add(
                ["channels", c, "name"],
                f"channel {cname!r} has no observation; add "
                f'{{"name": {cname!r}, "data": [...]}} to /observations',
            )
            nbins = len(channel["samples"][0]["data"])
            nbins_from = "its first sample"

        for name, idx in _duplicates([s["name"] for s in channel["samples"]]).items():
            problems.add(
                ["channels", c, "samples", idx[1], "name"],
                f"duplicate sample name {name!r} in channel {cname!r} (samples {idx}); "
                "sample names must be unique within a channel",
            )
        for s, sample in enumerate(channel["samples"]):
            _check_sample(
                sample, ["channels", c, "samples", s], cname, nbins, nbins_from, params, problems
            )
    return params


def _check_bins(
    values: Sequence[Any],
    parts: list[str | int],
    what: str,
    nbins: int,
    nbins_from: str,
    cname: str,
    problems: _Problems,
) -> bool:
    if len(values) != nbins:
        problems.add(
            parts,
            f"{what} has {len(values)} bin(s) but channel {cname!r} has {nbins} "
            f"(from {nbins_from}); every sample and modifier of a channel needs one entry per bin",
        )
        return False
    return True


def _check_sample(
    sample: Mapping[str, Any],
    parts: list[str | int],
    cname: str,
    nbins: int,
    nbins_from: str,
    params: dict[str, _Param],
    problems: _Problems,
) -> None:
    sname = sample["name"]
    label = f"sample {sname!r} of channel {cname!r}"
    if _check_bins(
        sample["data"], [*parts, "data"], f"{label}", nbins, nbins_from, cname, problems
    ):
        for b, y in enumerate(sample["data"]):
            if y < 0:
                problems.add(
                    [*parts, "data", b],
                    f"negative nominal yield {y!r} in {label}; expected event counts must be "
                    ">= 0 (set the bin to 0 or fix the input)",
                )

    mods = sample["modifiers"]
    for (mname, mtype), idx in _duplicates([(m["name"], m["type"]) for m in mods]).items():
        problems.add(
            [*parts, "modifiers", idx[1]],
            f"duplicate {mtype} modifier {mname!r} in {label} (modifiers {idx}); "
            "a sample may carry each modifier once: merge them",
        )

    for k, mod in enumerate(mods):
        mparts = [*parts, "modifiers", k]
        mname, mtype, data = mod["name"], mod["type"], mod["data"]
        mlabel = f"{mtype} modifier {mname!r} of {label}"
        if mtype == "normsys":
            for key in ("hi", "lo"):
                if data[key] <= 0:
                    problems.add(
                        [*mparts, "data", key],
                        f"{mlabel} has {key} = {data[key]!r}; normsys factors multiply the "
                        "yield and must be > 0 (use a histosys for sign changes)",
                    )
        elif mtype == "histosys":
            for key in ("hi_data", "lo_data"):
                if _check_bins(
                    data[key],
                    [*mparts, "data", key],
                    f"{mlabel} {key}",
                    nbins,
                    nbins_from,
                    cname,
                    problems,
                ):
                    negative = [b for b, v in enumerate(data[key]) if v < 0]
                    if negative:
                        problems.log(
                            logging.WARNING,
                            "%s: %s: %s has negative %s in bin(s) %s (legal, but the "
                            "interpolated yield may become negative)",
                            problems.where,
                            json_path([*mparts, "data", key]),
                            mlabel,
                            key,
                            negative,
                        )
        elif mtype in ("shapesys", "staterror"):
            if _check_bins(data, [*mparts, "data"], mlabel, nbins, nbins_from, cname, problems):
                for b, v in enumerate(data):
                    if v < 0:
                        problems.add(
                            [*mparts, "data", b],
                            f"negative uncertainty {v!r} in {mlabel}; {mtype} data are absolute "
                            "uncertainties >= 0",
                        )

        size = nbins if mtype in _VECTOR_TYPES else 1
        known = params.get(mname)
        if known is None:
            params[mname] = _Param(mtype, size, mparts, cname)
            continue
        types = known.types | {mtype}
        if len(types) > 1 and not any(types <= group for group in _COMPATIBLE_TYPES):
            problems.add(
                [*mparts, "type"],
                f"modifier name {mname!r} is used as {mtype} here but as "
                f"{sorted(known.types)} at {json_path(known.first)}; one parameter cannot be "
                "both: rename one of the modifiers",
            )
        elif known.size != size:
            problems.add(
                mparts,
                f"{mlabel} needs {size} parameter(s) (one per bin) but the same name has "
                f"{known.size} at {json_path(known.first)}; shared vector modifiers need "
                "channels with the same number of bins: rename one of them",
            )
        elif mtype == "staterror" and cname not in known.channels:
            problems.add(
                mparts,
                f"staterror modifier {mname!r} is also used in channel(s) "
                f"{sorted(known.channels)} (first at {json_path(known.first)}); a staterror "
                "belongs to one channel: name it per channel, e.g. 'staterror_<channel>'",
            )
        elif mtype == "shapesys":
            problems.add(
                mparts,
                f"shapesys modifier {mname!r} is also used at {json_path(known.first)}; a "
                "shapesys belongs to one sample (its constraint depends on that sample's "
                "yields): rename one of them",
            )
        known.types = types
        known.channels.add(cname)


def _check_measurements(
    spec: Mapping[str, Any],
    params: dict[str, _Param],
    problems: _Problems,
    *,
    require_poi: bool,
    measurement: str | None,
    only: frozenset[str] | None = None,
) -> None:
    """Checks of the measurements against the parameters ``params`` of the modifiers.

    ``only``: the checks that involve these parameter names only (the names a patch adds
    to, or changes in, a background whose measurements already passed in full).
    """
    measurements = spec["measurements"]
    if only is not None:
        _check_measurements_of(measurements, params, problems, require_poi, measurement, only)
        return
    names = [m["name"] for m in measurements]
    for name, idx in _duplicates(names).items():
        problems.add(
            ["measurements", idx[1], "name"],
            f"duplicate measurement name {name!r} (measurements {idx}); rename one",
        )
    if measurement is not None and measurement not in names:
        problems.add(
            ["measurements"],
            f"no measurement named {measurement!r}; available: {names}",
        )

    for i, meas in enumerate(measurements):
        settings = meas["config"]["parameters"]
        for pname, idx in _duplicates([p["name"] for p in settings]).items():
            problems.add(
                ["measurements", i, "config", "parameters", idx[1], "name"],
                f"parameter {pname!r} is configured twice in measurement {meas['name']!r} "
                f"(entries {idx}); merge the settings",
            )
    _check_measurements_of(measurements, params, problems, require_poi, measurement, None)


def _check_measurements_of(
    measurements: Sequence[Mapping[str, Any]],
    params: Mapping[str, _Param],
    problems: _Problems,
    require_poi: bool,
    measurement: str | None,
    only: frozenset[str] | None,
) -> None:
    for i, meas in enumerate(measurements):
        mparts: list[str | int] = ["measurements", i, "config"]
        config = meas["config"]
        settings = config["parameters"]
        for j, setting in enumerate(settings):
            if only is None or setting["name"] in only:
                _check_setting(
                    setting,
                    [*mparts, "parameters", j],
                    meas["name"],
                    config["poi"],
                    params,  # type: ignore[arg-type]
                    problems,
                )

        if "lumi" in params and (only is None or "lumi" in only):
            lumi = [p for p in settings if p["name"] == "lumi"]
            missing = [
                k for k in ("inits", "bounds", "auxdata", "sigmas") if not lumi or k not in lumi[0]
            ]
            if missing:
                problems.add(
                    [*mparts, "parameters", *([settings.index(lumi[0])] if lumi else [])],
                    f"measurement {meas['name']!r}: lumi parameter 'lumi' needs inits, bounds, "
                    f"auxdata and sigmas in the measurement's parameter settings (missing: "
                    f"{', '.join(missing)}), e.g. "
                    '{"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], '
                    '"bounds": [[0.9, 1.1]], "inits": [1.0]}',
                )

        poi = config["poi"]
        if only is not None and poi not in only:
            continue
        info = params.get(poi)
        used = measurement is None or meas["name"] == measurement
        if used and info is not None and (info.size != 1 or info.types & _VECTOR_TYPES):
            problems.add(
                [*mparts, "poi"],
                f"POI {poi!r} of measurement {meas['name']!r} is a {sorted(info.types)} "
                f"parameter of size {info.size}; the POI must be a scalar (a normfactor)",
            )
        elif used and require_poi and info is None:
            problems.add(
                [*mparts, "poi"],
                f"POI {poi!r} of measurement {meas['name']!r} is not the name of any "
                "modifier; add a normfactor of that name to the signal sample (a "
                "background-only workspace needs a signal patch first)",
            )


def _check_setting(
    setting: Mapping[str, Any],
    parts: list[str | int],
    mname: str,
    poi: str,
    params: dict[str, _Param],
    problems: _Problems,
) -> None:
    pname = setting["name"]
    info = params.get(pname)
    if info is None:
        # The POI of a background-only workspace is configured before a signal patch
        # adds its normfactor: expected, so only worth a debug line.
        problems.log(
            logging.DEBUG if pname == poi else logging.WARNING,
            "%s: %s: measurement %r configures parameter %r, which no modifier uses; "
            "the setting is ignored",
            problems.where,
            json_path([*parts, "name"]),
            mname,
            pname,
        )
        size = None
    else:
        size = info.size

    for key in ("inits", "bounds", "auxdata", "sigmas", "factors"):
        if key in setting and size is not None and len(setting[key]) != size:
            problems.add(
                [*parts, key],
                f"parameter {pname!r} has {size} component(s) but {key} has "
                f"{len(setting[key])}: {_short(setting[key])}; give one entry per component",
            )
    if info is not None and info.types <= _UNCONSTRAINED_TYPES:
        for key in ("auxdata", "sigmas"):
            if key in setting:
                problems.add(
                    [*parts, key],
                    f"parameter {pname!r} is a {sorted(info.types)[0]} without constraint "
                    f"term, so {key} {_short(setting[key])} means nothing; remove it",
                )
    if info is not None:
        # pyhf: only lumi and staterror take sigmas, only shapesys takes factors
        for key, owners in (("sigmas", {"lumi", "staterror"}), ("factors", {"shapesys"})):
            if key in setting and not info.types <= owners:
                problems.add(
                    [*parts, key],
                    f"parameter {pname!r} is a {'/'.join(sorted(info.types))} parameter, "
                    f"which takes no {key} (only {' and '.join(sorted(owners))} do); remove "
                    f"{key} {_short(setting[key])}",
                )
    for k, sigma in enumerate(setting.get("sigmas", [])):
        if sigma <= 0:
            problems.add(
                [*parts, "sigmas", k],
                f"sigma {sigma!r} of parameter {pname!r} must be > 0",
            )
    bounds = setting.get("bounds", [])
    for k, (lo, hi) in enumerate(bounds):
        if lo > hi:
            problems.add(
                [*parts, "bounds", k],
                f"bounds [{lo!r}, {hi!r}] of parameter {pname!r} have lower > upper; swap them",
            )
    inits = setting.get("inits", [])
    if len(inits) == len(bounds):
        for k, (init, (lo, hi)) in enumerate(zip(inits, bounds, strict=True)):
            if lo <= hi and not lo <= init <= hi:
                problems.add(
                    [*parts, "inits", k],
                    f"init {init!r} of parameter {pname!r} is outside its bounds "
                    f"[{lo!r}, {hi!r}]; move it inside",
                )
    if pname == "lumi" and info is not None:
        for k, aux in enumerate(setting.get("auxdata", [])):
            if aux <= 0:
                problems.add(
                    [*parts, "auxdata", k],
                    f"lumi auxdata {aux!r} must be > 0 (usually 1.0)",
                )


# --------------------------------------------------------------------------------------
# patches and patchsets

# add / replace values at these paths are checked against the matching schema definition
_VALUE_SCHEMAS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"^/channels/(\d+|-)$"), "model", "/definitions/channel"),
    (re.compile(r"^/channels/\d+/samples/(\d+|-)$"), "model", "/definitions/sample"),
    (
        re.compile(r"^/channels/\d+/samples/\d+/modifiers/(\d+|-)$"),
        "model",
        "/definitions/modifier",
    ),
    (re.compile(r"^/observations/(\d+|-)$"), "workspace", "/definitions/observation"),
    (re.compile(r"^/measurements/(\d+|-)$"), "measurement", ""),
    (
        re.compile(r"^/measurements/\d+/config/parameters/(\d+|-)$"),
        "measurement",
        "/definitions/parameter",
    ),
)


_SAMPLE_PATH = re.compile(r"^/channels/(\d+|-)/samples/(\d+|-)$")
_CHANNEL_PATH = re.compile(r"^/channels/(\d+|-)$")


def _check_patch_samples(patch_ops: list[Any], where: str, prefix: Sequence[str | int]) -> None:
    """Semantic checks of the samples a (schema-valid) patch adds: bin counts within the
    sample, non-negative yields and uncertainties, positive normsys factors."""
    problems = _Problems(where, InvalidPatch)
    for i, op in enumerate(patch_ops):
        if op["op"] not in ("add", "replace"):
            continue
        path = op["path"]
        if _SAMPLE_PATH.match(path):
            cname = f"#{path.split('/')[2]}"
            samples = [([*prefix, i, "value"], op["value"])]
        elif _CHANNEL_PATH.match(path):
            cname = repr(op["value"]["name"])
            samples = [
                ([*prefix, i, "value", "samples", s], sample)
                for s, sample in enumerate(op["value"]["samples"])
            ]
        else:
            continue
        for parts, sample in samples:
            nbins = len(sample["data"])
            _check_sample(sample, parts, cname, nbins, "the sample's data", {}, problems)
    problems.raise_if_any()


def _check_patch_ops(patch_ops: Any, where: str, prefix: Sequence[str | int]) -> None:
    if _fast_patch(patch_ops):
        _check_patch_samples(patch_ops, where, prefix)
        return
    _schema_check(patch_ops, "patch", where=where, error=InvalidPatch, prefix=prefix)
    problems = _Problems(where, InvalidPatch)
    _check_finite(patch_ops, problems, prefix)
    problems.raise_if_any()
    for i, op in enumerate(patch_ops):
        if op["op"] not in ("add", "replace"):
            continue
        for pattern, schema, pointer in _VALUE_SCHEMAS:
            if pattern.match(op["path"]):
                _schema_check(
                    op["value"],
                    schema,
                    pointer=pointer,
                    where=f"{where}, operation {i} ({op['op']} {op['path']})",
                    error=InvalidPatch,
                    prefix=[*prefix, i, "value"],
                )
                break
    _check_patch_samples(patch_ops, where, prefix)


def validate_patch(
    patch_ops: Any,
    *,
    source: str | None = None,
    bkgonly: Mapping[str, Any] | None = None,
) -> None:
    """Validate an RFC 6902 JSON patch (a list of operations) meant for a workspace.

    Without ``bkgonly``: checks the operations against the patch schema (``op`` among add /
    remove / replace / move / copy / test, a JSON-pointer ``path``, ``value`` or ``from``
    as the operation needs), that every number is finite, that a value added or replaced
    at a workspace location (a channel, sample, modifier, observation, measurement or
    parameter setting) has that element's schema, and that the samples it adds are sound
    on their own (bin counts within the sample, yields and uncertainties >= 0, normsys
    factors > 0).

    With ``bkgonly``: checks that the patch applies to that workspace and that the patched
    workspace is valid, and raises exactly what ``compile(apply_patch(bkgonly, patch_ops,
    source=source))`` raises (same exception type and message), through the fast path of
    :class:`PatchTarget` when the patch only adds samples and removes channels.

    Parameters
    ----------
    patch_ops : list of mappings
        The operations.
    source : str, optional
        Name of the patch in error messages (file or patch name).
    bkgonly : mapping, optional
        The (valid) background-only workspace the patch is meant for.

    Raises
    ------
    InvalidPatch
        The patch is malformed or does not apply.
    InvalidWorkspace
        With ``bkgonly``: the patched workspace is invalid (e.g. a negative signal yield).
    """
    if bkgonly is not None:
        PatchTarget(bkgonly).check(patch_ops, source=source)
        return
    where = f"patch {source}" if source else "patch"
    _check_patch_ops(patch_ops, where, ())


def _value_key(v: Any) -> tuple[str, Any]:
    # 300 and 300.0 are the same point; "300" (a string label value) is not
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return ("n", float(v))
    return ("s", json.dumps(v))


def _envelope(patchset: Any) -> Any:
    """``patchset`` with every patch emptied: for the schema of the envelope alone."""
    if not isinstance(patchset, Mapping) or not isinstance(patchset.get("patches"), list):
        return patchset
    patches = [
        {**p, "patch": []} if isinstance(p, Mapping) and "patch" in p else p
        for p in patchset["patches"]
    ]
    return {**patchset, "patches": patches}


def validate_patchset_points(patchset: Any, *, source: str | None = None) -> None:
    """The points of a patchset, without its schema: what a scan needs to trust.

    A mapping with ``/metadata/labels`` (a list of unique strings) and a ``/patches``
    list; each patch has a string ``metadata.name`` and one ``metadata.values`` entry per
    label (strings or finite numbers); patch names are unique and so are value tuples
    (``300`` and ``300.0`` are the same value).  The operations are not looked at (each
    goes through :class:`PatchTarget` / ``Background.with_patch`` when it is used), nor
    the rest of the metadata (see :func:`validate_patchset`).

    Raises
    ------
    InvalidPatch
    """
    _check_points(patchset, f"patchset {source}" if source else "patchset")


def _check_points(patchset: Any, where: str) -> None:
    metadata = patchset.get("metadata") if isinstance(patchset, Mapping) else None
    items = patchset.get("patches") if isinstance(patchset, Mapping) else None
    if not isinstance(metadata, Mapping) or not isinstance(items, list):
        raise InvalidPatch(
            f"{where}: not a pyhf PatchSet (needs /metadata and a /patches list); give the "
            "patchset.json published with the BkgOnly.json, or one made by recastkit make-patch"
        )
    labels = metadata.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise InvalidPatch(f"{where}: /metadata/labels must be a list of names, got {labels!r:.80}")
    problems = _Problems(where, InvalidPatch)
    for name, idx in _duplicates(labels).items():
        problems.add(
            ["metadata", "labels", idx[1]],
            f"duplicate label {name!r} (labels {idx}); labels name the coordinates of a point",
        )
    names: list[Any] = []
    keyed: list[Any] = []
    for i, patch in enumerate(items):
        meta = patch.get("metadata") if isinstance(patch, Mapping) else None
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if not isinstance(name, str):
            problems.add(["patches", i, "metadata", "name"], "the patch has no name")
            names.append(object())
            keyed.append(object())
            continue
        names.append(name)
        if "patch" not in patch:  # type: ignore[operator]
            problems.add(["patches", i], f"patch {name!r} has no 'patch' (its operations)")
        values = meta.get("values")  # type: ignore[union-attr]
        if not isinstance(values, list) or not all(
            isinstance(v, str) or _fast_number(v) for v in values
        ):
            problems.add(
                ["patches", i, "metadata", "values"],
                f"values of patch {name!r} must be a list of numbers or strings, got "
                f"{_short(values)}",
            )
            keyed.append(object())
        elif len(values) != len(labels):
            problems.add(
                ["patches", i, "metadata", "values"],
                f"patch {name!r} has {len(values)} value(s) {_short(values)} but the patchset "
                f"has {len(labels)} label(s) {labels}; give one value per label",
            )
            keyed.append(object())
        else:
            keyed.append(tuple(_value_key(v) for v in values))
    for name, idx in _duplicates(names).items():
        problems.add(
            ["patches", idx[1], "metadata", "name"],
            f"duplicate patch name {name!r} (patches {idx[:5]}); patch names must be unique",
        )
    for _key, idx in _duplicates(keyed).items():
        which = " and ".join(f"{j} {names[j]!r}" for j in idx[:5])
        more = f" (and {len(idx) - 5} more)" if len(idx) > 5 else ""
        problems.add(
            ["patches", idx[1], "metadata", "values"],
            f"duplicate values {items[idx[1]]['metadata']['values']} of patches {which}{more} "
            f"(labels {labels}); every point needs its own values: remove or rename one",
        )
    problems.raise_if_any()


def validate_patchset(
    patchset: Any,
    *,
    source: str | None = None,
    bkgonly: Mapping[str, Any] | None = None,
    patches: bool = True,
) -> None:
    """Validate a pyhf-style PatchSet (format 1.0.0), and its patches against a BkgOnly.

    Checks the schema (metadata with description, digests.sha256, labels, references;
    patches with a ``metadata.name`` matching ``^[a-zA-Z0-9_]+$`` and one value per label),
    unique labels, unique patch names and unique value tuples (``300`` and ``300.0`` are
    the same value), and, when ``bkgonly`` is given, that ``metadata.digests`` equal the
    digests of that background-only workspace (:func:`likelihood.spec.digest`).  Then
    every patch: without ``bkgonly`` as :func:`validate_patch` does; with ``bkgonly``
    every patched workspace, as ``validate_patch(ops, bkgonly=bkgonly)`` does.

    Parameters
    ----------
    patchset : mapping
        The patchset document.
    source : str, optional
        Name of the patchset in error messages (usually its file path).
    bkgonly : mapping, optional
        The background-only workspace the patchset is meant for.
    patches : bool, default True
        Check the operations of every patch.  ``False`` checks the envelope only (metadata,
        names, values, digest, and that each patch is a list of operations), for callers
        that check each patch when they use it (``recast.scan``: one ``invalid_patch`` row
        per bad patch).

    Raises
    ------
    InvalidPatch
        The patchset or one of its patches is invalid.  With ``bkgonly``, a patch whose
        patched workspace is invalid raises :class:`InvalidWorkspace`; the message is
        that of ``compile(apply_patch(...))``, after the patchset and the patch name.
    """
    where = f"patchset {source}" if source else "patchset"
    # with bkgonly, the operations go through the reference path of each patch (same
    # message as compile(apply_patch)); without, through the patch schema here
    envelope_only = not patches or bkgonly is not None
    if not _fast_patchset(patchset, patches=not envelope_only):
        _schema_check(
            _envelope(patchset) if envelope_only else patchset,
            "patchset",
            where=where,
            error=InvalidPatch,
        )
    _check_points(patchset, where)
    items = patchset["patches"]

    if bkgonly is not None:
        for algorithm, expected in patchset["metadata"]["digests"].items():
            actual = digest(bkgonly, algorithm)
            if actual.lower() != expected.lower():
                raise InvalidPatch(
                    f"{where}: /metadata/digests/{algorithm}: the patchset was made for a "
                    f"background-only workspace with {algorithm} {expected}, but the given "
                    f"one has {actual}; use the BkgOnly.json published with this patchset"
                )
    if not patches:
        return
    target = PatchTarget(bkgonly) if bkgonly is not None else None
    for i, patch in enumerate(items):
        name = patch["metadata"]["name"]
        if target is None:
            _check_patch_ops(patch["patch"], f"{where}, patch {name!r}", ["patches", i, "patch"])
            continue
        try:
            target.check(patch["patch"], source=name)
        except InvalidSpecification as err:
            raise type(err)(f"{where}, /patches/{i} ({name!r}): {err}") from err


# --------------------------------------------------------------------------------------
# the fast path of patches applied to one background


_NUMBER_TYPES = frozenset({float, int})


def _fast_finite_list(seq: Any, n: int) -> bool:
    """True only if ``seq`` is a list of ``n`` finite JSON numbers (no bool, no str).

    With every item a float64, the sum is finite only if every item is (a huge but
    finite sum that overflows only makes the answer a conservative False)."""
    if type(seq) is not list or len(seq) != n:
        return False
    types = set(map(type, seq))
    if not types <= _NUMBER_TYPES:
        return False
    if int in types and not all(-_FLOAT_MAX <= x <= _FLOAT_MAX for x in seq):
        return False
    return math.isfinite(sum(seq))


def _fast_finite_nonneg(seq: Any, n: int) -> bool:
    """As :func:`_fast_finite_list`, and every item >= 0."""
    return _fast_finite_list(seq, n) and min(seq) >= 0


def _fast_positive(x: Any) -> bool:
    t = type(x)
    return (t is float or t is int) and 0 < x <= _FLOAT_MAX


_DICT_ONLY = frozenset({dict})
_LIST_ONLY = frozenset({list})
_STR_ONLY = frozenset({str})
_NONE_ONLY = frozenset({type(None)})
_GET_MOD = operator.itemgetter("name", "type", "data")
_GET_HILO = operator.itemgetter("hi", "lo")
_GET_HS = operator.itemgetter("hi_data", "lo_data")
_NO_DATA_TYPES = frozenset({"normfactor", "shapefactor", "lumi"})
_LIST_DATA_TYPES = frozenset({"staterror", "shapesys"})


def _pick(idx: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function returning the items ``idx`` of a sequence, as a tuple (C speed)."""
    if len(idx) == 1:
        i = idx[0]
        return lambda seq: (seq[i],)
    return operator.itemgetter(*idx)  # type: ignore[return-value]


# modifier types in JSON order -> {type: getter of the items of that type}
_TYPE_GROUPS: dict[tuple[str, ...], dict[str, Callable[[Sequence[Any]], tuple[Any, ...]]]] = {}


def _type_groups(types: tuple[str, ...]) -> dict[str, Callable[[Sequence[Any]], tuple[Any, ...]]]:
    groups = _TYPE_GROUPS.get(types)
    if groups is None:
        found: dict[str, list[int]] = {}
        for i, t in enumerate(types):
            found.setdefault(t, []).append(i)
        groups = {t: _pick(idx) for t, idx in found.items()}
        if len(_TYPE_GROUPS) >= 512:
            _TYPE_GROUPS.clear()
        _TYPE_GROUPS[types] = groups
    return groups


def _fast_lists(items: Sequence[Any], n: int, nonneg: bool) -> bool:
    """True only if every item is a list of ``n`` finite JSON numbers (>= 0 if ``nonneg``)."""
    if set(map(type, items)) != _LIST_ONLY or set(map(len, items)) != {n}:
        return False
    flat = list(itertools.chain.from_iterable(items))
    if not _fast_finite_list(flat, len(flat)):
        return False
    return not (nonneg and flat and min(flat) < 0)


def _fast_sample_values(
    sample: Any, nbins: int
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Any, ...]] | None:
    """The modifier names, types and data of an added ``sample`` (JSON order), or ``None``.

    Not ``None`` only if ``sample`` passes the schema and the value checks of
    :func:`_check_sample` for a channel of ``nbins`` bins: finite non-negative yields,
    staterror / shapesys data, finite histosys variations, positive finite normsys
    factors, no data for normfactor / shapefactor / lumi.  The checks that depend on the
    names and types only (duplicates, parameter semantics) are
    :func:`_fast_sample_semantics`'s.  Each check is a pass at C speed over all the
    modifiers of a type; on ``None`` the reference path reports the problem."""
    if type(sample) is not dict or sample.keys() != _K_SAMPLE:
        return None
    name, mods = sample["name"], sample["modifiers"]
    if type(name) is not str or not name or type(mods) is not list:
        return None
    if not _fast_finite_nonneg(sample["data"], nbins):
        return None
    if not mods:
        return (), (), ()
    # dicts of three keys that include name, type and data: exactly those keys
    if set(map(type, mods)) != _DICT_ONLY or set(map(len, mods)) != {3}:
        return None
    try:
        names, types, datas = zip(*map(_GET_MOD, mods), strict=True)
    except KeyError:
        return None
    if set(map(type, names)) != _STR_ONLY or not all(names):
        return None
    if set(map(type, types)) != _STR_ONLY:
        return None
    for mtype, get in _type_groups(types).items():
        items = get(datas)
        if mtype == "normsys":
            if set(map(type, items)) != _DICT_ONLY or set(map(len, items)) != {2}:
                return None
            try:
                factors = list(itertools.chain.from_iterable(map(_GET_HILO, items)))
            except KeyError:
                return None
            if not _fast_finite_list(factors, len(factors)) or min(factors) <= 0:
                return None
        elif mtype == "histosys":
            if set(map(type, items)) != _DICT_ONLY or set(map(len, items)) != {2}:
                return None
            try:
                variations = list(itertools.chain.from_iterable(map(_GET_HS, items)))
            except KeyError:
                return None
            if not _fast_lists(variations, nbins, nonneg=False):
                return None
        elif mtype in _LIST_DATA_TYPES:
            if not _fast_lists(items, nbins, nonneg=True):
                return None
        elif mtype in _NO_DATA_TYPES:
            if set(map(type, items)) != _NONE_ONLY:
                return None
        else:
            return None
    return names, types, datas


def _fast_sample_semantics(
    names: Sequence[str],
    types: Sequence[str],
    cname: str,
    nbins: int,
    params: Mapping[str, _Param],
    changed: dict[str, tuple[set[str], int, set[str]]],
    noop: frozenset[tuple[str, str]] | None = None,
) -> bool:
    """True only if the modifiers ``names`` / ``types`` of a sample (that passed
    :func:`_fast_sample_values`), added to channel ``cname`` of a valid background whose
    modifiers declare ``params``, pass the checks of :func:`_check_sample` that depend on
    names and types only.  Parameters it adds or changes go into ``changed``
    (name -> (types, size, channels)).  ``noop`` (:func:`_noop_pairs` of ``params``,
    ``cname`` and ``nbins``) are (name, type) pairs that pass and change nothing, skipped.
    No messages: on False the reference path reports the problem."""
    pairs = set(zip(names, types, strict=True))
    if len(pairs) != len(names):
        return False  # a duplicate (name, type)
    rest = pairs - noop if noop is not None else pairs
    if not rest:
        return True
    for mname, mtype in zip(names, types, strict=True):
        if (mname, mtype) not in rest:
            continue
        if mtype == "lumi" and mname != "lumi":
            return False
        size = nbins if mtype in _VECTOR_TYPES else 1
        entry = changed.get(mname)
        if entry is None:
            known = params.get(mname)
            if known is None:
                changed[mname] = ({mtype}, size, {cname})
                continue
            entry = (known.types, known.size, known.channels)
        types_, ksize, channels = entry
        if mtype in types_ and mtype != "shapesys" and (mtype != "staterror" or cname in channels):
            if ksize != size:
                return False
            if cname not in channels:
                changed[mname] = (types_, ksize, channels | {cname})
            continue
        new = types_ | {mtype}
        if len(new) > 1 and not any(new <= group for group in _COMPATIBLE_TYPES):
            return False
        if ksize != size or mtype == "staterror" or mtype == "shapesys":
            return False
        changed[mname] = (new, ksize, channels | {cname})
    return True


def _noop_pairs(params: Mapping[str, _Param], cname: str, nbins: int) -> frozenset[tuple[str, str]]:
    """The (name, type) modifiers that :func:`_fast_sample_semantics` accepts without a
    change in a sample added to channel ``cname`` (``nbins`` bins): a parameter that the
    background declares with that type and size, not a shapesys, and for a staterror one
    of this channel.  (Whatever a patch changed before, they stay no-ops: a change only
    adds types and channels to a parameter.)"""
    out = set()
    for name, info in params.items():
        for mtype in info.types:
            size = nbins if mtype in _VECTOR_TYPES else 1
            if (
                info.size == size
                and mtype != "shapesys"
                and (mtype != "staterror" or cname in info.channels)
            ):
                out.add((name, mtype))
    return frozenset(out)


def _fast_added_sample(
    sample: Any,
    cname: str,
    nbins: int,
    params: Mapping[str, _Param],
    changed: dict[str, tuple[set[str], int, set[str]]],
) -> bool:
    """True only if ``sample``, added to channel ``cname`` of a valid background whose
    modifiers declare ``params``, passes the schema and every check of
    :func:`_check_sample`.  Parameters it adds or changes go into ``changed``
    (name -> (types, size, channels)).  No messages: on False the reference path
    reports the problem."""
    shape = _fast_sample_values(sample, nbins)
    return shape is not None and _fast_sample_semantics(
        shape[0], shape[1], cname, nbins, params, changed
    )


class AddedSample(NamedTuple):
    """A sample that a patch adds to a channel of the background."""

    channel: int  # index of the channel in the background's JSON
    sample: Mapping[str, Any]  # the sample (checked: schema, finite, semantics)
    op: int  # index of the operation in the patch
    # its modifiers' names, types and data, in JSON order (as checked)
    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    datas: tuple[Any, ...] = ()


class PatchPlan(NamedTuple):
    """What a valid add-samples / remove-channels patch does to its background.

    ``kept``: background channel indices that remain, in the patched JSON order;
    ``added``: the samples it adds to kept channels, in operation order; ``removed``:
    whether any channel was removed; ``shape``: a hashable summary of everything but the
    numbers and the sample names (kept channels, and per added sample its channel and
    its modifiers' names and types): two plans of one shape differ only in those.
    """

    kept: tuple[int, ...]
    added: tuple[AddedSample, ...]
    removed: bool
    shape: tuple[Any, ...] = ()


_K_OP_ADD = frozenset({"op", "path", "value"})


class PatchTarget:
    """A background-only workspace that patches are checked against, fast.

    The one place that knows how a signal patch (``add`` of samples to channels,
    ``remove`` of whole channels: what HEPData patchsets and ``make-patch`` contain) acts
    on a workspace.  :meth:`plan` accepts a patch only if the patched workspace is valid
    (schema and semantics) without building or re-validating it: the background is
    checked once here, each added sample with the checks of :func:`validate_workspace`
    in the context of the background's channels and parameters.  Anything else (another
    operation, a patch that does not apply, any problem) gives ``None``, and
    :meth:`check` / :class:`likelihood.Background` take the reference path (jsonpatch,
    then :func:`validate_workspace` of the patched workspace), which raises the precise
    error.  So the fast path can only accept, never reject, and every path rejects with
    the same exception and message.

    Parameters
    ----------
    bkgonly : mapping
        The background-only workspace.  If it is not valid, :meth:`plan` always returns
        ``None`` (the reference path then reports the problem).
    """

    def __init__(self, bkgonly: Mapping[str, Any]) -> None:
        self.spec = bkgonly
        self._ok = _fast_workspace(bkgonly)
        self._params: dict[str, _Param] = {}
        # plan shape -> whether its names and types pass the semantic checks
        self._shapes: dict[tuple[Any, ...], bool] = {}
        # (kept channels or None, channel) -> _noop_pairs of the channel
        self._noop: dict[tuple[Any, int], frozenset[tuple[str, str]]] = {}
        if not self._ok:
            return
        problems = _Problems("", InvalidWorkspace, quiet=True)
        self._params = _check_channels(bkgonly, problems)
        _check_measurements(bkgonly, self._params, problems, require_poi=False, measurement=None)
        self._ok = not problems.items
        channels = bkgonly["channels"]
        obs: dict[str, int] = {}
        for o in bkgonly["observations"]:
            obs.setdefault(o["name"], len(o["data"]))
        self._names = [c["name"] for c in channels]
        self._nbins = [obs.get(c["name"], 0) for c in channels]
        self._samples = [[s["name"] for s in c["samples"]] for c in channels]
        # per channel: the parameters its modifiers declare (types, size)
        self._by_channel: list[dict[str, tuple[frozenset[str], int]]] = []
        for c, nb in zip(channels, self._nbins, strict=True):
            found: dict[str, set[str]] = {}
            for sample in c["samples"]:
                for m in sample["modifiers"]:
                    found.setdefault(m["name"], set()).add(m["type"])
            self._by_channel.append(
                {
                    name: (frozenset(types), nb if types & _VECTOR_TYPES else 1)
                    for name, types in found.items()
                }
            )

    def _kept_params(self, kept: Sequence[int]) -> dict[str, _Param]:
        """The parameters of the background restricted to the channels ``kept``."""
        out: dict[str, _Param] = {}
        for ci in kept:
            cname = self._names[ci]
            for name, (types, size) in self._by_channel[ci].items():
                info = out.get(name)
                if info is None:
                    info = out[name] = _Param("", size, [], cname)
                    info.types = set(types)
                else:
                    info.types |= types
                    info.channels.add(cname)
        return out

    def plan(self, patch_ops: Any) -> PatchPlan | None:
        """The effect of a valid add-samples / remove-channels patch, or ``None``.

        ``None`` means: not such a patch, or it does not apply, or the patched workspace
        is invalid; the caller must take the reference path.  Never raises.
        """
        if not self._ok or type(patch_ops) is not list:
            return None
        current = list(range(len(self._names)))
        counts = [len(x) for x in self._samples]
        names: dict[int, set[str]] = {}
        added: list[AddedSample] = []
        removed = False
        for i, op in enumerate(patch_ops):
            if type(op) is not dict:
                return None
            kind, path = op.get("op"), op.get("path")
            if type(path) is not str:
                return None
            if kind == "add" and op.keys() == _K_OP_ADD:
                m = SAMPLE_ADD_PATH.match(path)
                if m is None or int(m[1]) >= len(current):
                    return None
                ci = current[int(m[1])]
                if m[2] != "-" and int(m[2]) > counts[ci]:
                    return None
                sample = op["value"]
                if type(sample) is not dict or type(sample.get("name")) is not str:
                    return None
                have = names.get(ci)
                if have is None:
                    have = names[ci] = set(self._samples[ci])
                if sample["name"] in have:
                    return None
                have.add(sample["name"])
                counts[ci] += 1
                added.append(AddedSample(ci, sample, i))
            elif kind == "remove" and op.keys() == _K_OP:
                m = CHANNEL_REMOVE_PATH.match(path)
                if m is None or int(m[1]) >= len(current):
                    return None
                current.pop(int(m[1]))
                removed = True
            else:
                return None
        if not current:
            return None
        kept = set(current)
        checked: list[AddedSample] = []
        for a in added:
            if a.channel not in kept:
                continue
            shape = _fast_sample_values(a.sample, self._nbins[a.channel])
            if shape is None:
                return None
            checked.append(a._replace(names=shape[0], types=shape[1], datas=shape[2]))
        key = (
            tuple(current) if removed else None,
            tuple((a.channel, a.names, a.types) for a in checked),
        )
        plan = PatchPlan(tuple(current), tuple(checked), removed, key)
        # the checks that depend on names and types only, once per shape of patch
        ok = self._shapes.get(key)
        if ok is None:
            ok = self._semantics(plan)
            if len(self._shapes) >= 256:
                self._shapes.pop(next(iter(self._shapes)))
            self._shapes[key] = ok
        return plan if ok else None

    def _semantics(self, plan: PatchPlan) -> bool:
        """The parameter checks of the samples ``plan`` adds (:func:`_check_sample`'s
        semantic part) and the measurement settings of what they add or change."""
        # the parameters of the kept channels (removing channels only drops parameters
        # and types: it cannot make a valid background invalid)
        params = self._kept_params(plan.kept) if plan.removed else self._params
        kept = plan.kept if plan.removed else None
        changed: dict[str, tuple[set[str], int, set[str]]] = {}
        for a in plan.added:
            cname, nbins = self._names[a.channel], self._nbins[a.channel]
            noop = self._noop.get((kept, a.channel))
            if noop is None:
                if len(self._noop) >= 256:
                    self._noop.clear()
                noop = self._noop[kept, a.channel] = _noop_pairs(params, cname, nbins)
            if not _fast_sample_semantics(a.names, a.types, cname, nbins, params, changed, noop):
                return False
        if changed:
            # the measurement settings of the parameters the patch adds or changes
            params = dict(params)
            for pname, (types, size, channels) in changed.items():
                info = params[pname].copy() if pname in params else _Param("", size, [], "")
                info.types, info.size, info.channels = set(types), size, set(channels)
                params[pname] = info
            problems = _Problems("", InvalidWorkspace, quiet=True)
            _check_measurements(
                self.spec,
                params,
                problems,
                require_poi=False,
                measurement=None,
                only=frozenset(changed),
            )
            if problems.items:
                return False
        return True

    def _apply(self, patch_ops: Sequence[Any]) -> dict[str, Any]:
        """The patched workspace of an applicable add-samples / remove-channels patch:
        shallow copies, only the touched channels are copied (equal to jsonpatch's)."""
        ws = dict(self.spec)
        channels = list(ws["channels"])
        for op in patch_ops:
            path = op["path"]
            if op["op"] == "remove":
                del channels[int(path.rsplit("/", 1)[1])]
                continue
            m = SAMPLE_ADD_PATH.match(path)
            assert m is not None
            i = int(m[1])
            ch = dict(channels[i])
            samples = list(ch["samples"])
            if m[2] == "-":
                samples.append(op["value"])
            else:
                samples.insert(int(m[2]), op["value"])
            ch["samples"] = samples
            channels[i] = ch
        ws["channels"] = channels
        return ws

    def apply(self, patch_ops: Sequence[Any], *, source: str | None = None) -> dict[str, Any]:
        """The patched workspace: :func:`likelihood.apply_patch` (same result, same
        errors), with shallow copies when the patch only adds samples / removes channels
        and applies.  Not validated: see :meth:`check`."""
        if self._applicable(patch_ops):
            return self._apply(patch_ops)
        return apply_patch(self.spec, patch_ops, source=source)

    def _applicable(self, patch_ops: Any) -> bool:
        if type(patch_ops) is not list or type(self.spec.get("channels")) is not list:
            return False
        counts = [
            len(c["samples"]) if type(c) is dict and type(c.get("samples")) is list else -1
            for c in self.spec["channels"]
        ]
        for op in patch_ops:
            if type(op) is not dict or type(op.get("path")) is not str:
                return False
            if op.get("op") == "add" and op.keys() == _K_OP_ADD:
                m = SAMPLE_ADD_PATH.match(op["path"])
                if m is None or int(m[1]) >= len(counts) or counts[int(m[1])] < 0:
                    return False
                k = int(m[1])
                if m[2] != "-" and int(m[2]) > counts[k]:
                    return False
                counts[k] += 1
            elif op.get("op") == "remove" and op.keys() == _K_OP:
                m = CHANNEL_REMOVE_PATH.match(op["path"])
                if m is None or int(m[1]) >= len(counts):
                    return False
                counts.pop(int(m[1]))
            else:
                return False
        return True

    def check(self, patch_ops: Any, *, source: str | None = None) -> None:
        """Raise what ``compile(apply_patch(bkgonly, patch_ops, source=source))`` raises.

        Raises
        ------
        InvalidPatch
            The patch does not apply.
        InvalidWorkspace
            The patched workspace is invalid.
        """
        if self.plan(patch_ops) is not None:
            return
        validate_workspace(apply_patch(self.spec, patch_ops, source=source))
