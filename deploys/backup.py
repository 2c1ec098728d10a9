"""Backups: restic into the policy's repository, the schedule's backup run,
weekly check and monthly restore drill, and users' restores of their own home.

The logic (what is saved, the lock, the status file, the drill) is
ds01/backup/; this deploy installs restic, creates the repository once and
schedules `ds01 backup run|check|drill` through `ds01 job run`.
Nothing here without a `backup:` section in the policy.
"""

from pyinfra import host
from pyinfra.operations import apt, files

from deploys._support import REPO, apt_packages
from ds01.backup.restic import BACKUP_STATE
from ds01.backup.restore import HELPER
from ds01.names import cron_file
from ds01.ops.schedule import CRON_JOBS
from operations import backup, privacy

policy = host.data.policy
b = policy.backup

if b is not None:
    apt.packages(name="restic", packages=apt_packages("backup"))
    files.directory(name=f"Backup state {BACKUP_STATE} (status file, staged database, cache)",
                    path=BACKUP_STATE, user="root", group="root", mode="0755")  # fmt: skip
    files.directory(name="Backup secrets /etc/ds01/backup (root only)", path="/etc/ds01/backup",
                    user="root", group="root", mode="0700")  # fmt: skip
    backup.repository(name=f"Backup repository {b.repository} (created once, never again)",
                      repository=b.repository)  # fmt: skip

    for key in ("backup", "backup_check", "restore_drill"):
        command, what = CRON_JOBS[key]
        files.template(
            name=f"Cron job {cron_file(key)} ({getattr(policy.schedules, key)}): {what}",
            src=str(REPO / "templates/ops/job.cron.j2"), dest=cron_file(key),
            user="root", group="root", mode="0644", deploy="deploys/backup.py", key=key,
            schedule=getattr(policy.schedules, key), command=command,
            log="/var/log/ds01/backup.log",
        )  # fmt: skip

    privacy.sudoers_dropin(
        name=f"Users restore their own home's files: {HELPER} through sudo",
        path="/etc/sudoers.d/ds01-restore-own",
        content="# Managed by ds01-infra (deploys/backup.py): the one command users may run as\n"
        "# root; it restores only paths of the caller's own home (ds01/backup/restore.py).\n"
        f"ALL ALL=(root) NOPASSWD: {HELPER}\n",
    )
