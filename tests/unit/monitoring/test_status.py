"""``ds01 status``: the data and the screen, from the recorded cgroup tree, a
real allocator snapshot and job records."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from ds01 import jobs
from ds01.config import load_policy
from ds01.gpu.results import ReaperState
from ds01.monitoring import status
from ds01.storage.quota import Usage

HERE = Path(__file__).parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests/unit/gpu"))
from gpu_helpers import T0, Clock, make_allocator  # noqa: E402

CGROUP = str(HERE / "cgroup")
STUDENT = "123456@example.lan"


@pytest.fixture(scope="module")
def policy():
    return load_policy(REPO / "config/resource-allocation.yaml")


@pytest.fixture
def snapshot(policy, tmp_path):
    clock = Clock()
    alloc = make_allocator(policy, tmp_path / "gpu/allocator.sqlite3", clock)
    alloc.assign("train-1", STUDENT, "student", kind="1g.5gb")
    alloc.allocate("train-1")
    alloc.assign("big", "j.doe@example.lan", "researcher", count=2, kind="gpu")
    alloc.allocate("big")
    clock.advance(60)
    alloc.enqueue("c.rivera", "researcher", "gpu")
    # the reaper has seen the student's container idle since T0 + 600
    alloc.update_reaper("train-1", lambda s: (ReaperState(idle_checks=3, idle_since=T0 + 600,
                                                          last_check=T0 + 60), None))  # fmt: skip
    alloc.close()
    return json.loads((tmp_path / "gpu/status.json").read_text())


def test_a_user_sees_units_queue_and_their_own_use(policy, snapshot, tmp_path):
    quota = Usage(name=STUDENT, used_kib=1 << 20, soft_kib=0, hard_kib=50 << 20, files=1200)
    data = status.gather(policy, STUDENT, "student", snapshot=snapshot, quota=quota,
                         cgroup_root=CGROUP, jobs_dir=tmp_path, now=T0 + 3660)  # fmt: skip
    held = [u for u in data["gpu"]["units"] if u["user"] == STUDENT]
    assert len(held) == 1 and held[0]["held_for"] == 3660 and held[0]["container"] == "train-1"
    assert data["gpu"]["free"] == len(data["gpu"]["units"]) - 3
    assert data["queue"] == [{"position": 1, "user": "c.rivera", "kind": "gpu", "state": "waiting", "waiting": 3600}]
    mine = data["mine"]
    assert (mine["containers"], mine["tasks"], mine["oom_kills"]) == (2, 31, 2)
    assert mine["gpu_containers"] == ["train-1"] and 0 < mine["gpu_held"] < 1
    assert mine["limits"]["gpu_quota"] == policy.roles["student"].gpu.quota
    assert mine["storage"] == {"used": 1 << 30, "quota": 50 << 30, "files": 1200}
    assert "users" not in data and "jobs" not in data and "alerts" not in data  # admins only
    screen = status.text(data)
    assert f"{STUDENT} (train-1)" in screen and "held 1h01m  idle 51m" in screen
    assert held[0]["idle_for"] == 3660 - 600
    assert all(u["idle_for"] is None for u in data["gpu"]["units"] if u["container"] != "train-1")
    assert "c.rivera" in screen and "for 1h00m" in screen
    assert "OOM kills   2" in screen and "containers  2 of" in screen
    assert len(screen.splitlines()) <= 40  # one terminal screen


def test_an_admin_also_sees_users_jobs_and_alerts(policy, snapshot, tmp_path):
    jobs.record("users_sync", T0, T0 + 3, 1, tmp_path)
    alerts = [{"alert": "Ds01JobFailed", "severity": "warning", "summary": "scheduled job users_sync failed", "since": None}]
    data = status.gather(policy, "lt.admin", "admin", snapshot=snapshot, admin=True, cgroup_root=CGROUP,
                         jobs_dir=tmp_path, alerts=lambda: alerts, now=T0 + 100)  # fmt: skip
    assert [u["user"] for u in data["users"]] == [STUDENT, "lt.student2", "j.doe@example.lan"]
    assert data["jobs"][0]["job"] == "users_sync" and data["jobs"][0]["result"] == "failed"
    screen = status.text(data)
    assert "Alerts firing: 1" in screen and "Ds01JobFailed" in screen
    assert "users_sync           failed  exit 1    last success never" in screen
    unreachable = status.gather(policy, "lt.admin", "admin", snapshot=None, admin=True,
                                cgroup_root=CGROUP, jobs_dir=tmp_path)  # fmt: skip
    assert "Prometheus not reachable" in status.text(unreachable)
    assert unreachable["gpu"]["units"] == []


def test_no_role_no_limits(policy):
    data = status.gather(policy, "nobody", None, snapshot=None, cgroup_root=CGROUP)
    assert "mine" not in data and "has no DS01 role" in status.text(data)


# -- Slurm, where the policy has a cluster (fixtures: tests/unit/cluster/test_queue.py)

QUEUE_FIX = REPO / "tests/unit/cluster/fixtures/queue"


def slurm_now():
    from ds01.cluster import queue

    return queue.read(lambda argv: (QUEUE_FIX / f"{argv[0]}-busy.txt").read_text())


def test_a_user_sees_slurms_counts_and_their_own_jobs(policy, snapshot, tmp_path):
    data = status.gather(policy, "lt.student2", "student", snapshot=snapshot, cgroup_root=CGROUP,
                         jobs_dir=tmp_path, slurm=slurm_now, now=T0 + 100)  # fmt: skip
    s = data["slurm"]
    assert (s["up"], s["running"], s["pending"]) == (True, 2, 2)  # everyone's
    assert [j["id"] for j in s["jobs"]] == ["3", "2"]  # theirs only
    assert s["pending_reasons"] == {"QOSMaxCpuPerUserLimit": 1, "Resources": 1}
    screen = status.text(data)
    assert "Slurm: 2 running, 2 pending; GPUs allocated: gpu 1g.5gb 0/3, gpu 2g.10gb 3/4" in screen
    assert re.search(r"\n +3 lt\.student2 +gpu +PENDING +2g\.10gb x1  QOSMaxCpuPerUserLimit", screen)
    assert re.search(r"\n +2 lt\.student2 +gpu +RUNNING +2g\.10gb x3\n", screen + "\n")
    assert "lt.researcher" not in screen


def test_an_admin_sees_every_slurm_job(policy, snapshot, tmp_path):
    data = status.gather(policy, "lt.admin", "admin", snapshot=snapshot, admin=True,
                         cgroup_root=CGROUP, jobs_dir=tmp_path, slurm=slurm_now, now=T0)  # fmt: skip
    assert [j["user"] for j in data["slurm"]["jobs"]] == [
        "lt.student", "lt.student2", "lt.researcher", "lt.student2"]  # fmt: skip
    assert re.search(r"\n +4 lt\.student +gpu +PENDING +any x1  Resources", status.text(data))


def test_slurm_not_answering_is_one_line_and_no_slurm_without_a_cluster(policy, snapshot, tmp_path):
    from ds01.cluster.queue import SlurmState

    down = SlurmState(error="squeue: slurm_load_jobs error: Unable to contact slurm controller")
    data = status.gather(policy, STUDENT, "student", snapshot=snapshot, cgroup_root=CGROUP,
                         jobs_dir=tmp_path, slurm=lambda: down, now=T0)  # fmt: skip
    lines = [line for line in status.text(data).splitlines() if "Slurm" in line or "slurm" in line]
    assert lines == ["Slurm: not reachable (squeue: slurm_load_jobs error: Unable to contact "
                     "slurm controller)"]  # fmt: skip
    plain = status.gather(policy, STUDENT, "student", snapshot=snapshot, cgroup_root=CGROUP,
                          jobs_dir=tmp_path, now=T0)  # fmt: skip
    assert "slurm" not in plain and "Slurm" not in status.text(plain)
