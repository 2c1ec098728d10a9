"""Every recurring job in one table: what it runs, which policy key sets when,
and, read from the server, whether it is installed, when it runs next and how
its last run ended (``ds01 job run``'s record).

The convention (README): calendar jobs are cron files rendered from the
policy's ``schedules`` (``/etc/cron.d/ds01-<key>``), each line running
``ds01 job run KEY -- COMMAND``. The GPU reconciler runs on an interval that
may be under a minute (``gpu.reconcile_interval``), which cron cannot express:
it is the one systemd timer, and its service goes through ``ds01 job run`` too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from croniter import croniter

from ds01 import jobs
from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit
from ds01.names import cron_file

# key -> (command, what it does); the key is the policy's schedules key and the job record's
CRON_JOBS: dict[str, tuple[str, str]] = {
    "users_sync": ("ds01 users sync", "role groups from the directory, new users set up"),
    "users_report": ("ds01 users report --save", "staleness report"),
    "admin_guard": ("ds01 admin-guard", "the admin account keeps sudo"),
    "scratch_purge": ("ds01 storage purge --quiet", "scratch files past their age"),
    "image_prune": ("ds01 images prune", "unused docker images"),
    "container_cleanup": ("ds01 docker cleanup", "stopped containers past their lifetime"),
    "usage_report": ("ds01 usage --report", "last month's GPU usage under the reports dir"),
    "backup": ("ds01 backup run", "restic backup, then forget --prune"),
    "backup_check": ("ds01 backup check", "restic check of a data subset"),
    "restore_drill": ("ds01 backup drill", "restore a sample and compare"),
    "security_upgrades": ("ds01 maintenance upgrade", "unattended security upgrades, no reboot"),
    "autoclean": ("apt-get -q autoclean", "obsolete downloaded packages"),
    "fstrim": ("fstrim --all --quiet-unsupported", "discard unused blocks"),
    "logrotate": ("logrotate /etc/logrotate.conf", "rotate logs, /var/log/ds01/* included"),
    "doctor": ("ds01 doctor --quiet", "the daily self-check"),
}
BACKUP_JOBS = {"backup", "backup_check", "restore_drill"}
RECONCILER = ("gpu_reconcile", "ds01-gpu-reconcile.timer")


@dataclass(frozen=True)
class Entry:
    key: str
    policy_key: str
    schedule: str
    command: str
    what: str
    unit: str  # the cron file or the timer
    installed: bool
    next_run: float | None
    last_run: float | None
    result: str  # ok | failed | never | off


def declared(policy: Policy) -> list[tuple[str, str, str]]:
    """(key, policy key, schedule) of every job this policy runs."""
    out = []
    for key in CRON_JOBS:
        if key in BACKUP_JOBS and policy.backup is None:
            continue
        if key == "scratch_purge" and not any(a.kind == "scratch"
                                              for a in policy.storage.areas.values()):  # fmt: skip
            continue
        out.append((key, f"schedules.{key}", getattr(policy.schedules, key)))
    out.append((RECONCILER[0], "gpu.reconcile_interval", f"every {policy.gpu.reconcile_interval}s"))
    return out


def next_run(schedule: str, now: float) -> float:
    """The next time a 5-field cron ``schedule`` fires after ``now`` (local time, as cron)."""
    start = datetime.datetime.fromtimestamp(now)
    return croniter(schedule, start).get_next(datetime.datetime).timestamp()


def _cron_installed(key: str, etc: Path) -> bool:
    path = etc / Path(cron_file(key)).relative_to("/etc")
    try:
        return f"ds01 job run {key} -- " in path.read_text()
    except OSError:
        return False


def _timer_active(unit: str) -> tuple[bool, float | None]:
    try:
        out = subprocess.run(["systemctl", "show", unit, "--property=ActiveState",
                              "--property=NextElapseUSecRealtime", "--timestamp=unix"],
                             capture_output=True, text=True, timeout=10).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False, None
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    nxt = props.get("NextElapseUSecRealtime", "").lstrip("@")
    return props.get("ActiveState") == "active", float(nxt) if nxt.isdigit() else None


def entries(policy: Policy, now: float, records: dict[str, jobs.JobRecord] | None = None,
            etc: Path = Path("/etc"), timer=_timer_active) -> list[Entry]:  # fmt: skip
    """The schedule as it stands on this server."""
    records = jobs.read_all() if records is None else records
    out = []
    for key, policy_key, schedule in declared(policy):
        rec = records.get(key)
        if key == RECONCILER[0]:
            installed, nxt = timer(RECONCILER[1])
            if installed and nxt is None:  # a monotonic timer: due an interval after its last run
                nxt = (rec["finished"] if rec else now) + policy.gpu.reconcile_interval
            command, what, unit = "ds01 gpu reconcile", "GPU reconciler, idle reaper", RECONCILER[1]
        else:
            command, what = CRON_JOBS[key]
            unit, installed = cron_file(key), _cron_installed(key, etc)
            nxt = next_run(schedule, now) if installed else None
        out.append(Entry(key, policy_key, schedule, command, what, unit, installed, nxt,
                         rec["finished"] if rec else None,
                         rec["result"] if rec else "never"))  # fmt: skip
    return out


def _when(t: float | None) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if t else "-"


def render(rows: list[Entry]) -> str:
    lines = [f"{'JOB':<18} {'POLICY KEY':<28} {'SCHEDULE':<14} {'NEXT':<12} {'LAST':<12} RESULT"]
    for e in rows:
        result = e.result if e.installed else f"{e.result}, NOT INSTALLED ({e.unit})"
        lines.append(f"{e.key:<18} {e.policy_key:<28} {e.schedule:<14} {_when(e.next_run):<12} "
                     f"{_when(e.last_run):<12} {result}")  # fmt: skip
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="every scheduled job: next run, last run, result")
    add_policy_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    import time

    from ds01.ops import maintenance

    policy = load_or_exit(args.policy)
    rows = entries(policy, time.time())
    holds, held = maintenance.holds(), maintenance.held_patterns(policy)
    if args.json:
        print(json.dumps({"jobs": [asdict(e) for e in rows], "holds": holds,
                          "held_from_upgrades": held}, indent=1))  # fmt: skip
    else:
        print(render(rows))
        print("\nheld back from security upgrades (maintenance.allow_upgrades lets through): "
              + ("; ".join(f"{g} ({', '.join(x + '*' for x in p)})" for g, p in held.items())
               or "nothing"))
        print("package holds (apt-mark showhold): " + (", ".join(holds) if holds else "none"))
    bad = [e for e in rows if e.result == "failed" or not e.installed]
    for e in bad:
        print(f"{e.key}: {'not installed' if not e.installed else 'last run failed'}; "
              f"see /var/lib/ds01/jobs/{e.key}.json and docs/operations.md", file=sys.stderr)
    return 1 if bad else 0
