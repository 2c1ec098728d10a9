"""Backups on the converged VM: a user's files backed up, deleted and changed,
restored by the user through the root helper and compared byte for byte; the
second backup is incremental; the restore drill; excludes; the repository is
never initialised twice. Times and sizes are printed (pytest -s).

    DS01_VM=h12 python3 -m pytest -s tests/infra/test_backup.py
"""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import REPO, as_login

from ds01.config import load_policy

pytestmark = pytest.mark.vm

POLICY = load_policy(os.environ.get("DS01_POLICY", REPO / "tests/vm/policy.yaml"))
USER, OTHER = "lt.student", "lt.student2"
HOME = f"{POLICY.identity.home.root}/{USER}"
RESTIC = (f"RESTIC_REPOSITORY={POLICY.backup.repository} "
          f"RESTIC_PASSWORD_FILE={POLICY.backup.password_file} restic")  # fmt: skip


def ok(host, cmd: str) -> str:
    r = host.run(cmd)
    assert r.rc == 0, f"{cmd}: rc {r.rc}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def status(host) -> dict:
    return json.loads(ok(host, "cat /var/lib/ds01/backup/status.json"))


def timed_backup(host) -> tuple[float, dict]:
    t0 = time.time()
    ok(host, "ds01 job run backup -- ds01 backup run")
    return time.time() - t0, status(host)["backup"]


@pytest.fixture(scope="module")
def backed_up(vm):
    """The user's test tree, a copy of it kept by root, and one backup run."""
    as_login(vm, USER, "rm -rf ~/bk-test ~/.cache/bk-junk ~/bk-venv")
    r = as_login(vm, USER, "mkdir -p ~/bk-test/sub ~/.cache ~/bk-venv && "
                 "head -c 2000000 /dev/urandom > ~/bk-test/data.bin && "
                 "echo 'first notes' > ~/bk-test/notes.txt && "
                 "echo deep > ~/bk-test/sub/deep.txt && "
                 "head -c 100000 /dev/urandom > ~/.cache/bk-junk && "
                 "touch ~/bk-venv/.ds01-nobackup && head -c 100000 /dev/urandom > ~/bk-venv/lib.so")
    assert r.rc == 0, r.stderr
    ok(vm, f"rm -rf /root/bk-orig && cp -a {HOME}/bk-test /root/bk-orig")
    seconds, first = timed_backup(vm)
    print(f"\nfirst backup: {seconds:.1f}s wall, {first['files']} files, {first['bytes']} bytes, "
          f"{first['data_added']} bytes added to the repository")
    return first


def test_backup_recorded(vm, backed_up):
    assert backed_up["last_result"] == "ok" and backed_up["files"] > 0
    job = json.loads(ok(vm, "cat /var/lib/ds01/jobs/backup.json"))
    assert job["result"] == "ok" and job["last_success"]
    assert "backup" in ok(vm, "tail -n 50 /var/log/ds01/events.jsonl")


def test_snapshot_contents_and_excludes(vm, backed_up):
    paths = set(ok(vm, f"{RESTIC} ls latest").split())
    assert f"{HOME}/bk-test/data.bin" in paths and "/etc/ds01/resource-allocation.yaml" in paths
    assert f"{HOME}/.cache/bk-junk" not in paths  # .cache
    assert f"{HOME}/bk-venv/lib.so" not in paths  # marked .ds01-nobackup
    assert not any(p.startswith(POLICY.backup.repository) for p in paths)
    scratch = next(a.path for a in POLICY.storage.areas.values() if a.kind == "scratch")
    assert not any(p.startswith(scratch + "/") for p in paths)
    if ok(vm, f"test -e {POLICY.gpu.state_dir}/gpu/allocator.sqlite3 && echo yes || true").strip():
        assert "/var/lib/ds01/backup/staging/allocator.sqlite3" in paths  # the consistent copy
        assert f"{POLICY.gpu.state_dir}/gpu/allocator.sqlite3" not in paths  # never the live file


