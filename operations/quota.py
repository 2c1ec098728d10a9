"""Set ext4 user block quotas to exactly the limits given (setquota)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from facts.quota import UserQuotas


@operation()
def user_limits(filesystem: str, limits: dict[str, int]):
    """
    Give each user a hard block limit (KiB; 0 lifts the limit) on a filesystem
    mounted with ``usrquota``. Users not listed keep what they have. Nothing
    runs for users whose limit is already right.

    + filesystem: the quota-enabled mount point
    + limits: user name -> hard limit in KiB

    **Example:**

    .. code:: python

        quota.user_limits(
            name="Disk quotas on /srv/ds01",
            filesystem="/srv/ds01",
            limits={"123456@example.lan": 209715200, "j.doe@example.lan": 524288000},
        )
    """
    for user, kib in limits.items():
        if not isinstance(kib, int) or kib < 0:
            raise OperationError(
                f"quota of {user!r} must be a whole number of KiB >= 0, got {kib!r}"
            )
    have = host.get_fact(UserQuotas, filesystem=filesystem)
    todo = {u: k for u, k in sorted(limits.items()) if have.get(u, {}).get("hard_kib", 0) != k
            or have.get(u, {}).get("soft_kib", 0) != 0}  # fmt: skip
    for user, kib in todo.items():
        yield StringCommand(
            "setquota -u", QuoteString(user), "0", str(kib), "0 0", QuoteString(filesystem)
        )
    if not todo:
        host.noop(f"quotas of {len(limits)} users on {filesystem} are already as wanted")
