"""The converged VM, from the outside: deploys/monitoring.py.

    DS01_VM=h13 python3 -m pytest tests/infra/test_monitoring.py

Prometheus, node exporter, Alertmanager and the DS01 exporter listen on
loopback; every target is up; two users' containers (one holding a simulated
GPU) show in the per-user metrics; stopping ds01-docker.service and a failing
job record each raise their alert, which resolves once the cause is gone.
The VM policy scrapes and evaluates every 5 s, with service_down_for 5 s.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
import yaml
from conftest import REPO

from ds01.config import load_policy

pytestmark = pytest.mark.vm

POLICY = yaml.safe_load((REPO / "tests/vm/policy.yaml").read_text())
MON = POLICY["monitoring"]
S1, RES = "lt.student", "lt.researcher"
IMG = "ds01-vm/tiny:1"  # built by tests/infra/test_docker.py's fixture (imported below)
PORTS = {"prometheus": 9090, "alertmanager": 9093, "node": 9100, "ds01": 9901}
# Condition to firing alert: one scrape, the rule's `for`, two evaluations, and slack
# (the policy model's durations, in seconds).
_MON = load_policy(REPO / "tests/vm/policy.yaml").monitoring
ALERT_WITHIN = (_MON.scrape_interval + _MON.alerts.service_down_for
                + 2 * _MON.evaluation_interval + 10)  # fmt: skip

QUERY = r"""
import json, sys, urllib.parse, urllib.request
path, args = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
url = "http://127.0.0.1:9090/api/v1/" + path + ("?" + urllib.parse.urlencode(args) if args else "")
print(json.dumps(json.load(urllib.request.urlopen(url, timeout=10))["data"]))
"""


def api(vm, path: str, **args) -> dict | list:
    argv = " ".join(shlex.quote(f"{k}={v}") for k, v in args.items())
    return json.loads(vm.check_output(f"python3 -c {shlex.quote(QUERY)} {path} {argv}"))


def query(vm, promql: str) -> list[dict]:
    return api(vm, "query", query=promql)["result"]


def wait_for(what: str, check, timeout: float = 60):
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() > deadline:
            pytest.fail(f"{what}: not seen within {timeout:.0f}s")
        time.sleep(1)


def firing(vm, alert: str, **labels) -> list[dict]:
    sel = ",".join([f'alertname="{alert}"', 'alertstate="firing"', *(f'{k}="{v}"' for k, v in labels.items())])
    return query(vm, f"ALERTS{{{sel}}}")


def test_everything_listens_on_loopback_only(vm):
    # the exporter may still be starting (a converge that just restarted it)
    wait_for("the DS01 exporter listening", lambda: ":9901 " in vm.check_output("ss -Hltn") + " ", 30)
    listening = vm.check_output("ss -Hltn").splitlines()
    for port in PORTS.values():
        addrs = [line.split()[3] for line in listening if line.split()[3].endswith(f":{port}")]
        assert addrs == [f"127.0.0.1:{port}"], (port, addrs)
    assert not any(line.split()[3].endswith(":9094") for line in listening)  # no cluster gossip


def test_exporter_runs_as_its_own_unprivileged_user(vm):
    svc = vm.service("ds01-exporter.service")
    assert svc.is_running and svc.is_enabled
    props = vm.check_output("systemctl show -p User -p NoNewPrivileges -p ProtectSystem ds01-exporter")
    assert "User=ds01-exporter" in props and "ProtectSystem=strict" in props
    pid = vm.check_output("systemctl show -p MainPID --value ds01-exporter")
    assert vm.check_output(f"ps -o user= -p {pid}") == "ds01-exporter"
    assert vm.user("ds01-exporter").shell == "/usr/sbin/nologin"


def test_all_targets_up_and_rules_loaded(vm):
    def all_up():
        targets = api(vm, "targets")["activeTargets"]
        return targets if {t["labels"]["job"] for t in targets if t["health"] == "up"} == set(PORTS) else None

    wait_for("all four targets up", all_up)
    groups = api(vm, "rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    rendered = vm.check_output("ds01 monitoring rules").count("- alert:")
    assert len(rules) == rendered > 10
    assert all(r["health"] == "ok" for r in rules)


def test_node_exporter_reports_the_ds01_units_and_storage(vm):
    assert wait_for("ds01-docker.service state", lambda: query(
        vm, 'node_systemd_unit_state{name="ds01-docker.service",state="active"} == 1'))
    vm.check_output("systemctl start ds01-storage-metrics.service")
    assert vm.file("/var/lib/prometheus/node-exporter/ds01_storage.prom").exists
    assert wait_for("storage use per user", lambda: query(vm, f'ds01_storage_used_bytes{{user="{S1}"}}'))
    record = json.loads(vm.check_output("cat /var/lib/ds01/jobs/storage_metrics.json"))
    assert record["result"] == "ok"


@pytest.fixture
def two_users_containers(vm):
    from test_docker import MAKE_IMAGE, dk  # the tiny image and the users' docker

    vm.check_output("sh -c " + shlex.quote(MAKE_IMAGE.replace("{img}", IMG)))
    for user in (S1, RES):
        dk(vm, user, f"rm -f mon-{user}")
    gpu = dk(vm, S1, f"run -d --name mon-{S1} --gpus 1 {IMG} sleep 600")
    plain = dk(vm, RES, f"run -d --name mon-{RES} {IMG} sleep 600")
    assert gpu.rc == 0 and plain.rc == 0, gpu.stderr + plain.stderr
    yield
    for user in (S1, RES):
        dk(vm, user, f"rm -f mon-{user}")


def test_per_user_metrics_show_both_users_containers(vm, two_users_containers):
    for user in (S1, RES):
        assert wait_for(f"{user}'s container", lambda u=user: query(vm, f'ds01_user_containers{{user="{u}"}} >= 1'))
        assert query(vm, f'ds01_user_memory_bytes{{user="{user}"}} > 0')
        assert query(vm, f'ds01_user_tasks{{user="{user}"}} >= 1')
    (lease,) = wait_for("the student's GPU lease", lambda: query(vm, f'ds01_gpu_leases{{user="{S1}"}}'))
    # >= 1: an earlier test's stopped container may still be held (gpu_hold_after_stop)
    assert lease["metric"]["role"] == "student" and float(lease["value"][1]) >= 1
    (unit,) = query(vm, f'ds01_gpu_unit_holder{{user="{S1}",container="mon-{S1}"}}')
    # dcgm-exporter's job map: the file named by the GPU's index names the holder
    job_map = vm.file(f"/run/dcgm-job-map/{unit['metric']['gpu']}")
    assert f"{S1}/mon-{S1}" in job_map.content_string.splitlines() and job_map.mode == 0o644
    # the allocator's decisions are timed (this container's allocate among them)
    assert query(vm, 'ds01_gpu_decision_seconds_count{op="allocate"} >= 1')
    assert not query(vm, f'ds01_gpu_leases{{user="{RES}"}}')


def test_docker_service_down_raises_the_alert_and_it_resolves(vm):
    assert not firing(vm, "Ds01DockerServiceDown")
    vm.check_output("systemctl stop ds01-docker.service")
    t0 = time.time()
    try:
        wait_for("Ds01DockerServiceDown firing", lambda: firing(vm, "Ds01DockerServiceDown"), ALERT_WITHIN)
        print(f"Ds01DockerServiceDown fired {time.time() - t0:.0f}s after the stop")
    finally:
        vm.check_output("systemctl start ds01-docker.service")
    wait_for("Ds01DockerServiceDown resolved", lambda: not firing(vm, "Ds01DockerServiceDown"), ALERT_WITHIN)


def test_a_failing_job_raises_the_alert_and_a_success_resolves_it(vm):
    key = "monitoring_check"
    try:
        assert vm.run(f"ds01 job run {key} -- false").rc == 1
        t0 = time.time()
        wait_for("Ds01JobFailed firing", lambda: firing(vm, "Ds01JobFailed", key=key), ALERT_WITHIN)
        print(f"Ds01JobFailed fired {time.time() - t0:.0f}s after the failed run")
        vm.check_output(f"ds01 job run {key} -- true")
        wait_for("Ds01JobFailed resolved", lambda: not firing(vm, "Ds01JobFailed", key=key), ALERT_WITHIN)
    finally:
        vm.run(f"rm -f /var/lib/ds01/jobs/{key}.json")


def test_every_dashboard_panel_has_data(vm, two_users_containers):
    """No dead panels: each panel's query of the dashboards generated from the
    VM policy returns at least one series from the VM's Prometheus (while a
    GPU is held; the storage timer has run, so a job record exists)."""
    from ds01.config import load_policy
    from ds01.monitoring import dashboards

    vm.check_output("systemctl start ds01-storage-metrics.service")
    wait_for("the student's GPU lease", lambda: query(vm, f'ds01_gpu_leases{{user="{S1}"}}'))
    wait_for("a job record", lambda: query(vm, "ds01_job_last_failed"))
    boards = dashboards.dashboards(load_policy(REPO / "tests/vm/policy.yaml"))
    dead = []
    for name, board in boards.items():
        assert dashboards.check(board) == [], name
        for title, expr in dashboards.panel_queries(board):
            # rate() over 5m needs two scrapes in the window: give it a little time
            if not wait_for_or_none(lambda e=expr: query(vm, e), 30):
                dead.append(f"{name}: {title}: {expr}")
    assert dead == []


def wait_for_or_none(check, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if got := check():
            return got
        time.sleep(2)
    return None
