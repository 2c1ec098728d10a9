"""Grafana dashboards generated from the policy, and their provisioning files.

Five dashboards: an overview of what is taken (units, holders, queue), per
user, per role, storage and jobs. Every panel is a PromQL query over the
metrics of the DS01 exporter and the node exporter; the VM test evaluates each
one against the VM's Prometheus (no dead panels), so a panel whose data the
policy rules out (NVML figures on a simulated backend) is not generated.
"""

from __future__ import annotations

import json

from ds01.config import Policy
from ds01.monitoring.render import HEADER, address

SCHEMA_VERSION = 39  # the Grafana dashboard JSON model these follow (Grafana 10.x/11.x)
DATASOURCE = {"type": "prometheus", "uid": "ds01-prometheus"}
DASHBOARD_DIR = "/var/lib/ds01/grafana/dashboards"


def _panel(pid: int, title: str, expr: str, kind: str = "timeseries", unit: str = "short",
           legend: str = "", x: int = 0, y: int = 0, w: int = 12, h: int = 8) -> dict:  # fmt: skip
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [{"refId": "A", "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                     **({"instant": True, "format": "table"} if kind == "table" else {})}],  # fmt: skip
    }


def _dashboard(uid: str, title: str, panels: list[tuple], policy: Policy) -> dict:
    """``panels``: (title, expr, kind, unit, legend) in reading order, two per row."""
    built = []
    for i, (title_, expr, kind, unit, legend) in enumerate(panels):
        built.append(_panel(i + 1, title_, expr, kind, unit, legend, x=12 * (i % 2), y=8 * (i // 2)))
    return {
        "uid": uid,
        "title": f"{policy.site.name}: {title}",
        "tags": ["ds01"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": f"{max(policy.monitoring.scrape_interval, 5)}s",
        "timezone": "utc",
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": built,
    }


def dashboards(policy: Policy) -> dict[str, dict]:
    """File name -> dashboard JSON model."""
    overview = [
        ("GPU units by state", "sum by (state) (ds01_gpu_unit_state)", "timeseries", "short", "{{state}}"),
        ("Who holds which unit", "ds01_gpu_unit_holder", "table", "short", ""),
        ("GPU-equivalents held per user", "sum by (user) (ds01_gpu_held_equivalents)", "timeseries", "short", "{{user}}"),
        ("Queue length", "ds01_gpu_queue_length_total", "timeseries", "short", "queue"),
        ("Longest wait in the queue", "max(ds01_gpu_queue_oldest_wait_seconds) or vector(0)", "timeseries", "s", "oldest"),
        ("Hold time per unit", "ds01_gpu_unit_held_seconds", "table", "s", ""),
        ("Allocator decision time (mean)", "ds01_gpu_decision_seconds_sum / ds01_gpu_decision_seconds_count",
         "timeseries", "s", "{{op}}"),
    ]
    overview += [  # the reconciler's readings (MIG units report memory only)
        ("GPU utilisation per unit", "ds01_gpu_unit_utilization_percent", "timeseries", "percent", "{{unit}}"),
        ("GPU memory per unit", "ds01_gpu_unit_memory_used_bytes", "timeseries", "bytes", "{{unit}}"),
    ]
    per_user = [
        ("CPU per user (cores)", "sum by (user) (rate(ds01_user_cpu_seconds_total[5m]))", "timeseries", "short", "{{user}}"),
        ("Memory per user", "ds01_user_memory_bytes", "timeseries", "bytes", "{{user}}"),
        ("Containers per user", "ds01_user_containers", "timeseries", "short", "{{user}}"),
        ("Processes per user", "ds01_user_tasks", "timeseries", "short", "{{user}}"),
        ("OOM kills per user (1h)", 'increase(ds01_user_memory_events_total{event="oom_kill"}[1h])', "timeseries", "short", "{{user}}"),
        ("Memory pressure per user", 'rate(ds01_user_pressure_seconds_total{resource="memory",kind="some"}[5m])', "timeseries", "percentunit", "{{user}}"),
    ]
    per_role = [
        ("CPU per role (cores)", "rate(ds01_role_cpu_seconds_total[5m])", "timeseries", "short", "{{role}}"),
        ("Memory per role", "ds01_role_memory_bytes", "timeseries", "bytes", "{{role}}"),
        ("Containers per role", "sum by (role) (ds01_user_containers)", "timeseries", "short", "{{role}}"),
        ("Users with a slice per role", "count by (role) (ds01_user_tasks)", "timeseries", "short", "{{role}}"),
    ]
    storage = [
        ("Use per user", "ds01_storage_used_bytes", "table", "bytes", ""),
        ("Share of quota per user", "100 * ds01_storage_used_bytes / ds01_storage_quota_bytes", "table", "percent", ""),
        ("Filesystems: free space", 'node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|overlay|squashfs"}', "timeseries", "bytes", "{{mountpoint}}"),
    ]
    jobs = [
        ("Last result (1: failed)", "ds01_job_last_failed", "table", "short", ""),
        ("Since last success", "time() - ds01_job_last_success_timestamp_seconds", "table", "s", ""),
        ("Duration of the last run", "ds01_job_last_duration_seconds", "timeseries", "s", "{{key}}"),
        ("DS01 services", 'node_systemd_unit_state{name=~"ds01.*",state="active"}', "table", "short", ""),
    ]  # fmt: skip
    return {
        "ds01-overview.json": _dashboard("ds01-overview", "what is taken", overview, policy),
        "ds01-users.json": _dashboard("ds01-users", "per user", per_user, policy),
        "ds01-roles.json": _dashboard("ds01-roles", "per role", per_role, policy),
        "ds01-storage.json": _dashboard("ds01-storage", "storage", storage, policy),
        "ds01-jobs.json": _dashboard("ds01-jobs", "scheduled jobs and services", jobs, policy),
    }


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def check(dashboard: dict) -> list[str]:
    """What is wrong with a dashboard model against the schema version generated."""
    problems = []
    for key, kind in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(dashboard.get(key), kind):
            problems.append(f"{key}: missing or not a {kind.__name__}")
    if dashboard.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} is not {SCHEMA_VERSION}")
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(set(ids)) != len(ids):
        problems.append("panel ids are not unique")
    for p in dashboard.get("panels", []):
        where = f"panel {p.get('id')} ({p.get('title')})"
        if p.get("type") not in ("timeseries", "table", "stat"):
            problems.append(f"{where}: unknown type {p.get('type')!r}")
        if set(p.get("gridPos", {})) != {"x", "y", "w", "h"}:
            problems.append(f"{where}: gridPos needs x, y, w, h")
        if not p.get("targets") or any(not t.get("expr") or not t.get("refId") for t in p["targets"]):
            problems.append(f"{where}: every target needs expr and refId")
    return problems


def datasource_yaml(policy: Policy) -> str:
    # JSON is YAML: one serialiser for the dashboards and the provisioning files.
    mon = policy.monitoring
    return HEADER + json.dumps({
        "apiVersion": 1,
        "datasources": [{"name": "DS01 Prometheus", "uid": DATASOURCE["uid"], "type": "prometheus",
                         "access": "proxy", "url": f"http://{address(mon, mon.ports.prometheus)}",
                         "isDefault": True, "editable": False}],
    }, indent=2) + "\n"  # fmt: skip


def provider_yaml() -> str:
    return HEADER + json.dumps({
        "apiVersion": 1,
        "providers": [{"name": "ds01", "folder": "DS01", "type": "file", "disableDeletion": True,
                       "allowUiUpdates": False, "options": {"path": DASHBOARD_DIR}}],
    }, indent=2) + "\n"  # fmt: skip


def grafana_dropin(policy: Policy) -> str:
    """grafana-server's listen address from the policy (Grafana reads GF_* settings)."""
    mon = policy.monitoring
    return (HEADER + "[Service]\n"
            f"Environment=GF_SERVER_HTTP_ADDR={mon.listen_address}\n"
            f"Environment=GF_SERVER_HTTP_PORT={mon.grafana.port}\n")  # fmt: skip
