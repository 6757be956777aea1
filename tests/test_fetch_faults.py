"""Fetch under real faults (issue 16: items 1, 2, 3, 6, 7, 8, 10).

Network faults come from a real HTTP server on 127.0.0.1 (tests/hepdata_server.py: a
server dripping one byte at a time, a silent one), a closed port (connection refused) and
a host name under ``.invalid`` (name resolution fails).  File-system faults come from a
real tmpfs mount (full, or read-only: root cannot write there either), or, where ``mount``
is not allowed, from an OSError injected at the OS boundary (``os.mkdir``).  Every test
checks the exit status / exception, the one-line message, and what is on disk afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hepdata_server import (
    UNRESOLVABLE_URL,
    Fault,
    HEPDataServer,
    closed_port,
    make_tar,
    make_zip,
    small_workspace,
)

import recast
from cli import main
from recast.download import HostUnreachable, RetryPolicy
from recast.errors import ArchiveError, CacheError, DownloadError, UnsafeArchive

RID = 4242
INSPIRE = 1234567
ARCHIVE = "_archives/sbottom_multib_hepdata.89408.v3.r2.tar.gz"


def _legacy_files(regions: tuple[str, ...] = ("RegionA",)) -> dict[str, bytes]:
    """A small legacy archive: per region a BkgOnly.json + patch.<model>_<a>_<b>.json."""
    files: dict[str, bytes] = {}
    for j, region in enumerate(regions):
        bkg = small_workspace(2, scale=1 + j)
        files[f"{region}/BkgOnly.json"] = json.dumps(bkg).encode()
        for a, b in ((300, 50), (400, 50), (400, 100)):
            sample = {
                "name": "signal",
                "data": [a / 100.0, b / 50.0],
                "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
            }
            patch = [{"op": "add", "path": "/channels/0/samples/1", "value": sample}]
            files[f"{region}/patch.model_{a}_{b}.json"] = json.dumps(patch).encode()
    return files


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HEPDataServer]:
    tmp = tmp_path_factory.mktemp("faults")
    with HEPDataServer() as srv:
        srv.add_record(7000, INSPIRE, 1)
        blob = make_tar(tmp / "legacy.tgz", _legacy_files()).read_bytes()
        srv.add_resource(7000, RID, blob, "legacy.tgz", doi="10.17182/hepdata.7000.v1/r1")
        yield srv


@pytest.fixture()
def env(server: HEPDataServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("RECASTKIT_HEPDATA_URL", server.url)
    monkeypatch.setenv("RECASTKIT_DOI_URL", server.doi_url)
    server.faults.clear()
    server.clear_log()
    return tmp_path / "cache"


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def _nothing_cached(cache: Path) -> None:
    """No entry and no file at all besides lock files (nothing partial)."""
    assert recast.cache_entries(cache).empty
    if cache.exists():
        files = [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]
        assert files == []


def _one_line_error(result: object, *needles: str) -> str:
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1, out  # type: ignore[attr-defined]
    assert "Traceback" not in out and "urllib3" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, out
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------ item 1: stalls, deadline


def test_dripping_server_is_abandoned_by_the_stall_detector(
    server: HEPDataServer, env: Path
) -> None:
    # one byte every 0.2 s: each read returns within the read timeout, so only the stall
    # detector (16 KiB per stall window) notices that this download will never finish
    server.inject(Fault(rf"/record/resource/{RID}", "drip", times=2, interval=0.2))
    policy = RetryPolicy(attempts=2, backoff=0.01, read_timeout=5, stall_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"giving up after 2 attempts \(stalled: \d+ bytes"):
        recast.fetch(f"ins{INSPIRE}", cache_dir=env, retry=policy)
    assert time.monotonic() - start < 8
    _nothing_cached(env)


def test_overall_deadline(server: HEPDataServer, env: Path) -> None:
    # a trickle fast enough for the stall detector, too slow for the deadline
    server.inject(Fault(rf"/record/resource/{RID}", "drip", times=1, interval=0.05))
    policy = RetryPolicy(attempts=3, backoff=0.01, stall_timeout=0.5, stall_bytes=1, deadline=1.5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"deadline of 1.5 s.*raise --timeout"):
        recast.fetch(f"ins{INSPIRE}", cache_dir=env, retry=policy)
    assert time.monotonic() - start < 6
    _nothing_cached(env)


def test_silent_server_times_out_and_is_retried(server: HEPDataServer, env: Path) -> None:
    server.inject(Fault(rf"/record/resource/{RID}", "silent", times=5, interval=30))
    # five attempts allowed, but a silent server is given up on after stall_attempts (2)
    policy = RetryPolicy(attempts=5, backoff=0.01, read_timeout=0.5, stall_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(
        DownloadError, match=r"giving up after 2 attempts \(no answer within 0.5 s \(ReadTimeout"
    ):
        recast.fetch(f"ins{INSPIRE}", cache_dir=env, retry=policy)
    assert time.monotonic() - start < 6
    _nothing_cached(env)


def test_cli_timeout_option(server: HEPDataServer, env: Path, runner: CliRunner) -> None:
    # silent once: with --timeout 1 the second attempt comes after ~1 s (default: 30 s)
    server.inject(Fault(rf"/record/resource/{RID}", "silent", times=1, interval=30))
    start = time.monotonic()
    result = runner.invoke(
        main, ["fetch", f"ins{INSPIRE}", "--cache-dir", str(env), "--timeout", "1"]
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start < 10
    assert len([p for p in server.paths() if p.startswith(f"/record/resource/{RID}")]) == 2
    assert len(recast.cache_entries(env)) == 1
    bad = runner.invoke(main, ["fetch", f"ins{INSPIRE}", "--timeout", "0"])
    assert bad.exit_code == 2 and "--timeout" in bad.output


# ------------------------------------------------------------------ item 2: unreachable hosts


def test_connection_refused_fails_at_once(env: Path, runner: CliRunner) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x.tar.gz"
    start = time.monotonic()
    result = runner.invoke(main, ["fetch", url, "--force", "--cache-dir", str(env)])
    assert time.monotonic() - start < 5  # default back-off would wait 1 + 2 + 4 + 8 s
    line = _one_line_error(result, "cannot reach 127.0.0.1:", "(connection refused)")
    assert "recastkit fetch FILE" in line
    _nothing_cached(env)


@pytest.mark.parametrize(
    ("source", "variable"),
    [
        (f"ins{INSPIRE}", "RECASTKIT_HEPDATA_URL"),
        ("10.17182/hepdata.7000.v1/r1", "RECASTKIT_DOI_URL"),
    ],
    ids=["inspire", "doi"],
)
def test_name_resolution_failure_same_wording(
    env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, source: str, variable: str
) -> None:
    monkeypatch.setenv(variable, UNRESOLVABLE_URL)
    start = time.monotonic()
    result = runner.invoke(main, ["fetch", source, "--cache-dir", str(env)])
    assert time.monotonic() - start < 8  # one attempt; the default back-off would wait 15 s
    line = _one_line_error(result, "cannot reach nonexistent.invalid (its name does not resolve)")
    assert "download the archive by hand" in line and "recastkit fetch FILE" in line
    assert "--offline" not in line  # nothing is cached
    _nothing_cached(env)


def test_unreachable_with_a_cached_copy_suggests_offline(
    env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(main, ["fetch", f"ins{INSPIRE}", "--cache-dir", str(env)]).exit_code == 0
    monkeypatch.setenv("RECASTKIT_HEPDATA_URL", UNRESOLVABLE_URL)
    result = runner.invoke(main, ["fetch", f"ins{INSPIRE}", "--cache-dir", str(env), "--refresh"])
    _one_line_error(result, "cannot reach nonexistent.invalid", "--offline")
    assert len(recast.cache_entries(env)) == 1  # the cached copy is kept
    offline = runner.invoke(main, ["fetch", f"ins{INSPIRE}", "--cache-dir", str(env), "--offline"])
    assert offline.exit_code == 0, offline.output


def test_host_unreachable_is_a_download_error() -> None:
    err = HostUnreachable("http://nonexistent.invalid/x", "its name does not resolve")
    assert isinstance(err, DownloadError) and isinstance(err, OSError)


# ------------------------------------------------------------------ item 3: file-system faults


@contextlib.contextmanager
def _tmpfs(path: Path, *, size: str, readonly: bool = False) -> Iterator[bool]:
    """Mount a tmpfs at ``path``; yields False (nothing mounted) where mount is refused."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        yield False
        return
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def test_read_only_cache_dir(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    mnt = tmp_path / "ro"
    with _tmpfs(mnt, size="1m", readonly=True) as mounted:
        if not mounted:  # inject the read-only file system's error at the OS boundary
            real_mkdir = os.mkdir

            def mkdir(p: object, *a: object, **k: object) -> None:
                if str(p).startswith(str(mnt)):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))
                real_mkdir(p, *a, **k)  # type: ignore[arg-type]

            monkeypatch.setattr(os, "mkdir", mkdir)
        cache = mnt / "cache"
        result = runner.invoke(main, ["fetch", str(src), "--cache-dir", str(cache)])
        line = _one_line_error(result, f"cannot write {cache}", "Read-only file system")
        assert "--cache-dir" in line
        assert not cache.exists()


