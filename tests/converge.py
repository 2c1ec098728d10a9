"""Converge the test VM and gate on idempotence.

    python3 tests/converge.py [--deploy deploys/all.py] [--runs 2] [--dry]

Runs pyinfra (JSON results) against tests/vm/inventory.py. Prints, per run,
the number of operations, how many changed, and the wall time. With two runs
or more, fails (exit 1) when any run after the first changes anything, and
names the operations that did. Any failed operation fails the gate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pyinfra(deploy: str, dry: bool) -> tuple[dict, float, str]:
    cmd = [sys.executable, "-m", "pyinfra", "-y", "--json", "tests/vm/inventory.py", deploy]
    if dry:
        cmd.append("--dry")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=os.environ)
    took = time.monotonic() - t0
    try:
        payload = json.loads(proc.stdout)
    except json.JSONDecodeError:
        payload = None
    if proc.returncode != 0 or payload is None:
        sys.stderr.write(proc.stderr[-6000:] + proc.stdout[-3000:])
        raise SystemExit(f"pyinfra {deploy} failed (exit {proc.returncode})")
    return payload, took, proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--deploy", default="deploys/all.py")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dry", action="store_true", help="plan only; must plan without errors")
    args = ap.parse_args()

    if args.dry:
        payload, took, _ = pyinfra(args.deploy, dry=True)
        print(f"dry run: {len(payload['plan'])} operations planned cleanly, {took:.1f}s")
        return 0

    failed = 0
    for run in range(1, args.runs + 1):
        payload, took, _ = pyinfra(args.deploy, dry=False)
        res = payload["results"]
        ops = res["operations"]
        changed = [op["name"] for op in ops if op["success"]]
        errors = [op["name"] for op in ops if op["error"]]
        print(f"run {run}: {len(ops)} operations, {len(changed)} changed, "
              f"{len(errors)} failed, {took:.1f}s wall", flush=True)  # fmt: skip
        for name in errors:
            print(f"  FAILED: {name}")
        if errors or res["failed_hosts"]:
            failed = 1
        if run > 1 and changed:
            failed = 1
            print(f"  NOT IDEMPOTENT: run {run} changed {len(changed)} operation(s):")
            for name in changed:
                print(f"    {name}")
    if args.runs > 1 and not failed:
        print("idempotence gate: passed (the last run changed nothing)")
    return failed


if __name__ == "__main__":
    sys.exit(main())
