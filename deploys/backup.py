"""Backups: restic into the policy's repository, the schedule's backup run,
weekly check and monthly restore drill, and users' restores of their own home.

The logic (what is saved, the lock, the status file, the drill) is
ds01/backup/; this deploy installs restic, creates the repository once and
schedules `ds01 backup run|check|drill` through `ds01 job run`.
Nothing here without a `backup:` section in the policy.
"""

from pyinfra import host
from pyinfra.operations import apt, files

from deploys._support import apt_packages, scheduled_job
from ds01.backup.restic import BACKUP_STATE
from ds01.backup.restore import HELPER
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
        scheduled_job(policy, key, "deploys/backup.py", log="/var/log/ds01/backup.log")

    privacy.sudoers_dropin(
        name=f"Users restore their own home's files: {HELPER} through sudo",
        path="/etc/sudoers.d/ds01-restore-own",
        content="# Managed by ds01-infra (deploys/backup.py): the one command users may run as\n"
        "# root; it restores only paths of the caller's own home (ds01/backup/restore.py).\n"
        f"ALL ALL=(root) NOPASSWD: {HELPER}\n",
    )
