"""Find the likelihoods inside an extracted archive, whatever its layout.

Layouts understood (any of them below a nested top folder, any depth):

* flat: ``BkgOnly.json`` + ``patchset.json``;
* one folder per region: ``RegionA/BkgOnly.json`` + ``RegionA/patchset.json`` ...;
* prefixed names: ``Rpc2L0b_BkgOnly.json`` + ``Rpc2L0b_patchset.json``, ``*_bkgonly.json``;
* legacy per-point patches: ``BkgOnly.json`` + ``patch.sbottom_1300_205_60.json`` ...,
  turned into a pyhf PatchSet whose point values are parsed from the file names
  (``patch.ERJR_350p0_100p0.json``: ``p`` is the decimal point -> ``[350.0, 100.0]``);
* background-only files with no signal at all.

A *likelihood* is one background-only workspace with its signal patches.  Its name is
the region: the folder below the common top folder and/or the file-name prefix.

The last step of :func:`recast.fetch` (resolve -> download -> store -> extract ->
archive); everything here works on a folder.  :func:`recast.likelihoods` and
:func:`recast.load_likelihood` (in :mod:`recast.fetching`) accept any source, fetch it,
then call :func:`likelihoods` / :func:`load_likelihood` of this module.  Labels not given
come from the patchset, else from the cache entry's manifest (``fetch --labels``, or the
labels of a known published archive), else ``m1, m2, ...``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from likelihood.errors import InvalidSpecification
from likelihood.spec import digest, read_json
from recast.errors import ArchiveError
from recast.store import entry_manifest, entry_of

__all__ = [
    "Likelihood",
    "has_likelihood",
    "legacy_patchset",
    "legacy_values",
    "likelihoods",
    "load_likelihood",
]

log = logging.getLogger(__name__)

_SKIP_DIRS = {"__MACOSX", "__pycache__"}
_LEGACY_RE = re.compile(r"^patch\.(.+)\.json$")
_NUMBER_RE = re.compile(r"^-?\d+(?:p\d+)?$|^-?\d+\.\d+$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_]+$")
_COLUMNS = ["name", "bkgonly", "patchset", "format", "n_points", "labels", "digest_ok"]


class Likelihood(NamedTuple):
    """One published likelihood: background-only workspace + signal patchset."""

    name: str  #: region name (e.g. ``RegionA``)
    bkgonly: dict[str, Any]  #: the parsed background-only workspace
    patchset: dict[str, Any] | None  #: pyhf PatchSet 1.0.0 (None if there is no signal)
    labels: list[str]  #: names of the point values (``metadata.labels``)
    bkgonly_path: Path  #: file the workspace was read from


@dataclass
class _Found:
    bkgonly: Path
    rel_dir: tuple[str, ...]
    prefix: str
    patchset: Path | None = None
    legacy: list[Path] = field(default_factory=list)
    name: str = ""

    @property
    def format(self) -> str:
        if self.patchset is not None:
            return "patchset"
        if self.legacy:
            return "legacy_patches"
        return "bkgonly_only"


def _strip_word(stem: str, word: str) -> str:
    out = re.sub(rf"[_.\-]?{word}[_.\-]?", "_", stem, flags=re.IGNORECASE)
    return out.strip("_")


def _discover(root: Path) -> list[_Found]:
    found: list[_Found] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        jsons = sorted(
            f for f in filenames if f.lower().endswith(".json") and not f.startswith(".")
        )
        bkgs = [f for f in jsons if "bkgonly" in f.lower()]
        patchsets = [f for f in jsons if "patchset" in f.lower() and f not in bkgs]
        legacy = [f for f in jsons if _LEGACY_RE.match(f)]
        if not bkgs:
            if patchsets or legacy:
                log.warning(
                    "%s: patch files without a background-only workspace next to them; ignored",
                    here,
                )
            continue
        items = [_Found(here / b, rel, _strip_word(Path(b).stem, "bkgonly")) for b in bkgs]
        ps_prefix = {p: _strip_word(Path(p).stem, "patchset") for p in patchsets}
        for item in items:
            same = [p for p, pre in ps_prefix.items() if pre.lower() == item.prefix.lower()]
            if len(same) == 1:
                item.patchset = here / same[0]
            elif len(items) == 1 and len(patchsets) == 1:
                item.patchset = here / patchsets[0]
        if len(items) == 1:
            items[0].legacy = [here / f for f in legacy]
        else:
            for f in legacy:
                point = f[len("patch.") : -len(".json")]
                owners = [i for i in items if i.prefix and point.startswith(i.prefix)]
                if len(owners) == 1:
                    owners[0].legacy.append(here / f)
                else:
                    log.warning(
                        "%s: cannot tell which background-only file %s belongs to; ignored", here, f
                    )
        used = {i.patchset.name for i in items if i.patchset is not None}
        for p in patchsets:
            if p not in used:
                log.warning(
                    "%s/%s: no background-only workspace matches this patchset; ignored", here, p
                )
        found.extend(items)
    _name(found)
    return found


def _name(found: list[_Found]) -> None:
    if not found:
        return
    common = list(found[0].rel_dir)
    for f in found[1:]:
        n = 0
        while n < min(len(common), len(f.rel_dir)) and common[n] == f.rel_dir[n]:
            n += 1
        common = common[:n]
    for f in found:
        parts = list(f.rel_dir[len(common) :])
        if f.prefix:
            parts.append(f.prefix)
        f.name = "/".join(parts) or (f.rel_dir[-1] if f.rel_dir else f.bkgonly.stem)
    names = [f.name for f in found]
    for f in found:
        if names.count(f.name) > 1:
            f.name = "/".join([*f.rel_dir, f.bkgonly.stem])


def legacy_values(name: str, *, source: str | None = None) -> list[int | float]:
    """Point values parsed from a legacy patch name (``sbottom_1300_205_60`` ->
    ``[1300, 205, 60]``; ``ERJR_350p0_100p0`` -> ``[350.0, 100.0]``).

    Underscore-separated numeric fields are kept; ``p`` inside a number is the decimal
    point (values with it are floats, others ints); other fields are ignored.
    """
    values: list[int | float] = []
    for tok in name.split("_"):
        if _NUMBER_RE.match(tok):
            values.append(float(tok.replace("p", ".")) if ("p" in tok or "." in tok) else int(tok))
    if not values:
        raise ArchiveError(
            f"{source or name}: no numeric field in the patch name {name!r}; legacy patch files "
            "must be named like patch.<model>_<m1>_<m2>.json"
        )
    return values


def _recorded_labels(root: Path) -> list[str] | None:
    """The labels the cache entry holding ``root`` remembers (``fetch --labels`` or a known
    published archive), else None."""
    manifest = entry_manifest(root)
    labels = (manifest or {}).get("labels")
    if isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels):
        return list(labels)
    return None


def _default_labels(n: int, labels: Sequence[str] | None, where: str) -> list[str]:
    if labels is None:
        return [f"m{i}" for i in range(1, n + 1)]
    labels = list(labels)
    if len(labels) != n:
        raise ArchiveError(
            f"{where}: {len(labels)} labels given ({', '.join(labels)}) but the points have {n} "
            f"values; give {n} label(s) (--labels with {n} comma-separated names)"
        )
    for lab in labels:
        if not _LABEL_RE.match(lab):
            raise ArchiveError(f"label {lab!r}: use letters, digits and '_' only")
    return labels


def _legacy_points(files: Sequence[Path]) -> list[tuple[str, list[int | float], Path]]:
    points = []
    for p in files:
        name = _LEGACY_RE.match(p.name).group(1)  # type: ignore[union-attr]
        points.append((name, legacy_values(name, source=str(p)), p))
    sizes = {len(v) for _, v, _ in points}
    if len(sizes) > 1:
        first = points[0]
        odd = next(pt for pt in points if len(pt[1]) != len(first[1]))
        raise ArchiveError(
            f"{odd[2]}: {len(odd[1])} numeric fields in the name, but {first[2].name} has "
            f"{len(first[1])}; legacy patch names must all carry the same number of values"
        )
    points.sort(key=lambda t: (t[1], t[0]))
    return points


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except InvalidSpecification as err:
        hint = (
            "the cached copy may be damaged: run `recastkit cache verify`, or fetch it again "
            "with --refresh"
            if entry_of(path) is not None
            else "check the file"
        )
        raise ArchiveError(f"{err}; {hint}") from err


def _folder(folder: str | os.PathLike[str]) -> Path:
    path = Path(os.fspath(folder)).expanduser()
    if not path.is_dir():
        raise ArchiveError(
            f"{path}: not a folder; recast.archive works on extracted folders: use "
            "recast.likelihoods / recast.load_likelihood (or recast.fetch first) for sources"
        )
    return path.resolve()


def has_likelihood(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds at least one background-only workspace."""
    return bool(_discover(_folder(folder)))


