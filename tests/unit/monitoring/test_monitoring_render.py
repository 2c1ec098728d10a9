"""The rendered monitoring files: promtool checks the configuration, and
`promtool test rules` proves each alert fires on its condition (and not before)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ds01.config import load_policy
from ds01.monitoring import render

REPO = Path(__file__).resolve().parents[3]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) missing")


@pytest.fixture(scope="module")
def policy():
    return load_policy(REPO / "config/resource-allocation.yaml")


def with_monitoring(policy, **changes):
    return policy.model_copy(update={"monitoring": policy.monitoring.model_copy(update=changes)})


@needs_promtool
def test_rendered_prometheus_config_passes_promtool(policy, tmp_path):
    rules = tmp_path / "ds01.rules.yml"
    rules.write_text(render.rules_yaml(policy))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(render.prometheus_yml(policy).replace(render.RULES_PATH, str(rules)))
    out = subprocess.run([PROMTOOL, "check", "config", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


def test_everything_listens_on_the_policy_address(policy):
    conf = yaml.safe_load(render.prometheus_yml(policy))
    targets = [t for job in conf["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert targets == ["127.0.0.1:9090", "127.0.0.1:9100", "127.0.0.1:9901", "127.0.0.1:9093"]
    assert "--web.listen-address=127.0.0.1:9100" in render.node_exporter_args(policy)
    assert "--cluster.listen-address= " in render.alertmanager_args(policy) + " "
    v6 = with_monitoring(policy, listen_address="::1")
    assert "--web.listen-address=[::1]:9090" in render.prometheus_args(v6)
    assert "--storage.tsdb.retention.time=30d" in render.prometheus_args(policy)


def test_receivers_name_secret_files_never_their_content(policy):
    from ds01.config import EmailReceiver, WebhookReceiver

    p = with_monitoring(
        policy,
        email=EmailReceiver(to="admins@example.lan", sender="ds01@example.lan",
                            smarthost="mail.example.lan:587", username="ds01",
                            password_file="/etc/ds01/secrets/smtp"),
        webhook=WebhookReceiver(url="https://chat.example.lan/hook",
                                bearer_token_file="/etc/ds01/secrets/hook"),
    )  # fmt: skip
    am = yaml.safe_load(render.alertmanager_yml(p))
    (rcv,) = am["receivers"]
    assert rcv["email_configs"][0]["auth_password_file"] == "/etc/ds01/secrets/smtp"
    assert rcv["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] == "/etc/ds01/secrets/hook"
    assert render.secret_files(p) == ["/etc/ds01/secrets/smtp", "/etc/ds01/secrets/hook"]
    assert render.secret_files(policy) == []


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool (Debian: prometheus-alertmanager) missing")
@pytest.mark.parametrize("receivers", ["none", "both"])
def test_rendered_alertmanager_config_passes_amtool(policy, tmp_path, receivers):
    from ds01.config import EmailReceiver, WebhookReceiver

    if receivers == "both":
        for name in ("smtp", "hook"):
            (tmp_path / name).write_text("not-a-real-secret\n")
        policy = with_monitoring(
            policy,
            email=EmailReceiver(to="admins@example.lan", sender="ds01@example.lan",
                                smarthost="mail.example.lan:587", username="ds01",
                                password_file=str(tmp_path / "smtp")),
            webhook=WebhookReceiver(url="https://chat.example.lan/hook",
                                    bearer_token_file=str(tmp_path / "hook")),
        )  # fmt: skip
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(render.alertmanager_yml(policy))
    out = subprocess.run(["amtool", "check-config", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_policy_rejects_a_bad_receiver(tmp_path):
    from ds01.config import PolicyError

    text = (REPO / "config/resource-allocation.yaml").read_text()
    bad = tmp_path / "p.yaml"
    bad.write_text(text + "\nmonitoring:\n  webhook:\n    url: chat.example.lan/hook\n")
    with pytest.raises(PolicyError) as e:
        load_policy(bad)
    assert any(p.path.startswith("monitoring.webhook.url") for p in e.value.problems)


# --------------------------------------------------------------------------
# promtool test rules: one case per alert
# --------------------------------------------------------------------------

UNIT = {"unit": "MIG-1", "gpu": "2", "kind": "1g.5gb"}
CASES = [
    # (alert, input series {selector: values}, eval time, labels of the alert, or None: none yet)
    ("Ds01DockerServiceDown", {'node_systemd_unit_state{name="ds01-docker.service",state="active"}': "1 1 0x10"},
     "1m", None),
    ("Ds01DockerServiceDown", {'node_systemd_unit_state{name="ds01-docker.service",state="active"}': "1 1 0x10"},
     "5m", {"name": "ds01-docker.service", "state": "active", "severity": "critical"}),
    ("Ds01ReconcilerDown", {'node_systemd_unit_state{name="ds01-gpu-reconcile.timer",state="active"}': "0x10"},
     "3m", {"name": "ds01-gpu-reconcile.timer", "state": "active", "severity": "warning"}),
    ("Ds01TargetDown", {'up{job="ds01",instance="127.0.0.1:9901"}': "0x10"},
     "3m", {"job": "ds01", "instance": "127.0.0.1:9901", "severity": "critical"}),
    ("Ds01JobFailed", {'ds01_job_last_failed{key="image_prune"}': "0 1", 'ds01_job_last_failed{key="users_sync"}': "1 1"},
     "1m", {"key": "image_prune", "severity": "warning"}),
    ("Ds01DirectorySyncRefused", {'ds01_job_last_failed{key="users_sync"}': "0 1"},
     "1m", {"key": "users_sync", "severity": "critical"}),
    ("Ds01DirectorySyncStale", {'ds01_job_last_success_timestamp_seconds{key="users_sync"}': "0x200"},
     "170m", None),
    ("Ds01DirectorySyncStale", {'ds01_job_last_success_timestamp_seconds{key="users_sync"}': "0x200"},
     "190m", {"key": "users_sync", "severity": "warning"}),
    ("Ds01JobLate", {'ds01_job_last_success_timestamp_seconds{key="scratch_purge"}': "0x3000"},
     "2870m", None),
    ("Ds01JobLate", {'ds01_job_last_success_timestamp_seconds{key="scratch_purge"}': "0x3000"},
     "2890m", {"key": "scratch_purge", "severity": "warning"}),
    ("Ds01GpuQueueWaitLong", {'ds01_gpu_queue_oldest_wait_seconds{kind="gpu"}': "3000+60x20"},
     "9m", None),
    ("Ds01GpuQueueWaitLong", {'ds01_gpu_queue_oldest_wait_seconds{kind="gpu"}': "3000+60x20"},
     "11m", {"kind": "gpu", "severity": "warning"}),
    ("Ds01UserOomKilled", {'ds01_user_memory_events_total{user="123456@example.lan",role="student",event="oom_kill"}': "0 1 1 1 1 1"},
     "5m", None),
    ("Ds01UserOomKilled", {'ds01_user_memory_events_total{user="123456@example.lan",role="student",event="oom_kill"}': "0 1 2 3 4 4"},
     "5m", {"user": "123456@example.lan", "role": "student", "event": "oom_kill", "severity": "warning"}),
    ("Ds01FilesystemNearlyFull", {'node_filesystem_avail_bytes{mountpoint="/srv",fstype="ext4",device="/dev/vdb"}': "5x10",
                                  'node_filesystem_size_bytes{mountpoint="/srv",fstype="ext4",device="/dev/vdb"}': "100x10",
                                  'node_filesystem_avail_bytes{mountpoint="/run",fstype="tmpfs",device="tmpfs"}': "1x10",
                                  'node_filesystem_size_bytes{mountpoint="/run",fstype="tmpfs",device="tmpfs"}': "100x10"},
     "3m", {"mountpoint": "/srv", "fstype": "ext4", "device": "/dev/vdb", "severity": "warning"}),
    ("Ds01QuotaNearlyFull", {'ds01_storage_used_bytes{user="j.doe@example.lan",area="home"}': "95",
                             'ds01_storage_quota_bytes{user="j.doe@example.lan",area="home"}': "100",
                             'ds01_storage_used_bytes{user="lt.student",area="home"}': "50",
                             'ds01_storage_quota_bytes{user="lt.student",area="home"}': "100"},
     "0m", {"user": "j.doe@example.lan", "area": "home", "severity": "info"}),
    ("Ds01NvmlErrors", {"ds01_gpu_nvml_errors": "0 1x10"}, "4m", {"severity": "critical"}),
    ("Ds01GpuSnapshotUnreadable", {"ds01_gpu_snapshot_up": "0x10"}, "3m", {"severity": "warning"}),
    # student: idle below 5% for 6 x 10m
    ("Ds01GpuHeldIdle", {"ds01_gpu_unit_utilization_percent" + "{" + ",".join(f'{k}="{v}"' for k, v in UNIT.items()) + "}": "1x100",
                         'ds01_gpu_unit_holder{unit="MIG-1",gpu="2",kind="1g.5gb",user="lt.student",role="student",container="train"}': "1x100",
                         'ds01_gpu_unit_utilization_percent{unit="GPU-0",gpu="0",kind="gpu"}': "80x100",
                         'ds01_gpu_unit_holder{unit="GPU-0",gpu="0",kind="gpu",user="j.doe",role="researcher",container="big"}': "1x100"},
     "55m", None),
    ("Ds01GpuHeldIdle", {"ds01_gpu_unit_utilization_percent" + "{" + ",".join(f'{k}="{v}"' for k, v in UNIT.items()) + "}": "1x100",
                         'ds01_gpu_unit_holder{unit="MIG-1",gpu="2",kind="1g.5gb",user="lt.student",role="student",container="train"}': "1x100",
                         'ds01_gpu_unit_utilization_percent{unit="GPU-0",gpu="0",kind="gpu"}': "80x100",
                         'ds01_gpu_unit_holder{unit="GPU-0",gpu="0",kind="gpu",user="j.doe",role="researcher",container="big"}': "1x100"},
     "65m", {**UNIT, "user": "lt.student", "role": "student", "container": "train", "severity": "info"}),
]


def annotations(policy, alert: str, labels: dict) -> dict:
    """The alert's annotations with its labels filled in, as Prometheus templates them."""
    (rule,) = [r for r in render.rules(policy)["groups"][0]["rules"]
               if r["alert"] == alert and r["labels"].get("role", labels.get("role")) == labels.get("role")]  # fmt: skip
    return {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], v)
            for k, v in rule["annotations"].items()}  # fmt: skip


