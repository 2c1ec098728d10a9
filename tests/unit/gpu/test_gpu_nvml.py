"""The NVML backend against a fake pynvml (tests/unit/gpu/fake_pynvml.py)."""

from __future__ import annotations

import pytest
from fake_pynvml import FakeGpu, FakeMig, FakeNvml, model_gpu

from ds01.gpu.nvml import NvmlBackend

GiB = 1024**3
A100_PROFILES = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7, 7: 1}  # 1g 2g 3g 4g 7g 1g+me
A30_PROFILES = {0: 1, 1: 2, 3: 4}  # four slices: proves nothing assumes seven


def mig(uuid, profile, gi, start, size, model="NVIDIA A100-SXM4-40GB", mem=5, procs=()):
    return FakeMig(
        f"MIG-{uuid}",
        f"{model} MIG {profile}",
        gi,
        0,
        start,
        size,
        mem * GiB,
        processes=list(procs),
    )


def a100(uuid, slots=None, mode=(0, 0), util=0, procs=()):
    return FakeGpu(
        f"GPU-{uuid}",
        "NVIDIA A100-SXM4-40GB",
        40 * GiB,
        utilization=util,
        mig=mode,
        profiles=A100_PROFILES,
        slots=slots or {},
        processes=list(procs),
    )


def test_whole_gpus_and_mig_devices_with_empty_slots():
    nv = FakeNvml(
        [
            a100("0", util=37, procs=[(4242, 2 * GiB)]),
            # slots 1, 3, 4, 6 are empty: the max count (7) is a maximum, not a count
            a100(
                "1",
                mode=(1, 1),
                slots={
                    0: mig("a", "3g.20gb", 1, 0, 4, mem=20),
                    2: mig("b", "2g.10gb", 5, 4, 2, mem=10, procs=[(777, GiB)]),
                    5: mig("c", "1g.5gb", 13, 6, 1),
                },
            ),
        ]
    )
    layout = NvmlBackend(nv.module()).read()
    assert layout.backend == "nvml" and layout.driver == "550.54.15" and layout.error is None
    g0, g1 = layout.gpus
    assert (g0.mig_current, g0.utilization, g0.slices) == (False, 37, 7)
    assert [(p.pid, p.memory_used) for p in g0.processes] == [(4242, 2 * GiB)]
    assert (g1.mig_current, g1.utilization) == (True, None)
    assert [
        (i.profile, i.slices, i.placement_start, i.placement_size, i.gi_id) for i in g1.instances
    ] == [("3g.20gb", 3, 0, 4, 1), ("2g.10gb", 2, 4, 2, 5), ("1g.5gb", 1, 6, 1, 13)]
    units = layout.units()
    assert [(u.uuid, u.profile, round(u.weight, 4)) for u in units] == [
        ("GPU-0", None, 1.0),
        ("MIG-a", "3g.20gb", 0.4286),
        ("MIG-b", "2g.10gb", 0.2857),
        ("MIG-c", "1g.5gb", 0.1429),
    ]
    assert [p.pid for p in layout.processes_by_unit()["MIG-b"]] == [777]
    assert nv.initialised == 0  # every init is shut down again


def test_slice_count_is_read_not_assumed():
    nv = FakeNvml(
        [
            FakeGpu(
                "GPU-a30",
                "NVIDIA A30",
                24 * GiB,
                mig=(1, 1),
                max_mig=4,
                profiles=A30_PROFILES,
                slots={
                    0: mig("x", "1g.6gb", 3, 0, 1, "NVIDIA A30", 6),
                    1: mig("y", "2g.12gb", 1, 2, 2, "NVIDIA A30", 12),
                },
            )
        ]
    )
    layout = NvmlBackend(nv.module()).read()
    assert layout.gpus[0].slices == 4
    assert [round(u.weight, 3) for u in layout.units()] == [0.25, 0.5]


