"""Fixture tests of facts/slurm.py: recorded output -> parsed fact."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import run_fact_fixture

from facts.slurm import MariaDbUserPlugin, MungeKey, SlurmAccounting, SlurmdGres, SlurmdHardware

HERE = Path(__file__).parent
FACTS = {"slurm_accounting": SlurmAccounting, "slurmd_hardware": SlurmdHardware,
         "munge_key": MungeKey, "maria_db_user_plugin": MariaDbUserPlugin,
         "slurmd_gres": SlurmdGres}


@pytest.mark.parametrize("fixture", sorted(HERE.glob("*.json")), ids=lambda p: p.stem)
def test_fact(fixture):
    run_fact_fixture(FACTS[fixture.stem.split(".")[0]], fixture)


def test_needs_the_slurm_commands():
    # While they are missing pyinfra hands the plan the default (None).
    assert SlurmAccounting.requires_command == "sacctmgr"
    assert SlurmAccounting.default() is None and SlurmdHardware.default() is None
