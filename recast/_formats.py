"""What kind of file is this?  Magic-byte sniffing shared by download and extraction.

Not part of the fetch chain (resolve -> download -> store -> extract -> archive): both
:mod:`recast.download` (is the body an archive, or an HTML page?) and
:mod:`recast.extract` (which unpacker?) ask it.
"""

from __future__ import annotations

import os
import re

__all__ = ["describe_bytes", "sniff_archive"]


def sniff_archive(path: str | os.PathLike[str]) -> str | None:
    """Guess an archive's kind from its first bytes.

    Returns
    -------
    str or None
        ``"zip"``, ``"tar"`` (plain), ``"gzip"``, ``"bzip2"``, ``"xz"``, or None when the
        bytes are no archive we can read.
    """
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def describe_bytes(path: str | os.PathLike[str]) -> str:
    """A short human description of a file that is not an archive (for error messages)."""
    with open(path, "rb") as fh:
        head = fh.read(2048)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        title = re.search(rb"<title>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
        t = title.group(1).decode("utf-8", "replace").strip()[:80] if title else ""
        return f"an HTML page{f' titled {t!r}' if t else ''}"
    if text.startswith((b"{", b"[")):
        return f"JSON text starting {head[:80].decode('utf-8', 'replace')!r}"
    if not head:
        return "an empty file"
    return f"{len(head)}+ bytes starting {head[:16]!r}"
