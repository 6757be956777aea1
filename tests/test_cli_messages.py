"""What the command line says (issue 17, bugs 3 and 6): CLI words in the CLI, API words in
the API, sizes in human units, a short ``CLsResult`` repr, the exit-status convention."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import _human_size, main
from likelihood.cls import CLsResult


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (8_800, "8.8 kB"), (99_940, "99.9 kB"), (394e6, "394 MB")],
)
def test_cache_sizes_in_si_units(size, text):
    assert _human_size(size) == text


def test_cache_list_shows_a_small_entry_in_kb(tmp_path, repo_root):
    cache = tmp_path / "cache"
    runner = CliRunner()
    archive = repo_root / "fixtures" / "toy_hepdata_archive.tar.gz"
    assert runner.invoke(main, ["fetch", str(archive), "--cache-dir", str(cache)]).exit_code == 0
    listed = runner.invoke(main, ["cache", "list", "--cache-dir", str(cache)])
    assert listed.exit_code == 0, listed.output
    line = listed.stdout.splitlines()[0]
    assert " kB " in line and "MiB" not in line, line


def test_clsresult_repr_is_short():
    res = CLsResult(0.25, (0.01, 0.05, 0.2, 0.5, 0.8), 0.1, 0.4, 1.2, "ok", "", np.zeros(120))
    text = repr(res)
    assert text.startswith("CLsResult(cls_obs=0.25, cls_exp=(0.01, 0.05, 0.2, 0.5, 0.8)")
    assert "pars_free=<120 parameters>" in text and len(text) < 200
    assert res.pars_free.shape == (120,)  # the field itself is unchanged


def test_contour_error_speaks_cli_in_the_cli_and_api_in_the_api(tmp_path):
    from recast.contour import find_crossings
    from recast.errors import ContourError

    rows = [
        {"region": r, "patch": f"p{m}", "m": m, "cls_obs": 0.1, "cls_exp": 0.1, "status": "ok"}
        for r in ("A", "B")
        for m in (100, 200)
    ]
    for col in ("cls_exp_m2", "cls_exp_m1", "cls_exp_p1", "cls_exp_p2"):
        for row in rows:
            row[col] = 0.1
    table = pd.DataFrame(rows)
    path = tmp_path / "r.csv"
    table.to_csv(path, index=False)
    result = CliRunner().invoke(main, ["contour", str(path), "-x", "m"])
    assert result.exit_code == 1
    assert "--best-expected" in result.stderr and "--where" in result.stderr
    assert "recast.best_expected" not in result.stderr and "where=" not in result.stderr
    with pytest.raises(ContourError, match=r"recast\.best_expected") as info:
        find_crossings(table, "m")
    assert "--best-expected" not in str(info.value)
    # with --best-expected the same command works
    ok = CliRunner().invoke(main, ["contour", str(path), "-x", "m", "--best-expected"])
    assert ok.exit_code == 0, ok.output


def test_usage_errors_exit_2_and_errors_exit_1(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["scan", "--no-such-option"]).exit_code == 2
    bad = tmp_path / "BkgOnly.json"
    bad.write_text(json.dumps({"channels": []}))
    result = runner.invoke(main, ["scan", str(bad), str(bad)])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")


def test_demo_mentions_compiling_only_with_a_cold_numba_cache(tmp_path, monkeypatch):
    import os

    from recast.demo import _kernels_cached

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    source = tmp_path / "kernels.py"
    source.write_text("from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x\n")
    (tmp_path / "plain.py").write_text("x = 1\n")
    assert not _kernels_cached(tmp_path)  # nothing compiled yet
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    index = cache / "kernels.f-3.py311.nbi"
    index.write_bytes(b"")
    os.utime(source, (1_000_000, 1_000_000))
    assert _kernels_cached(tmp_path)
    os.utime(source, None)  # the source changed after the compilation: stale
    os.utime(index, (1_000_000, 1_000_000))
    assert not _kernels_cached(tmp_path)
