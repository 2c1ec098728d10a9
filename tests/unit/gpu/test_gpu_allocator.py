"""The allocator's state machine, quotas, placement, hold-after-stop, queue.

The policy is config/resource-allocation.yaml: 4 x A100-40GB, GPUs 0 and 1
whole, GPU 2 as 3g.20gb 2g.10gb 1g.5gb 1g.5gb, GPU 3 as 2g.10gb x3 1g.5gb.
student: quota 2.0, 1 unit per container, no whole GPU, hold 15m, priority 10.
researcher: quota 4.0, 2 units, whole GPU allowed, hold 30m, priority 20.
faculty: priority 30. Reservations last 15m.
"""

from __future__ import annotations

import pytest
from gpu_helpers import policy_with

from ds01.gpu.allocator import GpuBlocked, GpuDenied, GpuError, GpuUnknown
from ds01.gpu.layout import Layout
from ds01.gpu.simulated import simulated_layout

MIN = 60


@pytest.fixture(autouse=True)
def consistent(alloc):
    yield
    assert alloc.check_invariants() == []


def kinds(assignment):
    return [u.kind for u in assignment.units]


def state_of(alloc, uuid):
    return next(s for s in alloc.status() if s.unit.uuid == uuid)


# -- placement ---------------------------------------------------------------


def test_mig_slices_before_whole_gpus_smallest_first(alloc):
    a = alloc.assign("c1", "123456", "student")
    assert kinds(a) == ["1g.5gb"] and a.state == "assigned" and a.units[0].gpu_index == 2
    r = alloc.assign("c2", "j.doe", "researcher")
    assert r.units[0].profile is not None  # a researcher too gets a slice when one fits
    assert r.units[0].uuid != a.units[0].uuid  # an untargeted slice before a targeted one
    full = alloc.assign("c3", "j.doe", "researcher", kind="gpu")
    assert kinds(full) == ["gpu"] and full.units[0].weight == 1.0


def test_specific_profile_and_several_units(alloc):
    a = alloc.assign("c1", "j.doe", "researcher", count=2, kind="2g.10gb")
    assert kinds(a) == ["2g.10gb", "2g.10gb"]
    assert len({u.uuid for u in a.units}) == 2
    # GPU 2 (3g+2g+1g+1g, shares 15/14 scaled to 1) weighs its 2g at 4/15, GPU 3 at 2/7
    assert a.weight == pytest.approx(4 / 15 + 2 / 7)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(kind="gpu"), "may not use a whole GPU"),
        (dict(count=2), "at most 1 GPU unit(s) per container"),
        (dict(count=0), "1 or more"),
        (dict(kind="big"), "not a GPU kind"),
        (dict(kind="4g.20gb"), "no 4g.20gb is free"),
    ],
)
def test_requests_the_role_does_not_allow(alloc, kwargs, words):
    with pytest.raises(GpuDenied) as e:
        alloc.assign("c1", "123456", "student", **kwargs)
    assert words in e.value.message
    assert alloc.assignment("c1") is None  # nothing recorded


def test_unknown_role_is_denied(alloc):
    with pytest.raises(GpuDenied, match="role 'guest' is not defined"):
        alloc.assign("c1", "x", "guest")


def test_retried_create_returns_the_same_assignment(alloc):
    a = alloc.assign("c1", "123456", "student")
    assert alloc.assign("c1", "123456", "student") == a
    with pytest.raises(GpuDenied, match="already has a GPU assignment"):
        alloc.assign("c1", "654321", "student")


# -- quotas in GPU-equivalents --------------------------------------------------


def test_fractional_quota_is_exact_at_the_boundary(alloc):
    """Seven sevenths make 1.0: a student can hold exactly 2.0 and no more."""
    held = 0.0
    for i, kind in enumerate(
        ["3g.20gb", "2g.10gb", "2g.10gb", "2g.10gb", "2g.10gb", "1g.5gb", "1g.5gb", "1g.5gb"]
    ):
        if held + int(kind[0]) / 7 > 2.0 + 1e-9:
            break
        alloc.assign(f"c{i}", "123456", "student", kind=kind)
        held += alloc.allocate(f"c{i}").weight
    assert held == pytest.approx(2.0)
    with pytest.raises(GpuDenied, match="no GPU unit is free right now"):
        alloc.assign("more", "123456", "student")


def test_over_quota_request_names_the_numbers(alloc):
    """c.rivera's override (3.0) holds 2 GPUs and all of GPU 2 (3g + 2g + 1g + 1g,
    whose shares 1/2 + 2/7 + 1/7 + 1/7 are scaled to weigh one GPU) = 3.0 exactly."""
    for name, kind, count in [
        ("a", "gpu", 2),
        ("b", "3g.20gb", 1),
        ("c", "2g.10gb", 1),
        ("d", "1g.5gb", 2),
    ]:
        alloc.assign(name, "c.rivera", "researcher", count=count, kind=kind)
        alloc.allocate(name)
    with pytest.raises(GpuDenied) as e:
        alloc.assign("e", "c.rivera", "researcher")
    assert "c.rivera (researcher) holds 3 of a 3 GPU-equivalent quota" in e.value.message


