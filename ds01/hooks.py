"""The new-user hook point.

When ``ds01 users sync`` sees a user for the first time (or their role
changes), it calls every handler listed in ``NEW_USER_HANDLERS`` in order. A
handler is ``handle(user: LocalUser, policy: Policy) -> None``; it must be
idempotent (it also runs for every user on each deploy) and raise on failure
(the sync logs the failure and carries on with the next user).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ds01.config import Policy


@dataclass(frozen=True)
class LocalUser:
    """A user as the server resolves them (NSS), with the role they were given."""

    name: str  # the Linux name: 'j.doe' or 'j.doe@example.lan'
    uid: int
    gid: int
    home: str
    role: str


# "module:function" of each handler, in the order they run.
NEW_USER_HANDLERS: tuple[str, ...] = (
    "ds01.identity.local:ensure_home",  # first: the others may put things in the home
    "ds01.storage.areas:ensure_user_storage",  # private scratch directory, disk quota
    "ds01.slices:ensure_user_slice",  # container slice, login-session limits
)


def handlers() -> list[tuple[str, Callable[[LocalUser, Policy], None]]]:
    out = []
    for spec in NEW_USER_HANDLERS:
        module, func = spec.split(":")
        out.append((spec, getattr(importlib.import_module(module), func)))
    return out


def run_new_user(user: LocalUser, policy: Policy) -> list[tuple[str, Exception]]:
    """Run every handler for ``user``; return the (handler, error) pairs that failed."""
    failed = []
    for spec, handle in handlers():
        try:
            handle(user, policy)
        except Exception as e:  # one broken handler must not stop the others
            failed.append((spec, e))
    return failed
