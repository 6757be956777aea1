"""Download: HTTP with retries, a stall detector, a deadline and a progress bar (I/O only).

The second step of :func:`recast.fetch` (resolve -> download -> store -> extract ->
archive).  Everything here talks HTTP and writes only the file it is asked to write; it
knows nothing about the cache.  Every request goes through one retry loop,
:func:`_with_retries`:

* connection errors, timeouts, stalls, bodies cut short, HTTP 429 and 5xx are retried with
  exponential backoff (``Retry-After`` honoured, capped);
* a host that cannot be reached at all (its name does not resolve, or nothing listens on
  the port) fails at once with :class:`HostUnreachable`: retrying does not bring a
  network back;
* other HTTP errors (404, 403...) fail at once;
* the whole download, retries and waits included, must finish within
  ``RetryPolicy.deadline`` seconds, and an attempt during which less than
  ``RetryPolicy.stall_bytes`` arrive in ``RetryPolicy.stall_timeout`` seconds is abandoned.
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from tqdm.auto import tqdm

from recast._formats import describe_bytes, sniff_archive
from recast.errors import DownloadError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Download",
    "HostUnreachable",
    "RetryPolicy",
    "download",
    "get_json",
    "new_session",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default of ``--timeout``: seconds without progress before an attempt is abandoned.
DEFAULT_TIMEOUT = 20.0


class RetryPolicy(NamedTuple):
    """Timeouts and retries of every HTTP request.

    Waits grow as ``backoff * 2**(attempt - 1)``; a ``Retry-After`` header (seconds or an
    HTTP date) takes precedence; no single wait exceeds ``max_wait``.  An attempt is
    abandoned when fewer than ``stall_bytes`` bytes arrive within ``stall_timeout``
    seconds (a dead or dripping server), and at most ``stall_attempts`` attempts may end
    that way or in a timeout (a dead server is given up on after about
    ``stall_attempts * read_timeout`` seconds, not ``attempts`` times that); the request as
    a whole (every attempt and wait) gives up after ``deadline`` seconds.
    """

    attempts: int = 5  #: total tries per request
    backoff: float = 1.0  #: first wait, seconds
    max_wait: float = 60.0  #: cap on any single wait, seconds
    connect_timeout: float = 15.0  #: seconds to establish the connection
    read_timeout: float = DEFAULT_TIMEOUT  #: seconds without any byte from the server
    stall_timeout: float = DEFAULT_TIMEOUT  #: window of the stall detector, seconds
    stall_bytes: int = 16 * 1024  #: bytes that must arrive in each stall window
    stall_attempts: int = 2  #: attempts that may end in a timeout or a stall
    deadline: float = 3600.0  #: overall limit of one request, retries included, seconds

    @classmethod
    def from_timeout(cls, timeout: float) -> RetryPolicy:
        """The policy of ``--timeout SECONDS``: stall window, connect and read timeouts of
        ``timeout`` seconds, and a deadline of ``max(120, 60 * timeout)`` seconds."""
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        return cls(
            connect_timeout=min(15.0, timeout),
            read_timeout=timeout,
            stall_timeout=timeout,
            deadline=max(120.0, 60.0 * timeout),
            max_wait=min(60.0, 2 * timeout),
        )


class Download(NamedTuple):
    """A completed, verified download."""

    path: Path  #: the file written
    url: str  #: the final URL after redirects
    sha256: str
    size: int
    content_type: str | None
    filename: str | None  #: from Content-Disposition, else the URL


class HostUnreachable(DownloadError):
    """The server's host name does not resolve, or nothing answers on its port."""

    def __init__(self, url: str, why: str) -> None:
        host = urlsplit(url).netloc or url
        super().__init__(f"cannot reach {host} ({why})")
        self.url = url
        self.host = host


