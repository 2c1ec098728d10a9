"""Fixture tests of operations/groups.py, operations/privacy.py, operations/sssd.py.

A fixture ``<op>.<case>.json`` holds ``args``, ``facts`` (``{"Fact": {"k=v,...": value}}``,
keys sorted by argument name) and either ``commands`` (exactly what the
operation must yield) or ``exception``; ``noop`` is a substring of the no-op
message. A fixture that yields nothing must report a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from pyinfra.api import OperationError

from operations import groups, privacy, sssd

HERE = Path(__file__).parent
OPS = {
    "exact_members": groups, "users_synced": groups,
    "private_homes": privacy, "sudoers_dropin": privacy,
    "secret_snippet": sssd,
}  # fmt: skip


class FakeHost:
    def __init__(self, facts: dict):
        self.facts, self.noops = facts, []

    def get_fact(self, cls, **kwargs):
        key = ",".join(f"{k}={_key(v)}" for k, v in sorted(kwargs.items()))
        table = self.facts[cls.__name__]
        assert key in table, f"fixture lacks {cls.__name__}[{key}]: has {sorted(table)}"
        return table[key]

    def noop(self, message: str) -> None:
        self.noops.append(message)


def _key(v) -> str:
    return "[" + ",".join(map(str, v)) + "]" if isinstance(v, list | tuple) else str(v)


@pytest.mark.parametrize("fixture", sorted(HERE.glob("*.json")), ids=lambda p: p.stem)
def test_operation(fixture):
    spec = json.loads(fixture.read_text())
    name = fixture.stem.split(".")[0]
    module = OPS[name]
    fake = FakeHost(spec.get("facts", {}))
    with mock.patch.object(module, "host", fake):
        op = getattr(module, name)._inner
        if "exception" in spec:
            with pytest.raises(OperationError, match=spec["exception"]):
                list(op(**spec["args"]))
            return
        commands = [c.get_raw_value() for c in op(**spec["args"])]
    assert commands == spec["commands"]
    assert bool(fake.noops) == (not commands), fake.noops
    if "noop" in spec:
        assert spec["noop"] in fake.noops[0]


def test_membership_change_is_one_command_for_any_number_of_users():
    many = [f"{100000 + i}@example.lan" for i in range(10000)]
    fake = FakeHost(
        {
            "GroupMembers": {
                "groups=[ds01-student]": {"ds01-student": {"gid": 1001, "members": many[:5000]}}
            }
        }
    )
    with mock.patch.object(groups, "host", fake):
        cmds = list(groups.exact_members._inner(group="ds01-student", members=many))
    assert len(cmds) == 1 and cmds[0].get_raw_value().count(",") == 9999
