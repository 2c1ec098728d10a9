"""A fake ``pynvml`` module over an in-memory GPU model, for testing the NVML
backend without a GPU. It reproduces the behaviours the backend must survive:
MIG device slots with holes up to the maximum count, handles that go stale
when a GPU is re-partitioned, readings unsupported on MIG devices, calls made
before ``nvmlInit``, and a driver older than nvidia-ml-py (``missing``: C
symbols the driver lacks). It keeps real NVML's (pynvml's) return types: the
ctypes structures (``c_nvmlMemory_t``, ``c_nvmlGpuInstanceProfileInfo_v2_t``,
``c_nvmlDeviceAttributes``, ...), ``str`` names, friendly objects for
processes, and pynvml's own error classes and codes, so ``except`` clauses are
tested against the real hierarchy: a missing versioned symbol raises
``NVMLError_FunctionNotFound``, a missing symbol behind an unversioned call
that pynvml maps to a newer version raises ``NVMLLibraryMismatchError``.

:data:`MODELS` holds the GPU-instance profiles of the A100-40GB, A100-80GB,
H100-80GB and H200-141GB as NVML lists them (profile id, name, compute slices,
placement size in memory slices of 8; memory sizes as nvidia-smi shows them,
rounded); :func:`model_gpu` builds such a GPU partitioned into given profiles
at valid placements.

It is also a state machine for re-partitioning (``ds01 gpu layout apply``), as
NVIDIA documents it: ``nvmlDeviceSetMigMode`` leaves the change *pending*
until the GPU is reset (:meth:`FakeNvml.reset`; ``mode_needs_reset=False``
for a GPU that switches at once), and refuses with ``NVML_ERROR_IN_USE``
while a process uses the GPU; a GPU instance is created only at one of its
profile's valid placements, only on a GPU whose MIG mode is on, and is not a
MIG device until it has a compute instance; a GPU instance with a compute
instance cannot be destroyed (``IN_USE``), nor a compute instance with a
process. ``fail_gi``/``fail_ci`` (profile names) make creation fail with
``NVML_ERROR_INSUFFICIENT_RESOURCES``. GPU- and compute-instance handles are
pynvml's own ``c_nvmlGpuInstance_t``/``c_nvmlComputeInstance_t`` pointers.
:meth:`FakeNvml.reboot`: no MIG instance survives, pending modes take effect."""

from __future__ import annotations

import ctypes
import types
from dataclasses import dataclass, field

import pynvml

from ds01.gpu.layout import PROFILE_RE as PROFILE
from ds01.gpu.profiles import MODELS as table
from ds01.gpu.profiles import Profile

ERRORS = {n: getattr(pynvml, n) for n in dir(pynvml) if n.startswith("NVMLError")}
ERRORS["NVMLLibraryMismatchError"] = pynvml.NVMLLibraryMismatchError


P = pynvml
# The model table is ds01's own (ds01.gpu.profiles: the placements the policy
# is checked against); memory in GiB as the boards are sold.
MODELS: dict[str, tuple[int, dict[int, Profile]]] = {
    name: (gib, {p.id: p for p in table[name].values()})
    for name, gib in (
        ("NVIDIA A100-SXM4-40GB", 40),
        ("NVIDIA A100-SXM4-80GB", 80),
        ("NVIDIA H100 80GB HBM3", 80),
        ("NVIDIA H200", 141),
    )
}
# compute-instance profile id -> compute slices (NVML_COMPUTE_INSTANCE_PROFILE_*)
CI_SLICES = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7, 5: 8, 6: 6}


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
    gi_slices: int | None = None  # nvmlDeviceGetAttributes; None: from the name
    ci_slices: int | None = None
    processes_denied: bool = False
    profile_id: int | None = None  # its GPU-instance profile (NVML_GPU_INSTANCE_PROFILE_*)
    has_ci: bool = True  # False: a GPU instance without a compute instance (no MIG device)


