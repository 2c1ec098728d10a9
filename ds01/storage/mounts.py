"""Where users' files live, mounted ``nosuid,nodev``.

A container can write files owned by root (an admin's, or one that slipped
past a rule): a set-uid binary or a device node written into a home or a
shared area must be inert on the host. Each path below is made a mount point
of its own (a bind mount onto itself when it is not one) and remounted with
``nosuid,nodev``; only that mount's flags change, so the filesystem's quota
options stay as they are.
"""

from __future__ import annotations

from ds01.config import Policy

FLAGS = ("nosuid", "nodev")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def nosuid_paths(policy: Policy) -> list[str]:
    """The fewest paths whose mounts cover every home and storage area."""
    wanted = [policy.identity.home.root]
    if policy.storage.quota_filesystem:
        wanted.append(policy.storage.quota_filesystem)
    wanted += [a.path for a in policy.storage.areas.values()]
    out: list[str] = []
    for p in sorted(set(wanted), key=lambda p: (p.count("/"), p)):
        if not any(_under(p, root) for root in out):
            out.append(p)
    return out
