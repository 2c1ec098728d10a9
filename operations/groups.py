"""Linux groups with an exact membership, at a constant cost per change."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from facts.acl import Nss
from facts.groups import GroupMembers, UsersSyncPending

# What shadow's tools accept in a member list (a comma or colon would corrupt /etc/group).
_MEMBER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?$")


@operation()
def exact_members(group: str, members: list[str]):
    """
    Make ``group`` exist and hold exactly ``members``: nobody else, nobody
    missing. Whatever the number of users, a change costs at most two remote
    commands (``groupadd`` when the group is missing, then one ``groupmod
    -U``, which rewrites the member list under shadow's lock).

    + group: group name
    + members: user names as NSS resolves them (each must resolve on the host)

    **Example:**

    .. code:: python

        groups.exact_members(
            name="Role group ds01-student",
            group="ds01-student",
            members=["123456@example.lan", "lt.student"],
        )
    """
    bad = [m for m in members if not _MEMBER.match(m)]
    if bad or not _MEMBER.match(group):
        raise OperationError(f"refusing unsafe names for group {group!r}: {bad or [group]}")
    want = sorted(set(members))
    have = host.get_fact(GroupMembers, groups=[group]).get(group)
    if have is not None and have["members"] == want:
        host.noop(f"{group} already has exactly its {len(want)} member(s)")
        return
    if have is None:
        yield StringCommand("groupadd", QuoteString(group))
    if have is not None or want:
        yield StringCommand("groupmod -U", QuoteString(",".join(want)), QuoteString(group))


@operation()
def member(user: str, group: str):
    """
    Make ``user`` a secondary member of the existing ``group``, leaving its
    other members as they are (pyinfra's ``server.user`` would read every
    local account, with an NSS lookup of each one's groups, to decide this).

    + user: user name as NSS resolves it
    + group: an existing group

    **Example:**

    .. code:: python

        groups.member(name="The admin is in sudo", user="datasciencelab", group="sudo")
    """
    if not (_MEMBER.match(user) and _MEMBER.match(group)):
        raise OperationError(f"refusing unsafe names: user {user!r}, group {group!r}")
    have = host.get_fact(GroupMembers, groups=[group]).get(group)
    if have is None:
        raise OperationError(f"group {group!r} does not exist on the server")
    if user in have["members"]:
        host.noop(f"{user} is already in {group}")
        return
    yield StringCommand("gpasswd -a", QuoteString(user), QuoteString(group), ">/dev/null")


@operation()
def system_user(user: str, shell: str = "/usr/sbin/nologin", home: str = "/nonexistent"):
    """
    A system account for a service: created (``useradd --system``, its own
    group, no home made) when missing; its shell and home set when they differ.

    + user: account name
    + shell: login shell
    + home: home directory (not created)

    **Example:**

    .. code:: python

        groups.system_user(name="Exporter system user ds01-exporter", user="ds01-exporter")
    """
    if not _MEMBER.match(user):
        raise OperationError(f"refusing unsafe user name {user!r}")
    have = host.get_fact(Nss, users=[user], groups=[])["users"].get(user)
    if have is None:
        yield StringCommand("useradd --system --user-group --no-create-home",
                            "--shell", QuoteString(shell), "--home-dir", QuoteString(home),
                            QuoteString(user))  # fmt: skip
        return
    if have["shell"] == shell and have["home"] == home:
        host.noop(f"system user {user} exists")
        return
    yield StringCommand("usermod --shell", QuoteString(shell), "--home", QuoteString(home),
                        QuoteString(user))  # fmt: skip


@operation()
def users_synced(ds01: str = "/usr/local/bin/ds01"):
    """
    Run ``ds01 users sync`` on the server when it has something to do: role
    changes the deploy's own plan could not know yet, or new users whose
    new-user hooks (home, scratch, slice) have not run. A refused sync (the
    directory unreachable or shrunk) is reported, not run: it removes nobody.

    + ds01: path of the ds01 command on the server

    **Example:**

    .. code:: python

        groups.users_synced(name="New users set up by ds01 users sync")
    """
    pending = host.get_fact(UsersSyncPending, ds01=ds01)
    if pending is not None and pending["refused"]:
        host.noop(f"sync refused on the server, nobody removed: {pending['refused']}")
        return
    if pending is not None and not pending["changes"] and not pending["new_users"]:
        host.noop("users are in sync with the directory")
        return
    yield StringCommand(QuoteString(ds01), "users sync", ">/dev/null")
