"""The user's small configuration files (mappings): JSON, or TOML by the file suffix.

make-patch's region mapping and combine's parameter mapping are read the same way; each
caller checks the keys it knows and names its own error class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json_or_toml"]


def read_json_or_toml(path: str | os.PathLike[str], error: type[Exception]) -> Any:
    """The document in ``path``: TOML for a ``.toml`` suffix (``tomllib``, or ``tomli`` on
    Python 3.10), JSON otherwise.

    Raises
    ------
    error
        The file is missing, unreadable, not UTF-8, or malformed; the message names the
        file (and, for JSON, the line and column).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise error(f"{p}: no such mapping file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{p}: cannot read as UTF-8 text: {err}") from err
    if p.suffix.lower() == ".toml":
        try:
            import tomllib as toml_reader  # type: ignore[import-not-found]
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as toml_reader  # type: ignore[import-not-found,no-redef]
            except ModuleNotFoundError as err:
                raise error(
                    f"{p}: reading TOML needs Python >= 3.11 (tomllib) or the tomli package; "
                    "write the mapping as JSON instead (same keys)"
                ) from err
        try:
            return toml_reader.loads(text)
        except ValueError as err:  # tomllib.TOMLDecodeError is a ValueError
            raise error(f"{p}: malformed TOML: {err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(
            f"{p}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
