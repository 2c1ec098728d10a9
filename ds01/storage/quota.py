"""ext4 user quotas per role, and reading a user's usage against them.

The per-role figures come from the one area that sets ``quota`` (the policy
check guarantees there is at most one, on ``storage.quota_filesystem``). The
quota is a hard limit on blocks: writing past it fails with "Disk quota
exceeded". Users whose role has no figure get no limit (0).
"""

from __future__ import annotations

import csv
import subprocess
from dataclasses import dataclass

from ds01.config import Area, Policy

KIB = 1024


def quota_area(policy: Policy) -> Area | None:
    for area in policy.storage.areas.values():
        if area.quota:
            return area
    return None


def limit_kib(policy: Policy, role: str) -> int:
    """The hard block limit of a user of ``role`` in KiB (0: none)."""
    area = quota_area(policy)
    if area is None or role not in area.quota:
        return 0
    return -(-area.quota[role] // KIB)  # round up: never below what the policy grants


def setquota_args(filesystem: str, user: str, kib: int) -> list[str]:
    return ["setquota", "-u", user, "0", str(kib), "0", "0", filesystem]


@dataclass(frozen=True)
class Usage:
    name: str
    used_kib: int
    soft_kib: int
    hard_kib: int
    files: int


def parse_repquota_csv(text: str) -> dict[str, Usage]:
    """``repquota -u -C -O csv FS`` -> name -> usage and limits (KiB)."""
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if not rows:
        return {}
    head = rows[0]
    if head[:1] != ["User"] and head[:1] != ["Group"]:
        raise ValueError(f"unexpected repquota header: {','.join(head)!r}")
    col = {name: i for i, name in enumerate(head)}
    out = {}
    for row in rows[1:]:
        if len(row) != len(head):
            raise ValueError(f"unexpected repquota line: {','.join(row)!r}")
        name = row[col[head[0]]].lstrip("#")  # '#1234': a UID without a name
        out[name] = Usage(
            name=name,
            used_kib=int(row[col["BlockUsed"]]),
            soft_kib=int(row[col["BlockSoftLimit"]]),
            hard_kib=int(row[col["BlockHardLimit"]]),
            files=int(row[col["FileUsed"]]),
        )
    return out


REPQUOTA = ("repquota", "-u", "-C", "-O", "csv")  # -C: a name lookup per user, which
# finds directory users (SSSD does not enumerate; without it they show as '#UID')


def read_usages(filesystem: str) -> dict[str, Usage]:
    """Every user's usage and limits on ``filesystem`` (root only)."""
    proc = subprocess.run([*REPQUOTA, filesystem], capture_output=True, text=True, check=True)
    return parse_repquota_csv(proc.stdout)


def apply_user(policy: Policy, user: str, role: str) -> None:
    """Set ``user``'s limit on the quota filesystem (new-user hook; idempotent)."""
    fs = policy.storage.quota_filesystem
    if fs is None or quota_area(policy) is None:
        return
    subprocess.run(
        setquota_args(fs, user, limit_kib(policy, role)), check=True, capture_output=True, text=True
    )


def usage_of(policy: Policy, user: str) -> Usage | None:
    """A user's usage on the quota filesystem (works for the user themself,
    and for root about anyone); ``None`` when no quota filesystem is set."""
    fs = policy.storage.quota_filesystem
    if fs is None:
        return None
    proc = subprocess.run(
        ["quota", "-u", "-w", "-p", "-v", "--show-mntpoint", "--hide-device", user],
        capture_output=True,
        text=True,
    )
    return parse_quota_output(proc.stdout, fs, user)


def parse_quota_output(text: str, filesystem: str, user: str) -> Usage | None:
    """Parse ``quota -u -w -p -v --show-mntpoint --hide-device USER``: the line
    of ``filesystem``. Block figures are KiB; an exceeded figure ends in '*'."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == filesystem and len(parts) >= 8:
            num = [int(p.rstrip("*")) for p in parts[1:]]
            # blocks quota limit grace files quota limit grace
            return Usage(name=user, used_kib=num[0], soft_kib=num[1], hard_kib=num[2], files=num[4])
    return None
