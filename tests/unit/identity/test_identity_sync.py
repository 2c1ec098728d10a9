"""Sync planning and its fail-safe rules; applying a plan with a recording runner."""

from __future__ import annotations

import json

import pytest

from ds01.identity import sync
from ds01.identity.model import DirectoryUser, DirectoryView
from ds01.identity.sync import ChangeLog, State, apply, membership_commands, plan

Q = "@example.lan"


def view(*accounts: str, disabled: tuple[str, ...] = ()) -> DirectoryView:
    return DirectoryView(
        users=tuple(DirectoryUser(a, f"CN={a}", disabled=a in disabled) for a in accounts)
    )


def names(*accounts: str) -> set[str]:
    return {a + Q for a in accounts}


@pytest.fixture
def pol(make_policy, tmp_path):
    return make_policy({"members": {"researcher": ["204214"], "faculty": ["w.prof"],
                                    "admin": ["h.admin"], "student": ["lt.student"]},
                        "sync": {"max_drop_fraction": 0.1, "log_file": str(tmp_path / "sync.log"),
                                 "state_file": str(tmp_path / "state.json")}})  # fmt: skip


def test_exact_membership_from_scratch(pol):
    v = view("123456", "204214", "j.doe", "w.prof", "h.admin", "x.gone", disabled=("x.gone",))
    local = names("123456", "204214", "j.doe", "w.prof", "h.admin", "x.gone") | {"lt.student"}
    p = plan(pol, v, None, {}, local)
    assert p.refused is None
    assert p.desired == {
        "ds01-student": ["123456@example.lan", "lt.student"],
        "ds01-researcher": ["204214@example.lan", "j.doe@example.lan"],
        "ds01-faculty": ["w.prof@example.lan"],
        "ds01-admin": ["h.admin@example.lan"],
        "docker-users": sorted(local - {"x.gone@example.lan"}),
    }
    assert p.changed_groups == sorted(p.desired)
    assert {n for n, _ in p.new_users} == local - {"x.gone@example.lan"}


def test_removals_carry_their_reason(pol):
    cur = {"ds01-student": names("123456", "204214"), "ds01-researcher": set(),
           "ds01-faculty": {"someone"}, "ds01-admin": set(), "docker-users": set()}  # fmt: skip
    p = plan(pol, view("123456", "204214"), None, cur, names("123456", "204214") | {"someone"})
    removed = {(c.group, c.user): c.reason for c in p.changes if c.action == "remove"}
    assert removed == {
        ("ds01-student", "204214@example.lan"): "role is now researcher: listed in "
        "identity.members.researcher (explicit lists always win)",
        ("ds01-faculty", "someone"): "not in the directory and not in any identity.members list",
    }


def test_unresolved_users_are_not_members(pol):
    p = plan(pol, view("123456", "234567"), None, {}, names("123456"))
    assert p.desired["ds01-student"] == ["123456@example.lan"]
    assert p.unresolved == ["234567@example.lan"]


def test_unreachable_directory_removes_nobody(pol):
    cur = {"ds01-student": names("123456"), "docker-users": names("123456")}
    p = plan(
        pol,
        None,
        "cannot reach the directory at ldaps://dc1",
        cur,
        names("123456") | {"lt.student"},
    )
    assert p.refused and "cannot reach" in p.refused
    assert p.desired["ds01-student"] == ["123456@example.lan", "lt.student"]  # adds still happen
    assert [c.action for c in p.changes] == ["add", "add"]
    assert {(c.group, c.user) for c in p.withheld} == {
        ("ds01-student", "123456@example.lan"),
        ("docker-users", "123456@example.lan"),
    }


def test_drop_beyond_fraction_is_refused(pol):
    accounts = [f"{100000 + i}" for i in range(100)]
    cur = {"ds01-student": names(*accounts)}
    p = plan(pol, view(*accounts[:89]), None, cur, names(*accounts), baseline=100)
    assert p.refused and "11 fewer than the 100" in p.refused
    assert p.desired["ds01-student"] == sorted(names(*accounts))
    assert all(c.action == "add" for c in p.changes)
    ok = plan(pol, view(*accounts[:90]), None, cur, names(*accounts), baseline=100)
    assert ok.refused is None and len([c for c in ok.changes if c.action == "remove"]) == 10


def test_empty_directory_answer_is_refused(pol):
    p = plan(pol, view(), None, {"ds01-student": names("123456")}, names("123456"))
    assert p.refused and "no users" in p.refused and p.withheld


def test_directory_off_uses_lists_only(make_policy):
    p = make_policy({"members": {"student": ["lt.student"]}}, directory={"enabled": False})
    out = plan(p, None, None, {"ds01-student": {"old"}}, {"lt.student", "old"})
    assert out.refused is None and out.desired["ds01-student"] == ["lt.student"]


