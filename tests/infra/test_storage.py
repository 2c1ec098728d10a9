"""Storage on the converged VM, as users of every role: the access matrix of
each area, collaboration and sticky deletion, the scratch purge, disk quotas,
the new-user hook, and a second converge that changes nothing.

    python3 tests/vm/vm.py up --name st --port 2233
    DS01_VM=st pyinfra -y tests/vm/inventory.py deploys/all.py
    DS01_VM=st python3 -m pytest tests/infra/test_storage.py

Expectations are computed from tests/vm/policy.yaml, not written down here.
"""

from __future__ import annotations

import os
import re
import shlex
import time

import pytest
from conftest import REPO, as_user

from ds01.config import load_policy

pytestmark = pytest.mark.vm

POLICY = load_policy(os.environ.get("DS01_POLICY", REPO / "tests/vm/policy.yaml"))
ROLE_OF = {u: r for r, us in POLICY.identity.members.items() for u in us if u.startswith("lt.")}
AREAS = POLICY.storage.areas


def short(area) -> str:
    return area.link or area.path


@pytest.mark.parametrize("user", sorted(ROLE_OF))
@pytest.mark.parametrize(
    "name", [n for n, a in AREAS.items() if a.kind in ("readonly", "collaborative")]
)
def test_shared_area_matrix(vm, user, name):
    area, role = AREAS[name], ROLE_OF[user]
    probe = f"{short(area)}/.probe-{user}"
    can_read = role in area.read or role in area.write
    can_write = role in area.write
    assert as_user(vm, user, f"ls {short(area)} >/dev/null").rc == (0 if can_read else 2), "list"
    wrote = as_user(vm, user, f"touch {probe}")
    assert (wrote.rc == 0) == can_write, f"write: {wrote.stderr}"
    vm.run(f"rm -f {probe}")


def test_collab_file_of_one_is_writable_by_another_but_not_deletable(vm):
    collab = short(next(a for a in AREAS.values() if a.kind == "collaborative"))
    f = f"{collab}/shared-notes.txt"
    vm.run(f"rm -f {f}")
    assert as_user(vm, "lt.student", f"echo first > {f}").rc == 0
    assert as_user(vm, "lt.researcher", f"echo second >> {f}").rc == 0
    assert vm.file(f).content_string == "first\nsecond\n"
    assert vm.file(f).group == next(a for a in AREAS.values() if a.kind == "collaborative").group
    gone = as_user(vm, "lt.researcher", f"rm -f {f}")
    assert gone.rc != 0 and "Operation not permitted" in gone.stderr  # sticky
    assert as_user(vm, "lt.student", f"rm {f}").rc == 0  # the owner may


def test_readonly_area_admins_write_others_read(vm):
    data = short(next(a for a in AREAS.values() if a.kind == "readonly"))
    f = f"{data}/model-card.txt"
    assert as_user(vm, "lt.admin", f"echo weights > {f}").rc == 0
    assert as_user(vm, "lt.student", f"cat {f}").stdout == "weights\n"
    assert as_user(vm, "lt.student", f"echo x >> {f}").rc != 0
    assert as_user(vm, "lt.student", f"rm -f {f}").rc != 0
    vm.run(f"rm -f {f}")


def test_scratch_private_dirs(vm):
    scratch = next(a for a in AREAS.values() if a.kind == "scratch")
    for user, _role in ROLE_OF.items():
        d = vm.file(f"{scratch.path}/{user}")
        assert d.is_directory and d.user == user and d.mode == 0o700
        assert (
            as_user(
                vm, user, f"touch {short(scratch)}/{user}/mine && rm {short(scratch)}/{user}/mine"
            ).rc
            == 0
        )
    assert as_user(vm, "lt.student", f"ls {short(scratch)}").rc != 0  # nobody lists who has scratch
    assert as_user(vm, "lt.student", f"ls {short(scratch)}/lt.student2").rc != 0
    assert as_user(vm, "lt.student", f"touch {short(scratch)}/top-level").rc != 0


