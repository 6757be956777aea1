"""`recast.fetch` through a real local HTTP server that serves the real sbottom archive.

The server (tests/hepdata_server.py) mimics HEPData's record JSON, resource listing,
resource URL and DOI resolution (with redirect), and injects faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hepdata_server import Fault, HEPDataServer, make_tar, patchset, small_workspace

import recast
from recast.errors import ArchiveError, CacheMiss, DownloadError
from recast.hepdata import ARCHIVE_ACCEPT, RetryPolicy, parse_source

ARCHIVE = "_archives/sbottom_multib_hepdata.89408.v3.r2.tar.gz"
RECID, INSPIRE, VERSION, RID = 89408, 1748602, 3, 91234
RES_DOI = "10.17182/hepdata.89408.v3/r2"
FAST = RetryPolicy(attempts=4, backoff=0.01, max_wait=3.0, connect_timeout=5, read_timeout=10)
SBOTTOM_POINTS = {"RegionA": 217, "RegionB": 218, "RegionC": 215}


@pytest.fixture(scope="module")
def server(shared_hepdata: Path, tmp_path_factory: pytest.TempPathFactory) -> HEPDataServer:
    tmp = tmp_path_factory.mktemp("archives")
    with HEPDataServer() as srv:
        srv.add_record(RECID, INSPIRE, VERSION)
        srv.add_resource(
            RECID, RID, shared_hepdata / ARCHIVE, "sbottom_likelihoods.tar.gz", doi=RES_DOI
        )
        srv.add_resource(RECID, 91235, b"x,y\n1,2\n", "table.csv", file_type="csv")
        # a record with two likelihood archives
        srv.add_record(90000, 1111111, 1)
        for i, name in enumerate(("SRlow", "SRhigh")):
            bkg = small_workspace(2, scale=1 + i)
            files = {
                f"{name}/BkgOnly.json": json.dumps(bkg).encode(),
                f"{name}/patchset.json": json.dumps(
                    patchset(bkg, [("p_100_10", [100, 10]), ("p_200_10", [200, 10])], ["ma", "mb"])
                ).encode(),
            }
            srv.add_resource(
                90000,
                50 + i,
                make_tar(tmp / f"{name}.tgz", files).read_bytes(),
                f"{name}.tgz",
                doi=f"10.17182/hepdata.90000.v1/r{i + 1}",
            )
        # a record without likelihoods
        srv.add_record(80000, 2222222, 2)
        srv.add_resource(80000, 70, b"<root/>", "plot.C", file_type="ROOT")
        yield srv


@pytest.fixture()
def env(server: HEPDataServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point recastkit at the local server; return a fresh cache folder."""
    monkeypatch.setenv("RECASTKIT_HEPDATA_URL", server.url)
    monkeypatch.setenv("RECASTKIT_DOI_URL", server.doi_url)
    server.clear_log()
    server.faults.clear()
    return tmp_path / "cache"


def _fetch(source: str, cache: Path, **kw: object) -> Path:
    kw.setdefault("retry", FAST)
    return recast.fetch(source, cache_dir=cache, **kw)  # type: ignore[arg-type]


def _assert_sbottom(path: Path) -> None:
    table = recast.likelihoods(path)
    assert dict(zip(table.name, table.n_points, strict=True)) == SBOTTOM_POINTS
    assert all(labels == ["m_sbottom", "m_N2", "m_N1"] for labels in table.labels)
    assert set(table.format) == {"legacy_patches"}


def _assert_clean(cache: Path) -> None:
    """Nothing partial left: no entry, no work file; only lock files may exist."""
    assert recast.cache_entries(cache).empty
    leftovers = (
        [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]
        if cache.exists()
        else []
    )
    assert leftovers == []


def _assert_no_partial(cache: Path) -> None:
    """After a successful retry: exactly one complete entry and no work files."""
    assert len(recast.cache_entries(cache)) == 1
    partial = cache / ".partial"
    assert not partial.exists() or list(partial.iterdir()) == []
    assert list(cache.glob("*/*.part")) == []


