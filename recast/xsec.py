"""Signal cross-sections per grid point: the table format, the patch metadata, the limits.

A cross-section table is a CSV file (or a DataFrame) with the point-label columns and

==========================  ===========================================================
``xsec_fb`` or ``xsec_pb``  the signal cross-section; the suffix is the unit, and every
                            cross-section column of the scan results is in that unit
``xsec_unc_<u>``            (optional) absolute symmetric uncertainty, same unit ``<u>``
``xsec_unc_up_<u>``,        (optional) absolute upward / downward uncertainties (both
``xsec_unc_down_<u>``       positive numbers)
``xsec_unc_rel``            (optional) relative symmetric uncertainty (0.1 = 10 %)
``xsec_unc_up_rel``,        (optional) relative upward / downward uncertainties
``xsec_unc_down_rel``
==========================  ===========================================================

Other columns are ignored (an index CSV of SimpleAnalysis output with ``xsec_pb`` works
as it is).  :func:`recast.make_patchset` stores each point's row in its patch as

.. code-block:: json

    {"metadata": {"name": "...", "values": [...],
                  "xsec": {"value": 12.5, "unit": "fb",
                           "uncertainty_up": 1.1, "uncertainty_down": 1.0}}}

(uncertainties absolute, in ``unit``; absent when not known), and :func:`recast.scan`
reads it back (or takes a table directly, ``xsec=``) to add the columns ``xsec``,
``xsec_unc_up``, ``xsec_unc_down``, ``xsec_unit``, the cross-section upper limits
``xsec_ul_obs``, ``xsec_ul_exp_m2`` ... ``xsec_ul_exp_p2`` (``mu_ul * xsec``: the signal
strength multiplies the whole signal, so the limit on the cross-section is the limit on mu
times the cross-section the patch was made with) and the theory band ``cls_obs_up`` /
``cls_obs_down`` (observed CLs at ``mu * (1 + delta_up)`` and ``mu * (1 - delta_down)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recast._scan_worker import THEORY_COLUMNS
from recast.errors import RecastError

__all__ = [
    "XSEC_UNITS",
    "XSEC_COLUMNS",
    "XSEC_LIMIT_COLUMNS",
    "THEORY_COLUMNS",
    "read_xsec",
    "xsec_metadata",
    "xsec_from_patchset",
]

#: Units a cross-section table may use (the column suffix).
XSEC_UNITS: tuple[str, ...] = ("fb", "pb")
#: Per-point cross-section columns of the scan results.
XSEC_COLUMNS: tuple[str, ...] = ("xsec", "xsec_unc_up", "xsec_unc_down", "xsec_unit")
#: Cross-section upper limits (with ``upper_limit=True``), expected band -2 ... +2 sigma.
XSEC_LIMIT_COLUMNS: tuple[str, ...] = (
    "xsec_ul_obs",
    "xsec_ul_exp_m2",
    "xsec_ul_exp_m1",
    "xsec_ul_exp",
    "xsec_ul_exp_p1",
    "xsec_ul_exp_p2",
)


class XsecError(RecastError, ValueError):
    """A cross-section table or patch metadata that cannot be used."""


def _number(value: Any, what: str, *, positive: bool) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise XsecError(f"{what} = {value!r} is not a number") from None
    if not math.isfinite(out) or out < 0 or (positive and out == 0):
        need = "> 0" if positive else ">= 0"
        raise XsecError(f"{what} = {value!r} must be a finite number {need}")
    return out


def _unit(columns: Sequence[str], source: str) -> str:
    found = [u for u in XSEC_UNITS if f"xsec_{u}" in columns]
    if len(found) != 1:
        raise XsecError(
            f"{source}: a cross-section table needs exactly one of the columns "
            f"{', '.join('xsec_' + u for u in XSEC_UNITS)} (the suffix is the unit); "
            f"columns present: {list(columns)}"
        )
    return found[0]


def read_xsec(table: pd.DataFrame | str | os.PathLike[str], labels: Sequence[str]) -> pd.DataFrame:
    """Read a cross-section table (format in the module docstring).

    Parameters
    ----------
    table : pandas.DataFrame or path-like
        The table, or a CSV file holding it.
    labels : sequence of str
        The point-label columns that identify a point (the patchset's labels).

    Returns
    -------
    pandas.DataFrame
        Columns ``<labels>, xsec, xsec_unc_up, xsec_unc_down, xsec_unit``; uncertainties
        absolute in ``xsec_unit``, NaN when the table gives none.  One row per point.

    Raises
    ------
    XsecError
        Missing label or cross-section column, a value that is not a positive number, a
        point given twice.
    """
    source = "cross-section table"
    if not isinstance(table, pd.DataFrame):
        source = str(table)
        try:
            table = pd.read_csv(Path(table), comment="#", skipinitialspace=True)
        except FileNotFoundError:
            raise XsecError(f"{source}: no such cross-section file") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise XsecError(f"{source}: malformed cross-section CSV: {err}") from err
        except OSError as err:
            raise XsecError(f"{source}: cannot read the cross-section file: {err}") from err
    columns = [str(c).strip() for c in table.columns]
    table = table.set_axis(columns, axis=1)
    missing = [lab for lab in labels if lab not in columns]
    if missing:
        raise XsecError(
            f"{source}: no column for the point label(s) {missing}; a cross-section table "
            f"needs the label columns {list(labels)} and xsec_fb or xsec_pb"
        )
    unit = _unit(columns, source)
    has = set(columns)
    rows = []
    seen: dict[tuple[Any, ...], int] = {}
    for i, rec in enumerate(table.to_dict("records")):
        line = f"{source}, row {i + 1}"
        key = tuple(_label_key(rec[lab]) for lab in labels)
        if key in seen:
            raise XsecError(
                f"{line}: point {dict(zip(labels, key, strict=True))} already on row "
                f"{seen[key] + 1}; give one cross-section per point"
            )
        seen[key] = i
        value = _number(rec[f"xsec_{unit}"], f"{line}: xsec_{unit}", positive=True)
        up = down = math.nan
        for side in ("up", "down"):
            got = math.nan
            for col, scale in (
                (f"xsec_unc_{side}_{unit}", 1.0),
                (f"xsec_unc_{unit}", 1.0),
                (f"xsec_unc_{side}_rel", value),
                ("xsec_unc_rel", value),
            ):
                if col in has and pd.notna(rec[col]):
                    got = _number(rec[col], f"{line}: {col}", positive=False) * scale
                    break
            if side == "up":
                up = got
            else:
                down = got
        if math.isfinite(down) and down >= value:
            raise XsecError(
                f"{line}: the downward uncertainty {down!r} {unit} is not smaller than the "
                f"cross-section {value!r} {unit}"
            )
        rows.append(
            {
                **dict(zip(labels, key, strict=True)),
                "xsec": value,
                "xsec_unc_up": up,
                "xsec_unc_down": down,
                "xsec_unit": unit,
            }
        )
    if not rows:
        raise XsecError(f"{source} holds no row")
    return pd.DataFrame(rows, columns=[*labels, *XSEC_COLUMNS])


def _label_key(value: Any) -> Any:
    """Label values compare as numbers when they are numbers (300 == 300.0 == "300")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text.replace("p", ".")) if text else text
    except ValueError:
        return text


