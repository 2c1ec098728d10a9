"""Monitoring: Debian's Prometheus, node exporter and Alertmanager, and the
DS01 exporter, all listening on ``monitoring.listen_address`` (loopback unless
the policy says otherwise; reach them through an SSH tunnel, docs/monitoring.md).

Policy: the ``monitoring`` section (addresses, ports, retention, intervals,
alert thresholds, receivers) and each role's ``idle`` rule (the GPU idle
alert). Every file is rendered by ds01/monitoring/render.py (the Grafana
dashboards, when ``monitoring.grafana.enabled``, by dashboards.py); the exporter is
``ds01 monitoring exporter``. Receiver secrets stay in the root-only files the
policy names (group prometheus may read them); the deploy never sees them.
"""

import hashlib
import json
from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files, systemd

from deploys._support import REPO, apt_packages, wheelhouse
from ds01.monitoring import dashboards, render
from facts.python import PythonVersion
from operations import groups

TEMPLATES = REPO / "templates/monitoring"
EXPORTER_USER = "ds01-exporter"
policy = host.data.policy
mon = policy.monitoring


def put(name: str, content: str, dest: str, group: str = "root", mode: str = "0644"):
    return files.put(name=name, src=StringIO(content), dest=dest,
                     user="root", group=group, mode=mode)  # fmt: skip


apt.packages(name="Prometheus, node exporter and Alertmanager (Debian)",
             packages=apt_packages("monitoring"))  # fmt: skip

# Prometheus
files.directory(name="Alert rules directory /etc/prometheus/rules", path="/etc/prometheus/rules",
                user="root", group="root", mode="0755")  # fmt: skip
prom_conf = put("Prometheus configuration /etc/prometheus/prometheus.yml",
                render.prometheus_yml(policy), "/etc/prometheus/prometheus.yml")  # fmt: skip
prom_rules = put(f"DS01 alert rules {render.RULES_PATH}", render.rules_yaml(policy),
                 render.RULES_PATH)  # fmt: skip
prom_args = put(f"Prometheus flags /etc/default/prometheus (retention {mon.retention}s)",
                render.defaults_file(render.prometheus_args(policy)),
                "/etc/default/prometheus")  # fmt: skip
# A restart reads the new configuration too; a reload (SIGHUP) sent right after
# a restart can reach Prometheus before its handler is set and stop it for good
# (SIGHUP is a clean exit to systemd): found by the idempotence gate.
systemd.service(name="Prometheus running", service="prometheus.service",
                running=True, enabled=True, restarted=prom_args.will_change,
                reloaded=(prom_conf.will_change or prom_rules.will_change)
                and not prom_args.will_change)  # fmt: skip

# Node exporter: systemd unit states and the textfile collector
node_args = put("Node exporter flags /etc/default/prometheus-node-exporter",
                render.defaults_file(render.node_exporter_args(policy)),
                "/etc/default/prometheus-node-exporter")  # fmt: skip
files.directory(name=f"Node exporter textfile directory {render.TEXTFILE_DIR}",
                path=render.TEXTFILE_DIR, user="prometheus", group="prometheus",
                mode="0755")  # fmt: skip
systemd.service(name="Node exporter running", service="prometheus-node-exporter.service",
                running=True, enabled=True, restarted=node_args.will_change)  # fmt: skip

# Alertmanager
for path in render.secret_files(policy):
    files.file(name=f"Receiver secret {path} readable by Alertmanager only",
               path=path, user="root", group="prometheus", mode="0640")  # fmt: skip
am_conf = put("Alertmanager configuration /etc/prometheus/alertmanager.yml",
              render.alertmanager_yml(policy), "/etc/prometheus/alertmanager.yml",
              group="prometheus", mode="0640")  # fmt: skip
am_args = put("Alertmanager flags /etc/default/prometheus-alertmanager",
              render.defaults_file(render.alertmanager_args(policy)),
              "/etc/default/prometheus-alertmanager")  # fmt: skip
systemd.service(name="Alertmanager running", service="prometheus-alertmanager.service",
                running=True, enabled=True, restarted=am_args.will_change,
                reloaded=am_conf.will_change and not am_args.will_change)  # fmt: skip

