"""Shared fixtures: locating ../shared/data and the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The shared real-data folder (env SCOPEFLOW_SHARED_DATA, else <repo>/../shared/data)."""
    return Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared():
    path = shared_data()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set SCOPEFLOW_SHARED_DATA)")
    return path


@pytest.fixture
def repo():
    return REPO