def test_user_restores_deleted_and_changed_files(vm, backed_up):
    as_login(vm, USER, "rm ~/bk-test/notes.txt ~/bk-test/sub/deep.txt && "
             "head -c 1000 /dev/urandom > ~/bk-test/data.bin")
    t0 = time.time()
    r = as_login(vm, USER, "cd ~ && ds01 backup restore bk-test")
    print(f"\nuser restore (2 files back, 1 kept): {time.time() - t0:.1f}s")
    assert r.rc == 0, r.stderr
    assert "kept 1 existing file" in r.stdout and "data.bin" in r.stdout
    assert vm.run(f"cmp /root/bk-orig/notes.txt {HOME}/bk-test/notes.txt").rc == 0
    assert vm.run(f"cmp /root/bk-orig/sub/deep.txt {HOME}/bk-test/sub/deep.txt").rc == 0
    assert vm.run(f"cmp -s /root/bk-orig/data.bin {HOME}/bk-test/data.bin").rc != 0  # kept
    t0 = time.time()
    r = as_login(vm, USER, "ds01 backup restore --overwrite ~/bk-test/data.bin")
    print(f"user restore --overwrite of 2 MB: {time.time() - t0:.1f}s")
    assert r.rc == 0, r.stderr
    assert ok(vm, f"diff -r /root/bk-orig {HOME}/bk-test && echo same").strip() == "same"
    owners = ok(vm, f"find {HOME}/bk-test -printf '%u\\n' | sort -u").split()
    assert owners == [USER]


@pytest.mark.parametrize("path", [f"{POLICY.identity.home.root}/{OTHER}/.profile",
                                  f"../{OTHER}/.profile", "/etc/shadow", "bk-escape/shadow"])
def test_user_restore_refused_outside_own_home(vm, backed_up, path):
    as_login(vm, USER, "ln -sfn /etc ~/bk-escape")
    r = as_login(vm, USER, f"cd ~ && ds01 backup restore {path}")
    assert r.rc != 0 and "ds01 backup restore:" in r.stderr, (r.stdout, r.stderr)


def test_helper_is_the_only_sudo_rule_and_needs_sudo(vm, backed_up):
    r = as_login(vm, USER, "sudo -n -l")
    assert "ds01-restore-own" in r.stdout and "(ALL" not in r.stdout.replace("(root)", "")
    r = vm.run("/opt/ds01/venv/bin/ds01-restore-own /home")  # root without sudo: refused
    assert r.rc == 2


def test_second_backup_is_incremental(vm, backed_up):
    as_login(vm, USER, "head -c 300000 /dev/urandom > ~/bk-test/new.bin")
    seconds, second = timed_backup(vm)
    print(f"\nsecond backup: {seconds:.1f}s wall, {second['files_new']} new and "
          f"{second['files_changed']} changed files, {second['data_added']} bytes added "
          f"(first: {backed_up['data_added']})")
    assert second["snapshot_id"] != backed_up["snapshot_id"]
    assert 300000 <= second["data_added"] < backed_up["data_added"] / 2


def test_restore_drill(vm, backed_up):
    t0 = time.time()
    ok(vm, "ds01 job run restore_drill -- ds01 backup drill")
    drill = status(vm)["drill"]
    print(f"\nrestore drill: {drill['files']} files, {drill['bytes']} bytes in "
          f"{time.time() - t0:.1f}s wall")
    assert drill["last_result"] == "ok" and drill["files"] == POLICY.backup.drill_sample
    assert json.loads(ok(vm, "cat /var/lib/ds01/jobs/restore_drill.json"))["result"] == "ok"
    assert '"kind":"restore_drill"' in ok(vm, "tail -n 20 /var/log/ds01/events.jsonl")


def test_check_and_no_reinitialisation(vm, backed_up):
    before = ok(vm, f"{RESTIC} cat config")
    ok(vm, "ds01 backup init")
    assert ok(vm, f"{RESTIC} cat config") == before
    ok(vm, "ds01 job run backup_check -- ds01 backup check")
    assert status(vm)["check"]["last_result"] == "ok"
    assert ok(vm, "stat -c %a /etc/ds01/backup/password").strip() == "600"


def test_runs_never_overlap(vm, backed_up):
    r = vm.run("flock /run/lock/ds01-backup.lock ds01 backup run")
    assert r.rc == 75 and "holds" in r.stderr
