"""ds01.ops.schedule: every policy schedule is a job, installed state read
from the cron files, next runs from croniter, results from the job records."""

import datetime
from pathlib import Path

import pytest

from ds01 import jobs
from ds01.config import Schedules, load_policy
from ds01.names import cron_file
from ds01.ops import schedule

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def policy():
    return load_policy(REPO / "tests/vm/policy.yaml")


def test_every_policy_schedule_is_a_job():
    assert set(Schedules.model_fields) == set(schedule.CRON_JOBS)


def test_declared_includes_backups_only_with_a_backup_section(policy):
    keys = [k for k, _, _ in schedule.declared(policy)]
    assert {"backup", "restore_drill", "gpu_reconcile", "users_sync"} <= set(keys)
    keys = [k for k, _, _ in schedule.declared(policy.model_copy(update={"backup": None}))]
    assert "backup" not in keys and "backup_check" not in keys


@pytest.mark.parametrize("expr, now, expected", [
    ("*/15 * * * *", "2026-12-02 16:07:30", "2026-12-02 16:15"),
    ("0 5 1 * *", "2026-12-02 16:00", "2027-01-01 05:00"),
    ("0 6 * * 1", "2026-12-02 16:00", "2026-12-07 06:00"),  # Wednesday -> Monday
    ("30 3 * * *", "2026-12-02 03:30", "2026-12-03 03:30"),  # strictly after now
])
def test_next_run(expr, now, expected):
    ts = datetime.datetime.fromisoformat(now).timestamp()
    assert schedule.next_run(expr, ts) == datetime.datetime.fromisoformat(expected).timestamp()


def test_entries_installed_results_and_failures(policy, tmp_path):
    etc = tmp_path / "etc"
    (etc / "cron.d").mkdir(parents=True)
    for key in ("users_sync", "backup"):
        path = etc / Path(cron_file(key)).relative_to("/etc")
        path.write_text(f"*/15 * * * * root /usr/local/bin/ds01 job run {key} -- ds01 x\n")
    # a cron file from before `ds01 job run`: not installed as declared
    (etc / Path(cron_file("admin_guard")).relative_to("/etc")).write_text("* * * * * root ds01 admin-guard\n")
    jobs_dir = tmp_path / "jobs"
    jobs.record("users_sync", 100.0, 101.0, 0, jobs_dir)
    jobs.record("backup", 100.0, 102.0, 1, jobs_dir)
    jobs.record("gpu_reconcile", 100.0, 103.0, 0, jobs_dir)
    rows = {e.key: e for e in schedule.entries(policy, 1000.0, jobs.read_all(jobs_dir), etc,
                                               timer=lambda unit: (True, 1060.0))}
    assert rows["users_sync"].installed and rows["users_sync"].result == "ok"
    assert rows["users_sync"].next_run > 1000.0 and rows["users_sync"].last_run == 101.0
    assert rows["backup"].result == "failed"
    assert not rows["admin_guard"].installed and rows["admin_guard"].next_run is None
    assert rows["users_report"].result == "never"
    assert rows["gpu_reconcile"].installed and rows["gpu_reconcile"].next_run == 1060.0
    assert rows["gpu_reconcile"].policy_key == "gpu.reconcile_interval"
    text = schedule.render(list(rows.values()))
    assert "NOT INSTALLED (/etc/cron.d/ds01-admin-guard)" in text
    assert "schedules.backup" in text and "failed" in text
