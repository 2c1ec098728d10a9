"""The NVML backend against a fake pynvml (tests/unit/gpu/fake_pynvml.py)."""

from __future__ import annotations

import pytest
from fake_pynvml import FakeGpu, FakeMig, FakeNvml

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


def test_processes_hidden_from_the_caller_are_an_empty_list():
    gpu = a100("0", procs=[(1, 1)])
    gpu.processes_denied = True
    layout = NvmlBackend(FakeNvml([gpu]).module()).read()
    assert layout.gpus[0].processes == []


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
