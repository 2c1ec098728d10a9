"""A simulated GPU server described in the policy (``gpu.simulated``).

It drives the tests, the test VM and demos through the same :class:`Layout`
as the NVML backend. A GPU's UUID is derived from the site name and the GPU's
``serial`` (its stable identity, as a board's serial number), never from its
position in the list, so removing one GPU renames no other; a MIG device's
UUID from its GPU's and its place in the partitioning, so it changes when the
partitioning changes, as on real hardware. (A lone GPU without a serial is
keyed by its index, which cannot shift.)
"""

from __future__ import annotations

import uuid as uuidlib

from ds01.config import Policy, SimulatedGpu
from ds01.gpu.layout import Gpu, Layout, MigInstance, profile_memory, profile_slices

_NAMESPACE = uuidlib.UUID("6f0d8a52-34a8-4b55-9c8e-4d5a0d3c0a01")


def _uuid(*parts: object) -> str:
    return str(uuidlib.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def simulated_layout(gpus: list[SimulatedGpu], site: str = "ds01") -> Layout:
    """The layout of ``gpus``; MIG instances are placed left to right."""
    out = []
    for index, spec in enumerate(gpus):
        key = ("serial", spec.serial) if spec.serial is not None else (index, spec.name)
        gpu_uuid = "GPU-" + _uuid(site, *key)
        instances = []
        start = memory_start = 0
        for gi, profile in enumerate(spec.mig or []):
            slices = profile_slices(profile)
            # Memory slices as NVIDIA sizes them: the GPU's memory in
            # spec.memory_slices equal parts ("3g.20gb" on a 40 GB A100: 4 of 8).
            memory = max(1, round(profile_memory(profile) * spec.memory_slices / spec.memory))
            if start + slices > spec.mig_slices or memory_start + memory > spec.memory_slices:
                raise ValueError(
                    f"simulated GPU {index}: MIG profiles {spec.mig} need more than its "
                    f"{spec.mig_slices} compute and {spec.memory_slices} memory slices"
                )
            instances.append(
                MigInstance(
                    uuid="MIG-" + _uuid(gpu_uuid, gi, profile, start),
                    profile=profile,
                    slices=slices,
                    gi_id=gi + 1,
                    ci_id=0,
                    placement_start=memory_start,
                    placement_size=memory,
                    memory_total=profile_memory(profile),
                    memory_used=0,
                    utilization=None,
                    gi_slices=slices,
                )
            )
            start += slices
            memory_start += memory
        out.append(
            Gpu(
                index=index,
                uuid=gpu_uuid,
                name=spec.name,
                memory_total=spec.memory,
                memory_used=0,
                utilization=0,
                mig_current=spec.mig is not None,
                mig_pending=spec.mig is not None,
                slices=spec.mig_slices,
                instances=instances,
                memory_slices=spec.memory_slices,
            )
        )
    return Layout(backend="simulated", driver=None, gpus=out)


class SimulatedBackend:
    def __init__(self, policy: Policy):
        self.policy = policy

    def read(self) -> Layout:
        return simulated_layout(self.policy.gpu.simulated, self.policy.site.name)
