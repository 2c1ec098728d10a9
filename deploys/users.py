"""Users: new users set up by `ds01 users sync` (home, then every new-user
hook: scratch, slice, ...) and the cron jobs that sync and report between
deploys. Runs last: the hooks need the storage areas and slices in place.
"""

from pyinfra import host
from pyinfra.operations import files

from deploys._support import REPO
from operations import groups

policy = host.data.policy

groups.users_synced(name="New users set up (home, scratch, slice) by `ds01 users sync`")

for job, command in (
    ("users_sync", "ds01 users sync"),
    ("users_report", "ds01 users report --save"),
):
    unit = f"ds01-{job.replace('_', '-')}"
    files.template(
        name=f"Cron job /etc/cron.d/{unit} ({getattr(policy.schedules, job)})",
        src=str(REPO / "templates/identity/cron.j2"),
        dest=f"/etc/cron.d/{unit}",
        user="root",
        group="root",
        mode="0644",
        deploy="deploys/users.py",
        job=job,
        schedule=getattr(policy.schedules, job),
        command=f"/usr/local/bin/{command}",
    )
