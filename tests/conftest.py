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


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread (results independent of the machine's cores)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
