"""Slice units rendered from the policy; names through ds01.names only."""

import yaml

from ds01 import slices
from ds01.config import parse_policy
from ds01.names import slice_cgroup_path, user_slice

USERS = {
    "123456@example.lan": (1001, "student"),
    "j.doe@example.lan": (1002, "researcher"),
    "c.rivera": (1003, "student"),  # has an override in the policy
    "a-b.c": (1004, "faculty"),  # a dash would mean nesting if not escaped
}


def test_unit_names_escape_dots_at_and_dashes(policy):
    files = slices.unit_files(policy, USERS)
    assert "/etc/systemd/system/ds01-student-123456\\x40example.lan.slice" in files
    assert "/etc/systemd/system/ds01-faculty-a\\x2db.c.slice" in files
    # the dash inside the user name does not create another level of nesting
    assert slice_cgroup_path(user_slice("faculty", "a-b.c")) == (
        "ds01.slice/ds01-faculty.slice/ds01-faculty-a\\x2db.c.slice"
    )


def test_user_slice_limits_from_role(policy):
    text = slices.unit_files(policy, USERS)[
        "/etc/systemd/system/ds01-researcher-j.doe\\x40example.lan.slice"
    ]
    assert text.startswith(slices.MARK)
    assert "CPUQuota=4800%\n" in text
    assert f"MemoryMax={128 * 1024**3}\n" in text and f"MemoryHigh={120 * 1024**3}\n" in text
    assert "TasksMax=16384\n" in text and "IOWeight" not in text


def test_admin_slice_has_no_limits(policy):
    text = slices.user_unit(policy, "admin", "h.admin")
    assert (
        "CPUQuota=\n" in text and "MemoryMax=infinity\n" in text and "TasksMax=infinity\n" in text
    )


def test_login_dropin_per_uid_with_login_limits(policy):
    files = slices.unit_files(policy, USERS)
    text = files["/etc/systemd/system/user-1001.slice.d/50-ds01-login.conf"]
    assert "CPUQuota=400%\n" in text and f"MemoryMax={16 * 1024**3}\n" in text
    assert "TasksMax=1024\n" in text and "[Install]" not in text


def test_per_user_override_wins(policy_text):
    data = yaml.safe_load(policy_text)
    data["overrides"]["c.rivera"]["user_slice"] = {"memory_max": "72g", "io_weight": 200}
    p = parse_policy(yaml.safe_dump(data))
    text = slices.user_unit(p, "student", "c.rivera")
    assert f"MemoryMax={72 * 1024**3}\n" in text and "IOWeight=200\n" in text
    assert "CPUQuota=3200%\n" in text  # not overridden: the role's


def test_slices_to_start_parents_first(policy):
    order = slices.slices_to_start(policy, USERS)
    assert order[0] == "ds01.slice"
    assert order.index("ds01-student.slice") < order.index(
        "ds01-student-123456\\x40example.lan.slice"
    )


def test_is_managed_only_our_files():
    assert slices.is_managed("/etc/systemd/system/ds01-student-x.slice")
    assert slices.is_managed("/etc/systemd/system/user-1001.slice.d/50-ds01-login.conf")
    assert not slices.is_managed("/etc/systemd/system/user-1001.slice.d/other.conf")
    assert not slices.is_managed("/etc/systemd/system/user.slice")
