"""Slices on the converged VM: active, limits in force in the cgroup files, a
memory hog killed at MemoryMax, a CPU spinner held near CPUQuota, and a real
SSH login held to its role's login limits.

    DS01_VM=st python3 -m pytest -s tests/infra/test_slices.py   # -s prints the figures

Expectations come from tests/vm/policy.yaml.
"""

from __future__ import annotations

import os
import shlex
import time

import pytest
import testinfra
from conftest import CACHE, REPO, vm_port

from ds01.config import load_policy
from ds01.names import ROOT_SLICE, role_slice, slice_cgroup_path, user_slice

pytestmark = pytest.mark.vm


POLICY = load_policy(os.environ.get("DS01_POLICY", REPO / "tests/vm/policy.yaml"))
ROLE_OF = {u: r for r, us in POLICY.identity.members.items() for u in us if u.startswith("lt.")}
CG = "/sys/fs/cgroup"


def expected(lim) -> dict[str, str]:
    return {
        "cpu.max": "max 100000" if lim.cpu_quota is None else f"{lim.cpu_quota * 1000} 100000",
        "memory.max": "max" if lim.memory_max is None else str(lim.memory_max),
        "memory.high": "max" if lim.memory_high is None else str(lim.memory_high),
        "pids.max": "max" if lim.tasks_max is None else str(lim.tasks_max),
    }


def test_hierarchy_active(vm):
    for unit in [ROOT_SLICE, *(role_slice(r) for r in POLICY.roles)]:
        assert vm.run(f"systemctl is-active {shlex.quote(unit)}").stdout.strip() == "active", unit
        assert vm.run(f"systemctl is-enabled {shlex.quote(unit)}").stdout.strip() == "enabled", unit


@pytest.mark.parametrize("user", sorted(ROLE_OF))
def test_user_slice_limits_in_force(vm, user):
    role = ROLE_OF[user]
    unit = user_slice(role, user)
    assert vm.run(f"systemctl is-active {shlex.quote(unit)}").stdout.strip() == "active"
    cg = f"{CG}/{slice_cgroup_path(unit)}"
    for name, want in expected(POLICY.limits_for(role, user).user_slice).items():
        f = vm.file(f"{cg}/{name}")
        if want.startswith("max") and not f.exists:
            continue  # no limit: systemd leaves the controller off for this slice
        assert f.content_string.strip() == want, f"{unit} {name}"


def _run_in_slice(vm, user: str, unit: str, cmd: str, props: str = ""):
    slice_ = user_slice(ROLE_OF[user], user)
    return vm.run(
        f"systemd-run --quiet --wait --pipe --collect --unit={unit} --slice={shlex.quote(slice_)} "
        f"--uid={user} {props} -- {cmd}"
    )


HOG = (
    "import sys\n"
    "chunks = []\n"
    "while True:\n"
    "    chunks.append(bytearray(16 * 2**20))\n"
    "    print(len(chunks) * 16, flush=True)\n"
)


def test_memory_hog_is_killed_at_memory_max(vm):
    user = "lt.student"
    lim = POLICY.limits_for(ROLE_OF[user], user).user_slice
    cg = f"{CG}/{slice_cgroup_path(user_slice(ROLE_OF[user], user))}"
    kills_before = int(vm.check_output(f"grep '^oom_kill ' {cg}/memory.events").split()[1])
    vm.run(f"printf %s {shlex.quote(HOG)} > /tmp/hog.py && chmod 0644 /tmp/hog.py")
    out = _run_in_slice(vm, user, "ds01-test-hog", "/usr/bin/python3 /tmp/hog.py")
    reached = int(out.stdout.split()[-1]) if out.stdout.split() else 0
    kills_after = int(vm.check_output(f"grep '^oom_kill ' {cg}/memory.events").split()[1])
    print(
        f"\nFIGURE memory: hog reached {reached} MiB of MemoryMax {lim.memory_max // 2**20} MiB "
        f"(MemoryHigh {lim.memory_high // 2**20} MiB) before the kernel killed it; "
        f"exit {out.rc}, oom_kill {kills_before}->{kills_after}"
    )
    assert out.rc != 0
    assert kills_after == kills_before + 1
    assert reached <= lim.memory_max // 2**20


