"""Helpers for the GPU tests (imported by conftest and by worker processes)."""

from __future__ import annotations

from ds01.config import Policy, SimulatedGpu
from ds01.gpu.allocator import Allocator
from ds01.gpu.simulated import SimulatedBackend

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_allocator(policy: Policy, path, clock=None) -> Allocator:
    return Allocator(policy, str(path), backend=SimulatedBackend(policy), clock=clock or Clock())


def policy_with(policy: Policy, simulated: list[dict] | None = None, **gpu) -> Policy:
    """The policy with its ``gpu`` section changed (the model is frozen)."""
    if simulated is not None:
        gpu["simulated"] = [SimulatedGpu.model_validate(s) for s in simulated]
    return policy.model_copy(update={"gpu": policy.gpu.model_copy(update=gpu)})


# --------------------------------------------------------------------------
# Concurrency: worker processes (tests/unit/gpu/test_gpu_concurrency.py and
# tests/bench/bench_gpu.py)
# --------------------------------------------------------------------------

USERS = [("111111", "student"), ("222222", "student"), ("333333", "student"),
         ("j.doe", "researcher"), ("c.rivera", "researcher"), ("w.prof", "faculty")]  # fmt: skip
KINDS = [None, None, None, "1g.5gb", "2g.10gb", "3g.20gb", "gpu"]


def random_step(alloc, rng, tag: str, mine: list[str]) -> str:
    """One random decision on behalf of a random user; returns what it did.
    Raises AssertionError when a promise of the allocator is broken."""
    from ds01.gpu.allocator import GpuError

    op = rng.choice(["assign", "assign", "allocate", "allocate", "release", "forget", "queue"])
    if rng.random() < 0.05:
        op = "layout"
    try:
        if op == "assign" or not mine:
            user, role = rng.choice(USERS)
            name = f"{tag}-{rng.randrange(10**9)}"
            count = rng.choice([1, 1, 2])
            alloc.assign(name, user, role, count=count, kind=rng.choice(KINDS))
            mine.append(name)
            return "assign"
        name = rng.choice(mine)
        if op == "allocate":
            a = alloc.allocate(name)
            assert a.state == "allocated"
            holders = {s.unit.uuid: s.holder for s in alloc.status()}
            assert all(holders[u.uuid] == name for u in a.units), "allocated but not holding"
        elif op == "release":
            alloc.release(name, hold=False)  # no hold: released now
            assert not any(s.holder == name for s in alloc.status()), "release kept a unit"
        elif op == "forget":
            alloc.forget(name)
            mine.remove(name)
            assert not any(s.holder == name for s in alloc.status()), "forget kept a unit"
        elif op == "layout":  # what `ds01 gpu layout apply` does to the allocator
            gpu = rng.randrange(4)
            if rng.random() < 0.5:
                # (whole, never in part: check_invariants, in one read)
                alloc.drain_gpus([gpu], f"ds01 gpu layout apply ({tag})")
            else:
                alloc.resume_gpus([0, 1, 2, 3])
        else:
            user, role = rng.choice(USERS)
            if rng.random() < 0.5:
                alloc.enqueue(user, role, rng.choice(KINDS))
            else:
                alloc.leave(user, any_kind=True)
        return op
    except GpuError:
        return op + " refused"


def worker(
    policy_path: str, db: str, seed: int, steps: int, slow: bool, errors, in_tx=None
) -> None:
    """A client process: ``steps`` random decisions, invariants after each.
    ``slow`` lingers inside every transaction (a target for SIGKILL), with the
    shared ``in_tx`` flag set from after its writes until its COMMIT."""
    import random
    import time

    from ds01.config import load_policy
    from ds01.gpu.allocator import Allocator

    class Lingering(Allocator):
        def _dispatch(self, now):
            super()._dispatch(now)
            if self.db.in_transaction and in_tx is not None:
                in_tx.value = 1
            time.sleep(random.random() * 0.02)  # still inside BEGIN IMMEDIATE

        def _after_commit(self, changed):
            super()._after_commit(changed)
            if in_tx is not None:
                in_tx.value = 0

    policy = load_policy(policy_path)
    rng = random.Random(seed)
    alloc = (Lingering if slow else Allocator)(policy, db, backend=_backend(policy))
    mine: list[str] = []
    try:
        for _ in range(steps):
            random_step(alloc, rng, f"w{seed}", mine)
            problems = alloc.check_invariants()
            assert not problems, problems
    except AssertionError as e:
        errors.put(f"worker {seed}: {e}")
        raise


def _backend(policy):
    return SimulatedBackend(policy)
