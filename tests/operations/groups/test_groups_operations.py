"""Fixture tests of operations/groups.py, operations/privacy.py, operations/sssd.py.

A fixture ``<op>.<case>.json`` holds ``args``, ``facts`` (``{"Fact": {"k=v,...": value}}``,
keys sorted by argument name) and either ``commands`` (exactly what the
operation must yield) or ``exception``; ``noop`` is a substring of the no-op
message. A fixture that yields nothing must report a no-op.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from harness import FakeHost, run_fixture

from operations import groups, privacy, sssd

HERE = Path(__file__).parent
OPS = {
    "exact_members": groups, "users_synced": groups, "member": groups, "system_user": groups,
    "private_homes": privacy, "sudoers_dropin": privacy,
    "secret_snippet": sssd,
}  # fmt: skip


@pytest.mark.parametrize("fixture", sorted(HERE.glob("*.json")), ids=lambda p: p.stem)
def test_operation(fixture):
    run_fixture(OPS[fixture.stem.split(".")[0]], fixture.stem.split(".")[0], fixture)


def test_membership_change_is_one_command_for_any_number_of_users():
    many = [f"{100000 + i}@example.lan" for i in range(10000)]
    fake = FakeHost(
        {
            "facts.groups.GroupMembers": {
                "groups=[ds01-student]": {"ds01-student": {"gid": 1001, "members": many[:5000]}}
            }
        }
    )
    with mock.patch.object(groups, "host", fake):
        cmds = list(groups.exact_members._inner(group="ds01-student", members=many))
    assert len(cmds) == 1 and cmds[0].get_raw_value().count(",") == 9999
