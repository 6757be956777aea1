"""HEPData tables: reading published contours and scan results, exporting contours, distances."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from recast._io import atomic_write
from recast.errors import ContourError

if TYPE_CHECKING:  # pragma: no cover
    pass


from recast.contour_extraction import CURVES, Contours, _confidence

log = logging.getLogger(__name__)

__all__ = [
    "HEPDataTable",
    "ContourDistance",
    "export_contours",
    "read_hepdata_csv",
    "read_results",
    "contour_distance",
]


class HEPDataTable(NamedTuple):
    """One table of a HEPData CSV file.

    Attributes
    ----------
    name : str
        The ``#: name:`` header ("" when absent).
    header : dict[str, str]
        Every ``#:`` header line, key -> value.
    data : pandas.DataFrame
        The table, with the column names of the file; numeric columns are float.
    """

    name: str
    header: dict[str, str]
    data: pd.DataFrame


class ContourDistance(NamedTuple):
    """Distance from the vertices of one contour to another, in normalised axis units.

    Attributes
    ----------
    mean, median, max : float
        Statistics of the distance from every vertex to the nearest point of the other
        curve, each axis divided by its range (so 0.01 is 1% of the axis range).
    n : int
        Number of vertices measured.
    """

    mean: float
    median: float
    max: float
    n: int


_DESCRIPTIONS = {
    "observed": "Observed",
    "expected": "Expected",
    "expected_m1": "Expected -1 sigma",
    "expected_p1": "Expected +1 sigma",
    "expected_m2": "Expected -2 sigma",
    "expected_p2": "Expected +2 sigma",
    "observed_up": "Observed +1 sigma (theory)",
    "observed_down": "Observed -1 sigma (theory)",
}


def _pieces(contours: Contours) -> list[tuple[str, int, int, np.ndarray]]:
    out = []
    for name in CURVES:
        pieces = contours.curves.get(name, [])
        out += [(name, i, len(pieces), p) for i, p in enumerate(pieces, start=1)]
    return out


def _write_file(path: Path, write: Any) -> None:
    if not path.parent.is_dir():
        raise ContourError(f"cannot write {path}: the folder {path.parent} does not exist")
    try:
        atomic_write(path, write)
    except OSError as err:
        raise ContourError(f"cannot write {path}: {err}") from err


def export_contours(
    contours: Contours, path: str | os.PathLike[str], *, format: str | None = None
) -> Path:
    """Write contours as CSV or JSON tables (x, y per curve), ready for HEPData.

    CSV: one table per curve piece, in HEPData's CSV layout: ``#: key: value`` header lines
    (``name``, ``description``, ``curve``, ``piece``, ``level``, ``method``), a column header
    line with the axis names, the rows, and a blank line between tables;
    :func:`read_hepdata_csv` reads it back.  JSON: ``{"level", "confidence", "x", "y",
    "method", "curves": [{"name", "piece", "level", "x": [...], "y": [...]}, ...]}``.

    Parameters
    ----------
    contours : Contours
    path : path-like
        Output file; written atomically.
    format : {"csv", "json"}, optional
        Default: from the file suffix.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "json"):
        raise ContourError(
            f"cannot tell the export format of {path}: use a .csv or .json suffix or "
            f"format='csv'|'json' (got {fmt!r})"
        )
    pieces = _pieces(contours)
    if fmt == "json":
        doc = {
            "level": contours.level,
            "confidence": _confidence(contours.level),
            "x": contours.x,
            "y": contours.y,
            "method": contours.method,
            "curves": [
                {
                    "name": name,
                    "piece": piece,
                    "level": contours.level,
                    "x": p[:, 0].tolist(),
                    "y": p[:, 1].tolist(),
                }
                for name, piece, _, p in pieces
            ],
        }
        data = (json.dumps(doc, indent=1) + "\n").encode()
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for k, (name, piece, n_pieces, p) in enumerate(pieces):
            if k:
                buf.write("\n")
            of = f", piece {piece} of {n_pieces}" if n_pieces > 1 else ""
            buf.write(f"#: name: {_DESCRIPTIONS[name]} limit{of}\n")
            buf.write(
                f"#: description: {_DESCRIPTIONS[name]} {_confidence(contours.level)} exclusion "
                f"contour (CLs = {contours.level:g}) in the {contours.x}-{contours.y} plane, "
                f"{contours.method} interpolation of Z = Phi^-1(1 - CLs) (recastkit){of}\n"
            )
            buf.write(f"#: curve: {name}\n#: piece: {piece}\n#: level: {contours.level!r}\n")
            buf.write(f"#: method: {contours.method}\n")
            writer.writerow([contours.x, contours.y])
            for xv, yv in p:
                writer.writerow([repr(float(xv)), repr(float(yv))])
        data = buf.getvalue().encode()
    _write_file(path, lambda handle: handle.write(data))
    log.info("wrote %s contour piece(s) to %s", len(pieces), path)
    return path


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a scan results file (as written by :func:`recast.scan` with ``output=``).

    Parameters
    ----------
    path : path-like
        ``*.csv`` (header + one row per point), ``*.json`` (an array of row objects) or
        ``*.jsonl`` / ``*.ndjson`` (one row object per line); JSON ``null`` becomes NaN.

    Returns
    -------
    pandas.DataFrame
        One row per point.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".jsonl", ".ndjson"):
        raise ContourError(
            f"{path}: unknown results format {suffix or '(no suffix)'!r}; give the *.csv, "
            "*.json or *.jsonl file written by `recastkit scan -o ...`"
        )
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            text = path.read_text(encoding="utf-8")
            if suffix == ".json":
                records = json.loads(text)
            else:
                records = []
                for lineno, line in enumerate(text.splitlines(), start=1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise ContourError(
                                f"{path}:{lineno}: not a JSON object ({err.msg}); the results "
                                "file is damaged"
                            ) from err
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ContourError(
                    f"{path}: expected a JSON array of row objects (one per point), got "
                    f"{type(records).__name__}"
                )
            frame = pd.DataFrame.from_records(records)
    except ContourError:
        raise
    except json.JSONDecodeError as err:
        raise ContourError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from err
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        raise ContourError(f"cannot read the results file {path}: {err}") from err
    if len(frame) == 0:
        raise ContourError(f"{path} holds no result row")
    return frame


def read_hepdata_csv(path: str | os.PathLike[str]) -> list[HEPDataTable]:
    """Read a HEPData CSV file (one or several tables, ``#:`` comment headers).

    Parameters
    ----------
    path : path-like
        A HEPData table downloaded as CSV (e.g. ``HEPData-ins1748602-v1-M60_Obs.csv``) or
        a file written by :func:`export_contours`.

    Returns
    -------
    list[HEPDataTable]
        In file order.  Columns that parse as numbers are float; HEPData's ``-`` (no value)
        becomes NaN.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ContourError(f"cannot read the HEPData CSV {path}: {err}") from err
    tables: list[HEPDataTable] = []
    header: dict[str, str] = {}
    columns: list[str] | None = None
    rows: list[list[str]] = []

    def close() -> None:
        nonlocal header, columns, rows
        if columns is not None:
            # HEPData writes one block per dependent variable; later blocks of the same
            # table repeat only the qualifiers, so they inherit the table's header
            if "name" not in header and tables:
                header = {**tables[-1].header, **header}
            tables.append(_make_table(header, columns, rows))
            header = {}
        columns, rows = None, []

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            close()
            continue
        if line.startswith("#"):
            if columns is not None:
                close()
            body = line.lstrip("#").lstrip(":").strip()
            key, sep, value = body.partition(": ")
            if not sep:
                key, _, value = body.partition(",")
            header[key.strip()] = value.strip()
            continue
        cells = next(csv.reader([raw]))
        if columns is None:
            columns = [c.strip() for c in cells]
        elif len(cells) != len(columns):
            raise ContourError(
                f"{path}:{lineno}: {len(cells)} values but the table header has "
                f"{len(columns)} columns ({columns}); the CSV is malformed"
            )
        else:
            rows.append(cells)
    close()
    if not tables:
        raise ContourError(f"{path} holds no table (expected a HEPData CSV with a header line)")
    return tables


def _make_table(header: dict[str, str], columns: list[str], rows: list[list[str]]) -> HEPDataTable:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    for col in frame.columns:
        text = frame[col].astype(str).str.strip()
        missing = text.isin(["-", ""])  # HEPData writes no value as "" or "-"
        converted = pd.to_numeric(text.where(~missing), errors="coerce")
        if converted[~missing].notna().all():
            frame[col] = converted.astype(float)
    return HEPDataTable(name=header.get("name", ""), header=dict(header), data=frame)


class OverlayCurve(NamedTuple):
    """One published curve of an overlay file: its name, (N, 2) points, columns, header."""

    name: str
    xy: np.ndarray
    columns: tuple[str, str]
    header: dict[str, str]


def _overlay_curves(path: str | os.PathLike[str]) -> list[OverlayCurve]:
    out = []
    for table in read_hepdata_csv(path):
        numeric = [c for c in table.data.columns if table.data[c].dtype == float]
        if len(numeric) < 2:
            continue
        xy = table.data[numeric[:2]].to_numpy(float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) >= 2:
            out.append(
                OverlayCurve(
                    table.name or Path(path).stem,
                    xy,
                    (str(numeric[0]), str(numeric[1])),
                    dict(table.header),
                )
            )
    if not out:
        raise ContourError(
            f"{path} holds no table with two numeric columns: a contour overlay needs a "
            "HEPData table of (x, y) points"
        )
    return out


def contour_distance(
    curve: Sequence[np.ndarray] | np.ndarray,
    reference: Sequence[np.ndarray] | np.ndarray,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
) -> ContourDistance:
    """Distance from every vertex of ``curve`` to the polyline(s) ``reference``.

    Both axes are divided by their range first, so the distances are fractions of the axis
    ranges (how far a recast contour lies from a published one, say).

    Parameters
    ----------
    curve : array (N, 2) or list of them
        The vertices measured.
    reference : array (M, 2) or list of them
        Polyline(s); the distance is to the nearest point of any segment.
    x_range, y_range : (float, float)
        The axis ranges used for normalisation.

    Returns
    -------
    ContourDistance
    """
    a = _stack_pieces(curve, "curve")
    refs = [np.asarray(r, float) for r in _as_pieces(reference)]
    if not refs or all(len(r) == 0 for r in refs):
        raise ContourError("the reference curve is empty")
    sx = float(x_range[1] - x_range[0])
    sy = float(y_range[1] - y_range[0])
    if not (sx > 0 and sy > 0):
        raise ContourError(f"axis ranges must be increasing, got {x_range} and {y_range}")
    scale = np.array([sx, sy])
    pts = a / scale
    best = np.full(len(pts), np.inf)
    for ref in refs:
        r = ref / scale
        if len(r) == 1:
            best = np.minimum(best, np.hypot(*(pts - r[0]).T))
            continue
        p0, p1 = r[:-1], r[1:]
        d = p1 - p0
        length2 = np.einsum("ij,ij->i", d, d)
        rel = pts[:, None, :] - p0[None, :, :]
        t = np.einsum("nij,ij->ni", rel, d) / np.where(length2 > 0, length2, 1.0)
        t = np.clip(t, 0.0, 1.0)
        nearest = p0[None, :, :] + t[..., None] * d[None, :, :]
        dist = np.sqrt(((pts[:, None, :] - nearest) ** 2).sum(axis=-1)).min(axis=1)
        best = np.minimum(best, dist)
    return ContourDistance(
        mean=float(best.mean()),
        median=float(np.median(best)),
        max=float(best.max()),
        n=len(best),
    )


def _as_pieces(curves: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(curves, np.ndarray) and curves.ndim == 2:
        return [curves]
    return [np.asarray(c, float) for c in curves]


def _stack_pieces(curves: Sequence[np.ndarray] | np.ndarray, what: str) -> np.ndarray:
    pieces = [p for p in _as_pieces(curves) if len(p)]
    if not pieces:
        raise ContourError(f"the {what} is empty: nothing to measure")
    out = np.vstack(pieces)
    if out.ndim != 2 or out.shape[1] != 2:
        raise ContourError(f"the {what} must be (N, 2) arrays of x, y; got shape {out.shape}")
    return out
