"""The usage ledger: every lease recorded by the allocator (who, which unit,
weight, from, to, why it ended), queue waits, idle time from the reaper's
samples, the schema migration, and `ds01 usage` over a recorded history
(exact hours, clipping at --since, open leases to now, privacy)."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from gpu_helpers import T0, make_allocator

from ds01.cli import main
from ds01.gpu.results import ReaperState
from ds01.gpu.store import SCHEMA_VERSION
from ds01.gpu.usage import Lease, Wait, last_month, parse_date, report

H = 3600.0


def _leases(alloc):
    return alloc.store.rows("SELECT * FROM leases ORDER BY id")


def test_a_lease_runs_over_the_continuous_hold_and_says_why_it_ended(alloc, clock):
    a = alloc.assign("nb", "111111", "student", kind="1g.5gb")
    alloc.allocate("nb")
    clock.advance(2 * H)
    alloc.release("nb")  # held for the role's gpu_hold_after_stop (15m)
    clock.advance(600)
    alloc.allocate("nb")  # a restart within the hold: the same lease goes on
    clock.advance(H)
    alloc.release("nb")
    clock.advance(16 * 60)
    alloc.expire()  # the hold ran out
    [lease] = _leases(alloc)
    assert (lease["container"], lease["user"], lease["role"], lease["unit"]) == (
        "nb", "111111", "student", a.units[0].uuid)  # fmt: skip
    assert lease["kind"] == "1g.5gb" and lease["weight"] == pytest.approx(a.units[0].weight)
    assert lease["started_at"] == T0
    # ended when the hold ran out, not at the stop
    assert lease["ended_at"] == T0 + 3 * H + 600 + 15 * 60
    assert lease["end_reason"] == "hold expired"


@pytest.mark.parametrize(
    "end, reason",
    [
        (lambda a: a.release("nb", hold=False), "stopped"),
        (lambda a: a.forget("nb"), "removed"),
        (lambda a: a.admin_release(a.assignment("nb").units[0].uuid, by="root"),
         "admin release by root"),
    ],
)  # fmt: skip
def test_every_way_a_lease_ends_is_recorded(alloc, clock, end, reason):
    alloc.assign("nb", "j.doe", "researcher", kind="gpu")
    alloc.allocate("nb")
    clock.advance(90)
    end(alloc)
    [lease] = _leases(alloc)
    assert (lease["ended_at"] - lease["started_at"], lease["end_reason"]) == (90, reason)
    assert lease["kind"] == "gpu" and lease["weight"] == 1.0


def test_queue_waits_are_kept_after_the_queue_is_pruned(alloc, clock):
    alloc.enqueue("111111", "student", "3g.20gb")
    clock.advance(300)
    assert alloc.leave("111111", "3g.20gb") == 1
    clock.advance(40 * 86400)
    alloc.expire()  # prunes ended queue entries past history_retention
    assert alloc.store.rows("SELECT * FROM queue") == []
    [w] = alloc.store.rows("SELECT * FROM waits")
    assert (w["user"], w["kind"], w["ended_at"] - w["enqueued_at"], w["outcome"]) == (
        "111111", "3g.20gb", 300, "cancelled")  # fmt: skip


def test_idle_time_comes_from_consecutive_idle_samples(alloc, clock):
    alloc.assign("nb", "111111", "student", kind="1g.5gb")
    alloc.allocate("nb")
    samples = [(0, None), (600, T0 + 600), (1200, T0 + 600), (1800, None), (2400, T0 + 2400),
               (3000, T0 + 2400)]  # fmt: skip
    for at, idle_since in samples:
        clock.t = T0 + at
        alloc.update_reaper(
            "nb", lambda r, at=at, s=idle_since: (ReaperState(1 if s else 0, s, T0 + at, 0), None)
        )
    # idle at 600 and 1200 (600 s), at 2400 and 3000 (600 s); 1200 -> 1800 was busy
    assert _leases(alloc)[0]["idle_seconds"] == 1200


def test_an_old_database_is_migrated_with_its_holds_as_open_leases(policy, clock, tmp_path):
    path = tmp_path / "gpu.sqlite3"
    alloc = make_allocator(policy, path, clock)
    a = alloc.assign("nb", "j.doe", "researcher", kind="gpu")
    alloc.allocate("nb")
    alloc.close()
    db = sqlite3.connect(path)  # back to version 2: no ledger tables
    db.executescript(
        "DROP TABLE leases; DROP TABLE waits; DROP TABLE layout_drains; "
        "DROP TRIGGER queue_ended; PRAGMA user_version=2;"
    )
    db.close()
    clock.advance(H)
    alloc = make_allocator(policy, path, clock)
    try:
        assert alloc.store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert alloc.assignment("nb").state == "allocated"  # nothing lost
        [lease] = _leases(alloc)
        assert (lease["unit"], lease["started_at"], lease["ended_at"]) == (
            a.units[0].uuid, T0, None)  # fmt: skip
        clock.advance(H)
        alloc.release("nb", hold=False)
        [lease] = _leases(alloc)
        assert lease["ended_at"] - lease["started_at"] == 2 * H
    finally:
        alloc.close()


# -- the report over a recorded history -------------------------------------------

SINCE = parse_date("2026-11-01")
NOW = parse_date("2026-11-20")


def _lease(user, role, unit, weight, start, end, idle=0.0, kind="3g.20gb"):
    return Lease("c-" + user, user, role, unit, 0, kind, weight, start, end, "stopped", idle)


HISTORY = [
    # 10 h of a half GPU, 4 h of it idle, wholly inside
    _lease("111111", "student", "MIG-a", 0.5, SINCE + 24 * H, SINCE + 34 * H, idle=4 * H),
    # crosses --since: 6 h before, 2 h after; of 4 idle hours, 1 is counted
    _lease("111111", "student", "MIG-a", 0.5, SINCE - 6 * H, SINCE + 2 * H, idle=4 * H),
    # a whole GPU, still held: counted to now
    _lease("j.doe", "researcher", "GPU-b", 1.0, NOW - 3 * H, None, kind="gpu"),
    # wholly before the period: not counted
    _lease("j.doe", "researcher", "GPU-b", 1.0, SINCE - 9 * H, SINCE - 8 * H, kind="gpu"),
]
WAITS = [
    Wait("111111", "student", "3g.20gb", SINCE + 10 * H, SINCE + 10.5 * H, "done"),
    Wait("j.doe", "researcher", None, NOW - H, None, "waiting"),  # still waiting: to now
]


def test_hours_are_exact_clipped_at_since_and_open_leases_count_to_now():
    rep = report(HISTORY, WAITS, SINCE, NOW, "user")
    rows = {r.key: r for r in rep.rows}
    s, j = rows["111111"], rows["j.doe"]
    assert (s.leases, s.gpu_hours, s.unit_hours, s.idle_hours) == (2, 6.0, 12.0, 5.0)
    assert (s.queue_waits, s.queue_wait_hours) == (1, 0.5)
    assert (j.leases, j.gpu_hours, j.unit_hours, j.idle_hours) == (1, 3.0, 3.0, 0.0)
    assert (j.queue_waits, j.queue_wait_hours) == (1, 1.0)
    t = rep.totals
    assert (t.leases, t.gpu_hours, t.idle_hours, t.queue_waits) == (3, 9.0, 5.0, 2)


def test_by_role_and_by_unit():
    by_role = {r.key: r.gpu_hours for r in report(HISTORY, WAITS, SINCE, NOW, "role").rows}
    assert by_role == {"student": 6.0, "researcher": 3.0}
    by_unit = {r.key: r.gpu_hours for r in report(HISTORY, WAITS, SINCE, NOW, "unit").rows}
    assert by_unit == {"MIG-a (3g.20gb)": 6.0, "GPU-b (gpu)": 3.0}


def test_an_ordinary_user_sees_their_rows_and_everyones_totals():
    rep = report(HISTORY, WAITS, SINCE, NOW, "user", viewer="111111")
    assert [r.key for r in rep.rows] == ["111111"]
    assert rep.totals.gpu_hours == 9.0
    rep = report(HISTORY, WAITS, SINCE, NOW, "unit", viewer="j.doe")
    assert [r.key for r in rep.rows] == ["GPU-b (gpu)"]
    csv = rep.to_csv().splitlines()
    assert csv[0] == "unit,leases,gpu_hours,unit_hours,idle_hours,queue_waits,queue_wait_hours"
    assert csv[-1].startswith("total,3,9.0,")


def test_last_month():
    start, end, name = last_month(parse_date("2027-01-01T00:30"))
    assert (start, end, name) == (parse_date("2026-12-01"), parse_date("2027-01-01"), "2026-12")


# -- ds01 usage ----------------------------------------------------------------------


@pytest.fixture
def policy_file(tmp_path):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "config/resource-allocation.yaml").read_text()
    text = text.replace(
        "state_dir: /var/lib/ds01", f"state_dir: {tmp_path}/state\n  runtime_dir: {tmp_path}/run"
    ).replace("backend: auto", "backend: simulated")
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return str(p)


def _history(policy_file):
    from ds01.config import load_policy
    from ds01.gpu.allocator import Allocator

    alloc = Allocator(load_policy(policy_file))
    for name, user, role in (("a", "111111", "student"), ("b", "j.doe", "researcher")):
        alloc.assign(name, user, role, kind="1g.5gb")
        alloc.allocate(name)
        alloc.release(name, hold=False)
    alloc.close()


def _usage(capsys, *argv):
    code = main(["usage", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_usage_as_root_and_as_a_student_through_sudo(policy_file, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SUDO_UID", raising=False)
    _history(policy_file)
    code, out, _ = _usage(capsys, "--json", "--policy", policy_file)
    data = json.loads(out)
    assert code == 0 and [r["key"] for r in data["rows"]] == ["111111", "j.doe"]
    assert data["totals"]["leases"] == 2 and data["only_user"] is None
    code, out, _ = _usage(capsys, "--report", str(tmp_path / "reports"), "--policy", policy_file)
    assert code == 0 and out.count("wrote ") == 2
    # through sudo, as the student (the policy is the default one then)
    monkeypatch.setenv("SUDO_UID", str(os.getuid()))
    monkeypatch.setattr("ds01.gpu.cli._caller", lambda: "111111")
    monkeypatch.setattr("ds01.identity.local.role_of", lambda user, policy: "student")
    monkeypatch.setattr("ds01.gpu.usage_cli.DEFAULT_POLICY_PATH", policy_file)
    code, out, _ = _usage(capsys, "--json", "--policy", policy_file)
    data = json.loads(out)
    assert [r["key"] for r in data["rows"]] == ["111111"] and data["only_user"] == "111111"
    assert data["totals"]["leases"] == 2
    code, _, err = _usage(capsys, "--user", "j.doe", "--policy", policy_file)
    assert code == 2 and "theirs and the admins'" in err
    code, _, err = _usage(capsys, "--report", str(tmp_path), "--policy", policy_file)
    assert code == 2 and "--report is root's" in err
    code, _, err = _usage(capsys, "--policy", str(tmp_path / "other.yaml"))
    assert code == 2 and "--policy cannot be used through sudo" in err


def test_usage_reruns_itself_through_sudo_with_what_it_parsed(monkeypatch, policy_file):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    seen = {}

    def execvp(prog, argv):
        seen["argv"] = argv
        raise SystemExit(0)

    monkeypatch.setattr(os, "execvp", execvp)
    with pytest.raises(SystemExit):
        main(["usage", "--since", "2026-11-01", "--by", "role", "--csv"])
    assert seen["argv"] == ["sudo", "-n", "/usr/local/bin/ds01", "usage", "--by", "role",
                            "--since", "2026-11-01T00:00:00", "--csv"]  # fmt: skip
