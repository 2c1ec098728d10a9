"""Re-partitioning one GPU through NVML, in the order NVIDIA documents.

For each GPU ``ds01 gpu layout apply`` changes (MIG user guide, "Destroying
GPU Instances" and "Creating GPU Instances"; what ``nvidia-smi mig -dci``,
``-dgi``, ``-i N -mig 1``, ``-cgi`` and ``-cci`` do):

1. destroy every compute instance (a GPU instance with one cannot be destroyed),
2. destroy every GPU instance,
3. set the MIG mode; on GPUs that need it the change stays *pending* until
   the GPU is reset, and nothing more can be done before then
   (:class:`MigPending`),
4. create each GPU instance at its placement (:func:`ds01.gpu.profiles.place`),
5. give each one compute instance spanning it (what ``-C`` does).

Every NVML failure is a :class:`MigFailed` that says which step failed, why
(``IN_USE``: a process has the GPU open; ``INSUFFICIENT_RESOURCES``: no room
for the instance), and whether the GPU was already changed (``changed``),
which decides what the caller does with the drained units.
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

from ds01.gpu.profiles import Placed


class MigFailed(Exception):
    """+ message: for the admin; + changed: whether the GPU was altered before it."""

    def __init__(self, message: str, changed: bool):
        super().__init__(message)
        self.message = message
        self.changed = changed


class MigPending(MigFailed):
    """The MIG mode change waits for a GPU reset."""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlPartitioner:
    """+ nvml: the pynvml module (tests pass the fake one)."""

    def __init__(self, nvml: ModuleType | None = None):
        self._nvml = nvml

    def _module(self) -> ModuleType:
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        return self._nvml

    def apply(self, index: int, uuid: str, placed: list[Placed] | None) -> list[str]:
        """Give GPU ``index`` (which must still be ``uuid``) the instances
        ``placed`` (None: MIG off). Returns what was done, one line a step."""
        nv = self._module()
        try:
            nv.nvmlInit()
        except nv.NVMLError as e:
            raise MigFailed(f"NVML is not available: {e}", changed=False) from None
        run = _Run(nv, index)
        try:
            return run.apply(uuid, placed)
        except nv.NVMLLibraryMismatchError as e:
            raise MigFailed(run.failed(f"the driver lacks a function ({e})"), run.changed) from None
        except nv.NVMLError as e:
            raise MigFailed(run.failed(_why(nv, e)), run.changed) from None
        finally:
            nv.nvmlShutdown()


class _Run:
    def __init__(self, nv: ModuleType, index: int):
        self.nv = nv
        self.index = index
        self.changed = False
        self.step = "reading the GPU"
        self.done: list[str] = []

    def failed(self, why: str) -> str:
        state = (
            "it was partly re-partitioned before that"
            if self.changed
            else "nothing on it was changed"
        )
        return f"GPU {self.index}: {self.step} failed: {why}; {state}"

    def _did(self, line: str) -> None:
        self.changed = True
        self.done.append(line)

    def apply(self, uuid: str, placed: list[Placed] | None) -> list[str]:
        nv, index = self.nv, self.index
        h = nv.nvmlDeviceGetHandleByIndex(index)
        found = _text(nv.nvmlDeviceGetUUID(h))
        if found != uuid:
            raise MigFailed(
                f"GPU {index} is now {found}, not {uuid} as planned: run `ds01 gpu layout "
                "plan` again",
                changed=False,
            )
        enable, disable = nv.NVML_DEVICE_MIG_ENABLE, nv.NVML_DEVICE_MIG_DISABLE
        current, pending = nv.nvmlDeviceGetMigMode(h)
        self._nothing_runs(h, current == enable)
        if current == enable:
            gis = self._gpu_instances(h)
            for gi_id, gi in gis:
                self.step = f"destroying the compute instances of GPU instance {gi_id}"
                for ci in self._compute_instances(gi):
                    nv.nvmlComputeInstanceDestroy(ci)
                    self._did(f"destroyed a compute instance of GPU instance {gi_id}")
            for gi_id, gi in gis:
                self.step = f"destroying GPU instance {gi_id}"
                nv.nvmlGpuInstanceDestroy(gi)
                self._did(f"destroyed GPU instance {gi_id}")
        want = disable if placed is None else enable
        if (current, pending) != (want, want):
            self.step = f"turning MIG {'off' if placed is None else 'on'}"
            nv.nvmlDeviceSetMigMode(h, want)
            self._did(f"MIG mode set {'off' if placed is None else 'on'}")
            current, pending = nv.nvmlDeviceGetMigMode(h)
            if current != want:
                raise MigPending(
                    f"GPU {index}: the MIG mode change is pending a GPU reset. Reset it "
                    f"(`nvidia-smi -r -i {index}`: nothing may use it) or reboot (the boot "
                    "unit ds01-gpu-layout.service applies the layout then), then run "
                    "`ds01 gpu layout apply` again",
                    changed=True,
                )
        for p in placed or []:
            self.step = f"creating a {p.profile.name} GPU instance at memory slice {p.start}"
            info = nv.nvmlDeviceGetGpuInstanceProfileInfo(h, p.profile.id)
            named = _text(getattr(info, "name", b"")).split()  # v1 info has no name
            if named and named[-1] != p.profile.name:
                raise MigFailed(
                    self.failed(
                        f"the driver names profile {p.profile.id} {_text(info.name)!r}, not "
                        f"{p.profile.name}: this GPU is not the model the policy names"
                    ),
                    self.changed,
                )
            where = nv.c_nvmlGpuInstancePlacement_t(start=p.start, size=p.profile.size)
            gi = nv.nvmlDeviceCreateGpuInstanceWithPlacement(h, p.profile.id, where)
            self._did(f"created GPU instance {p.profile.name} at {p.start}")
            self.step = f"creating the compute instance of the {p.profile.name} at {p.start}"
            nv.nvmlGpuInstanceCreateComputeInstance(gi, self._whole_ci_profile(gi, p))
            self._did(f"created its compute instance ({p.profile.slices} slices)")
        return self.done

    def _nothing_runs(self, h: Any, mig: bool) -> None:
        """Refuse before changing anything while a process uses the GPU (NVML
        would refuse midway, with IN_USE, leaving it half-destroyed), or
        while NVML will not say (unknown is not idle)."""
        nv = self.nv
        self.step = "checking that nothing uses the GPU"
        devices = [("the GPU", h)]
        if mig:
            for k in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
                except nv.NVMLError_NotFound:
                    continue
                devices.append((f"MIG device {k}", mh))
            devices = devices[1:] or devices
        for what, d in devices:
            try:
                procs = nv.nvmlDeviceGetComputeRunningProcesses(d)
            except (nv.NVMLError_NoPermission, nv.NVMLError_NotSupported) as e:
                why = f"cannot list the processes on {what} ({e})"
                raise MigFailed(self.failed(why), False) from None
            if procs:
                pids = ", ".join(str(p.pid) for p in procs)
                raise MigFailed(
                    self.failed(
                        f"{what} is in use by process(es) {pids} (NVML_ERROR_IN_USE would "
                        "follow); stop them first"
                    ),
                    False,
                )

    def _gpu_instances(self, h: Any) -> list[tuple[int, Any]]:
        nv, out = self.nv, []
        for profile in range(nv.NVML_GPU_INSTANCE_PROFILE_COUNT):
            arr = (nv.c_nvmlGpuInstance_t * 8)()
            count = ctypes.c_uint(8)
            try:
                nv.nvmlDeviceGetGpuInstances(h, profile, arr, ctypes.byref(count))
            except (nv.NVMLError_NotSupported, nv.NVMLError_InvalidArgument):
                continue  # a profile this GPU does not have
            for i in range(count.value):
                out.append((int(nv.nvmlGpuInstanceGetInfo(arr[i]).id), arr[i]))
        return out

    def _compute_instances(self, gi: Any) -> list[Any]:
        nv, out = self.nv, []
        for profile in range(nv.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            arr = (nv.c_nvmlComputeInstance_t * 8)()
            count = ctypes.c_uint(8)
            try:
                nv.nvmlGpuInstanceGetComputeInstances(gi, profile, arr, ctypes.byref(count))
            except (nv.NVMLError_NotSupported, nv.NVMLError_InvalidArgument):
                continue
            out.extend(arr[i] for i in range(count.value))
        return out

    def _whole_ci_profile(self, gi: Any, p: Placed) -> int:
        """The compute-instance profile that spans the whole GPU instance."""
        nv = self.nv
        for profile in range(nv.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            try:
                info = nv.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi, profile, nv.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
                )
            except (nv.NVMLError_NotSupported, nv.NVMLError_InvalidArgument):
                continue
            if int(info.sliceCount) == p.profile.slices:
                return int(info.id)
        raise MigFailed(
            self.failed(f"no compute-instance profile spans a {p.profile.name}"), self.changed
        )


def _why(nv: ModuleType, e: Exception) -> str:
    if isinstance(e, nv.NVMLError_InUse):
        return (
            "the GPU is in use (NVML_ERROR_IN_USE): a process has it open; `nvidia-smi` lists "
            "it (nvidia-persistenced and monitoring agents count)"
        )
    if isinstance(e, nv.NVMLError_InsufficientResources):
        return "NVML has no room for it (NVML_ERROR_INSUFFICIENT_RESOURCES)"
    return f"NVML: {e}"