def test_quota_checked_again_when_the_reservation_is_made(alloc):
    """Assigned containers reserve nothing: two that each fit cannot both run."""
    for name, kind, count in [("a", "gpu", 2), ("b", "2g.10gb", 2)]:
        alloc.assign(name, "c.rivera", "researcher", count=count, kind=kind)
        alloc.allocate(name)  # 2 + 4/15 (GPU 2) + 2/7 (GPU 3) of 3 held
    # x and y each target one more 2g.10gb of GPU 3 (2/7): each fits, both do not
    x = alloc.assign("x", "c.rivera", "researcher", kind="2g.10gb")
    y = alloc.assign("y", "c.rivera", "researcher", kind="2g.10gb")
    assert x.units != y.units
    alloc.allocate("x")
    with pytest.raises(GpuDenied, match="the researcher quota is 3"):
        alloc.allocate("y")
    assert alloc.assignment("y").state == "assigned"


def test_per_user_override_sets_the_quota(alloc):
    """The override (3.0) replaces the researcher quota (4.0)."""
    alloc.assign("a", "c.rivera", "researcher", kind="gpu")
    alloc.allocate("a")
    alloc.assign("b", "c.rivera", "researcher", kind="gpu")
    alloc.allocate("b")
    alloc.assign("c", "c.rivera", "researcher", count=2, kind="2g.10gb")
    alloc.allocate("c")  # 2 + 4/7
    with pytest.raises(GpuDenied, match="of a 3 GPU-equivalent quota"):
        alloc.assign("d", "c.rivera", "researcher", count=2, kind="2g.10gb")


def test_admin_has_no_quota(alloc):
    for i in range(2):
        alloc.assign(f"a{i}", "h.admin", "admin", kind="gpu")
        alloc.allocate(f"a{i}")
    a = alloc.assign("a2", "h.admin", "admin", count=4)
    assert len(a.units) == 4 and alloc.allocate("a2").state == "allocated"


# -- allocate / blocked / release / forget --------------------------------------


def test_blocked_start_says_who_since_when_and_what_to_do(alloc, clock):
    mine = alloc.assign("mine", "123456", "student", kind="3g.20gb")
    theirs = alloc.assign("theirs", "654321", "student", kind="3g.20gb")
    assert mine.units == theirs.units  # both target the only 3g (assigned reserves nothing)
    alloc.allocate("theirs")
    with pytest.raises(GpuBlocked) as e:
        alloc.allocate("mine")
    msg = e.value.message
    assert "in use by 654321 (container 'theirs') since 2027-01-15 08:00 UTC" in msg
    assert "recreate" in msg and "ds01 gpu queue join --kind 3g.20gb" in msg
    assert alloc.assignment("mine").state == "assigned"


def test_allocate_unknown_container(alloc):
    with pytest.raises(GpuUnknown, match="has no GPU assignment"):
        alloc.allocate("ghost")
    assert issubclass(GpuUnknown, GpuError) and issubclass(GpuBlocked, GpuError)


def test_hold_after_stop_then_release(alloc, clock):
    a = alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    alloc.release("c1")
    held = alloc.assignment("c1")
    assert held.state == "held" and held.release_at == clock.t + 15 * MIN
    assert state_of(alloc, a.units[0].uuid).state == "held"
    clock.advance(10 * MIN)
    assert alloc.allocate("c1").state == "allocated"  # restart within the grace
    alloc.release("c1")
    clock.advance(15 * MIN)
    alloc.expire()
    assert alloc.assignment("c1").state == "released"
    assert state_of(alloc, a.units[0].uuid).state == "assigned"  # free, still targeted
    assert alloc.allocate("c1").state == "allocated"  # same target, free: allocated again


def test_hold_counts_from_when_the_container_stopped(alloc, clock):
    alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    clock.advance(60 * MIN)
    alloc.release("c1", stopped_at=clock.t - 20 * MIN)  # the reconciler noticed late
    assert alloc.assignment("c1").state == "released"
    assert alloc.status()[0].state in ("free", "assigned")


def test_held_unit_blocks_others(alloc):
    a = alloc.assign("c1", "123456", "student", kind="3g.20gb")
    alloc.assign("c2", "654321", "student", kind="3g.20gb")
    alloc.allocate("c1")
    alloc.release("c1")
    with pytest.raises(GpuBlocked, match="in use by 123456"):
        alloc.allocate("c2")
    with pytest.raises(GpuDenied, match="no 3g.20gb is free"):
        alloc.assign("c3", "654321", "student", kind="3g.20gb")
    assert a.units[0].uuid


