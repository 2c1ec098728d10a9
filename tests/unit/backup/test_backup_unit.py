"""ds01.backup: the restic command lines built from the policy, restic's
--json output read back, the user restore's path checks, and (where restic is
installed: tests/host-packages.txt) a real repository backed up, drilled and
restored."""

import os
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ds01 import events
from ds01.backup import restic, run
from ds01.backup.restore import Refused, own_path
from ds01.config import PolicyError, load_policy

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def policy(tmp_path):
    p = load_policy(REPO / "tests/vm/policy.yaml")
    b = p.backup.model_copy(update={"repository": str(tmp_path / "repo"),
                                    "password_file": str(tmp_path / "password")})
    return p.model_copy(update={"backup": b})


def test_sources_cover_homes_areas_but_not_scratch(policy):
    src = restic.sources(policy)
    assert src[0] == policy.identity.home.root
    areas = {a.kind: a.path for a in policy.storage.areas.values()}
    assert areas["readonly"] in src and areas["collaborative"] in src
    assert areas["scratch"] not in src
    assert {"/etc/ds01", "/var/lib/ds01", "/var/lib/docker/volumes", "/etc/cron.d"} <= set(src)
    assert len(src) == len(set(src))


def test_excludes_marks_caches_live_database_and_repository(policy):
    ex = restic.excludes(policy)
    assert "--exclude-caches" in ex
    assert ex[ex.index("--exclude-if-present") + 1] == ".ds01-nobackup"
    pairs = {ex[i + 1] for i, a in enumerate(ex) if a == "--exclude"}
    assert {".cache", "/var/lib/ds01/gpu/allocator.sqlite3",
            "/var/lib/ds01/gpu/allocator.sqlite3-wal", policy.backup.repository} <= pairs


def test_no_secret_on_any_command_line(policy, tmp_path):
    (tmp_path / "creds").write_text("# s3\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\nexport AWS_SECRET_ACCESS_KEY='s3cr3t'\n")
    p = policy.model_copy(update={"backup": policy.backup.model_copy(
        update={"env_file": str(tmp_path / "creds")})})
    argvs = [restic.backup_argv(p), restic.forget_argv(p), restic.check_argv(p)]
    assert not any("s3cr3t" in a or "password" in a for argv in argvs for a in argv)
    env = restic.env(p, base={"PATH": "/bin", "RESTIC_PASSWORD": "leak"})
    assert env["RESTIC_PASSWORD_FILE"] == str(tmp_path / "password")
    assert "RESTIC_PASSWORD" not in env  # an inherited password never overrides the file
    assert env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t" and env["RESTIC_REPOSITORY"] == p.backup.repository
    assert restic.forget_argv(p)[-6:] == ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"]
    assert restic.check_argv(p)[-1] == "--read-data-subset=5%"


@pytest.mark.parametrize("repo, ok", [
    ("/srv/backup", True), ("sftp:backup@nas.example.lan:/srv/restic", True),
    ("rest:https://nas.example.lan:8000/ds01", True), ("s3:s3.example.lan/bucket", True),
    ("relative/path", False), ("rest:https://user:secret@nas.example.lan/", False),
    ("ftp:host:/x", False),
])
def test_repository_forms(tmp_path, repo, ok):
    text = (REPO / "tests/vm/policy.yaml").read_text().replace(
        "repository: /srv/ds01/backup-repo", f"repository: '{repo}'")
    f = tmp_path / "p.yaml"
    f.write_text(text)
    if ok:
        assert load_policy(f).backup.repository == repo
    else:
        with pytest.raises(PolicyError, match="backup.repository"):
            load_policy(f)


def test_parse_backup_output_summary_and_errors():
    out = "\n".join([
        '{"message_type":"status","percent_done":0.5}',
        '{"message_type":"error","error":{"message":"permission denied"},"during":"archival","item":"/home/x/f"}',
        '{"message_type":"summary","files_new":2,"files_changed":1,"files_unmodified":7,'
        '"data_added":1234,"total_files_processed":10,"total_bytes_processed":99999,'
        '"total_duration":1.5,"snapshot_id":"abcdef0123456789"}',
    ])
    summary, errors = restic.parse_backup_output(out)
    assert summary["snapshot_id"] == "abcdef0123456789" and summary["data_added"] == 1234
    assert summary["total_files_processed"] == 10
    assert errors == ["/home/x/f: permission denied"]
    assert restic.parse_backup_output("not json\n") == (None, [])


