"""The server's own view of users and role groups, through NSS (so SSSD and
winbind users are seen exactly as login sees them), and the new-user home.

``role_of`` is what every runtime component asks: which role does this Linux
user hold right now? (ds01.identity.roles decides, from the ``ds01-<role>``
groups read here.)
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from pathlib import Path

from ds01.config import Policy
from ds01.hooks import LocalUser
from ds01.identity import roles
from ds01.names import DOCKER_USERS_GROUP, role_group


def managed_groups(policy: Policy) -> list[str]:
    """The groups whose exact membership DS01 owns, in a stable order."""
    return [role_group(r) for r in policy.roles] + [DOCKER_USERS_GROUP]


def group_members(groups: list[str]) -> dict[str, set[str]]:
    """Members of each group as NSS lists them; a group that does not exist is absent."""
    out = {}
    for g in groups:
        try:
            out[g] = set(grp.getgrnam(g).gr_mem)
        except KeyError:
            continue
    return out


def resolvable(names) -> set[str]:
    """The canonical names (as NSS returns them) of those of ``names`` that
    resolve on this server: with SSSD, ``204214`` resolves as ``204214@example.lan``,
    and only the canonical name may go into a group's member list."""
    out = set()
    for n in names:
        try:
            out.add(pwd.getpwnam(n).pw_name)
        except KeyError:
            continue
    return out


def role_of(user_name: str, policy: Policy) -> str | None:
    """The role ``user_name`` (a user on this server) holds now, from the role
    groups as NSS lists them: ds01.identity.roles decides, for everyone."""
    groups = group_members([role_group(r) for r in policy.roles])
    return roles.role_of(user_name, policy, groups)


def local_user(name: str, role: str) -> LocalUser:
    pw = pwd.getpwnam(name)
    return LocalUser(name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, home=pw.pw_dir, role=role)


def ensure_home(user: LocalUser, policy: Policy) -> None:
    """New-user handler: the home exists, is owned by the user and has the
    policy's mode (0700). A new home gets a copy of /etc/skel. An existing
    home's content is never touched, only its own owner and mode."""
    root = Path(policy.identity.home.root)
    home = Path(user.home)
    if home.parent != root:
        raise ValueError(
            f"{user.name}'s home {home} is not directly under identity.home.root {root}; "
            "fix the account's home (or SSSD's fallback_homedir) before DS01 manages it"
        )
    mode = int(policy.identity.home.mode, 8)
    try:
        st = home.lstat()
    except FileNotFoundError:
        st = None
    if st is None:
        tmp = root / f".{home.name}.ds01-new"
        shutil.rmtree(tmp, ignore_errors=True)
        skel = Path("/etc/skel")
        if skel.is_dir():
            shutil.copytree(skel, tmp, symlinks=True)
        else:
            tmp.mkdir()
        for dirpath, dirnames, filenames in os.walk(tmp):
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), user.uid, user.gid)
        os.chown(tmp, user.uid, user.gid)
        os.chmod(tmp, mode)
        os.rename(tmp, home)  # appears complete or not at all
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{home} exists and is not a directory; leaving it for the admin")
    if st.st_uid != user.uid:
        raise ValueError(
            f"{home} belongs to uid {st.st_uid}, not to {user.name} (uid {user.uid}); "
            "leaving it for the admin (a re-created account or a clash of names)"
        )
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(home, mode)
