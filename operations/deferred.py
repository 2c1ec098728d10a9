"""Operations planned when they execute, for state an earlier operation of the
same run creates.

pyinfra reads a deploy file, and the facts it asks for there, before any
operation runs; without ``-y`` (and with ``--dry``) it also runs each
operation's body once while preparing, to detect changes. On a fresh server
the role groups, the directory users (SSSD) and the ds01 tools do not exist at
that point. The facts they come from say so the pyinfra way (a precondition or
``requires_command``: their default while planning, an error at execution),
a plan that reads such a default raises :class:`Undecided`, and the plan shows
"decided at execution" instead of failing. At execution the same plan reads
what the earlier operations made, and the first converge is complete: the
second one finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pyinfra import host, logger
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.api.exceptions import FactPreconditionError


class Undecided(Exception):
    """Raised by a plan while pyinfra prepares, when a fact it needs is not
    there yet (its default); the message says what it waits for."""


@operation()
def planned_at_execution(plan: Callable[[], Iterator], what: str):
    """
    Call ``plan`` when this operation executes and yield what it yields:
    commands, or the commands of other operations' ``_inner`` generators.
    ``plan`` reads its facts then, so it sees what earlier operations made.
    While pyinfra prepares, a plan that raises :class:`Undecided` is shown as
    a change decided at execution (and logged with its reason).

    + plan: a generator function of no arguments
    + what: what is converged, for the messages

    **Example:**

    .. code:: python

        def role_members():
            for group, members in desired_members().items():
                yield from groups.exact_members._inner(group=group, members=members)

        deferred.planned_at_execution(
            name="Role groups with their exact members", plan=role_members, what="role groups",
        )
    """
    count = 0
    try:
        for command in plan():
            count += 1
            yield command
    except Undecided as e:
        if host.state.is_executing:  # the facts' preconditions raise before this
            raise OperationError(f"{what}: still undecided at execution: {e}") from None
        logger.info(f"{host.print_prefix}{what}: decided at execution, {e}")
        # Counts as a change in the plan; prepare only looks at the first command.
        yield StringCommand("true")
        return
    except FactPreconditionError as e:
        raise OperationError(f"{what}: {e.reason}") from None
    if not count:
        host.noop(f"{what}: already converged")


def managed_groups_now() -> dict:
    """The managed groups (facts.groups.ManagedGroups) as they are now.
    Raises Undecided while pyinfra plans a server that does not have them yet."""
    from facts.groups import ManagedGroups

    groups = host.get_fact(ManagedGroups)
    if groups is None:
        raise Undecided("once deploys/groups.py has created the role groups")
    return groups


def role_users(policy) -> dict[str, tuple[int, str]]:
    """
    Every user in a role group as the host resolves them now, with their uid
    and role: ``{"j.doe@example.lan": (200001, "researcher")}``. Call it from
    a ``plan`` function.
    Raises Undecided while planning a server without the role groups; at
    execution a missing role group is an OperationError naming deploys/groups.py.
    """
    from ds01.identity.roles import Roles
    from ds01.names import role_group
    from facts.acl import Nss

    groups = managed_groups_now()
    role_groups = [role_group(r) for r in policy.roles]
    group_members = {g: groups[g]["members"] for g in role_groups}
    # The groups' members (canonical names: deploys/groups.py put them there).
    members = sorted({u for g in role_groups for u in group_members[g]})
    known = host.get_fact(Nss, users=members, groups=[])["users"]
    roles = Roles(policy).of_users(group_members, set(known))
    return {u: (known[u]["uid"], role) for u, role in roles.items()}