def test_cpu_spinner_is_held_near_cpu_quota(vm):
    user = "lt.student"
    lim = POLICY.limits_for(ROLE_OF[user], user).user_slice
    cg = f"{CG}/{slice_cgroup_path(user_slice(ROLE_OF[user], user))}"
    ncpu = int(vm.check_output("nproc"))
    spin = (
        f"/bin/sh -c 'for i in $(seq {ncpu}); do "
        "timeout 14 sh -c \"while :; do :; done\" & done; wait'"
    )
    vm.run(
        f"systemd-run --quiet --collect --unit=ds01-test-spin --slice={shlex.quote(user_slice(ROLE_OF[user], user))} "
        f"--uid={user} -- {spin}"
    )
    time.sleep(3)  # let it ramp up
    u0, _t0 = int(vm.check_output(f"grep ^usage_usec {cg}/cpu.stat").split()[1]), time.monotonic()
    t_vm0 = float(vm.check_output("cat /proc/uptime").split()[0])
    throttled0 = int(vm.check_output(f"grep ^nr_throttled {cg}/cpu.stat").split()[1])
    time.sleep(8)
    u1 = int(vm.check_output(f"grep ^usage_usec {cg}/cpu.stat").split()[1])
    t_vm1 = float(vm.check_output("cat /proc/uptime").split()[0])
    throttled = int(vm.check_output(f"grep ^nr_throttled {cg}/cpu.stat").split()[1]) - throttled0
    vm.run("systemctl stop ds01-test-spin 2>/dev/null || true")
    percent = (u1 - u0) / ((t_vm1 - t_vm0) * 1e6) * 100
    print(
        f"\nFIGURE cpu: {ncpu} spinners held at {percent:.0f}% of one CPU (CPUQuota "
        f"{lim.cpu_quota}%, {ncpu * 100}% available), throttled {throttled} times"
    )
    assert lim.cpu_quota is not None
    # The quota is a ceiling. How close the spinners come to it depends on the
    # host's spare CPU (a TCG guest on a loaded host gets less than it asks for,
    # measured: 76% at load 9 on 2 cores), so the floor is not asserted; that the
    # kernel throttled the slice in the window shows the quota, not a lack of
    # demand, is what held it.
    assert percent <= 1.15 * lim.cpu_quota  # TCG timing jitter
    assert throttled > 0


@pytest.fixture(scope="module")
def student_login(vm):
    """A real SSH login as lt.student (root's test key authorised for the test)."""
    user = "lt.student"
    vm.run(
        f"install -d -m 0700 -o {user} -g {user} ~{user}/.ssh && "
        f"install -m 0600 -o {user} -g {user} /root/.ssh/authorized_keys ~{user}/.ssh/authorized_keys"
    )
    return testinfra.get_host(
        f"paramiko://{user}@127.0.0.1:{vm_port()}", ssh_identity_file=str(CACHE / "id_ed25519")
    )


def test_login_session_is_in_its_user_slice_with_login_limits(vm, student_login):
    user = "lt.student"
    uid = student_login.check_output("id -u")
    cgroup = student_login.check_output("cat /proc/self/cgroup")
    assert f"/user.slice/user-{uid}.slice/session-" in cgroup
    lim = POLICY.limits_for(ROLE_OF[user], user).login
    for name, want in expected(lim).items():
        assert student_login.check_output(f"cat {CG}/user.slice/user-{uid}.slice/{name}") == want, (
            name
        )


def test_ds01_limits_shows_role_limits_and_use(student_login):
    out = student_login.check_output("ds01 limits")
    lim = POLICY.limits_for("student", "lt.student")
    assert "lt.student: role student" in out
    assert f"of {lim.user_slice.cpu_quota}%" in out and f"of {lim.login.tasks_max}" in out