def _no_likelihood(root: Path) -> ArchiveError:
    return ArchiveError(
        f"{root}: no background-only workspace (a *BkgOnly*.json / *bkgonly*.json file) "
        "found; is this a HistFactory likelihood archive?"
    )


def likelihoods(
    folder: str | os.PathLike[str], *, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """Table of the likelihoods in an extracted folder (see :func:`recast.likelihoods`).

    Parameters
    ----------
    folder : path-like
        An extracted archive (e.g. what :func:`recast.fetch` returns).
    labels : list of str, optional
        Names of the point values (default: the patchset's; for legacy per-point patches
        the labels the cache entry remembers, else ``m1, m2, ...``).

    Returns
    -------
    pandas.DataFrame
        One row per likelihood, sorted by name: ``name``, ``bkgonly`` (path),
        ``patchset`` (path, or None), ``format`` (``"patchset"``, ``"legacy_patches"`` or
        ``"bkgonly_only"``), ``n_points``, ``labels`` (list), ``digest_ok`` (bool: the
        patchset's ``metadata.digests.sha256`` equals the BkgOnly digest; None when there
        is no digest to compare).

    Raises
    ------
    ArchiveError
        When no background-only workspace is found, or ``labels`` has the wrong length.
    """
    root = _folder(folder)
    found = _discover(root)
    if not found:
        raise _no_likelihood(root)
    explicit = labels is not None
    if labels is None:
        labels = _recorded_labels(root)
    rows = []
    for f in sorted(found, key=lambda x: x.name):
        n_points = 0
        labs: list[str] = []
        ok: bool | None = None
        if f.patchset is not None:
            ps = _read(f.patchset)
            meta = ps.get("metadata", {}) if isinstance(ps, dict) else {}
            patches = ps.get("patches", []) if isinstance(ps, dict) else []
            n_points = len(patches)
            labs = list(meta.get("labels", []))
            if explicit:
                labs = _default_labels(len(labs) or len(labels or []), labels, str(f.patchset))
            want = (meta.get("digests") or {}).get("sha256")
            if want:
                ok = digest(_read(f.bkgonly)) == str(want).lower()
        elif f.legacy:
            points = _legacy_points(f.legacy)
            n_points = len(points)
            labs = _default_labels(len(points[0][1]), labels, str(f.bkgonly.parent))
        rows.append(
            {
                "name": f.name,
                "bkgonly": str(f.bkgonly),
                "patchset": str(f.patchset) if f.patchset is not None else None,
                "format": f.format,
                "n_points": n_points,
                "labels": labs,
                "digest_ok": ok,
            }
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


def _references(root: Path) -> dict[str, str]:
    """``{"hepdata": "ins1234567"}`` when the cache manifest knows the INSPIRE id."""
    manifest = entry_manifest(root)
    ins = (manifest or {}).get("inspire_id")
    if isinstance(ins, int) or (isinstance(ins, str) and ins.isdigit()):
        ref = f"ins{int(ins):07d}"
        if re.fullmatch(r"ins\d{7}", ref):
            return {"hepdata": ref}
    return {}


def legacy_patchset(
    folder: str | os.PathLike[str],
    bkgonly: Mapping[str, Any],
    *,
    labels: Sequence[str] | None = None,
    references: Mapping[str, str] | None = None,
    files: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """Turn legacy per-point ``patch.<name>.json`` files into a pyhf PatchSet document.

    The one converter of recastkit (``recastkit scan BkgOnly.json patches/`` and
    :func:`load_likelihood` both use it).  The result has ``version "1.0.0"``; metadata
    ``description``, ``digests.sha256`` of ``bkgonly``, ``labels``, ``references``; patches
    ``{"metadata": {"name", "values"}, "patch": [...]}`` named after the files
    (``patch.sbottom_1300_205_60.json`` -> ``sbottom_1300_205_60``, values
    ``[1300, 205, 60]``, see :func:`legacy_values`), sorted by values.

    Parameters
    ----------
    folder : path-like
        The folder holding the patch files.
    bkgonly : dict
        The background-only workspace the patches apply to (for the digest).
    labels : list of str, optional
        Names of the point values (default: those the cache entry remembers, else
        ``m1, m2, ...``).
    references : dict, optional
        ``metadata.references`` (default: the INSPIRE id the cache entry knows, else empty).
    files : list of Path, optional
        Only these patch files (default: every ``patch.*.json`` of ``folder``).

    Raises
    ------
    ArchiveError
        No patch file; names without numbers or with different numbers of values; wrong
        number of labels; unreadable files.
    """
    root = Path(folder)
    if files is None:
        files = sorted(p for p in root.iterdir() if _LEGACY_RE.match(p.name))
    if not files:
        raise ArchiveError(
            f"{root}: no patch files named patch.<name>.json; give a patchset file or the "
            "folder that holds the per-point patches"
        )
    points = _legacy_points(files)
    if labels is None:
        labels = _recorded_labels(root)
    labs = _default_labels(len(points[0][1]), labels, str(root))
    patches = []
    for name, values, path in points:
        ops = _read(path)
        if not isinstance(ops, list):
            raise ArchiveError(
                f"{path}: a JSON patch is a list of operations, got {type(ops).__name__}"
            )
        clean = re.sub(r"[^A-Za-z0-9_]", "_", name)
        patches.append({"metadata": {"name": clean, "values": values}, "patch": ops})
    return {
        "version": "1.0.0",
        "metadata": {
            "description": (
                f"converted by recastkit from {len(patches)} legacy per-point patch files in {root}"
            ),
            "digests": {"sha256": digest(dict(bkgonly))},
            "labels": labs,
            "references": dict(references) if references is not None else _references(root),
        },
        "patches": patches,
    }


def load_likelihood(
    folder: str | os.PathLike[str],
    region: str | None = None,
    *,
    labels: Sequence[str] | None = None,
    references: Mapping[str, str] | None = None,
) -> Likelihood:
    """Load one likelihood of an extracted folder (see :func:`recast.load_likelihood`).

    Parameters
    ----------
    folder : path-like
        An extracted archive.
    region : str, optional
        Which likelihood (``name`` in :func:`likelihoods`); needed when there are several.
    labels : list of str, optional
        Names of the point values (default: the patchset's; for legacy per-point patches
        the labels the cache entry remembers, else ``m1, m2, ...``).
    references : dict, optional
        ``metadata.references`` of a converted legacy patchset (default: the INSPIRE id
        recorded when the archive was fetched from HEPData, else empty).

    Raises
    ------
    ArchiveError
        No likelihood; several and ``region`` is None; unknown ``region``; unreadable files.
    """
    root = _folder(folder)
    found = {f.name: f for f in _discover(root)}
    if not found:
        raise _no_likelihood(root)
    names = sorted(found)
    if region is None:
        if len(found) > 1:
            raise ArchiveError(
                f"{root} holds {len(found)} likelihoods ({', '.join(names)}); choose one with "
                "region= (--region)"
            )
        f = found[names[0]]
    else:
        match = found.get(region) or next(
            (found[n] for n in names if n.lower() == region.lower()), None
        )
        if match is None:
            raise ArchiveError(
                f"{root}: no likelihood named {region!r}; available: {', '.join(names)}"
            )
        f = match
    bkgonly = _read(f.bkgonly)
    if not isinstance(bkgonly, dict):
        raise ArchiveError(
            f"{f.bkgonly}: a workspace is a JSON object, got {type(bkgonly).__name__}"
        )
    patchset: dict[str, Any] | None = None
    labs: list[str] = []
    if f.patchset is not None:
        ps = _read(f.patchset)
        if not isinstance(ps, dict) or not isinstance(ps.get("patches"), list):
            raise ArchiveError(
                f"{f.patchset}: not a patchset (a JSON object with a 'patches' list)"
            )
        patchset = ps
        meta = ps.get("metadata") or {}
        labs = list(meta.get("labels") or [])
        if labels is not None:
            labs = _default_labels(len(labs) or len(labels), labels, str(f.patchset))
            patchset = dict(ps, metadata=dict(meta, labels=labs))
        want = (meta.get("digests") or {}).get("sha256")
        if want and digest(bkgonly) != str(want).lower():
            log.warning(
                "%s: metadata.digests.sha256 does not match %s; the patches may not belong to it",
                f.patchset,
                f.bkgonly,
            )
    elif f.legacy:
        patchset = legacy_patchset(
            f.bkgonly.parent,
            bkgonly,
            labels=labels if labels is not None else _recorded_labels(root),
            references=references if references is not None else _references(root),
            files=f.legacy,
        )
        labs = list(patchset["metadata"]["labels"])
    log.info(
        "loaded likelihood %s (%s, %d points)",
        f.name,
        f.format,
        len(patchset["patches"]) if patchset else 0,
    )
    return Likelihood(f.name, bkgonly, patchset, labs, f.bkgonly)
