"""Fixture tests of facts/python.py."""

from pathlib import Path

import pytest
from harness import fixtures, run_fact_fixture

from facts.python import PythonVersion


@pytest.mark.parametrize("path", fixtures(Path(__file__).parent), ids=lambda p: p.stem)
def test_fixture(path):
    run_fact_fixture(PythonVersion, path)
