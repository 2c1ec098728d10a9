"""The converged VM, from the outside: deploys/gpu.py with the simulated backend.

    DS01_VM=gpu python3 -m pytest tests/infra/test_gpu.py

Needs a VM converged with deploys/base.py and deploys/gpu.py (and the role
groups, for the queue test: deploys/groups.py).
"""

from __future__ import annotations

import json
import os
import shlex
import time

import pytest
from conftest import as_user

pytestmark = pytest.mark.vm

# tests/run cluster: tests/vm/cluster.yaml gives GPUs 2 and 3 (the MIG ones) to
# Slurm, so the interactive pool is GPUs 0 and 1, whole.
CLUSTER = os.environ.get("DS01_CLUSTER") == "1"
POOL = ["gpu", "gpu"] if CLUSTER else [
    "gpu", "gpu", "3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb", "2g.10gb", "2g.10gb", "2g.10gb",
    "1g.5gb"]  # fmt: skip
# who queues for what: a student may not hold a whole GPU, so in the cluster a researcher does
QUEUER, QUEUE_KIND = ("lt.researcher", "gpu") if CLUSTER else ("lt.student", "1g.5gb")


def wait_for_snapshot(vm, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if vm.file("/run/ds01-gpu/status.json").exists:
            return
        time.sleep(2)
    pytest.fail("the reconciler never wrote /run/ds01-gpu/status.json")


def test_timer_active_and_last_pass_succeeded(vm):
    timer = vm.service("ds01-gpu-reconcile.timer")
    assert timer.is_enabled and timer.is_running
    wait_for_snapshot(vm)
    result = vm.check_output("systemctl show -p Result --value ds01-gpu-reconcile.service")
    assert result == "success"
    log = vm.check_output("journalctl -u ds01-gpu-reconcile.service -o cat --no-pager | tail -5")
    assert "reconciled in" in log


def test_service_is_hardened(vm):
    props = vm.check_output(
        "systemctl show -p ProtectSystem -p NoNewPrivileges -p ReadWritePaths "
        "ds01-gpu-reconcile.service"
    )
    assert "ProtectSystem=strict" in props and "NoNewPrivileges=yes" in props
    assert "ReadWritePaths=/var/lib/ds01 /run/ds01-gpu" in props


def test_state_is_root_only_except_the_snapshot(vm):
    wait_for_snapshot(vm)
    db = vm.file("/var/lib/ds01/gpu/allocator.sqlite3")
    assert db.user == "root" and db.mode == 0o600
    snap = vm.file("/run/ds01-gpu/status.json")
    assert snap.user == "root" and snap.mode == 0o644
    assert vm.file("/var/lib/ds01/gpu").mode == 0o700
    # Users read the snapshot, never the database (who waits, since when, the reaper's readings).
    assert as_user(vm, "lt.student", "cat /var/lib/ds01/gpu/allocator.sqlite3").rc != 0
    assert as_user(vm, "lt.student", "ls /var/lib/ds01/gpu").rc != 0


def test_ordinary_user_sees_every_unit(vm):
    wait_for_snapshot(vm)
    out = as_user(vm, "lt.student", "ds01 gpu status --json")
    assert out.rc == 0, out.stderr
    snap = json.loads(out.stdout)
    kinds = sorted(u["kind"] for u in snap["units"])
    assert kinds == sorted(POOL)
    assert {u["gpu"] for u in snap["units"]} == ({0, 1} if CLUSTER else {0, 1, 2, 3})
    table = as_user(vm, "lt.student", "ds01 gpu status")
    assert table.rc == 0 and "units free" in table.stdout
    # ...but cannot write the allocator's state.
    denied = as_user(vm, "lt.student", "ds01 gpu drain " + snap["units"][0]["uuid"])
    assert denied.rc == 2 and "admin command" in denied.stderr
    assert as_user(vm, "lt.student", "test -w /var/lib/ds01/gpu/allocator.sqlite3").rc != 0


def test_sudoers_rule_is_valid_and_narrow(vm):
    assert vm.run("visudo -c").rc == 0
    rules = vm.check_output("sudo -l -U lt.student")
    assert "/usr/local/bin/ds01 gpu queue join" in rules
    assert "ds01 gpu drain" not in rules and "(ALL) ALL" not in rules
    f = vm.file("/etc/sudoers.d/ds01-gpu-queue")
    assert f.user == "root" and f.mode == 0o440


def test_queue_join_through_sudo_and_the_login_notice(vm):
    role = "ds01-researcher" if CLUSTER else "ds01-student"
    assert role in vm.check_output(f"id -nG {QUEUER}").split()
    out = as_user(vm, QUEUER, f"ds01 gpu queue join --kind {QUEUE_KIND}")
    assert out.rc == 0, out.stderr
    try:
        assert "reserved for you" in out.stdout  # such units are free on the VM
        queue = json.loads(as_user(vm, QUEUER, "ds01 gpu queue --json").stdout)
        assert [(e["user"], e["state"]) for e in queue] == [(QUEUER, "reserved")]
        notice = as_user(vm, QUEUER, "bash -lic true 2>&1")  # an interactive login
        assert f"DS01 GPU: a {QUEUE_KIND}" in notice.stdout
        refused = as_user(vm, QUEUER, "sudo -n /usr/local/bin/ds01 gpu queue join "
                          f"--kind {QUEUE_KIND} --policy /tmp/mine.yaml")  # fmt: skip
        assert refused.rc != 0
    finally:
        as_user(vm, QUEUER, "ds01 gpu queue leave --all")
    assert as_user(vm, QUEUER, "ds01 gpu queue --json").stdout.strip() == "[]"


@pytest.mark.skipif(not CLUSTER, reason="the MIG units are Slurm's only in tests/run cluster")
def test_no_queue_for_a_kind_only_slurm_has(vm):
    out = as_user(vm, "lt.student", "ds01 gpu queue join --kind 1g.5gb")
    assert out.rc != 0 and "has no 1g.5gb the student role may use" in out.stderr, out
    assert as_user(vm, "lt.student", "ds01 gpu queue --json").stdout.strip() == "[]"


def test_snapshot_comes_back_after_runtime_dir_is_emptied(vm):
    """/run is a tmpfs: after a reboot the first reconciler pass rewrites it."""
    vm.check_output("rm -f /run/ds01-gpu/status.json && systemctl start ds01-gpu-reconcile.service")
    assert vm.file("/run/ds01-gpu/status.json").mode == 0o644
    assert as_user(vm, "lt.student", "ds01 gpu status --json").rc == 0


def test_probe_on_the_vm_is_an_empty_nvml_layout(vm):
    out = json.loads(vm.check_output("ds01 gpu probe --json --backend nvml"))
    assert out["gpus"] == [] and out["backend"] == "none"


def test_layout_boot_unit_enabled_not_run_by_the_converge(vm):
    unit = vm.service("ds01-gpu-layout.service")
    assert unit.is_enabled
    props = vm.check_output("systemctl show -p Before -p Type -p ExecStart ds01-gpu-layout.service")
    assert "docker.service" in props and "ds01-gpu-reconcile.service" in props
    assert "Type=oneshot" in props and "gpu layout apply --boot" in props


def test_layout_plan_ran_in_the_deploy_and_runs_from_the_cli(vm):
    """tests/vm/policy.yaml lays out GPU 2 as simulated and GPU 3 otherwise."""
    kept = json.loads(vm.check_output("cat /var/lib/ds01/gpu/layout-plan.json"))  # the deploy's
    assert kept["backend"] == "simulated"
    gpus = {g["gpu"]: g for g in kept["gpus"]}
    out = vm.check_output("ds01 gpu layout plan")
    if os.environ.get("DS01_CLUSTER") == "1":  # tests/vm/cluster.yaml gives GPUs 2 and 3 to Slurm
        assert [g["slurm"] for g in kept["gpus"]] == ["cluster.nodes.ds01-test.gpus"] * 2
        assert not any(g["changes"] for g in kept["gpus"])
        for index in (2, 3):
            assert f"GPU {index}: Slurm's (cluster.nodes.ds01-test.gpus), left as it is" in out
        return
    assert (gpus[2]["changes"], gpus[3]["changes"]) == (False, True)
    assert gpus[3]["desired"] == ["3g.20gb", "3g.20gb"] and len(gpus[3]["vanishing"]) == 4
    assert "GPU 2 NVIDIA A100-SXM4-40GB: as the policy asks" in out
    assert "GPU 3 NVIDIA A100-SXM4-40GB: MIG 2g.10gb + 2g.10gb + 2g.10gb + 1g.5gb -> MIG " in out
    # the simulated layout is the policy's: apply refuses, the boot unit's run is a no-op
    assert vm.run("ds01 gpu layout apply").rc == 2
    assert "nothing to re-partition" in vm.check_output("ds01 gpu layout apply --boot")
    assert as_user(vm, "lt.student", "ds01 gpu layout plan").rc != 0  # admins only


LEASES = """
import sys, time
from ds01.config import load_policy
from ds01.gpu.allocator import Allocator
a = Allocator(load_policy("/etc/ds01/resource-allocation.yaml"))
for user, role in (("lt.student", "student"), ("lt.researcher", "researcher")):
    name = f"usage-{user}-{time.time_ns()}"
    a.assign(name, user, role, kind="1g.5gb")
    a.allocate(name)
    a.release(name, hold=False)
    a.forget(name)
a.close()
"""


@pytest.mark.skipif(CLUSTER, reason="a student's lease needs a MIG unit; in the cluster they are Slurm's")
def test_usage_ledger_root_sees_everyone_a_student_their_own(vm):
    vm.check_output(f"/opt/ds01/venv/bin/python -c {shlex.quote(LEASES)}")
    root = json.loads(vm.check_output("ds01 usage --json"))
    users = {r["key"] for r in root["rows"]}
    assert {"lt.student", "lt.researcher"} <= users and root["only_user"] is None
    out = as_user(vm, "lt.student", "ds01 usage --json")
    assert out.rc == 0, out.stderr
    mine = json.loads(out.stdout)
    assert [r["key"] for r in mine["rows"]] == ["lt.student"] and mine["only_user"] == "lt.student"
    assert mine["totals"]["leases"] == root["totals"]["leases"] >= 2
    other = as_user(vm, "lt.student", "ds01 usage --user lt.researcher")
    assert other.rc != 0 and "theirs and the admins'" in other.stderr
    cron = vm.file("/etc/cron.d/ds01-usage-report").content_string
    assert (
        "root /usr/local/bin/ds01 job run usage_report -- /usr/local/bin/ds01 usage --report "
        "/var/lib/ds01/reports"
    ) in cron
    assert vm.file("/var/lib/ds01/reports").mode == 0o750
    vm.check_output("ds01 job run usage_report -- ds01 usage --report /var/lib/ds01/reports")
    assert vm.run("ls /var/lib/ds01/reports/gpu-usage-*.csv").rc == 0
