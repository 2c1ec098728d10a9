"""Fixture tests of operations/venv.py (one JSON file per case)."""

from pathlib import Path

import pytest
from harness import fixtures, run_fixture

from operations import venv

HERE = Path(__file__).parent


@pytest.mark.parametrize("path", fixtures(HERE), ids=lambda p: p.stem)
def test_fixture(path):
    run_fixture(venv, path.name.split(".")[0], path)
