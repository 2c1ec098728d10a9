"""ds01.ops.doctor against a fake server: each induced fault is named with its
fix, a converged server is all OK, the exit code follows the worst result."""

import os
from pathlib import Path

import pytest

from ds01.config import load_policy
from ds01.names import cron_file, role_group, role_slice, user_slice
from ds01.ops import doctor, schedule
from ds01.storage.areas import plan

REPO = Path(__file__).resolve().parents[3]
NOW = 1_800_000_000.0


@pytest.fixture
def policy():
    return load_policy(REPO / "tests/vm/policy.yaml")


def facl(d):
    lines = [f"{k.split(':')[0]}:{k.split(':', 1)[1]}:{v}" for k, v in d.access.items()]
    lines += ["mask::rwx"]
    lines += [f"default:{k.split(':')[0]}:{k.split(':', 1)[1]}:{v}" for k, v in d.default.items()]
    return lines


class Fake(doctor.System):
    def __init__(self, policy):
        self.units = {"cron.service": "active", "docker.service": "active",
                      "ds01-docker.socket": "active", "ds01-gpu-reconcile.timer": "active"}
        self.members_ = {role_group("student"): ["lt.student"]}
        self.slices = {s: "infinity" for s in ["ds01.slice"] + [role_slice(r) for r in policy.roles]}
        lim = policy.limits_for("student", "lt.student").user_slice
        self.slices[user_slice("student", "lt.student")] = str(lim.memory_max)
        self.acls = {d.path: facl(d) for d in plan(policy)}
        self.files = {"/etc/systemd/system/ds01-docker.socket"}

    def show(self, unit, *props):
        if unit in self.slices:
            return {"LoadState": "loaded", "ActiveState": "active", "MemoryMax": self.slices[unit]}
        if unit.endswith(".slice"):
            return {"LoadState": "not-found", "ActiveState": "inactive"}
        return {"ActiveState": self.units.get(unit, "inactive")}

    def exists(self, path):
        return path in self.files

    def stat(self, path):
        return os.stat_result((0o140660, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    def getfacl(self, path):
        return self.acls.get(path)

    def repquota(self, fs):
        return None

    def members(self, group):
        return self.members_.get(group, [])

    def disk(self, path):
        return 50, 100

    def mtime(self, path):
        return NOW - 300


def results(policy, fake, records):
    out = []
    for check in (doctor.check_services, doctor.check_slices, doctor.check_acls,
                  doctor.check_sockets, doctor.check_disks):
        out += check(policy, fake, NOW)
    return out


def test_acl_entries_parse():
    access, default = doctor.acl_entries(["user::rwx", "group::r-x", "group:ds01-student:r-x  #effective:r-x",
                                          "mask::rwx", "other::---", "default:user::rwx"])
    assert access == {"user:": "rwx", "group:": "r-x", "group:ds01-student": "r-x", "other:": "---"}
    assert default == {"user:": "rwx"}


def test_converged_is_all_ok(policy):
    rs = results(policy, Fake(policy), {})
    assert rs and {r.status for r in rs} == {"OK"}, [r for r in rs if r.status != "OK"]


def test_stopped_timer_is_named(policy):
    fake = Fake(policy)
    fake.units["ds01-gpu-reconcile.timer"] = "inactive"
    bad = [r for r in results(policy, fake, {}) if r.status != "OK"]
    assert len(bad) == 1 and "ds01-gpu-reconcile.timer inactive" in bad[0].detail
    assert "systemctl start ds01-gpu-reconcile.timer" in bad[0].fix


def test_changed_acl_is_named(policy):
    fake = Fake(policy)
    d = plan(policy)[0]
    fake.acls[d.path] = [line.replace("group:ds01-student:r-x", "group:ds01-student:rwx")
                         for line in fake.acls[d.path]]
    bad = [r for r in results(policy, fake, {}) if r.status != "OK"]
    assert bad and all(d.path in r.detail for r in bad)
    assert "group:ds01-student=rwx (policy r-x)" in bad[0].detail


def test_removed_slice_is_named(policy):
    fake = Fake(policy)
    del fake.slices[user_slice("student", "lt.student")]
    bad = [r for r in results(policy, fake, {}) if r.status != "OK"]
    assert len(bad) == 1 and user_slice("student", "lt.student") in bad[0].detail
    assert "deploys/slices.py" in bad[0].fix


def test_jobs_failed_missed_and_fresh(policy, tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    (etc / "cron.d").mkdir(parents=True)
    for key, _, _ in schedule.declared(policy):
        if key != schedule.RECONCILER[0]:
            (etc / Path(cron_file(key)).relative_to("/etc")).write_text(f"x ds01 job run {key} -- y\n")
    real = schedule.entries
    monkeypatch.setattr(schedule, "entries", lambda p, now, rec: real(
        p, now, rec, etc, timer=lambda unit: (True, now + 30)))
    records = {"users_sync": {"key": "users_sync", "started": NOW - 60, "finished": NOW - 59,
                              "exit_code": 0, "result": "ok", "last_success": NOW - 59},
               "backup": {"key": "backup", "started": NOW - 99, "finished": NOW - 98,
                          "exit_code": 1, "result": "failed", "last_success": None},
               "gpu_reconcile": {"key": "gpu_reconcile", "started": NOW - 30, "finished": NOW - 29,
                                 "exit_code": 0, "result": "ok", "last_success": NOW - 29}}
    fake = Fake(policy)
    by = {r.check: r for r in doctor.check_jobs(policy, fake, NOW, records)}
    assert by["job backup"].status == "FAIL" and "ds01 job run backup --" in by["job backup"].fix
    assert by["job users_sync"].status == "OK" and by["job gpu_reconcile"].status == "OK"
    assert by["job users_report"].status == "OK"  # installed 5 minutes ago, weekly: not due
    fake.mtime = lambda path: NOW - 3600  # installed an hour ago: admin_guard (*/5) missed runs
    by = {r.check: r for r in doctor.check_jobs(policy, fake, NOW, records)}
    assert by["job admin_guard"].status == "WARN" and "cron" in by["job admin_guard"].fix
    assert doctor.worst(list(by.values())) == 2


def test_backup_freshness(policy):
    fresh = {"backup": {"last_success": NOW - 3600, "files": 10}}
    assert [r.status for r in doctor.check_backup(policy, None, NOW, fresh)] == ["OK"]
    old = {"backup": {"last_success": NOW - 3 * 86400}, "drill": {"last_result": "failed"}}
    assert [r.status for r in doctor.check_backup(policy, None, NOW, old)] == ["FAIL", "FAIL"]
    none = policy.model_copy(update={"backup": None})
    assert doctor.check_backup(none, None, NOW, {})[0].status == "WARN"


def test_render_and_exit_code():
    rs = [doctor.Result("a", "OK", "fine"), doctor.Result("b", "WARN", "meh", "do x")]
    text = doctor.render(rs)
    assert "fix: do x" in text and text.endswith("1 OK, 1 WARN, 0 FAIL")
    assert doctor.worst(rs) == 1 and doctor.worst([]) == 0
    assert "fine" not in doctor.render(rs, quiet=True)
