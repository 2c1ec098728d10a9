"""The GPU layout: physical GPUs, their MIG instances, and the allocatable units.

A *unit* is what the allocator hands out: a whole GPU whose MIG mode is off, or
one MIG device (a compute instance) of a GPU whose MIG mode is on. A unit
weighs its compute fraction in GPU-equivalents: a whole GPU is 1.0, a MIG
device is its compute slices over the GPU's total compute slices (2/7 for a
``2g.10gb`` on an A100). The total is read from the hardware, never assumed.

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


@dataclass(frozen=True)
class MigInstance:
    uuid: str  # "MIG-<uuid>"
    profile: str  # "1g.10gb"
    slices: int  # compute slices of this device
    gi_id: int | None
    ci_id: int | None
    placement_start: int | None
    placement_size: int | None
    memory_total: int
    memory_used: int | None
    utilization: int | None  # percent; NVML does not report it per MIG device
    processes: list[Process] = field(default_factory=list)


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
    processes: list[Process] = field(default_factory=list)
    instances: list[MigInstance] = field(default_factory=list)


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
        its current devices are about to disappear."""
        out: list[Unit] = []
        for g in self.gpus:
            if g.mig_pending is not None and g.mig_pending != g.mig_current:
                continue
            if g.mig_current:
                total = g.slices or max((i.slices for i in g.instances), default=1)
                for inst in g.instances:
                    out.append(Unit(inst.uuid, g.index, inst.profile, inst.slices / total))
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

    def processes_by_unit(self) -> dict[str, list[Process]]:
        return {uuid: list(d.processes) for uuid, d in self.devices_by_unit().items()}

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
                    MigInstance(
                        **{
                            **i,
                            "processes": [Process(**p) for p in i.get("processes") or []],
                        }
                    )
                    for i in g.get("instances") or []
                ]
                gpus.append(
                    Gpu(
                        **{
                            **g,
                            "processes": [Process(**p) for p in g.get("processes") or []],
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
