"""The scan machinery (selection, chunks, executors, result files, resume, best_expected).

These tests drive :func:`recast.scan._scan` with a stand-in statistics core whose numbers
are a closed-form function of the signal yields in each patch, so that every row can be
checked exactly and the tests do not depend on the fitting core.  The real core against
pyhf is tested in ``test_scan_reference.py``.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

from likelihood.errors import InvalidPatch, InvalidWorkspace, NoPOIError
from likelihood.spec import apply_patch, digest
from recast.errors import ScanError
from recast.scan import ScanInterrupted, _scan, best_expected, scan

VALUES = [
    "cls_obs",
    "cls_exp_m2",
    "cls_exp_m1",
    "cls_exp",
    "cls_exp_p1",
    "cls_exp_p2",
    "mu_hat",
    "status",
    "message",
    "seconds",
]


# ---------------------------------------------------------------------------------------
# a small workspace and a stand-in core


def _workspace(scale: float = 1.0) -> dict[str, Any]:
    def sample(name: str, data: list[float]) -> dict[str, Any]:
        return {
            "name": name,
            "data": data,
            "modifiers": [
                {"name": f"norm_{name}", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}
            ],
        }

    return {
        "channels": [
            {"name": "SR", "samples": [sample("ttbar", [10.0 * scale, 5.0])]},
            {"name": "CR", "samples": [sample("ttbar", [100.0])]},
        ],
        "observations": [{"name": "SR", "data": [11.0, 4.0]}, {"name": "CR", "data": [98.0]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu_SIG", "parameters": []}}],
        "version": "1.0.0",
    }


def _signal_ops(sr: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "op": "add",
            "path": "/channels/0/samples/1",
            "value": {
                "name": "signal",
                "data": sr,
                "modifiers": [{"name": "mu_SIG", "type": "normfactor", "data": None}],
            },
        }
    ]


def _patchset(bkg: dict[str, Any], grid: list[tuple[int, int]]) -> dict[str, Any]:
    patches = []
    for m1, m2 in grid:
        s = 2000.0 / m1 + m2 / 100.0
        patches.append(
            {
                "metadata": {"name": f"sig_{m1}_{m2}", "values": [m1, m2]},
                "patch": _signal_ops([s, s / 2]),
            }
        )
    return {
        "metadata": {
            "description": "test grid",
            "digests": {"sha256": digest(bkg)},
            "labels": ["m1", "m2"],
            "references": {},
        },
        "patches": patches,
        "version": "1.0.0",
    }


GRID = [(m1, m2) for m1 in (100, 200, 300, 400) for m2 in (0, 50, 100)]


class FakeResult(NamedTuple):
    cls_obs: float
    cls_exp: tuple[float, ...]
    clsb_obs: float
    clb_obs: float
    mu_hat: float
    status: str
    message: str
    pars_free: Any


class FakeUL(NamedTuple):
    mu_ul_obs: float
    mu_ul_exp: tuple[float, ...]
    status: str
    message: str


class FakeModel:
    def __init__(self, spec: dict[str, Any], name: str | None) -> None:
        self.spec = spec
        self.name = name or ""
        signal = [s for ch in spec["channels"] for s in ch["samples"] if s["name"] == "signal"]
        self.signal = float(sum(sum(s["data"]) for s in signal))
        self.poi_index = 0 if signal else None
        self.parameter_names = ("mu_SIG", "norm_ttbar") if signal else ("norm_ttbar",)


class FakeBackground:
    def __init__(self, spec: dict[str, Any], measurement=None, modifier_settings=None) -> None:
        if spec.get("measurements", [{}])[0].get("name") == "broken":
            raise InvalidWorkspace("/measurements/0: broken on purpose")
        self.spec = spec

    def with_patch(self, ops: list[dict[str, Any]], *, name: str | None = None) -> FakeModel:
        return FakeModel(apply_patch(self.spec, ops, source=name), name)


def expected_values(signal: float) -> dict[str, float]:
    """The stand-in's closed form: CLs falls with the signal yield."""
    cls = math.exp(-signal / 10.0)
    band = [cls**k for k in (2.0, 1.5, 1.2, 1.0, 0.8)]
    return {
        "cls_obs": cls,
        **dict(zip(VALUES[1:6], sorted(band), strict=True)),
        "mu_hat": signal / 100.0,
    }


