"""Stopped-container cleanup plan: the role's remove_stopped_after, a notice a day before."""

from __future__ import annotations

from docker_world import POLICY

from ds01.docker.cleanup import NOTICE_AHEAD, Stopped, notice_text, plan

DAY = 86400
NOW = 1_800_000_000.0


def stopped(name, role, days, owner="123456@example.lan"):
    return Stopped(f"id-{name}", name, owner, role, NOW - days * DAY)


def test_each_role_keeps_its_stopped_containers_for_its_own_time():
    student = POLICY.roles["student"].lifecycle.remove_stopped_after
    researcher = POLICY.roles["researcher"].lifecycle.remove_stopped_after
    assert POLICY.roles["admin"].lifecycle.remove_stopped_after is None
    p = plan(
        [
            stopped("old", "student", student / DAY + 0.1),
            stopped("soon", "student", (student - NOTICE_AHEAD / 2) / DAY),
            stopped("fresh", "student", 1),
            stopped("res", "researcher", student / DAY + 0.1, owner="j.doe@example.lan"),
            stopped("adm", "admin", 400, owner="h.admin"),
            stopped("norole", "", 400, owner="x.guest"),
        ],
        POLICY,
        NOW,
    )
    assert [c.name for c, _ in p.remove] == ["old"]
    assert "student limit" in p.remove[0][1]
    assert list(p.notices) == ["123456@example.lan"]
    (c, due), = p.notices["123456@example.lan"]
    assert c.name == "soon" and due == c.since + student
    assert researcher > student
    assert "soon" in notice_text(p.notices["123456@example.lan"])
