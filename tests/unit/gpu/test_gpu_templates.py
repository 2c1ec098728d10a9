"""templates/gpu/ render to what the server needs (the VM test checks them live)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "templates/gpu"


def render(name: str, **values) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((TEMPLATES / name).read_text()).render(**values)


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.j2")))
def test_every_template_says_who_owns_it(name):
    assert "Managed by ds01-infra (deploys/gpu.py)" in (TEMPLATES / name).read_text()


@pytest.mark.skipif(not shutil.which("visudo"), reason="visudo is not installed here")
def test_sudoers_rule_parses(tmp_path):
    f = tmp_path / "ds01-gpu-queue"
    f.write_text(render("ds01-gpu-queue.sudoers.j2", ds01="/usr/local/bin/ds01"))
    out = subprocess.run(["visudo", "-cf", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sudoers_rule_allows_only_queue_changes_and_usage():
    text = render("ds01-gpu-queue.sudoers.j2", ds01="/usr/local/bin/ds01")
    body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
    body = body.replace("\\\n", "").split("ALL ALL")[0]
    commands = [c.strip() for line in body.splitlines() for c in line.split("=", 1)[1].split(",")]
    assert commands == [
        "/usr/local/bin/ds01 gpu queue join",
        "/usr/local/bin/ds01 gpu queue join --kind *",
        "/usr/local/bin/ds01 gpu queue leave",
        "/usr/local/bin/ds01 gpu queue leave --all",
        "/usr/local/bin/ds01 gpu queue leave --kind *",
        "/usr/local/bin/ds01 usage",
        "/usr/local/bin/ds01 usage *",
    ]
    assert text.splitlines()[-1] == "ALL ALL=(root) NOPASSWD: DS01_GPU_QUEUE, DS01_USAGE"


def test_units_carry_the_policy_values(policy):
    gpu = policy.gpu
    service = render("ds01-gpu-reconcile.service.j2", state_dir=gpu.state_dir,
                     runtime_dir=gpu.runtime_dir, timeout=60, dcgm_job_map_dir=None)  # fmt: skip
    assert "ExecStart=/usr/local/bin/ds01 job run gpu_reconcile -- /usr/local/bin/ds01 gpu reconcile" in service
    assert f"ReadWritePaths={gpu.state_dir} {gpu.runtime_dir}" in service
    timer = render("ds01-gpu-reconcile.timer.j2", interval=gpu.reconcile_interval)
    assert f"OnUnitActiveSec={gpu.reconcile_interval}s" in timer
    tmpfiles = render("ds01-gpu.tmpfiles.j2", runtime_dir=gpu.runtime_dir, dcgm_job_map_dir=None)
    assert tmpfiles.endswith(f"\nd {gpu.runtime_dir} 0755 root root -\n")


def test_the_dcgm_job_map_directory_is_made_at_boot_and_writable_by_the_allocator(policy):
    gpu = policy.gpu
    tmpfiles = render("ds01-gpu.tmpfiles.j2", runtime_dir=gpu.runtime_dir,
                      dcgm_job_map_dir="/run/dcgm-job-map")  # fmt: skip
    lines = tmpfiles.splitlines()
    assert f"d {gpu.runtime_dir} 0755 root root -" in lines
    assert lines[-1] == "d /run/dcgm-job-map 0755 root root -"
    service = render("ds01-gpu-reconcile.service.j2", state_dir=gpu.state_dir,
                     runtime_dir=gpu.runtime_dir, timeout=60, dcgm_job_map_dir="/run/dcgm-job-map")  # fmt: skip
    rw = next(x for x in service.splitlines() if x.startswith("ReadWritePaths="))
    assert rw.endswith(" -/run/dcgm-job-map")


def test_layout_unit_runs_before_docker_and_the_reconciler():
    unit = render("ds01-gpu-layout.service.j2", ds01="/usr/local/bin/ds01")
    assert "ExecStart=/usr/local/bin/ds01 gpu layout apply --boot" in unit
    before = next(line for line in unit.splitlines() if line.startswith("Before="))
    assert set(before.split("=", 1)[1].split()) == {
        "docker.service", "ds01-gpu-reconcile.service", "ds01-gpu-reconcile.timer"}  # fmt: skip
    assert "Type=oneshot" in unit and "WantedBy=multi-user.target" in unit


def test_usage_report_cron_runs_through_ds01_job_run(policy):
    cron = render("ds01-usage-report.cron.j2", schedule=policy.schedules.usage_report,
                  reports="/var/lib/ds01/reports", ds01="/usr/local/bin/ds01")  # fmt: skip
    assert cron.splitlines()[-1] == (
        "30 0 1 * * root /usr/local/bin/ds01 job run usage_report -- /usr/local/bin/ds01 usage "
        "--report /var/lib/ds01/reports"
    )