def _resource_gets(server: HEPDataServer) -> list[str]:
    return [p for p in server.paths() if p.startswith(f"/record/resource/{RID}")]


SOURCES = [
    ("ins1748602", {}),
    ("1748602", {"inspire": True}),
    ("10.17182/hepdata.89408", {}),
    ("10.17182/hepdata.89408.v3", {}),
    (RES_DOI, {}),
    (f"doi:{RES_DOI}", {}),
    ("{url}/record/resource/91234?view=true", {}),
    ("{doi}/" + RES_DOI, {}),
    ("{url}/record/ins1748602", {}),
]


@pytest.mark.parametrize(("source", "kw"), SOURCES, ids=[s for s, _ in SOURCES])
def test_every_source_form_then_zero_requests(
    server: HEPDataServer, env: Path, source: str, kw: dict[str, bool]
) -> None:
    source = source.format(url=server.url, doi=server.doi_url)
    path = _fetch(source, env, **kw)
    _assert_sbottom(path)
    assert len(_resource_gets(server)) == 1, server.paths()
    entries = recast.cache_entries(env)
    assert list(entries.key) == [f"hepdata-resource-{RID}"]
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["source"] == source and len(manifest["sha256"]) == 64
    assert manifest["recastkit_version"] == recast.__version__

    server.clear_log()
    again = _fetch(source, env, **kw)
    assert again == path
    assert server.requests == []  # a cache hit makes no request at all


def test_sha256_and_size_match_the_served_file(
    server: HEPDataServer, env: Path, shared_hepdata: Path
) -> None:
    import hashlib

    path = _fetch("ins1748602", env)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    blob = (shared_hepdata / ARCHIVE).read_bytes()
    assert manifest["sha256"] == hashlib.sha256(blob).hexdigest()
    assert manifest["size"] == len(blob)
    assert manifest["inspire_id"] == INSPIRE and manifest["hepdata_version"] == VERSION
    assert recast.cache_entries(env).loc[0, "sha256"] == manifest["sha256"]
    # the INSPIRE id learned from HEPData becomes the converted patchset's reference
    lik = recast.load_likelihood(path, "RegionC")
    assert lik.patchset["metadata"]["references"] == {"hepdata": "ins1748602"}
    assert len(lik.patchset["patches"]) == 215


def test_resource_doi_sends_accept_header_and_follows_redirect(
    server: HEPDataServer, env: Path
) -> None:
    _fetch(RES_DOI, env)
    doi_req, landing = server.requests
    assert doi_req.path == f"/doi/{RES_DOI}"
    assert landing.path == f"/record/resource/{RID}?landing_page=true"
    assert landing.headers["Accept"] == ARCHIVE_ACCEPT
    # the DOI and the resource URL name the same versioned resource: one cache entry
    server.clear_log()
    _fetch(f"{server.url}/record/resource/{RID}?view=true", env)
    assert server.requests == []


def test_unversioned_sources_share_the_resource_entry(server: HEPDataServer, env: Path) -> None:
    a = _fetch(f"{server.url}/record/resource/{RID}?view=true", env)
    server.clear_log()
    b = _fetch("ins1748602", env)  # needs the record JSON, but not the archive again
    assert a == b
    assert _resource_gets(server) == []
    assert len(recast.cache_entries(env)) == 1


def test_record_with_two_likelihood_archives(server: HEPDataServer, env: Path) -> None:
    path = _fetch("10.17182/hepdata.90000", env)
    table = recast.likelihoods(path)
    assert sorted(table.name) == ["01_SRlow/SRlow", "02_SRhigh/SRhigh"]
    assert list(table.n_points) == [2, 2] and list(table.labels) == [["ma", "mb"]] * 2
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert [r["resource_id"] for r in manifest["resources"]] == [50, 51]
    server.clear_log()
    assert _fetch("10.17182/hepdata.90000", env) == path and server.requests == []


