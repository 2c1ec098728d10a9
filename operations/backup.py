"""The backup repository: created once, never re-initialised."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from facts.backup import BackupRepository


@operation()
def repository(repository: str):
    """
    Create the password file (if absent) and the restic repository, only when
    ``restic cat config`` finds none: an existing repository is never
    initialised again, whatever else fails (``ds01 backup init`` checks once
    more at execution).

    + repository: the policy's ``backup.repository`` (shown in the plan)

    **Example:**

    .. code:: python

        backup.repository(name="Backup repository", repository="/srv/backup")
    """
    if host.get_fact(BackupRepository) == "ready":
        host.noop(f"restic repository {repository} opens with its password")
        return
    yield StringCommand("/usr/local/bin/ds01", "backup", "init")
