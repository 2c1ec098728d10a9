"""The exporter's collectors against a recorded cgroup tree, an allocator
created in tmp (its real status snapshot), job records and repquota output."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ds01 import jobs
from ds01.config import load_policy
from ds01.gpu.results import ReaperState
from ds01.monitoring import collectors
from ds01.monitoring.exporter import Ds01Collector, registry_for, storage_uses
from ds01.storage.quota import parse_repquota_csv

HERE = Path(__file__).parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests/unit/gpu"))
from gpu_helpers import T0, Clock, make_allocator  # noqa: E402

CGROUP = str(HERE / "cgroup")
STUDENT = "123456@example.lan"
RESEARCHER = "j.doe@example.lan"


@pytest.fixture(scope="module")
def policy():
    return load_policy(REPO / "config/resource-allocation.yaml")


def samples(collector) -> dict[tuple[str, frozenset], float]:
    """Scrape ``collector`` through the real exposition format and parse it back."""
    text = generate_latest(registry_for(collector)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found, name, **labels) -> float:
    return found[(name, frozenset(labels.items()))]


def names(found) -> set[str]:
    return {n for n, _ in found}


def test_user_slices_are_found_with_their_role(policy):
    got = list(collectors.user_slices(list(policy.roles), CGROUP))
    assert [(r, u) for r, u, _ in got] == [
        ("student", STUDENT), ("student", "lt.student2"), ("researcher", RESEARCHER),
    ]  # fmt: skip


def test_read_slice_parses_every_file():
    path = f"{CGROUP}/ds01.slice/ds01-student.slice/ds01-student-123456\\x40example.lan.slice"
    s = collectors.read_slice(path)
    assert s.cpu_seconds == 5.25
    assert (s.memory, s.memory_peak) == (1610612736, 2147483648)
    assert s.memory_events == {"high": 3, "max": 2, "oom_kill": 2}
    assert (s.io_read, s.io_write) == (1048576 + 4096, 524288)  # summed over devices
    assert s.pressure["memory"] == (1.2, 0.6)
    assert s.pressure["cpu"] == (2.5, 0.0)
    assert s.tasks == 31
    assert s.containers == 2


def test_a_missing_slice_reads_as_absent_not_zero(tmp_path):
    s = collectors.read_slice(str(tmp_path / "gone.slice"))
    assert (s.cpu_seconds, s.memory, s.tasks, s.containers, s.pressure) == (None, None, None, 0, {})


def test_per_user_and_per_role_metrics(policy, tmp_path):
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot=str(tmp_path / "none"),
                                  jobs_dir=tmp_path))  # fmt: skip
    assert value(found, "ds01_user_cpu_seconds_total", user=STUDENT, role="student") == 5.25
    assert value(found, "ds01_user_memory_events_total", user=STUDENT, role="student", event="oom_kill") == 2
    assert value(found, "ds01_user_pressure_seconds_total", user=STUDENT, role="student", resource="memory", kind="full") == 0.6
    assert value(found, "ds01_user_containers", user=STUDENT, role="student") == 2
    assert value(found, "ds01_user_containers", user=RESEARCHER, role="researcher") == 1
    assert value(found, "ds01_user_containers", user="lt.student2", role="student") == 0
    assert value(found, "ds01_user_io_bytes_total", user=RESEARCHER, role="researcher", direction="write") == 4096
    assert value(found, "ds01_role_memory_bytes", role="student") == 2 << 30
    assert value(found, "ds01_role_tasks", role="researcher") == 20
    # no PSI files (pressure accounting off): no series rather than zeros
    assert not any(n == "ds01_user_pressure_seconds_total" and ("user", "lt.student2") in lab
                   for n, lab in found)  # fmt: skip
    assert value(found, "ds01_gpu_snapshot_up") == 0
    assert value(found, "ds01_exporter_collector_errors", collector="slices") == 0


def test_gpu_units_leases_and_queue_from_the_allocator_snapshot(policy, tmp_path):
    clock = Clock()
    alloc = make_allocator(policy, tmp_path / "gpu/allocator.sqlite3", clock)
    try:
        alloc.assign("train-1", STUDENT, "student", kind="1g.5gb")
        alloc.allocate("train-1")
        alloc.assign("big", RESEARCHER, "researcher", count=2, kind="gpu")
        alloc.allocate("big")
        clock.advance(600)
        # both whole GPUs are taken: c.rivera waits for one
        alloc.assign("other", "w.prof", "faculty", kind="3g.20gb")
        alloc.allocate("other")
        alloc.enqueue("c.rivera", "researcher", "gpu")
        clock.advance(120)
        alloc.enqueue(STUDENT, "student", "2g.10gb")
        alloc.update_reaper("train-1", lambda s: (ReaperState(idle_checks=2, idle_since=T0 + 300), None))
    finally:
        alloc.close()
    snapshot = str(tmp_path / "gpu/status.json")
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot=snapshot, jobs_dir=tmp_path,
                                  clock=lambda: T0 + 900))  # fmt: skip
    assert value(found, "ds01_gpu_snapshot_up") == 1
    assert value(found, "ds01_gpu_snapshot_age_seconds") == 900 - 720
    assert value(found, "ds01_gpu_leases", user=RESEARCHER, role="researcher") == 2
    assert value(found, "ds01_gpu_held_equivalents", user=RESEARCHER, role="researcher") == 2.0
    weights = {dict(lab)["unit"]: v for (n, lab), v in found.items() if n == "ds01_gpu_unit_weight"}
    # a holder outside the recorded slice tree has no role label value
    assert value(found, "ds01_gpu_leases", user="w.prof", role="") == 1
    held = [dict(lab) for n, lab in found if n == "ds01_gpu_unit_holder"]
    assert sorted((h["user"], h["container"]) for h in held) == sorted(
        [(STUDENT, "train-1"), (RESEARCHER, "big"), (RESEARCHER, "big"), ("w.prof", "other")]
    )
    student_unit = next(h for h in held if h["user"] == STUDENT)
    assert student_unit["kind"] == "1g.5gb" and student_unit["role"] == "student"
    assert value(found, "ds01_gpu_held_equivalents", user=STUDENT, role="student") == weights[student_unit["unit"]] < 1
    assert value(found, "ds01_gpu_unit_held_seconds", unit=student_unit["unit"], gpu=student_unit["gpu"],
                 kind="1g.5gb", user=STUDENT) == 900  # fmt: skip
    assert value(found, "ds01_gpu_unit_idle_seconds", unit=student_unit["unit"], gpu=student_unit["gpu"],
                 kind="1g.5gb", user=STUDENT) == 600  # fmt: skip
    assert [n for n, _ in found if n == "ds01_gpu_unit_idle_seconds"] == ["ds01_gpu_unit_idle_seconds"]
    states = [dict(lab)["state"] for n, lab in found if n == "ds01_gpu_unit_state"]
    assert states.count("allocated") == 4 and "free" in states
    assert value(found, "ds01_gpu_queue_length_total") == 2
    assert value(found, "ds01_gpu_queue_length", kind="gpu") == 1
    assert value(found, "ds01_gpu_queue_oldest_wait_seconds", kind="gpu") == 900 - 600
    assert value(found, "ds01_gpu_queue_entries", user="c.rivera", role="researcher") == 1
    # the allocator's decisions, timed: three assigns, three allocates, two enqueues
    assert value(found, "ds01_gpu_decision_seconds_count", op="assign") == 3
    assert value(found, "ds01_gpu_decision_seconds_bucket", op="allocate", le="+Inf") == 3
    assert 0 < value(found, "ds01_gpu_decision_seconds_sum", op="assign") < 5


def test_no_metric_label_is_one_prometheus_sets_on_the_target(policy, tmp_path):
    """``job`` and ``instance`` are the target's labels: an exported one is renamed
    ``exported_job`` on ingestion, and a rule selecting on it matches nothing."""
    jobs.record("users_sync", T0, T0 + 1, 1, tmp_path)
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot=str(tmp_path / "none"),
                                  jobs_dir=tmp_path, clock=lambda: T0 + 900))  # fmt: skip
    labels = {k for _, lab in found for k, _ in lab}
    assert "key" in labels and not labels & {"job", "instance"}


def test_unit_figures_come_from_the_reconcilers_readings_file(policy, tmp_path):
    """The exporter opens no GPU device: it serves the readings the reconciler
    (root) leaves beside the snapshot; a unit of an unread GPU is an error, a
    unit newer than the readings has no figures yet."""
    units = [{"uuid": "GPU-a", "gpu": 0, "kind": "gpu", "weight": 1.0, "state": "free"},
             {"uuid": "MIG-b", "gpu": 1, "kind": "1g.5gb", "weight": 0.1, "state": "free"},
             {"uuid": "GPU-c", "gpu": 2, "kind": "gpu", "weight": 1.0, "state": "free"},
             {"uuid": "GPU-new", "gpu": 3, "kind": "gpu", "weight": 1.0, "state": "free"}]  # fmt: skip
    (tmp_path / "status.json").write_text(json.dumps({"at": T0, "units": units, "queue": []}))
    (tmp_path / "readings.json").write_text(json.dumps({
        "at": T0 + 840, "backend": "nvml", "unread_gpus": [2],
        "units": {"GPU-a": {"utilization": 87, "memory_used": 30 << 30},
                  "MIG-b": {"utilization": None, "memory_used": 1 << 30}}}))  # fmt: skip
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot=str(tmp_path / "status.json"),
                                  jobs_dir=tmp_path, clock=lambda: T0 + 900))  # fmt: skip
    util = {dict(lab)["unit"]: v for (n, lab), v in found.items() if n == "ds01_gpu_unit_utilization_percent"}
    mem = {dict(lab)["unit"]: v for (n, lab), v in found.items() if n == "ds01_gpu_unit_memory_used_bytes"}
    assert util == {"GPU-a": 87} and mem == {"GPU-a": 30 << 30, "MIG-b": 1 << 30}
    assert value(found, "ds01_gpu_nvml_errors") == 1  # GPU-c: its GPU was not readable
    assert value(found, "ds01_gpu_readings_age_seconds") == 60
    (tmp_path / "readings.json").unlink()  # before the first pass: no figures, no errors
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot=str(tmp_path / "status.json"),
                                  jobs_dir=tmp_path, clock=lambda: T0 + 900))  # fmt: skip
    assert not [n for n, _ in found if n.startswith(("ds01_gpu_unit_util", "ds01_gpu_nvml", "ds01_gpu_readings"))]


def test_nvml_readings_and_errors():
    units = [{"uuid": "GPU-a", "gpu": 0, "kind": "gpu"}, {"uuid": "MIG-b", "gpu": 1, "kind": "1g.5gb"},
             {"uuid": "GPU-c", "gpu": 2, "kind": "gpu"}]  # fmt: skip

    def read(uuid):
        if uuid == "GPU-c":
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return (None, 1 << 30) if uuid.startswith("MIG") else (87.0, 30 << 30)

    fams = {f.name: f for f in collectors.nvml_families(units, read)}
    util = {s.labels["unit"]: s.value for s in fams["ds01_gpu_unit_utilization_percent"].samples}
    assert util == {"GPU-a": 87.0}  # MIG: no utilisation per instance; GPU-c: failed
    assert [s.value for s in fams["ds01_gpu_nvml_errors"].samples] == [1]
    assert collectors.nvml_families(units, None) == []  # no NVML: no series at all


def test_job_records_written_by_ds01_job(tmp_path):
    jobs.record("users_sync", 100.0, 103.5, 0, tmp_path)
    jobs.record("users_sync", 200.0, 201.0, 1, tmp_path)  # refused: last success kept
    jobs.record("image_prune", 50.0, 52.0, 0, tmp_path)
    jobs.record("scratch_purge", 10.0, 11.0, 137, tmp_path)  # killed, never succeeded
    fams = {f.name: f for f in collectors.job_families(jobs.read_all(tmp_path))}

    def by_job(name):
        return {s.labels["key"]: s.value for s in fams[name].samples}

    assert by_job("ds01_job_last_failed") == {"image_prune": 0, "scratch_purge": 1, "users_sync": 1}
    assert by_job("ds01_job_last_success_timestamp_seconds") == {"image_prune": 52.0, "users_sync": 103.5}
    assert by_job("ds01_job_last_run_timestamp_seconds")["users_sync"] == 201.0
    assert by_job("ds01_job_last_exit_code")["scratch_purge"] == 137
    assert by_job("ds01_job_last_duration_seconds")["users_sync"] == 1.0


def test_storage_from_repquota(policy):
    csv = (
        "User,BlockStatus,FileStatus,BlockUsed,BlockSoftLimit,BlockHardLimit,BlockGrace,"
        "FileUsed,FileSoftLimit,FileHardLimit,FileGrace\n"
        "root,ok,ok,20,0,0,,2,0,0,\n"
        "123456@example.lan,ok,ok,1048576,0,52428800,,1200,0,0,\n"
        "j.doe@example.lan,ok,ok,4096,0,0,,3,0,0,\n"
        "#4242,ok,ok,8,0,0,,1,0,0,\n"
    )
    uses = storage_uses(policy, parse_repquota_csv(csv))
    area = next(n for n, a in policy.storage.areas.items() if a.quota)
    assert [(u.user, u.area, u.used_bytes, u.quota_bytes, u.files) for u in uses] == [
        (STUDENT, area, 1 << 30, 50 << 30, 1200), (RESEARCHER, area, 4 << 20, 0, 3),
    ]  # fmt: skip
    fams = {f.name: f for f in collectors.storage_families(uses)}
    assert [s.labels["user"] for s in fams["ds01_storage_quota_bytes"].samples] == [STUDENT]


def test_a_broken_source_does_not_blank_the_scrape(policy, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(collectors, "job_families", broken)
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot=str(tmp_path / "x"),
                                  jobs_dir=tmp_path))  # fmt: skip
    assert value(found, "ds01_exporter_collector_errors", collector="jobs") == 1
    assert value(found, "ds01_user_tasks", user=STUDENT, role="student") == 31


# -- Slurm, where the policy has a cluster -------------------------------------

QUEUE_FIX = REPO / "tests/unit/cluster/fixtures/queue"


def _slurm(state):
    return Ds01Collector(state[0], cgroup_root=CGROUP, snapshot="/nonexistent", jobs_dir="/nonexistent",
                         slurm=state[1], clock=lambda: T0)  # fmt: skip


def test_slurm_metrics_from_the_vms_squeue_and_sinfo(policy):
    from ds01.cluster import queue

    read = lambda: queue.read(lambda argv: (QUEUE_FIX / f"{argv[0]}-busy.txt").read_text(), lambda: T0 - 12)  # noqa: E731
    found = samples(_slurm((policy, read)))
    assert value(found, "ds01_slurm_up") == 1
    assert value(found, "ds01_slurm_read_age_seconds") == 12
    assert value(found, "ds01_slurm_jobs", state="RUNNING", partition="gpu", qos="ds01-uid1002") == 1
    assert value(found, "ds01_slurm_jobs", state="PENDING", partition="gpu", qos="ds01-student") == 1
    assert value(found, "ds01_slurm_pending_jobs", partition="gpu", reason="QOSMaxCpuPerUserLimit") == 1
    assert value(found, "ds01_slurm_user_jobs", user="lt.student2", account="ds01-student",
                 state="PENDING") == 1  # fmt: skip
    assert value(found, "ds01_slurm_user_gpus", user="lt.student2", type="2g.10gb") == 3
    assert value(found, "ds01_slurm_user_billing", user="lt.student2") == 6  # running only
    assert value(found, "ds01_slurm_gres", partition="gpu", type="2g.10gb", kind="total") == 4
    assert value(found, "ds01_slurm_gres", partition="gpu", type="2g.10gb", kind="allocated") == 3
    assert value(found, "ds01_slurm_nodes", partition="gpu", state="allocated") == 1
    assert value(found, "ds01_exporter_collector_errors", collector="slurm") == 0
    labels = {k for n, lab in found if n.startswith("ds01_slurm") for k, _ in lab}
    assert labels and not labels & {"job", "instance"}


def test_slurm_down_is_a_gauge_and_the_scrape_goes_on(policy):
    from ds01.cluster.queue import SlurmState

    found = samples(_slurm((policy, lambda: SlurmState(error="squeue: no answer in 5s"))))
    assert value(found, "ds01_slurm_up") == 0
    assert not {n for n in names(found) if n.startswith("ds01_slurm")} - {"ds01_slurm_up"}
    assert value(found, "ds01_exporter_collector_errors", collector="slurm") == 0
    assert "ds01_gpu_snapshot_up" in names(found)  # the allocator's side is still served


def test_a_single_server_exports_no_slurm_and_runs_no_squeue(policy, monkeypatch):
    import subprocess

    def no_subprocess(*a, **kw):
        raise AssertionError("squeue ran on a single server")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    found = samples(Ds01Collector(policy, cgroup_root=CGROUP, snapshot="/nonexistent",
                                  jobs_dir="/nonexistent", clock=lambda: T0))  # fmt: skip
    assert not [n for n in names(found) if n.startswith("ds01_slurm")]
    assert ("ds01_exporter_collector_errors", frozenset({("collector", "slurm")})) not in found


def test_the_exporter_polls_slurm_so_a_scrape_never_waits_for_it(policy):
    from ds01.cluster import queue

    calls, slow = [], threading.Event()

    def read():
        calls.append(1)
        if len(calls) > 1:
            slow.wait(30)  # slurmctld stops answering after the first reading
        return queue.SlurmState(at=T0 - len(calls))

    poller = queue.Poller(read, interval=0.01).start()
    try:
        collector = _slurm((policy, poller))
        for _ in range(3):
            t = time.monotonic()
            found = samples(collector)
            assert time.monotonic() - t < 1, "the scrape waited for Slurm"
            assert value(found, "ds01_slurm_up") == 1 and value(found, "ds01_slurm_read_age_seconds") == 1
        assert len(calls) <= 2  # the poller's readings only: no scrape read Slurm
    finally:
        slow.set()
        poller.stop()


def test_a_reading_that_raises_is_an_error_and_polling_goes_on(policy):
    from ds01.cluster import queue

    calls, go = [], threading.Event()

    def read():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("squeue printed something new")
        go.wait(30)
        return queue.SlurmState(at=T0)

    poller = queue.Poller(read, interval=0.01).start()
    try:
        first = poller()
        assert not first.up and "squeue printed something new" in first.error and first.at
        go.set()
        for _ in range(200):
            if poller().up:
                break
            time.sleep(0.01)
        assert poller().up, "polling stopped after a reading raised"
    finally:
        go.set()
        poller.stop()
