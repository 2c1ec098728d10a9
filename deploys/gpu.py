"""GPU: the allocator's state directory, the reconciler/idle-reaper timer, the
MIG layout at boot and its plan, the login notice, the queue's and usage's
sudo rule, and the monthly usage report.

Policy: the ``gpu`` section (backend, simulated layout, state_dir,
queue_reservation, reconcile_interval, history_retention, layout),
``schedules.usage_report`` and each role's ``gpu``, ``idle`` and
``lifecycle`` keys. The logic lives in ds01/gpu/; this file only places it.
Hosts without an NVIDIA driver (the test VM) run the simulated layout of the
policy; a host with GPUs must have the NVIDIA container toolkit installed
(from NVIDIA's repository) before this deploy runs.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.facts.server import Which
from pyinfra.operations import files, systemd

from ds01.gpu.usage_cli import reports_dir
from facts.gpu import GpuLayout
from operations import gpu as gpu_ops

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates/gpu"
policy = host.data.policy
gpu = policy.gpu

# Preflight: the policy's backend must match the hardware.
layout = host.get_fact(GpuLayout)
gpus = layout["gpus"]
if gpu.backend == "nvml" and not gpus:
    raise SystemExit(
        f"gpu on {host.name}: gpu.backend is 'nvml' but NVML shows no GPU "
        f"({layout['error']}). Install the NVIDIA driver, or set gpu.backend to 'auto'."
    )
if gpu.backend == "simulated" and gpus:
    raise SystemExit(
        f"gpu on {host.name}: gpu.backend is 'simulated' but the host has {len(gpus)} NVIDIA "
        "GPU(s); the allocator would hand out GPUs that do not exist. Set it to 'auto' or 'nvml'."
    )
if gpus and not host.get_fact(Which, command="nvidia-ctk"):
    raise SystemExit(
        f"gpu on {host.name}: the host has NVIDIA GPUs but no NVIDIA container toolkit "
        "(nvidia-ctk). Install nvidia-container-toolkit from NVIDIA's repository first."
    )

state = f"{gpu.state_dir}/gpu"
# Root's alone: users read the status snapshot in gpu.runtime_dir instead.
files.directory(name=f"GPU allocator state {state} (root only)", path=state,
                user="root", group="root", mode="0700")  # fmt: skip
files.template(
    name=f"GPU status directory {gpu.runtime_dir} at boot: /etc/tmpfiles.d/ds01-gpu.conf",
    src=str(TEMPLATES / "ds01-gpu.tmpfiles.j2"), dest="/etc/tmpfiles.d/ds01-gpu.conf",
    user="root", group="root", mode="0644", runtime_dir=gpu.runtime_dir,
    dcgm_job_map_dir=gpu.dcgm_job_map_dir,
)  # fmt: skip
files.directory(name=f"GPU status directory {gpu.runtime_dir} now", path=gpu.runtime_dir,
                user="root", group="root", mode="0755")  # fmt: skip
if gpu.dcgm_job_map_dir:
    files.directory(name=f"dcgm-exporter job-mapping directory {gpu.dcgm_job_map_dir}",
                    path=gpu.dcgm_job_map_dir, user="root", group="root", mode="0755")  # fmt: skip

service = files.template(
    name="Reconciler unit /etc/systemd/system/ds01-gpu-reconcile.service",
    src=str(TEMPLATES / "ds01-gpu-reconcile.service.j2"),
    dest="/etc/systemd/system/ds01-gpu-reconcile.service",
    user="root", group="root", mode="0644",
    state_dir=gpu.state_dir, runtime_dir=gpu.runtime_dir, dcgm_job_map_dir=gpu.dcgm_job_map_dir,
    timeout=max(gpu.reconcile_interval, 60),
)  # fmt: skip
timer = files.template(
    name=f"Reconciler timer ds01-gpu-reconcile.timer (every {gpu.reconcile_interval}s)",
    src=str(TEMPLATES / "ds01-gpu-reconcile.timer.j2"),
    dest="/etc/systemd/system/ds01-gpu-reconcile.timer",
    user="root", group="root", mode="0644",
    interval=gpu.reconcile_interval,
)  # fmt: skip
systemd.service(
    name="Reconciler timer enabled and running",
    service="ds01-gpu-reconcile.timer",
    running=True, enabled=True,
    daemon_reload=service.will_change or timer.will_change,
    restarted=timer.will_change,
)  # fmt: skip

# MIG instances do not survive a reboot: re-created from gpu.layout before
# docker and the reconciler start. Enabled, never started here: applying on a
# running server is the admin's `sudo ds01 gpu layout apply`.
layout_unit = files.template(
    name="MIG layout at boot /etc/systemd/system/ds01-gpu-layout.service",
    src=str(TEMPLATES / "ds01-gpu-layout.service.j2"),
    dest="/etc/systemd/system/ds01-gpu-layout.service",
    user="root", group="root", mode="0644", ds01="/usr/local/bin/ds01",
)  # fmt: skip
systemd.service(
    name="MIG layout at boot enabled (not started)",
    service="ds01-gpu-layout.service",
    running=None, enabled=True, daemon_reload=layout_unit.will_change,
)  # fmt: skip
gpu_ops.layout_planned(name="MIG layout planned against gpu.layout (not applied)")

files.template(
    name="GPU notice at login /etc/profile.d/ds01-gpu-notice.sh",
    src=str(TEMPLATES / "ds01-gpu-notice.sh.j2"),
    dest="/etc/profile.d/ds01-gpu-notice.sh",
    user="root", group="root", mode="0644",
)  # fmt: skip
files.template(
    name="Queue join/leave and ds01 usage through sudo /etc/sudoers.d/ds01-gpu-queue",
    src=str(TEMPLATES / "ds01-gpu-queue.sudoers.j2"),
    dest="/etc/sudoers.d/ds01-gpu-queue",
    user="root", group="root", mode="0440",
    ds01="/usr/local/bin/ds01",
)  # fmt: skip

reports = reports_dir(policy)
files.directory(name=f"Usage reports {reports} (root and admins)", path=reports,
                user="root", group="root", mode="0750")  # fmt: skip
files.template(
    name=f"Monthly usage report /etc/cron.d/ds01-usage-report ({policy.schedules.usage_report})",
    src=str(TEMPLATES / "ds01-usage-report.cron.j2"),
    dest="/etc/cron.d/ds01-usage-report",
    user="root", group="root", mode="0644",
    schedule=policy.schedules.usage_report, reports=reports, ds01="/usr/local/bin/ds01",
)  # fmt: skip
