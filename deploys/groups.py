"""Groups: the role groups and docker-users with their exact membership.
(New users' homes and the cron jobs that keep all this current between
deploys are deploys/users.py, which runs after storage and slices.)

The membership is planned by ds01.identity.sync.plan, the same code
`ds01 users sync` runs from cron on the server, from two facts read there:
the directory's view and the groups as NSS sees them.
"""

from pyinfra import host, logger

from ds01.identity.local import managed_groups
from ds01.identity.sync import desired_from_facts
from facts.directory import DirectoryView
from facts.groups import GroupMembers
from operations import deferred, groups

policy = host.data.policy
names = managed_groups(policy)


def role_members():
    # Read when it runs: on a fresh server, base.py (ds01 on the server) and
    # sssd.py (directory users in NSS) run earlier in the same converge.
    current = {g: set(v["members"]) for g, v in host.get_fact(GroupMembers, groups=names).items()}
    seen = host.get_fact(DirectoryView)
    if seen is None and not host.state.is_executing:
        raise deferred.Undecided("once deploys/base.py has installed ds01 (it reads the directory)")
    desired, refused = desired_from_facts(policy, seen, current)
    if refused:
        logger.warning(f"{host.name}: nobody is removed from the role groups: {refused}")
    for group in names:
        yield from groups.exact_members._inner(group=group, members=desired[group])


deferred.planned_at_execution(
    name=f"Groups {', '.join(names)} with exactly their members",
    plan=role_members,
    what="role groups",
)
