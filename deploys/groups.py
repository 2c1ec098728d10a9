"""Groups: the role groups and docker-users with their exact membership, the
new-user set-up, and the cron jobs that keep both current between deploys.

The membership is planned by ds01.identity.sync.plan, the same code
`ds01 users sync` runs from cron on the server, from two facts read there:
the directory's view and the groups as NSS sees them.
"""

from pyinfra import host, logger
from pyinfra.operations import files

from deploys._support import REPO
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

groups.users_synced(name="New users set up (home, scratch, slice) by `ds01 users sync`")

for job, command in (("users_sync", "ds01 users sync"), ("users_report", "ds01 users report --save")):
    unit = f"ds01-{job.replace('_', '-')}"
    files.template(
        name=f"Cron job /etc/cron.d/{unit} ({getattr(policy.schedules, job)})",
        src=str(REPO / "templates/identity/cron.j2"),
        dest=f"/etc/cron.d/{unit}",
        user="root", group="root", mode="0644",
        deploy="deploys/groups.py", job=job, schedule=getattr(policy.schedules, job),
        command=f"/usr/local/bin/{command}",
    )
