"""The real GPU layout, read through NVML (nvidia-ml-py).

NVML pitfalls this module is written around:

* ``nvmlDeviceGetMaxMigDeviceCount`` is the most MIG devices a GPU *can* have,
  not how many exist: every index up to it is tried, and an empty slot
  (``NVMLError_NotFound``) is skipped.
* Handles go stale when a GPU is re-partitioned: every :meth:`NvmlBackend.read`
  initialises NVML, reads everything, and shuts it down, so no handle outlives
  one read; a read that trips over a vanished handle is retried once.
* The number of compute slices of a GPU is read from its GPU-instance profiles
  (the largest profile's slice count), never assumed to be 7.
* A GPU whose MIG mode is pending a change reports both modes; utilisation is
  not available per MIG device (reported as ``None``, not 0).
"""

from __future__ import annotations

import ctypes.util
import glob
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from ds01.gpu.layout import PROFILE_RE, Gpu, Layout, MigInstance, Process, profile_slices

T = TypeVar("T")


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
        return [self._gpu(nv, i) for i in range(nv.nvmlDeviceGetCount())]

    @staticmethod
    def _optional(nv: ModuleType, read: Callable[[], T]) -> T | None:
        """A reading the device may not support or the caller may not see."""
        try:
            return read()
        except (nv.NVMLError_NotSupported, nv.NVMLError_NoPermission):
            return None

    def _processes(self, nv: ModuleType, handle: Any) -> list[Process]:
        procs = self._optional(nv, lambda: nv.nvmlDeviceGetComputeRunningProcesses(handle)) or []
        return [Process(int(p.pid), p.usedGpuMemory) for p in procs]

    def _gpu(self, nv: ModuleType, index: int) -> Gpu:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        modes = self._optional(nv, lambda: nv.nvmlDeviceGetMigMode(h))
        current = pending = None
        if modes is not None:
            current = modes[0] == nv.NVML_DEVICE_MIG_ENABLE
            pending = modes[1] == nv.NVML_DEVICE_MIG_ENABLE
        slices = self._total_slices(nv, h) if modes is not None else None
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
        )

    def _total_slices(self, nv: ModuleType, h: Any) -> int | None:
        """The slice count of the largest GPU-instance profile this GPU supports."""
        best = None
        for profile in range(nv.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = nv.nvmlDeviceGetGpuInstanceProfileInfo(h, profile)
            except (
                nv.NVMLError_NotSupported,
                nv.NVMLError_InvalidArgument,
                nv.NVMLError_NoPermission,
            ):
                continue
            if info.sliceCount and (best is None or info.sliceCount > best):
                best = int(info.sliceCount)
        return best

    def _instances(self, nv: ModuleType, h: Any) -> list[MigInstance]:
        out = []
        for k in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):  # a maximum, not a count
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
            except nv.NVMLError_NotFound:
                continue  # an empty slot
            name = _text(nv.nvmlDeviceGetName(mh))
            m = PROFILE_RE.search(name)
            if m is None:
                raise nv.NVMLError_InvalidArgument()  # not a MIG device name: read again
            profile = m.group(0)
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
            out.append(
                MigInstance(
                    uuid=_text(nv.nvmlDeviceGetUUID(mh)),
                    profile=profile,
                    slices=profile_slices(profile),
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
                )
            )
        return out
