"""Admin guard (sudoers text validated by visudo) and the staleness report."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import time

import pytest

from ds01.identity import guard, report


@pytest.mark.skipif(not shutil.which("visudo"), reason="visudo (package sudo) not installed")
def test_sudoers_text_passes_visudo_and_garbage_does_not(policy):
    text = guard.sudoers_text(policy)
    assert "datasciencelab ALL=(ALL:ALL) ALL" in text
    assert guard.validate(text) is None
    assert guard.validate("datasciencelab ALL=(ALL ALL\n") is not None


@pytest.mark.skipif(not shutil.which("visudo"), reason="visudo (package sudo) not installed")
def test_install_dropin_refuses_invalid_text(tmp_path):
    target = tmp_path / "ds01-admin"
    with pytest.raises(RuntimeError, match="visudo"):
        guard.install_dropin("nonsense ALL=(\n", str(target))
    assert not target.exists()
    guard.install_dropin("root ALL=(ALL:ALL) ALL\n", str(target))
    assert oct(target.stat().st_mode & 0o777) == "0o440"


def test_problems_name_what_was_removed(policy, tmp_path, monkeypatch):
    monkeypatch.setattr(guard.pwd, "getpwnam", lambda n: object())
    monkeypatch.setattr(guard.grp, "getgrnam", lambda n: type("G", (), {"gr_mem": []})())
    found = guard.problems(policy, str(tmp_path / "missing"))
    assert found == [
        f"{tmp_path}/missing was removed",
        "datasciencelab was removed from the sudo group",
    ]


def utmp(kind: int, user: str, t: int) -> bytes:
    return report._UTMP.pack(
        kind, 1, b"pts/0", b"ts/0", user.encode(), b"host", 0, 0, 0, t, 0, 0, 0, 0, 0
    )


def test_wtmp_keeps_the_latest_user_login(tmp_path):
    f = tmp_path / "wtmp"
    f.write_bytes(
        utmp(7, "j.doe", 100)
        + utmp(8, "j.doe", 900)
        + utmp(7, "j.doe", 300)
        + utmp(2, "reboot", 50)
        + utmp(7, "123456@example.lan", 200)
    )
    assert report.wtmp_logins(str(f)) == {"j.doe": 300.0, "123456@example.lan": 200.0}
    assert report._UTMP.size == 384


def test_lastlog_is_indexed_by_uid(tmp_path):
    f = tmp_path / "lastlog"
    f.write_bytes(b"\0" * report._LASTLOG.size * 5 + struct.pack("<i32s256s", 1234, b"pts/1", b"h"))
    assert report.lastlog_time(5, str(f)) == 1234.0
    assert report.lastlog_time(2, str(f)) is None
    assert report.lastlog_time(99, str(f)) is None


def test_report_rows_and_candidates(make_policy, tmp_path, monkeypatch):
    root = tmp_path / "home"
    old, fresh = root / "old.user", root / "fresh.user"
    for d in (old, fresh):
        (d / "a/b").mkdir(parents=True)
        (d / "a/b/file").write_bytes(b"x" * 10000)
    now = time.time()
    for p in [old, old / "a", old / "a/b", old / "a/b/file"]:
        os.utime(p, (now - 400 * 86400, now - 400 * 86400))
    p = make_policy(
        {
            "home": {"root": str(root), "mode": "0700"},
            "archived": ["fresh.user"],
            "report": {"dir": str(tmp_path / "reports"), "stale_after": "180d"},
        }
    )
    monkeypatch.setattr(report, "wtmp_logins", lambda: {})
    monkeypatch.setattr(report, "lastlog_time", lambda uid: None)
    monkeypatch.setattr(report, "role_of", lambda u, p: None)
    monkeypatch.setattr(report.pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    rows = {r.user: r for r in report.build(p, now=now, with_directory=False)}
    assert set(rows) == {"old.user", "fresh.user"}
    assert rows["old.user"].idle_days == 400 and rows["old.user"].candidate
    assert rows["old.user"].size_bytes >= 10000
    assert rows["fresh.user"].idle_days == 0 and rows["fresh.user"].archived
    assert rows["fresh.user"].candidate  # archived
    data = json.loads(report.to_json(list(rows.values())))
    assert {d["user"] for d in data} == {"old.user", "fresh.user"}
    parsed = list(csv.DictReader(io.StringIO(report.to_csv(list(rows.values())))))
    assert parsed[0]["candidate"] == "True"
    written = report.save(list(rows.values()), p)
    assert all(os.stat(w).st_mode & 0o777 == 0o640 for w in written)
    assert "Nothing was deleted" in report.to_text(list(rows.values()), p)
    assert old.exists() and fresh.exists()
