"""The real GPU layout, read through NVML (nvidia-ml-py).

NVML pitfalls this module is written around:

* ``nvmlDeviceGetMaxMigDeviceCount`` is the most MIG devices a GPU *can* have,
  not how many exist: every index up to it is tried, and an empty slot
  (``NVMLError_NotFound``) is skipped.
* Handles go stale when a GPU is re-partitioned: every :meth:`NvmlBackend.read`
  initialises NVML, reads everything, and shuts it down, so no handle outlives
  one read; a read that trips over a vanished handle is retried once.
* A driver older than nvidia-ml-py lacks some symbols: a versioned call raises
  ``NVMLError_FunctionNotFound``, an unversioned one that pynvml maps to a
  newer version (``nvmlDeviceGetComputeRunningProcesses`` -> ``_v3``) raises
  ``NVMLLibraryMismatchError``, which is *not* an ``NVMLError``. The older
  version is tried where one exists; otherwise the reading is unknown, or the
  GPU is reported with an ``error`` (and offers no units), never a traceback,
  and the other GPUs are still read.
* A process list NVML will not give (no permission, not supported) is unknown
  (``None``), never an empty list: the idle reaper must not take unknown for
  idle.
* The compute slices of a GPU are read from its GPU-instance profiles (the
  largest profile's slice count), its memory slices from that profile's
  placement, never assumed to be 7 and 8; a MIG device's own compute and GPU
  instance slices from ``nvmlDeviceGetAttributes``, its memory slices from its
  GPU instance's placement. A MIG device whose name is not a profile name is
  named from those attributes.
* A GPU whose MIG mode is pending a change reports both modes; utilisation is
  not available per MIG device (reported as ``None``, not 0).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from ds01.gpu.layout import (
    PROFILE_RE,
    Gpu,
    Layout,
    MigInstance,
    Process,
    Processes,
    profile_slices,
)

T = TypeVar("T")


class _Unreadable(Exception):
    """This GPU cannot be read (the message says why); the others still are."""


def nvml_present() -> bool:
    """Whether this host has the NVIDIA driver's library or device nodes."""
    return bool(
        os.path.exists("/dev/nvidiactl")
        or glob.glob("/proc/driver/nvidia/gpus/*")
        or ctypes.util.find_library("nvidia-ml")
    )


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlBackend:
    """+ nvml: the pynvml module (tests pass a fake one)."""

    def __init__(self, nvml: ModuleType | None = None):
        self._nvml = nvml

    def _module(self) -> ModuleType | None:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return None
            self._nvml = pynvml
        return self._nvml

    def read(self) -> Layout:
        nv = self._module()
        if nv is None:
            return Layout("none", error="nvidia-ml-py is not installed")
        stale = (nv.NVMLError_InvalidArgument, nv.NVMLError_NotFound, nv.NVMLError_GpuIsLost)
        for attempt in (1, 2):
            try:
                nv.nvmlInit()
            except nv.NVMLError as e:
                return Layout("none", error=f"NVML is not available: {e}")
            try:
                return Layout("nvml", _text(nv.nvmlSystemGetDriverVersion()), self._gpus(nv))
            except nv.NVMLLibraryMismatchError as e:
                return Layout("none", error=f"NVML failed: {_mismatch(e)}")
            except stale as e:
                if attempt == 2:
                    return Layout("none", error=f"GPUs changed while being read twice: {e}")
            except nv.NVMLError as e:
                return Layout("none", error=f"NVML failed: {e}")
            finally:
                nv.nvmlShutdown()
        raise AssertionError("unreachable")

    # -- one read, inside nvmlInit/nvmlShutdown ------------------------------

    def _gpus(self, nv: ModuleType) -> list[Gpu]:
        stale = (nv.NVMLError_InvalidArgument, nv.NVMLError_NotFound, nv.NVMLError_GpuIsLost)
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            try:
                out.append(self._gpu(nv, i))
            except stale:
                raise  # re-partitioned while being read: the whole read is retried
            except _Unreadable as e:
                out.append(self._unreadable(nv, i, str(e)))
            except nv.NVMLLibraryMismatchError as e:
                out.append(self._unreadable(nv, i, _mismatch(e)))
            except nv.NVMLError as e:
                out.append(self._unreadable(nv, i, f"NVML failed: {e}"))
        return out

    def _unreadable(self, nv: ModuleType, index: int, why: str) -> Gpu:
        """A GPU that could not be read: listed with the reason, no units."""
        uuid, name = f"GPU-unreadable-{index}", "?"
        try:
            h = nv.nvmlDeviceGetHandleByIndex(index)
            uuid, name = _text(nv.nvmlDeviceGetUUID(h)), _text(nv.nvmlDeviceGetName(h))
        except (nv.NVMLError, nv.NVMLLibraryMismatchError):
            pass
        return Gpu(
            index=index,
            uuid=uuid,
            name=name,
            memory_total=0,
            memory_used=None,
            utilization=None,
            mig_current=None,
            mig_pending=None,
            slices=None,
            processes=None,
            error=f"GPU {index} ({uuid}) not read, so it offers no units: {why}",
        )

    @staticmethod
    def _optional(nv: ModuleType, read: Callable[[], T]) -> T | None:
        """A reading the device may not support, the caller may not see, or
        the driver may not have."""
        try:
            return read()
        except (
            nv.NVMLError_NotSupported,
            nv.NVMLError_NoPermission,
            nv.NVMLError_FunctionNotFound,
            nv.NVMLLibraryMismatchError,
        ):
            return None

    def _processes(self, nv: ModuleType, handle: Any) -> Processes:
        """The compute processes, or None when NVML will not say (unknown)."""
        try:
            procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)  # pynvml: the _v3 symbol
        except nv.NVMLLibraryMismatchError:  # a driver without _v3
            procs = self._optional(nv, lambda: nv.nvmlDeviceGetComputeRunningProcesses_v2(handle))
        except (nv.NVMLError_NotSupported, nv.NVMLError_NoPermission):
            procs = None
        if procs is None:
            return None
        return [Process(int(p.pid), p.usedGpuMemory) for p in procs]

    def _gpu(self, nv: ModuleType, index: int) -> Gpu:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        modes = self._optional(nv, lambda: nv.nvmlDeviceGetMigMode(h))
        current = pending = None
        slices = memory_slices = None
        if modes is not None:
            current = modes[0] == nv.NVML_DEVICE_MIG_ENABLE
            pending = modes[1] == nv.NVML_DEVICE_MIG_ENABLE
            slices, memory_slices = self._total_slices(nv, h)
        if current and slices is None:
            raise _Unreadable(
                "MIG is on but its slice count cannot be read (no GPU-instance profile "
                "info from this driver)"
            )
        return Gpu(
            index=index,
            uuid=_text(nv.nvmlDeviceGetUUID(h)),
            name=_text(nv.nvmlDeviceGetName(h)),
            memory_total=int(mem.total),
            memory_used=int(mem.used),
            utilization=self._optional(nv, lambda: int(nv.nvmlDeviceGetUtilizationRates(h).gpu)),
            mig_current=current,
            mig_pending=pending,
            slices=slices,
            processes=[] if current else self._processes(nv, h),
            instances=self._instances(nv, h) if current else [],
            memory_slices=memory_slices,
        )

    def _profile_info(self, nv: ModuleType, h: Any, profile: int) -> Any | None:
        """A GPU-instance profile's info (v2, or v1 on a driver without v2);
        None where the GPU has no such profile."""
        unavailable = (
            nv.NVMLError_NotSupported,
            nv.NVMLError_InvalidArgument,
            nv.NVMLError_NoPermission,
        )
        try:
            return nv.nvmlDeviceGetGpuInstanceProfileInfo(h, profile)
        except unavailable:
            return None
        except nv.NVMLError_FunctionNotFound:
            pass
        try:
            return nv.nvmlDeviceGetGpuInstanceProfileInfo(h, profile, version=1)
        except unavailable:
            return None

    def _total_slices(self, nv: ModuleType, h: Any) -> tuple[int | None, int | None]:
        """(compute, memory) slices: the largest GPU-instance profile's slice
        count, and the size of its one placement. (None, None) when the
        driver offers no profile-info call at all; memory None when it has no
        placements call."""
        best = None
        for profile in range(nv.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = self._profile_info(nv, h, profile)
            except nv.NVMLError_FunctionNotFound:
                return None, None
            if (
                info is not None
                and info.sliceCount
                and (best is None or info.sliceCount > best.sliceCount)
            ):
                best = info
        if best is None:
            return None, None
        placements = (nv.c_nvmlGpuInstancePlacement_t * 1)()
        count = ctypes.c_uint(1)  # the whole-GPU profile has one placement
        try:
            nv.nvmlDeviceGetGpuInstancePossiblePlacements(
                h, best.id, placements, ctypes.byref(count)
            )
        except nv.NVMLError:
            return int(best.sliceCount), None
        memory = int(placements[0].size) if count.value else None
        return int(best.sliceCount), memory

    def _instances(self, nv: ModuleType, h: Any) -> list[MigInstance]:
        out = []
        for k in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):  # a maximum, not a count
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
            except nv.NVMLError_NotFound:
                continue  # an empty slot
            attrs = self._optional(nv, lambda mh=mh: nv.nvmlDeviceGetAttributes(mh))
            name = _text(nv.nvmlDeviceGetName(mh))
            profile = _profile_name(name, attrs)
            if profile is None:
                raise _Unreadable(
                    f"MIG device {k} is named {name!r}, which is not a MIG profile, and "
                    "NVML gives no attributes to tell its size"
                )
            gi_id = self._optional(nv, lambda mh=mh: int(nv.nvmlDeviceGetGpuInstanceId(mh)))
            ci_id = self._optional(nv, lambda mh=mh: int(nv.nvmlDeviceGetComputeInstanceId(mh)))
            placement = None
            if gi_id is not None:
                placement = self._optional(
                    nv,
                    lambda gi_id=gi_id: (
                        nv.nvmlGpuInstanceGetInfo(
                            nv.nvmlDeviceGetGpuInstanceById(h, gi_id)
                        ).placement
                    ),
                )
            mem = nv.nvmlDeviceGetMemoryInfo(mh)
            m = PROFILE_RE.fullmatch(profile)
            out.append(
                MigInstance(
                    uuid=_text(nv.nvmlDeviceGetUUID(mh)),
                    profile=profile,
                    slices=int(attrs.computeInstanceSliceCount)
                    if attrs
                    else profile_slices(profile),
                    gi_id=gi_id,
                    ci_id=ci_id,
                    placement_start=int(placement.start) if placement is not None else None,
                    placement_size=int(placement.size) if placement is not None else None,
                    memory_total=int(mem.total),
                    memory_used=int(mem.used),
                    utilization=self._optional(
                        nv, lambda mh=mh: int(nv.nvmlDeviceGetUtilizationRates(mh).gpu)
                    ),
                    processes=self._processes(nv, mh),
                    gi_slices=int(attrs.gpuInstanceSliceCount)
                    if attrs
                    else int(m.group("gi"))
                    if m
                    else None,
                )
            )
        return out


def _profile_name(name: str, attrs: Any | None) -> str | None:
    """The MIG profile from the device's name ("NVIDIA H200 MIG 1g.18gb"), or
    built from its attributes when the name does not carry one."""
    m = PROFILE_RE.search(name)
    if m is not None:
        return m.group(0)
    if attrs is None or not attrs.gpuInstanceSliceCount:
        return None
    gi, ci = int(attrs.gpuInstanceSliceCount), int(attrs.computeInstanceSliceCount)
    memory = f"{gi}g.{round(int(attrs.memorySizeMB) / 1024)}gb"
    return memory if ci in (0, gi) else f"{ci}c.{memory}"


def _mismatch(e: Exception) -> str:
    return (
        f"the NVIDIA driver lacks a function nvidia-ml-py calls ({e}); install the "
        "nvidia-ml-py that matches the driver, or update the driver"
    )