def test_record_without_likelihoods(server: HEPDataServer, env: Path) -> None:
    with pytest.raises(DownloadError, match=r"no HistFactory resource.*ROOT"):
        _fetch("ins2222222", env)
    _assert_clean(env)


def test_unknown_record_is_404_without_retries(server: HEPDataServer, env: Path) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404.*check the id"):
        _fetch("ins9999999", env)
    assert len(server.requests) == 1
    _assert_clean(env)


def test_other_urls_need_force(server: HEPDataServer, env: Path, shared_hepdata: Path) -> None:
    server.add_file("sbottom.tar.gz", (shared_hepdata / ARCHIVE).read_bytes())
    url = f"http://localhost:{server.url.rsplit(':', 1)[1]}/files/sbottom.tar.gz"
    with pytest.raises(DownloadError, match=r"not one of hepdata\.net, doi\.org.*--force"):
        _fetch(url, env)
    assert server.requests == []
    with pytest.raises(DownloadError, match="refusing"):
        _fetch("https://example.org/likelihoods.tar.gz", env)
    path = _fetch(url, env, force=True)
    _assert_sbottom(path)
    assert recast.cache_entries(env).loc[0, "key"].startswith("url-")
    # the configured HEPData host itself is on the allow-list
    assert _fetch(f"{server.url}/files/sbottom.tar.gz", env).is_dir()


def test_offline_miss_then_hit(server: HEPDataServer, env: Path) -> None:
    with pytest.raises(CacheMiss, match=r"without --offline.*network"):
        _fetch("ins1748602", env, offline=True)
    assert server.requests == []
    path = _fetch("ins1748602", env)
    server.clear_log()
    assert _fetch("ins1748602", env, offline=True) == path
    assert server.requests == []


def test_refresh_downloads_again(server: HEPDataServer, env: Path) -> None:
    path = _fetch(RES_DOI, env)
    first = json.loads((path.parent / "manifest.json").read_text())["time"]
    time.sleep(1.1)
    server.clear_log()
    again = _fetch(RES_DOI, env, refresh=True)
    assert again == path
    assert len(_resource_gets(server)) == 1
    assert json.loads((path.parent / "manifest.json").read_text())["time"] != first
    _assert_sbottom(again)


# ----------------------------------------------------------------------------- faults


def test_500_then_200_is_retried(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(rf"/record/resource/{RID}", "status", status=500))
    _assert_sbottom(_fetch(RES_DOI, env))
    assert len(_resource_gets(server)) == 2
    _assert_no_partial(env)


def test_429_honours_retry_after(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(r"/record/resources/", "status", status=429, retry_after="1"))
    _assert_sbottom(_fetch("ins1748602", env))
    listing = [r for r in server.requests if r.path.startswith("/record/resources/")]
    assert len(listing) == 2
    assert listing[1].time - listing[0].time >= 0.95  # waited Retry-After, not the 0.01 s backoff
    _assert_no_partial(env)


def test_retry_after_is_capped(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(r"/doi/", "status", status=503, retry_after="3600"))
    t0 = time.monotonic()
    _fetch(RES_DOI, env, retry=RetryPolicy(attempts=3, backoff=0.01, max_wait=0.2))
    # one wait of at most max_wait=0.2 s, not an hour (the bound leaves room for the
    # download and extraction of the 2 MB archive on a loaded machine: ~1.5 s)
    assert time.monotonic() - t0 < 10
    assert len([p for p in server.paths() if p.startswith("/doi/")]) == 2


def test_5xx_forever_gives_up_cleanly(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(rf"/record/resource/{RID}", "status", status=502, times=10))
    with pytest.raises(DownloadError, match=r"after 4 attempts.*HTTP 502"):
        _fetch(RES_DOI, env)
    assert len(_resource_gets(server)) == 4
    _assert_clean(env)