@pytest.mark.parametrize("requested, result", [
    ("notes.txt", "/home/u/notes.txt"), ("/home/u/a/b", "/home/u/a/b"), ("/home/u", "/home/u"),
    ("./a/./b", "/home/u/a/b"),
])
def test_own_path_inside_home(tmp_path, requested, result):
    home = tmp_path / "home/u"
    (home / "a").mkdir(parents=True)
    got = own_path(requested.replace("/home/u", str(home)), str(home))
    assert got == result.replace("/home/u", str(home))


@pytest.mark.parametrize("requested", ["../v/x", "/etc/shadow", "a/../../v", "", "link/secret"])
def test_own_path_refused(tmp_path, requested):
    home = tmp_path / "home/u"
    home.mkdir(parents=True)
    (tmp_path / "home/v").mkdir()
    (home / "link").symlink_to(tmp_path / "home/v")  # a symlink out of the home
    with pytest.raises(Refused):
        own_path(requested, str(home))


def test_stage_database_is_a_consistent_copy(tmp_path):
    db = tmp_path / "allocator.sqlite3"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    con.commit()  # in the WAL, not yet in the main file: a plain copy would miss it
    staged = run.stage_database(str(db), str(tmp_path / "staging"))
    assert sqlite3.connect(staged).execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert run.stage_database(str(tmp_path / "absent.sqlite3"), str(tmp_path / "s")) is None


def test_lock_excludes_a_second_run(tmp_path):
    lock = str(tmp_path / "lock")
    with run.locked(lock):
        with pytest.raises(run.Busy):
            with run.locked(lock):
                pass
    with run.locked(lock):  # released
        pass


needs_restic = pytest.mark.skipif(not shutil.which("restic"), reason="restic not installed")


@needs_restic
def test_real_repository_backup_incremental_drill(policy, tmp_path, monkeypatch):
    """A real restic repository: init, a backup of a directory, a second one
    that adds only the change, a drill that finds every sampled file intact."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(30):
        (data / "sub" / f"f{i}").write_bytes(os.urandom(5000 + i))
    (data / ".cache").mkdir()
    (data / ".cache" / "junk").write_bytes(b"x" * 100)
    (data / "venv").mkdir()
    (data / "venv" / ".ds01-nobackup").touch()
    (data / "venv" / "big").write_bytes(b"y" * 100)
    state = tmp_path / "state"
    monkeypatch.setattr(restic, "BACKUP_STATE", str(state))
    monkeypatch.setattr(restic, "STAGING", str(state / "staging"))
    monkeypatch.setattr(run, "STATUS_FILE", state / "status.json")
    monkeypatch.setattr(run, "LOCK_FILE", str(tmp_path / "lock"))
    monkeypatch.setattr(restic, "RESTIC", shutil.which("restic"))
    monkeypatch.setattr(events, "EVENTS_FILE", tmp_path / "events.jsonl")
    monkeypatch.setattr(restic, "sources", lambda p: [str(data)])
    state.mkdir()
    (tmp_path / "password").write_text("test-only-password\n")
    assert restic.call(policy, [restic.RESTIC, "init"]).returncode == 0

    assert run.backup(policy) == 0
    first = run.read_status()["backup"]
    assert first["last_result"] == "ok" and first["files"] >= 30
    ls = restic.call(policy, [restic.RESTIC, "ls", "--json", "latest"])
    paths = {n["path"] for n in restic.parse_ls(ls.stdout)}
    assert str(data / "sub/f0") in paths
    assert not any(".cache" in p or p.endswith("/venv/big") for p in paths)  # excluded (the mark stays)

    (data / "sub" / "f0").write_bytes(os.urandom(7000))
    assert run.backup(policy) == 0
    second = run.read_status()["backup"]
    assert second["files_changed"] == 1 and 7000 <= second["data_added"] < first["data_added"]

    assert run.drill(policy, sample=5, rng=random.Random(1)) == 0
    drill = run.read_status()["drill"]
    assert drill["last_result"] == "ok" and drill["files"] == 5 and drill["problems"] == []
    kinds = [e["kind"] for e in events.read(tmp_path / "events.jsonl")]
    assert kinds == ["backup", "backup", "restore_drill"]

    # a damaged repository: the drill (and check) fail and say so
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o644)
            with pack.open("r+b") as f:
                f.seek(200)
                f.write(b"\0" * 64)
    assert run.drill(policy, sample=30, rng=random.Random(2)) == 1
    assert run.read_status()["drill"]["last_result"] == "failed"
    assert run.check(policy) != 0
    assert run.read_status()["check"]["last_result"] == "failed"


@needs_restic
def test_restic_version_supports_the_options_used():
    help_backup = subprocess.run(["restic", "backup", "--help"], capture_output=True, text=True).stdout
    for opt in ("--exclude-caches", "--exclude-if-present", "--json", "--tag"):
        assert opt in help_backup
