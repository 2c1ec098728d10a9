"""Scratch purge on a tree of a million files (on demand; prints figures).

    python3 tests/bench/bench_purge.py [--files 1000000] [--dir /var/tmp]

Builds DIR/ds01-bench-purge/scratch/<user>/<batch>/<file> (100 users, 1000
files per directory), half of them recently used, then times a dry run (walk
only) and a real purge (walk + unlink of the unused half). ctime cannot be set
back, so the purge runs as of 40 days from now and the "recent" half gets an
mtime one day before that.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ds01.storage.purge import Purger  # noqa: E402

DAY = 86400


def build(root: str, files: int, as_of: float) -> None:
    recent = as_of - DAY
    per_dir, users = 1000, 100
    n = 0
    while n < files:
        user = f"{n // per_dir % users:06d}@example.lan"
        d = f"{root}/{user}/batch{n // (per_dir * users):04d}"
        os.makedirs(d, exist_ok=True)
        for i in range(min(per_dir, files - n)):
            p = f"{d}/f{i}"
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
            if i % 2:
                os.utime(p, (recent, recent))
        n += per_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    base = f"{args.dir}/ds01-bench-purge"
    shutil.rmtree(base, ignore_errors=True)
    root = f"{base}/scratch"
    as_of = time.time() + 40 * DAY
    t = time.monotonic()
    build(root, args.files, as_of)
    print(f"built {args.files} files in {time.monotonic() - t:.1f} s")
    try:
        t = time.monotonic()
        r = Purger(root, 30 * DAY, 7 * DAY, as_of, dry_run=True).run()
        dry = time.monotonic() - t
        print(
            f"dry run: {r.seen} entries walked, {r.removed_files} due, {dry:.1f} s "
            f"({r.seen / dry:,.0f} entries/s)"
        )
        t = time.monotonic()
        r = Purger(root, 30 * DAY, 7 * DAY, as_of, dry_run=False).run()
        real = time.monotonic() - t
        print(
            f"purge: {r.seen} entries walked, {r.removed_files} files removed, {real:.1f} s "
            f"({r.seen / real:,.0f} entries/s), {len(r.users)} users, {len(r.errors)} errors"
        )
        left = sum(len(f) for _, _, f in os.walk(root))
        print(f"left: {left} files (the recently used half)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
