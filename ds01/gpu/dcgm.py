"""Job-mapping files for NVIDIA's dcgm-exporter, so its GPU metrics carry who
holds the GPU.

dcgm-exporter started with ``--hpc-job-mapping-dir DIR`` (or
``DCGM_HPC_JOB_MAPPING_DIR``) reads one file per GPU, named by the GPU's index,
each line a job ID, and labels that GPU's metrics ``hpc_job``. Here a job is a
container: ``user/container``, one line per container holding a unit of the
GPU (several with MIG). The allocator rewrites the directory after each
decision, from the same snapshot it leaves for ``ds01 gpu status``; GPUs that
nobody holds have no file. Off unless ``gpu.dcgm_job_map_dir`` is set.
"""

from __future__ import annotations

import os
from contextlib import suppress
from typing import Any

from ds01.gpu.snapshot import HELD_STATES, replace_file


def job_map(snapshot: dict[str, Any]) -> dict[str, list[str]]:
    """GPU index (as the file name) -> the job IDs holding a unit of it."""
    out: dict[str, set[str]] = {}
    for u in snapshot.get("units", []):
        if u.get("state") in HELD_STATES and u.get("user") and u.get("container"):
            out.setdefault(str(u["gpu"]), set()).add(f"{u['user']}/{u['container']}")
    return {gpu: sorted(jobs) for gpu, jobs in sorted(out.items())}


def write_job_map(directory: str, snapshot: dict[str, Any]) -> None:
    """Make ``directory`` hold exactly the files :func:`job_map` gives, each
    replaced atomically (dcgm-exporter never reads half a file)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    wanted = job_map(snapshot)
    for gpu, jobs in wanted.items():
        path = os.path.join(directory, gpu)
        text = "".join(j + "\n" for j in jobs)
        with suppress(FileNotFoundError):
            if open(path).read() == text:
                continue
        replace_file(path, text, ".job-map.")
    for name in os.listdir(directory):
        if name not in wanted and (name.isdigit() or name.startswith(".job-map.")):
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