def test_known_users_are_not_new_again(pol):
    p = plan(
        pol, view("123456"), None, {}, names("123456"), known={"123456@example.lan": "student"}
    )
    assert p.new_users == []
    p = plan(
        pol, view("123456"), None, {}, names("123456"), known={"123456@example.lan": "faculty"}
    )
    assert p.new_users == [("123456@example.lan", "student")]


def test_membership_change_costs_constant_commands(pol):
    few = plan(pol, view("123456"), None, {}, names("123456"))
    accounts = [f"{100000 + i}" for i in range(5000)]
    many = plan(pol, view(*accounts), None, {}, names(*accounts))
    assert len(membership_commands(few)) == len(membership_commands(many)) == 10
    cur = {g: set(m) for g, m in many.desired.items()}
    more = plan(pol, view(*accounts, "999999"), None, cur, names(*accounts, "999999"))
    cmds = membership_commands(more)
    assert [c[:2] for c in cmds] == [["groupmod", "-U"], ["groupmod", "-U"]]
    assert cmds[1][-1] == "ds01-student" and cmds[1][2].count(",") == 5000


def test_apply_runs_commands_hooks_logs_and_saves_state(pol, monkeypatch, tmp_path):
    from ds01.hooks import LocalUser

    calls, handled = [], []
    monkeypatch.setattr(sync.hooks, "NEW_USER_HANDLERS", ("x:y",))
    monkeypatch.setattr(
        sync.hooks, "handlers", lambda: [("x:y", lambda u, p: handled.append(u.name))]
    )
    p = plan(pol, view("123456", "j.doe"), None, {}, names("123456", "j.doe"))
    out = apply(
        p,
        pol,
        State(),
        ChangeLog(str(tmp_path / "sync.log"), "test"),
        run=calls.append,
        user_of=lambda n, r: LocalUser(n, 1000, 1000, f"/home/{n}", r),
    )
    assert calls == membership_commands(p) and out.hook_failures == []
    assert sorted(handled) == sorted(names("123456", "j.doe"))
    log = (tmp_path / "sync.log").read_text()
    assert "test: add j.doe@example.lan to ds01-researcher: account matches naming rule" in log
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved == {
        "directory_users": 2,
        "known": {"123456@example.lan": "student", "j.doe@example.lan": "researcher"},
    }
    from ds01 import events

    evs = list(events.read(events.EVENTS_FILE))
    added = {(e["user"], e["group"]) for e in evs if e["kind"] == "membership"}
    assert ("j.doe@example.lan", "ds01-researcher") in added
    assert {e["user"] for e in evs if e["kind"] == "new_user"} == set(names("123456", "j.doe"))


def test_failed_hook_is_retried_next_time(pol, monkeypatch, tmp_path):
    from ds01.hooks import LocalUser

    def broken(u, p):
        raise OSError("disk full")

    monkeypatch.setattr(sync.hooks, "handlers", lambda: [("m:broken", broken)])
    p = plan(pol, view("123456"), None, {}, names("123456"))
    out = apply(
        p,
        pol,
        State(),
        ChangeLog(str(tmp_path / "sync.log"), "t"),
        run=lambda c: None,
        user_of=lambda n, r: LocalUser(n, 1, 1, "/home/x", r),
    )
    assert out.hook_failures == [("123456@example.lan", "m:broken", "disk full")]
    assert State.load(str(tmp_path / "state.json")).known == {}


def test_refused_run_keeps_the_baseline_and_logs_loudly(pol, tmp_path):
    p = plan(pol, None, "timeout", {"ds01-student": names("123456")}, names("123456"))
    apply(
        p,
        pol,
        State(directory_users=50, known={"123456@example.lan": "student"}),
        ChangeLog(str(tmp_path / "sync.log"), "t"),
        run=lambda c: None,
    )
    st = State.load(str(tmp_path / "state.json"))
    assert st.directory_users == 50 and st.known == {"123456@example.lan": "student"}
    assert (
        "REFUSED to remove anyone: the directory could not be read completely: timeout"
        in (tmp_path / "sync.log").read_text()
    )


def test_a_crash_inside_the_ldap_library_counts_as_unreadable(pol, monkeypatch):
    from ds01.identity import cli, directory

    def garbled(d, password=None):
        raise KeyError((0, 8))  # what ldap3 raised on a garbled answer

    monkeypatch.setattr(directory, "read", garbled)
    view, error = cli._read_directory(pol)
    assert view is None and error.startswith("unexpected error reading ldaps://dc1.example.lan")
    assert plan(pol, view, error, {"ds01-student": {"x"}}, {"x"}).refused