def test_compute_instance_inside_a_larger_gpu_instance_weighs_its_own_slices():
    nv = FakeNvml(
        [
            a100(
                "0",
                mode=(1, 1),
                slots={
                    0: mig("c0", "1c.3g.20gb", 1, 0, 4, mem=20),
                    1: mig("c1", "2c.3g.20gb", 1, 0, 4, mem=20),
                },
            )
        ]
    )
    units = NvmlBackend(nv.module()).read().units()
    assert [(u.profile, round(u.weight * 7)) for u in units] == [
        ("1c.3g.20gb", 1),
        ("2c.3g.20gb", 2),
    ]


def test_pending_mig_change_takes_the_gpu_out_of_the_pool():
    nv = FakeNvml(
        [a100("0", mode=(0, 1)), a100("1", mode=(1, 0), slots={0: mig("a", "7g.40gb", 0, 0, 8)})]
    )
    layout = NvmlBackend(nv.module()).read()
    assert [(g.mig_current, g.mig_pending) for g in layout.gpus] == [(False, True), (True, False)]
    assert layout.units() == []


def test_gpu_without_mig_support():
    nv = FakeNvml([FakeGpu("GPU-t4", "Tesla T4", 16 * GiB, utilization=3)])
    layout = NvmlBackend(nv.module()).read()
    g = layout.gpus[0]
    assert (g.mig_current, g.mig_pending, g.slices, g.utilization) == (None, None, None, 3)
    assert [(u.uuid, u.weight) for u in layout.units()] == [("GPU-t4", 1.0)]


def test_repartition_between_reads_needs_fresh_handles():
    nv = FakeNvml([a100("0", mode=(1, 1), slots={0: mig("a", "7g.40gb", 0, 0, 8, mem=40)})])
    backend = NvmlBackend(nv.module())
    assert [u.profile for u in backend.read().units()] == ["7g.40gb"]
    nv.repartition(
        [
            a100(
                "0",
                mode=(1, 1),
                slots={
                    0: mig("b", "3g.20gb", 1, 0, 4, mem=20),
                    1: mig("c", "3g.20gb", 2, 4, 4, mem=20),
                },
            )
        ]
    )
    assert [u.uuid for u in backend.read().units()] == ["MIG-b", "MIG-c"]
    assert nv.inits == 2 and nv.initialised == 0


def test_repartition_during_a_read_is_read_again():
    nv = FakeNvml([a100("0", mode=(1, 1), slots={0: mig("a", "7g.40gb", 0, 0, 8, mem=40)})])
    nv.repartition_during_read = [a100("0", mode=(1, 1), slots={3: mig("z", "1g.5gb", 9, 0, 1)})]
    layout = NvmlBackend(nv.module()).read()
    assert [u.uuid for u in layout.units()] == ["MIG-z"]
    assert nv.inits == 2 and nv.initialised == 0


def test_no_driver_is_an_empty_layout_not_an_error():
    layout = NvmlBackend(FakeNvml([], library=False).module()).read()
    assert (layout.backend, layout.gpus, layout.units()) == ("none", [], [])
    assert "NVML is not available" in layout.error


def test_real_pynvml_on_this_machine_never_raises():
    layout = NvmlBackend().read()  # no GPU here: an empty layout with a reason
    assert layout.backend in ("nvml", "none")
    assert layout.gpus or layout.error


def test_processes_hidden_from_the_caller_are_unknown_not_none():
    gpu = a100("0", procs=[(1, 1)])
    gpu.processes_denied = True
    layout = NvmlBackend(FakeNvml([gpu]).module()).read()
    assert layout.gpus[0].processes is None  # unknown: the reaper must not read "idle"
    assert layout.processes_by_unit() == {"GPU-0": None}


