"""Result files of :func:`recast.scan`: written point by point, resumable, atomic at the end.

Formats, chosen by the file suffix:

``.csv``
    Header, then one line per point, appended, flushed and fsynced as each point arrives.
    Floats are written with ``repr`` (exact round trip), NaN as an empty field.
``.jsonl`` / ``.ndjson``
    One JSON object per line, appended and fsynced the same way; NaN as ``null``.
``.json``
    A JSON array of row objects, written atomically when the scan ends (also when it is
    interrupted).  While the scan runs, rows go to a journal ``<name>.json.journal.jsonl``
    beside it (JSON lines, fsynced per point), removed once the array is written.

In every format the file is rewritten atomically (temporary file in the same folder +
``os.replace``) in grid order when the scan ends, so a finished file is always sorted and
complete, and an interrupted one holds every point that finished.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recast._io import atomic_write_text
from recast.errors import ScanError

__all__ = ["ResultFile", "result_format", "atomic_write_text", "write_table"]

log = logging.getLogger(__name__)

_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def result_format(path: str | os.PathLike[str]) -> str:
    """``"csv"``, ``"json"`` or ``"jsonl"`` from the suffix of ``path``; ScanError otherwise."""
    suffix = Path(path).suffix.lower()
    try:
        return _FORMATS[suffix]
    except KeyError:
        raise ScanError(
            f"{path}: unknown output format {suffix or '(no suffix)'!r}; "
            "name the output file *.csv, *.json or *.jsonl"
        ) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / Infinity
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _jsonable(value.item())
    return value


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _csv_lines(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_field(row.get(c)) for c in columns])
    return buf.getvalue()


def _json_line(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    return json.dumps({c: _jsonable(row.get(c)) for c in columns}, allow_nan=False) + "\n"


def _complete_lines(text: str) -> str:
    """Drop a trailing partial line (a write cut short by a kill)."""
    if text and not text.endswith("\n"):
        cut = text.rfind("\n")
        log.warning("ignoring an incomplete last line in a result file (interrupted write)")
        return text[: cut + 1] if cut >= 0 else ""
    return text


def _start_over(text: str) -> ScanError:
    """The error for an output that is not ours, worded for the API and for the CLI."""
    error = ScanError(f"{text}; choose another output file or start over with overwrite=True")
    error.cli_message = f"{text}; choose another -o file or start over with --overwrite"
    return error


def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a whole result table atomically, in the format of the suffix of ``path``."""
    rf = ResultFile(path, [str(c) for c in table.columns])
    rf.finalize(table.to_dict("records"))