def test_connection_dropped_mid_body_is_retried(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(rf"/record/resource/{RID}", "drop"))
    _assert_sbottom(_fetch(RES_DOI, env))
    assert len(_resource_gets(server)) == 2
    _assert_no_partial(env)


def test_connection_always_dropped(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(rf"/record/resource/{RID}", "drop", times=10))
    with pytest.raises(DownloadError, match=r"after 4 attempts.*(cut short|connection lost)"):
        _fetch(RES_DOI, env)
    _assert_clean(env)


def test_connection_refused(env: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(
        DownloadError, match=rf"cannot reach 127.0.0.1:{port} \(connection refused\)"
    ):
        recast.fetch(
            f"http://127.0.0.1:{port}/x.tar.gz",
            cache_dir=env,
            force=True,
            retry=RetryPolicy(attempts=5, backoff=2.0),
        )
    assert time.monotonic() - start < 1.5  # not retried: nobody listens there
    _assert_clean(env)


def test_html_page_instead_of_archive(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(rf"/record/resource/{RID}", "html"))
    with pytest.raises(DownloadError, match=r"expected a tar or zip archive, got an HTML page"):
        _fetch(RES_DOI, env)
    assert len(_resource_gets(server)) == 1  # not retried: the server answered, wrongly
    _assert_clean(env)


def test_landing_page_without_accept_header_is_refused(server: HEPDataServer, env: Path) -> None:
    import requests

    from recast.hepdata import download

    env.mkdir(parents=True)
    with pytest.raises(DownloadError, match="HTML page titled 'sbottom_likelihoods.tar.gz'"):
        download(
            f"{server.url}/record/resource/{RID}?landing_page=true",
            env,
            session=requests.Session(),
            retry=FAST,
        )
    assert list(env.iterdir()) == []


def test_corrupted_archive(server: HEPDataServer, env: Path, shared_hepdata: Path) -> None:
    blob = (shared_hepdata / ARCHIVE).read_bytes()
    broken = blob[: len(blob) // 3]  # valid gzip start, truncated stream, honest length
    server.inject(Fault(rf"/record/resource/{RID}", "body", body=broken))
    with pytest.raises(ArchiveError, match=r"damaged or truncated gzip archive") as err:
        _fetch(RES_DOI, env)
    # named by its URL, not by a temporary file; no --refresh hint: nothing is cached
    assert f"{server.url}/record/resource/{RID}" in str(err.value)
    assert ".partial" not in str(err.value) and "--refresh" not in str(err.value)
    _assert_clean(env)
    _assert_sbottom(_fetch(RES_DOI, env))  # the next try is clean
    _assert_no_partial(env)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../evil.json", "'\\.\\.'"), ("/etc/evil.json", "absolute path")],
)
def test_unsafe_archive_from_server(
    server: HEPDataServer, env: Path, tmp_path: Path, name: str, kind: str
) -> None:
    bad = make_tar(tmp_path / "bad.tar.gz", {"BkgOnly.json": b"{}", name: b"{}"})
    server.add_file("bad.tar.gz", bad.read_bytes())
    with pytest.raises(recast.UnsafeArchive, match=kind):
        _fetch(f"{server.url}/files/bad.tar.gz", env)
    _assert_clean(env)
    assert not (env.parent / "evil.json").exists()


@pytest.mark.slow
def test_two_processes_fetch_the_same_archive(server: HEPDataServer, env: Path) -> None:
    code = (
        "import sys, recast; from recast.hepdata import RetryPolicy;"
        "print(recast.fetch(sys.argv[1], cache_dir=sys.argv[2],"
        " retry=RetryPolicy(attempts=3, backoff=0.01)))"
    )
    environ = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, RES_DOI, str(env)],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    _assert_sbottom(Path(paths.pop()))
    assert len(_resource_gets(server)) == 1  # the second waited for the first, then hit
    assert len(recast.cache_entries(env)) == 1
    assert not any((env / ".partial").iterdir()) if (env / ".partial").exists() else True


