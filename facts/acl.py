"""POSIX ACLs of a path (getfacl) and the NSS names an ACL may refer to."""

from __future__ import annotations

import json
from typing import TypedDict

from pyinfra.api import FactBase, QuoteString, StringCommand


class AclState(TypedDict):
    owner: str
    group: str
    setuid: bool
    setgid: bool
    sticky: bool
    access: dict[str, str]
    default: dict[str, str]


def _flags(text: str) -> tuple[bool, bool, bool]:
    text = text.ljust(3, "-")
    return text[0] == "s", text[1] == "s", text[2] == "t"


class Acl(FactBase[AclState | None]):
    """
    The ACL of one path, as ``getfacl`` prints it, keyed by entry without its
    permissions; ``None`` when the path does not exist. ``mask`` is listed only
    when the ACL has one (it has one exactly when it has named entries).

    + path: the file or directory

    .. code:: python

        {
            "owner": "root", "group": "ds01-researcher",
            "setuid": False, "setgid": True, "sticky": True,
            "access": {"user:": "rwx", "group:": "rwx", "group:ds01-student": "rwx",
                       "mask:": "rwx", "other:": "---"},
            "default": {"user:": "rwx", "group:": "rwx", "group:ds01-student": "rwx",
                        "mask:": "rwx", "other:": "---"},
        }
    """

    @staticmethod
    def default() -> None:
        return None

    def requires_command(self, path: str) -> str:
        return "getfacl"  # deploys/base.py installs acl

    def command(self, path: str) -> StringCommand:
        # -E: no '#effective:' comments; -p: keep the leading '/'.
        return StringCommand("getfacl -E -p --", QuoteString(path), "2>/dev/null || true")

    def process(self, output: list[str]) -> AclState | None:
        return parse_getfacl(output)


def parse_getfacl(lines: list[str]) -> AclState | None:
    """Parse one path's ``getfacl -E`` output (see :class:`Acl`)."""
    state: AclState = {
        "owner": "", "group": "", "setuid": False, "setgid": False, "sticky": False,
        "access": {}, "default": {},
    }  # fmt: skip
    seen = False
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            key, value = key.strip(), value.strip()
            if key in ("owner", "group"):
                state[key] = value  # type: ignore[literal-required]
            elif key == "flags":
                state["setuid"], state["setgid"], state["sticky"] = _flags(value)
            seen = True
            continue
        table = state["access"]
        if line.startswith("default:"):
            table, line = state["default"], line.removeprefix("default:")
        entry, sep, perms = line.rpartition(":")
        if not sep or len(perms) != 3:
            raise ValueError(f"unexpected getfacl line: {raw!r}")
        table[entry] = perms
        seen = True
    return state if seen else None


_NSS_SCRIPT = (
    "import grp, json, pwd, sys\n"
    "n = sys.argv.index('--')\n"
    "users, groups = {}, {}\n"
    "for u in sys.argv[1:n]:\n"
    "    try: p = pwd.getpwnam(u)\n"
    "    except KeyError: continue\n"
    "    try: g = grp.getgrgid(p.pw_gid).gr_name\n"
    "    except KeyError: g = str(p.pw_gid)\n"
    "    users[u] = {'uid': p.pw_uid, 'gid': p.pw_gid, 'home': p.pw_dir, 'group': g,\n"
    "                'shell': p.pw_shell}\n"
    "for g in sys.argv[n + 1:]:\n"
    "    try: e = grp.getgrnam(g); groups[g] = {'gid': e.gr_gid, 'members': sorted(e.gr_mem)}\n"
    "    except KeyError: pass\n"
    "print(json.dumps({'users': users, 'groups': groups}))\n"
)


class NssUser(TypedDict):
    uid: int
    gid: int
    home: str
    group: str  # the primary group's name (its gid as text when it has none)
    shell: str


class NssGroup(TypedDict):
    gid: int
    members: list[str]  # secondary members


class NssNames(TypedDict):
    users: dict[str, NssUser]
    groups: dict[str, NssGroup]


class Nss(FactBase[NssNames]):
    """
    Which of the given user and group names resolve through NSS on the host
    (local files, SSSD, ...). Names that do not resolve are absent. Lookups are
    by name only: a six-digit account name is never mistaken for a UID.

    + users: user names to look up
    + groups: group names to look up

    .. code:: python

        {
            "users": {
                "j.doe@example.lan": {"uid": 200001, "gid": 200000,
                                      "home": "/home/j.doe@example.lan", "group": "200000",
                                      "shell": "/bin/bash"},
            },
            "groups": {"ds01-student": {"gid": 2001, "members": ["123456@example.lan"]}},
        }
    """

    default = dict

    def command(self, users: list[str], groups: list[str]) -> StringCommand:
        args = [QuoteString(u) for u in users] + ["--"] + [QuoteString(g) for g in groups]
        return StringCommand("python3 -c", QuoteString(_NSS_SCRIPT), *args)

    def process(self, output: list[str]) -> NssNames:
        data = json.loads("".join(output) or "{}")
        return {"users": data.get("users", {}), "groups": data.get("groups", {})}
