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


OWN_HELPER = "/opt/ds01/venv/bin/ds01-events-own"  # sudo runs it for users (deploys/maintenance.py)


def select(evs, user: str | None = None, kind: str | None = None,
           since: float | None = None) -> list[dict]:  # fmt: skip
    """Events naming ``user``, of ``kind`` (a prefix: ``gpu`` matches ``gpu_released``),
    at or after ``since``."""
    out = []
    for ev in evs:
        if user is not None and ev.get("user") != user:
            continue
        if kind is not None and not (ev["kind"] == kind or ev["kind"].startswith(kind + "_")):
            continue
        if since is not None and not (isinstance(ev["time"], int | float) and ev["time"] >= since):
            continue
        out.append(ev)
    return out


def parse_since(text: str, now: float) -> float:
    """``2d``, ``90m`` (that long ago) or an ISO date/time (local time)."""
    import datetime

    from ds01.units import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration such as 2d or 6h, "
                         "or a date such as 2026-12-01") from None  # fmt: skip


def render(ev: dict) -> str:
    import datetime

    when = datetime.datetime.fromtimestamp(ev["time"]).strftime("%Y-%m-%d %H:%M:%S")
    rest = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("time", "kind"))
    return f"{when}  {ev['kind']:<18} {rest}"


def _add_filters(p) -> None:
    p.add_argument("--kind", help="only this kind (or its family: gpu, backup, ...)")
    p.add_argument("--since", help="only since then: 2d, 6h, or 2026-12-01")
    p.add_argument("--json", action="store_true", help="one JSON object a line")


def register(sub) -> None:
    p = sub.add_parser("events", help="what happened on the server (yours, or all for admins)")
    p.add_argument("--user", help="admins: only events naming this user")
    _add_filters(p)
    p.set_defaults(func=_cmd)


def _show(args, user: str | None) -> int:
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as e:
        print(f"ds01 events: {e}", file=sys.stderr)
        return 2
    for ev in select(read(), user, args.kind, since):
        print(json.dumps(ev) if args.json else render(ev))
    return 0


def _cmd(args) -> int:
    if os.geteuid() == 0:
        return _show(args, args.user)
    if args.user:
        print("ds01 events: --user is for admins; you see your own events", file=sys.stderr)
        return 2
    import subprocess

    argv = ["sudo", "-n", OWN_HELPER]
    for opt in ("kind", "since"):
        if getattr(args, opt):
            argv += [f"--{opt}", getattr(args, opt)]
    return subprocess.call(argv + (["--json"] if args.json else []))


def helper_main(argv: list[str] | None = None) -> int:
    """``ds01-events-own``: run by sudo, shows the caller's own events only."""
    import argparse
    import pwd

    p = argparse.ArgumentParser(prog="ds01-events-own", description="your own ds01 events")
    _add_filters(p)
    args = p.parse_args(argv)
    if os.geteuid() != 0 or "SUDO_UID" not in os.environ:
        print("ds01-events-own: run it as `ds01 events`", file=sys.stderr)
        return 2
    return _show(args, pwd.getpwuid(int(os.environ["SUDO_UID"])).pw_name)
