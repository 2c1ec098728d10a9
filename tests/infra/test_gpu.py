"""The converged VM, from the outside: deploys/gpu.py with the simulated backend.

    DS01_VM=gpu python3 -m pytest tests/infra/test_gpu.py

Needs a VM converged with deploys/base.py and deploys/gpu.py (and the role
groups, for the queue test: deploys/groups.py).
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import as_user

pytestmark = pytest.mark.vm


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
    assert kinds == sorted(["gpu", "gpu", "3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb",
                            "2g.10gb", "2g.10gb", "2g.10gb", "1g.5gb"])  # fmt: skip
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
    assert "ds01-student" in vm.check_output("id -nG lt.student").split()
    out = as_user(vm, "lt.student", "ds01 gpu queue join --kind 1g.5gb")
    assert out.rc == 0, out.stderr
    try:
        assert "reserved for you" in out.stdout  # 1g.5gb units are free on the VM
        queue = json.loads(as_user(vm, "lt.student", "ds01 gpu queue --json").stdout)
        assert [(e["user"], e["state"]) for e in queue] == [("lt.student", "reserved")]
        notice = as_user(vm, "lt.student", "bash -lic true 2>&1")  # an interactive login
        assert "DS01 GPU: a 1g.5gb" in notice.stdout
        refused = as_user(vm, "lt.student", "sudo -n /usr/local/bin/ds01 gpu queue join "
                          "--kind 1g.5gb --policy /tmp/mine.yaml")  # fmt: skip
        assert refused.rc != 0
    finally:
        as_user(vm, "lt.student", "ds01 gpu queue leave --all")
    assert as_user(vm, "lt.student", "ds01 gpu queue --json").stdout.strip() == "[]"


def test_snapshot_comes_back_after_runtime_dir_is_emptied(vm):
    """/run is a tmpfs: after a reboot the first reconciler pass rewrites it."""
    vm.check_output("rm -f /run/ds01-gpu/status.json && systemctl start ds01-gpu-reconcile.service")
    assert vm.file("/run/ds01-gpu/status.json").mode == 0o644
    assert as_user(vm, "lt.student", "ds01 gpu status --json").rc == 0


def test_probe_on_the_vm_is_an_empty_nvml_layout(vm):
    out = json.loads(vm.check_output("ds01 gpu probe --json --backend nvml"))
    assert out["gpus"] == [] and out["backend"] == "none"
