"""Issue 11, section 1: where the allocator meets container lifecycles, layout
changes and crashes. One test (or more) per hole, each failing before its fix.

Policy: config/resource-allocation.yaml (4 x A100-40GB: GPUs 0 and 1 whole,
GPU 2 as 3g.20gb 2g.10gb 1g.5gb 1g.5gb, GPU 3 as 2g.10gb x3 1g.5gb).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from pathlib import Path

import pytest
from gpu_helpers import make_allocator
from test_gpu_reconciler import FakeContainers, run, started

from ds01.config import PolicyError, parse_policy
from ds01.docker.gpu import Assigned, GpuGlue
from ds01.docker.policy import Caller, GpuRequest
from ds01.gpu.allocator import GpuBlocked, GpuDenied
from ds01.gpu.simulated import simulated_layout

MIN, HOUR = 60, 3600
REPO = Path(__file__).resolve().parents[3]
A100 = {"name": "NVIDIA A100-SXM4-40GB", "memory": "40g", "mig_slices": 7}


@pytest.fixture(autouse=True)
def consistent(alloc):
    yield
    assert alloc.check_invariants() == []


def state_of(alloc, uuid):
    return next(s for s in alloc.status() if s.unit.uuid == uuid)


# -- 1. a repeated create never frees a running container's unit ----------------


def caller(name="j.doe", role="researcher"):
    return Caller(uid=1_234_567, gid=1_234_567, name=name, home=f"/home/{name}", role=role)


def test_glue_tells_a_repeated_create_from_a_new_one(policy, clock, tmp_path, alloc):
    db = tmp_path / "glue.sqlite3"
    glue = GpuGlue(policy, make_allocator=lambda: make_allocator(policy, db, clock),
                   device_requests=False)  # fmt: skip
    req = GpuRequest(count=1, kind="3g.20gb")

    async def scenario():
        first = await glue.assign("train", caller(), req)
        await glue.allocate("train")  # docker started it: it runs
        second = await glue.assign("train", caller(), req)  # docker create --name train again
        # docker answers 409 (name in use); the service forgets only when created
        if second.created:
            await glue.forget("train")
        refused = await glue.assign("typo", caller(), GpuRequest(count=1, kind="1g.5gb"))
        if refused.created:  # docker refused this one (e.g. a bad image): it made it
            await glue.forget("typo")
        return first, second, refused

    first, second, refused = asyncio.run(scenario())
    assert first == Assigned(first.uuids, created=True) and len(first.uuids) == 1
    assert second == Assigned(first.uuids, created=False)
    assert refused.created
    reader = make_allocator(policy, db, clock)
    assert state_of(reader, first.uuids[0]).holder == "train"  # still held by the running one
    assert reader.assignment("train").state == "allocated"
    assert reader.assignment("typo") is None
    assert reader.check_invariants() == []


def test_allocator_marks_only_the_first_assign_created(alloc):
    a = alloc.assign("c1", "123456", "student")
    again = alloc.assign("c1", "123456", "student")
    assert a.created and not again.created and again == a


# -- 2. a late die of an earlier run releases nothing ---------------------------


def test_late_die_event_is_ignored(alloc, clock):
    a = alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    clock.advance(HOUR)
    stopped = clock.t  # docker stop: the die event is delayed in the stream
    clock.advance(2)
    alloc.allocate("c1")  # docker start, before the die event arrives
    clock.advance(1)
    alloc.release("c1", stopped_at=stopped)  # the late die of the earlier run
    assert alloc.assignment("c1").state == "allocated"
    assert state_of(alloc, a.units[0].uuid).holder == "c1"
    alloc.release("c1", stopped_at=clock.t)  # the current run's own die still counts
    assert alloc.assignment("c1").state == "held"


def test_late_die_from_the_event_stream_keeps_the_restarted_container(policy, clock, tmp_path):
    """The glue's event handler passes docker's own die time: a late one of
    an earlier run releases nothing."""
    from ds01.docker import policy as rules

    db = tmp_path / "glue.sqlite3"
    glue = GpuGlue(policy, make_allocator=lambda: make_allocator(policy, db, clock),
                   device_requests=False)  # fmt: skip

    def die(at):
        attrs = {"name": "train", rules.GPU: "x"}
        return {"Action": "die", "Actor": {"Attributes": attrs}, "timeNano": int(at * 1e9)}

    async def scenario():
        got = await glue.assign("train", caller(), GpuRequest(count=1, kind=None))
        await glue.allocate("train")
        clock.advance(HOUR)
        stopped = clock.t  # docker stop ...
        clock.advance(1)
        await glue.allocate("train")  # ... docker start, before the die event arrived
        await glue.on_event(die(stopped))  # the late die
        return got

    got = asyncio.run(scenario())
    reader = make_allocator(policy, db, clock)
    assert reader.assignment("train").state == "allocated"
    assert state_of(reader, got.uuids[0]).holder == "train"


def test_late_die_after_a_restart_within_the_hold(alloc, clock):
    alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    clock.advance(HOUR)
    alloc.release("c1", stopped_at=clock.t)  # held
    first_stop = clock.t
    clock.advance(60)
    alloc.allocate("c1")  # restarted within the hold
    alloc.release("c1", stopped_at=first_stop)  # the same die, delivered twice
    assert alloc.assignment("c1").state == "allocated"


# -- 3. max_runtime counts the lease, not docker's run ---------------------------


def test_max_runtime_counts_over_restarts_within_the_hold(alloc, policy, clock):
    fake = FakeContainers()
    layout = simulated_layout(policy.gpu.simulated, policy.site.name)
    a = started(alloc, fake, clock, "c1", "j.doe", "researcher")  # 14d, hold 30m
    leased = clock.t
    for _ in range(14):  # a restart every day, each within the hold
        clock.advance(24 * HOUR - 10 * MIN)
        alloc.release("c1", stopped_at=clock.t)
        clock.advance(5 * MIN)
        alloc.allocate("c1")
        fake.set("c1", started_at=clock.t)  # docker's StartedAt resets
        if clock.t >= leased + 14 * 24 * HOUR - HOUR:
            break
    clock.advance(max(0, leased + 14 * 24 * HOUR - clock.t))
    notes: list = []
    run(alloc, fake, layout, notes)
    clock.advance(HOUR)
    report = run(alloc, fake, layout, notes)
    assert report.stopped == ["c1"], notes
    assert state_of(alloc, a.units[0].uuid).holder is None


def test_lease_starts_again_after_a_release(alloc, clock):
    alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    clock.advance(HOUR)
    alloc.release("c1", stopped_at=clock.t)
    clock.advance(16 * MIN)  # past the student's 15m hold: released
    alloc.allocate("c1")
    assert alloc.assignment("c1").leased_since == clock.t


# -- 4. reservations count against quota and follow assign's placement ---------


def small_quota(policy, quota):
    roles = dict(policy.roles)
    s = roles["student"]
    roles["student"] = s.model_copy(update={"gpu": s.gpu.model_copy(update={"quota": quota})})
    return policy.model_copy(update={"roles": roles})


def test_reservations_count_against_quota(policy, clock, tmp_path):
    alloc = make_allocator(small_quota(policy, 0.5), tmp_path / "db", clock)
    assert alloc.enqueue("123456", "student", "3g.20gb").state == "reserved"  # 3/7
    assert alloc.enqueue("123456", "student", "2g.10gb").state == "waiting"  # 5/7 > 0.5
    assert alloc.enqueue("123456", "student", "1g.5gb").state == "waiting"  # 4/7 > 0.5
    assert alloc.check_invariants() == []
    # Using the reservation and joining again does not get past the quota either.
    alloc.assign("c1", "123456", "student", kind="3g.20gb")
    alloc.allocate("c1")
    alloc.leave("123456", any_kind=True)
    assert alloc.enqueue("123456", "student", "2g.10gb").state == "waiting"
    assert alloc.enqueue("654321", "student", "2g.10gb").state == "reserved"  # others still can


def test_a_join_for_any_unit_is_reserved_the_smallest_slice(alloc):
    e = alloc.enqueue("j.doe", "researcher")  # all free: as assign, a 1g.5gb, not GPU 0
    reserved = state_of(alloc, e.unit)
    assert e.state == "reserved" and reserved.unit.kind == "1g.5gb"
    a = alloc.assign("c1", "j.doe", "researcher")
    assert [u.uuid for u in a.units] == [e.unit]  # and assign gives the user that very unit


# -- 5. re-partitioning while a unit is held ----------------------------------------


def repartitioned(policy, gpu0_mig):
    """The repository layout with GPU 0 re-partitioned (same serials)."""
    specs = list(policy.gpu.simulated)
    specs[0] = specs[0].model_copy(update={"mig": gpu0_mig})
    return simulated_layout(specs, policy.site.name)


def test_new_units_of_a_gpu_wait_for_its_old_holder(alloc, policy):
    whole = alloc.assign("big", "j.doe", "researcher", kind="gpu")
    assert whole.units[0].gpu_index == 0
    target = alloc.assign("early", "c.rivera", "researcher", kind="gpu")  # GPU 1
    alloc.allocate("big")
    added, missing = alloc.sync_layout(repartitioned(policy, ["3g.20gb", "4g.20gb"]))
    assert missing == [whole.units[0].uuid] and len(added) == 2
    # Nothing of GPU 0's new layout is handed out while its old whole GPU is held,
    with pytest.raises(GpuDenied, match="no 4g.20gb is free"):
        alloc.assign("slice", "c.rivera", "researcher", kind="4g.20gb")
    # nor reserved for the queue,
    assert alloc.enqueue("c.rivera", "researcher", "4g.20gb").state == "waiting"
    # nor allocated to a container that targeted it before the holder was known.
    with alloc.transaction() as db:
        db.execute("UPDATE targets SET uuid = ? WHERE container = 'early'", (added[1],))
    with pytest.raises(GpuBlocked, match="GPU 0 was re-partitioned while j.doe"):
        alloc.allocate("early")
    alloc.release("big", stopped_at=None, hold=False)  # the old holder stops: GPU 0 is free
    assert alloc.queue()[0].state == "reserved"
    assert target.units


def test_restart_within_hold_of_a_vanished_unit_is_blocked(alloc, policy, clock):
    a = alloc.assign("c1", "j.doe", "researcher", kind="gpu")
    alloc.allocate("c1")
    clock.advance(HOUR)
    alloc.release("c1", stopped_at=clock.t)  # held for 30m
    alloc.sync_layout(repartitioned(policy, ["7g.40gb"]))
    clock.advance(MIN)
    with pytest.raises(GpuBlocked, match="no longer exists \\(the GPU was re-partitioned\\)"):
        alloc.allocate("c1")
    assert alloc.assignment("c1").state == "released"
    assert state_of(alloc, a.units[0].uuid).holder is None  # given back, not run on a ghost


def test_invariants_catch_a_gpu_held_whole_and_sliced(alloc, policy):
    alloc.assign("big", "j.doe", "researcher", kind="gpu")
    alloc.allocate("big")
    alloc.sync_layout(repartitioned(policy, ["7g.40gb"]))
    (new,) = [s for s in alloc.status() if s.unit.gpu_index == 0 and s.unit.profile]
    with alloc.transaction() as db:  # what the allocator must never do, done by hand
        db.execute("INSERT INTO containers(name, user, role, state, count, assigned_at) "
                   "VALUES ('sneaky', 'c.rivera', 'researcher', 'allocated', 1, 0)")  # fmt: skip
        db.execute("INSERT INTO targets VALUES ('sneaky', ?)", (new.unit.uuid,))
        db.execute("UPDATE units SET holder = 'sneaky' WHERE uuid = ?", (new.unit.uuid,))
    problems = alloc.check_invariants()
    assert any("GPU 0 is held whole and as MIG slices at once" in p for p in problems)
    assert any("GPU 0 has 2.000 GPU-eq held" in p for p in problems)
    alloc.forget("sneaky")


# -- 6. the status snapshot is written after COMMIT ------------------------------


def _decide_then_die(policy, db, snap, clock_t):
    """Allocate, and die (as SIGKILL would) right after the snapshot is renamed."""
    from gpu_helpers import Clock

    from ds01.gpu.allocator import Allocator
    from ds01.gpu.simulated import SimulatedBackend

    a = Allocator(policy, db, backend=SimulatedBackend(policy), clock=Clock(clock_t),
                  snapshot=snap)  # fmt: skip
    real = os.replace

    def replace_then_die(src, dst):
        real(src, dst)
        os._exit(9)

    os.replace = replace_then_die
    a.allocate("c1")


def test_snapshot_never_shows_what_was_rolled_back(policy, clock, tmp_path):
    db, snap = str(tmp_path / "db"), str(tmp_path / "status.json")
    from ds01.gpu.allocator import Allocator
    from ds01.gpu.simulated import SimulatedBackend

    a = Allocator(policy, db, backend=SimulatedBackend(policy), clock=clock, snapshot=snap)
    a.assign("c1", "123456", "student")
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_decide_then_die, args=(policy, db, snap, clock.t))
    p.start()
    p.join(30)
    assert p.exitcode == 9
    shown = {u["uuid"]: u["state"] for u in json.loads(Path(snap).read_text())["units"]}
    real = {s.unit.uuid: s.state for s in a.status()}
    assert shown == real  # the allocation is in both (committed), not in the snapshot only
    assert "allocated" in real.values()
    a.close()


def test_snapshot_leaves_no_temporary_files(alloc, tmp_path):
    folder = Path(alloc.snapshot_path).parent
    (folder / ".status.abc123").write_text("{")  # left by a writer killed mid-snapshot
    alloc.assign("c1", "123456", "student")
    assert [p.name for p in folder.iterdir() if p.name.startswith(".status.")] == []


# -- 7. history has a retention -------------------------------------------------------


def test_events_and_ended_queue_entries_expire(alloc, policy, clock):
    alloc.assign("c1", "123456", "student")
    alloc.enqueue("j.doe", "researcher", "gpu")  # reserved at once
    alloc.leave("j.doe", "gpu")  # cancelled: it ended
    assert alloc.db.execute("SELECT count(*) FROM events").fetchone()[0] > 3
    clock.advance(policy.gpu.history_retention + 1)
    waiting = alloc.enqueue("654321", "student", "3g.20gb")  # live: never pruned
    alloc.expire()
    events = alloc.db.execute("SELECT at FROM events").fetchall()
    assert events and min(at for (at,) in events) >= clock.t - policy.gpu.history_retention
    rows = alloc.db.execute("SELECT id, state FROM queue").fetchall()
    assert rows == [(waiting.id, "reserved")]
    assert alloc.assignment("c1") is not None  # assignments are state, not history


# -- 8. simulated UUIDs come from a stable key ------------------------------------------


def test_removing_a_simulated_gpu_renames_no_other(policy):
    specs = policy.gpu.simulated
    before = simulated_layout(specs, "ds01")
    after = simulated_layout(specs[1:], "ds01")
    assert [g.uuid for g in after.gpus] == [g.uuid for g in before.gpus[1:]]
    assert {u.uuid for u in after.units()} <= {u.uuid for u in before.units()}


def test_several_simulated_gpus_need_serials():
    text = (REPO / "config/resource-allocation.yaml").read_text()
    text = text.replace('{serial: "1652021000002", ', "{")
    with pytest.raises(PolicyError, match="simulated\\[1\\].serial is missing"):
        parse_policy(text, "resource-allocation.yaml")


def test_a_start_that_leaves_no_room_for_a_reservation_passes_it_back(policy, clock, tmp_path):
    """Held + reserved never exceed the quota: a start that would make them
    returns the user's reservation to waiting (it passes to whoever fits)."""
    alloc = make_allocator(small_quota(policy, 0.5), tmp_path / "db", clock)
    e = alloc.enqueue("123456", "student", "3g.20gb")  # 7/15 reserved
    assert e.state == "reserved"
    alloc.assign("c1", "123456", "student", kind="2g.10gb")  # GPU 3's 2/7 fits in 0.5 alone
    alloc.allocate("c1")  # 2/7 held + 7/15 reserved > 0.5
    (mine,) = [q for q in alloc.queue() if q.user == "123456"]
    assert mine.state == "waiting" and mine.unit is None
    assert alloc.check_invariants() == []


def test_a_snapshot_that_cannot_be_written_does_not_fail_a_committed_decision(
    alloc, monkeypatch, caplog
):
    import errno

    def read_only(path, data):  # a service whose ReadWritePaths lacks gpu.runtime_dir
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr("ds01.gpu.allocator.write_snapshot", read_only)
    got = alloc.assign("c1", "123456", "student")
    assert got.created and alloc.assignment("c1") is not None  # committed, not refused
    assert "GPU status snapshot" in caplog.text and "Read-only file system" in caplog.text
