"""systemd slices: ``ds01.slice`` -> ``ds01-<role>.slice`` -> one slice per user.

Containers of a user run in their user slice (docker's cgroup parent is
:func:`ds01.names.user_slice`); their processes outside containers (SSH, VS
Code remote, cron) run in logind's ``user-<uid>.slice``, which gets a drop-in
with the role's ``login`` limits. Every limit comes from the policy (the role,
then the user's override); ``null`` is ``infinity``.

The deploy (``deploys/slices.py``) writes these files for every known user;
:func:`ensure_user_slice` (a new-user hook) does the same for one user without
a deploy. Both render through this module, so the two cannot drift.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from ds01.config import Policy, SliceLimits
from ds01.hooks import LocalUser
from ds01.names import ROOT_SLICE, role_slice, user_slice

UNIT_DIR = "/etc/systemd/system"
LOGIN_DROPIN = "50-ds01-login.conf"
MARK = "# Managed by ds01-infra"
HEADER = f"{MARK} (deploys/slices.py, rendered by ds01/slices.py); local edits are overwritten.\n"


def properties(lim: SliceLimits) -> list[str]:
    """The ``[Slice]`` lines for ``lim`` (accounting on, so usage is visible)."""

    def inf(v: int | None) -> str:
        return "infinity" if v is None else str(v)

    lines = ["CPUAccounting=yes", "MemoryAccounting=yes", "TasksAccounting=yes", "IOAccounting=yes"]
    lines.append(f"CPUQuota={lim.cpu_quota}%" if lim.cpu_quota is not None else "CPUQuota=")
    lines += [f"MemoryHigh={inf(lim.memory_high)}", f"MemoryMax={inf(lim.memory_max)}",
              f"TasksMax={inf(lim.tasks_max)}"]  # fmt: skip
    if lim.io_weight is not None:
        lines.append(f"IOWeight={lim.io_weight}")
    return lines


def _unit(description: str, body: list[str]) -> str:
    return (
        HEADER
        + f"[Unit]\nDescription={description}\n\n[Slice]\n"
        + "".join(f"{line}\n" for line in body)
        + "\n[Install]\nWantedBy=multi-user.target\n"
    )


def root_unit(policy: Policy) -> str:
    return _unit(
        f"{policy.site.name}: all users' containers",
        ["CPUAccounting=yes", "MemoryAccounting=yes", "TasksAccounting=yes"],
    )


def role_unit(policy: Policy, role: str) -> str:
    return _unit(
        f"{policy.site.name}: containers of role {role}",
        ["CPUAccounting=yes", "MemoryAccounting=yes", "TasksAccounting=yes"],
    )


def user_unit(policy: Policy, role: str, user: str) -> str:
    lim = policy.limits_for(role, user).user_slice
    return _unit(f"{policy.site.name}: containers of {user} ({role})", properties(lim))


def login_dropin(policy: Policy, role: str, user: str) -> str:
    lim = policy.limits_for(role, user).login
    return (
        HEADER
        + f"# {user} ({role}): processes outside containers (SSH, VS Code remote, cron)\n"
        + "[Slice]\n"
        + "".join(f"{line}\n" for line in properties(lim))
    )


def login_dropin_path(uid: int) -> str:
    return f"{UNIT_DIR}/user-{uid}.slice.d/{LOGIN_DROPIN}"


def unit_files(policy: Policy, users: dict[str, tuple[int, str]]) -> dict[str, str]:
    """Every file the slices deploy owns: path -> content.

    + users: user name -> (uid, role)
    """
    files = {f"{UNIT_DIR}/{ROOT_SLICE}": root_unit(policy)}
    for role in policy.roles:
        files[f"{UNIT_DIR}/{role_slice(role)}"] = role_unit(policy, role)
    for user, (uid, role) in sorted(users.items()):
        files[f"{UNIT_DIR}/{user_slice(role, user)}"] = user_unit(policy, role, user)
        files[login_dropin_path(uid)] = login_dropin(policy, role, user)
    return files


def slices_to_start(policy: Policy, users: dict[str, tuple[int, str]]) -> list[str]:
    """The slices that must be enabled and active, parents first."""
    return [ROOT_SLICE, *(role_slice(r) for r in policy.roles),
            *(user_slice(role, u) for u, (_, role) in sorted(users.items()))]  # fmt: skip


def is_managed(path: str) -> bool:
    """A unit file or drop-in this module owns (a stale one may be removed)."""
    name = os.path.basename(path)
    return (
        name == LOGIN_DROPIN
        and re.fullmatch(r"user-\d+\.slice\.d", os.path.basename(os.path.dirname(path))) is not None
    ) or (name.startswith("ds01") and name.endswith(".slice"))


# --------------------------------------------------------------------------
# On the server: the new-user hook
# --------------------------------------------------------------------------


def _write_if_changed(path: str, content: str) -> bool:
    try:
        with open(path) as f:
            if f.read() == content:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".ds01-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def _systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], check=True, capture_output=True, text=True)


def _is_active(unit: str) -> bool:
    proc = subprocess.run(["systemctl", "is-active", "--quiet", unit])
    return proc.returncode == 0


def ensure_user_slice(user: LocalUser, policy: Policy) -> None:
    """New-user hook: ``user``'s slice and login drop-in, written, loaded and
    started; a slice of their previous role is removed. Idempotent: files that
    are already right are not rewritten and systemd is not reloaded."""
    users = {user.name: (user.uid, user.role)}
    wanted = unit_files(policy, users)
    changed = [p for p, content in wanted.items() if _write_if_changed(p, content)]
    for role in policy.roles:
        if role != user.role:
            old = f"{UNIT_DIR}/{user_slice(role, user.name)}"
            if os.path.exists(old):
                subprocess.run(
                    ["systemctl", "disable", "--no-reload", os.path.basename(old)],
                    capture_output=True,
                )
                os.unlink(old)
                changed.append(old)
    if changed:
        _systemctl("daemon-reload")
    for unit in slices_to_start(policy, users):
        if not _is_active(unit):
            _systemctl("enable", "--now", unit)
