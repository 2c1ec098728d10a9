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
        start = 0
        for gi, profile in enumerate(spec.mig or []):
            slices = profile_slices(profile)
            if start + slices > spec.mig_slices:
                raise ValueError(
                    f"simulated GPU {index}: MIG profiles {spec.mig} need more than its "
                    f"{spec.mig_slices} slices"
                )
            instances.append(
                MigInstance(
                    uuid="MIG-" + _uuid(gpu_uuid, gi, profile, start),
                    profile=profile,
                    slices=slices,
                    gi_id=gi + 1,
                    ci_id=0,
                    placement_start=start,
                    placement_size=slices,
                    memory_total=profile_memory(profile),
                    memory_used=0,
                    utilization=None,
                )
            )
            start += slices
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
            )
        )
    return Layout(backend="simulated", driver=None, gpus=out)


class SimulatedBackend:
    def __init__(self, policy: Policy):
        self.policy = policy

    def read(self) -> Layout:
        return simulated_layout(self.policy.gpu.simulated, self.policy.site.name)
