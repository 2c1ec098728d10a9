"""Fixture tests of operations.backup (one JSON file per case in this folder)."""

from pathlib import Path

import harness
import pytest

import operations.backup as ops


@pytest.mark.parametrize("fixture", harness.fixtures(Path(__file__).parent), ids=lambda p: p.stem)
def test_fixture(fixture):
    harness.run_fixture(ops, fixture.stem.split(".")[0], fixture)