@pytest.mark.parametrize(
    "name", ["NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "NVIDIA H100 MIG 7g.80gb"]
)
def test_h100_profile_names(name):
    gpu = FakeGpu(
        "GPU-h",
        "NVIDIA H100 80GB HBM3",
        80 * GiB,
        mig=(1, 1),
        profiles=A100_PROFILES,
        slots={0: FakeMig("MIG-h", name, 1, 0, 0, 1, 10 * GiB)},
    )
    (unit,) = NvmlBackend(FakeNvml([gpu]).module()).read().units()
    assert unit.profile == name.rsplit(" ", 1)[1]


# -- real models, through a fake that keeps NVML's types and error codes -----------


def scaled(*shares):
    """Dominant shares of one GPU's instances, scaled so that they add up to 1."""
    return [x / max(1, sum(shares)) for x in shares]


@pytest.mark.parametrize(
    "model, mig, weights",
    [
        ("NVIDIA A100-SXM4-40GB", ["1g.5gb"] * 7, [1 / 7] * 7),
        ("NVIDIA A100-SXM4-40GB", ["1g.5gb+me", "2g.10gb", "4g.20gb"], [1 / 7, 2 / 7, 4 / 7]),
        # 3g.20gb takes 4 of 8 memory slices: 1/2 + 4/7 > 1, scaled to one GPU
        ("NVIDIA A100-SXM4-40GB", ["3g.20gb", "4g.20gb"], [7 / 15, 8 / 15]),
        ("NVIDIA A100-SXM4-80GB", ["1g.10gb+me", "2g.20gb", "3g.40gb"], [1 / 7, 2 / 7, 1 / 2]),
        ("NVIDIA A100-SXM4-80GB", ["7g.80gb"], [1.0]),
        ("NVIDIA H100 80GB HBM3", ["1g.10gb+me", "1g.10gb", "1g.20gb", "3g.40gb"],
         scaled(1 / 7, 1 / 7, 2 / 8, 1 / 2)),
        ("NVIDIA H100 80GB HBM3", ["3g.40gb", "4g.40gb"], [7 / 15, 8 / 15]),
        # four 1g.35gb fill an H200's memory (2 slices of 8 each): one GPU, not 4/7
        ("NVIDIA H200", ["1g.35gb"] * 4, [1 / 4] * 4),
        ("NVIDIA H200", ["1g.18gb+me", "1g.18gb", "2g.35gb", "3g.71gb"],
         scaled(1 / 7, 1 / 7, 2 / 7, 1 / 2)),
        ("NVIDIA H200", ["3g.71gb", "4g.71gb"], [7 / 15, 8 / 15]),
    ],
)  # fmt: skip
def test_model_layouts(model, mig, weights):
    nv = FakeNvml([model_gpu(model, "0", mig), model_gpu(model, "1")])
    layout = NvmlBackend(nv.module()).read()
    g0, g1 = layout.gpus
    assert (g0.slices, g0.memory_slices, g0.error) == (7, 8, None)
    assert [i.profile for i in g0.instances] == mig
    units = layout.units()
    assert [u.profile for u in units] == [*mig, None]
    assert [u.weight for u in units[:-1]] == pytest.approx(weights)
    assert sum(u.weight for u in units if u.gpu_index == 0) <= 1 + 1e-9
    assert units[-1].weight == 1.0 and g1.mig_current is False


def test_old_driver_without_the_v3_process_call_falls_back_to_v2():
    nv = FakeNvml([a100("0", procs=[(4242, None)])],
                  missing=frozenset({"nvmlDeviceGetComputeRunningProcesses_v3"}))  # fmt: skip
    layout = NvmlBackend(nv.module()).read()
    assert layout.error is None
    assert [(p.pid, p.memory_used) for p in layout.gpus[0].processes] == [(4242, None)]


def test_library_mismatch_is_an_unknown_process_list_not_a_traceback():
    missing = {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"}
    nv = FakeNvml([model_gpu("NVIDIA H200", "0", ["1g.35gb"] * 4), a100("1")],
                  missing=frozenset(missing))  # fmt: skip
    layout = NvmlBackend(nv.module()).read()
    assert layout.error is None and [g.error for g in layout.gpus] == [None, None]
    assert set(layout.processes_by_unit().values()) == {None}  # unknown everywhere
    assert len(layout.units()) == 5


def test_driver_without_profile_info_v2_reads_v1():
    nv = FakeNvml([model_gpu("NVIDIA A100-SXM4-40GB", "0", ["3g.20gb", "4g.20gb"])],
                  missing=frozenset({"nvmlDeviceGetGpuInstanceProfileInfoV"}))  # fmt: skip
    g = NvmlBackend(nv.module()).read().gpus[0]
    assert (g.slices, g.memory_slices, g.error) == (7, 8, None)


def test_no_profile_info_at_all_loses_that_gpu_only():
    missing = {"nvmlDeviceGetGpuInstanceProfileInfoV", "nvmlDeviceGetGpuInstanceProfileInfo"}
    nv = FakeNvml([model_gpu("NVIDIA H100 80GB HBM3", "0", ["7g.80gb"]),
                   FakeGpu("GPU-t4", "Tesla T4", 16 * GiB)], missing=frozenset(missing))  # fmt: skip
    layout = NvmlBackend(nv.module()).read()
    assert layout.error is None
    g0, g1 = layout.gpus
    assert g0.uuid == "GPU-0" and "slice count cannot be read" in g0.error
    assert g0.error.startswith("GPU 0 (GPU-0) not read, so it offers no units")
    assert g1.error is None
    assert [u.uuid for u in layout.units()] == ["GPU-t4"]
    assert layout.unread_gpus() == {0}


def test_no_placements_call_weighs_by_compute_alone():
    nv = FakeNvml([model_gpu("NVIDIA H200", "0", ["1g.35gb"] * 4)],
                  missing=frozenset({"nvmlDeviceGetGpuInstancePossiblePlacements_v2"}))  # fmt: skip
    layout = NvmlBackend(nv.module()).read()
    assert layout.gpus[0].memory_slices is None
    assert [u.weight for u in layout.units()] == pytest.approx([1 / 7] * 4)


def test_slices_come_from_the_device_attributes():
    gpu = model_gpu("NVIDIA A100-SXM4-40GB", "0", ["3g.20gb"])
    inst = gpu.slots[0]
    inst.name = "NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb"
    inst.ci_slices = 1  # one compute instance of the 3g GPU instance
    (unit,) = NvmlBackend(FakeNvml([gpu]).module()).read().units()
    assert (unit.profile, unit.weight) == ("1c.3g.20gb", pytest.approx(1 / 2 / 3))


def test_unrecognisable_profile_name_is_named_from_its_attributes():
    gpu = model_gpu("NVIDIA H200", "0", ["1g.35gb", "2g.35gb"])
    gpu.slots[0].name = "NVIDIA H200 MIG Device 0"  # no profile in the name
    layout = NvmlBackend(FakeNvml([gpu]).module()).read()
    assert layout.gpus[0].error is None
    assert [(u.profile, u.weight) for u in layout.units()] == [
        ("1g.32gb", pytest.approx(1 / 4)),
        ("2g.35gb", pytest.approx(2 / 7)),
    ]


def test_unrecognisable_name_without_attributes_loses_that_gpu_only():
    gpu = model_gpu("NVIDIA H200", "0", ["1g.35gb"])
    gpu.slots[0].name = "NVIDIA H200 MIG Device 0"
    nv = FakeNvml([gpu, a100("1")], missing=frozenset({"nvmlDeviceGetAttributes_v2"}))
    layout = NvmlBackend(nv.module()).read()
    assert "is named 'NVIDIA H200 MIG Device 0', which is not a MIG profile" in (
        layout.gpus[0].error
    )
    assert [u.uuid for u in layout.units()] == ["GPU-1"]


def test_real_return_types():
    """The fake answers with pynvml's own structures (what the backend reads)."""
    import pynvml

    nv = FakeNvml([model_gpu("NVIDIA H200", "0", ["1g.35gb"], processes=[(1, 2)])]).module()
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert isinstance(nv.nvmlDeviceGetMemoryInfo(h), pynvml.c_nvmlMemory_t)
    info = nv.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_7_SLICE)
    assert isinstance(info, pynvml.c_nvmlGpuInstanceProfileInfo_v2_t) and info.sliceCount == 7
    assert isinstance(nv.nvmlDeviceGetAttributes(mh), pynvml.c_nvmlDeviceAttributes)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetAttributes(h)  # MIG device handles only, as in NVML
    nv.nvmlShutdown()
