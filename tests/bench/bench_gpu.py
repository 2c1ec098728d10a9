"""GPU allocator decision latency and throughput with 1, 8 and 32 concurrent
client processes on the simulated 4 x A100 (two in MIG) of the repository policy.

    python3 tests/bench/bench_gpu.py [--seconds 5] [--clients 1 8 32]

Each client is a process with its own connection, looping over a container's
life: assign, allocate, release (past its hold), forget: four decisions, each
one BEGIN IMMEDIATE transaction. Refusals (nothing free) count as decisions:
they take the same lock. Prints p50/p99 latency per decision and decisions/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ds01.config import load_policy  # noqa: E402
from ds01.gpu.allocator import Allocator, GpuError  # noqa: E402
from ds01.gpu.simulated import SimulatedBackend  # noqa: E402

POLICY = REPO / "config/resource-allocation.yaml"
USERS = [(f"{100000 + i}", "student") for i in range(40)] + [("j.doe", "researcher")]


def client(db: str, snap: str, seed: int, start: float, stop: float, out) -> None:
    policy = PARENT_POLICY  # parsed once in the parent, inherited through fork
    alloc = Allocator(policy, db, backend=SimulatedBackend(policy), snapshot=snap)
    rng = random.Random(seed)
    lat: list[float] = []
    refused = 0
    while time.time() < start:
        time.sleep(0.001)
    n = 0
    while time.time() < stop:
        n += 1
        name = f"b{seed}-{n}"
        user, role = rng.choice(USERS)
        steps = [
            (alloc.assign, (name, user, role)),
            (alloc.allocate, (name,)),
            (lambda n: alloc.release(n, hold=False), (name,)),  # released at once
            (alloc.forget, (name,)),
        ]
        for step, step_args in steps:
            t0 = time.perf_counter()
            try:
                step(*step_args)
            except GpuError:
                refused += 1
            lat.append(time.perf_counter() - t0)
    out.put((lat, refused))


PARENT_POLICY = load_policy(POLICY)


def run(clients: int, seconds: float) -> dict:
    # As on the server: the database on disk, the status snapshot on tmpfs.
    with (
        tempfile.TemporaryDirectory(dir=REPO / "build") as d,
        tempfile.TemporaryDirectory(dir="/dev/shm") as run_dir,
    ):
        db = os.path.join(d, "gpu.sqlite3")
        snap = os.path.join(run_dir, "status.json")
        policy = load_policy(POLICY)
        Allocator(policy, db, backend=SimulatedBackend(policy), snapshot=snap).close()
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        start = time.time() + 1.0 + clients * 0.05
        procs = [
            ctx.Process(target=client, args=(db, snap, i, start, start + seconds, out))
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
    lat = sorted(x for r, _ in results for x in r)
    q = statistics.quantiles(lat, n=100)
    return {
        "clients": clients,
        "decisions": len(lat),
        "refused": sum(r for _, r in results),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "per_s": len(lat) / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}, {args.seconds:g}s per level, SQLite WAL, one BEGIN IMMEDIATE "
          "per decision")  # fmt: skip
    print(
        f"{'clients':>7} {'decisions':>9} {'refused':>7} {'p50 ms':>8} {'p99 ms':>8} {'dec/s':>8}"
    )
    for c in args.clients:
        r = run(c, args.seconds)
        print(f"{r['clients']:>7} {r['decisions']:>9} {r['refused']:>7} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['per_s']:>8.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