def test_release_and_forget_are_idempotent(alloc):
    alloc.release("nothing")
    alloc.forget("nothing")
    a = alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    alloc.forget("c1")
    alloc.forget("c1")
    assert alloc.assignment("c1") is None
    assert state_of(alloc, a.units[0].uuid).state == "free"


def test_role_without_hold_releases_at_once(policy, clock, tmp_path):
    from gpu_helpers import make_allocator

    roles = dict(policy.roles)
    s = roles["student"]
    roles["student"] = s.model_copy(
        update={"lifecycle": s.lifecycle.model_copy(update={"gpu_hold_after_stop": 0})}
    )
    alloc = make_allocator(policy.model_copy(update={"roles": roles}), tmp_path / "db", clock)
    alloc.assign("c1", "123456", "student")
    alloc.allocate("c1")
    alloc.release("c1")
    assert alloc.assignment("c1").state == "released"


# -- queue ---------------------------------------------------------------------


def take_3g(alloc, user="123456", role="student"):
    a = alloc.assign("holder", user, role, kind="3g.20gb")
    alloc.allocate("holder")
    return a.units[0].uuid


def test_released_unit_is_reserved_for_the_head_of_the_queue(alloc, clock):
    uuid = take_3g(alloc)
    entry = alloc.enqueue("j.doe", "researcher", "3g.20gb")
    assert (entry.state, entry.position) == ("waiting", 1)
    alloc.release("holder")
    clock.advance(15 * MIN)  # the holder's grace runs out
    alloc.expire()
    (q,) = alloc.queue()
    assert (q.state, q.unit, q.reserved_until) == ("reserved", uuid, clock.t + 15 * MIN)
    assert state_of(alloc, uuid).state == "reserved"
    assert alloc.notices("j.doe")[0].startswith("A 3g.20gb (" + uuid + ") is reserved for you")
    # The old holder's container cannot take it back, nobody else is assigned it.
    with pytest.raises(GpuBlocked, match="reserved for j.doe, who is first in the GPU queue"):
        alloc.allocate("holder")
    with pytest.raises(GpuDenied):
        alloc.assign("other", "654321", "student", kind="3g.20gb")
    mine = alloc.assign("mine", "j.doe", "researcher", kind="3g.20gb")
    assert mine.units[0].uuid == uuid
    alloc.allocate("mine")
    assert alloc.queue() == [] and alloc.notices("j.doe") == []


def test_priority_by_role_then_arrival(alloc, clock):
    uuid = take_3g(alloc, "h.admin", "admin")
    alloc.enqueue("111111", "student", "3g.20gb")
    clock.advance(1)
    alloc.enqueue("222222", "student", "3g.20gb")
    clock.advance(1)
    alloc.enqueue("w.prof", "faculty", "3g.20gb")
    assert [(e.user, e.position) for e in alloc.queue()] == [
        ("w.prof", 1),
        ("111111", 2),
        ("222222", 3),
    ]
    alloc.forget("holder")
    assert [(e.user, e.state) for e in alloc.queue()][0] == ("w.prof", "reserved")
    assert alloc.notices("111111") == ["You are number 2 in the GPU queue for 3g.20gb."]
    assert state_of(alloc, uuid).reserved_for == "w.prof"


def test_expired_reservation_passes_to_the_next_in_line(alloc, clock):
    uuid = take_3g(alloc, "h.admin", "admin")
    alloc.enqueue("111111", "student", "3g.20gb")
    clock.advance(1)
    alloc.enqueue("222222", "student", "3g.20gb")
    alloc.forget("holder")
    assert alloc.queue()[0].user == "111111"
    clock.advance(15 * MIN)
    alloc.expire()
    (q,) = alloc.queue()
    assert (q.user, q.state, q.unit) == ("222222", "reserved", uuid)
    with pytest.raises(GpuDenied):  # the first student's chance has passed
        alloc.assign("late", "111111", "student", kind="3g.20gb")


def test_joining_when_a_unit_is_free_reserves_it_at_once(alloc):
    e = alloc.enqueue("123456", "student", "1g.5gb")
    assert e.state == "reserved" and e.unit


def test_queue_rules(alloc):
    take_3g(alloc)
    alloc.enqueue("123456", "student", "3g.20gb")
    with pytest.raises(GpuDenied, match="already in the queue"):
        alloc.enqueue("123456", "student", "3g.20gb")
    with pytest.raises(GpuDenied, match="may not use a whole GPU"):
        alloc.enqueue("123456", "student", "gpu")
    with pytest.raises(GpuDenied, match="no 4g.20gb"):
        alloc.enqueue("123456", "student", "4g.20gb")
    assert alloc.leave("123456", "3g.20gb") == 1
    assert alloc.queue() == []


