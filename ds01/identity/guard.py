"""The admin account always keeps sudo.

Two layers: a managed sudoers drop-in (``/etc/sudoers.d/ds01-admin``, checked
with ``visudo -c`` before it is installed) that does not depend on the
``sudo`` group, and membership of the ``sudo`` group itself. ``ds01
admin-guard`` (cron, every few minutes) checks both, restores what is missing
and logs loudly (syslog auth.crit, stderr for cron's mail, the ds01 log).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ds01 import events
from ds01.config import Policy

DROPIN = "/etc/sudoers.d/ds01-admin"
SUDO_GROUP = "sudo"
LOG_FILE = "/var/log/ds01/admin-guard.log"


def sudoers_text(policy: Policy) -> str:
    """The drop-in's content (the deploy installs exactly this text)."""
    admin = policy.identity.admin_account
    return (
        "# Managed by ds01-infra (deploys/privacy.py, restored by `ds01 admin-guard`).\n"
        f"# {admin} is the DS01 admin account (identity.admin_account): it always keeps sudo.\n"
        f"{admin} ALL=(ALL:ALL) ALL\n"
    )


def validate(text: str) -> str | None:
    """None when ``visudo -c`` accepts ``text`` as a sudoers file, else its complaint."""
    with tempfile.NamedTemporaryFile("w", prefix="ds01-sudoers-", delete=False) as f:
        f.write(text)
    try:
        proc = subprocess.run(["visudo", "-cf", f.name], capture_output=True, text=True)
        if proc.returncode == 0:
            return None
        return (proc.stderr + proc.stdout).replace(f.name, "(drop-in)").strip() or "syntax error"
    finally:
        os.unlink(f.name)


def install_dropin(text: str, path: str = DROPIN) -> None:
    """Validate, then install atomically with mode 0440 (sudo ignores anything else)."""
    problem = validate(text)
    if problem:
        raise RuntimeError(f"refusing to install {path}: visudo -c says: {problem}")
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".ds01-admin.", dir=d)  # sudo skips names with a dot
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o440)
    os.chown(tmp, 0, 0)
    os.replace(tmp, path)


def problems(policy: Policy, path: str = DROPIN) -> list[str]:
    admin = policy.identity.admin_account
    out = []
    try:
        pwd.getpwnam(admin)
    except KeyError:
        return [f"admin account {admin} does not exist on this server (identity.admin_account)"]
    try:
        st = os.stat(path)
        if Path(path).read_text() != sudoers_text(policy):
            out.append(f"{path} was changed")
        elif st.st_mode & 0o777 != 0o440 or st.st_uid != 0:
            out.append(f"{path} has the wrong mode or owner")
    except FileNotFoundError:
        out.append(f"{path} was removed")
    try:
        if admin not in grp.getgrnam(SUDO_GROUP).gr_mem:
            out.append(f"{admin} was removed from the {SUDO_GROUP} group")
    except KeyError:
        out.append(f"the {SUDO_GROUP} group does not exist")
    return out


def _loud(msg: str) -> None:
    print(f"ds01 admin-guard: {msg}", file=sys.stderr)
    events.emit("guard_alert", message=msg)
    subprocess.run(["logger", "-p", "auth.crit", "-t", "ds01-admin-guard", msg], check=False)
    try:
        Path(LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
        with open(LOG_FILE, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {msg}\n")
    except OSError:
        pass  # syslog and stderr already carry it


def run(policy: Policy, check_only: bool = False) -> int:
    """0 when all is in place; 1 when something was missing (restored unless check_only)."""
    found = problems(policy)
    if not found:
        return 0
    admin = policy.identity.admin_account
    for p in found:
        _loud(f"ALERT: {p}" + ("" if check_only else "; restoring"))
    if check_only or any("does not exist" in p for p in found):
        return 1
    install_dropin(sudoers_text(policy))
    if any(SUDO_GROUP in p for p in found):
        subprocess.run(["usermod", "-aG", SUDO_GROUP, admin], check=True, capture_output=True)
    left = problems(policy)
    for p in left:
        _loud(f"FAILED to restore: {p}")
    if not left:
        _loud(f"restored sudo for {admin}")
    return 1
