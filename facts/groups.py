"""The server's local view of groups, through NSS (``getent``), so members
that SSSD or winbind provide are seen the way login sees them."""

from __future__ import annotations

import json

from pyinfra.api import FactBase, QuoteString, StringCommand


class GroupMembers(FactBase[dict[str, dict]]):
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

    def process(self, output: list[str]) -> dict[str, dict]:
        out = {}
        for line in output:
            parts = line.rstrip("\n").split(":")
            if len(parts) != 4:
                raise ValueError(f"unexpected getent group line: {line!r}")
            name, _, gid, members = parts
            out[name] = {"gid": int(gid), "members": sorted(m for m in members.split(",") if m)}
        return out


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


    def command(self, ds01: str = "/usr/local/bin/ds01") -> StringCommand:
        return StringCommand("test -x", QuoteString(ds01), "&&", QuoteString(ds01),
                             "users sync --dry-run --json 2>/dev/null; true")  # fmt: skip

    def process(self, output: list[str]) -> dict | None:
        text = "\n".join(output).strip()
        if not text:
            return None
        data = json.loads(text)
        return {k: data[k] for k in ("changes", "new_users", "refused")}