class FakeCore:
    """Stands in for the likelihood package (picklable, so it also runs in worker processes)."""

    Background = FakeBackground
    NoPOIError = NoPOIError
    InvalidPatch = InvalidPatch

    @staticmethod
    def hypotest(model, mu=1.0, *, test_stat="qtilde", expected="aposteriori", init=None):
        if model.poi_index is None:
            raise NoPOIError("the model has no POI")
        if "boom" in model.name:
            raise RuntimeError("boom in the fit")
        if "die" in model.name:
            import os

            os._exit(3)
        v = expected_values(model.signal * mu)
        if "nofit" in model.name:
            nan = math.nan
            return FakeResult(
                nan, (nan,) * 5, nan, nan, nan, "fit_failed", "did not converge", None
            )
        message = "warm" if init is not None else "cold"
        band = tuple(v[c] for c in VALUES[1:6])
        return FakeResult(
            v["cls_obs"], band, 0.0, 0.0, v["mu_hat"], "ok", message, np.array([v["mu_hat"], 0.0])
        )

    @staticmethod
    def upper_limit(model, *, level=0.05, test_stat="qtilde", expected="aposteriori"):
        if "ulcrash" in model.name:
            raise FloatingPointError("no crossing below mu = 1000")
        if "ulfail" in model.name:
            nan = math.nan
            return FakeUL(nan, (nan,) * 5, "fit_failed", "bracket not found")
        ul = 30.0 / model.signal
        return FakeUL(ul, tuple(ul * f for f in (0.5, 0.7, 1.0, 1.4, 2.0)), "ok", "")


def run(bkg, ps, **kw) -> pd.DataFrame:
    opts = dict(
        mu=1.0,
        jobs=1,
        executor=None,
        upper_limit=False,
        expected="aposteriori",
        test_stat="qtilde",
        points=None,
        where=None,
        output=None,
        resume=False,
        overwrite=False,
        progress=False,
        chunk_size=None,
        verify=True,
        labels=None,
        measurement=None,
        modifier_settings=None,
        core=FakeCore(),
    )
    opts.update(kw)
    return _scan(bkg, ps, **opts)


def signal_of(ps: dict[str, Any], name: str) -> float:
    for p in ps["patches"]:
        if p["metadata"]["name"] == name:
            return float(sum(p["patch"][0]["value"]["data"]))
    raise KeyError(name)


@pytest.fixture
def grid() -> tuple[dict[str, Any], dict[str, Any]]:
    bkg = _workspace()
    return bkg, _patchset(bkg, GRID)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["seconds", "message"])


# ---------------------------------------------------------------------------------------
# the table


def test_table_columns_order_and_values(grid):
    bkg, ps = grid
    df = run(bkg, ps, chunk_size=5)
    assert list(df.columns) == ["patch", "m1", "m2", *VALUES]
    assert list(df["patch"]) == [p["metadata"]["name"] for p in ps["patches"]]
    assert list(zip(df["m1"], df["m2"], strict=True)) == GRID
    assert (df["status"] == "ok").all()
    assert (df["seconds"] >= 0).all()
    for row in df.itertuples(index=False):
        want = expected_values(signal_of(ps, row.patch))
        for col, value in want.items():
            assert getattr(row, col) == pytest.approx(value, rel=1e-12), (row.patch, col)
    s = df.attrs["summary"]
    assert (s["points"], s["ok"], s["failed"], s["computed"]) == (
        len(GRID),
        len(GRID),
        0,
        len(GRID),
    )


def test_mu_is_passed_on(grid):
    bkg, ps = grid
    df = run(bkg, ps, mu=2.0, points=["sig_200_50"])
    want = expected_values(2.0 * signal_of(ps, "sig_200_50"))
    assert df["cls_obs"].iloc[0] == pytest.approx(want["cls_obs"])


def test_upper_limit_columns(grid):
    bkg, ps = grid
    df = run(bkg, ps, upper_limit=True, where="m1 == 100")
    ul = ["mu_ul_obs", "mu_ul_exp_m2", "mu_ul_exp_m1", "mu_ul_exp", "mu_ul_exp_p1", "mu_ul_exp_p2"]
    assert list(df.columns)[-6:] == ul
    s = signal_of(ps, df["patch"].iloc[0])
    assert df["mu_ul_obs"].iloc[0] == pytest.approx(30.0 / s)
    assert df["mu_ul_exp_p2"].iloc[0] == pytest.approx(60.0 / s)


