"""Operations planned when they execute, for state an earlier operation of the
same run creates.

pyinfra reads a deploy file, and the facts it asks for there, before any
operation runs. On a fresh server the role groups, the directory users (SSSD)
and the ds01 tools do not exist yet at that point, so whatever depends on
them is planned here instead, from facts read at execution time, and the
first converge is complete: the second one finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pyinfra import host
from pyinfra.api import operation


@operation()
def planned_at_execution(plan: Callable[[], Iterator], what: str):
    """
    Call ``plan`` when this operation executes and yield what it yields:
    commands, or the commands of other operations' ``_inner`` generators.
    ``plan`` reads its facts then, so it sees what earlier operations made.

    + plan: a generator function of no arguments
    + what: what is converged, for the no-op message

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
    for command in plan():
        count += 1
        yield command
    if not count:
        host.noop(f"{what}: already converged")


def role_users(policy) -> dict[str, tuple[int, str]]:
    """
    Every user in a role group as the host resolves them now, with their uid
    and role: ``{"j.doe@example.lan": (200001, "researcher")}``. Call it from
    a ``plan`` function.
    Raises OperationError naming any role group that does not exist.
    """
    from pyinfra.api import OperationError

    from ds01.names import role_group
    from ds01.storage.areas import roles_of_users
    from facts.acl import Nss

    role_groups = [role_group(r) for r in policy.roles]
    nss = host.get_fact(Nss, users=[], groups=role_groups)
    missing = sorted(set(role_groups) - set(nss["groups"]))
    if missing:
        raise OperationError(
            f"group(s) {', '.join(missing)} do not exist; they come from deploys/groups.py: "
            "run deploys/all.py, or that deploy first"
        )
    group_members = {g: nss["groups"][g][1] for g in role_groups}
    members = sorted({u for g in role_groups for u in group_members[g]})
    known = host.get_fact(Nss, users=members, groups=[])["users"]
    roles = roles_of_users(policy, group_members, set(known))
    return {u: (known[u][0], role) for u, role in roles.items()}
