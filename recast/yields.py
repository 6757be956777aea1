"""Read recasting-tool signal yields into one tidy table.

A recasting tool (ATLAS SimpleAnalysis, MadAnalysis 5, CheckMATE, Rivet) gives, for every
point of a signal grid, the expected number of signal events in each analysis region.
:func:`read_yields` reads them into a :class:`pandas.DataFrame` with one row per
*point x region x bin*:

======================  ======================================================================
column                  meaning
======================  ======================================================================
<label columns>         the point labels, e.g. ``m1, m2`` (numbers or strings); their names are
                        in ``df.attrs["labels"]``
``name`` (optional)     the patch name of the point (``^[a-zA-Z0-9_]+$``)
``region``              the tool's region name (mapped to a workspace channel by make-patch)
``bin``                 bin index inside the region, from 0 (int)
``yield``               expected signal events at the analysis luminosity (float, >= 0)
``stat_unc`` (opt.)     absolute MC statistical uncertainty of ``yield`` (events, >= 0)
``sys_<n>_up/_down``    (optional) signed relative change of the yield under a +1 / -1 sigma
                        variation of the nuisance parameter ``<n>`` (0.05 = +5 %)
======================  ======================================================================

Two input families are read (the format is described in full in ``docs/make-patch.md``):

``tidy``
    CSV or JSON, the table above; instead of ``yield`` a row may give ``efficiency``
    (acceptance x efficiency, a fraction in [0, 1]), ``xsec_pb`` (cross-section in pb) and
    ``lumi_ifb`` (integrated luminosity in fb^-1), and the yield is
    ``efficiency * xsec_pb * 1000 * lumi_ifb``.
``simpleanalysis``
    The ``<Analysis>.txt`` acceptance file that ATLAS SimpleAnalysis writes per analysis
    (``SR,events,acceptance,err``), one file per grid point; the point labels come from the
    file names (``point_pattern``) or from an index CSV.
``madanalysis5``
    The ``Cutflows/<region>.saf`` files of a MadAnalysis 5 (PAD) run, one ``Cutflows``
    folder per grid point; acceptance = sum of weights after the last cut / initial sum.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likelihood.errors import InvalidSpecification
from likelihood.spec import read_json
from recast._io import atomic_write_text
from recast.errors import YieldsError, cli_worded

__all__ = [
    "read_yields",
    "write_yields",
    "check_yields",
    "label_columns",
    "systematic_names",
    "parse_simpleanalysis_text",
    "parse_madanalysis5_cutflow",
    "FORMATS",
    "RESERVED_COLUMNS",
]

log = logging.getLogger(__name__)

#: Input formats understood by :func:`read_yields`.
FORMATS: tuple[str, ...] = ("tidy", "simpleanalysis", "madanalysis5")

#: Column names with a fixed meaning; every other column of a tidy file is a point label.
RESERVED_COLUMNS: frozenset[str] = frozenset(
    {
        "name",
        "region",
        "bin",
        "yield",
        "stat_unc",
        "efficiency",
        "xsec_pb",
        "lumi_ifb",
        "file",
    }
)

_SYS_RE = re.compile(r"^sys_(?P<name>.+)_(?P<side>up|down)$")
_IDENTIFIER_RE = re.compile(r"^[a-zA-Z0-9_]+$")
# unit-bearing columns we refuse, with the conversion the user should apply
_WRONG_UNITS = {
    "xsec_fb": "xsec_pb = xsec_fb / 1000",
    "xsec_nb": "xsec_pb = xsec_nb * 1000",
    "xsec": "name the column xsec_pb and give the cross-section in picobarn",
    "lumi_ipb": "lumi_ifb = lumi_ipb / 1000",
    "lumi_pb": "lumi_ifb = lumi (in pb^-1) / 1000",
    "lumi": "name the column lumi_ifb and give the luminosity in fb^-1",
    "lumi_fb": "name the column lumi_ifb (inverse femtobarn)",
    "acceptance": "name the column efficiency (acceptance x efficiency, a fraction)",
    "events": "name the column yield (expected signal events at the analysis luminosity)",
}
_PB_TO_FB = 1000.0


# ---------------------------------------------------------------------------------------
# public helpers
# ---------------------------------------------------------------------------------------


def label_columns(df: pd.DataFrame) -> list[str]:
    """The point-label columns of a tidy yields table.

    ``df.attrs["labels"]`` when set (as :func:`read_yields` does), else every column that
    is neither reserved (:data:`RESERVED_COLUMNS`) nor a ``sys_<name>_up/down`` column.
    """
    labels = df.attrs.get("labels")
    if labels:
        return list(labels)
    return [c for c in df.columns if c not in RESERVED_COLUMNS and not _SYS_RE.match(str(c))]


def systematic_names(df: pd.DataFrame) -> list[str]:
    """Names ``<n>`` of the ``sys_<n>_up`` / ``sys_<n>_down`` column pairs, in column order."""
    names: list[str] = []
    for c in df.columns:
        m = _SYS_RE.match(str(c))
        if m and m.group("name") not in names:
            names.append(m.group("name"))
    return names


def read_yields(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    labels: Sequence[str] | None = None,
    point_pattern: str | None = None,
    xsec_pb: float | str | os.PathLike[str] | None = None,
    lumi_ifb: float | None = None,
) -> pd.DataFrame:
    """Read recasting-tool signal yields into the tidy table described in the module doc.

    Parameters
    ----------
    path : path-like
        ``tidy``: a ``.csv`` or ``.json`` file.  ``simpleanalysis``: one ``<Analysis>.txt``
        file, a folder of them (every ``*.txt`` below it, one per grid point), or an
        index CSV with a ``file`` column (paths relative to the index), label columns and
        optionally ``xsec_pb`` and ``lumi_ifb``.  ``madanalysis5``: a folder holding one
        ``Cutflows`` folder of ``<region>.saf`` files per grid point (anywhere below it),
        one such folder, or an index CSV whose ``file`` entries are those folders.
    format : {"tidy", "simpleanalysis", "madanalysis5"}, optional
        Default: guessed from the path: a folder with ``Cutflows/*.saf`` below it, or an
        index whose files are folders -> madanalysis5; another folder, a ``.txt``, a CSV
        whose header is ``SR,events,acceptance,err`` or an index of files -> simpleanalysis;
        else tidy.
    labels : sequence of str, optional
        Names of the point-label columns (tidy) or of the groups of ``point_pattern``.
        Default: every non-reserved column (tidy), the pattern's named groups (simpleanalysis).
    point_pattern : str, optional
        Native formats: regular expression with named groups searched in each file
        name (for a folder: in the path relative to it, so ``700_150/MyAna.txt`` works
        too), e.g. ``r"(?P<m1>\\d+)_(?P<m2>\\d+)"``.  Needed unless an index CSV is given.
        Values that look like numbers become numbers (``350p5`` reads as 350.5).
    xsec_pb : float or path-like, optional
        Native formats: the signal cross-section in picobarn, one number for all
        points or a CSV with the label columns and an ``xsec_pb`` column.
    lumi_ifb : float, optional
        Native formats: the analysis luminosity in fb^-1 (e.g. 139).

    Returns
    -------
    pandas.DataFrame
        One row per point x region x bin, columns ``<labels>, [name], region, bin, yield,
        [stat_unc], [sys_<n>_up, sys_<n>_down ...]``; ``df.attrs["labels"]`` lists the label
        columns and ``df.attrs["source"]`` the input path.

    Raises
    ------
    YieldsError
        Missing or misnamed columns, NaN / negative / out-of-range values, duplicate
        rows, labels inconsistent across rows; the message names the file and the row.
    """
    p = Path(path)
    if not p.exists():
        raise YieldsError(f"{p}: no such file or folder (signal yields)")
    fmt = _guess_format(p) if format is None else format.lower()
    if fmt not in FORMATS:
        raise YieldsError(
            f"{p}: unknown yields format {format!r}; known formats: {', '.join(FORMATS)}"
        )
    if fmt == "tidy":
        if point_pattern is not None or xsec_pb is not None or lumi_ifb is not None:
            raise YieldsError(
                f"{p}: point_pattern / xsec_pb / lumi_ifb apply to native tool output only; "
                "a tidy file carries them as columns (efficiency, xsec_pb, lumi_ifb)"
            )
        df = _read_tidy(p, labels=labels)
    else:
        df = _read_native(
            p, fmt, labels=labels, point_pattern=point_pattern, xsec_pb=xsec_pb, lumi_ifb=lumi_ifb
        )
    df.attrs["source"] = str(p)
    log.info(
        "read %s signal yields from %s: %d points, %d regions, labels %s",
        fmt,
        p,
        df.groupby(df.attrs["labels"], sort=False).ngroups,
        df["region"].nunique(),
        df.attrs["labels"],
    )
    return df


def check_yields(
    df: pd.DataFrame, *, labels: Sequence[str] | None = None, source: str | None = None
) -> pd.DataFrame:
    """Check a tidy yields table built in Python, with the same rules as :func:`read_yields`.

    Returns a normalised copy (label types, ``bin`` as int, ``yield`` as float,
    ``attrs["labels"]`` set); raises :class:`YieldsError` naming the row (0-based) otherwise.
    """
    if not isinstance(df, pd.DataFrame):
        raise YieldsError(f"yields must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise YieldsError(f"{source or 'yields'}: no rows")
    if labels is None and df.attrs.get("labels"):
        labels = list(df.attrs["labels"])
    src = source or str(df.attrs.get("source", "yields table"))
    out = _normalise_tidy(df.reset_index(drop=True), labels, source=src, row_offset=0)
    out.attrs["source"] = src
    return out


def write_yields(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a tidy yields table as CSV (``.csv``) or JSON records (``.json``), atomically.

    The output reads back with :func:`read_yields` into an equal table, dtypes included
    (floats are written as their shortest round-trip text, ``350.0`` stays a float).
    """
    p = Path(path)
    labels = label_columns(df)
    _check_tidy(df.copy(), labels, source=str(p), row_offset=2)
    if p.suffix.lower() == ".json":
        records = [{str(k): _py(v) for k, v in row.items()} for row in df.to_dict("records")]
        text = json.dumps({"labels": labels, "rows": records}, indent=1, allow_nan=False) + "\n"
    elif p.suffix.lower() == ".csv":
        out = df.copy()
        for c in out.columns:  # shortest round-trip text; float labels keep their ".0"
            if pd.api.types.is_float_dtype(out[c]):
                out[c] = [repr(float(v)) for v in out[c]]
        buf = io.StringIO()
        out.to_csv(buf, index=False, lineterminator="\n")
        text = buf.getvalue()
    else:
        raise YieldsError(f"{p}: write_yields writes .csv or .json files, not {p.suffix!r}")
    atomic_write_text(p, text)
    return p


# ---------------------------------------------------------------------------------------
# tidy format
# ---------------------------------------------------------------------------------------


def _guess_format(p: Path) -> str:
    if p.is_dir():
        return "madanalysis5" if _ma5_units(p) else "simpleanalysis"
    if p.suffix.lower() == ".txt":
        return "simpleanalysis"
    if p.suffix.lower() == ".csv":
        header = _first_line(p)
        cols = [c.strip() for c in header.split(",")]
        if cols[:4] == ["SR", "events", "acceptance", "err"]:
            return "simpleanalysis"
        if "file" in cols:  # an index: its entries are files (SimpleAnalysis) or folders (MA5)
            first = _read_index(p)["file"].iloc[0] if cols else ""
            target = Path(first) if Path(first).is_absolute() else p.parent / first
            return "madanalysis5" if target.is_dir() else "simpleanalysis"
    return "tidy"


def _first_line(p: Path) -> str:
    try:
        with p.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    return line.strip()
    except (OSError, UnicodeDecodeError) as err:
        raise YieldsError(f"{p}: cannot read as UTF-8 text: {err}") from err
    return ""


def _read_tidy(p: Path, *, labels: Sequence[str] | None) -> pd.DataFrame:
    suffix = p.suffix.lower()
    if suffix == ".json":
        df, row_offset = _read_tidy_json(p), 0
        json_labels = df.attrs.get("labels")
        if labels is None and json_labels:
            labels = json_labels
    elif suffix in (".csv", ".tsv", ".txt"):
        sep = "\t" if suffix == ".tsv" else ","
        try:
            df = pd.read_csv(
                p, sep=sep, comment="#", skipinitialspace=True, dtype=str, keep_default_na=False
            )
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
            raise YieldsError(f"{p}: malformed CSV: {err}") from err
        except pd.errors.EmptyDataError as err:
            raise YieldsError(f"{p}: empty file, expected a header line and rows") from err
        df.columns = [str(c).strip() for c in df.columns]
        df = df.apply(lambda s: s.str.strip())
        row_offset = 2  # header is line 1
        _check_csv_ragged(p, sep)
    else:
        raise YieldsError(
            f"{p}: tidy yields are CSV (.csv) or JSON (.json) files, not {suffix or 'no suffix'!r}"
        )
    if df.empty:
        raise YieldsError(f"{p}: no rows")
    return _normalise_tidy(df, labels, source=str(p), row_offset=row_offset)


def _check_csv_ragged(p: Path, sep: str) -> None:
    # pandas silently pads short rows with empty strings: refuse rows with a wrong field count.
    with p.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter=sep, skipinitialspace=True)]
    content = [(i + 1, r) for i, r in enumerate(rows) if r and not r[0].lstrip().startswith("#")]
    if not content:
        return
    width = len(content[0][1])
    for lineno, r in content[1:]:
        if len(r) != width:
            raise YieldsError(
                f"{p}, line {lineno}: {len(r)} fields, but the header has {width}; "
                "every row needs a value in every column"
            )


def _read_tidy_json(p: Path) -> pd.DataFrame:
    try:
        doc = read_json(p)
    except InvalidSpecification as err:  # the message names the file, line and column
        raise YieldsError(str(err)) from err
    json_labels = None
    if isinstance(doc, Mapping):
        if "rows" not in doc:
            raise YieldsError(
                f'{p}: a tidy JSON file is a list of row objects or {{"rows": [...]}}'
            )
        json_labels = doc.get("labels")
        if json_labels is not None and (
            not isinstance(json_labels, list) or not all(isinstance(x, str) for x in json_labels)
        ):
            raise YieldsError(f"{p}: /labels must be a list of column names, got {json_labels!r}")
        doc = doc["rows"]
    if not isinstance(doc, list) or not doc:
        raise YieldsError(f"{p}: no rows (expected a non-empty list of row objects)")
    keys0 = None
    for i, row in enumerate(doc):
        if not isinstance(row, Mapping):
            raise YieldsError(f"{p}: row {i} (/rows/{i}) is not an object: {row!r:.120}")
        keys = set(row)
        if keys0 is None:
            keys0 = keys
        elif keys != keys0:
            missing, extra = sorted(keys0 - keys), sorted(keys - keys0)
            raise YieldsError(
                f"{p}: row {i} has different columns than row 0 (labels inconsistent across rows): "
                f"missing {missing}, extra {extra}; every row needs the same keys"
            )
    df = pd.DataFrame.from_records(doc)
    df.attrs["labels"] = json_labels
    return df


def _normalise_tidy(
    df: pd.DataFrame, labels: Sequence[str] | None, *, source: str, row_offset: int
) -> pd.DataFrame:
    cols = list(df.columns)
    where_rows = "line" if row_offset else "row"
    for col, fix in _WRONG_UNITS.items():
        if col in cols:
            raise YieldsError(
                f"{source}: column {col!r} has no stated unit or the wrong one: {fix}"
            )
    if "region" not in cols:
        raise YieldsError(
            f"{source}: missing column 'region' (the tool's region name); columns present: {cols}"
        )
    has_yield = "yield" in cols
    eff_cols = [c for c in ("efficiency", "xsec_pb", "lumi_ifb") if c in cols]
    if has_yield and eff_cols:
        raise YieldsError(
            f"{source}: give either 'yield' or 'efficiency, xsec_pb, lumi_ifb', not both "
            f"(found yield and {eff_cols})"
        )
    if not has_yield and len(eff_cols) != 3:
        missing = [c for c in ("efficiency", "xsec_pb", "lumi_ifb") if c not in cols]
        raise YieldsError(
            f"{source}: missing column 'yield' (signal events at the analysis luminosity), or "
            f"else all of efficiency, xsec_pb [pb], lumi_ifb [fb^-1] (missing {missing}); "
            f"columns present: {cols}"
        )
    # systematics come in complete pairs
    sys_cols = [c for c in cols if _SYS_RE.match(c)]
    for c in sys_cols:
        m = _SYS_RE.match(c)
        assert m is not None
        other = f"sys_{m.group('name')}_{'down' if m.group('side') == 'up' else 'up'}"
        if other not in cols:
            raise YieldsError(f"{source}: column {c!r} has no partner {other!r}; give both sides")
    if labels is None:
        labels = [c for c in cols if c not in RESERVED_COLUMNS and c not in sys_cols]
    labels = list(labels)
    for lab in labels:
        if lab not in cols:
            raise YieldsError(f"{source}: label column {lab!r} not found; columns present: {cols}")
        if lab in RESERVED_COLUMNS or lab in sys_cols:
            raise YieldsError(f"{source}: {lab!r} is a reserved column and cannot be a point label")
        if not _IDENTIFIER_RE.match(lab):
            raise YieldsError(
                f"{source}: label column name {lab!r} must match ^[a-zA-Z0-9_]+$ "
                "(it becomes a PatchSet label)"
            )
    if not labels:
        raise YieldsError(
            f"{source}: no point-label columns (e.g. m1, m2) besides {sorted(set(cols) & RESERVED_COLUMNS)}; "
            "add one column per model parameter"
        )
    unused = [
        c for c in cols if c not in labels and c not in RESERVED_COLUMNS and c not in sys_cols
    ]
    if unused:
        raise YieldsError(f"{source}: columns {unused} are neither labels nor known columns")
    if "file" in cols:
        raise YieldsError(
            f"{source}: a 'file' column belongs to a SimpleAnalysis index CSV; use format='simpleanalysis'"
        )

    out = pd.DataFrame(index=df.index)
    for lab in labels:
        out[lab] = _label_series(
            df[lab], lab, source=source, row_offset=row_offset, where_rows=where_rows
        )
    if "name" in cols:
        out["name"] = df["name"].astype(str)
    region = df["region"]
    bad = region.isna() | (region.astype(str).str.strip() == "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise YieldsError(f"{source}, {where_rows} {i + row_offset}: empty region name")
    out["region"] = region.astype(str)
    if "bin" in cols:
        b = _numeric(df["bin"], "bin", source=source, row_offset=row_offset, where_rows=where_rows)
        badb = (b < 0) | (b != np.floor(b))
        if badb.any():
            i = int(np.flatnonzero(badb.to_numpy())[0])
            raise YieldsError(
                f"{source}, {where_rows} {i + row_offset}: bin {float(b.iloc[i])!r} is not an integer >= 0 "
                "(bins count from 0 inside each region)"
            )
        out["bin"] = b.astype(np.int64)
    else:
        out["bin"] = np.zeros(len(df), dtype=np.int64)

    if has_yield:
        y = _numeric(
            df["yield"], "yield", source=source, row_offset=row_offset, where_rows=where_rows
        )
        _check_range(
            y,
            "yield",
            source,
            row_offset,
            where_rows,
            lo=0.0,
            hint="signal yields are event counts >= 0",
        )
        scale = pd.Series(1.0, index=df.index)
    else:
        eff = _numeric(
            df["efficiency"],
            "efficiency",
            source=source,
            row_offset=row_offset,
            where_rows=where_rows,
        )
        xs = _numeric(
            df["xsec_pb"], "xsec_pb", source=source, row_offset=row_offset, where_rows=where_rows
        )
        lumi = _numeric(
            df["lumi_ifb"], "lumi_ifb", source=source, row_offset=row_offset, where_rows=where_rows
        )
        _check_range(
            eff,
            "efficiency",
            source,
            row_offset,
            where_rows,
            lo=0.0,
            hi=1.0,
            hint="efficiency is acceptance x efficiency, a fraction in [0, 1]",
        )
        _check_range(
            xs,
            "xsec_pb",
            source,
            row_offset,
            where_rows,
            lo=0.0,
            strict=True,
            hint="the cross-section in picobarn must be > 0",
        )
        _check_range(
            lumi,
            "lumi_ifb",
            source,
            row_offset,
            where_rows,
            lo=0.0,
            strict=True,
            hint="the luminosity in fb^-1 must be > 0",
        )
        if float(lumi.max()) > 5000.0:
            log.warning(
                "%s: lumi_ifb up to %s fb^-1: is the luminosity given in pb^-1?", source, lumi.max()
            )
        scale = xs * _PB_TO_FB * lumi
        y = eff * scale
    out["yield"] = y.astype(float)
    if "stat_unc" in cols:
        su = _numeric(
            df["stat_unc"], "stat_unc", source=source, row_offset=row_offset, where_rows=where_rows
        )
        _check_range(
            su,
            "stat_unc",
            source,
            row_offset,
            where_rows,
            lo=0.0,
            hint="stat_unc is an absolute uncertainty >= 0",
        )
        out["stat_unc"] = (su * scale).astype(float)
    for c in sys_cols:
        s = _numeric(df[c], c, source=source, row_offset=row_offset, where_rows=where_rows)
        _check_range(
            s,
            c,
            source,
            row_offset,
            where_rows,
            lo=-1.0,
            hint="a relative variation below -1 would make the yield negative",
        )
        out[c] = s.astype(float)
    out.attrs["labels"] = labels
    _check_tidy(out, labels, source=source, row_offset=row_offset)
    return out.reset_index(drop=True)


def _label_series(
    s: pd.Series, lab: str, *, source: str, row_offset: int, where_rows: str
) -> pd.Series:
    empty = s.isna() | (s.astype(str).str.strip().isin(["", "nan", "NaN"]))
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise YieldsError(
            f"{source}, {where_rows} {i + row_offset}: label {lab!r} is empty (labels inconsistent "
            "across rows); every row needs every label value"
        )
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all():
        arr = num.to_numpy(dtype=float)
        if not np.all(np.isfinite(arr)):
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise YieldsError(
                f"{source}, {where_rows} {i + row_offset}: label {lab!r} = {_py(s.iloc[i])!r} is not finite"
            )
        texts = s.astype(str)
        integer_like = not pd.api.types.is_float_dtype(s) and texts.str.fullmatch(r"[+-]?\d+").all()
        if integer_like:
            return num.astype(np.int64)
        return num.astype(float)
    if num.notna().any():
        i = int(np.flatnonzero(num.isna().to_numpy())[0])
        raise YieldsError(
            f"{source}, {where_rows} {i + row_offset}: label {lab!r} = {_py(s.iloc[i])!r} is not a number "
            "while other rows hold numbers (labels inconsistent across rows)"
        )
    return s.astype(str)


def _numeric(s: pd.Series, col: str, *, source: str, row_offset: int, where_rows: str) -> pd.Series:
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() | ~np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise YieldsError(
            f"{source}, {where_rows} {i + row_offset}: column {col!r} = {_py(s.iloc[i])!r} is not a finite "
            "number (NaN, inf and empty cells are not allowed)"
        )
    return num.astype(float)


def _check_range(
    s: pd.Series,
    col: str,
    source: str,
    row_offset: int,
    where_rows: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    strict: bool = False,
    hint: str = "",
) -> None:
    arr = s.to_numpy(dtype=float)
    bad = np.zeros(arr.shape, dtype=bool)
    if lo is not None:
        bad |= (arr <= lo) if strict else (arr < lo)
    if hi is not None:
        bad |= arr > hi
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise YieldsError(
            f"{source}, {where_rows} {i + row_offset}: {col} = {float(arr[i])!r} is out of range: {hint}"
        )


def _check_tidy(df: pd.DataFrame, labels: Sequence[str], *, source: str, row_offset: int) -> None:
    """Cross-row checks: duplicates, name <-> label consistency."""
    where_rows = "line" if row_offset else "row"
    labels = list(labels)
    key = [*labels, "region", "bin"]
    dup = df.duplicated(subset=key, keep=False)
    if dup.any():
        idx = np.flatnonzero(dup.to_numpy())
        first = df.iloc[idx[0]]
        same = [int(i) + row_offset for i in idx if (df.iloc[i][key] == first[key]).all()]
        point = {lab: _py(first[lab]) for lab in labels}
        raise YieldsError(
            f"{source}: duplicate rows for point {point}, region {first['region']!r}, bin "
            f"{int(first['bin'])} ({where_rows}s {same}); each point x region x bin must appear once"
        )
    if "name" in df.columns:
        bad_names = [n for n in df["name"].unique() if not _IDENTIFIER_RE.match(str(n))]
        if bad_names:
            raise YieldsError(f"{source}: point names {bad_names[:5]} must match ^[a-zA-Z0-9_]+$")
        per_name = df.groupby("name", sort=False)[labels].nunique()
        bad = per_name[(per_name > 1).any(axis=1)]
        if not bad.empty:
            name = bad.index[0]
            rows = df.index[df["name"] == name]
            values = df.loc[rows, labels].drop_duplicates().to_dict("records")
            raise YieldsError(
                f"{source}: point {name!r} has different label values across rows (labels "
                f"inconsistent across rows): {values}"
            )
        per_point = df.groupby(labels, sort=False)["name"].nunique()
        if (per_point > 1).any():
            pt = per_point[per_point > 1].index[0]
            raise YieldsError(
                f"{source}: the point with labels {pt!r} carries several names "
                f"{sorted(df.loc[(df[labels] == pd.Series(pt if isinstance(pt, tuple) else (pt,), index=labels)).all(axis=1), 'name'].unique())}"
            )


def _py(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


# ---------------------------------------------------------------------------------------
# ATLAS SimpleAnalysis
# ---------------------------------------------------------------------------------------

_SA_HEADER = ["SR", "events", "acceptance", "err"]


def parse_simpleanalysis_text(text: str, *, source: str = "<text>") -> pd.DataFrame:
    """Parse one SimpleAnalysis acceptance file (the ``<Analysis>.txt`` it writes).

    Layout (``OutputHandler::saveRegions``): a header ``SR,events,acceptance,err`` (possibly
    followed by variation columns, ignored here), then per analysis a totals row
    ``All,<N generated>,<sum of weights>,<sum of squared weights>`` and one row per region
    ``<region>,<raw MC events>,<acceptance>,<abs. uncertainty of the acceptance>``, where
    acceptance = (sum of weights in the region) / (sum of all weights).

    Returns
    -------
    pandas.DataFrame
        Columns ``region, events, acceptance, err`` (one row per region, totals rows removed).
    """
    lines = [ln.strip() for ln in text.splitlines()]
    content = [(i + 1, ln) for i, ln in enumerate(lines) if ln and not ln.startswith("#")]
    if not content:
        raise YieldsError(f"{source}: empty file, expected a SimpleAnalysis acceptance table")
    first = [c.strip() for c in content[0][1].split(",")]
    if first[:4] != _SA_HEADER:
        raise YieldsError(
            f"{source}, line {content[0][0]}: not a SimpleAnalysis acceptance file: the header "
            f"must start with {','.join(_SA_HEADER)}, found {content[0][1][:80]!r}"
        )
    rows = []
    have_totals = False
    for lineno, ln in content[1:]:
        fields = [c.strip() for c in ln.split(",")]
        if fields[:4] == _SA_HEADER:  # several analyses appended to one file
            have_totals = False
            continue
        if len(fields) < 4:
            raise YieldsError(
                f"{source}, line {lineno}: expected at least 4 fields SR,events,acceptance,err, got {ln!r}"
            )
        name = fields[0]
        if name == "All" or name.endswith("__All"):
            have_totals = True
            try:
                total = float(fields[2])
            except ValueError as err:
                raise YieldsError(
                    f"{source}, line {lineno}: sum of weights {fields[2]!r} is not a number"
                ) from err
            if not math.isfinite(total) or total <= 0:
                raise YieldsError(
                    f"{source}, line {lineno}: the sum of event weights is {fields[2]}; acceptances "
                    "are undefined (did the job process any events?)"
                )
            continue
        if not have_totals:
            raise YieldsError(
                f"{source}, line {lineno}: region row {name!r} before the 'All' totals row; "
                "SimpleAnalysis writes All first"
            )
        try:
            events = float(fields[1])
            acc = float(fields[2])
            unc = float(fields[3])
        except ValueError as exc:
            raise YieldsError(f"{source}, line {lineno}: non-numeric field in {ln!r}") from exc
        for col, val in (("events", events), ("acceptance", acc), ("err", unc)):
            if not math.isfinite(val):
                raise YieldsError(
                    f"{source}, line {lineno}: {col} of region {name!r} is {val} (not finite)"
                )
        if acc < 0:
            raise YieldsError(
                f"{source}, line {lineno}: acceptance of region {name!r} is {acc} < 0 (negative "
                "event weights dominate); a signal yield must be >= 0"
            )
        if unc < 0 or events < 0:
            raise YieldsError(f"{source}, line {lineno}: negative events/err in {ln!r}")
        rows.append((lineno, name, events, acc, unc))
    if not rows:
        raise YieldsError(f"{source}: no region rows after the totals row")
    df = pd.DataFrame(rows, columns=["line", "region", "events", "acceptance", "err"])
    dup = df["region"].duplicated(keep=False)
    if dup.any():
        name = df.loc[dup, "region"].iloc[0]
        raise YieldsError(
            f"{source}: region {name!r} appears on lines {df.loc[df['region'] == name, 'line'].tolist()}"
        )
    return df.drop(columns="line")


# ---------------------------------------------------------------------------------------
# MadAnalysis 5
# ---------------------------------------------------------------------------------------


def _saf_pair(line: str, what: str, source: str, lineno: int) -> tuple[float, float]:
    body = line.split("#", 1)
    words = body[0].split()
    label = body[1].strip() if len(body) > 1 else ""
    if len(words) != 2 or label != what:
        raise YieldsError(
            f"{source}, line {lineno}: expected '<positive> <negative> # {what}', got {line.strip()!r}"
        )
    try:
        pos, neg = float(words[0]), float(words[1])
    except ValueError as err:
        raise YieldsError(
            f"{source}, line {lineno}: non-numeric {what} in {line.strip()!r}"
        ) from err
    if not (math.isfinite(pos) and math.isfinite(neg)):
        raise YieldsError(f"{source}, line {lineno}: {what} is not finite: {line.strip()!r}")
    return pos, neg


def parse_madanalysis5_cutflow(text: str, *, source: str = "<text>") -> tuple[float, float, float]:
    """Parse one MadAnalysis 5 cutflow file ``Cutflows/<region>.saf``.

    Layout (``CounterManager::Write_TextFormat`` between ``<SAFheader>`` and ``<SAFfooter>``):
    an ``<InitialCounter>`` block and one ``<Counter>`` block per cut, each with a name line
    and three lines ``<positive-weight value> <negative-weight value> # nentries`` /
    ``# sum of weights`` / ``# sum of weights^2`` (negative-weight sums are negative).

    Returns
    -------
    (acceptance, err, events)
        acceptance = (sum of weights after the last cut) / (initial sum of weights);
        err = sqrt(sum of squared weights after the last cut) / (initial sum of weights);
        events = raw MC events after the last cut.
    """
    lines = text.splitlines()
    blocks: list[tuple[str, int, list[tuple[int, str]]]] = []
    current: list[tuple[int, str]] | None = None
    for i, raw in enumerate(lines, start=1):
        tag = raw.strip()
        if tag in ("<InitialCounter>", "<Counter>"):
            current = []
            blocks.append((tag, i, current))
        elif tag in ("</InitialCounter>", "</Counter>"):
            current = None
        elif current is not None and tag:
            current.append((i, raw))
    if not blocks or blocks[0][0] != "<InitialCounter>":
        raise YieldsError(
            f"{source}: not a MadAnalysis 5 cutflow: no <InitialCounter> block before the cuts"
        )
    if len(blocks) < 2:
        raise YieldsError(f"{source}: the cutflow has no <Counter> (cut) block")
    parsed = []
    for tag, start, body in (blocks[0], blocks[-1]):
        if len(body) != 4:
            raise YieldsError(
                f"{source}, line {start}: a {tag} block has a name line and 3 number lines, got {len(body)}"
            )
        n = _saf_pair(body[1][1], "nentries", source, body[1][0])
        w = _saf_pair(body[2][1], "sum of weights", source, body[2][0])
        w2 = _saf_pair(body[3][1], "sum of weights^2", source, body[3][0])
        parsed.append((n, w, w2))
    (_, w0, _), (n1, w1, w21) = parsed
    total = w0[0] + w0[1]
    if total <= 0:
        raise YieldsError(
            f"{source}: the initial sum of weights is {total}; acceptances are undefined "
            "(did the job process any events?)"
        )
    acc = (w1[0] + w1[1]) / total
    if acc < 0:
        raise YieldsError(
            f"{source}: the acceptance after the last cut is {acc} < 0 (negative event weights "
            "dominate); a signal yield must be >= 0"
        )
    unc = math.sqrt(max(w21[0] + w21[1], 0.0)) / total
    return acc, unc, n1[0] + n1[1]


def _parse_label_value(text: str) -> int | float | str:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    t = re.sub(r"^(m|neg)(?=\d)", "-", text)
    t = re.sub(r"(?<=\d)p(?=\d)", ".", t)
    try:
        value = float(t)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _sa_units(p: Path) -> list[Path]:
    return sorted(p.rglob("*.txt")) if p.is_dir() else [p]


def _sa_parse(unit: Path) -> pd.DataFrame:
    try:
        text = unit.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise YieldsError(f"{unit}: no such file (listed in the index)") from err
    except (OSError, UnicodeDecodeError) as err:
        raise YieldsError(f"{unit}: cannot read as UTF-8 text: {err}") from err
    return parse_simpleanalysis_text(text, source=str(unit))


def _ma5_units(p: Path) -> list[Path]:
    if p.is_dir() and any(p.glob("*.saf")) and p.name == "Cutflows":
        return [p]
    if p.is_dir():
        return sorted(d for d in p.rglob("Cutflows") if d.is_dir())
    return [p]


def _ma5_parse(unit: Path) -> pd.DataFrame:
    if not unit.exists():
        raise YieldsError(f"{unit}: no such folder (listed in the index)")
    folder = unit / "Cutflows" if (unit / "Cutflows").is_dir() else unit
    if not folder.is_dir():
        raise YieldsError(
            f"{unit}: a MadAnalysis 5 point is a Cutflows folder of <region>.saf files"
        )
    files = sorted(folder.glob("*.saf"))
    if not files:
        raise YieldsError(f"{folder}: no <region>.saf cutflow files")
    rows = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise YieldsError(f"{f}: cannot read as UTF-8 text: {err}") from err
        acc, unc, events = parse_madanalysis5_cutflow(text, source=str(f))
        rows.append((f.stem, events, acc, unc))
    return pd.DataFrame(rows, columns=["region", "events", "acceptance", "err"])


_NATIVE = {
    "simpleanalysis": ("SimpleAnalysis *.txt file", _sa_units, _sa_parse),
    "madanalysis5": ("MadAnalysis 5 Cutflows folder", _ma5_units, _ma5_parse),
}


def _read_native(
    p: Path,
    fmt: str,
    *,
    labels: Sequence[str] | None,
    point_pattern: str | None,
    xsec_pb: float | str | os.PathLike[str] | None,
    lumi_ifb: float | None,
) -> pd.DataFrame:
    what, find_units, parse_unit = _NATIVE[fmt]
    # 1. the list of (unit, label values, xsec, lumi); a unit is one grid point's output
    entries: list[dict[str, Any]] = []
    label_names: list[str]
    if p.is_file() and p.suffix.lower() == ".csv" and _first_line(p).split(",")[0].strip() != "SR":
        index = _read_index(p)
        label_names = (
            list(labels)
            if labels is not None
            else [c for c in index.columns if c not in ("file", "xsec_pb", "lumi_ifb")]
        )
        missing = [c for c in label_names if c not in index.columns]
        if missing or not label_names:
            raise YieldsError(
                f"{p}: index CSV needs label columns; missing {missing}, found {list(index.columns)}"
            )
        for i, row in index.iterrows():
            f = Path(row["file"])
            f = f if f.is_absolute() else p.parent / f
            entry: dict[str, Any] = {"file": f, "line": int(i) + 2}
            entry["labels"] = {
                lab: _parse_label_value(str(row[lab]).strip()) for lab in label_names
            }
            if "xsec_pb" in index.columns:
                entry["xsec_pb"] = _positive(row["xsec_pb"], "xsec_pb", f"{p}, line {int(i) + 2}")
            if "lumi_ifb" in index.columns:
                entry["lumi_ifb"] = _positive(
                    row["lumi_ifb"], "lumi_ifb", f"{p}, line {int(i) + 2}"
                )
            entries.append(entry)
    else:
        files = find_units(p)
        if not files:
            raise YieldsError(f"{p}: no {what} in this folder (format {fmt})")
        if point_pattern is None:
            text = f"{p}: the point labels of {fmt} output come from its path: give "
            example = r"e.g. '(?P<m1>\d+)_(?P<m2>\d+)', or an index CSV"
            raise cli_worded(
                YieldsError(f"{text}point_pattern=, {example}"),
                f"{text}--point-pattern, {example}",
            )
        try:
            rx = re.compile(point_pattern)
        except re.error as err:
            raise YieldsError(
                f"point pattern {point_pattern!r} is not a valid regular expression: {err}"
            ) from err
        groups = list(rx.groupindex)
        if not groups:
            raise YieldsError(f"point pattern {point_pattern!r} has no named groups (?P<label>...)")
        label_names = list(labels) if labels is not None else groups
        if sorted(label_names) != sorted(groups):
            raise YieldsError(
                f"labels {label_names} differ from the named groups {groups} of the point pattern"
            )
        skipped = []
        for f in files:
            rel = f.relative_to(p).as_posix() if p.is_dir() and f != p else f.name
            if f == p and p.is_dir():
                rel = p.resolve().as_posix()
            m = rx.search(rel)
            if m is None:
                if not p.is_dir() or f == p:
                    raise YieldsError(
                        f"{f}: file name does not match the point pattern {point_pattern!r}; "
                        "rename it or adjust --point-pattern"
                    )
                skipped.append(f.name)
                continue
            entries.append(
                {
                    "file": f,
                    "labels": {lab: _parse_label_value(m.group(lab)) for lab in label_names},
                }
            )
        if skipped:
            log.warning(
                "%s: %d file(s)/folder(s) do not match the point pattern %r and are skipped: %s",
                p,
                len(skipped),
                point_pattern,
                ", ".join(skipped[:5]),
            )
        if not entries:
            raise YieldsError(
                f"{p}: no file name matches the point pattern {point_pattern!r} (e.g. "
                f"{files[0].name!r}); adjust --point-pattern"
            )
    for lab in label_names:
        if not _IDENTIFIER_RE.match(lab):
            raise YieldsError(f"{p}: label name {lab!r} must match ^[a-zA-Z0-9_]+$")

    # 2. cross-sections and luminosity
    xsec_table: dict[tuple[Any, ...], float] | None = None
    xsec_value: float | None = None
    if xsec_pb is not None:
        if isinstance(xsec_pb, (int, float)) and not isinstance(xsec_pb, bool):
            xsec_value = _positive(xsec_pb, "xsec_pb", "option xsec_pb")
        else:
            xsec_table = _read_xsec_table(Path(str(xsec_pb)), label_names)
    if lumi_ifb is not None:
        lumi_ifb = _positive(lumi_ifb, "lumi_ifb", "option lumi_ifb")
        if lumi_ifb > 5000:
            log.warning("lumi_ifb = %s fb^-1: is the luminosity given in pb^-1?", lumi_ifb)

    # 3. read every file
    frames = []
    seen: dict[tuple[Any, ...], Path] = {}
    for e in entries:
        key = tuple(e["labels"][lab] for lab in label_names)
        if key in seen:
            raise YieldsError(
                f"{e['file']}: point {dict(zip(label_names, key, strict=True))} is also given by {seen[key]} "
                "(duplicate points); each grid point needs one file"
            )
        seen[key] = e["file"]
        xs = e.get("xsec_pb", xsec_value)
        if xs is None and xsec_table is not None:
            xs = xsec_table.get(key)
            if xs is None:
                raise YieldsError(
                    f"{xsec_pb}: no cross-section for point {dict(zip(label_names, key, strict=True))} "
                    f"(file {e['file'].name}); add a row"
                )
        if xs is None:
            text = (
                f"{e['file']}: {fmt} gives acceptances; the yield needs the signal cross-section: "
            )
            raise cli_worded(
                YieldsError(
                    text + "give xsec_pb= (a number in pb, or a CSV with labels and xsec_pb)"
                ),
                text + "give --xsec (a number in pb, or a CSV with labels and xsec_pb)",
            )
        lumi = e.get("lumi_ifb", lumi_ifb)
        if lumi is None:
            text = (
                f"{e['file']}: {fmt} gives acceptances; the yield needs the analysis luminosity: "
            )
            raise cli_worded(
                YieldsError(text + "give lumi_ifb= (in fb^-1, e.g. 139)"),
                text + "give --lumi (in fb^-1, e.g. 139)",
            )
        acc = parse_unit(Path(e["file"]))
        scale = xs * _PB_TO_FB * lumi
        frame = pd.DataFrame(
            {
                "region": acc["region"],
                "bin": np.zeros(len(acc), dtype=np.int64),
                "yield": acc["acceptance"].to_numpy(dtype=float) * scale,
                "stat_unc": acc["err"].to_numpy(dtype=float) * scale,
            }
        )
        for lab in reversed(label_names):
            frame.insert(0, lab, [e["labels"][lab]] * len(frame))
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    for lab in label_names:
        kinds = {type(v) for v in df[lab]}
        if len(kinds) > 1 and kinds <= {int, float}:
            df[lab] = df[lab].astype(float)
        elif len(kinds) > 1:
            raise YieldsError(
                f"{p}: label {lab!r} mixes numbers and text across files: {sorted(map(str, df[lab].unique()))[:6]}"
            )
    df.attrs["labels"] = label_names
    _check_tidy(df, label_names, source=str(p), row_offset=0)
    return df


def _positive(value: Any, col: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise YieldsError(f"{where}: {col} = {value!r} is not a number") from err
    if not math.isfinite(v) or v <= 0:
        raise YieldsError(f"{where}: {col} = {value!r} must be a finite number > 0")
    return v


def _read_index(p: Path) -> pd.DataFrame:
    try:
        index = pd.read_csv(p, comment="#", skipinitialspace=True, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise YieldsError(f"{p}: malformed index CSV: {err}") from err
    index.columns = [str(c).strip() for c in index.columns]
    if "file" not in index.columns:
        raise YieldsError(
            f"{p}: an index CSV needs a 'file' column; columns present: {list(index.columns)}"
        )
    for col, fix in _WRONG_UNITS.items():
        if col in index.columns:
            raise YieldsError(f"{p}: column {col!r} has no stated unit or the wrong one: {fix}")
    return index


def _read_xsec_table(p: Path, label_names: Sequence[str]) -> dict[tuple[Any, ...], float]:
    try:
        table = pd.read_csv(p, comment="#", skipinitialspace=True, dtype=str, keep_default_na=False)
    except FileNotFoundError as err:
        raise YieldsError(f"{p}: no such cross-section file") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise YieldsError(f"{p}: malformed cross-section CSV: {err}") from err
    table.columns = [str(c).strip() for c in table.columns]
    need = [*label_names, "xsec_pb"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise YieldsError(
            f"{p}: the cross-section CSV needs columns {need} (xsec_pb in picobarn); missing {missing}"
        )
    out: dict[tuple[Any, ...], float] = {}
    for i, row in table.iterrows():
        key = tuple(_parse_label_value(str(row[lab]).strip()) for lab in label_names)
        if key in out:
            raise YieldsError(f"{p}, line {int(i) + 2}: duplicate cross-section for point {key}")
        out[key] = _positive(row["xsec_pb"], "xsec_pb", f"{p}, line {int(i) + 2}")
    return out
