"""What every storage area should look like, derived from the policy alone.

The deploy (``deploys/storage.py``) converges the server to this plan and the
new-user hook (:func:`ensure_user_storage`) applies the per-user part of it, so
both read one set of rules:

* ``readonly`` and ``collaborative`` areas: each role in ``read`` gets ``r-x``,
  each role in ``write`` gets ``rwx``, each maintainer ``rwx``; everyone else
  nothing. The same entries are the default ACL, so what anyone creates inside
  stays readable (and, in a collaborative area, writable) by the same roles.
  setgid keeps the area's group on new files; ``sticky`` lets only a file's
  owner delete or rename it.
* ``scratch``: the roles may only traverse the root (``--x``: nobody lists who
  has scratch space); each user of a ``write`` role owns a private
  ``<root>/<user>`` (mode 0700).
* ``projects``: the root as above plus ``--x`` for every project member; each
  project directory is ``rwx`` for its members only (also by default ACL).

The owning ``group`` only says who owns the files: it gets the access of the
role behind it (``ds01-admin`` -> the ``admin`` role's), nothing otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ds01.config import Area, Policy
from ds01.hooks import LocalUser
from ds01.names import role_group

WRITE, READ, TRAVERSE, NONE = "rwx", "r-x", "--x", "---"
USER_DIR_MODE = 0o700


@dataclass(frozen=True)
class DirPlan:
    """One directory of an area: owner, group, exact ACL and special bits."""

    area: str
    path: str
    owner: str
    group: str
    access: dict[str, str]
    default: dict[str, str] = field(default_factory=dict)
    setgid: bool = False
    sticky: bool = False


def _role_perm(area: Area, role: str) -> str:
    if role in area.write:
        return TRAVERSE if area.kind == "scratch" else WRITE
    if role in area.read:
        return TRAVERSE if area.kind == "scratch" else READ
    return NONE


def _group_perm(area: Area, policy: Policy) -> str:
    for role in policy.roles:
        if role_group(role) == area.group:
            return _role_perm(area, role)
    return NONE


def _root_access(area: Area, policy: Policy) -> dict[str, str]:
    acl = {"user:": WRITE, "group:": _group_perm(area, policy)}
    for role in policy.roles:
        perm = _role_perm(area, role)
        if perm != NONE and role_group(role) != area.group:
            acl[f"group:{role_group(role)}"] = perm
    for user in area.maintainers:
        acl[f"user:{user}"] = WRITE
    if area.kind == "projects":
        for project in area.projects.values():
            for user in project.members:
                acl.setdefault(f"user:{user}", TRAVERSE)
    acl["other:"] = NONE
    return acl


def plan_area(name: str, area: Area, policy: Policy) -> list[DirPlan]:
    """The area's root and, for a projects area, each project directory."""
    access = _root_access(area, policy)
    shared = area.kind in ("readonly", "collaborative")
    root = DirPlan(
        area=name, path=area.path, owner="root", group=area.group, access=access,
        default=dict(access) if shared else {},
        setgid=area.kind != "scratch", sticky=area.sticky,
    )  # fmt: skip
    plans = [root]
    for pname, project in sorted(area.projects.items()):
        acl = {"user:": WRITE, "group:": _group_perm(area, policy)}
        acl.update({f"user:{u}": WRITE for u in project.members})
        acl["other:"] = NONE
        plans.append(DirPlan(
            area=name, path=f"{area.path}/{pname}", owner="root", group=area.group,
            access=acl, default=dict(acl), setgid=True, sticky=area.sticky,
        ))  # fmt: skip
    return plans


def plan(policy: Policy) -> list[DirPlan]:
    """Every managed directory of every area, parents before children."""
    return [d for name, area in policy.storage.areas.items() for d in plan_area(name, area, policy)]


def principals(plans: list[DirPlan]) -> tuple[list[str], list[str]]:
    """The user and group names the plan refers to (each must resolve on the server)."""
    users, groups = set(), set()
    for d in plans:
        groups.add(d.group)
        for key in list(d.access) + list(d.default):
            tag, _, name = key.partition(":")
            if name:
                (users if tag == "user" else groups).add(name)
    return sorted(users), sorted(groups)


def without_users(d: DirPlan, missing: set[str]) -> DirPlan:
    """``d`` without the entries of users that do not exist (yet) on the server."""
    drop = {f"user:{u}" for u in missing}
    return DirPlan(
        area=d.area, path=d.path, owner=d.owner, group=d.group,
        access={k: v for k, v in d.access.items() if k not in drop},
        default={k: v for k, v in d.default.items() if k not in drop},
        setgid=d.setgid, sticky=d.sticky,
    )  # fmt: skip


def scratch_areas(policy: Policy) -> list[Area]:
    return [a for a in policy.storage.areas.values() if a.kind == "scratch"]


def user_dir(area: Area, user: str) -> str:
    """A user's private directory in a scratch area."""
    if "/" in user or user in ("", ".", ".."):
        raise ValueError(f"{user!r} is not a user name that can name a directory")
    return f"{area.path}/{user}"


def user_dirs(policy: Policy, user: str, role: str) -> list[str]:
    """The private scratch directories ``user`` of ``role`` should have."""
    return [user_dir(a, user) for a in scratch_areas(policy) if role in a.write]


def ensure_user_storage(user: LocalUser, policy: Policy) -> None:
    """New-user hook: the user's private scratch directory and disk quota.

    Idempotent; a directory that exists is only corrected (owner, mode), never
    emptied. Refuses to work through a symlink planted where the directory goes.
    """
    from ds01.storage import quota

    for path in user_dirs(policy, user.name, user.role):
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"{parent} does not exist; run the storage deploy first")
        try:
            os.mkdir(path, USER_DIR_MODE)
        except FileExistsError:
            pass
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, user.uid, user.gid)
            os.fchmod(fd, USER_DIR_MODE)
        finally:
            os.close(fd)
    quota.apply_user(policy, user.name, user.role)
