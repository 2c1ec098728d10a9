"""The reconciler and the idle reaper against a fake set of containers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ds01.gpu.containers import ContainerInfo
from ds01.gpu.layout import Layout, Process
from ds01.gpu.reconciler import GRACE, reconcile
from ds01.gpu.simulated import simulated_layout

MIN, HOUR = 60, 3600


class FakeContainers:
    def __init__(self):
        self.items: dict[str, ContainerInfo] = {}
        self.stopped: list[tuple[str, str]] = []

    def add(self, name, user, running=True, **kw):
        self.items[name] = ContainerInfo(
            id=f"id-{name}",
            name=name,
            user=user,
            running=running,
            started_at=kw.pop("started_at", None),
            finished_at=kw.pop("finished_at", None),
            **kw,
        )

    def set(self, name, **kw):
        self.items[name] = replace(self.items[name], **kw)

    def list(self):
        return list(self.items.values())

    def stop(self, id, reason):
        self.stopped.append((id, reason))
        name = id.removeprefix("id-")
        self.items[name] = replace(self.items[name], running=False)


@pytest.fixture
def world(alloc, policy, clock):
    layout = simulated_layout(policy.gpu.simulated, policy.site.name)
    return alloc, FakeContainers(), layout, clock


def run(alloc, fake, layout, notes=None):
    return reconcile(
        alloc, fake, layout, (lambda u, m: notes.append((u, m))) if notes is not None else None
    )


def started(alloc, fake, clock, name, user="123456", role="student", **kw):
    a = alloc.assign(name, user, role, **kw)
    alloc.allocate(name)
    fake.add(
        name,
        user,
        started_at=clock.t,
        gpu_uuids=[u.uuid for u in a.units],
        cpu_percent=50.0,
        net_bytes=0,
    )
    return a


def test_gone_container_is_forgotten_after_the_grace(world):
    alloc, fake, layout, clock = world
    started(alloc, fake, clock, "c1")
    del fake.items["c1"]
    assert run(alloc, fake, layout).forgotten == []  # may be mid-create
    clock.advance(GRACE + 1)
    assert run(alloc, fake, layout).forgotten == ["c1"]
    assert alloc.assignment("c1") is None and alloc.check_invariants() == []


def test_stopped_container_releases_from_its_finish_time(world):
    alloc, fake, layout, clock = world
    started(alloc, fake, clock, "c1")
    clock.advance(HOUR)
    fake.set("c1", running=False, finished_at=clock.t - 20 * MIN)  # student hold: 15m
    assert run(alloc, fake, layout).released == ["c1"]
    assert alloc.assignment("c1").state == "released"
    started(alloc, fake, clock, "c2")
    clock.advance(HOUR)
    fake.set("c2", running=False, finished_at=clock.t - 5 * MIN)
    run(alloc, fake, layout)
    assert alloc.assignment("c2").state == "held"  # 10 more minutes


def test_reports_devices_and_processes_the_allocator_did_not_grant(world, policy):
    alloc, fake, layout, clock = world
    a = started(alloc, fake, clock, "c1")
    other = next(u for u in layout.units() if u.uuid != a.units[0].uuid)
    fake.add("rogue", "654321", gpu_uuids=[other.uuid])
    gpu0 = layout.gpus[0]
    busy = Layout(
        layout.backend,
        layout.driver,
        [replace(gpu0, processes=[Process(4242, 1024)]), *layout.gpus[1:]],
    )
    report = run(alloc, fake, busy)
    assert any(
        "rogue of 654321 uses " + other.uuid in p and "did not grant" in p for p in report.problems
    )
    assert any("GPU 0" in p and "process(es) 4242" in p for p in report.problems)
    assert not any("c1" in p for p in report.problems)


def test_no_container_runtime_still_expires_holds(world):
    alloc, fake, layout, clock = world
    started(alloc, fake, clock, "c1")
    alloc.release("c1")
    clock.advance(16 * MIN)
    reconcile(alloc, None, layout)
    assert alloc.assignment("c1").state == "released"


def idle_world(world, user="123456", role="student"):
    alloc, fake, layout, clock = world
    started(alloc, fake, clock, "c1", user, role)
    fake.set("c1", cpu_percent=0.5, net_bytes=1000)
    return alloc, fake, layout, clock


def test_idle_container_is_warned_then_stopped_and_released(world):
    """student: reading every 10m, 6 idle readings, idle_timeout 12h, warning 1h."""
    alloc, fake, layout, clock = idle_world(world)
    notes = []
    for _ in range(6 * 12 - 1):  # readings every 10 minutes for ~12 hours
        report = run(alloc, fake, layout, notes)
        if report.warned:
            break
        assert not report.stopped
        clock.advance(10 * MIN)
    # First reading only records the network counter, so idle since 10m in.
    assert report.warned == ["c1"] and notes[0][0] == "123456" and "idle" in notes[0][1]
    assert clock.t - alloc.assignment("c1").allocated_at == pytest.approx(11 * HOUR + 10 * MIN)
    snap = alloc.snapshot()
    assert snap["warnings"][0]["container"] == "c1"
    clock.advance(50 * MIN)
    assert run(alloc, fake, layout, notes).stopped == []  # warned only 50 minutes ago
    clock.advance(10 * MIN)
    report = run(alloc, fake, layout, notes)
    assert report.stopped == ["c1"] and fake.stopped[0][0] == "id-c1"
    assert alloc.assignment("c1").state == "released"  # released at once, no hold
    assert alloc.check_invariants() == []


def test_any_busy_reading_clears_the_count_and_the_warning(world):
    alloc, fake, layout, clock = idle_world(world)
    for _ in range(70):
        run(alloc, fake, layout)
        clock.advance(10 * MIN)
    fake.set("c1", cpu_percent=80.0)  # work resumed
    run(alloc, fake, layout)
    fake.set("c1", cpu_percent=0.0)
    clock.advance(2 * HOUR)
    assert run(alloc, fake, layout).stopped == []
    assert alloc.snapshot()["warnings"] == []


@pytest.mark.parametrize("reading", [dict(cpu_percent=None), dict(net_bytes=None)])
def test_missing_readings_never_stop_anyone(world, reading):
    alloc, fake, layout, clock = idle_world(world)
    fake.set("c1", **reading)
    for _ in range(100):
        report = run(alloc, fake, layout)
        assert not report.warned and not report.stopped
        clock.advance(10 * MIN)


def test_network_traffic_keeps_a_container_alive(world):
    alloc, fake, layout, clock = idle_world(world)
    for i in range(100):
        fake.set("c1", net_bytes=1000 + i * 2 * 1024 * 1024)  # 2 MiB per 10 min > 1m
        assert not run(alloc, fake, layout).warned
        clock.advance(10 * MIN)


def test_gpu_process_on_a_mig_unit_counts_as_busy(world):
    alloc, fake, layout, clock = idle_world(world)
    uuid = alloc.assignment("c1").units[0].uuid
    gpus = [
        replace(
            g,
            instances=[
                replace(i, processes=[Process(7, 1)]) if i.uuid == uuid else i for i in g.instances
            ],
        )
        for g in layout.gpus
    ]
    busy = Layout(layout.backend, None, gpus)
    for _ in range(100):
        assert not run(alloc, fake, busy).warned
        clock.advance(10 * MIN)


def test_unreadable_process_list_is_never_idle(world):
    """NVML would not list the processes (NoPermission, NotSupported, an old
    driver): unknown, so the reaper must not stop a container that may be busy."""
    alloc, fake, layout, clock = idle_world(world)
    uuid = alloc.assignment("c1").units[0].uuid
    gpus = [
        replace(g, instances=[replace(i, processes=None) if i.uuid == uuid else i
                              for i in g.instances])
        for g in layout.gpus
    ]  # fmt: skip
    unknown = Layout(layout.backend, None, gpus)
    assert unknown.processes_by_unit()[uuid] is None
    for _ in range(100):
        report = run(alloc, fake, unknown)
        assert not report.warned and not report.stopped
        clock.advance(10 * MIN)


def test_a_gpu_that_could_not_be_read_is_reported_and_keeps_its_units(world):
    alloc, fake, layout, clock = world
    a = started(alloc, fake, clock, "c1", kind="3g.20gb")  # on GPU 2
    gpus = [replace(g, error="GPU 2 (GPU-x) not read, so it offers no units: NVML failed")
            if g.index == 2 else g for g in layout.gpus]  # fmt: skip
    report = run(alloc, fake, Layout(layout.backend, None, gpus))
    assert report.missing == []  # unknown, not gone: holders and targets untouched
    assert "GPU 2 (GPU-x) not read" in report.problems[0]
    assert alloc.assignment("c1").units == a.units
    assert {s.state for s in alloc.status() if s.unit.gpu_index == 2} != {"missing"}


def test_max_runtime_warns_then_stops(world):
    alloc, fake, layout, clock = world
    started(alloc, fake, clock, "c1", "j.doe", "researcher")  # 14d, warning 1h before
    notes = []
    clock.advance(14 * 24 * HOUR - HOUR)
    assert run(alloc, fake, layout, notes).warned == ["c1"]
    assert "maximum runtime" in notes[0][1]
    clock.advance(HOUR)
    assert run(alloc, fake, layout, notes).stopped == ["c1"]
    assert "2w maximum runtime" in fake.stopped[0][1]


def test_admin_containers_run_forever(world):
    alloc, fake, layout, clock = world
    started(alloc, fake, clock, "c1", "h.admin", "admin")
    fake.set("c1", cpu_percent=0.0, net_bytes=0)
    for _ in range(30):
        clock.advance(24 * HOUR)
        report = run(alloc, fake, layout)
        assert not report.warned and not report.stopped