@dataclass
class FakeGpu:
    uuid: str
    name: str
    memory_total: int
    memory_used: int = 0
    utilization: int = 0
    mig: tuple[int, int] | None = None  # (current, pending); None: not MIG-capable
    max_mig: int = 7
    # GI profile id -> Profile, or just its slice count (no memory, no placements)
    profiles: dict[int, Profile | int] = field(default_factory=dict)
    slots: dict[int, FakeMig] = field(default_factory=dict)  # MIG device index -> device
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    processes_denied: bool = False
    mode_needs_reset: bool = True  # A100: a MIG mode change waits for a GPU reset
    fail_gi: set[str] = field(default_factory=set)  # profiles whose GI creation fails
    fail_ci: set[str] = field(default_factory=set)  # profiles whose CI creation fails

    def busy(self) -> bool:
        return bool(self.processes) or any(m.processes for m in self.slots.values())


@dataclass(frozen=True)
class Handle:
    generation: int
    gpu: int
    slot: int | None = None


def model_gpu(model: str, uuid: str, mig: list[str] | None = None, **kw) -> FakeGpu:
    """A GPU of ``model`` (a key of :data:`MODELS`); ``mig``: its GPU instances,
    by profile name, each placed at the first free start aligned to its size,
    as NVML's placements are (``None``: MIG off)."""
    gib, profiles = MODELS[model]
    by_name = {p.name: p for p in profiles.values()}
    slots: dict[int, FakeMig] = {}
    used: set[int] = set()
    for k, name in enumerate(mig or []):
        p = by_name[name]
        start = next(s for s in range(0, 8, p.size) if not used & set(range(s, s + p.size)))
        used |= set(range(start, start + p.size))
        slots[k] = FakeMig(
            f"MIG-{uuid}-{k}", f"{model} MIG {name}", k + 1, 0, start, p.size,
            p.memory_mb * 1024**2, gi_slices=p.slices, ci_slices=p.slices, profile_id=p.id,
        )  # fmt: skip
    return FakeGpu(
        f"GPU-{uuid}", model, gib * 1024**3, mig=(1, 1) if mig is not None else (0, 0),
        profiles=dict(profiles), slots=slots, **kw,
    )  # fmt: skip


