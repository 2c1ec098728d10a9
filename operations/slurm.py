"""Slurm's accounting database converged on the policy's roles and users."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from ds01.cluster import accounts
from facts.slurm import MariaDbUserPlugin, SlurmAccounting
from operations.deferred import Undecided


@operation()
def accounting(want: dict):
    """
    Make slurmdbd hold exactly the accounts, QOS and user associations of
    ``want``: reads ``sacctmgr show`` (facts.slurm.SlurmAccounting), runs
    ``sacctmgr -i`` only for what differs (``ds01.cluster.accounts.plan``).
    A slurmdbd that does not answer is an error, never an empty database:
    nobody is removed on a partial view.

    + want: ``ds01.cluster.accounts.desired_to_json(desired(policy, user_roles))``

    **Example:**

    .. code:: python

        slurm.accounting(
            name="Slurm accounts and QOS of the roles, users associated",
            want=accounts.desired_to_json(accounts.desired(policy, user_roles)),
        )
    """
    desired = accounts.desired_from_json(want)
    sections = host.get_fact(SlurmAccounting, cluster=desired.cluster)
    if sections is None:
        raise OperationError(
            "sacctmgr got no complete answer from slurmdbd: check `systemctl status slurmdbd` "
            "on the controller (nothing was changed)"
        )
    try:
        state = accounts.parse_state(sections)
    except ValueError as e:
        raise OperationError(f"unreadable sacctmgr output: {e}") from None
    commands = accounts.plan(desired, state)
    if not commands:
        host.noop(
            f"Slurm accounting holds {len(desired.accounts)} accounts and "
            f"{len(desired.users)} users as the policy says"
        )
        return
    for argv in commands:
        yield StringCommand(*(QuoteString(a) for a in argv))


_DB_USER = re.compile(r"^[a-z][a-z0-9_]*$")


@operation()
def socket_database_user(user: str, database: str):
    """
    A MariaDB user ``user``@localhost that logs in by Unix socket as the
    system user of the same name (no password anywhere), with all privileges
    on ``database``, which exists. MariaDB must run when this is planned: on a
    fresh controller it does not yet while pyinfra prepares, and this raises
    ``operations.deferred.Undecided``, so plan it at execution.

    + user: system and database user (``slurm``)
    + database: its database

    **Example:**

    .. code:: python

        deferred.planned_at_execution(
            name="MariaDB user slurm (unix_socket)", what="MariaDB user slurm",
            plan=lambda: slurm.socket_database_user._inner(user="slurm",
                                                           database="slurm_acct_db"),
        )
    """
    if not (_DB_USER.match(user) and _DB_USER.match(database)):
        raise OperationError(f"refusing unsafe database names {user!r}, {database!r}")
    plugin = host.get_fact(MariaDbUserPlugin, user=user)
    if plugin is None:
        raise Undecided("once MariaDB runs (the user table cannot be read before)")
    sql = []
    if not plugin:
        sql.append(f"CREATE USER '{user}'@'localhost' IDENTIFIED VIA unix_socket")
    elif plugin != "unix_socket":
        sql.append(f"ALTER USER '{user}'@'localhost' IDENTIFIED VIA unix_socket")
    if sql:
        sql += [
            f"CREATE DATABASE IF NOT EXISTS `{database}`",
            f"GRANT ALL ON `{database}`.* TO '{user}'@'localhost'",
        ]
        yield StringCommand("mysql -e", QuoteString("; ".join(sql)))
    else:
        host.noop(f"MariaDB user {user} logs in by socket")
