"""Reading HistFactory JSON documents: workspaces, patches, patchsets.

This module holds everything that touches the *JSON* of a workspace before it is compiled:
loading with good error messages, digests, applying RFC 6902 patches, finding the
measurement.  Schema and semantic validation live in :mod:`likelihood.validate`.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonpatch

from likelihood.errors import InvalidPatch, InvalidSpecification, InvalidWorkspace

__all__ = [
    "read_json",
    "digest",
    "apply_patch",
    "get_measurement",
    "json_path",
]

log = logging.getLogger(__name__)


def json_path(parts: Sequence[str | int]) -> str:
    """Render a sequence of keys / indices as a JSON pointer (``/channels/3/samples/0``)."""
    if not parts:
        return "/"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _reject_constant(value: str) -> float:
    # json.loads accepts NaN / Infinity, which are not JSON: refuse them with a clear message.
    raise ValueError(f"non-JSON constant {value!r}")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection in this block (restored after it).

    Parsing a 15 MB patchset creates millions of lists and dicts, and every one of them
    counts towards the collector's thresholds: its repeated full collections made ~40% of
    ``json.loads``'s time.  A parsed document holds no reference cycle to collect.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file, raising :class:`InvalidSpecification` naming the file and position.

    Parameters
    ----------
    path : path-like
        The file to read (UTF-8 JSON).

    Returns
    -------
    object
        The parsed document.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InvalidSpecification(f"{p}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidSpecification(f"{p}: cannot read as UTF-8 text: {err}") from err
    try:
        with _gc_paused():
            return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise InvalidSpecification(
            f"{p}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    except ValueError as err:
        raise InvalidSpecification(f"{p}: malformed JSON: {err}") from err


def digest(obj: Any, algorithm: str = "sha256") -> str:
    """Digest of a JSON document as pyhf and HEPData compute it.

    ``hashlib.<algorithm>(json.dumps(obj, sort_keys=True, ensure_ascii=False)
    .encode("utf8")).hexdigest()`` with json's default separators: the convention of
    ``pyhf.utils.digest``, which ATLAS patchsets store under ``metadata.digests``.
    """
    try:
        stringified = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise InvalidSpecification(f"cannot digest a non-JSON object: {err}") from err
    return hashlib.new(algorithm, stringified.encode("utf8")).hexdigest()


def apply_patch(
    spec: Mapping[str, Any],
    patch: Sequence[Mapping[str, Any]],
    *,
    source: str | None = None,
) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch to a workspace, returning a new workspace.

    The input is not modified.  A patch that does not apply raises :class:`InvalidPatch`
    naming the patch (``source``), the index of the failing operation, its ``op`` and
    ``path``, and the reason.

    Parameters
    ----------
    spec : mapping
        The workspace (usually a background-only ``BkgOnly.json``).
    patch : sequence of mappings
        The operations, e.g. one entry of ``patchset["patches"][i]["patch"]``.
    source : str, optional
        Name of the patch for error messages (file name or patch name).
    """
    where = f"patch {source!r}" if source else "patch"
    if not isinstance(patch, Sequence) or isinstance(patch, (str, bytes)):
        raise InvalidPatch(
            f"{where}: a JSON patch is a list of operations, got {type(patch).__name__}"
        )
    doc: Any = copy.deepcopy(dict(spec))
    for i, op in enumerate(patch):
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise InvalidPatch(f"{where}: operation {i} is not an RFC 6902 operation: {op!r:.200}")
        try:
            doc = jsonpatch.JsonPatch([dict(op)]).apply(doc, in_place=True)
        except (
            jsonpatch.JsonPatchException,
            jsonpatch.JsonPointerException,
            KeyError,
            IndexError,
            TypeError,
        ) as err:
            raise InvalidPatch(
                f"{where}: operation {i} ({op.get('op')} {op.get('path')}) does not apply: {err}"
            ) from err
    return doc


def get_measurement(spec: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """Return the measurement called ``name`` (default: the first one) of a workspace."""
    measurements = spec.get("measurements")
    if not isinstance(measurements, list) or not measurements:
        raise InvalidWorkspace("/measurements: a workspace needs at least one measurement")
    if name is None:
        return dict(measurements[0])
    for m in measurements:
        if isinstance(m, Mapping) and m.get("name") == name:
            return dict(m)
    names = [m.get("name") for m in measurements if isinstance(m, Mapping)]
    raise InvalidWorkspace(f"/measurements: no measurement named {name!r}; available: {names}")
