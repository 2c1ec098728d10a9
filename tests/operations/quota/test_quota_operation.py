"""Fixture tests of operations.quota (one JSON file per case in this folder)."""

import importlib.util
from pathlib import Path

import pytest

import operations.quota as ops

_path = Path(__file__).parents[1] / "acl/_harness.py"
_spec = importlib.util.spec_from_file_location("_harness", _path)
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


@pytest.mark.parametrize("fixture", harness.fixtures(Path(__file__).parent), ids=lambda p: p.stem)
def test_fixture(fixture):
    harness.run_fixture(ops, fixture.stem.split(".")[0], fixture)