def test_full_disk_during_download_and_extraction(
    tmp_path: Path, runner: CliRunner, shared_hepdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = shared_hepdata / ARCHIVE  # 2 MB, unpacks to 36 MB
    for size, where in (("1m", "download"), ("6m", "extraction")):
        mnt = tmp_path / f"full-{where}"
        with _tmpfs(mnt, size=size) as mounted:
            if not mounted:
                pytest.skip("mount -t tmpfs is not allowed here: no real full disk to test")
            cache = mnt / "cache"
            with HEPDataServer() as srv:
                srv.add_record(89408, 1748602, 3)
                srv.add_resource(89408, 1, archive, "sbottom.tar.gz")
                monkeypatch.setenv("RECASTKIT_HEPDATA_URL", srv.url)
                result = runner.invoke(main, ["fetch", "ins1748602", "--cache-dir", str(cache)])
            _one_line_error(result, "No space left on device", "free some space")
            _nothing_cached(cache)


# ------------------------------------------------------------------ item 6: digests


def test_corrupt_entry_is_re_extracted_from_the_kept_archive(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    cache = tmp_path / "cache"
    content = recast.fetch(src, cache_dir=cache)
    manifest = json.loads((content.parent / "manifest.json").read_text())
    assert set(manifest["digests"]) == set(_legacy_files())
    bkg = content / "RegionA" / "BkgOnly.json"
    original = bkg.read_bytes()
    spec = json.loads(original)
    spec["observations"][0]["data"][0] += 7  # edit one observation
    bkg.write_text(json.dumps(spec))
    again = recast.fetch(src, cache_dir=cache, offline=True)
    assert again == content and bkg.read_bytes() == original
    assert "repaired" in json.loads((content.parent / "manifest.json").read_text())
    # a truncated file too
    bkg.write_bytes(original[:10])
    lik = recast.load_likelihood(content, "RegionA")  # a cache folder is checked as well
    assert lik.bkgonly == json.loads(original)


def test_corrupt_entry_without_archive_is_refused_offline_and_redownloaded(
    server: HEPDataServer, env: Path
) -> None:
    content = recast.fetch(f"ins{INSPIRE}", cache_dir=env)
    for kept in (content.parent / "archive").iterdir():
        kept.unlink()
    bkg = content / "RegionA" / "BkgOnly.json"
    original = bkg.read_bytes()
    bkg.write_bytes(original.replace(b"52", b"99", 1))
    with pytest.raises(CacheError, match=r"cache entry hepdata-resource-4242 is corrupt .*BkgOnly"):
        recast.fetch(f"ins{INSPIRE}", cache_dir=env, offline=True)
    server.clear_log()
    assert recast.fetch(f"ins{INSPIRE}", cache_dir=env) == content
    assert bkg.read_bytes() == original
    assert any(p.startswith(f"/record/resource/{RID}") for p in server.paths())


def test_cache_verify_hashes_what_the_fast_path_cannot_see(
    tmp_path: Path, runner: CliRunner
) -> None:
    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    cache = tmp_path / "cache"
    content = recast.fetch(src, cache_dir=cache)
    bkg = content / "RegionA" / "BkgOnly.json"
    st = bkg.stat()
    data = bytearray(bkg.read_bytes())
    data[data.index(b"5")] = ord("6")  # same size ...
    bkg.write_bytes(bytes(data))
    os.utime(bkg, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same mtime
    assert recast.fetch(src, cache_dir=cache) == content and bkg.read_bytes() == bytes(data)
    result = runner.invoke(main, ["cache", "verify", "--cache-dir", str(cache), "--no-repair"])
    assert result.exit_code == 1 and "corrupt" in result.output and "sha256" in result.output
    result = runner.invoke(main, ["cache", "verify", "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert "repaired" in result.output
    assert json.loads(bkg.read_text()) == small_workspace(2)
    result = runner.invoke(main, ["cache", "verify", "--cache-dir", str(cache)])
    assert result.exit_code == 0 and " ok " in result.output


# ------------------------------------------------------------------ item 7: odd members


def _tar(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _zip_duplicate(path: Path) -> Path:
    with (
        zipfile.ZipFile(path, "w") as zf,
        contextlib.redirect_stderr(io.StringIO()),
    ):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf.writestr("BkgOnly.json", json.dumps(small_workspace(2)))
            zf.writestr("BkgOnly.json", b"garbage")
    return path


@pytest.mark.parametrize(
    ("label", "members", "message"),
    [
        ("duplicate", [("BkgOnly.json", b"{}"), ("BkgOnly.json", b"x")], "appears twice"),
        ("dot-duplicate", [("a/BkgOnly.json", b"{}"), ("./a/BkgOnly.json", b"x")], "appears twice"),
        ("file-then-dir", [("a", b"{}"), ("a/BkgOnly.json", b"{}")], "collide"),
        ("dir-then-file", [("a/", None), ("a", b"{}")], "collide"),
        ("dot-file", [("BkgOnly.json", b"{}"), (".", b"x")], "file named '.'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_colliding_members_are_refused(
    tmp_path: Path, label: str, members: list[tuple[str, bytes | None]], message: str
) -> None:
    archive = _tar(tmp_path / f"{label}.tgz", members)
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchive, match=message) as err:
        recast.fetch(archive, cache_dir=cache)
    assert repr(members[-1][0]) in str(err.value) or "'a'" in str(err.value)
    _nothing_cached(cache)


def test_duplicate_zip_member_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="'BkgOnly.json' appears twice"):
        recast.fetch(_zip_duplicate(tmp_path / "dup.zip"), cache_dir=tmp_path / "cache")
    _nothing_cached(tmp_path / "cache")


def test_a_dot_folder_member_is_fine(tmp_path: Path) -> None:
    # `tar -C dir -czf x.tgz .` writes a "./" folder first: harmless
    files = [("./", None), *((f"./{k}", v) for k, v in _legacy_files().items())]
    content = recast.fetch(_tar(tmp_path / "dot.tgz", files), cache_dir=tmp_path / "cache")
    assert (content / "RegionA" / "BkgOnly.json").is_file()


# ------------------------------------------------------------------ items 8, 10: messages


def test_intact_gzip_with_no_tar_inside(tmp_path: Path) -> None:
    import gzip

    odd = tmp_path / "odd.tar.gz"
    odd.write_bytes(gzip.compress(b"\x00not a tar header at all" * 40))
    with pytest.raises(ArchiveError, match="gzip stream is intact, but the tar inside") as err:
        recast.fetch(odd, cache_dir=tmp_path / "cache")
    assert "damaged or truncated" not in str(err.value) and "--refresh" not in str(err.value)


def test_archive_without_likelihood_is_not_cached(tmp_path: Path, runner: CliRunner) -> None:
    src = make_zip(tmp_path / "plots.zip", {"plots/a.json": b"{}", "README": b"hi"})
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["fetch", str(src), "--cache-dir", str(cache)])
    _one_line_error(result, "holds no background-only workspace", "Nothing was cached")
    _nothing_cached(cache)


def test_cache_list_sizes_are_human(tmp_path: Path, runner: CliRunner) -> None:
    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    recast.fetch(src, cache_dir=tmp_path / "cache")
    size = src.stat().st_size
    result = runner.invoke(main, ["cache", "list", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0
    shown = f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} B"
    assert shown in result.output and "0.0 MiB" not in result.output


def test_scan_of_files_inside_the_cache_repairs_the_entry_first(
    tmp_path: Path, runner: CliRunner
) -> None:
    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    content = recast.fetch(src, cache_dir=tmp_path / "cache")
    folder = content / "RegionA"
    bkg = folder / "BkgOnly.json"
    original = bkg.read_bytes()
    spec = json.loads(original)
    spec["observations"][0]["data"][0] += 40
    bkg.write_text(json.dumps(spec))
    out = tmp_path / "r.csv"
    result = runner.invoke(main, ["scan", str(bkg), str(folder), "-o", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert bkg.read_bytes() == original  # the edited observation was not used
    scanned = recast.scan(json.loads(original), str(folder), jobs=1)
    import pandas as pd

    assert pd.read_csv(out).cls_obs.tolist() == pytest.approx(scanned.cls_obs.tolist(), rel=1e-9)


def test_member_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    # a valid tar whose member name the file system refuses (255 bytes per name on ext4 /
    # tmpfs): an archive problem naming the member, not a "damaged gzip" or a disk error
    name = "x" * 300 + "/BkgOnly.json"
    archive = _tar(tmp_path / "long.tgz", [(name, b"{}")])
    with pytest.raises(
        ArchiveError, match=r"entry 'x{300}.*cannot be unpacked \(File name too long\)"
    ):
        recast.fetch(archive, cache_dir=tmp_path / "cache")
    _nothing_cached(tmp_path / "cache")


def test_read_only_cache_still_serves_its_entries(tmp_path: Path, runner: CliRunner) -> None:
    # a cache prepared elsewhere and mounted read-only (e.g. on a cluster): hits work,
    # anything that would write fails in one line naming the path
    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    other = make_tar(tmp_path / "other.tgz", _legacy_files(("RegionZ",)))
    mnt = tmp_path / "cache"
    with _tmpfs(mnt, size="4m") as mounted:
        if not mounted:
            pytest.skip("mount -t tmpfs is not allowed here: no real read-only cache to test")
        content = recast.fetch(src, cache_dir=mnt)
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(mnt)], capture_output=True, timeout=10
        )
        if remount.returncode != 0:
            pytest.skip("remount read-only refused")
        result = runner.invoke(main, ["fetch", str(src), "--cache-dir", str(mnt), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["path"] == str(content)
        result = runner.invoke(main, ["fetch", str(other), "--cache-dir", str(mnt)])
        _one_line_error(result, "cannot write", "Read-only file system")
        assert recast.cache_entries(mnt).key.tolist() == [content.parent.name]


def test_touched_but_intact_files_are_hashed_once(tmp_path: Path) -> None:
    from recast import store

    src = make_tar(tmp_path / "lh.tgz", _legacy_files())
    cache = tmp_path / "cache"
    content = recast.fetch(src, cache_dir=cache)
    key = content.parent.name
    later = time.time_ns() + 10**10
    for f in content.rglob("*.json"):  # as `cp -r` without -p does
        os.utime(f, ns=(later, later))
    first = store.verify_entry(cache, key)
    assert first.ok and first.hashed == first.checked == len(_legacy_files())
    again = store.verify_entry(cache, key)
    assert again.ok and again.hashed == 0  # the new times were recorded: fast path again
