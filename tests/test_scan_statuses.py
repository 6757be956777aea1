"""Scan statuses: STATUSES lists every status a row can carry; --resume keeps final ones.

Uses the stand-in core of ``tests/test_scan_machinery.py`` (no fits).
"""

from __future__ import annotations

import math

import pandas as pd
from test_scan_machinery import GRID, FakeCore, FakeUL, _patchset, _workspace, run

from recast.scan import STATUSES


class NoBracketCore(FakeCore):
    """Every upper limit fails to bracket (CLs never crosses the level)."""

    @staticmethod
    def upper_limit(model, *, level=0.05, test_stat="qtilde", expected="aposteriori"):
        nan = math.nan
        return FakeUL(nan, (nan,) * 5, "no_bracket", "CLs does not cross 0.05 in [0.001, 10]")


def test_statuses_list_every_status_of_a_row() -> None:
    assert set(STATUSES) == {
        "ok",
        "fit_failed",
        "no_signal",
        "invalid_patch",
        "no_bracket",
        "error",
    }


def test_resume_keeps_no_bracket_rows(tmp_path) -> None:
    bkg = _workspace()
    ps = _patchset(bkg, GRID[:4])
    out = tmp_path / "r.csv"
    first = run(bkg, ps, output=out, upper_limit=True, core=NoBracketCore())
    assert set(first["status"]) == {"no_bracket"}
    assert first["cls_obs"].notna().all() and first["mu_ul_obs"].isna().all()
    again = run(bkg, ps, output=out, resume=True, upper_limit=True, core=NoBracketCore())
    assert again.attrs["summary"]["computed"] == 0  # final: not computed again
    pd.testing.assert_frame_equal(
        again.drop(columns=["seconds"]), first.drop(columns=["seconds"]), check_dtype=False
    )