def xsec_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metadata.xsec`` object of one patch, from one row of :func:`read_xsec`."""
    out: dict[str, Any] = {"value": float(row["xsec"]), "unit": str(row["xsec_unit"])}
    for side in ("up", "down"):
        v = float(row[f"xsec_unc_{side}"])
        if math.isfinite(v):
            out[f"uncertainty_{side}"] = v
    return out


def lookup(table: pd.DataFrame, labels: Sequence[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Point key (label values as :func:`_label_key`) -> row of a :func:`read_xsec` table."""
    return {tuple(_label_key(rec[lab]) for lab in labels): rec for rec in table.to_dict("records")}


def point_key(values: Sequence[Any]) -> tuple[Any, ...]:
    """The key of a point's label values, as used by :func:`lookup`."""
    return tuple(_label_key(v) for v in values)


def xsec_from_patchset(patchset: Mapping[str, Any], *, source: str = "patchset") -> pd.DataFrame:
    """The cross-sections stored by make-patch in ``/patches/*/metadata/xsec``.

    Returns
    -------
    pandas.DataFrame
        Columns ``patch, xsec, xsec_unc_up, xsec_unc_down, xsec_unit``, one row per patch
        that has the field (empty when none has).

    Raises
    ------
    XsecError
        A malformed ``xsec`` object, or several units in one patchset.
    """
    rows = []
    for i, patch in enumerate(patchset.get("patches", [])):
        meta = patch.get("metadata") or {}
        doc = meta.get("xsec")
        if doc is None:
            continue
        where = f"{source}: /patches/{i}/metadata/xsec"
        if not isinstance(doc, Mapping) or "value" not in doc or "unit" not in doc:
            raise XsecError(
                f'{where} must be an object {{"value": ..., "unit": "fb"|"pb", '
                f'"uncertainty_up": ..., "uncertainty_down": ...}}, got {doc!r:.80}'
            )
        if doc["unit"] not in XSEC_UNITS:
            raise XsecError(f"{where}/unit is {doc['unit']!r}; use one of {XSEC_UNITS}")
        rows.append(
            {
                "patch": meta.get("name"),
                "xsec": _number(doc["value"], f"{where}/value", positive=True),
                "xsec_unc_up": _number(
                    doc["uncertainty_up"], f"{where}/uncertainty_up", positive=False
                )
                if "uncertainty_up" in doc
                else math.nan,
                "xsec_unc_down": _number(
                    doc["uncertainty_down"], f"{where}/uncertainty_down", positive=False
                )
                if "uncertainty_down" in doc
                else math.nan,
                "xsec_unit": doc["unit"],
            }
        )
    frame = pd.DataFrame(rows, columns=["patch", *XSEC_COLUMNS])
    units = sorted(set(frame["xsec_unit"]))
    if len(units) > 1:
        raise XsecError(f"{source}: the patches give cross-sections in several units {units}")
    return frame
