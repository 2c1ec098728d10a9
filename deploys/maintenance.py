"""Maintenance and logs: unattended security upgrades (never a reboot; the
NVIDIA driver, docker and the kernel held back unless the policy allows),
apt autoclean, fstrim, log rotation and the journal's caps, the daily
`ds01 doctor`, and users' view of their own events.

Every recurring job is a cron line from the policy's `schedules` through
`ds01 job run` (README: the schedule convention); the Debian timers that
would run the same work a second time (logrotate.timer, fstrim.timer) are
stopped and disabled, and apt's periodic runs are switched off.
"""

from pyinfra import host
from pyinfra.operations import apt, files, systemd

from deploys._support import REPO, apt_packages, scheduled_job
from ds01.events import OWN_HELPER
from ds01.ops.maintenance import held_patterns
from ds01.units import format_duration
from operations import privacy

policy = host.data.policy
m = policy.maintenance
TEMPLATES = REPO / "templates/ops"

apt.packages(name="unattended-upgrades and logrotate", packages=apt_packages("maintenance"))

files.template(
    name="Security upgrades only, no reboot, held groups: /etc/apt/apt.conf.d/52ds01-upgrades",
    src=str(TEMPLATES / "unattended-upgrades.conf.j2"),
    dest="/etc/apt/apt.conf.d/52ds01-upgrades",
    user="root", group="root", mode="0644", held=held_patterns(policy),
)  # fmt: skip

files.template(
    name=f"Rotation of /var/log/ds01/* (weekly, {m.logs_keep} kept): /etc/logrotate.d/ds01",
    src=str(TEMPLATES / "logrotate.j2"), dest="/etc/logrotate.d/ds01",
    user="root", group="root", mode="0644", keep=m.logs_keep,
)  # fmt: skip
journald = files.template(
    name="Journal caps /etc/systemd/journald.conf.d/ds01.conf",
    src=str(TEMPLATES / "journald.conf.j2"), dest="/etc/systemd/journald.conf.d/ds01.conf",
    user="root", group="root", mode="0644",
    max_use=m.journald_max_use, max_retention=format_duration(m.journald_max_retention),
)  # fmt: skip
systemd.service(name="systemd-journald reads its caps", service="systemd-journald.service",
                running=True, restarted=journald.will_change)  # fmt: skip

for timer in ("logrotate.timer", "fstrim.timer"):
    systemd.service(name=f"Debian's {timer} off: the ds01 schedule runs it",
                    service=timer, running=False, enabled=False)  # fmt: skip

for key in ("security_upgrades", "autoclean", "fstrim", "logrotate", "doctor"):
    log = f"/var/log/ds01/{key.replace('_', '-')}.log"
    scheduled_job(policy, key, "deploys/maintenance.py", log=log)

privacy.sudoers_dropin(
    name=f"Users read their own events: {OWN_HELPER} through sudo",
    path="/etc/sudoers.d/ds01-events-own",
    content="# Managed by ds01-infra (deploys/maintenance.py): shows the caller's own\n"
    "# events only (ds01/events.py).\n"
    f"ALL ALL=(root) NOPASSWD: {OWN_HELPER}\n",
)
