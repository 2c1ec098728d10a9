"""Converge the test VM with the README's deploy commands and gate on idempotence.

    python3 tests/converge.py --dry        # the README's "look first" command
    python3 tests/converge.py [--runs 2]   # the README's apply command, N times

The commands are the README's (``README_PLAN``, ``README_APPLY``; a unit test
keeps them equal to what README.md says) with the production inventory
swapped for tests/vm/inventory.py. The apply command runs as an admin runs
it, without ``-y``: pyinfra detects changes, then waits for Enter, which this
script presses (pyinfra takes only an empty line; ``yes |`` would answer "y"
and pyinfra would stop without applying).

Prints, per run, the operations, how many changed, and the wall time. With two
runs or more, fails (exit 1) when any run after the first changes anything,
and names the operations that did. Any failed operation fails the gate.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_PLAN = "pyinfra inventory.py deploys/all.py --dry"
README_APPLY = "pyinfra inventory.py deploys/all.py"
VM_INVENTORY = "tests/vm/inventory.py"


def vm_command(readme_command: str) -> list[str]:
    """The README command as argv against the test VM: the same words, the
    VM's inventory, pyinfra from the interpreter's own environment."""
    words = readme_command.split()
    if words[:2] != ["pyinfra", "inventory.py"]:
        raise ValueError(f"not a deploy command: {readme_command!r}")
    return [str(Path(sys.executable).with_name("pyinfra")), VM_INVENTORY, *words[2:]]


def run(readme_command: str, stdin: str | None) -> tuple[str, float]:
    cmd = vm_command(readme_command)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, input=stdin or "", text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    took = time.monotonic() - t0
    if proc.returncode != 0 or (stdin is not None and "--> Results:" not in proc.stdout):
        sys.stderr.write(proc.stdout[-9000:])
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    return proc.stdout, took


def table(output: str, header: str, columns: int) -> list[list[str]]:
    """Rows of the table pyinfra prints after ``header`` (``--> Results:``):
    ``columns`` cells each, the operation name first. Cells are padded with
    four spaces or more; a name may hold single spaces."""
    lines = output.split(header, 1)[1].splitlines()[2:]  # past the column titles
    rows = []
    for line in lines:
        if not line.strip():
            break
        cells = re.split(r" {2,}", line.strip())
        rows.append(["  ".join(cells[: len(cells) - columns + 1]), *cells[1 - columns :]])
    return rows


def results(output: str) -> tuple[list[str], list[str], int]:
    """(changed operations, failed operations, operation count) of one apply run."""
    rows = [r for r in table(output, "--> Results:", 5) if r[0] != "Grand total"]
    changed = [r[0] for r in rows if r[2] != "-"]
    failed = [r[0] for r in rows if r[3] != "-"]
    return changed, failed, len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dry", action="store_true", help="plan only; must plan without errors")
    args = ap.parse_args()

    if args.dry:
        out, took = run(README_PLAN, stdin=None)
        rows = table(out, "--> Detected changes:", 3)
        later = [ln.strip() for ln in out.splitlines() if "decided at execution" in ln]
        print(f"dry run: {len(rows)} operations planned cleanly, "
              f"{sum(r[1] != '-' for r in rows)} would change, {took:.1f}s")  # fmt: skip
        for line in later:
            print(f"  {line}")
        return 0

    failed = 0
    for n in range(1, args.runs + 1):
        out, took = run(README_APPLY, stdin="\n")  # Enter at "Press enter to execute..."
        changed, errors, ops = results(out)
        print(f"run {n}: {ops} operations, {len(changed)} changed, "
              f"{len(errors)} failed, {took:.1f}s wall", flush=True)  # fmt: skip
        for name in errors:
            print(f"  FAILED: {name}")
        failed |= bool(errors)
        if n > 1 and changed:
            failed = 1
            print(f"  NOT IDEMPOTENT: run {n} changed {len(changed)} operation(s):")
            for name in changed:
                print(f"    {name}")
    if args.runs > 1 and not failed:
        print("idempotence gate: passed (the last run changed nothing)")
    return failed


if __name__ == "__main__":
    sys.exit(main())
