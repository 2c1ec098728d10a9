"""Figure for `ds01 users report` on large homes (on demand; prints only).

    python3 tests/bench/bench_report.py [--files 1000000] [--homes 4] [--dir DIR]

Builds DIR/home/<user>/... with FILES small files spread over HOMES homes
(kept for reruns when --dir is given; made and removed in a temp dir
otherwise), then times report.build() over it, cold-ish and warm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ds01.config import parse_policy  # noqa: E402
from ds01.identity import report  # noqa: E402

PER_DIR = 500


def make_tree(root: Path, files: int, homes: int) -> None:
    marker = root / f".built-{files}-{homes}"
    if marker.exists():
        return
    per_home = files // homes
    t0 = time.perf_counter()
    for h in range(homes):
        home = root / f"bench.user{h}"
        for i in range(per_home):
            if i % PER_DIR == 0:
                d = home / f"d{i // 50000}" / f"s{i // PER_DIR}"
                d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o600)
            os.write(fd, b"x" * (i % 7))
            os.close(fd)
    marker.touch()
    print(f"built {files:,} files in {homes} homes in {time.perf_counter() - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--homes", type=int, default=4)
    ap.add_argument("--dir", type=Path)
    a = ap.parse_args()
    base = a.dir or Path(tempfile.mkdtemp(prefix="ds01-bench-report-"))
    root = base / "home"
    root.mkdir(parents=True, exist_ok=True)
    try:
        make_tree(root, a.files, a.homes)
        data = yaml.safe_load((REPO / "config/resource-allocation.yaml").read_text())
        data["identity"]["home"]["root"] = str(root)
        data["identity"]["directory"]["enabled"] = False
        policy = parse_policy(yaml.safe_dump(data), "bench-policy.yaml")
        for label in ("first", "second"):
            t0 = time.perf_counter()
            rows = report.build(policy)
            dt = time.perf_counter() - t0
            size = sum(r.size_bytes or 0 for r in rows)
            print(f"report ({label} run) over {a.files:,} files in {len(rows)} homes: {dt:.2f} s "
                  f"({a.files / dt:,.0f} files/s, {size / 2**20:.0f} MiB on disk)")  # fmt: skip
    finally:
        if not a.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
