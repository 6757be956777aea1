"""A small HEPData look-alike HTTP server for the fetch tests (standard library only).

It listens on 127.0.0.1 on a free port, in a daemon thread, and answers the endpoints
recastkit relies on (see docs/hepdata-api.md), built from what is registered:

* ``GET /record/ins<inspire>?format=json[&version=N]`` and ``/record/<recid>?format=json``:
  record JSON (``recid``, ``version``, ``record.inspire_id``, ``record.hepdata_doi``,
  ``resources_with_doi``);
* ``GET /record/resources/<recid>/<version>``: the resource listing (``submission_items``);
* ``GET /record/resource/<id>?view=true``: the file; ``?landing_page=true``: the file if the
  ``Accept`` header names its type, else an HTML landing page;
* ``GET /doi/<doi>``: a DOI resolver answering ``302`` to the resource's landing page;
* ``GET /files/<name>``: any registered blob (for "other URL" sources).

Every request is logged (:attr:`HEPDataServer.requests`), and faults can be injected per
path: an HTTP status (with ``Retry-After``), a connection dropped mid-body, an HTML page
or arbitrary bytes instead of the file, a body dripped one byte at a time, or silence.

Module helpers for the network faults that need no server: :func:`closed_port` (a port
on 127.0.0.1 where nothing listens: connection refused) and :data:`UNRESOLVABLE_URL`
(a host name under the reserved ``.invalid`` top-level domain: name resolution fails).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "UNRESOLVABLE_URL",
    "Fault",
    "HEPDataServer",
    "LoggedRequest",
    "make_tar",
    "make_zip",
    "patchset",
    "signal_patch",
    "small_workspace",
    "closed_port",
]

#: A base URL whose host name cannot resolve (RFC 2606 reserves ``.invalid``).
UNRESOLVABLE_URL = "http://nonexistent.invalid"


def closed_port() -> int:
    """A TCP port on 127.0.0.1 with nobody listening (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Fault:
    """Answer the next ``times`` requests whose path matches ``pattern`` differently.

    kind: ``"status"`` (send ``status`` with optional ``retry_after``), ``"drop"`` (send the
    headers with the full Content-Length, then half the body, then close), ``"html"`` (a
    200 HTML page), ``"body"`` (200 with ``body`` bytes as ``content_type``), ``"drip"``
    (the headers at once, then the body one byte every ``interval`` seconds), ``"silent"``
    (accept the connection, read the request, answer nothing for ``interval`` seconds, then
    close).
    """

    pattern: str
    kind: str
    times: int = 1
    status: int = 500
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = "application/x-tar"
    interval: float = 1.0


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    time: float


@dataclass
class _Resource:
    id: int
    data: bytes
    filename: str
    mimetype: str
    doi: str | None
    file_type: str
    description: str


@dataclass
class _Record:
    recid: int
    inspire_id: int
    version: int
    resources: list[int] = field(default_factory=list)


class _QuietServer(ThreadingHTTPServer):
    """Clients of the fault tests hang up on purpose: no traceback for that on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


_MIMETYPES = {".zip": "application/zip", ".tar": "application/x-tar", ".gz": "application/x-tar"}


class HEPDataServer:
    """Start with ``with HEPDataServer() as server:``; ``server.url`` is the base URL."""

    def __init__(self) -> None:
        self.records: dict[int, _Record] = {}
        self.resources: dict[int, _Resource] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.faults: list[Fault] = []
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()  #: set on exit: dripping / silent handlers return
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> HEPDataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def doi_url(self) -> str:
        return f"{self.url}/doi"

    # -- registration ---------------------------------------------------------------
    def add_record(self, recid: int, inspire_id: int, version: int) -> None:
        self.records[recid] = _Record(recid, inspire_id, version)

    def add_resource(
        self,
        recid: int,
        resource_id: int,
        data: bytes | Path,
        filename: str,
        *,
        doi: str | None = None,
        file_type: str = "HistFactory",
        description: str = "Archive of full likelihoods in the HistFactory JSON format",
    ) -> None:
        blob = Path(data).read_bytes() if isinstance(data, Path) else data
        mime = _MIMETYPES.get(Path(filename).suffix.lower(), "application/octet-stream")
        self.resources[resource_id] = _Resource(
            resource_id, blob, filename, mime, doi, file_type, description
        )
        self.records[recid].resources.append(resource_id)

    def add_file(self, name: str, data: bytes, content_type: str = "application/x-tar") -> str:
        self.files[name] = (data, content_type)
        return f"{self.url}/files/{name}"

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # -- internals ------------------------------------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and re.search(fault.pattern, path):
                    fault.times -= 1
                    return fault
        return None

    def _log(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(LoggedRequest(method, path, headers, time.monotonic()))


def _record_json(server: HEPDataServer, rec: _Record, version: int) -> dict[str, Any]:
    with_doi = [
        {
            "filename": server.resources[r].filename,
            "description": server.resources[r].description,
            "doi": server.resources[r].doi,
        }
        for r in rec.resources
        if server.resources[r].doi
    ]
    return {
        "recid": rec.recid,
        "version": version,
        "status": "finished",
        "record": {
            "inspire_id": str(rec.inspire_id),
            "hepdata_doi": f"10.17182/hepdata.{rec.recid}.v{version}",
            "title": f"test record {rec.recid}",
        },
        "resources_with_doi": with_doi,
        "additional_resources": bool(rec.resources),
    }


def _make_handler(server: HEPDataServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            server._log("GET", self.path, dict(self.headers.items()))
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            fault = server._take_fault(self.path)
            if fault is not None and fault.kind == "silent":
                server.stop.wait(fault.interval)
                self.close_connection = True
                return None
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._send(fault.status, b"temporarily unavailable\n", "text/plain", headers)
            path = unquote(parts.path)
            m = re.fullmatch(r"/record/ins(\d+)", path) or re.fullmatch(r"/record/(\d+)", path)
            if m:
                return self._record(m, path, query)
            m = re.fullmatch(r"/record/resources/(\d+)/(\d+)", path)
            if m:
                return self._listing(int(m.group(1)), int(m.group(2)))
            m = re.fullmatch(r"/record/resource/(\d+)", path)
            if m:
                return self._resource(int(m.group(1)), query, fault)
            m = re.fullmatch(r"/doi/(.+)", path)
            if m:
                return self._doi(m.group(1))
            m = re.fullmatch(r"/files/(.+)", path)
            if m and m.group(1) in server.files:
                data, ctype = server.files[m.group(1)]
                return self._payload(data, ctype, m.group(1), fault)
            return self._send(404, b"<html><body>Not found</body></html>", "text/html")

        def _record(self, m: re.Match[str], path: str, query: dict[str, list[str]]) -> None:
            ident = int(m.group(1))
            if path.startswith("/record/ins"):
                rec = next((r for r in server.records.values() if r.inspire_id == ident), None)
            else:
                rec = server.records.get(ident)
            if rec is None:
                return self._send(404, b"<html><body>No record</body></html>", "text/html")
            version = int(query.get("version", [rec.version])[0])
            if query.get("format", [""])[0] != "json":
                return self._send(200, b"<html><body>record page</body></html>", "text/html")
            body = json.dumps(_record_json(server, rec, version)).encode()
            return self._send(200, body, "application/json")

        def _listing(self, recid: int, version: int) -> None:
            rec = server.records.get(recid)
            if rec is None:
                return self._send(404, b"{}", "application/json")
            items = [
                {
                    "id": r.id,
                    "file_type": r.file_type,
                    "file_description": r.description,
                    "location": f"/record/resource/{r.id}?view=true",
                    "doi": r.doi,
                }
                for r in (server.resources[i] for i in rec.resources)
            ]
            body = {
                "submission_items": [
                    {
                        "name": "Common Resources",
                        "type": "submission",
                        "version": version,
                        "id": recid,
                        "resources": items,
                    }
                ]
            }
            return self._send(200, json.dumps(body).encode(), "application/json")

        def _resource(self, rid: int, query: dict[str, list[str]], fault: Fault | None) -> None:
            res = server.resources.get(rid)
            if res is None:
                return self._send(404, b"<html><body>No resource</body></html>", "text/html")
            if "view" in query:
                return self._payload(res.data, res.mimetype, res.filename, fault)
            accept = self.headers.get("Accept", "")
            if "landing_page" in query and res.mimetype in accept:
                return self._payload(res.data, res.mimetype, res.filename, fault)
            page = f"<!DOCTYPE html><html><head><title>{res.filename}</title></head></html>"
            return self._send(200, page.encode(), "text/html; charset=utf-8")

        def _doi(self, doi: str) -> None:
            res = next((r for r in server.resources.values() if r.doi == doi), None)
            if res is None:
                return self._send(404, b"DOI not found", "text/plain")
            location = f"{server.url}/record/resource/{res.id}?landing_page=true"
            return self._send(302, b"", "text/plain", {"Location": location})

        def _payload(self, data: bytes, ctype: str, filename: str, fault: Fault | None) -> None:
            headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
            if fault is not None and fault.kind == "html":
                page = b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>"
                return self._send(200, page, "text/html; charset=utf-8")
            if fault is not None and fault.kind == "body":
                return self._send(200, fault.body, fault.content_type, headers)
            if fault is not None and fault.kind == "drip":
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.close_connection = True
                try:
                    for i in range(len(data)):
                        if server.stop.wait(fault.interval):
                            return None
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                except OSError:  # the client gave up
                    return None
                return None
            if fault is not None and fault.kind == "drop":
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return None
            return self._send(200, data, ctype, headers)

        def _send(
            self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    return Handler


# ---------------------------------------------------------------------------------------
# small archives for the tests
# ---------------------------------------------------------------------------------------


def small_workspace(n_bins: int = 2, *, channel: str = "SR", scale: float = 1.0) -> dict[str, Any]:
    """A valid background-only HistFactory workspace (one channel, no POI modifier)."""
    bkg = [50.0 * scale + 10.0 * i for i in range(n_bins)]
    return {
        "channels": [
            {
                "name": channel,
                "samples": [
                    {
                        "name": "bkg",
                        "data": bkg,
                        "modifiers": [
                            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                            {
                                "name": f"staterror_{channel}",
                                "type": "staterror",
                                "data": [0.05 * b for b in bkg],
                            },
                        ],
                    }
                ],
            }
        ],
        "observations": [{"name": channel, "data": [round(b) + 2 for b in bkg]}],
        "measurements": [
            {"name": "meas", "config": {"poi": "mu_SIG", "parameters": []}},
        ],
        "version": "1.0.0",
    }


def signal_patch(n_bins: int, strength: float) -> list[dict[str, Any]]:
    """JSON patch adding a signal sample with the ``mu_SIG`` normfactor to channel 0."""
    sample = {
        "name": "signal",
        "data": [strength * (i + 1) for i in range(n_bins)],
        "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
    }
    return [{"op": "add", "path": "/channels/0/samples/1", "value": sample}]


def patchset(
    bkgonly: dict[str, Any], points: list[tuple[str, list[float]]], labels: list[str]
) -> dict[str, Any]:
    """A pyhf PatchSet for ``bkgonly`` (digest computed by pyhf, the independent oracle)."""
    import pyhf

    n_bins = len(bkgonly["channels"][0]["samples"][0]["data"])
    return {
        "metadata": {
            "description": "test patchset",
            "digests": {"sha256": pyhf.utils.digest(bkgonly)},
            "labels": labels,
            "references": {"hepdata": "ins1234567"},
        },
        "patches": [
            {"metadata": {"name": name, "values": values}, "patch": signal_patch(n_bins, 1 + i)}
            for i, (name, values) in enumerate(points)
        ],
        "version": "1.0.0",
    }


def make_tar(path: Path, files: dict[str, bytes], *, mode: str = "w:gz") -> Path:
    """Write ``files`` (archive name -> bytes) into a tar archive."""
    import io
    import tarfile

    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (archive name -> bytes) into a zip archive."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path
