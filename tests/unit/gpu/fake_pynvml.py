"""A fake ``pynvml`` module over an in-memory GPU model, for testing the NVML
backend without a GPU. It reproduces the behaviours the backend must survive:
MIG device slots with holes up to the maximum count, handles that go stale
when a GPU is re-partitioned, readings unsupported on MIG devices, calls made
before ``nvmlInit``. Error classes are pynvml's own, so ``except`` clauses are
tested against the real hierarchy."""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import pynvml

ERRORS = {n: getattr(pynvml, n) for n in dir(pynvml) if n.startswith("NVMLError")}


@dataclass
class FakeMig:
    uuid: str
    name: str  # as NVML names it: "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    gi_id: int
    ci_id: int
    start: int
    size: int
    memory_total: int
    memory_used: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)


@dataclass
class FakeGpu:
    uuid: str
    name: str
    memory_total: int
    memory_used: int = 0
    utilization: int = 0
    mig: tuple[int, int] | None = None  # (current, pending); None: not MIG-capable
    max_mig: int = 7
    profiles: dict[int, int] = field(default_factory=dict)  # GI profile id -> slice count
    slots: dict[int, FakeMig] = field(default_factory=dict)  # MIG device index -> device
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    processes_denied: bool = False


@dataclass(frozen=True)
class Handle:
    generation: int
    gpu: int
    slot: int | None = None


class FakeNvml:
    def __init__(self, gpus: list[FakeGpu], driver: str = "550.54.15", library: bool = True):
        self.gpus = gpus
        self.driver = driver
        self.library = library
        self.initialised = 0
        self.inits = 0
        self.generation = 0
        self.repartition_during_read: list[FakeGpu] | None = None  # new layout, applied once

    def repartition(self, gpus: list[FakeGpu]) -> None:
        """What an admin's `nvidia-smi mig -cgi ...` does: every handle goes stale."""
        self.gpus = gpus
        self.generation += 1

    # -- plumbing ------------------------------------------------------------

    def _live(self) -> None:
        if not self.initialised:
            raise pynvml.NVMLError_Uninitialized()

    def _gpu(self, h: Handle) -> FakeGpu:
        self._live()
        if h.generation != self.generation:
            raise pynvml.NVMLError_InvalidArgument()
        return self.gpus[h.gpu]

    def _mig(self, h: Handle) -> FakeMig:
        gpu = self._gpu(h)
        if h.slot not in gpu.slots:
            raise pynvml.NVMLError_NotFound()
        return gpu.slots[h.slot]

    def _procs(self, entries):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in entries]

    def module(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        m.__dict__.update(ERRORS)
        m.NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
        m.NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE
        m.NVML_GPU_INSTANCE_PROFILE_COUNT = pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT
        fake = self

        def nvmlInit():
            if not fake.library:
                raise pynvml.NVMLError_LibraryNotFound()
            fake.initialised += 1
            fake.inits += 1

        def nvmlShutdown():
            fake._live()
            fake.initialised -= 1

        def nvmlSystemGetDriverVersion():
            fake._live()
            return fake.driver

        def nvmlDeviceGetCount():
            fake._live()
            return len(fake.gpus)

        def nvmlDeviceGetHandleByIndex(i):
            fake._live()
            if not 0 <= i < len(fake.gpus):
                raise pynvml.NVMLError_InvalidArgument()
            return Handle(fake.generation, i)

        def nvmlDeviceGetUUID(h):
            return fake._mig(h).uuid if h.slot is not None else fake._gpu(h).uuid

        def nvmlDeviceGetName(h):
            return fake._mig(h).name if h.slot is not None else fake._gpu(h).name

        def nvmlDeviceGetMemoryInfo(h):
            d = fake._mig(h) if h.slot is not None else fake._gpu(h)
            return types.SimpleNamespace(
                total=d.memory_total, used=d.memory_used, free=d.memory_total - d.memory_used
            )

        def nvmlDeviceGetUtilizationRates(h):
            if h.slot is not None:
                fake._mig(h)
                raise pynvml.NVMLError_NotSupported()  # as on real MIG devices
            gpu = fake._gpu(h)
            if gpu.mig and gpu.mig[0]:
                raise pynvml.NVMLError_NotSupported()
            return types.SimpleNamespace(gpu=gpu.utilization, memory=0)

        def nvmlDeviceGetMigMode(h):
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            return list(gpu.mig)

        def nvmlDeviceGetGpuInstanceProfileInfo(h, profile, version=2):
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            if profile not in gpu.profiles:
                raise pynvml.NVMLError_InvalidArgument()
            return types.SimpleNamespace(id=profile, sliceCount=gpu.profiles[profile])

        def nvmlDeviceGetMaxMigDeviceCount(h):
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            return gpu.max_mig

        def nvmlDeviceGetMigDeviceHandleByIndex(h, k):
            gpu = fake._gpu(h)
            if not 0 <= k < gpu.max_mig:
                raise pynvml.NVMLError_InvalidArgument()
            if k not in gpu.slots:
                raise pynvml.NVMLError_NotFound()
            handle = Handle(fake.generation, h.gpu, k)
            if fake.repartition_during_read is not None:
                fake.repartition(fake.repartition_during_read)
                fake.repartition_during_read = None
            return handle

        def nvmlDeviceGetGpuInstanceId(h):
            return fake._mig(h).gi_id

        def nvmlDeviceGetComputeInstanceId(h):
            return fake._mig(h).ci_id

        def nvmlDeviceGetGpuInstanceById(h, gi_id):
            gpu = fake._gpu(h)
            for slot, mig in gpu.slots.items():
                if mig.gi_id == gi_id:
                    return Handle(fake.generation, h.gpu, slot)
            raise pynvml.NVMLError_NotFound()

        def nvmlGpuInstanceGetInfo(gi):
            mig = fake._mig(gi)
            return types.SimpleNamespace(
                id=mig.gi_id, placement=types.SimpleNamespace(start=mig.start, size=mig.size)
            )

        def nvmlDeviceGetComputeRunningProcesses(h):
            if h.slot is not None:
                return fake._procs(fake._mig(h).processes)
            gpu = fake._gpu(h)
            if gpu.processes_denied:
                raise pynvml.NVMLError_NoPermission()
            return fake._procs(gpu.processes)

        for f in list(locals().values()):
            if callable(f) and getattr(f, "__name__", "").startswith("nvml"):
                setattr(m, f.__name__, f)
        return m