class _Retry(Exception):
    """An attempt failed in a way worth retrying (``stalled``: the server went silent)."""

    def __init__(self, reason: str, hint: float | None = None, *, stalled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.stalled = stalled


def new_session() -> requests.Session:
    """A requests session with recastkit's User-Agent."""
    from recast import __version__

    session = requests.Session()
    session.headers["User-Agent"] = f"recastkit/{__version__} (+https://github.com/recastkit)"
    return session


# ---------------------------------------------------------------------------------------
# the one retry loop
# ---------------------------------------------------------------------------------------


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _wait(policy: RetryPolicy, attempt: int, hint: float | None) -> float:
    wait = hint if hint is not None else policy.backoff * 2 ** (attempt - 1)
    return max(0.0, min(wait, policy.max_wait))


def _unreachable(err: BaseException) -> str | None:
    """Why the host cannot be reached at all (DNS failure, connection refused), else None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, urllib3.exceptions.NameResolutionError) or isinstance(e, socket.gaierror):
            return "its name does not resolve"
        if isinstance(e, ConnectionRefusedError) or (
            isinstance(e, OSError) and e.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        stack.extend([e.__cause__, e.__context__, getattr(e, "reason", None)])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return None


def _short(err: BaseException) -> str:
    text = str(err)
    m = re.search(r"\(Caused by (\w+)\(", text)
    cause = f" ({m.group(1)})" if m else ""
    return f"{type(err).__name__}{cause}"


def _with_retries(url: str, policy: RetryPolicy, attempt_once: Callable[[float], T]) -> T:
    """Call ``attempt_once(deadline)`` until it returns, retrying on :class:`_Retry`,
    connection errors and timeouts; the single retry loop of recastkit."""
    deadline = time.monotonic() + policy.deadline
    last = ""
    attempt = stalls = 0
    for attempt in range(1, policy.attempts + 1):
        hint: float | None = None
        try:
            return attempt_once(deadline)
        except _Retry as err:
            last, hint = err.reason, err.hint
            stalls += err.stalled
        except requests.Timeout as err:
            last = f"no answer within {policy.read_timeout:g} s ({_short(err)})"
            stalls += 1
        except requests.ConnectionError as err:
            why = _unreachable(err)
            if why is not None:
                raise HostUnreachable(url, why) from None
            last = _short(err)
        left = deadline - time.monotonic()
        if attempt == policy.attempts or stalls >= policy.stall_attempts:
            break
        wait = _wait(policy, attempt, hint)
        if left <= wait:
            raise DownloadError(
                f"{url}: no complete answer within the deadline of {policy.deadline:g} s "
                f"({attempt} attempt{'s' if attempt > 1 else ''}, last: {last}); the server is "
                "too slow or not answering: try again later, or raise --timeout"
            )
        log.warning("%s: %s; retry %d/%d in %.1f s", url, last, attempt, policy.attempts - 1, wait)
        time.sleep(wait)
    raise DownloadError(
        f"{url}: giving up after {attempt} attempts ({last}); check the network and try again later"
    )


def _status_hint(status: int) -> str:
    if status == 404:
        return "check the id / DOI / URL (it does not exist there)"
    if status in (401, 403):
        return "the resource is not public (yet); check the record version"
    if status == 406:
        return "the server cannot send an archive for this resource"
    return "check the source"


def _check_status(url: str, resp: requests.Response) -> None:
    status = resp.status_code
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status} {resp.reason}", _retry_after(resp))
    if status >= 400:
        raise DownloadError(f"{url}: HTTP {status} {resp.reason}; {_status_hint(status)}")


# ---------------------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------------------


def get_json(
    url: str, *, session: requests.Session | None = None, retry: RetryPolicy | None = None
) -> Any:
    """GET ``url`` as JSON, with retries.

    Raises
    ------
    HostUnreachable
        The host name does not resolve or the connection is refused (no retries).
    DownloadError
        Any other failure, after the retries; or the answer is not JSON.
    """
    session = session or new_session()
    policy = retry or RetryPolicy()

    def once(deadline: float) -> Any:
        with session.get(
            url,
            headers={"Accept": "application/json"},
            timeout=(policy.connect_timeout, policy.read_timeout),
        ) as resp:
            _check_status(url, resp)
            try:
                return resp.json()
            except ValueError as err:
                raise DownloadError(
                    f"{url}: expected JSON, got {resp.headers.get('Content-Type')!r} "
                    f"starting {resp.text[:80]!r}; is RECASTKIT_HEPDATA_URL right?"
                ) from err

    return _with_retries(url, policy, once)


def _filename(resp: requests.Response) -> str | None:
    cd = resp.headers.get("Content-Disposition", "")
    m = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", cd, re.IGNORECASE) or re.search(
        r'filename="?([^";]+)"?', cd, re.IGNORECASE
    )
    name = m.group(1).strip() if m else Path(urlsplit(resp.url).path).name
    name = os.path.basename(name.replace("\\", "/"))
    return name or None


def download(
    url: str,
    dest_dir: str | os.PathLike[str],
    *,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = False,
    max_bytes: int | None = None,
) -> Download:
    """Stream ``url`` into a new file in ``dest_dir``, with retries, and check it is an archive.

    The sha256 is computed while streaming.  A body that is no tar/zip archive (an HTML
    page, JSON...) raises :class:`DownloadError` saying what came back.  Failed attempts
    leave no file behind.  See the module docstring for what is retried.

    Parameters
    ----------
    url : str
        What to download (redirects are followed).
    dest_dir : path-like
        Existing folder for the file (use a private work folder).
    session : requests.Session, optional
        Injected HTTP session (tests, proxies); a fresh one otherwise.
    headers : dict, optional
        Extra request headers (e.g. ``Accept``).
    retry : RetryPolicy, optional
        Timeouts, stall detector, deadline and retries.
    progress : bool
        Show a tqdm byte progress bar on stderr.
    max_bytes : int, optional
        Refuse downloads larger than this.

    Raises
    ------
    HostUnreachable
        The host cannot be reached at all (no retries).
    DownloadError
        HTTP error, too large, not an archive, or still failing after the retries or the
        deadline.
    OSError
        Writing the file failed (read-only folder, full disk): the partial file is removed.
    """
    session = session or new_session()
    policy = retry or RetryPolicy()
    dest_dir = Path(dest_dir)
    tries = [0]

    def once(deadline: float) -> Download:
        tries[0] += 1
        tmp = dest_dir / f"download.{tries[0]}.part"
        try:
            with session.get(
                url,
                headers=headers or {},
                stream=True,
                timeout=(policy.connect_timeout, policy.read_timeout),
            ) as resp:
                _check_status(url, resp)
                return _stream(resp, tmp, policy, deadline, progress, max_bytes)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    return _with_retries(url, policy, once)


def _write(out: Any, chunk: bytes, path: Path) -> None:
    try:
        out.write(chunk)
        out.flush()  # a full disk shows here, not in a later close
    except OSError as err:
        if err.filename is None:  # write(2) errors name no file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def _stream(
    resp: requests.Response,
    tmp: Path,
    policy: RetryPolicy,
    deadline: float,
    progress: bool,
    max_bytes: int | None,
) -> Download:
    """Write the body to ``tmp``; raise :class:`_Retry` when the attempt should be repeated."""
    length_header = resp.headers.get("Content-Length")
    expected = int(length_header) if length_header and length_header.isdigit() else None
    if max_bytes is not None and expected is not None and expected > max_bytes:
        raise DownloadError(f"{resp.url}: {expected} bytes exceed the limit of {max_bytes}")
    sha = hashlib.sha256()
    size = 0
    name = _filename(resp)
    window_start, window_size = time.monotonic(), 0
    try:
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name or "download",
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                # read1: whatever has arrived (one recv), so that a dripping server is seen
                chunk = resp.raw.read1(1 << 16, decode_content=False)
                if not chunk:
                    break
                _write(out, chunk, tmp)
                sha.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
                if max_bytes is not None and size > max_bytes:
                    raise DownloadError(f"{resp.url}: more than {max_bytes} bytes; refusing it")
                now = time.monotonic()
                window_size += len(chunk)
                if now >= deadline:
                    raise DownloadError(
                        f"{resp.url}: not complete within the deadline of {policy.deadline:g} s "
                        f"({size} bytes so far); the server is too slow: try again later, or "
                        "raise --timeout"
                    )
                if now - window_start >= policy.stall_timeout:
                    if window_size < policy.stall_bytes:
                        raise _Retry(
                            f"stalled: {window_size} bytes in the last "
                            f"{now - window_start:.0f} s, {size} bytes in all",
                            stalled=True,
                        )
                    window_start, window_size = now, 0
    except (urllib3.exceptions.ReadTimeoutError, requests.Timeout, TimeoutError) as err:
        raise _Retry(
            f"stalled: no byte for {policy.read_timeout:g} s after {size} bytes", stalled=True
        ) from err
    except (
        requests.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        ConnectionError,
    ) as err:
        raise _Retry(f"connection lost after {size} bytes ({type(err).__name__})") from err
    if expected is not None and size != expected:
        raise _Retry(f"body cut short: {size} of {expected} bytes")
    content_type = resp.headers.get("Content-Type")
    if sniff_archive(tmp) is None:
        what = describe_bytes(tmp)
        raise DownloadError(
            f"{resp.url}: expected a tar or zip archive, got {what} (Content-Type "
            f"{content_type!r}); the URL may point at a web page rather than the file (for "
            "HEPData use the resource DOI or .../record/resource/<id>?view=true)"
        )
    log.info("downloaded %s (%d bytes, sha256 %s)", resp.url, size, sha.hexdigest())
    return Download(tmp, resp.url, sha.hexdigest(), size, content_type, name)