class ResultFile:
    """An output file of a scan: read previous rows, append new ones, finalize atomically.

    Parameters
    ----------
    path : path-like
        ``*.csv``, ``*.json`` or ``*.jsonl``.
    columns : sequence of str
        The table columns, in order.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.format = result_format(self.path)
        self.columns = list(columns)
        self._fd: int | None = None

    # -- reading --------------------------------------------------------------------------
    @property
    def journal(self) -> Path:
        """The file that rows are appended to while the scan runs."""
        if self.format == "json":
            return self.path.with_name(self.path.name + ".journal.jsonl")
        return self.path

    def exists(self) -> bool:
        """True when the output (or the journal of an interrupted ``.json`` scan) exists."""
        return self.path.exists() or self.journal.exists()

    def read(self) -> pd.DataFrame:
        """Every row already in the output (and its journal), later rows winning.

        Returns
        -------
        pandas.DataFrame
            The rows as stored (columns as in the file).  Empty when nothing is there.
        """
        frames = []
        if self.format == "csv":
            if self.path.exists():
                frames.append(self._read_csv(self.path))
        elif self.format == "jsonl":
            if self.path.exists():
                frames.append(self._read_jsonl(self.path))
        else:
            if self.path.exists():
                frames.append(self._read_json_array(self.path))
            if self.journal.exists():
                frames.append(self._read_jsonl(self.journal))
        frames = [f for f in frames if len(f.columns)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _read_text(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ScanError(f"{path}: cannot read the previous results to resume: {err}") from err

    def _read_csv(self, path: Path) -> pd.DataFrame:
        text = _complete_lines(self._read_text(path))
        if not text.strip():
            return pd.DataFrame()
        try:
            # every field as text: the caller converts the value columns with float(),
            # which reads back exactly what repr() wrote
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as err:
            raise _start_over(f"{path}: not a recastkit result table ({err})") from err
        return df

    def _read_jsonl(self, path: Path) -> pd.DataFrame:
        text = _complete_lines(self._read_text(path))
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise _start_over(f"{path}, line {lineno}: not a JSON object ({err.msg})") from err
            if not isinstance(rec, dict):
                raise ScanError(f"{path}, line {lineno}: expected a JSON object per line")
            records.append(rec)
        return self._records_frame(records)

    def _read_json_array(self, path: Path) -> pd.DataFrame:
        text = self._read_text(path)
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise _start_over(f"{path}: malformed JSON at line {err.lineno} ({err.msg})") from err
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ScanError(f"{path}: expected a JSON array of row objects")
        return self._records_frame(records)

    @staticmethod
    def _records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
        if not records:
            return pd.DataFrame()
        columns = list(records[0])
        for rec in records[1:]:
            columns.extend(k for k in rec if k not in columns)
        return pd.DataFrame.from_records(records, columns=columns)

    # -- writing --------------------------------------------------------------------------
    def _write_error(self, path: Path, err: OSError, what: str) -> ScanError:
        cause = err.strerror or " ".join(str(err).split()) or type(err).__name__
        error = ScanError(
            f"{path}: cannot {what}: {cause}; the finished points are kept (free space or "
            "choose a writable output, then resume=True continues the scan)"
        )
        error.cli_message = (
            f"{path}: cannot {what}: {cause}; the finished points are kept (free space or "
            "choose a writable -o, then run the same command with --resume)"
        )
        return error

    def start(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Begin a run: rewrite the journal atomically with ``rows``, then open it to append."""
        rows = list(rows)
        try:
            if self.format == "csv":
                atomic_write_text(self.journal, _csv_lines(rows, self.columns, header=True))
            else:
                atomic_write_text(self.journal, "".join(_json_line(r, self.columns) for r in rows))
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            raise self._write_error(self.journal, err, "write the results") from None

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append finished rows and push them to disk (fsync); all or nothing.

        A write that fails (disk full) is undone by truncating the file back to its size
        before the write, so the file never ends with a partial row; a ScanError names
        the file and the cause.
        """
        if self._fd is None:
            raise RuntimeError("ResultFile.append before start")
        if self.format == "csv":
            text = _csv_lines(rows, self.columns, header=False)
        else:
            text = "".join(_json_line(r, self.columns) for r in rows)
        if not text:
            return
        data = memoryview(text.encode("utf-8"))
        fd = self._fd
        size = os.fstat(fd).st_size
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise self._write_error(self.journal, err, "append to the results") from None

    def close(self) -> None:
        """Close the journal (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def finalize(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite the output atomically with ``rows`` (grid order); drop the journal.

        Raises ScanError naming the file when it cannot be written; the journal (for
        ``.csv`` / ``.jsonl`` the output itself) then still holds every finished row.
        """
        self.close()
        rows = list(rows)
        try:
            if self.format == "csv":
                atomic_write_text(self.path, _csv_lines(rows, self.columns, header=True))
            elif self.format == "jsonl":
                atomic_write_text(self.path, "".join(_json_line(r, self.columns) for r in rows))
            else:
                body = ",\n".join(_json_line(r, self.columns).rstrip("\n") for r in rows)
                atomic_write_text(self.path, f"[\n{body}\n]\n" if rows else "[]\n")
        except OSError as err:
            raise self._write_error(self.path, err, "write the results") from None
        if self.format == "json":
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