def test_two_threads_fetch_the_same_archive(server: HEPDataServer, env: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: _fetch(RES_DOI, env), range(3)))
    assert len(set(paths)) == 1
    assert len(_resource_gets(server)) == 1
    _assert_sbottom(paths[0])


# ------------------------------------------------------------------------ source parsing


@pytest.mark.parametrize(
    ("text", "kind", "ident"),
    [
        ("ins1748602", "inspire", "ins1748602"),
        ("INS1748602", "inspire", "ins1748602"),
        ("10.17182/hepdata.89408", "record", "hepdata.89408"),
        ("10.17182/hepdata.89408.v3", "record", "hepdata.89408.v3"),
        ("10.17182/hepdata.89408.v3/r2", "resource_doi", "doi:10.17182/hepdata.89408.v3/r2"),
        (
            "https://doi.org/10.17182/hepdata.89408.v3/r2",
            "resource_doi",
            "doi:10.17182/hepdata.89408.v3/r2",
        ),
        ("https://www.hepdata.net/record/resource/997020?view=true", "resource", "resource:997020"),
        ("https://www.hepdata.net/record/ins1748602?version=3", "inspire", "ins1748602.v3"),
        ("https://www.hepdata.net/record/89408", "record", "hepdata.89408"),
        (
            "https://zenodo.org/record/1/files/a.tar.gz",
            "url",
            "url:https://zenodo.org/record/1/files/a.tar.gz",
        ),
        ("10.5281/zenodo.4318533", "doi", "doi:10.5281/zenodo.4318533"),
    ],
)
def test_parse_source(text: str, kind: str, ident: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECASTKIT_HEPDATA_URL", raising=False)
    monkeypatch.delenv("RECASTKIT_DOI_URL", raising=False)
    src = parse_source(text)
    assert (src.kind, src.ident) == (kind, ident)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1748602", "ambiguous: pass --inspire"),
        ("10.17182/hepdata.89408.v3/t1", "names a table"),
        ("nothing_here.tar.gz", "no such file or folder"),
        ("what is this", "cannot tell what"),
    ],
)
def test_parse_source_errors(text: str, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        parse_source(text)


def test_resource_listing_down_falls_back_on_resources_with_doi(
    server: HEPDataServer, env: Path
) -> None:
    server.inject(Fault(r"/record/resources/", "status", status=503, times=4))
    _assert_sbottom(_fetch("ins1748602", env))
    assert f"/doi/{RES_DOI}" in server.paths()  # resolved through the resource's DOI
    assert list(recast.cache_entries(env).key) == [f"hepdata-resource-{RID}"]


def test_download_size_cap(server: HEPDataServer, env: Path) -> None:
    from recast.cache import ExtractLimits

    with pytest.raises(DownloadError, match="exceed the limit of 1000"):
        _fetch(RES_DOI, env, limits=ExtractLimits(max_bytes=1000))
    _assert_clean(env)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("7", 7.0, 7.0), ("0", 0.0, 0.0), (None, None, None), ("soon", None, None)],
)
def test_retry_after_header(header: str | None, low: float | None, high: float | None) -> None:
    import requests

    from recast.hepdata import _retry_after

    resp = requests.Response()
    if header is not None:
        resp.headers["Retry-After"] = header
    got = _retry_after(resp)
    assert got == low if low is None else low <= got <= high


def test_retry_after_http_date() -> None:
    import email.utils

    import requests

    from recast.hepdata import _retry_after, _wait

    resp = requests.Response()
    resp.headers["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    got = _retry_after(resp)
    assert got is not None and 28 <= got <= 31
    policy = RetryPolicy(backoff=0.5, max_wait=10)
    assert _wait(policy, 1, got) == 10  # capped
    assert [_wait(policy, n, None) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]  # exponential
