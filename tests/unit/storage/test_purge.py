"""Scratch purge on a real directory tree (the host's filesystem).

A file's ctime cannot be set back, so the purge runs "in the future": every
file created here is ``AGE`` old at ``NOW``, unless its mtime is set later.
"""

import os
import time
from pathlib import Path

import pytest

from ds01.config import Area
from ds01.storage import purge

DAY = 86400
AFTER, WARN = 30 * DAY, 7 * DAY
NOW = time.time() + 40 * DAY  # everything just created is 40 days unused at NOW


def make(path: Path, used_days_before_now: float | None = None, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if used_days_before_now is not None:
        t = NOW - used_days_before_now * DAY
        os.utime(path, (t, t))
    return path


def run(root: Path, dry_run=False) -> purge.Report:
    return purge.Purger(str(root), AFTER, WARN, NOW, dry_run).run()


@pytest.fixture
def scratch(tmp_path):
    root = tmp_path / "scratch"
    (root / "alice").mkdir(parents=True)
    return root


def test_old_removed_recent_kept(scratch):
    old = make(scratch / "alice/old/data.bin", data=b"0123456789")
    recent = make(scratch / "alice/recent.txt", used_days_before_now=1)
    report = run(scratch)
    assert not old.exists() and recent.exists()
    assert not (scratch / "alice/old").exists()  # emptied and unused: removed
    assert (scratch / "alice").is_dir()  # a user's own directory is never removed
    me = next(iter(report.users.values()))
    assert (me.removed_files, me.removed_bytes, me.removed_dirs) == (1, 10, 1)


def test_symlink_removed_target_outside_survives(scratch, tmp_path):
    outside = make(tmp_path / "etc/passwd-like", data=b"secret")
    link = scratch / "alice/link"
    link.symlink_to(outside)
    dirlink = scratch / "alice/dirlink"
    dirlink.symlink_to(tmp_path / "etc", target_is_directory=True)
    run(scratch)
    assert outside.exists() and outside.read_bytes() == b"secret"
    assert not link.is_symlink() and not dirlink.is_symlink()  # old links go, their targets stay


def test_symlinked_directory_is_never_entered(scratch, tmp_path):
    victim = make(tmp_path / "victim/keep.txt")
    (scratch / "alice/sub").mkdir()
    os.symlink(tmp_path / "victim", scratch / "alice/sub/into-victim")
    run(scratch)
    assert victim.exists()


def test_scratch_root_must_be_normalised(tmp_path):
    for bad in ("/", "relative/path", f"{tmp_path}/../x"):
        with pytest.raises(ValueError):
            purge.Purger(bad, AFTER, WARN, NOW, False)


def test_dry_run_changes_nothing(scratch):
    old = make(scratch / "alice/old.bin")
    report = run(scratch, dry_run=True)
    assert old.exists() and report.removed_files == 1


def test_warns_files_due_within_warn_before(scratch):
    soon = make(scratch / "alice/soon.txt", used_days_before_now=25)  # due in 5 days
    make(scratch / "alice/later.txt", used_days_before_now=10)  # due in 20 days
    report = run(scratch)
    me = next(iter(report.users.values()))
    assert [w[0] for w in me.warned] == [str(soon)]
    assert me.warned[0][2] == pytest.approx(NOW + 5 * DAY, abs=2)


def test_notice_text_and_files(scratch, tmp_path):
    make(scratch / "alice/soon.txt", used_days_before_now=25, data=b"x" * 2048)
    report = run(scratch)
    area = Area(
        kind="scratch",
        path=str(scratch),
        link="/scratch",
        group="g",
        read=[],
        write=[],
        sticky=True,
        purge={"after": "30d", "warn_before": "7d"},
    )
    user = next(iter(report.users))
    text = purge.notice_text(user, report.users[user], area)
    assert "1 file(s) (2.0 KiB)" in text and "/scratch" in text and "soon.txt" in text
    notices = tmp_path / "notices"
    notices.mkdir()
    (notices / "someone.else").write_text("stale")
    if not user.startswith("#"):
        purge.write_notices(report, area, str(notices))
        assert (notices / user).read_text() == text
        assert oct((notices / user).stat().st_mode & 0o777) == "0o600"
    assert not (notices / "someone.else").exists()


def test_log_lines_per_user(scratch):
    make(scratch / "alice/old.bin", data=b"abc")
    lines = purge.log_lines(run(scratch), NOW)
    assert any("removed files=1 dirs=0 bytes=3" in ln for ln in lines)
    assert lines[-1].endswith("removed 1 files")


def test_a_second_run_finds_nothing(scratch):
    make(scratch / "alice/a/b/c/old.bin")
    run(scratch)
    assert run(scratch).removed_files == 0


def test_run_locked_refuses_a_second_purge(scratch, tmp_path):
    import fcntl

    area = Area(
        kind="scratch",
        path=str(scratch),
        link=None,
        group="g",
        read=[],
        write=[],
        sticky=True,
        purge={"after": "30d", "warn_before": "7d"},
    )
    lock = tmp_path / "lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(purge.Locked):
            purge.run_locked(area, dry_run=True, lock_file=str(lock))
    log = tmp_path / "log/purge.log"
    make(scratch / "alice/old.bin")
    purge.run_locked(
        area,
        dry_run=False,
        log_file=str(log),
        notice_dir=str(tmp_path / "none"),
        lock_file=str(lock),
        now=NOW,
    )
    assert "removed files=1" in log.read_text()
