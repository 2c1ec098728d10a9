"""The one structured event log: ``/var/log/ds01/events.jsonl``, one JSON object a line.

Every component records what happened through :func:`emit`: membership
changes, refusals, GPU allocations, purges, prunes, backups, drills, guard
alerts. An event is appended with one ``write`` on an ``O_APPEND`` descriptor,
so concurrent writers never interleave lines (a line under ``PIPE_BUF`` bytes
is written at once). Logging is never the reason a service fails: when the log
cannot be written (full disk, permissions) the event is dropped, counted, and
said once on stderr, and the caller carries on.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

EVENTS_FILE = Path(os.environ.get("DS01_EVENTS_FILE", "/var/log/ds01/events.jsonl"))
dropped = 0  # events this process could not write


def emit(kind: str, **fields) -> bool:
    """Append one event ``{"time": ..., "kind": kind, **fields}``; True if written.

    ``user`` (when the event concerns one person) is what ``ds01 events``
    filters on for ordinary users: they see only events naming them.
    """
    global dropped
    event = {"time": round(time.time(), 3), "kind": kind, **fields}
    try:
        line = (json.dumps(event, default=str, separators=(",", ":")) + "\n").encode()
        fd = os.open(EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            n = os.write(fd, line)
        finally:
            os.close(fd)
        if n != len(line):
            raise OSError(f"short write ({n} of {len(line)} bytes)")
        return True
    except Exception as e:  # fail safe: the caller's work matters more than its log line
        dropped += 1
        try:
            print(f"ds01 events: dropped event {kind} ({dropped} so far): {e}", file=sys.stderr)
        except Exception:
            pass
        return False


def read(path: Path = EVENTS_FILE) -> Iterator[dict]:
    """Every well-formed event in ``path`` and its rotated predecessor (oldest first)."""
    for p in (path.with_name(path.name + ".1"), path):
        try:
            f = p.open(encoding="utf-8", errors="replace")
        except OSError:
            continue
        with f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash or a full disk
                if isinstance(ev, dict) and "kind" in ev and "time" in ev:
                    yield ev
