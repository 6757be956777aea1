"""Safe extraction, layout discovery and legacy-patch conversion (no network)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pyhf
import pytest
from hepdata_server import make_tar, make_zip, patchset, small_workspace

import recast
from recast.archive import legacy_values
from recast.cache import ExtractLimits, safe_extract
from recast.errors import ArchiveError, UnsafeArchive

ARCHIVE = "_archives/sbottom_multib_hepdata.89408.v3.r2.tar.gz"


def _dump(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _likelihood_files(
    prefix: str = "",
    *,
    bkg_name: str = "BkgOnly.json",
    ps_name: str = "patchset.json",
    n_bins: int = 2,
    scale: float = 1.0,
    points: int = 3,
) -> dict[str, bytes]:
    bkg = small_workspace(n_bins, scale=scale)
    pts = [(f"pt_{100 * (i + 1)}_{10 * i}", [100 * (i + 1), 10 * i]) for i in range(points)]
    return {
        prefix + bkg_name: _dump(bkg),
        prefix + ps_name: _dump(patchset(bkg, pts, ["mA", "mB"])),
    }


def _assert_nothing_cached(cache: Path) -> None:
    assert recast.cache_entries(cache).empty
    if cache.exists():
        assert [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts] == []


# ------------------------------------------------------------------------ safe extraction


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("BkgOnly.json")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"{}"))
        tf.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", size: int = 2
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


UNSAFE_TAR = [
    ("dotdot", _member("../escaped.json"), "contains '..'"),
    ("nested-dotdot", _member("a/../../escaped.json"), "contains '..'"),
    ("absolute", _member("/tmp/recastkit-escaped.json"), "absolute path"),
    ("symlink-outside", _member("link", tarfile.SYMTYPE, link="/etc/passwd"), "symbolic link"),
    ("symlink-dotdot", _member("link", tarfile.SYMTYPE, link="../../x"), "symbolic link"),
    ("hardlink", _member("hard", tarfile.LNKTYPE, link="/etc/passwd"), "hard link"),
    ("fifo", _member("pipe", tarfile.FIFOTYPE), "device or FIFO"),
    ("chardev", _member("null", tarfile.CHRTYPE), "device or FIFO"),
    ("blockdev", _member("sda", tarfile.BLKTYPE), "device or FIFO"),
]


@pytest.mark.parametrize(("label", "member", "message"), UNSAFE_TAR, ids=[u[0] for u in UNSAFE_TAR])
def test_unsafe_tar_entries_are_refused(
    tmp_path: Path, label: str, member: tarfile.TarInfo, message: str
) -> None:
    data = b"{}" if member.type == tarfile.REGTYPE else None
    archive = _tar_with(tmp_path / "bad.tar.gz", member, data)
    dest = tmp_path / "out" / "x"
    with pytest.raises(UnsafeArchive, match=message):
        safe_extract(archive, dest)
    assert not dest.exists()  # nothing at all was written, not even the safe entry
    assert not (tmp_path / "out" / "escaped.json").exists()
    assert not Path("/tmp/recastkit-escaped.json").exists()
    # through fetch: the cache stays empty
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchive, match=message):
        recast.fetch(archive, cache_dir=cache)
    _assert_nothing_cached(cache)


UNSAFE_ZIP = [
    ("dotdot", "../escaped.json", 0o100644, "contains '..'"),
    ("absolute", "/tmp/recastkit-escaped.json", 0o100644, "absolute path"),
    ("backslash-dotdot", "..\\escaped.json", 0o100644, "contains '..'"),
    ("symlink", "link", 0o120777, "symbolic link"),
    ("fifo", "pipe", 0o010644, "device, FIFO"),
]


@pytest.mark.parametrize(
    ("label", "name", "mode", "message"), UNSAFE_ZIP, ids=[u[0] for u in UNSAFE_ZIP]
)
def test_unsafe_zip_entries_are_refused(
    tmp_path: Path, label: str, name: str, mode: int, message: str
) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("BkgOnly.json", "{}")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd")
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchive, match=message):
        recast.fetch(archive, cache_dir=cache)
    _assert_nothing_cached(cache)
    assert not (tmp_path / "escaped.json").exists()


def test_file_count_and_size_bounds(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "many.tar", {f"f{i}.json": b"{}" for i in range(5)}, mode="w")
    with pytest.raises(UnsafeArchive, match="more than 4 files"):
        safe_extract(archive, tmp_path / "a", limits=ExtractLimits(max_files=4))
    assert safe_extract(archive, tmp_path / "b", limits=ExtractLimits(max_files=5)) == 5
    big = make_tar(tmp_path / "big.tar.gz", {"BkgOnly.json": b" " * 10_000})
    with pytest.raises(UnsafeArchive, match="more than 9999 bytes"):
        safe_extract(big, tmp_path / "c", limits=ExtractLimits(max_bytes=9999))
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchive):
        recast.fetch(big, cache_dir=cache, limits=ExtractLimits(max_bytes=9999))
    _assert_nothing_cached(cache)


def test_zip_bomb_lying_about_its_size_is_stopped(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"BkgOnly.json": b"0" * 200_000})
    raw = bytearray(archive.read_bytes())
    # declare a tiny uncompressed size in the central directory: the stream still inflates
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        safe_extract(archive, tmp_path / "out", limits=ExtractLimits(max_bytes=100_000))
    assert not (tmp_path / "out").exists()


def test_damaged_and_non_archives(tmp_path: Path, shared_hepdata: Path) -> None:
    blob = (shared_hepdata / ARCHIVE).read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(blob[: len(blob) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(ArchiveError, match=r"damaged or truncated gzip archive"):
        recast.fetch(truncated, cache_dir=cache)
    _assert_nothing_cached(cache)
    page = tmp_path / "page.tar.gz"
    page.write_text("<!DOCTYPE html><html><title>Login</title></html>")
    with pytest.raises(ArchiveError, match=r"not a tar or zip archive \(found an HTML page"):
        recast.fetch(page, cache_dir=cache)
    _assert_nothing_cached(cache)


# ------------------------------------------------------------------------------- layouts


def test_sbottom_archive(tmp_path: Path, shared_hepdata: Path) -> None:
    path = recast.fetch(shared_hepdata / ARCHIVE, cache_dir=tmp_path)
    table = recast.likelihoods(path)
    assert list(table.name) == ["RegionA", "RegionB", "RegionC"]
    assert list(table.n_points) == [217, 218, 215]
    # the published archive is known (by its sha256): ATLAS's names of the masses
    assert list(table.labels) == [["m_sbottom", "m_N2", "m_N1"]] * 3
    assert list(table.format) == ["legacy_patches"] * 3
    assert table.digest_ok.isna().all()  # legacy patch files carry no digest
    named = recast.likelihoods(path, labels=["m_sb", "m_N2", "m_N1"])
    assert list(named.labels) == [["m_sb", "m_N2", "m_N1"]] * 3
    with pytest.raises(ArchiveError, match="2 labels given.*3 values"):
        recast.likelihoods(path, labels=["a", "b"])
    # the archive given again is a cache hit (same content-addressed entry)
    assert recast.fetch(shared_hepdata / ARCHIVE, cache_dir=tmp_path) == path
    assert len(recast.cache_entries(tmp_path)) == 1


def test_sbottom_legacy_patchset_against_pyhf(tmp_path: Path, shared_hepdata: Path) -> None:
    path = recast.fetch(shared_hepdata / ARCHIVE, cache_dir=tmp_path)
    with pytest.raises(ArchiveError, match="3 likelihoods.*RegionA, RegionB, RegionC"):
        recast.load_likelihood(path)
    with pytest.raises(
        ArchiveError, match="no likelihood named 'RegionZ'; available: RegionA, RegionB, RegionC"
    ):
        recast.load_likelihood(path, "RegionZ")
    lik = recast.load_likelihood(
        path, "RegionA", labels=["m_sb", "m_N2", "m_N1"], references={"hepdata": "ins1748602"}
    )
    assert lik.name == "RegionA" and lik.labels == ["m_sb", "m_N2", "m_N1"]
    assert lik.patchset["metadata"]["references"] == {"hepdata": "ins1748602"}
    # a local archive carries no INSPIRE id of its own: the reference stays empty
    assert recast.load_likelihood(path, "RegionA").patchset["metadata"]["references"] == {}
    assert lik.bkgonly_path == path / "RegionA" / "BkgOnly.json"
    assert lik.bkgonly == json.loads(
        (shared_hepdata / "sbottom_multib/RegionA/BkgOnly.json").read_text()
    )
    ps = pyhf.PatchSet(lik.patchset)  # validates against pyhf's own patchset schema
    assert len(ps.patches) == 217 and ps.labels == ["m_sb", "m_N2", "m_N1"]
    official = json.loads(
        (shared_hepdata / "sbottom_multib/RegionA/patch.sbottom_1300_205_60.json").read_text()
    )
    assert ps["sbottom_1300_205_60"].patch == official
    assert ps[(1300, 205, 60)].name == "sbottom_1300_205_60"
    names = sorted(
        p.name[len("patch.") : -len(".json")]
        for p in (shared_hepdata / "sbottom_multib/RegionA").glob("patch.*.json")
    )
    assert sorted(p.name for p in ps.patches) == names
    # load_likelihood by region is case-insensitive
    assert recast.load_likelihood(path, "regionb").name == "RegionB"
    # pyhf verifies the converted patchset's digest against the BkgOnly and applies it
    assert lik.patchset["metadata"]["digests"]["sha256"] == pyhf.utils.digest(lik.bkgonly)
    patched = ps.apply(pyhf.Workspace(lik.bkgonly), "sbottom_1300_205_60")
    assert patched.get_measurement()["config"]["poi"] == "mu_SIG"
    assert "mu_SIG" in pyhf.Workspace(patched).model().config.par_names


def test_legacy_erjr_names_give_the_official_values(tmp_path: Path, shared_hepdata: Path) -> None:
    """Per-point files written from the official 3L patchset: the names alone must give
    back the values the official metadata states (floats, `p` as decimal point)."""
    official = json.loads((shared_hepdata / "3L_eRJR/patchset.json").read_text())
    folder = tmp_path / "3L"
    folder.mkdir()
    shutil.copy(shared_hepdata / "3L_eRJR/BkgOnly.json", folder / "BkgOnly.json")
    for p in official["patches"]:
        (folder / f"patch.{p['metadata']['name']}.json").write_text(json.dumps(p["patch"]))
    table = recast.likelihoods(folder, labels=["mn2", "mn1"])
    assert table.loc[0, "format"] == "legacy_patches" and table.loc[0, "n_points"] == 64
    lik = recast.load_likelihood(
        folder, labels=["mn2", "mn1"], references={"hepdata": "ins1771533"}
    )
    got = {p["metadata"]["name"]: p["metadata"]["values"] for p in lik.patchset["patches"]}
    want = {p["metadata"]["name"]: p["metadata"]["values"] for p in official["patches"]}
    assert got == want
    # `p` marks a decimal value (float); three official names have none (ERJR_250_50): ints
    assert {n for n, vals in got.items() if all(isinstance(v, float) for v in vals)} == {
        n for n in got if "p" in n
    }
    assert len([n for n in got if "p" not in n]) == 3
    ps = pyhf.PatchSet(lik.patchset)
    assert ps[(350.0, 100.0)].patch == next(
        p["patch"] for p in official["patches"] if p["metadata"]["name"] == "ERJR_350p0_100p0"
    )
    assert lik.patchset["metadata"]["digests"]["sha256"] == recast_digest(lik.bkgonly)


def recast_digest(obj: object) -> str:
    from likelihood.spec import digest

    return digest(obj)


def test_digest_ok_agrees_with_pyhf(shared_hepdata: Path, tmp_path: Path) -> None:
    # a patchset made for another workspace is flagged
    files = _likelihood_files()
    files["BkgOnly.json"] = _dump(small_workspace(2, scale=3.0))
    folder = tmp_path / "mismatch"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    flag = recast.likelihoods(folder).loc[0, "digest_ok"]
    assert flag is not None and not flag
    # the real patchsets match their BkgOnly, as pyhf computes it
    assert recast_digest(small_workspace()) == pyhf.utils.digest(small_workspace())
    for name in ("1Lbb", "3L_eRJR"):
        table = recast.likelihoods(shared_hepdata / name)
        assert len(table) == 1 and table.loc[0, "format"] == "patchset"
        bkg = json.loads((shared_hepdata / name / "BkgOnly.json").read_text())
        meta = json.loads((shared_hepdata / name / "patchset.json").read_text())["metadata"]
        assert bool(table.loc[0, "digest_ok"]) == (
            pyhf.utils.digest(bkg) == meta["digests"]["sha256"]
        )
        assert table.loc[0, "labels"] == meta["labels"]
        assert bool(table.loc[0, "digest_ok"])  # SOURCES.md: both verify with pyhf


LAYOUTS = {
    "flat": (_likelihood_files(), {"BkgOnly": 3}),
    "regions": (
        {**_likelihood_files("SRA/"), **_likelihood_files("SRB/", scale=2, points=4)},
        {"SRA": 3, "SRB": 4},
    ),
    "prefixed": (
        {
            **_likelihood_files(bkg_name="Rpc2L0b_BkgOnly.json", ps_name="Rpc2L0b_patchset.json"),
            **_likelihood_files(
                bkg_name="Rpc3LSS1b_BkgOnly.json", ps_name="Rpc3LSS1b_patchset.json", points=2
            ),
        },
        {"Rpc2L0b": 3, "Rpc3LSS1b": 2},
    ),
    "lowercase-bkgonly": (
        {
            "Sleptons_bkgonly.json": _dump(small_workspace(3)),
            "EWKinos_bkgonly.json": _dump(small_workspace(2)),
        },
        {"EWKinos": 0, "Sleptons": 0},
    ),
    "nested-top": (
        {
            **_likelihood_files("analysis_v2/RegionA/"),
            **_likelihood_files("analysis_v2/RegionB/", points=1),
        },
        {"RegionA": 3, "RegionB": 1},
    ),
    "nested-flat": (_likelihood_files("ANA-SUSY-2019-08/"), {"ANA-SUSY-2019-08": 3}),
}


@pytest.mark.parametrize("container", ["tar.gz", "tgz", "tar", "zip", "folder"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts(tmp_path: Path, layout: str, container: str) -> None:
    files, expected = LAYOUTS[layout]
    if container == "folder":
        src = tmp_path / "extracted"
        for rel, data in files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
    elif container == "zip":
        src = make_zip(tmp_path / "lh.zip", files)
    else:
        src = make_tar(
            tmp_path / f"lh.{container}", files, mode="w" if container == "tar" else "w:gz"
        )
    path = recast.fetch(src, cache_dir=tmp_path / "cache")
    table = recast.likelihoods(path)
    assert dict(zip(table.name, table.n_points, strict=True)) == expected
    for row in table.itertuples():
        if row.n_points:
            assert (
                row.format == "patchset"
                and row.labels == ["mA", "mB"]
                and row.digest_ok is not None
            )
        else:
            assert row.format == "bkgonly_only" and row.patchset is None and row.digest_ok is None
        lik = recast.load_likelihood(path, row.name)
        assert lik.bkgonly == json.loads(Path(row.bkgonly).read_text())
        assert (lik.patchset is None) == (row.n_points == 0)
    if container == "folder":
        assert path == src.resolve() and recast.cache_entries(tmp_path / "cache").empty


def test_empty_and_inconsistent_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("nothing")
    with pytest.raises(ArchiveError, match="no background-only workspace"):
        recast.likelihoods(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "BkgOnly.json").write_text(json.dumps(small_workspace()))
    (mixed / "patch.model_100_20.json").write_text("[]")
    (mixed / "patch.model_100.json").write_text("[]")
    with pytest.raises(
        ArchiveError,
        match=r"patch\.model_100_20\.json: 2 numeric fields.*patch\.model_100\.json has 1",
    ):
        recast.likelihoods(mixed)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "BkgOnly.json").write_text('{"channels": [')
    (broken / "patchset.json").write_text(
        json.dumps({"patches": [], "metadata": {"digests": {"sha256": "0" * 64}}})
    )
    # a folder of the user's: nothing to fetch again, so no --refresh hint
    with pytest.raises(ArchiveError, match=r"BkgOnly\.json: malformed JSON at line 1") as err:
        recast.likelihoods(broken)
    assert "--refresh" not in str(err.value) and "check the file" in str(err.value)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("sbottom_1300_205_60", [1300, 205, 60]),
        ("ERJR_350p0_100p0", [350.0, 100.0]),
        ("C1N2_Wh_hbb_700_0", [700, 0]),
        ("model_100p5_x_20", [100.5, 20]),
    ],
)
def test_legacy_values(name: str, values: list[float]) -> None:
    got = legacy_values(name)
    assert got == values and [type(v) for v in got] == [type(v) for v in values]


def test_legacy_values_needs_a_number() -> None:
    with pytest.raises(ArchiveError, match="no numeric field"):
        legacy_values("signal_only")


def test_stale_work_folders_are_removed(tmp_path: Path) -> None:
    import os
    import time

    cache = tmp_path / "cache"
    stale = cache / ".partial" / "deadbeef"
    stale.mkdir(parents=True)
    (stale / "download.1.part").write_bytes(b"\x1f\x8b half a download")
    fresh = cache / ".partial" / "cafe"
    fresh.mkdir()
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    src = make_tar(tmp_path / "lh.tgz", _likelihood_files())
    recast.fetch(src, cache_dir=cache)
    assert not stale.exists()
    assert fresh.exists()  # may belong to a running process
    (cache / ".partial" / "trash-0123").mkdir()
    assert recast.clear_cache(cache) == 1
    assert recast.cache_entries(cache).empty
    # clearing removes trash but not a work folder that a running fetch may be using
    assert [p.name for p in (cache / ".partial").iterdir()] == ["cafe"]