# Only where the policy has a cluster: the exporter's Slurm gauge.
SLURM_CASES = [
    ("Ds01SlurmDown", {"ds01_slurm_up": "1 1 0x10"}, "2m", None),
    ("Ds01SlurmDown", {"ds01_slurm_up": "1 1 0x10"}, "5m", {"severity": "critical"}),
    # Slurm answered, but the poller stopped reading it: the reading only ages.
    ("Ds01SlurmDown", {"ds01_slurm_up": "1x30", "ds01_slurm_read_age_seconds": "15 15 15 75+60x20"}, "4m", None),
    ("Ds01SlurmDown", {"ds01_slurm_up": "1x30", "ds01_slurm_read_age_seconds": "15 15 15 75+60x20"}, "9m",
     {"severity": "critical"}),
]


def with_cluster(policy):
    from ds01.config import Cluster

    cluster = Cluster.model_validate({"name": "lab", "controller": "head", "nodes": {"head": {}},
                                      "partitions": {"gpu": {"nodes": ["head"]}}})  # fmt: skip
    return policy.model_copy(update={"cluster": cluster})


@needs_promtool
def test_every_alert_fires_on_its_condition_and_not_before(policy, tmp_path):
    promtool_test_rules(policy, CASES, tmp_path)


@needs_promtool
def test_a_cluster_adds_the_slurm_alert_and_it_fires_when_slurm_does_not_answer(policy, tmp_path):
    names = {r["alert"] for r in render.rules(policy)["groups"][0]["rules"]}
    assert "Ds01SlurmDown" not in names  # one server: no Slurm, no alert about it
    cluster = with_cluster(policy)
    assert {r["alert"] for r in render.rules(cluster)["groups"][0]["rules"]} == {
        c[0] for c in CASES + SLURM_CASES}  # fmt: skip
    promtool_test_rules(cluster, CASES + SLURM_CASES, tmp_path)