def test_leaving_passes_a_reservation_on(alloc, clock):
    take_3g(alloc, "h.admin", "admin")
    alloc.enqueue("111111", "student", "3g.20gb")
    clock.advance(1)
    alloc.enqueue("222222", "student", "3g.20gb")
    alloc.forget("holder")
    alloc.leave("111111", any_kind=True)
    assert [(e.user, e.state) for e in alloc.queue()] == [("222222", "reserved")]


def test_queue_respects_quota(alloc):
    """A unit is not reserved for someone who could not hold it."""
    for i, kind in enumerate(
        ["2g.10gb", "2g.10gb", "2g.10gb", "2g.10gb", "1g.5gb", "1g.5gb", "1g.5gb"]
    ):
        alloc.assign(f"c{i}", "123456", "student", kind=kind)
        alloc.allocate(f"c{i}")  # 11/7 held; 3/7 left
    uuid = take_3g(alloc, "h.admin", "admin")
    alloc.enqueue("123456", "student", None)
    alloc.enqueue("654321", "student", None)
    alloc.forget("holder")  # 3g (3/7) fits 123456 exactly: it is the head
    assert [(e.user, e.state) for e in alloc.queue()][0] == ("123456", "reserved")
    assert state_of(alloc, uuid).reserved_for == "123456"


# -- admin and layout ---------------------------------------------------------------


def test_drain_and_admin_release(alloc):
    a = alloc.assign("c1", "123456", "student", kind="3g.20gb")
    uuid = a.units[0].uuid
    alloc.drain(uuid, by="datasciencelab")
    assert state_of(alloc, uuid).state == "drained"
    with pytest.raises(GpuBlocked, match="taken out of service by datasciencelab"):
        alloc.allocate("c1")
    with pytest.raises(GpuDenied):
        alloc.assign("c2", "654321", "student", kind="3g.20gb")
    alloc.drain(uuid, by="datasciencelab", drained=False)
    alloc.allocate("c1")
    assert alloc.admin_release(uuid, by="datasciencelab") == "c1"
    assert alloc.assignment("c1").state == "released"
    assert state_of(alloc, uuid).state == "assigned"
    with pytest.raises(GpuUnknown):
        alloc.drain("MIG-nope", by="x")


def test_repartition_blocks_stale_targets_and_keeps_holders(alloc, policy):
    gone = alloc.assign("gone", "123456", "student", kind="2g.10gb")
    holding = alloc.assign("holding", "654321", "student", kind="1g.5gb")
    alloc.allocate("holding")
    new = policy_with(
        policy,
        simulated=[
            {"name": "A100", "memory": "40g", "mig_slices": 7, "mig": None},
            {"name": "A100", "memory": "40g", "mig_slices": 7, "mig": ["7g.40gb"]},
        ],
    )
    layout = simulated_layout(new.gpu.simulated, "other-site")
    added, missing = alloc.sync_layout(layout)
    assert len(added) == 2 and len(missing) == 10
    with pytest.raises(GpuBlocked, match="no longer exists"):
        alloc.allocate("gone")
    assert state_of(alloc, holding.units[0].uuid).state == "missing"
    alloc.forget("holding")
    alloc.forget("gone")
    assert {s.unit.uuid for s in alloc.status()} == set(added)
    assert gone.units


def test_failed_layout_read_changes_nothing(alloc):
    before = alloc.status()
    assert alloc.sync_layout(Layout("none", error="NVML is not available")) == ([], [])
    assert alloc.status() == before


def test_status_of_every_unit(alloc):
    alloc.assign("c1", "123456", "student", kind="3g.20gb")
    alloc.allocate("c1")
    rows = alloc.status()
    assert len(rows) == 10
    held = [r for r in rows if r.state == "allocated"]
    assert [(r.user, r.holder, r.unit.kind) for r in held] == [("123456", "c1", "3g.20gb")]


def test_committed_decisions_are_mirrored_in_the_event_log(alloc):
    """issue 12: the allocator's events reach ds01.events once committed."""
    from ds01 import events

    alloc.assign("c1", "123456", "student")
    evs = [e for e in events.read(events.EVENTS_FILE) if e["kind"].startswith("gpu_")]
    kinds = [e["kind"] for e in evs]
    assert "gpu_unit_added" in kinds  # the layout's units, as the allocator's own log says
    assert kinds[-1] == "gpu_assigned"
    assert all(e.get("user") == "123456" for e in evs if e["kind"] == "gpu_assigned")


def test_rolled_back_decisions_leave_no_event(alloc):
    from ds01 import events

    with pytest.raises(RuntimeError):
        with alloc.store.tx():
            alloc.store.event("assigned", container="ghost", user="x")
            raise RuntimeError("crash midway")
    assert not [e for e in events.read(events.EVENTS_FILE) if e.get("container") == "ghost"]
