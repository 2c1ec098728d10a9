"""operations/deferred.py through pyinfra's own prepare and execute stages
(API mode, the @local connector: real facts, real getent), with a policy whose
role groups do not exist here, as on a fresh server before deploys/groups.py."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, OperationError, State
from pyinfra.api.connect import connect_all
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.api.state import StateStage

from ds01.config import load_policy
from ds01.identity.local import managed_groups
from operations import deferred

REPO = Path(__file__).resolve().parents[3]
POLICY = load_policy(REPO / "tests/vm/policy.yaml")


def missing_here() -> bool:
    names = managed_groups(POLICY)
    return subprocess.run(["getent", "group", *names], capture_output=True).returncode != 0


pytestmark = pytest.mark.skipif(not missing_here(), reason="this machine has DS01's groups")


def prepared(plan, check_for_changes: bool) -> tuple[State, str]:
    inventory = Inventory((["@local"], {"policy": POLICY}))
    state = State(inventory, Config(), check_for_changes=check_for_changes)
    state.set_stage(StateStage.Connect)
    connect_all(state)
    state.set_stage(StateStage.Prepare)
    ops = add_op(state, deferred.planned_at_execution, plan=plan, what="private directories")
    return state, next(iter(ops.values()))._hash


def uses_role_users():
    for user in deferred.role_users(POLICY):
        yield f"true {user}"


def test_planning_a_fresh_server_says_decided_at_execution(caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    state, op_hash = prepared(uses_role_users, check_for_changes=True)  # `--dry`, or no -y
    host = next(iter(state.inventory))
    assert state.get_op_data_for_host(host, op_hash).operation_meta._maybe_is_change
    assert "private directories: decided at execution, once deploys/groups.py" in caplog.text


@pytest.mark.parametrize("check_for_changes", [True, False], ids=["confirmed", "-y"])
def test_executing_without_the_groups_fails_naming_the_deploy(check_for_changes):
    state, _ = prepared(uses_role_users, check_for_changes=check_for_changes)
    state.set_stage(StateStage.Execute)
    # (the CLI prints this as "Operation error in ...")
    with pytest.raises(OperationError, match="do not exist; they come from deploys/groups.py"):
        run_ops(state)


def test_a_plan_that_is_decided_yields_its_commands():
    def plan():
        yield "true"

    state, op_hash = prepared(plan, check_for_changes=True)
    state.set_stage(StateStage.Execute)
    run_ops(state)
    host = next(iter(state.inventory))
    assert not state.failed_hosts
    assert state.get_op_data_for_host(host, op_hash).operation_meta.did_change()
