"""Stopped containers are removed after their role's
``lifecycle.remove_stopped_after``, on a schedule (``schedules.container_cleanup``).

A container counts as stopped from the time it exited (or, never started,
from its creation). Its owner is told at login, :data:`NOTICE_AHEAD` before,
which containers go when (``/etc/profile.d/ds01-container-notice.sh`` shows
the notice this job writes). Containers without an owner (the admins') and
roles without the setting are never removed. Volumes are kept: a container's
data that matters lives in a volume or a bind-mounted folder.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass

from ds01 import events
from ds01.config import Policy
from ds01.docker.policy import OWNER, ROLE
from ds01.docker.prune import parse_docker_time

NOTICE_DIR = "/var/lib/ds01/container-notices"
NOTICE_AHEAD = 86400


@dataclass(frozen=True)
class Stopped:
    id: str
    name: str
    owner: str
    role: str
    since: float  # exited at, or created at when it never ran


@dataclass(frozen=True)
class Plan:
    remove: list[tuple[Stopped, str]]  # (container, why)
    notices: dict[str, list[tuple[Stopped, float]]]  # user -> (container, removed at)


def plan(stopped: list[Stopped], policy: Policy, now: float) -> Plan:
    remove, notices = [], {}
    for c in stopped:
        if c.role not in policy.roles:
            continue
        after = policy.limits_for(c.role, c.owner).lifecycle.remove_stopped_after
        if after is None:
            continue
        due = c.since + after
        if due <= now:
            days = (now - c.since) / 86400
            remove.append((c, f"{c.name} ({c.owner}): stopped {days:.1f} days, {c.role} limit"))
        elif due - now <= NOTICE_AHEAD:
            notices.setdefault(c.owner, []).append((c, due))
    return Plan(remove, notices)


def read_stopped(api) -> list[Stopped]:
    """Owned containers that are not running, from an APIClient on the real socket."""
    out = []
    for row in api.containers(all=True, filters={"status": ["exited", "created", "dead"]}):
        labels = row.get("Labels") or {}
        owner = labels.get(OWNER)
        if not owner:
            continue
        state = (api.inspect_container(row["Id"]).get("State")) or {}
        since = parse_docker_time(state.get("FinishedAt")) or float(row.get("Created") or 0)
        name = (row.get("Names") or ["/" + row["Id"][:12]])[0].lstrip("/")
        out.append(Stopped(row["Id"], name, owner, labels.get(ROLE, ""), since))
    return out


def notice_text(items: list[tuple[Stopped, float]]) -> str:
    lines = ["DS01: these stopped containers of yours will be removed (start them to keep them):"]
    for c, due in sorted(items, key=lambda x: x[1]):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(due))
        lines.append(f"  {c.name:<24} removed after {when}")
    lines.append("  (their volumes and your files stay; docker start NAME keeps a container)")
    return "\n".join(lines) + "\n"


def write_notices(p: Plan, notice_dir: str = NOTICE_DIR) -> None:
    """One 0600 notice per user with containers due soon; stale ones removed."""
    for name in os.listdir(notice_dir):
        if name not in p.notices:
            os.unlink(os.path.join(notice_dir, name))
    for user, items in p.notices.items():
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            continue
        tmp = os.path.join(notice_dir, f".{user}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(notice_text(items))
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.replace(tmp, os.path.join(notice_dir, user))


def cleanup(
    api, policy: Policy, now: float, dry_run: bool = False, notice_dir: str | None = NOTICE_DIR
) -> tuple[Plan, list[str]]:
    """Apply the plan; returns it and the errors (a container that started
    since the plan is not removed: the daemon refuses without force)."""
    p = plan(read_stopped(api), policy, now)
    errors = []
    if not dry_run:
        for c, _ in p.remove:
            try:
                api.remove_container(c.id, v=False, force=False)
            except Exception as e:
                errors.append(f"{c.name}: {getattr(e, 'explanation', None) or e}")
            else:
                events.emit("container_removed", user=c.owner, container=c.name, role=c.role)
        if notice_dir and os.path.isdir(notice_dir):
            write_notices(p, notice_dir)
    return p, errors
