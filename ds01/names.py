"""One vocabulary: every name derived from a role or a user is built here.

A role is one of ``student|researcher|faculty|admin`` (as declared in the
policy file); its Linux group is ``ds01-<role>``; its systemd slice nests under
``ds01.slice``. A dash in a slice name means nesting, so user names (which hold
dots, ``@`` and dashes) are escaped the way ``systemd-escape`` does it.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

PREFIX = "ds01"
ROOT_SLICE = f"{PREFIX}.slice"
DOCKER_USERS_GROUP = "docker-users"

_UNIT_SAFE = set(string.ascii_letters + string.digits + ":_.")
_ESCAPED = re.compile(rb"\\x([0-9a-fA-F]{2})")


def role_group(role: str) -> str:
    """Linux group of a role: ``role_group("student") == "ds01-student"``."""
    return f"{PREFIX}-{role}"


def systemd_escape(text: str) -> str:
    """Escape ``text`` as ``systemd-escape`` does (not in --path mode).

    >>> systemd_escape("j.doe@example.lan")
    'j.doe\\\\x40example.lan'
    >>> systemd_escape("a-b")
    'a\\\\x2db'
    """
    out = []
    for i, ch in enumerate(text):
        if ch == "/":
            out.append("-")
        elif ch in _UNIT_SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)


@lru_cache(maxsize=4096)  # the exporter unescapes every user's slice name on every scrape
def systemd_unescape(text: str) -> str:
    """The inverse of :func:`systemd_escape`: ``j.doe\\x40example.lan`` -> ``j.doe@example.lan``."""
    if "\\x" not in text:
        return text
    raw = _ESCAPED.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode())
    return raw.decode(errors="replace")


def role_slice(role: str) -> str:
    """Slice of a role: ``ds01-student.slice`` (child of ``ds01.slice``)."""
    return f"{PREFIX}-{systemd_escape(role)}.slice"


def user_slice(role: str, user: str) -> str:
    """Slice of one user inside their role's slice.

    ``user_slice("student", "123456@example.lan")`` is
    ``ds01-student-123456\\x40example.lan.slice``.
    """
    return f"{PREFIX}-{systemd_escape(role)}-{systemd_escape(user)}.slice"


def slice_cgroup_path(slice_name: str) -> str:
    """The cgroup v2 path systemd gives a slice, relative to /sys/fs/cgroup.

    ``a-b-c.slice`` lives at ``a.slice/a-b.slice/a-b-c.slice``.
    """
    stem = slice_name.removesuffix(".slice")
    parts = stem.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def cron_file(job: str) -> str:
    """The cron file of a scheduled job (its key in the policy's ``schedules``):
    ``cron_file("users_sync") == "/etc/cron.d/ds01-users-sync"``."""
    return f"/etc/cron.d/{PREFIX}-{job.replace('_', '-')}"


def slurm_account(role: str) -> str:
    """Slurm account of a role (issue 14): ``slurm_account("student") == "ds01-student"``."""
    return f"{PREFIX}-{role}"


def slurm_qos(role: str) -> str:
    """Slurm QOS holding a role's limits: ``slurm_qos("student") == "ds01-student"``."""
    return f"{PREFIX}-{role}"


SLURM_USER_QOS_PREFIX = f"{PREFIX}-uid"


def slurm_user_qos(uid: int) -> str:
    """Slurm QOS of one user with a policy override: ``ds01-uid200001`` (by uid:
    Slurm's QOS names need no escaping then, whatever the user name holds)."""
    return f"{SLURM_USER_QOS_PREFIX}{uid}"
