"""Package maintenance: security upgrades only, what is held back from them,
and the package holds apt itself keeps (``apt-mark hold``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit

# What maintenance.allow_upgrades can let through; held back otherwise. Patterns
# are unattended-upgrades' Package-Blacklist regular expressions (matched at the start).
HELD: dict[str, list[str]] = {
    "nvidia": ["nvidia-", "libnvidia-", "cuda-drivers", "xserver-xorg-video-nvidia"],
    "docker": ["docker.io", "docker-ce", "containerd", "runc"],
    "kernel": ["linux-image-", "linux-headers-", "linux-modules-"],
}


def held_patterns(policy: Policy) -> dict[str, list[str]]:
    """The groups held back from unattended upgrades under this policy."""
    allowed = set(policy.maintenance.allow_upgrades)
    return {group: pats for group, pats in HELD.items() if group not in allowed}


def holds() -> list[str]:
    """Packages apt keeps back (``apt-mark showhold``); [] where apt is absent."""
    try:
        out = subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(out.stdout.split()) if out.returncode == 0 else []


def upgrade(policy: Policy) -> int:
    """The schedule's security upgrade: fresh package lists, then
    unattended-upgrade with the ds01 configuration (security origins only,
    held groups blacklisted, never a reboot)."""
    if not policy.maintenance.security_upgrades:
        print("security upgrades are off (maintenance.security_upgrades: false)")
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", "-q", "update"], env=env)
    if update.returncode != 0:
        print("apt-get update failed: no upgrade this time", file=sys.stderr)
        return update.returncode
    return subprocess.run(["unattended-upgrade", "-v"], env=env).returncode


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("maintenance", help="security upgrades (what the schedule runs)")
    msub = p.add_subparsers(dest="maintenance_command", metavar="ACTION", required=True)
    q = msub.add_parser("upgrade", help="apt-get update, then unattended security upgrades")
    add_policy_option(q)
    q.set_defaults(func=lambda args: upgrade(load_or_exit(args.policy)))
