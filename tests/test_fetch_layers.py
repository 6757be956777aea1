"""The I/O layer is one path: resolve -> download -> store -> extract -> archive, and one
``fetch`` on top (issue 17).  Imports run one way only; one retry loop; one converter of
legacy patch folders."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hepdata_server import small_workspace

ROOT = Path(__file__).resolve().parent.parent

#: the steps in data-flow order, then the orchestrator; a module may import only modules
#: before it in this list (plus the shared bases below)
CHAIN = ["resolve", "download", "store", "extract", "archive", "fetching"]
BASES = {"errors", "_io", "_formats"}


def _recast_imports(module: str) -> set[str]:
    """Every ``recast.X`` module the source of ``recast/<module>.py`` imports, anywhere
    (top level or inside functions)."""
    tree = ast.parse((ROOT / "recast" / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "recast":
                found.update(a.name for a in node.names)
            elif node.module.startswith("recast."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("recast."):
                    found.add(a.name.split(".")[1])
    return found - {"__version__"}


@pytest.mark.parametrize("module", CHAIN)
def test_imports_run_one_way(module: str) -> None:
    allowed = set(CHAIN[: CHAIN.index(module)]) | BASES
    imported = _recast_imports(module)
    assert imported <= allowed, f"recast/{module}.py imports {sorted(imported - allowed)}"


def test_the_bases_import_no_step() -> None:
    for base in BASES:
        assert not _recast_imports(base) & set(CHAIN), base


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    # the checker must not be blind to `import` statements inside functions
    assert "fetching" not in _recast_imports("archive")
    assert "archive" in _recast_imports("fetching")
    assert {"store", "extract", "download", "resolve"} <= _recast_imports("fetching")


def test_one_retry_loop() -> None:
    layer = [*CHAIN, *BASES, "hepdata", "cache"]
    sources = {m: (ROOT / "recast" / f"{m}.py").read_text() for m in layer}
    sleepers = sorted(name for name, text in sources.items() if "time.sleep(" in text)
    assert sleepers == ["download"], sleepers
    tree = ast.parse(sources["download"])
    loops = [
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef)
        and any(
            isinstance(c, ast.Call) and ast.unparse(c.func) == "time.sleep" for c in ast.walk(n)
        )
    ]
    assert loops == ["_with_retries"]


def test_fetch_is_defined_once_and_exported() -> None:
    import recast
    import recast.cache
    import recast.fetching
    import recast.hepdata

    assert recast.fetch is recast.fetching.fetch is recast.hepdata.fetch
    assert recast.likelihoods is recast.fetching.likelihoods
    assert recast.cache_entries is recast.cache.cache_entries
    defs = [
        p.stem
        for p in (ROOT / "recast").glob("*.py")
        if any(
            isinstance(n, ast.FunctionDef) and n.name == "fetch"
            for n in ast.parse(p.read_text()).body
        )
    ]
    assert defs == ["fetching"]


def test_one_legacy_converter(tmp_path: Path) -> None:
    """scan's folder of patch.*.json and load_likelihood give the same patchset."""
    import recast
    from recast.scan import _patchset_from_folder

    bkg = small_workspace(2)
    folder = tmp_path / "lh"
    folder.mkdir()
    (folder / "BkgOnly.json").write_text(json.dumps(bkg))
    for name in ("m_300_50", "m_200p5_50"):
        sample = {"name": "s", "data": [1.0, 2.0], "modifiers": []}
        ops = [{"op": "add", "path": "/channels/0/samples/1", "value": sample}]
        (folder / f"patch.{name}.json").write_text(json.dumps(ops))
    via_scan = _patchset_from_folder(folder, bkg, ["a", "b"])
    via_load = recast.load_likelihood(folder, labels=["a", "b"]).patchset
    assert via_scan == via_load
    assert [p["metadata"]["values"] for p in via_scan["patches"]] == [[200.5, 50], [300, 50]]
    sources = [p for p in (ROOT / "recast").glob("*.py") if "legacy_values(" in p.read_text()]
    assert sorted(p.stem for p in sources) == ["archive"]
