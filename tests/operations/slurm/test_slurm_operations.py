"""Fixture tests of operations/slurm.py (format: tests/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import run_fixture

from operations import slurm

HERE = Path(__file__).parent


@pytest.mark.parametrize("fixture", sorted(HERE.glob("*.json")), ids=lambda p: p.stem)
def test_operation(fixture):
    run_fixture(slurm, fixture.stem.split(".")[0], fixture)
