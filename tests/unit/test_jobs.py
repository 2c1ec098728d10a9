"""ds01 job run: the outcome of every scheduled job, kept where the tools read it."""

import json
import os
import signal
import sys

import pytest

from ds01 import jobs
from ds01.cli import main


def test_success_then_failure_keeps_the_last_success(tmp_path):
    assert jobs.run("users_sync", [sys.executable, "-c", "pass"], tmp_path) == 0
    ok = jobs.read("users_sync", tmp_path)
    assert ok["result"] == "ok" and ok["exit_code"] == 0
    assert ok["last_success"] == ok["finished"] >= ok["started"]
    assert jobs.run("users_sync", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path) == 3
    failed = jobs.read("users_sync", tmp_path)
    assert failed["result"] == "failed" and failed["exit_code"] == 3
    assert failed["last_success"] == ok["finished"]
    assert jobs.read_all(tmp_path) == {"users_sync": failed}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_signal_is_128_plus_n_and_a_missing_command_127(tmp_path):
    code = jobs.run("scratch_purge", [sys.executable, "-c",
                    f"import os; os.kill(os.getpid(), {int(signal.SIGTERM)})"], tmp_path)  # fmt: skip
    assert code == 128 + signal.SIGTERM
    assert jobs.run("image_prune", [str(tmp_path / "nothing-here")], tmp_path) == 127
    assert jobs.read("image_prune", tmp_path)["last_success"] is None


def test_keys_are_policy_keys_and_junk_is_ignored(tmp_path):
    with pytest.raises(ValueError, match="schedules key"):
        jobs.record("../etc/passwd", 0, 1, 0, tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"key": "someone_else"}))
    assert jobs.read_all(tmp_path) == {}
    assert jobs.read_all(tmp_path / "absent") == {}


def test_cli_passes_the_exit_code_through(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "JOBS_DIR", tmp_path)
    monkeypatch.setattr(jobs.run, "__defaults__", (tmp_path,))
    assert main(["job", "run", "admin_guard", "--", sys.executable, "-c", "raise SystemExit(4)"]) == 4
    assert jobs.read("admin_guard", tmp_path)["exit_code"] == 4
    assert main(["job", "run", "admin_guard"]) == 2
