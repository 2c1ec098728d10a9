"""Many processes deciding at once on a simulated 4-GPU server with MIG, some
of them killed with SIGKILL in the middle of a transaction.

After every step, in every process and in the parent after every kill: no
unit held by two containers (a single holder column, plus the cross-checks of
``check_invariants``), no user over quota, every release returns the unit, no
reservation without its queue entry."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from gpu_helpers import make_allocator, worker

from ds01.config import load_policy

REPO = Path(__file__).resolve().parents[3]
POLICY = str(REPO / "config/resource-allocation.yaml")


def test_many_processes_keep_every_invariant(tmp_path):
    db = str(tmp_path / "gpu.sqlite3")
    make_allocator(load_policy(POLICY), db).close()  # create once, as the deploy does
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(POLICY, db, seed, 120, False, errors)) for seed in range(6)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert problems == []
    assert [p.exitcode for p in procs] == [0] * len(procs)
    alloc = make_allocator(load_policy(POLICY), db)
    assert alloc.check_invariants() == []
    decisions = alloc.db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert decisions > 300  # the workers really decided things


def test_sigkill_mid_transaction_leaves_a_consistent_state(tmp_path):
    db = str(tmp_path / "gpu.sqlite3")
    policy = load_policy(POLICY)
    make_allocator(policy, db).close()
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    rng = random.Random(7)
    kills = mid_transaction = 0
    seed = 100
    steady = ctx.Process(target=worker, args=(POLICY, db, 1, 200, False, errors))
    steady.start()
    victims = []
    for _ in range(12):
        while len(victims) < 3:
            seed += 1
            flag = ctx.Value("i", 0)
            v = ctx.Process(target=worker, args=(POLICY, db, seed, 10**6, True, errors, flag))
            v.start()
            victims.append((v, flag))
        time.sleep(0.05 + rng.random() * 0.2)
        victim, flag = victims.pop(rng.randrange(len(victims)))
        deadline = time.time() + 30
        while not flag.value and time.time() < deadline:
            time.sleep(0.0005)  # wait until it is between its writes and its COMMIT
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        assert victim.exitcode == -signal.SIGKILL
        kills += 1
        mid_transaction += flag.value  # still set: the COMMIT never ran
        alloc = make_allocator(policy, db)
        assert alloc.check_invariants() == []
        alloc.expire()  # a writer gets the lock: the dead process holds nothing
        alloc.close()
    for v, _ in victims:
        os.kill(v.pid, signal.SIGKILL)
        v.join()
    steady.join(timeout=240)
    assert steady.exitcode == 0
    assert errors.empty(), errors.get()
    print(f"{kills} SIGKILLs, {mid_transaction} between BEGIN IMMEDIATE and COMMIT")
    assert kills == 12 and mid_transaction >= 10  # nearly every kill lands mid-transaction
    alloc = make_allocator(policy, db)
    assert alloc.check_invariants() == []
    assert alloc.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