# The DS01 exporter, as its own unprivileged user
groups.system_user(name=f"Exporter system user {EXPORTER_USER}", user=EXPORTER_USER,
                   shell="/usr/sbin/nologin", home="/nonexistent")  # fmt: skip
wheels = wheelhouse(host.get_fact(PythonVersion) or "3.11")
exporter = files.template(
    name="DS01 exporter unit (ds01-exporter.service)",
    src=str(TEMPLATES / "ds01-exporter.service.j2"),
    dest="/etc/systemd/system/ds01-exporter.service",
    user="root", group="root", mode="0644",
    user_name=EXPORTER_USER, listen=render.address(mon, mon.ports.exporter),
    runtime_dir=policy.gpu.runtime_dir,
    build=hashlib.sha256(f"{wheels.ds01_build} {wheels.deps_build}".encode()).hexdigest(),
    policy_sha=hashlib.sha256(open(host.data.policy_file, "rb").read()).hexdigest(),
)  # fmt: skip
systemd.service(name="DS01 exporter running", service="ds01-exporter.service",
                running=True, enabled=True, daemon_reload=exporter.will_change,
                restarted=exporter.will_change)  # fmt: skip

# Storage use against quota: root's repquota, on a timer
storage_service = files.template(
    name="Storage metrics unit (ds01-storage-metrics.service)",
    src=str(TEMPLATES / "ds01-storage-metrics.service.j2"),
    dest="/etc/systemd/system/ds01-storage-metrics.service",
    user="root", group="root", mode="0644", textfile_dir=render.TEXTFILE_DIR,
)  # fmt: skip
storage_timer = files.template(
    name=f"Storage metrics timer (every {mon.storage_interval}s)",
    src=str(TEMPLATES / "ds01-storage-metrics.timer.j2"),
    dest="/etc/systemd/system/ds01-storage-metrics.timer",
    user="root", group="root", mode="0644", interval=mon.storage_interval,
)  # fmt: skip
systemd.service(name="Storage metrics timer running", service="ds01-storage-metrics.timer",
                running=True, enabled=True,
                daemon_reload=storage_service.will_change or storage_timer.will_change,
                restarted=storage_timer.will_change)  # fmt: skip

# Grafana (optional, off by default): from the apt repository the policy names
grafana = mon.grafana
if grafana.enabled:
    keyring = "/etc/apt/keyrings/ds01-grafana.asc"
    files.download(name="Grafana's signing key", src=grafana.signing_key_url, dest=keyring,
                   user="root", group="root", mode="0644")  # fmt: skip
    repo = apt.repo(name="Grafana's apt repository", filename="ds01-grafana",
                    src=f"deb [signed-by={keyring}] {grafana.apt_repository}")  # fmt: skip
    apt.packages(name="Grafana", packages=["grafana"], update=repo.will_change)
    files.directory(name=f"Dashboards {dashboards.DASHBOARD_DIR}", path=dashboards.DASHBOARD_DIR,
                    user="root", group="root", mode="0755")  # fmt: skip
    for file_name, model in dashboards.dashboards(policy).items():
        put(f"Dashboard {file_name}", json.dumps(model, indent=2, sort_keys=True) + "\n",
            f"{dashboards.DASHBOARD_DIR}/{file_name}")  # fmt: skip
    provisioned = [
        put("Grafana data source: the DS01 Prometheus", dashboards.datasource_yaml(policy),
            "/etc/grafana/provisioning/datasources/ds01.yaml", group="grafana", mode="0640"),
        put("Grafana dashboard provider: DS01", dashboards.provider_yaml(),
            "/etc/grafana/provisioning/dashboards/ds01.yaml", group="grafana", mode="0640"),
        put(f"Grafana listens on {render.address(mon, grafana.port)} (systemd drop-in)",
            dashboards.grafana_dropin(policy),
            "/etc/systemd/system/grafana-server.service.d/ds01.conf"),
    ]  # fmt: skip
    systemd.service(name="Grafana running", service="grafana-server.service",
                    running=True, enabled=True,
                    daemon_reload=provisioned[2].will_change,
                    restarted=any(op.will_change for op in provisioned))  # fmt: skip
