"""Role classification: a table of accounts and the role and rule each gets."""

from __future__ import annotations

import pytest

from ds01.identity.classify import Classifier, classify_all, group_paths, plain
from ds01.identity.model import DirectoryUser, DirectoryView

PARENTS = {
    "Lab-Staff": ("DS01-Faculty",),  # nested: Lab-Staff is a member of DS01-Faculty
    "PhD-2026": ("DS01-Researchers",),
    "DS01-Faculty": (),
    "DS01-Researchers": (),
    "DS01-Admins": (),
    "Loop-A": ("Loop-B",),
    "Loop-B": ("Loop-A",),
}

TABLE = [
    # account, direct groups, disabled, role, rule
    ("123456", (), False, "student", "naming_rule"),
    ("234567", ("Loop-A",), False, "student", "naming_rule"),  # group cycle, no role group
    ("204214", (), False, "researcher", "member"),  # student-style account, explicit list wins
    ("j.doe", (), False, "researcher", "naming_rule"),
    ("a.smith", ("PhD-2026",), False, "researcher", "directory_group"),
    ("w.prof", (), False, "faculty", "member"),
    ("l.prof", ("DS01-Faculty",), False, "faculty", "directory_group"),
    ("k.lead", ("Lab-Staff",), False, "faculty", "directory_group"),  # nested group
    ("m.both", ("PhD-2026", "DS01-Faculty"), False, "faculty", "directory_group"),  # priority
    ("h.admin", (), False, "admin", "member"),
    ("x.gone", (), True, None, "disabled"),
    ("datasciencelab", ("DS01-Admins",), False, None, "system_user"),
    ("guest_01", (), False, "student", "default"),
]


@pytest.mark.parametrize("account,groups,disabled,role,rule", TABLE)
def test_table(policy, account, groups, disabled, role, rule):
    d = Classifier(policy).classify(
        account, member_of=groups, group_parents=PARENTS, disabled=disabled
    )
    assert (d.role, d.rule) == (role, rule), d.reason
    assert d.account == account
    assert d.name == f"{account}@example.lan"  # the repository policy is name_style: qualified


def test_reason_names_the_nested_path(policy):
    d = Classifier(policy).classify("k.lead", member_of=("Lab-Staff",), group_parents=PARENTS)
    assert d.reason == "member of directory group DS01-Faculty (nested: Lab-Staff -> DS01-Faculty)"


def test_qualified_names_in_lists_match_plain_accounts(make_policy):
    p = make_policy({"members": {"researcher": ["555555@EXAMPLE.LAN"]}})
    assert Classifier(p).classify("555555").role == "researcher"
    assert Classifier(p).classify("555555@example.lan").role == "researcher"


def test_plain_name_style(make_policy):
    p = make_policy(directory={"name_style": "plain"})
    assert Classifier(p).classify("j.doe@example.lan").name == "j.doe"


def test_group_names_are_case_insensitive(policy):
    d = Classifier(policy).classify("q.x", member_of=("ds01-faculty",), group_parents={})
    assert d.role == "faculty"


def test_archived_beats_explicit_membership_elsewhere(make_policy):
    p = make_policy({"archived": ["123456"]})
    assert Classifier(p).classify("123456").rule == "archived"


def test_plain_only_strips_the_configured_domain():
    assert plain("j.doe@example.lan", "example.lan") == "j.doe"
    assert plain("j.doe@other.org", "example.lan") == "j.doe@other.org"


def test_group_paths_shortest_and_cycle_safe():
    paths = group_paths(("Loop-A", "Lab-Staff"), PARENTS)
    assert paths == {
        "Loop-A": ("Loop-A",),
        "Loop-B": ("Loop-A", "Loop-B"),
        "Lab-Staff": ("Lab-Staff",),
        "DS01-Faculty": ("Lab-Staff", "DS01-Faculty"),
    }


def test_classify_all_adds_local_explicit_members_only_if_they_resolve(make_policy):
    p = make_policy({"members": {"student": ["lt.student", "lt.ghost"], "admin": ["h.admin"]}})
    view = DirectoryView(
        users=(DirectoryUser("123456", "CN=123456"), DirectoryUser("h.admin", "CN=h"))
    )
    out = classify_all(view, p, local_names={"lt.student", "root"})
    assert set(out) == {"123456@example.lan", "h.admin@example.lan", "lt.student"}
    assert out["lt.student"].role == "student" and out["lt.student"].rule == "member"
    assert out["h.admin@example.lan"].role == "admin"


def test_same_input_same_output(policy):
    users = tuple(
        DirectoryUser(a, f"CN={a}", member_of=g, disabled=dis) for a, g, dis, _, _ in TABLE
    )
    view = DirectoryView(users=users, group_parents=PARENTS)
    first = classify_all(view, policy, set())
    again = classify_all(DirectoryView(users=users[::-1], group_parents=PARENTS), policy, set())
    assert first == again and list(first) == list(again)


def test_local_explicit_member_takes_the_canonical_nss_name(make_policy):
    """Directory down: '204214' is listed plain, SSSD resolves it as 204214@example.lan."""
    p = make_policy({"members": {"researcher": ["204214"]}})
    out = classify_all(None, p, local_names={"204214@example.lan"})
    assert list(out) == ["204214@example.lan"]
    assert out["204214@example.lan"].role == "researcher"
