"""Fixture tests of facts/venv.py: recorded output -> the typed fact."""

from pathlib import Path

import pytest
from harness import fixtures, run_fact_fixture

from facts.venv import VenvStamp


@pytest.mark.parametrize("path", fixtures(Path(__file__).parent), ids=lambda p: p.stem)
def test_fixture(path):
    run_fact_fixture(VenvStamp, path)
