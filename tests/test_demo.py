"""`recastkit demo` end to end, the example-data locator, packaging, and docs/api.md.

The demo runs the real chain (fetch -> make-patch -> scan -> contour) on the bundled toy
analysis.  Its numbers are checked against pyhf (the independent oracle) on two points of
the small grid; everything else is checked for structure and internal consistency.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import likelihood
import recast
from recast import demo
from recast.errors import RecastError

REPO = Path(__file__).resolve().parent.parent
CLS_COLUMNS = ["cls_exp_m2", "cls_exp_m1", "cls_exp", "cls_exp_p1", "cls_exp_p2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


STEP_LINES: list[str] = []


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("demo-small")
    results = recast.run_demo(out, jobs=2, small=True, echo=STEP_LINES.append)
    return results, out


def _small_points() -> set[tuple[int, int]]:
    index = pd.read_csv(REPO / "grids" / "simpleanalysis_index.csv")
    return set(map(tuple, index.query(demo.SMALL_WHERE)[["m1", "m2"]].to_numpy().tolist()))


# --------------------------------------------------------------------------------------
# end to end


def test_run_demo_writes_every_file(small_run: tuple[pd.DataFrame, Path]) -> None:
    results, out = small_run
    files = results.attrs["files"]
    assert isinstance(files, demo.DemoFiles)
    assert files.results == out / "results.csv"
    assert files.patchset == out / "patchset.json"
    assert files.plot == out / "exclusion.png"
    for path in files:
        assert Path(path).is_file() and Path(path).stat().st_size > 0, path
    assert files.plot.read_bytes()[:8] == PNG_MAGIC
    # written atomically through a temporary file, yet with the mode of a normal file
    umask = os.umask(0)
    os.umask(umask)
    assert files.patchset.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left"
    # the archive went through the cache under the output folder
    assert out / "cache" in files.likelihood.parents
    assert files.likelihood.name == "BkgOnly.json"
    assert set(results.attrs["timings"]) == {"fetch", "make_patch", "scan", "contour"}
    assert [ln.split()[:2] for ln in STEP_LINES] == [
        ["1/4", "fetch"],
        ["2/4", "make-patch"],
        ["3/4", "scan"],
        ["4/4", "contour"],
    ]
    assert "13 points" in STEP_LINES[2]


def test_run_demo_table(small_run: tuple[pd.DataFrame, Path]) -> None:
    results, _ = small_run
    points = _small_points()
    assert len(results) == len(points) == 13
    assert set(zip(results["m1"], results["m2"], strict=True)) == points
    assert (results["status"] == "ok").all(), results[["patch", "status", "message"]]
    cls = results[["cls_obs", *CLS_COLUMNS]].to_numpy()
    assert np.isfinite(cls).all() and (cls >= 0).all() and (cls <= 1).all()
    band = results[CLS_COLUMNS].to_numpy()
    assert (np.diff(band, axis=1) >= -1e-12).all(), "expected band must ascend -2s..+2s"
    assert results["patch"].str.fullmatch(r"stopbC1_\d+_\d+").all()
    # the grid straddles the exclusion: both excluded and allowed points
    assert (results["cls_obs"] < 0.05).any() and (results["cls_obs"] > 0.05).any()
    # the file on disk holds the same table
    on_disk = pd.read_csv(results.attrs["files"].results)
    merged = on_disk.merge(results, on="patch", suffixes=("_disk", ""))
    assert len(merged) == len(results)
    np.testing.assert_allclose(merged["cls_obs_disk"], merged["cls_obs"], rtol=1e-12, atol=0)


def test_demo_patchset_is_valid_and_matches_the_grid(
    small_run: tuple[pd.DataFrame, Path],
) -> None:
    results, _ = small_run
    files = results.attrs["files"]
    patchset = json.loads(files.patchset.read_text())
    bkgonly = likelihood.read_json(files.likelihood)
    likelihood.validate_patchset(patchset, source=str(files.patchset))
    assert patchset["metadata"]["labels"] == ["m1", "m2"]
    names = {p["metadata"]["name"] for p in patchset["patches"]}
    assert names == set(results["patch"])
    channels = [c["name"] for c in bkgonly["channels"]]
    for entry in patchset["patches"]:
        ops = entry["patch"]
        added = {channels[int(op["path"].split("/")[2])] for op in ops if op["op"] == "add"}
        # signal in both control regions (contamination) and both signal regions
        assert added == {"CR_ttbar_cuts", "CR_wjets_cuts", "SR_lowDM_meff", "SR_highDM_meff"}
        removed = [op["path"] for op in ops if op["op"] == "remove"]
        assert removed == [f"/channels/{channels.index('VR_ttbar_cuts')}"]


def test_demo_contours_file_has_observed_and_expected(
    small_run: tuple[pd.DataFrame, Path],
) -> None:
    results, _ = small_run
    text = results.attrs["files"].contours.read_text()
    curves = set(re.findall(r"^#: curve: (\S+)$", text, flags=re.M))
    assert {"observed", "expected", "expected_m1", "expected_p1"} <= curves
    # the numbers lie inside the scanned plane
    rows = [ln.split(",") for ln in text.splitlines() if ln and not ln.startswith("#")]
    xy = np.array([[float(a), float(b)] for a, b in rows if a != "m1"])
    assert xy[:, 0].min() >= 400 - 1e-6 and xy[:, 0].max() <= 1000 + 1e-6
    assert xy[:, 1].min() >= -1e-6 and xy[:, 1].max() <= 600 + 1e-6


@pytest.mark.slow
def test_demo_cls_agree_with_pyhf(small_run: tuple[pd.DataFrame, Path]) -> None:
    pyhf = pytest.importorskip("pyhf")
    import jsonpatch

    results, _ = small_run
    files = results.attrs["files"]
    bkgonly = likelihood.read_json(files.likelihood)
    patches = {
        p["metadata"]["name"]: p["patch"] for p in json.loads(files.patchset.read_text())["patches"]
    }
    pyhf.set_backend("numpy")
    # a point near the observed contour (CLs ~ 0.07, expected band across 0.05)
    for name in ("stopbC1_600_400",):
        ws = pyhf.Workspace(jsonpatch.apply_patch(bkgonly, patches[name]))
        model = ws.model()
        obs, exp = pyhf.infer.hypotest(
            1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True
        )
        row = results.set_index("patch").loc[name]
        assert row["cls_obs"] == pytest.approx(float(obs), abs=1e-3), name
        np.testing.assert_allclose(
            row[CLS_COLUMNS].to_numpy(float), np.asarray(exp, float), atol=1e-3, err_msg=name
        )


def test_cli_demo_prints_table_and_files(tmp_path: Path) -> None:
    from cli import main

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["demo", "--small", "--jobs", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    # (the progress bar shares the captured stream, so the header may follow it on a line)
    header = next(i for i, ln in enumerate(lines) if re.search(r"\bm1\s+m2\s+cls_obs\b", ln))
    table = lines[header + 1 : header + 14]
    assert len(table) == 13 and all(ln.split()[-2] == "ok" for ln in table)
    assert "13 points (13 ok)" in res.output
    assert all(f"{i}/4 " in res.output for i in range(1, 5))
    for name in ("results.csv", "patchset.json", "exclusion.png", "exclusion_contours.csv"):
        assert str(out / name) in res.output
        assert (out / name).is_file()
    # a second run into the same folder replaces the outputs
    again = CliRunner().invoke(main, ["demo", "--small", "--jobs", "1", "--output", str(out)])
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(out / "results.csv")) == 13


def test_cli_demo_bad_example_dir_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import main

    monkeypatch.setenv("RECASTKIT_EXAMPLE_DIR", str(tmp_path))
    res = CliRunner().invoke(main, ["demo", "--small", "--output", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "RECASTKIT_EXAMPLE_DIR" in res.output and str(tmp_path) in res.output


# --------------------------------------------------------------------------------------
# locating the example data


def _copy_example(dest: Path) -> Path:
    for sub in ("fixtures", "grids"):
        shutil.copytree(REPO / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_example_dir_finds_the_source_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECASTKIT_EXAMPLE_DIR", raising=False)
    # tests run against the checkout (editable install, or `python -m pytest` from the
    # root); after a non-editable install `recast` may come from site-packages instead
    if Path(demo.__file__).resolve().parent.parent == REPO:
        expected = REPO
    else:
        expected = Path(sys.prefix) / "share" / "recastkit"
    assert demo.example_dir() == expected
    data = demo.example_data()
    assert data.archive == expected / "fixtures" / "toy_hepdata_archive.tar.gz"
    assert all(Path(p).is_file() for p in data[1:])


def test_example_dir_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_example(tmp_path / "copy")
    monkeypatch.setenv("RECASTKIT_EXAMPLE_DIR", str(root))
    assert demo.example_dir() == root
    # a wrong setting is an error naming it, not a silent fallback
    monkeypatch.setenv("RECASTKIT_EXAMPLE_DIR", str(tmp_path / "missing"))
    with pytest.raises(RecastError, match="RECASTKIT_EXAMPLE_DIR"):
        demo.example_dir()


def test_example_dir_finds_an_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a non-editable install: the package lives in site-packages, the data under
    # <sys.prefix>/share/recastkit
    prefix = tmp_path / "venv"
    _copy_example(prefix / "share" / "recastkit")
    monkeypatch.delenv("RECASTKIT_EXAMPLE_DIR", raising=False)
    monkeypatch.setattr(demo, "__file__", str(tmp_path / "site-packages" / "recast" / "demo.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    # sysconfig caches the real prefix; a non-editable test install has data there too
    monkeypatch.setattr(demo.sysconfig, "get_path", lambda *args, **kwargs: str(prefix))
    assert demo.example_dir() == prefix / "share" / "recastkit"
    shutil.rmtree(prefix / "share")
    with pytest.raises(RecastError, match="cannot find the bundled example") as err:
        demo.example_dir()
    assert str(prefix / "share" / "recastkit") in str(err.value)


def test_pyproject_installs_every_example_file() -> None:
    # `pip install .` must carry what the demo reads to <prefix>/share/recastkit/<same path>
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    data_files: dict[str, list[str]] = config["tool"]["setuptools"]["data-files"]
    needed = [
        "fixtures/toy_hepdata_archive.tar.gz",
        "grids/simpleanalysis_index.csv",
        "grids/mapping.json",
        "grids/yields.csv",
    ]
    index = pd.read_csv(REPO / "grids" / "simpleanalysis_index.csv")
    needed += [f"grids/{name}" for name in index["file"]]
    for rel in needed:
        assert (REPO / rel).is_file(), rel
        target = f"share/recastkit/{Path(rel).parent.as_posix()}"
        globs = data_files.get(target, [])
        assert any(
            Path(g).parent == Path(rel).parent and fnmatch.fnmatch(Path(rel).name, Path(g).name)
            for g in globs
        ), f"{rel} is not installed to {target} by [tool.setuptools.data-files]"


# --------------------------------------------------------------------------------------
# docs/api.md stays true to the code

API_MD = REPO / "docs" / "api.md"


def _public(pkg: Any) -> list[tuple[str, Any]]:
    # resolved in the defining module: `pkg.<name>` can be shadowed by a submodule of the
    # same name once that submodule is imported directly (recast.scan, likelihood.fit)
    return [
        (f"{pkg.__name__}.{name}", getattr(importlib.import_module(pkg._EXPORTS[name]), name))
        for name in pkg.__all__
    ]


def _documented_signature(text: str, qualname: str) -> str | None:
    m = re.search(rf"^{re.escape(qualname)}\((.*?)\)(?:\s*->.*)?$", text, flags=re.M | re.S)
    return m.group(1) if m else None


def _params_from_doc(params: str) -> list[tuple[str, str, Any]]:
    tree = ast.parse(f"def _f({params}): pass")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    out: list[tuple[str, str, Any]] = []
    positional = a.posonlyargs + a.args
    defaults: list[Any] = [inspect.Parameter.empty] * (len(positional) - len(a.defaults))
    defaults += [ast.literal_eval(d) for d in a.defaults]
    for arg, default in zip(positional, defaults, strict=True):
        out.append((arg.arg, "positional", default))
    if a.vararg:
        out.append((a.vararg.arg, "var_positional", inspect.Parameter.empty))
    for arg, kd in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        default = inspect.Parameter.empty if kd is None else ast.literal_eval(kd)
        out.append((arg.arg, "keyword_only", default))
    if a.kwarg:
        out.append((a.kwarg.arg, "var_keyword", inspect.Parameter.empty))
    return out


def _params_from_code(obj: Any) -> list[tuple[str, str, Any]]:
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "positional",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.VAR_POSITIONAL: "var_positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword_only",
        inspect.Parameter.VAR_KEYWORD: "var_keyword",
    }
    return [(p.name, kinds[p.kind], p.default) for p in inspect.signature(obj).parameters.values()]


def test_api_md_documents_every_public_name() -> None:
    text = API_MD.read_text()
    missing = [
        q
        for pkg in (recast, likelihood)
        for q, _ in _public(pkg)
        if not re.search(rf"`(class )?{re.escape(q)}\b", text)
    ]
    assert not missing, f"docs/api.md does not document {missing}"


@pytest.mark.parametrize(
    ("qualname", "obj"),
    [pytest.param(q, o, id=q) for q, o in (*_public(recast), *_public(likelihood))],
)
def test_api_md_signature_matches_the_code(qualname: str, obj: Any) -> None:
    text = API_MD.read_text()
    if isinstance(obj, type) and issubclass(obj, BaseException):
        bases = ", ".join(b.__name__ for b in obj.__bases__)
        assert f"class {qualname}({bases})" in text, f"document `class {qualname}({bases})`"
        return
    if isinstance(obj, type) and hasattr(obj, "_fields"):  # NamedTuple
        documented = _documented_signature(text, qualname)
        assert documented is not None, f"document the fields: {qualname}(...)"
        fields = [f.strip() for f in documented.split(",") if f.strip()]
        assert fields == list(obj._fields), qualname
        return
    if isinstance(obj, type):  # a class users get from a function, not construct
        assert f"class {qualname}" in text
        public = [n for n in vars(obj) if not n.startswith("_")]
        for name in public:
            assert f"`{name}" in text, f"{qualname}.{name} is not documented"
        return
    documented = _documented_signature(text, qualname)
    assert documented is not None, f"document the signature: {qualname}(...)"
    doc = _params_from_doc(documented)
    code = _params_from_code(obj)
    assert [(n, k) for n, k, _ in doc] == [(n, k) for n, k, _ in code], qualname
    for (name, _, d_doc), (_, _, d_code) in zip(doc, code, strict=True):
        if (
            d_code is inspect.Parameter.empty
            or isinstance(d_code, (int, float, str, bool, tuple))
            or d_code is None
        ):
            same = d_doc == d_code or (
                isinstance(d_code, float)
                and isinstance(d_doc, float)
                and math.isclose(d_doc, d_code)
            )
            assert same, f"{qualname}: default of {name} is {d_code!r}, docs say {d_doc!r}"


# --------------------------------------------------------------------------------------
# the user guide's links

USER_DOCS = ("guide.md", "concepts.md", "troubleshooting.md", "api.md")


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped, spaces to hyphens
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("name", USER_DOCS)
def test_user_docs_links_resolve(name: str) -> None:
    path = REPO / "docs" / name
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links or name == "api.md"
    for link in links:
        if re.match(r"^[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        file = path if not target else (path.parent / target).resolve()
        assert file.is_file(), f"{name}: link to missing file {link}"
        if anchor:
            assert anchor in _anchors(file), f"{name}: no heading for #{anchor} in {file.name}"