class FakeNvml:
    def __init__(
        self,
        gpus: list[FakeGpu],
        driver: str = "550.54.15",
        library: bool = True,
        missing: frozenset[str] = frozenset(),
    ):
        self.gpus = gpus
        self.driver = driver
        self.library = library
        self.missing = set(missing)  # C symbols this "driver" lacks
        self.initialised = 0
        self.inits = 0
        self.generation = 0
        self.repartition_during_read: list[FakeGpu] | None = None  # new layout, applied once
        self.calls: list[str] = []  # the re-partitioning calls made, in order
        self._instances: dict[int, tuple[FakeGpu, FakeMig]] = {}  # handle address -> instance
        self._structs: list[object] = []  # keeps the handles' memory alive
        self._made = 0

    def reset(self, index: int) -> None:
        """`nvidia-smi -r`: a pending MIG mode takes effect; no instance survives."""
        gpu = self.gpus[index]
        if gpu.mig is not None:
            gpu.mig = (gpu.mig[1], gpu.mig[1])
        gpu.slots.clear()

    def reboot(self) -> None:
        for i in range(len(self.gpus)):
            self.reset(i)
        self.generation += 1

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

    def _symbol(self, name: str) -> None:
        """pynvml's _nvmlGetFunctionPointer: a symbol the library lacks."""
        if name in self.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)  # -> _FunctionNotFound

    def _procs(self, entries, struct):
        out = []
        for pid, mem in entries:
            c = struct(pid=pid, usedGpuMemory=mem if mem is not None else 2**64 - 1)
            obj = pynvml.nvmlStructToFriendlyObject(c)
            if mem is None:  # NVML_VALUE_NOT_AVAILABLE, as pynvml maps it
                obj.usedGpuMemory = None
            out.append(obj)
        return out

    def _handle(self, struct: type, gpu: FakeGpu, mig: FakeMig):
        """A GPU- or compute-instance handle: a pointer to an opaque struct, as pynvml's."""
        s = struct()
        self._structs.append(s)
        self._instances[ctypes.addressof(s)] = (gpu, mig)
        return ctypes.pointer(s)

    def _instance(self, handle) -> tuple[FakeGpu, FakeMig]:
        self._live()
        gpu, mig = self._instances.get(ctypes.addressof(handle.contents), (None, None))
        if gpu is None or mig not in gpu.slots.values() or gpu not in self.gpus:
            raise pynvml.NVMLError_InvalidArgument()  # destroyed, or never made
        return gpu, mig

    @staticmethod
    def _profile(p: Profile | int, pid: int) -> Profile:
        return p if isinstance(p, Profile) else Profile(pid, f"{p}g", p, 0, 0)

    def module(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        m.__dict__.update(ERRORS)
        m.NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
        m.NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE
        m.NVML_GPU_INSTANCE_PROFILE_COUNT = pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT
        m.c_nvmlGpuInstancePlacement_t = pynvml.c_nvmlGpuInstancePlacement_t
        m.c_nvmlGpuInstance_t = pynvml.c_nvmlGpuInstance_t
        m.c_nvmlComputeInstance_t = pynvml.c_nvmlComputeInstance_t
        m.NVML_COMPUTE_INSTANCE_PROFILE_COUNT = pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT
        m.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED = (
            pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
        )
        m.NVML_SUCCESS = pynvml.NVML_SUCCESS
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
            return pynvml.c_nvmlMemory_t(
                total=d.memory_total, used=d.memory_used, free=d.memory_total - d.memory_used
            )

        def nvmlDeviceGetUtilizationRates(h):
            if h.slot is not None:
                fake._mig(h)
                raise pynvml.NVMLError_NotSupported()  # as on real MIG devices
            gpu = fake._gpu(h)
            if gpu.mig and gpu.mig[0]:
                raise pynvml.NVMLError_NotSupported()
            return pynvml.c_nvmlUtilization_t(gpu=gpu.utilization, memory=0)

        def nvmlDeviceGetMigMode(h):
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            return list(gpu.mig)

        def nvmlDeviceGetGpuInstanceProfileInfo(h, profile, version=2):
            if version not in (1, 2):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            fake._symbol(
                "nvmlDeviceGetGpuInstanceProfileInfoV"
                if version == 2
                else "nvmlDeviceGetGpuInstanceProfileInfo"
            )
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            if profile not in gpu.profiles:
                raise pynvml.NVMLError_InvalidArgument()
            p = fake._profile(gpu.profiles[profile], profile)
            if version == 1:
                c = pynvml.c_nvmlGpuInstanceProfileInfo_t()
            else:
                c = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
                c.name = f"MIG {p.name}".encode()
            c.id, c.sliceCount, c.memorySizeMB, c.instanceCount = p.id, p.slices, p.memory_mb, 1
            return c

        def nvmlDeviceGetGpuInstancePossiblePlacements(h, profile, placements, count):
            fake._symbol("nvmlDeviceGetGpuInstancePossiblePlacements_v2")
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            if profile not in gpu.profiles:
                raise pynvml.NVMLError_InvalidArgument()
            p = fake._profile(gpu.profiles[profile], profile)
            if not p.size:
                raise pynvml.NVMLError_NotSupported()
            starts = list(p.starts) or list(range(0, 8, p.size))[: 8 // p.size]
            n = count._obj  # ctypes.byref(c_uint)
            if placements is None:
                n.value = len(starts)
                return pynvml.NVML_SUCCESS
            if n.value < len(starts):
                n.value = len(starts)
                raise pynvml.NVMLError_InsufficientSize()
            for i, start in enumerate(starts):
                placements[i].start, placements[i].size = start, p.size
            n.value = len(starts)
            return pynvml.NVML_SUCCESS

        def nvmlDeviceGetAttributes(h):
            fake._symbol("nvmlDeviceGetAttributes_v2")
            if h.slot is None:
                fake._gpu(h)
                raise pynvml.NVMLError_NotSupported()  # MIG device handles only
            mig = fake._mig(h)
            c = pynvml.c_nvmlDeviceAttributes()
            named = PROFILE.search(mig.name)
            gi = mig.gi_slices or (int(named.group("gi")) if named else 0)
            ci = mig.ci_slices or (int(named.group("ci") or named.group("gi")) if named else 0)
            c.gpuInstanceSliceCount, c.computeInstanceSliceCount = gi, ci
            c.memorySizeMB = mig.memory_total // 1024**2
            return c

        def nvmlDeviceGetMaxMigDeviceCount(h):
            gpu = fake._gpu(h)
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            return gpu.max_mig

        def nvmlDeviceGetMigDeviceHandleByIndex(h, k):
            gpu = fake._gpu(h)
            if not 0 <= k < gpu.max_mig:
                raise pynvml.NVMLError_InvalidArgument()
            if k not in gpu.slots or not gpu.slots[k].has_ci:
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
            for mig in gpu.slots.values():
                if mig.gi_id == gi_id:
                    return fake._handle(pynvml.struct_c_nvmlGpuInstance_t, gpu, mig)
            raise pynvml.NVMLError_NotFound()

        def nvmlGpuInstanceGetInfo(gi):
            mig = fake._instance(gi)[1]
            return pynvml.c_nvmlGpuInstanceInfo_t(
                id=mig.gi_id,
                placement=pynvml.c_nvmlGpuInstancePlacement_t(start=mig.start, size=mig.size),
            )

        def _running(h, symbol, struct):
            fake._symbol(symbol)
            d = fake._mig(h) if h.slot is not None else fake._gpu(h)
            if d.processes_denied:
                raise pynvml.NVMLError_NoPermission()
            return fake._procs(d.processes, struct)

        def nvmlDeviceGetComputeRunningProcesses_v3(h):
            return _running(h, "nvmlDeviceGetComputeRunningProcesses_v3",
                            pynvml.c_nvmlProcessInfo_v3_t)  # fmt: skip

        def nvmlDeviceGetComputeRunningProcesses_v2(h):
            return _running(h, "nvmlDeviceGetComputeRunningProcesses_v2",
                            pynvml.c_nvmlProcessInfo_v2_t)  # fmt: skip

        # pynvml's own wrapper: the unversioned name maps to _v3 and turns a
        # missing symbol into NVMLLibraryMismatchError (not an NVMLError)
        nvmlDeviceGetComputeRunningProcesses = pynvml.throwOnVersionMismatch(
            nvmlDeviceGetComputeRunningProcesses_v3
        )
        nvmlDeviceGetComputeRunningProcesses.__name__ = "nvmlDeviceGetComputeRunningProcesses"

        # -- re-partitioning ---------------------------------------------

        def nvmlDeviceSetMigMode(h, mode):
            gpu = fake._gpu(h)
            fake.calls.append(f"set-mig {h.gpu} {mode}")
            if gpu.mig is None:
                raise pynvml.NVMLError_NotSupported()
            if mode not in (pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_DISABLE):
                raise pynvml.NVMLError_InvalidArgument()
            if gpu.busy() or (mode == pynvml.NVML_DEVICE_MIG_DISABLE and gpu.slots):
                raise pynvml.NVMLError_InUse()
            gpu.mig = (gpu.mig[0] if gpu.mode_needs_reset else mode, mode)
            return pynvml.NVML_SUCCESS  # the activation status

        def _mig_on(gpu):
            if gpu.mig is None or not gpu.mig[0]:
                raise pynvml.NVMLError_NotSupported()  # MIG mode is not (yet) on

        def nvmlDeviceGetGpuInstances(h, profile, instances, count):
            gpu = fake._gpu(h)
            _mig_on(gpu)
            found = [m for m in gpu.slots.values() if m.profile_id == profile]
            n = count._obj
            if len(found) > n.value:
                n.value = len(found)
                raise pynvml.NVMLError_InsufficientSize()
            for i, mig in enumerate(found):
                instances[i] = fake._handle(pynvml.struct_c_nvmlGpuInstance_t, gpu, mig)
            n.value = len(found)
            return pynvml.NVML_SUCCESS

        def nvmlDeviceCreateGpuInstanceWithPlacement(h, profile, placement):
            gpu = fake._gpu(h)
            _mig_on(gpu)
            if profile not in gpu.profiles:
                raise pynvml.NVMLError_InvalidArgument()
            p = fake._profile(gpu.profiles[profile], profile)
            fake.calls.append(f"create-gi {h.gpu} {p.name}@{placement.start}")
            if placement.size != p.size or placement.start not in (p.starts or (placement.start,)):
                raise pynvml.NVMLError_InvalidArgument()
            span = set(range(placement.start, placement.start + p.size))
            taken = any(span & set(range(m.start, m.start + m.size)) for m in gpu.slots.values())
            same = sum(m.profile_id == profile for m in gpu.slots.values())
            if taken or same >= p.max_count or p.name in gpu.fail_gi:
                raise pynvml.NVMLError_InsufficientResources()
            slot = next(k for k in range(gpu.max_mig + 1) if k not in gpu.slots)
            gi_id = max((m.gi_id for m in gpu.slots.values()), default=0) + 1
            fake._made += 1
            mig = FakeMig(
                f"MIG-{gpu.uuid.removeprefix('GPU-')}-new{fake._made}",
                f"{gpu.name} MIG {p.name}", gi_id, 0, placement.start, p.size,
                p.memory_mb * 1024**2, gi_slices=p.slices, ci_slices=p.slices,
                profile_id=profile, has_ci=False,
            )  # fmt: skip
            gpu.slots[slot] = mig
            return fake._handle(pynvml.struct_c_nvmlGpuInstance_t, gpu, mig)

        def nvmlGpuInstanceDestroy(gi):
            gpu, mig = fake._instance(gi)
            fake.calls.append(f"destroy-gi {fake.gpus.index(gpu)} gi{mig.gi_id}")
            if mig.has_ci:
                raise pynvml.NVMLError_InUse()  # its compute instances first
            del gpu.slots[next(k for k, m in gpu.slots.items() if m is mig)]

        def nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, profile, eng, version=2):
            mig = fake._instance(gi)[1]
            if profile not in CI_SLICES or CI_SLICES[profile] > (mig.gi_slices or 0):
                raise pynvml.NVMLError_NotSupported()
            c = pynvml.c_nvmlComputeInstanceProfileInfo_v2_t()
            c.id, c.sliceCount, c.instanceCount = profile, CI_SLICES[profile], 1
            return c

        def nvmlGpuInstanceCreateComputeInstance(gi, profile):
            gpu, mig = fake._instance(gi)
            fake.calls.append(f"create-ci {fake.gpus.index(gpu)} gi{mig.gi_id}")
            if CI_SLICES.get(profile) != mig.gi_slices:
                raise pynvml.NVMLError_NotSupported()  # the fake models whole-GI CIs only
            if mig.has_ci or mig.name.rsplit(" ", 1)[-1] in gpu.fail_ci:
                raise pynvml.NVMLError_InsufficientResources()
            mig.has_ci, mig.ci_id = True, 0
            return fake._handle(pynvml.struct_c_nvmlComputeInstance_t, gpu, mig)

        def nvmlGpuInstanceGetComputeInstances(gi, profile, instances, count):
            gpu, mig = fake._instance(gi)
            found = [mig] if mig.has_ci and CI_SLICES.get(profile) == mig.gi_slices else []
            for i, m in enumerate(found):
                instances[i] = fake._handle(pynvml.struct_c_nvmlComputeInstance_t, gpu, m)
            count._obj.value = len(found)
            return pynvml.NVML_SUCCESS

        def nvmlComputeInstanceDestroy(ci):
            gpu, mig = fake._instance(ci)
            fake.calls.append(f"destroy-ci {fake.gpus.index(gpu)} gi{mig.gi_id}")
            if mig.processes:
                raise pynvml.NVMLError_InUse()
            mig.has_ci = False

        for f in list(locals().values()):
            if callable(f) and getattr(f, "__name__", "").startswith("nvml"):
                setattr(m, f.__name__, f)
        return m
