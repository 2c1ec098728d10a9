"""``ds01 slurm run``: the user's image in a Slurm job, with the job's GPUs.

Rootless Podman (Debian's), started by the job's own process and kept in the
job's cgroup (``--cgroups=disabled``): Slurm's cores, memory and GPU device
limits hold for the container as for any process of the job. The docker
daemon would start it in its own cgroup tree, outside them (docs/cluster.md).

The command line is built here, from what this side decided, never passed
through: the GPUs are the ones Slurm's record of the job gives this node
(``scontrol show job -d``), as the CDI devices deploys/slurm.py wrote from the
units in Slurm's own order (:func:`cdi_spec`); each bind mount passes the docker
service's own rule (``ds01.docker.mounts.check_bind``: the home and the
storage areas of the role, read-only where the role may not write). The
kernel stays the boundary either way (rootless: the user's own rights, and
the job's device filter), so a user who runs podman by hand gains nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ds01.config import Policy

CDI_KIND = "ds01.slurm/gpu"
CDI_SPEC = "/etc/cdi/ds01-slurm-gpu.json"
PODMAN = "/usr/bin/podman"


class NotInJob(Exception):
    """The command cannot run here (not in a job, or the job is not the caller's)."""


def cdi_spec(units: Sequence[Sequence[str]]) -> dict:
    """The CDI spec of a node's Slurm GPUs: device ``<i>`` is the i-th GRES
    unit in Slurm's own order (``slurmd -G``, facts.slurm.SlurmdGres; the
    order a job's ``IDX`` counts in), with its device files (a MIG device: its
    GPU's and its two capability files)."""
    return {
        "cdiVersion": "0.5.0",
        "kind": CDI_KIND,
        "devices": [
            {"name": str(i), "containerEdits": {"deviceNodes": [{"path": f} for f in files]}}
            for i, files in enumerate(units)
        ],
    }


def spec_devices(text: str) -> set[str]:
    return {d["name"] for d in json.loads(text).get("devices", [])}


_INDEX = re.compile(r"\(IDX:([0-9,\-]*)\)")


def _ranges(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        out += range(int(first), int(last or first) + 1)
    return out


@dataclass(frozen=True)
class JobOnNode:
    job: str
    user_id: int
    gpus: tuple[int, ...]  # GRES indexes of this node, as Slurm allocated them


def parse_job(text: str, node: str, expand=lambda hostlist: [hostlist]) -> JobOnNode:
    """What ``scontrol show job -d`` says of the job on ``node``: its owner's
    uid and the GRES indexes there. ``expand`` turns a host list
    (``n[01-03]``) into names (``scontrol show hostnames``)."""
    words = text.split()
    fields = dict(w.split("=", 1) for w in words if "=" in w)
    job = fields.get("JobId", "")
    m = re.fullmatch(r"\S+\((\d+)\)", fields.get("UserId", ""))
    if not job or not m:
        raise ValueError("scontrol's record of the job has no JobId or UserId")
    gpus: list[int] = []
    for line in text.splitlines():
        entry = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "Nodes" in entry and "CPU_IDs" in entry and node in expand(entry["Nodes"]):
            for idx in _INDEX.findall(entry.get("GRES", "")):
                gpus += _ranges(idx)
    return JobOnNode(job, int(m.group(1)), tuple(sorted(set(gpus))))


@dataclass(frozen=True)
class RunRequest:
    image: str
    command: tuple[str, ...]
    volumes: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str | None = None


def podman_argv(
    req: RunRequest, job: JobOnNode, binds: Sequence[str], devices: set[str]
) -> list[str]:
    """The podman command line, from this side's decisions only."""
    missing = [i for i in job.gpus if str(i) not in devices]
    if missing:
        raise NotInJob(
            f"GPU(s) {missing} of job {job.job} are not in {CDI_SPEC}; "
            "the node's converge is behind its gres.conf (ask an admin)"
        )
    # --cgroupns=host: the job's cgroup (its limits) is what the container sees.
    argv = [PODMAN, "run", "--rm", "--pull=never", "--cgroups=disabled", "--cgroupns=host",
            "--network=host", "--env", f"SLURM_JOB_ID={job.job}"]  # fmt: skip
    for i in job.gpus:  # the container has no other GPU device to enumerate
        argv += ["--device", f"{CDI_KIND}={i}"]
    for b in binds:
        argv += ["--volume", b]
    for e in req.env:
        argv += ["--env", e]
    if req.workdir:
        argv += ["--workdir", req.workdir]
    return [*argv, "--", req.image, *req.command]


def checked_binds(volumes: Sequence[str], policy: Policy, uid: int) -> list[str]:
    """Each ``SRC:DST[:ro|rw]`` through the docker service's mount rule; a
    source the role may only read is mounted read-only."""
    from ds01.docker.model import Facts
    from ds01.docker.mounts import check_bind
    from ds01.docker.service import default_role_of, nss_caller, realpath_or_none

    caller = nss_caller(uid, default_role_of(policy))
    if caller is None:
        raise NotInJob(f"uid {uid} has no account here")
    out = []
    for v in volumes:
        src, _, rest = v.partition(":")
        dst, _, opts = rest.partition(":")
        if not src or not dst.startswith("/") or opts not in ("", "ro", "rw"):
            raise ValueError(f"--volume {v}: write SOURCE:TARGET[:ro|rw] (absolute paths)")
        facts = Facts(realpaths={src: realpath_or_none(src)},
                      home_realpath=realpath_or_none(caller.home))  # fmt: skip
        writable = check_bind(src, caller, policy, facts)
        out.append(f"{src}:{dst}:{'rw' if writable and opts != 'ro' else 'ro'}")
    return out


def podman_env(environ: dict, uid: int) -> dict:
    """The environment podman runs with: the job's, with the user's own home
    (a job keeps the submitting shell's HOME, which may be root's under
    runuser or sudo) and a runtime directory of this node."""
    import pwd

    pw = pwd.getpwuid(uid)
    return {**environ, "HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name,
            "XDG_RUNTIME_DIR": runtime_dir(uid)}  # fmt: skip


def runtime_dir(uid: int) -> str:
    """XDG_RUNTIME_DIR for podman, private to the user on this node. Not
    /run/user/UID: a batch job has no login session, and that directory goes
    with the user's last one, possibly while the job runs."""
    path = f"/tmp/ds01-run-{uid}"
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != uid or st.st_mode & 0o077:
        raise NotInJob(f"{path} is not yours alone; remove it or ask an admin")
    return path


def job_on_this_node(env: dict, run=subprocess.run) -> JobOnNode:
    job, node = env.get("SLURM_JOB_ID"), env.get("SLURMD_NODENAME")
    if not job or not node:
        raise NotInJob("run it inside a Slurm job (sbatch or srun), not on a login shell")
    proc = run(["scontrol", "show", "job", "-d", job], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NotInJob(f"scontrol show job {job}: {proc.stderr.strip()}")

    def expand(hostlist: str) -> list[str]:
        if "[" not in hostlist:
            return hostlist.split(",")
        out = run(["scontrol", "show", "hostnames", hostlist], capture_output=True, text=True)
        return out.stdout.split()

    found = parse_job(proc.stdout, node, expand)
    if found.user_id != os.getuid():
        raise NotInJob(f"job {job} is not yours")
    return found