def test_warm_start_within_chunks_sorted_by_labels():
    bkg = _workspace()
    # patchset order deliberately not sorted by the labels
    ps = _patchset(bkg, list(reversed(GRID)))
    df = run(bkg, ps, chunk_size=4)
    assert list(df["patch"]) == [f"sig_{a}_{b}" for a, b in reversed(GRID)]
    # chunks of 4 in label order: 100_0 100_50 100_100 200_0 | 200_50 200_100 300_0 300_50 |
    # 300_100 400_0 400_50 400_100; each starts cold, the others start from their neighbour
    cold = set(df.loc[df["message"] == "cold", "patch"])
    assert cold == {"sig_100_0", "sig_200_50", "sig_300_100"}


def test_point_statuses_never_stop_the_scan(grid):
    bkg, ps = grid
    extra = [
        ("sig_1_nosignal", [{"op": "remove", "path": "/channels/1"}]),
        ("sig_2_badpatch", [{"op": "remove", "path": "/channels/7"}]),
        ("sig_3_boom", _signal_ops([1.0, 1.0])),
        ("sig_4_nofit", _signal_ops([1.0, 1.0])),
    ]
    for i, (name, ops) in enumerate(extra):
        ps["patches"].append({"metadata": {"name": name, "values": [1000 + i, 0]}, "patch": ops})
    df = run(bkg, ps).set_index("patch")
    assert df.loc["sig_1_nosignal", "status"] == "no_signal"
    assert "adds no signal" in df.loc["sig_1_nosignal", "message"]
    assert df.loc["sig_2_badpatch", "status"] == "invalid_patch"
    assert "/channels/7" in df.loc["sig_2_badpatch", "message"]
    assert df.loc["sig_3_boom", "status"] == "error"
    assert df.loc["sig_3_boom", "message"] == "RuntimeError: boom in the fit"
    assert df.loc["sig_4_nofit", "status"] == "fit_failed"
    assert df.loc["sig_4_nofit", "message"] == "did not converge"
    failed = ["sig_1_nosignal", "sig_2_badpatch", "sig_3_boom", "sig_4_nofit"]
    assert df.loc[failed, "cls_obs"].isna().all()
    assert (df.drop(index=failed)["status"] == "ok").all()
    s = df.attrs["summary"]
    assert (s["ok"], s["no_signal"], s["failed"]) == (len(GRID), 1, 3)


def test_background_that_does_not_compile_stops_the_scan(grid):
    bkg, ps = grid
    bkg["measurements"][0]["name"] = "broken"
    with pytest.raises(ScanError, match="broken on purpose"):
        run(bkg, ps, verify=False)


# ---------------------------------------------------------------------------------------
# selection and input errors


def test_select_points_and_where(grid):
    bkg, ps = grid
    df = run(bkg, ps, points="sig_100_0, sig_400_100")
    assert list(df["patch"]) == ["sig_100_0", "sig_400_100"]
    df = run(bkg, ps, where="m1 > 250 and m2 == 50")
    assert list(df["patch"]) == ["sig_300_50", "sig_400_50"]
    df = run(bkg, ps, points=["sig_300_50", "sig_100_0"], where="m1 > 250")
    assert list(df["patch"]) == ["sig_300_50"]


def test_unknown_point_suggests_close_names(grid):
    bkg, ps = grid
    with pytest.raises(ScanError, match=r"no patch named 'sig_100_1'.*did you mean .*sig_100_0"):
        run(bkg, ps, points="sig_100_1")


def test_where_with_unknown_column_lists_the_columns(grid):
    bkg, ps = grid
    with pytest.raises(ScanError, match=r"mass.*the columns are patch, m1, m2"):
        run(bkg, ps, where="mass > 3")
    with pytest.raises(ScanError, match="not a valid pandas query"):
        run(bkg, ps, where="m1 >")
    with pytest.raises(ScanError, match="must be a condition"):
        run(bkg, ps, where="m1 + 1")
    with pytest.raises(ScanError, match="no point selected"):
        run(bkg, ps, where="m1 > 10000")


