"""Results of the scheduled jobs, one small JSON file per policy key.

Every recurring job the policy's ``schedules`` declares runs as
``ds01 job run KEY -- COMMAND...``: the command runs unchanged (its output goes
where the scheduler sends it) and its outcome is kept in
``/var/lib/ds01/jobs/KEY.json``, which ``ds01 schedule``, ``ds01 doctor`` and
the exporter read. Writes are atomic (a reader never sees half a record) and
the last success survives later failures, which the scheduler itself forgets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal, TypedDict

JOBS_DIR = Path("/var/lib/ds01/jobs")
KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class JobRecord(TypedDict):
    """One job's last run, as stored in ``KEY.json``::

        {"key": "users_sync", "started": 1764676800.0, "finished": 1764676803.2,
         "exit_code": 0, "result": "ok", "last_success": 1764676803.2}

    Times are Unix seconds; ``exit_code`` is 128+N when signal N ended the job;
    ``last_success`` is null until the job has once succeeded.
    """

    key: str
    started: float
    finished: float
    exit_code: int
    result: Literal["ok", "failed"]
    last_success: float | None


def _check_key(key: str) -> str:
    if not KEY.match(key):
        raise ValueError(f"job key {key!r}: use the policy's schedules key (a-z, 0-9, _)")
    return key


def read(key: str, directory: Path = JOBS_DIR) -> JobRecord | None:
    """The last recorded run of ``key``; None if it never ran (or the file is unreadable)."""
    try:
        data = json.loads((directory / f"{_check_key(key)}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def read_all(directory: Path = JOBS_DIR) -> dict[str, JobRecord]:
    """Every recorded job, by key."""
    out: dict[str, JobRecord] = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        if KEY.match(path.stem) and (rec := read(path.stem, directory)) is not None:
            out[path.stem] = rec
    return out


def record(key: str, started: float, finished: float, exit_code: int,
           directory: Path = JOBS_DIR) -> JobRecord:  # fmt: skip
    """Store one run's outcome of ``key`` (atomically), keeping the last success."""
    previous = read(key, directory)
    ok = exit_code == 0
    rec: JobRecord = {
        "key": _check_key(key),
        "started": started,
        "finished": finished,
        "exit_code": exit_code,
        "result": "ok" if ok else "failed",
        "last_success": finished if ok else (previous or {}).get("last_success"),
    }
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # results are public: what ran and whether it worked
        os.replace(tmp, directory / f"{key}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rec


def run(key: str, argv: list[str], directory: Path = JOBS_DIR) -> int:
    """Run ``argv`` as job ``key`` and record its outcome; returns its exit code."""
    _check_key(key)
    started = time.time()
    try:
        code = subprocess.call(argv)
    except OSError as e:  # not found, not executable: the job failed, say why
        print(f"ds01 job run {key}: cannot run {argv[0]!r}: {e.strerror}", file=sys.stderr)
        code = 127
    if code < 0:  # killed by a signal: the shell's convention
        code = 128 - code
    record(key, started, time.time(), code, directory)
    return code


def register(sub: argparse._SubParsersAction) -> None:
    job = sub.add_parser("job", help="run a scheduled job and record its result")
    jsub = job.add_subparsers(dest="job_command", metavar="ACTION", required=True)
    p = jsub.add_parser("run", help="run COMMAND as the policy's job KEY (used by the schedules)")
    p.add_argument("key", help="the job's key in the policy's schedules")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the command and its arguments")  # fmt: skip
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("ds01 job run: give the command after --", file=sys.stderr)
        return 2
    try:
        return run(args.key, argv)
    except ValueError as e:
        print(f"ds01 job run: {e}", file=sys.stderr)
        return 2
