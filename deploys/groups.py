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
from operations import groups

policy = host.data.policy
names = managed_groups(policy)
current = {g: set(v["members"]) for g, v in host.get_fact(GroupMembers, groups=names).items()}
desired, refused = desired_from_facts(policy, host.get_fact(DirectoryView), current)
if refused:
    logger.warning(f"{host.name}: nobody is removed from the role groups: {refused}")

for group in names:
    groups.exact_members(
        name=f"Group {group} with exactly its {len(desired[group])} member(s)",
        group=group,
        members=desired[group],
    )