def test_digest_mismatch(grid):
    bkg, ps = grid
    other = _workspace(scale=2.0)
    with pytest.raises(ScanError, match=r"digests/sha256 .*made for another BkgOnly.*verify=False"):
        run(other, ps)
    df = run(other, ps, verify=False, points="sig_100_0")
    assert df["status"].tolist() == ["ok"]


def test_bad_options_and_inputs(grid, tmp_path):
    bkg, ps = grid
    with pytest.raises(ScanError, match="test_stat"):
        run(bkg, ps, test_stat="q0")
    with pytest.raises(ScanError, match="expected"):
        run(bkg, ps, expected="posterior")
    with pytest.raises(ScanError, match="resume needs the output"):
        run(bkg, ps, resume=True)
    with pytest.raises(ScanError, match=r"unknown output format '\.txt'"):
        run(bkg, ps, output=tmp_path / "r.txt")
    with pytest.raises(ScanError, match=r"/patches/1/metadata/values"):
        bad = json.loads(json.dumps(ps))
        bad["patches"][1]["metadata"]["values"] = [1]
        run(bkg, bad)
    with pytest.raises(ScanError, match="no such file"):
        run(tmp_path / "missing.json", ps)
    with pytest.raises(ScanError, match="not a pyhf PatchSet"):
        run(bkg, {"patches": "x"})


def test_public_scan_rejects_bad_input_before_any_work(grid):
    bkg, ps = grid
    with pytest.raises(ScanError, match="no point selected"):
        scan(bkg, ps, where="m1 < 0")


def test_legacy_patch_folder(tmp_path):
    bkg = _workspace()
    folder = tmp_path / "patches"
    folder.mkdir()
    for name, sr in (("C1_350p0_100p5", [3.0, 1.0]), ("C1_400p0_100p5", [2.0, 1.0])):
        (folder / f"patch.{name}.json").write_text(json.dumps(_signal_ops(sr)))
    (folder / "BkgOnly.json").write_text(json.dumps(bkg))
    df = run(folder / "BkgOnly.json", folder, labels=["mc1", "mn1"])
    assert list(df.columns[:3]) == ["patch", "mc1", "mn1"]
    assert df["patch"].tolist() == ["C1_350p0_100p5", "C1_400p0_100p5"]
    assert df["mc1"].tolist() == [350.0, 400.0]
    assert df["mn1"].tolist() == [100.5, 100.5]
    assert df["cls_obs"].tolist() == pytest.approx([math.exp(-0.4), math.exp(-0.3)])
    with pytest.raises(ScanError, match="give 2 label"):
        run(folder / "BkgOnly.json", folder, labels=["m"])


# ---------------------------------------------------------------------------------------
# executors


def test_process_pool_gives_the_in_process_table(grid):
    bkg, ps = grid
    serial = run(bkg, ps, chunk_size=3)
    pooled = run(bkg, ps, chunk_size=3, jobs=2)
    pd.testing.assert_frame_equal(comparable(serial), comparable(pooled))


def test_any_executor(grid):
    bkg, ps = grid
    serial = run(bkg, ps, chunk_size=2)
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = run(bkg, ps, chunk_size=2, executor=pool)
    pd.testing.assert_frame_equal(comparable(serial), comparable(threaded))


@pytest.mark.slow
def test_dead_worker_makes_error_rows_not_a_crash(grid):
    bkg, ps = grid
    ps["patches"].append(
        {"metadata": {"name": "sig_die", "values": [999, 0]}, "patch": _signal_ops([1, 1])}
    )
    df = run(bkg, ps, jobs=2, chunk_size=2).set_index("patch")
    assert len(df) == len(GRID) + 1
    assert df.loc["sig_die", "status"] == "error"
    assert "the worker failed" in df.loc["sig_die", "message"]
    # rows that finished before the pool broke keep their values
    assert set(df["status"]) <= {"ok", "error"}


# ---------------------------------------------------------------------------------------
# output files, interruption, resume


