"""Foundation: packaging, public names, the import rule, the CLI entry point, lint and types."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import likelihood
import recast
from cli import main

REPO = Path(__file__).resolve().parent.parent

# The public API is a promise: changing it must be a deliberate edit of these lists.
RECAST_PUBLIC = {
    "ArchiveError",
    "CacheMiss",
    "Combination",
    "CombineError",
    "ContourError",
    "Contours",
    "DownloadError",
    "Likelihood",
    "MappingError",
    "RecastError",
    "ScanError",
    "UnsafeArchive",
    "YieldsError",
    "best_expected",
    "cache_entries",
    "clear_cache",
    "combine",
    "combine_likelihoods",
    "exclusion_contour",
    "export_contours",
    "fetch",
    "likelihoods",
    "load_likelihood",
    "make_patchset",
    "plot_brazil",
    "plot_exclusion",
    "read_yields",
    "run_demo",
    "scan",
    "CacheError",
    "verify_cache",
}
LIKELIHOOD_PUBLIC = {
    "Background",
    "CLsResult",
    "FitFailure",
    "FitResult",
    "InvalidPatch",
    "InvalidSpecification",
    "InvalidWorkspace",
    "LikelihoodError",
    "Model",
    "NoPOIError",
    "ObservedCLs",
    "UpperLimitResult",
    "apply_patch",
    "compile",
    "digest",
    "fit",
    "get_measurement",
    "hypotest",
    "observed_cls",
    "read_json",
    "upper_limit",
    "validate_patch",
    "validate_patchset",
    "validate_workspace",
    "discovery",
    "DiscoveryResult",
    "InvalidModifierSettings",
    "hypotest_toys",
    "upper_limit_toys",
    "ToyCLsResult",
    "low_count_bins",
}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "schemas" not in p.parts)


@pytest.mark.parametrize(
    ("module", "expected"), [(recast, RECAST_PUBLIC), (likelihood, LIKELIHOOD_PUBLIC)]
)
def test_public_names_are_pinned_and_resolve(module, expected):
    assert set(module.__all__) == expected
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, f"{module.__name__}.{name} resolves to None"
    with pytest.raises(AttributeError, match="no attribute"):
        module.definitely_not_public  # noqa: B018


@pytest.mark.parametrize("package", ["recast", "likelihood"])
def test_submodules_never_shadow_public_names(package):
    # `likelihood.fit` and `recast.scan` are both a submodule and a public function
    code = (
        f"import importlib, pkgutil, types, {package} as pkg\n"
        f"for m in pkgutil.iter_modules(pkg.__path__): importlib.import_module('{package}.' + m.name)\n"
        "bad = [n for n in pkg.__all__ if isinstance(getattr(pkg, n), types.ModuleType)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_error_hierarchy_subclasses_builtins():
    assert issubclass(likelihood.InvalidWorkspace, likelihood.LikelihoodError)
    assert issubclass(likelihood.InvalidWorkspace, ValueError)
    assert issubclass(recast.DownloadError, recast.RecastError)
    assert issubclass(recast.DownloadError, OSError)
    assert issubclass(recast.YieldsError, ValueError)


def test_likelihood_never_imports_recast_statically():
    offenders = []
    for path in _modules("likelihood"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path}:{node.lineno}: {n}"
                for n in names
                if n.split(".")[0] in ("recast", "cli", "pyhf")
            ]
    assert offenders == [], "likelihood/ must import neither recast/, cli nor pyhf"


def test_likelihood_never_imports_recast_at_run_time():
    code = (
        "import sys, likelihood\n"
        "for name in likelihood.__all__: getattr(likelihood, name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('recast', 'cli', 'pyhf'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_runtime_code_never_imports_pyhf():
    for package in ("recast", "likelihood"):
        for path in _modules(package):
            assert "import pyhf" not in path.read_text(encoding="utf-8"), path
    assert "import pyhf" not in (REPO / "cli.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("package", ["recast", "likelihood"])
def test_every_module_declares_all(package):
    missing = []
    for path in _modules(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = any(
            isinstance(node, (ast.Assign, ast.AnnAssign))
            and any(
                isinstance(t, ast.Name) and t.id == "__all__"
                for t in getattr(node, "targets", [getattr(node, "target", None)])
            )
            for node in tree.body
        )
        if not declared:
            missing.append(str(path.relative_to(REPO)))
    assert missing == []


def test_cli_help_and_version():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("fetch", "make-patch", "scan", "contour", "demo"):
        assert command in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert recast.__version__ in result.output


def test_every_subcommand_has_help():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert command.help or command.short_help, f"`recastkit {name}` has no help text"


def test_console_script_runs_from_another_directory(tmp_path):
    exe = shutil.which("recastkit", path=str(Path(sys.executable).parent)) or shutil.which(
        "recastkit"
    )
    if exe is None:
        pytest.fail("the `recastkit` console script is not installed next to this Python")
    result = subprocess.run(
        [exe, "--help"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: recastkit" in result.stdout


def test_readme_commands_match_ci():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "pip install . && recastkit demo" in readme
    assert "<!-- test-command -->" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "RECASTKIT_REQUIRE_SHARED=1" in ci and "NUMBA_CACHE_DIR" in ci


def _run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_ruff_lint_and_format():
    lint = _run_tool(
        "ruff",
        "check",
        "likelihood",
        "recast",
        "cli.py",
        "tests",
        "benchmarks",
        "fixtures",
        "grids",
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run_tool(
        "ruff",
        "format",
        "--check",
        "likelihood",
        "recast",
        "cli.py",
        "tests",
        "benchmarks",
        "fixtures",
        "grids",
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
def test_mypy():
    result = _run_tool("mypy", "--no-error-summary", "--cache-dir", os.devnull)
    assert result.returncode == 0, result.stdout + result.stderr


def test_atomic_write_keeps_normal_permissions_and_leaves_nothing_on_failure(tmp_path):
    from recast._io import atomic_write, atomic_write_json

    old = os.umask(0o022)
    try:
        target = atomic_write_json(tmp_path / "sub" / "out.json", {"a": 1})
    finally:
        os.umask(old)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert (target.stat().st_mode & 0o777) == 0o644

    def broken(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
    with pytest.raises(ValueError):
        atomic_write_json(target, {"x": float("nan")})
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]
