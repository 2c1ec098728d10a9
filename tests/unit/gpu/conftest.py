"""Shared fixtures of the GPU unit tests: the repository policy, a fake clock,
and allocators on a fresh SQLite file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_pynvml, gpu_helpers

from gpu_helpers import Clock, make_allocator, policy_with  # noqa: E402

from ds01.config import load_policy  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def policy():
    """config/resource-allocation.yaml with its simulated 4 x A100-40GB (two in MIG)."""
    return load_policy(REPO / "config/resource-allocation.yaml")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def alloc(policy, clock, tmp_path):
    a = make_allocator(policy, tmp_path / "gpu.sqlite3", clock)
    yield a
    a.close()


@pytest.fixture
def policy_with_(policy):
    return lambda **gpu: policy_with(policy, **gpu)
