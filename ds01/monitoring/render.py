"""The monitoring files the deploy writes, rendered from the policy's
``monitoring`` section: prometheus.yml, the alert rules (from the thresholds
and each role's ``idle`` rule), alertmanager.yml and the command-line flags of
Debian's three services (their ``/etc/default`` files).

Each alert carries a ``runbook`` annotation: what to do, in one line;
docs/monitoring.md tells more.
"""

from __future__ import annotations

import yaml

from ds01.config import Monitoring, Policy
from ds01.units import format_duration

HEADER = "# Managed by ds01-infra (deploys/monitoring.py, rendered by ds01/monitoring/render.py).\n"
RULES_PATH = "/etc/prometheus/rules/ds01.rules.yml"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
# The units whose state the node exporter's systemd collector reports.
SYSTEMD_UNITS = r"(ds01.*|docker|prometheus.*)\.(service|socket|timer)"
DOCKER_SERVICE = "ds01-docker.service"
RECONCILER = "ds01-gpu-reconcile"
SYNC_JOB = "users_sync"


def address(mon: Monitoring, port: int) -> str:
    host = f"[{mon.listen_address}]" if ":" in mon.listen_address else mon.listen_address
    return f"{host}:{port}"


def _dump(data: dict) -> str:
    return HEADER + yaml.safe_dump(data, sort_keys=False, width=1000)


def _d(seconds: int) -> str:
    return format_duration(seconds)


# --------------------------------------------------------------------------
# Prometheus and the services' flags
# --------------------------------------------------------------------------


def prometheus_yml(policy: Policy) -> str:
    mon = policy.monitoring
    p = mon.ports

    def job(name: str, port: int) -> dict:
        return {"job_name": name, "static_configs": [{"targets": [address(mon, port)]}]}

    return _dump({
        "global": {
            "scrape_interval": _d(mon.scrape_interval),
            "evaluation_interval": _d(mon.evaluation_interval),
            "external_labels": {"site": policy.site.name},
        },
        "rule_files": [RULES_PATH],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [address(mon, p.alertmanager)]}]}]},
        "scrape_configs": [
            job("prometheus", p.prometheus),
            job("node", p.node_exporter),
            job("ds01", p.exporter),
            job("alertmanager", p.alertmanager),
        ],
    })  # fmt: skip


def prometheus_args(policy: Policy) -> str:
    mon = policy.monitoring
    return (
        f"--web.listen-address={address(mon, mon.ports.prometheus)} "
        f"--storage.tsdb.retention.time={_d(mon.retention)}"
    )


def node_exporter_args(policy: Policy) -> str:
    mon = policy.monitoring
    return (
        f"--web.listen-address={address(mon, mon.ports.node_exporter)} "
        f"--collector.systemd --collector.systemd.unit-include={SYSTEMD_UNITS} "
        f"--collector.textfile.directory={TEXTFILE_DIR}"
    )


def alertmanager_args(policy: Policy) -> str:
    mon = policy.monitoring
    # An empty cluster address turns the gossip listener (all interfaces) off.
    return f"--web.listen-address={address(mon, mon.ports.alertmanager)} --cluster.listen-address="


def defaults_file(args: str) -> str:
    """An /etc/default file of Debian's prometheus packages (read as ARGS by their units)."""
    return HEADER + f'ARGS="{args}"\n'


# --------------------------------------------------------------------------
# Alertmanager
# --------------------------------------------------------------------------


def alertmanager_yml(policy: Policy) -> str:
    """Receivers from the policy; secrets are named by file, never inlined."""
    mon = policy.monitoring
    receiver: dict = {"name": "ds01"}
    if mon.email is not None:
        e = mon.email
        cfg = {"to": e.to, "from": e.sender, "smarthost": e.smarthost,
               "require_tls": e.require_tls, "send_resolved": True}  # fmt: skip
        if e.username:
            cfg["auth_username"] = e.username
        if e.password_file:
            cfg["auth_password_file"] = e.password_file
        receiver["email_configs"] = [cfg]
    if mon.webhook is not None:
        w = mon.webhook
        hook: dict = {"url": w.url, "send_resolved": True}
        if w.bearer_token_file:
            hook["http_config"] = {"authorization": {"credentials_file": w.bearer_token_file}}
        receiver["webhook_configs"] = [hook]
    return _dump({
        "route": {"receiver": "ds01", "group_by": ["alertname"], "group_wait": "30s",
                  "group_interval": "5m", "repeat_interval": "12h"},
        "receivers": [receiver],
    })  # fmt: skip