def read_back(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        # exact float round trip whatever the pandas version: parse the text with float()
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for col in df.columns:
            if col.startswith(("cls_", "mu_")) or col == "seconds":
                df[col] = [float(v) if v else math.nan for v in df[col]]
        return df
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
def test_output_file_holds_the_table(grid, tmp_path, suffix):
    bkg, ps = grid
    out = tmp_path / f"results{suffix}"
    df = run(bkg, ps, output=out, chunk_size=5, upper_limit=True)
    back = read_back(out)
    assert list(back.columns) == list(df.columns)
    assert back["patch"].tolist() == df["patch"].tolist()
    for col in ("cls_obs", "cls_exp_m2", "cls_exp_p2", "mu_hat", "mu_ul_obs", "seconds"):
        # exact: floats are written with repr
        assert back[col].tolist() == df[col].tolist(), col
    assert not out.with_name(out.name + ".journal.jsonl").exists()
    with pytest.raises(ScanError, match="exists: pass resume"):
        run(bkg, ps, output=out)
    again = run(bkg, ps, output=out, overwrite=True, points="sig_100_0")
    assert len(read_back(out)) == 1 == len(again)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_interrupt_then_resume_equals_uninterrupted(grid, tmp_path, suffix):
    bkg, ps = grid
    full = run(bkg, ps, chunk_size=3)
    out = tmp_path / f"results{suffix}"

    def stop_after_two_chunks(n_done: int) -> None:
        if n_done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(ScanInterrupted) as info:
        run(bkg, ps, chunk_size=3, output=out, on_rows=stop_after_two_chunks)
    assert (info.value.done, info.value.total, info.value.output) == (6, len(GRID), out)
    partial = read_back(out)
    assert len(partial) == 6
    assert partial["patch"].is_unique

    resumed = run(bkg, ps, chunk_size=3, output=out, resume=True)
    assert resumed.attrs["summary"]["computed"] == len(GRID) - 6
    back = read_back(out)
    assert back["patch"].tolist() == full["patch"].tolist()
    pd.testing.assert_frame_equal(comparable(resumed), comparable(full))
    for col in ("cls_obs", "cls_exp", "mu_hat"):
        assert back[col].tolist() == full[col].tolist()


def test_journal_of_a_killed_json_scan_is_resumed(grid, tmp_path):
    bkg, ps = grid
    out = tmp_path / "results.json"
    first = run(bkg, ps, points="sig_100_0,sig_200_0")
    # what a SIGKILL leaves: a journal with complete lines and a cut last line, no array
    journal = out.with_name("results.json.journal.jsonl")
    lines = [
        json.dumps(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        )
        for r in first.to_dict("records")
    ]
    journal.write_text(lines[0] + "\n" + lines[1][:25])
    df = run(bkg, ps, output=out, resume=True)
    assert df.attrs["summary"]["computed"] == len(GRID) - 1
    assert len(read_back(out)) == len(GRID)
    assert not journal.exists()


def test_resume_computes_error_rows_again_and_rejects_foreign_files(grid, tmp_path):
    bkg, ps = grid
    out = tmp_path / "r.csv"
    df = run(bkg, ps, output=out)
    text = out.read_text().splitlines()
    # mark the first point as failed by a transient error
    first = df.iloc[0]
    fields = text[1].split(",")
    status_at = list(df.columns).index("status")
    fields[status_at] = "error"
    text[1] = ",".join(fields)
    out.write_text("\n".join(text) + "\n")
    again = run(bkg, ps, output=out, resume=True)
    assert again.attrs["summary"]["computed"] == 1
    assert again.iloc[0]["status"] == "ok"
    assert again.iloc[0]["cls_obs"] == first["cls_obs"]

    other = _patchset(bkg, [(900, 900)])
    with pytest.raises(ScanError, match="not in this grid"):
        run(bkg, other, output=out, resume=True)
    with pytest.raises(ScanError, match="columns .* differ"):
        run(bkg, ps, output=out, resume=True, upper_limit=True)


# ---------------------------------------------------------------------------------------
# several regions and best_expected


class Region(NamedTuple):
    name: str
    bkgonly: dict[str, Any]
    patchset: dict[str, Any] | None
    labels: list[str]
    bkgonly_path: Path


def test_regions_into_one_table_and_best_expected():
    regions = []
    for name, scale in (("RegionA", 1.0), ("RegionB", 3.0)):
        bkg = _workspace(scale)
        ps = _patchset(bkg, GRID[:4])
        if name == "RegionB":
            # region B is more sensitive at the first point, and has no signal in the last
            ps["patches"][0]["patch"] = _signal_ops([50.0, 50.0])
            ps["patches"][3]["patch"] = [{"op": "remove", "path": "/channels/1"}]
        regions.append(Region(name, bkg, ps, ["m1", "m2"], Path(f"{name}/BkgOnly.json")))
    df = run(regions, None)
    assert list(df.columns[:4]) == ["region", "patch", "m1", "m2"]
    assert df["region"].tolist() == ["RegionA"] * 4 + ["RegionB"] * 4
    best = best_expected(df)
    assert best["patch"].tolist() == [f"sig_{a}_{b}" for a, b in GRID[:4]]
    assert best["region"].tolist() == ["RegionB", "RegionA", "RegionA", "RegionA"]
    a = df[df["region"] == "RegionA"].reset_index(drop=True)
    assert best["cls_exp"].iloc[1:].tolist() == a["cls_exp"].iloc[1:].tolist()


def test_best_expected_rules():
    nan = math.nan
    df = pd.DataFrame(
        {
            "region": ["A", "B", "C", "A", "B", "A", "B"],
            "patch": ["p1", "p1", "p1", "p2", "p2", "p3", "p3"],
            "m1": [1, 1, 1, 2, 2, 3, 3],
            "cls_exp": [0.3, 0.1, 0.05, 0.2, 0.01, nan, nan],
            "status": ["ok", "ok", "fit_failed", "ok", "ok", "no_signal", "error"],
        }
    )
    best = best_expected(df)
    # p1: C has the lowest value but did not fit -> B; p2: B; p3: none ok -> first row
    assert best["region"].tolist() == ["B", "B", "A"]
    assert best["cls_exp"].tolist()[:2] == [0.1, 0.01]
    single = best_expected(df.drop(columns="region"))
    assert len(single) == len(df)
    with pytest.raises(ScanError, match="cls_exp"):
        best_expected(df.drop(columns="cls_exp"))


def test_recast_scan_is_the_function_even_after_importing_the_module(grid):
    # importing the submodule `recast.scan` must not shadow the public function
    import sys

    import recast
    from recast.scan import scan as scan_function

    assert recast.scan is scan_function
    assert sys.modules["recast.scan"].scan is scan_function
    bkg, ps = grid
    with pytest.raises(ScanError, match="no point selected"):
        recast.scan(bkg, ps, where="m1 < 0")


def test_resume_after_a_kill_mid_write_of_a_csv_row(grid, tmp_path):
    bkg, ps = grid
    out = tmp_path / "r.csv"
    full = run(bkg, ps, output=out)
    lines = out.read_text().splitlines(keepends=True)
    # header + 5 complete rows + the first 30 characters of the 6th (a SIGKILL mid-write)
    out.write_text("".join(lines[:6]) + lines[6][:30])
    again = run(bkg, ps, output=out, resume=True)
    assert again.attrs["summary"]["computed"] == len(GRID) - 5
    back = read_back(out)
    assert back["patch"].tolist() == full["patch"].tolist()
    assert back["cls_obs"].tolist() == full["cls_obs"].tolist()


@pytest.mark.parametrize(("n", "workers"), [(125, 2), (650, 2), (7, 4), (1000, 64), (1, 1)])
def test_guided_chunks_cover_every_point_and_shrink(n, workers):
    from recast.scan import _chunk_sizes

    sizes = _chunk_sizes(n, workers, None)
    assert sum(sizes) == n
    assert all(1 <= s <= 16 for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    # the last chunks are small, so that the workers finish together
    assert sizes[-1] == 1
    assert _chunk_sizes(n, workers, 5) == [5] * (n // 5) + ([n % 5] if n % 5 else [])


def test_upper_limit_failures_keep_the_cls_values(grid):
    bkg, ps = grid
    for i, name in enumerate(("sig_ulcrash", "sig_ulfail")):
        ps["patches"].append(
            {"metadata": {"name": name, "values": [500 + i, 0]}, "patch": _signal_ops([4.0, 2.0])}
        )
    df = run(bkg, ps, upper_limit=True, where="m1 >= 500").set_index("patch")
    want = expected_values(6.0)["cls_obs"]
    assert df.loc["sig_ulcrash", "status"] == "error"
    assert (
        df.loc["sig_ulcrash", "message"]
        == "upper limit: FloatingPointError: no crossing below mu = 1000"
    )
    assert df.loc["sig_ulfail", "status"] == "fit_failed"
    assert df.loc["sig_ulfail", "message"] == "upper limit: bracket not found"
    assert df["cls_obs"].tolist() == pytest.approx([want, want])
    assert df["mu_ul_obs"].isna().all()
