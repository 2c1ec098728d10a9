"""Scrape cost of the DS01 exporter at the issue's size: 300 users (in the
four roles), 200 running containers and 28 GPU units (4 GPUs x 7 MIG slices,
every unit held), plus 8 job records.

    python3 tests/bench/bench_exporter.py [--users 300] [--containers 200] [--scrapes 50]

Builds the cgroup tree in a temporary directory (the files of a real cgroup v2
slice: cpu.stat, memory.*, io.stat, *.pressure, pids.current) and the status
snapshot with the real allocator, then times full scrapes (collect and render
the exposition text, as the HTTP handler does). Prints p50/p99/max in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests/unit/gpu"))

from gpu_helpers import Clock, make_allocator, policy_with  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402

from ds01 import jobs  # noqa: E402
from ds01.config import load_policy  # noqa: E402
from ds01.monitoring.exporter import Ds01Collector, registry_for  # noqa: E402
from ds01.names import ROOT_SLICE, role_slice, user_slice  # noqa: E402

FILES = {
    "cpu.stat": "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\n",
    "memory.current": "1610612736\n",
    "memory.peak": "2147483648\n",
    "memory.events": "low 0\nhigh 3\nmax 1\noom 1\noom_kill 1\noom_group_kill 0\n",
    "io.stat": "8:0 rbytes=1048576 wbytes=524288 rios=12 wios=40 dbytes=0 dios=0\n",
    "cpu.pressure": "some avg10=0.00 avg60=0.12 avg300=0.05 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "memory.pressure": "some avg10=1.50 avg60=0.80 avg300=0.20 total=1200000\nfull avg10=0.75 avg60=0.40 avg300=0.10 total=600000\n",
    "io.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=300000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=100000\n",
    "pids.current": "31\n",
}


def write_slice(path: str) -> None:
    os.makedirs(path, exist_ok=True)
    for name, text in FILES.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=50)
    args = ap.parse_args()
    gpus = [{"name": "A100-SXM4-40GB", "serial": f"bench{i}", "memory": "40g", "mig_slices": 7,
             "mig": ["1g.5gb"] * 7} for i in range(4)]  # fmt: skip
    policy = policy_with(load_policy(REPO / "config/resource-allocation.yaml"), simulated=gpus)
    roles = list(policy.roles)
    with tempfile.TemporaryDirectory() as tmp:
        root = f"{tmp}/cgroup"
        users = [(f"{100000 + i}@example.lan", roles[i % len(roles)]) for i in range(args.users)]
        write_slice(f"{root}/{ROOT_SLICE}")
        for role in roles:
            write_slice(f"{root}/{ROOT_SLICE}/{role_slice(role)}")
        for i, (user, role) in enumerate(users):
            path = f"{root}/{ROOT_SLICE}/{role_slice(role)}/{user_slice(role, user)}"
            write_slice(path)
            for c in range(i, args.containers, args.users):
                write_slice(f"{path}/docker-{c:064x}.scope")
        alloc = make_allocator(policy, f"{tmp}/gpu/allocator.sqlite3", Clock())
        units = len(alloc.status())
        for i in range(units):
            user, role = users[i]
            alloc.assign(f"c{i}", user, role, kind="1g.5gb")
            alloc.allocate(f"c{i}")
        alloc.close()
        for key in ("users_sync", "users_report", "admin_guard", "scratch_purge",
                    "image_prune", "container_cleanup", "gpu_reconcile", "backup"):  # fmt: skip
            jobs.record(key, 1.0, 2.0, 0, Path(tmp) / "jobs")
        registry = registry_for(Ds01Collector(policy, cgroup_root=root, jobs_dir=Path(tmp) / "jobs",
                                              snapshot=f"{tmp}/gpu/status.json"))  # fmt: skip
        body = generate_latest(registry)
        times, cpu = [], []
        for _ in range(args.scrapes):
            t0, c0 = time.perf_counter(), time.process_time()
            generate_latest(registry)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"users={args.users} containers={args.containers} units={units} scrapes={args.scrapes}")
    print(f"exposition: {len(body)} bytes, {len(body.splitlines())} lines")
    print(f"scrape wall ms: p50={statistics.median(times):.1f} p99={p99:.1f} max={times[-1]:.1f}")
    # CPU time of the scrape: what it costs, whatever else the machine runs
    print(f"scrape CPU ms: p50={statistics.median(cpu):.1f} max={max(cpu):.1f}")


if __name__ == "__main__":
    main()