def secret_files(policy: Policy) -> list[str]:
    """Files Alertmanager reads secrets from (root:prometheus 0640 on the server)."""
    mon = policy.monitoring
    files = [mon.email.password_file if mon.email else None,
             mon.webhook.bearer_token_file if mon.webhook else None]  # fmt: skip
    return [f for f in files if f]


# --------------------------------------------------------------------------
# Alert rules
# --------------------------------------------------------------------------


def _alert(name: str, expr: str, for_: int, severity: str, summary: str, runbook: str,
           **labels: str) -> dict:  # fmt: skip
    return {
        "alert": name,
        "expr": expr,
        "for": _d(for_),
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary, "runbook": runbook},
    }


def rules(policy: Policy) -> dict:
    """The alert rules: thresholds from ``monitoring.alerts``, the GPU idle
    rule from each role's ``idle`` (below its gpu_util_percent for
    check_interval x consecutive_checks)."""
    a = policy.monitoring.alerts
    down = a.service_down_for
    unit = 'node_systemd_unit_state{{name="{}",state="{}"}}'
    out = [
        _alert("Ds01TargetDown", "up == 0", down, "critical",
               "{{ $labels.job }} at {{ $labels.instance }} is not answering Prometheus",
               "systemctl status of the job's service; journalctl -u it; see docs/monitoring.md"),
        _alert("Ds01DockerServiceDown",
               f"{unit.format(DOCKER_SERVICE, 'active')} == 0 or absent({unit.format(DOCKER_SERVICE, 'active')})",
               down, "critical", "the DS01 docker access service is down: users have no docker",
               f"systemctl status {DOCKER_SERVICE}; journalctl -u {DOCKER_SERVICE}; "
               f"systemctl restart {DOCKER_SERVICE}"),
        _alert("Ds01ReconcilerDown",
               f"{unit.format(RECONCILER + '.timer', 'active')} == 0 "
               f"or {unit.format(RECONCILER + '.service', 'failed')} == 1",
               down, "warning", "the GPU reconciler and idle reaper is not running",
               f"systemctl status {RECONCILER}.timer {RECONCILER}.service; "
               f"journalctl -u {RECONCILER}.service; systemctl start {RECONCILER}.timer"),
        _alert("Ds01GpuSnapshotUnreadable", "ds01_gpu_snapshot_up == 0", down, "warning",
               "the exporter cannot read the allocator's status snapshot",
               "ls -l in gpu.runtime_dir; run `ds01 gpu reconcile` as root to rewrite it"),
        _alert("Ds01NvmlErrors", "ds01_gpu_nvml_errors > 0", down, "critical",
               "NVML failed to read GPU units",
               "nvidia-smi -q; dmesg | grep -i xid; drain the unit (ds01 gpu drain) and "
               "plan a reset"),
        _alert("Ds01GpuQueueWaitLong", f"ds01_gpu_queue_oldest_wait_seconds > {a.queue_wait}", 0,
               "warning", "a user has waited over " + _d(a.queue_wait) + " for a {{ $labels.kind }} unit",
               "ds01 gpu status: who holds what, for how long; ask idle holders to stop, or "
               "change the MIG layout"),
        _alert("Ds01DirectorySyncRefused", f'ds01_job_last_failed{{key="{SYNC_JOB}"}} == 1', 0,
               "critical", "the directory sync failed or refused to remove users",
               "read /var/log/ds01 sync log; `ds01 users sync --dry-run` shows the plan; a refusal "
               "means the directory shrank by more than identity.sync.max_drop_fraction"),
        _alert("Ds01DirectorySyncStale",
               f'time() - ds01_job_last_success_timestamp_seconds{{key="{SYNC_JOB}"}} > {a.sync_stale_after}',
               0, "warning", "no successful directory sync for over " + _d(a.sync_stale_after),
               "check the users_sync schedule (cron) and the directory's reachability"),
        _alert("Ds01JobFailed", f'ds01_job_last_failed{{key!="{SYNC_JOB}"}} == 1', 0, "warning",
               "scheduled job {{ $labels.key }} failed",
               "cat /var/lib/ds01/jobs/JOB.json; the job's log in journalctl or /var/log/ds01; "
               "run it by hand: ds01 job run JOB -- COMMAND"),
    ]  # fmt: skip
    special = sorted(a.job_late)
    others = "|".join([SYNC_JOB, *special])
    out.append(_alert(
        "Ds01JobLate",
        f'time() - ds01_job_last_success_timestamp_seconds{{key!~"{others}"}} > {a.job_late_after}',
        0, "warning", "scheduled job {{ $labels.key }} has not succeeded for over "
        + _d(a.job_late_after),
        "is the job scheduled (crontab, systemctl list-timers)? did it fail (Ds01JobFailed)?",
    ))  # fmt: skip
    for key in special:
        out.append(_alert(
            "Ds01JobLate",
            f'time() - ds01_job_last_success_timestamp_seconds{{key="{key}"}} > {a.job_late[key]}',
            0, "warning", f"scheduled job {key} has not succeeded for over {_d(a.job_late[key])}",
            "is the job scheduled (crontab, systemctl list-timers)? did it fail (Ds01JobFailed)?",
        ))  # fmt: skip
    out += [
        _alert("Ds01UserOomKilled",
               f'increase(ds01_user_memory_events_total{{event="oom_kill"}}[{_d(a.oom_window)}]) >= {a.oom_kills}',
               0, "warning", f"{{{{ $labels.user }}}}'s containers were OOM-killed {a.oom_kills} times or more in "
               + _d(a.oom_window),
               "tell the user: their jobs need more memory than their role's user_slice.memory_max, "
               "or leak; an override in the policy raises it"),
        _alert("Ds01FilesystemNearlyFull",
               "100 * (1 - node_filesystem_avail_bytes{fstype!~\"tmpfs|ramfs|overlay|squashfs\"} "
               f"/ node_filesystem_size_bytes) > {a.filesystem_full_percent}",
               down, "warning", f"{{{{ $labels.mountpoint }}}} is over {a.filesystem_full_percent}% full",
               "du -xsh on the mount point; ds01 storage usage; purge scratch or prune images"),
        _alert("Ds01QuotaNearlyFull",
               f"100 * ds01_storage_used_bytes / ds01_storage_quota_bytes > {a.quota_full_percent}",
               0, "info", f"{{{{ $labels.user }}}} uses over {a.quota_full_percent}% of their quota on {{{{ $labels.area }}}}",
               "tell the user (ds01 storage usage shows theirs); raise the role's quota if it is the norm"),
    ]  # fmt: skip
    if policy.cluster is not None:
        # The exporter polls slurmctld (ds01.cluster.queue.Poller): a reading
        # older than 8 intervals means the poller itself is stuck.
        out.append(_alert(
            "Ds01SlurmDown", "ds01_slurm_up == 0 or ds01_slurm_read_age_seconds > 120", down, "critical",
            "Slurm's controller does not answer squeue: batch jobs are not scheduled",
            "scontrol ping; systemctl status slurmctld munge; journalctl -u slurmctld; "
            "`ds01 status` shows squeue's own error",
        ))  # fmt: skip
    for role, r in policy.roles.items():
        window = r.idle.check_interval * r.idle.consecutive_checks
        out.append(_alert(
            "Ds01GpuHeldIdle",
            f"(ds01_gpu_unit_utilization_percent < {r.idle.gpu_util_percent}) "
            f'* on(unit, gpu, kind) group_right() ds01_gpu_unit_holder{{role="{role}"}}',
            window, "info",
            "{{ $labels.user }} holds {{ $labels.unit }} idle for over " + _d(window),
            "the idle reaper warns and stops it per the role's lifecycle; ask the user to stop "
            "the container (docker stop) if it should not wait",
            role=role,
        ))  # fmt: skip
    return {"groups": [{"name": "ds01", "rules": out}]}


def rules_yaml(policy: Policy) -> str:
    return _dump(rules(policy))