def promtool_test_rules(policy, cases, tmp_path):
    (tmp_path / "ds01.rules.yml").write_text(render.rules_yaml(policy))
    tests = []
    for alert, series, at, labels in cases:
        exp = [] if labels is None else [{"exp_labels": labels, "exp_annotations": annotations(policy, alert, labels)}]
        tests.append({
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": exp}],
        })  # fmt: skip
    spec = {"rule_files": ["ds01.rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_case_and_a_runbook(policy):
    alerts = {r["alert"] for r in render.rules(policy)["groups"][0]["rules"]}
    assert alerts == {c[0] for c in CASES}
    for r in render.rules(policy)["groups"][0]["rules"]:
        assert r["annotations"]["runbook"] and r["annotations"]["summary"]


def test_grafana_needs_its_repository_named(tmp_path):
    from ds01.config import PolicyError

    text = (REPO / "config/resource-allocation.yaml").read_text()
    bad = tmp_path / "p.yaml"
    bad.write_text(text + "\nmonitoring:\n  grafana: {enabled: true}\n")
    with pytest.raises(PolicyError) as e:
        load_policy(bad)
    (problem,) = e.value.problems
    assert problem.path == "monitoring.grafana" and "apt_repository and signing_key_url" in problem.message
    assert problem.line == len(text.splitlines()) + 3


def test_the_commented_example_in_the_policy_is_valid(tmp_path):
    text = (REPO / "config/resource-allocation.yaml").read_text()
    example = text.split("\n# monitoring:\n", 1)[1].split("\n\n", 1)[0]  # up to the next section
    lines = ["monitoring:"] + [ln[2:] for ln in example.splitlines() if ln.startswith("#   ")]
    p = tmp_path / "p.yaml"
    p.write_text(text + "\n" + "\n".join(lines) + "\n")
    mon = load_policy(p).monitoring
    assert mon.alerts.job_late == {"users_sync": 3600} and mon.email is not None and mon.webhook is not None
