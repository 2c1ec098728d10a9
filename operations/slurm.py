"""Slurm's accounting database converged on the policy's roles and users."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from ds01.cluster import accounts
from facts.slurm import SlurmAccounting


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