def test_purge_removes_old_keeps_recent_and_symlink_targets(vm):
    scratch = next(a for a in AREAS.values() if a.kind == "scratch")
    assert scratch.purge is not None
    home = f"{scratch.path}/lt.student"
    as_of = int(time.time()) + scratch.purge.after + 86400  # everything made now is unused by then
    recent = as_of - 86400
    due_soon = as_of - scratch.purge.after + scratch.purge.warn_before // 2
    hostname_before = vm.file("/etc/hostname").content_string
    cmds = [
        f"mkdir -p {home}/run1/deep && echo old > {home}/run1/deep/old.bin",
        f"echo keep > {home}/recent.txt && touch -d @{recent} {home}/recent.txt",
        f"echo soon > {home}/soon.txt && touch -d @{due_soon} {home}/soon.txt",
        f"ln -s /etc/hostname {home}/etc-link && ln -s /etc {home}/etc-dir-link",
    ]
    for c in cmds:
        assert as_user(vm, "lt.student", c).rc == 0
    out = vm.run(f"ds01 storage purge --as-of {as_of}")
    assert out.rc == 0, out.stderr
    assert not vm.file(f"{home}/run1").exists
    assert vm.file(f"{home}/recent.txt").exists and vm.file(f"{home}/soon.txt").exists
    assert (
        not vm.file(f"{home}/etc-link").is_symlink
        and not vm.file(f"{home}/etc-dir-link").is_symlink
    )
    assert vm.file("/etc/hostname").content_string == hostname_before
    assert vm.file("/etc/passwd").exists
    log = vm.file("/var/log/ds01/scratch-purge.log").content_string
    assert re.search(r"user=lt\.student removed files=\d+ dirs=2", log)
    notice = vm.file("/var/lib/ds01/scratch-notices/lt.student")
    assert notice.user == "lt.student" and notice.mode == 0o600
    assert "soon.txt" in notice.content_string
    assert as_user(vm, "lt.student2", "cat /var/lib/ds01/scratch-notices/lt.student").rc != 0
    shown = as_user(vm, "lt.student", "PS1=x; . /etc/profile.d/ds01-scratch-notice.sh")
    assert "will be deleted" in shown.stdout
    vm.run(f"rm -f {home}/recent.txt {home}/soon.txt")


def test_purge_is_scheduled_from_the_policy(vm):
    cron = vm.file("/etc/cron.d/ds01-scratch-purge")
    assert cron.mode == 0o644
    assert (
        f"{POLICY.schedules.scratch_purge} root /usr/local/bin/ds01 job run scratch_purge"
        " -- /usr/local/bin/ds01 storage purge"
        in cron.content_string
    )


def test_quota_exceeded_and_usage(vm):
    area = next(a for a in AREAS.values() if a.quota)
    limit_mib = area.quota["student"] // 2**20
    f = f"{short(area)}/lt.student/fill.bin"
    out = as_user(vm, "lt.student", f"dd if=/dev/zero of={f} bs=1M count={limit_mib + 8} 2>&1")
    assert out.rc != 0 and "Disk quota exceeded" in out.stdout
    usage = as_user(vm, "lt.student", "ds01 storage usage")
    assert usage.rc == 0 and f"of {limit_mib}M" in usage.stdout and "Nearly full" in usage.stdout
    vm.run(f"rm -f {f}")
    admin = as_user(vm, "lt.admin", "ds01 storage usage")
    assert "no quota for your role" in admin.stdout
    for cmd in ("ds01 storage usage lt.admin", "ds01 limits lt.admin"):  # one privacy rule
        other = as_user(vm, "lt.student", cmd)
        assert other.rc == 2 and "what lt.admin uses is theirs" in other.stderr, cmd


def test_new_user_hook_gives_scratch_quota_and_slice(vm):
    user = "lt.newcomer"
    vm.run(f"id {user} >/dev/null 2>&1 || useradd -m {user}; usermod -aG ds01-student {user}")
    hook = (
        "from ds01.config import load_policy; from ds01.hooks import run_new_user; "
        "from ds01.identity.local import local_user; "
        f"print(run_new_user(local_user('{user}', 'student'), load_policy()))"
    )
    out = vm.run(f"/opt/ds01/venv/bin/python -c {shlex.quote(hook)}")
    assert out.rc == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    scratch = next(a for a in AREAS.values() if a.kind == "scratch")
    assert vm.file(f"{scratch.path}/{user}").mode == 0o700
    assert f",{area_kib('student')}," in vm.check_output(
        f"repquota -u -C -O csv {POLICY.storage.quota_filesystem} | grep '^{user},'"
    )
    unit = f"ds01-student-{user}.slice"
    assert vm.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    mtime = vm.file(f"/etc/systemd/system/{unit}").mtime
    assert vm.run(f"/opt/ds01/venv/bin/python -c {shlex.quote(hook)}").rc == 0
    assert vm.file(f"/etc/systemd/system/{unit}").mtime == mtime  # idempotent: not rewritten


def area_kib(role: str) -> int:
    return next(a for a in AREAS.values() if a.quota).quota[role] // 1024
