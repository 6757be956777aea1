"""Shared test configuration.

The real ATLAS likelihoods live in ``../shared/hepdata`` next to the checkout (never in
the repository).  Every test that needs them takes the ``shared_hepdata`` fixture: outside
CI it skips with a clear reason when the folder is absent; with
``RECASTKIT_REQUIRE_SHARED=1`` (set by ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_hepdata_path() -> Path:
    env = os.environ.get("RECASTKIT_SHARED")
    if env:
        return Path(env).expanduser().resolve() / "hepdata"
    return (REPO_ROOT.parent / "shared" / "hepdata").resolve()


@pytest.fixture(scope="session")
def shared_hepdata() -> Path:
    """Path of ``shared/hepdata`` holding the real published ATLAS likelihoods."""
    path = _shared_hepdata_path()
    if (path / "SOURCES.md").is_file():
        return path
    reason = (
        f"the real ATLAS likelihoods are not at {path} "
        "(expected ../shared/hepdata beside the checkout, or set RECASTKIT_SHARED)"
    )
    if os.environ.get("RECASTKIT_REQUIRE_SHARED") == "1":
        pytest.fail(f"RECASTKIT_REQUIRE_SHARED=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return REPO_ROOT


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test that uses the real likelihoods carries the `shared` marker, so
    # `pytest -m "not shared"` runs the self-contained part alone.
    for item in items:
        if "shared_hepdata" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared)
