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


def test_database_user_waits_for_mariadb_while_planning():
    # The fact's default (MariaDB not running yet) is not "no such user": a
    # CREATE USER planned from it would fail on a controller that has one.
    from unittest import mock

    from harness import FakeHost

    from operations.deferred import Undecided

    fake = FakeHost({"facts.slurm.MariaDbUserPlugin": {"user=slurm": None}}, executing=False)
    with mock.patch.object(slurm, "host", fake), pytest.raises(Undecided, match="MariaDB runs"):
        list(slurm.socket_database_user._inner(user="slurm", database="slurm_acct_db"))
