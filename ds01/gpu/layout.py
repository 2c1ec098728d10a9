"""The GPU layout: physical GPUs, their MIG instances, and the allocatable units.

A *unit* is what the allocator hands out: a whole GPU whose MIG mode is off, or
one MIG device (a compute instance) of a GPU whose MIG mode is on. Its weight,
in GPU-equivalents (a whole GPU is 1.0), is what it takes from its GPU:

* A GPU instance takes compute slices and memory slices, and either can be
  what runs out: its *share* is the larger of its compute slices over the
  GPU's compute slices and its memory slices (its placement size) over the
  GPU's memory slices (the dominant share). A100-40GB: ``2g.10gb`` is
  max(2/7, 2/8) = 2/7; ``3g.20gb`` is max(3/7, 4/8) = 1/2. H200-141GB:
  ``1g.35gb`` is max(1/7, 2/8) = 1/4, so four of them, which fill the GPU's
  memory, weigh one GPU (not 4/7).
* The shares of one GPU's instances can add up to more than 1 (an A100 as
  ``3g.20gb`` + ``4g.20gb`` is 1/2 + 4/7): then they are scaled down in
  proportion so that the whole partitioned GPU weighs exactly 1.0, never more.
* A compute instance inside a larger GPU instance (``1c.3g.20gb``) takes its
  compute slices' part of its GPU instance's weight.

The totals are read from the hardware, never assumed; where the memory slices
are unknown the compute share alone counts.

The layout serialises to the JSON that ``ds01 gpu probe --json`` prints and
``facts/gpu.py`` parses::

    {"backend": "nvml", "driver": "550.54.15", "error": null,
     "gpus": [{"index": 0, "uuid": "GPU-...", "name": "NVIDIA A100-SXM4-40GB",
               "memory_total": 42949672960, "memory_used": 0, "utilization": 0,
               "mig_current": true, "mig_pending": true, "slices": 7,
               "processes": [],
               "instances": [{"uuid": "MIG-...", "profile": "3g.20gb", "slices": 3,
                              "gi_id": 1, "ci_id": 0, "placement_start": 0,
                              "placement_size": 4, "memory_total": 21474836480,
                              "memory_used": 0, "utilization": null,
                              "processes": [{"pid": 4242, "memory_used": 1048576}]}]}]}
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# "1g.10gb", "3g.40gb", and compute-instance names inside a larger GPU instance
# such as "1c.3g.20gb"; "+me" marks the media-extension variants on H100.
PROFILE_RE = re.compile(r"(?:(?P<ci>\d+)c\.)?(?P<gi>\d+)g\.(?P<mem>\d+)gb(?P<ext>\+me)?")
FULL_GPU = "gpu"


def profile_slices(profile: str) -> int:
    """Compute slices of a MIG profile name: ``"2g.10gb" -> 2``, ``"1c.3g.20gb" -> 1``."""
    m = PROFILE_RE.fullmatch(profile)
    if not m:
        raise ValueError(f"{profile!r} is not a MIG profile name such as '1g.10gb'")
    return int(m.group("ci") or m.group("gi"))


def profile_memory(profile: str) -> int:
    """Memory of a MIG profile in bytes, from its name (``"1g.5gb" -> 5 GiB``)."""
    m = PROFILE_RE.fullmatch(profile)
    if not m:
        raise ValueError(f"{profile!r} is not a MIG profile name such as '1g.10gb'")
    return int(m.group("mem")) * 1024**3


@dataclass(frozen=True)
class Process:
    pid: int
    memory_used: int | None


# A device's processes: None when NVML would not say (no permission, not
# supported, a driver without the call): unknown, which is never "idle".
Processes = list[Process] | None


@dataclass(frozen=True)
class MigInstance:
    uuid: str  # "MIG-<uuid>"
    profile: str  # "1g.10gb"
    slices: int  # compute slices of this device (its compute instance)
    gi_id: int | None
    ci_id: int | None
    placement_start: int | None  # in memory slices
    placement_size: int | None  # memory slices of its GPU instance
    memory_total: int
    memory_used: int | None
    utilization: int | None  # percent; NVML does not report it per MIG device
    processes: Processes = field(default_factory=list)
    gi_slices: int | None = None  # compute slices of its GPU instance (None: = slices)


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str  # "GPU-<uuid>"
    name: str
    memory_total: int
    memory_used: int | None
    utilization: int | None
    mig_current: bool | None  # None: the GPU cannot do MIG
    mig_pending: bool | None  # differs from current until the GPU is reset
    slices: int | None  # total compute slices when MIG-capable (7 on A100/H100)
    processes: Processes = field(default_factory=list)
    instances: list[MigInstance] = field(default_factory=list)
    memory_slices: int | None = None  # total memory slices when MIG-capable (8 on A100/H100)
    error: str | None = None  # why this GPU could not be read (it offers no units)


def mig_weights(gpu: Gpu) -> dict[str, float]:
    """The weight of each MIG device of ``gpu`` (see the module docstring)."""
    compute = gpu.slices or max((i.gi_slices or i.slices for i in gpu.instances), default=1)
    shares: dict[int | str, float] = {}  # per GPU instance
    for inst in gpu.instances:
        gi_slices = inst.gi_slices or inst.slices
        share = gi_slices / compute
        if gpu.memory_slices and inst.placement_size:
            share = max(share, inst.placement_size / gpu.memory_slices)
        shares[inst.gi_id if inst.gi_id is not None else inst.uuid] = share
    scale = max(1.0, sum(shares.values()))
    return {
        inst.uuid: shares[inst.gi_id if inst.gi_id is not None else inst.uuid]
        * inst.slices
        / (inst.gi_slices or inst.slices)
        / scale
        for inst in gpu.instances
    }


@dataclass(frozen=True)
class Unit:
    """One allocatable unit (the allocator's contract type)."""

    uuid: str  # "GPU-..." or "MIG-..."
    gpu_index: int
    profile: str | None  # None: a whole GPU
    weight: float  # GPU-equivalents

    @property
    def kind(self) -> str:
        """``"gpu"`` for a whole GPU, else the MIG profile."""
        return self.profile or FULL_GPU


@dataclass(frozen=True)
class Layout:
    backend: str  # "nvml", "simulated" or "none"
    driver: str | None = None
    gpus: list[Gpu] = field(default_factory=list)
    error: str | None = None  # why the layout is empty, when it is

    def units(self) -> list[Unit]:
        """Every allocatable unit, in GPU then placement order.

        A GPU with MIG on contributes its MIG devices (none if not yet
        partitioned); a GPU whose MIG mode is pending a change contributes
        nothing until the change is applied and the layout re-read, because
        its current devices are about to disappear; nor does a GPU that could
        not be read (``error``)."""
        out: list[Unit] = []
        for g in self.gpus:
            if g.error or (g.mig_pending is not None and g.mig_pending != g.mig_current):
                continue
            if g.mig_current:
                weights = mig_weights(g)
                for inst in g.instances:
                    out.append(Unit(inst.uuid, g.index, inst.profile, weights[inst.uuid]))
            else:
                out.append(Unit(g.uuid, g.index, None, 1.0))
        return out

    def devices_by_unit(self) -> dict[str, Gpu | MigInstance]:
        """The device behind each unit uuid (its readings: memory, use, processes)."""
        out: dict[str, Gpu | MigInstance] = {}
        for g in self.gpus:
            if g.mig_current:
                out.update((inst.uuid, inst) for inst in g.instances)
            else:
                out[g.uuid] = g
        return out

    def processes_by_unit(self) -> dict[str, Processes]:
        return {
            uuid: None if d.processes is None else list(d.processes)
            for uuid, d in self.devices_by_unit().items()
        }

    def unread_gpus(self) -> set[int]:
        """Indexes of GPUs that could not be read: their units are unknown, not gone."""
        return {g.index for g in self.gpus if g.error}

    def utilization_by_unit(self) -> dict[str, int | None]:
        return {uuid: d.utilization for uuid, d in self.devices_by_unit().items()}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        """Parse the probe's JSON; raise ``ValueError`` naming the bad field."""
        try:
            gpus = []
            for g in data.get("gpus") or []:
                insts = [
                    MigInstance(**{**i, "processes": _processes(i.get("processes", []))})
                    for i in g.get("instances") or []
                ]
                gpus.append(
                    Gpu(
                        **{
                            **g,
                            "processes": _processes(g.get("processes", [])),
                            "instances": insts,
                        }
                    )
                )
            return cls(
                backend=str(data["backend"]),
                driver=data.get("driver"),
                gpus=gpus,
                error=data.get("error"),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a GPU layout: {e}") from None


def _processes(data: list[dict[str, Any]] | None) -> Processes:
    return None if data is None else [Process(**p) for p in data]
