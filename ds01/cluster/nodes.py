"""A compute node as Slurm sees it: CPUs, memory and GPUs as typed GRES.

A whole GPU is GRES ``gpu:<model>`` (``a100``, ``h100``); a MIG device is GRES
``gpu:<profile>`` (``1g.10gb``), so ``--gres=gpu:1g.10gb:1`` asks for exactly
that. Each GRES names its device files, so slurmd constrains the job's cgroup
to them without Slurm's NVML plugin (Debian does not ship it in main): a MIG
device is its parent GPU's ``/dev/nvidiaN`` plus the two capability files of
its GPU instance and compute instance under ``/dev/nvidia-caps``.

The weight of each GRES type in the GPU quota is a whole number of *billing
units*, seven to a GPU (the compute slices of an A100/H100/H200), from the
unit weights ``ds01.gpu.layout`` gives the interactive allocator: one quota,
one way of counting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ds01.config import ClusterNode
from ds01.gpu.layout import Gpu, Layout, mig_weights

# Billing units per whole GPU. Slurm multiplies TRESBillingWeights by the count
# and truncates the sum to an integer, so a weight below 1 (a 1g slice as 1/7 of
# a GPU) bills 0 and lets any number of small slices escape the quota: weights
# are whole slices instead, and quotas are multiplied by the same figure.
BILLING_PER_GPU = 7

# /proc/driver/nvidia-caps/mig-minors numbers the capability devices in a fixed
# order: config 1, monitor 2, then per GPU 15 GPU instances, each its own
# access file followed by its 8 compute instances' (9 minors per GI, 135 per GPU).
_CAPS_FIRST, _CAPS_PER_GI, _CAPS_PER_GPU = 3, 9, 135


@dataclass(frozen=True)
class NodeFacts:
    """What deploys/slurm.py reads on a node (``slurmd -C`` and the GPU layout)."""

    cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    memory_mib: int  # RealMemory as slurmd -C reports it
    layout: Layout = field(default_factory=lambda: Layout("none"))
    nvml_plugin: bool = False  # Slurm's gpu/nvml plugin is installed on the node


@dataclass(frozen=True)
class Gres:
    type: str  # "a100" or "1g.10gb"
    files: tuple[str, ...]  # device files of one unit
    billing: int  # billing units of one unit


@dataclass(frozen=True)
class SlurmNode:
    name: str
    address: str | None
    facts: NodeFacts
    real_memory_mib: int
    gres: tuple[Gres, ...]

    def gres_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.gres:
            out[g.type] = out.get(g.type, 0) + 1
        return out


def gpu_type(name: str) -> str:
    """GRES type of a whole GPU: ``"NVIDIA A100-SXM4-40GB" -> "a100"``.

    Short enough to type, and a substring of the name Slurm's NVML plugin
    reports (``nvidia_a100-sxm4-40gb``), which is how AutoDetect matches it."""
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name.upper().removeprefix("NVIDIA "))
    if m:
        return m.group(1).lower()
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_") or "gpu"


def mig_cap_files(gpu_index: int, gi_id: int, ci_id: int) -> tuple[str, str]:
    """The capability device files of a MIG device (GPU instance, compute instance)."""
    gi = _CAPS_FIRST + gpu_index * _CAPS_PER_GPU + gi_id * _CAPS_PER_GI
    return (f"/dev/nvidia-caps/nvidia-cap{gi}", f"/dev/nvidia-caps/nvidia-cap{gi + 1 + ci_id}")


def billing_units(weight: float) -> int:
    """A unit's weight (GPU-equivalents) in whole billing units, never 0."""
    return max(1, round(weight * BILLING_PER_GPU))


def quota_billing(quota: float) -> int:
    """A role's GPU quota (GPU-equivalents) in billing units (rounded down)."""
    return int(quota * BILLING_PER_GPU + 1e-9)


def slurm_gpus(node: ClusterNode, layout: Layout) -> list[Gpu]:
    """The GPUs of ``layout`` that belong to Slurm on this node."""
    return [g for g in layout.gpus if node.gpus.slurm_owns(g.index)]


def _gpu_gres(gpu: Gpu) -> list[Gres]:
    if gpu.error or (gpu.mig_pending is not None and gpu.mig_pending != gpu.mig_current):
        return []  # unreadable, or its MIG devices are about to change
    parent = f"/dev/nvidia{gpu.index}"
    if not gpu.mig_current:
        return [Gres(gpu_type(gpu.name), (parent,), BILLING_PER_GPU)]
    weights = mig_weights(gpu)
    out = []
    for inst in gpu.instances:
        if inst.gi_id is None or inst.ci_id is None:
            continue  # no capability files to name: not schedulable without NVML
        files = (parent, *mig_cap_files(gpu.index, inst.gi_id, inst.ci_id))
        out.append(Gres(inst.profile, files, billing_units(weights[inst.uuid])))
    return out


def node_gres(node: ClusterNode, layout: Layout) -> tuple[Gres, ...]:
    """The GRES units of the node's Slurm GPUs, in GPU then placement order."""
    return tuple(g for gpu in slurm_gpus(node, layout) for g in _gpu_gres(gpu))


def slurm_node(name: str, node: ClusterNode, facts: NodeFacts) -> SlurmNode:
    reserved = node.reserved_memory // 1024**2
    gres = node_gres(node, facts.layout)
    return SlurmNode(name, node.address, facts, max(1, facts.memory_mib - reserved), gres)


def parse_slurmd_c(text: str) -> dict[str, int]:
    """The hardware line of ``slurmd -C``: ``{"CPUs": 64, "RealMemory": 515000, ...}``."""
    out: dict[str, int] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if eq and value.isdigit():
            out[key] = int(value)
    return out


def node_facts(hardware: dict, layout: dict | Layout, nvml_plugin: bool) -> NodeFacts:
    """NodeFacts from the facts deploys/slurm.py reads: ``slurmd -C``
    (facts.slurm.SlurmdHardware), the GPU layout (facts.gpu.GpuLayout, or
    the simulated one) and whether Slurm's gpu_nvml plugin is installed."""
    if not isinstance(layout, Layout):
        layout = Layout.from_json(layout)
    sockets = hardware.get("SocketsPerBoard", 1) * hardware.get("Boards", 1)
    return NodeFacts(
        cpus=hardware["CPUs"],
        sockets=hardware.get("Sockets", sockets),
        cores_per_socket=hardware.get("CoresPerSocket", 1),
        threads_per_core=hardware.get("ThreadsPerCore", 1),
        memory_mib=hardware["RealMemory"],
        layout=layout,
        nvml_plugin=nvml_plugin,
    )
