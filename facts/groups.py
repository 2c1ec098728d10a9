"""The server's local view of groups, through NSS (``getent``), so members
that SSSD or winbind provide are seen the way login sees them."""

from __future__ import annotations

import json
from typing import TypedDict

from pyinfra import context
from pyinfra.api import FactBase, QuoteString, StringCommand

from ds01.identity.local import managed_groups


class GroupEntry(TypedDict):
    gid: int
    members: list[str]


class GroupMembers(FactBase[dict[str, GroupEntry]]):
    """
    The GID and members of each named group that exists; a missing group is
    absent from the result.

    + groups: group names

    .. code:: python

        {
            "ds01-student": {"gid": 1001, "members": ["123456@example.lan", "lt.student"]},
            "docker-users": {"gid": 1005, "members": []},
        }
    """

    default = dict

    def command(self, groups: list[str]) -> StringCommand:
        # getent exits 2 when any name is missing; the others are still printed.
        return StringCommand("getent group", *[QuoteString(g) for g in groups], "; true")

    def process(self, output: list[str]) -> dict[str, GroupEntry]:
        return parse_getent_group(output)


def parse_getent_group(output: list[str]) -> dict[str, GroupEntry]:
    out: dict[str, GroupEntry] = {}
    for line in output:
        parts = line.rstrip("\n").split(":")
        if len(parts) != 4:
            raise ValueError(f"unexpected getent group line: {line!r}")
        name, _, gid, members = parts
        out[name] = {"gid": int(gid), "members": sorted(m for m in members.split(",") if m)}
    return out


class ManagedGroups(FactBase[dict[str, GroupEntry] | None]):
    """
    The GID and members of every group DS01 owns (the policy's role groups
    and docker-users, ``ds01.identity.local.managed_groups`` of
    ``host.data.policy``). Precondition: they all exist. deploys/groups.py
    creates them earlier in the same converge, so while pyinfra plans a fresh
    server this is ``None`` (what depends on it is decided at execution); at
    execution a missing group is an error naming that deploy.

    .. code:: python

        {
            "ds01-student": {"gid": 1001, "members": ["123456@example.lan", "lt.student"]},
            "docker-users": {"gid": 1005, "members": []},
        }
    """

    @staticmethod
    def default() -> None:
        return None

    def check_preconditions(self, state, host) -> str | None:
        # pyinfra passes no fact arguments here, so the names come from the
        # host's policy, in the precondition and the command alike.
        names = managed_groups(host.data.policy)
        missing = sorted(set(names) - set(host.get_fact(GroupMembers, groups=names)))
        if missing:
            return (
                f"group(s) {', '.join(missing)} do not exist; they come from deploys/groups.py: "
                "run deploys/all.py, or that deploy first"
            )
        return None

    def command(self) -> StringCommand:
        return GroupMembers().command(groups=managed_groups(context.host.data.policy))

    def process(self, output: list[str]) -> dict[str, GroupEntry]:
        return parse_getent_group(output)


class UsersSyncPending(FactBase[dict | None]):
    """
    What ``ds01 users sync --dry-run --json`` would do on the server now:
    membership changes, new users still to be set up (home, scratch, slice:
    the new-user hooks), and why removals are refused if they are. ``None``
    when ds01 is not installed yet.

    + ds01: path of the ds01 command on the server

    .. code:: python

        {"changes": [{"action": "add", "group": "ds01-student", "user": "123456@example.lan",
                      "reason": "account matches naming rule '^\\\\d{6}$'"}],
         "new_users": [["123456@example.lan", "student"]],
         "refused": None}
    """


    def requires_command(self, ds01: str = "/usr/local/bin/ds01") -> str:
        # Missing while planning a fresh server (deploys/base.py installs it).
        return ds01

    def command(self, ds01: str = "/usr/local/bin/ds01") -> StringCommand:
        return StringCommand(QuoteString(ds01), "users sync --dry-run --json 2>/dev/null; true")

    def process(self, output: list[str]) -> dict | None:
        text = "\n".join(output).strip()
        if not text:
            return None
        data = json.loads(text)
        return {k: data[k] for k in ("changes", "new_users", "refused")}
