"""``ds01 usage``: GPU-equivalent hours, idle hours and queue waits from the
allocator's ledger (:mod:`ds01.gpu.usage`).

    ds01 usage [--user U] [--since DATE] [--until DATE] [--by user|role|unit] [--json|--csv]
    ds01 usage --report DIR        (root; cron, monthly: last month into DIR)

The ledger is in root's database: an ordinary user's ``ds01 usage`` re-runs
itself through sudo (/etc/sudoers.d/ds01-gpu-queue allows it) and shows that
user's rows and everyone's totals; root and the admin role see every row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

from ds01.config import DEFAULT_POLICY_PATH
from ds01.gpu.usage import BY, last_month, parse_date, report

DS01 = "/usr/local/bin/ds01"  # the path the sudoers rule names
ADMIN_ROLE = "admin"


def register(sub: argparse._SubParsersAction) -> None:
    from ds01.config_cli import add_policy_option

    p = sub.add_parser(
        "usage", help="GPU hours, idle hours and queue waits (yours, or all: admins)"
    )
    add_policy_option(p)
    p.add_argument("--user", help="one user's rows (admins; others see only their own)")
    p.add_argument("--since", type=_date, help="from this date, UTC (default: this month's 1st)")
    p.add_argument("--until", type=_date, help="to this date, UTC (default: now)")
    p.add_argument("--by", choices=BY, default="user")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument(
        "--report", metavar="DIR", help="(root) write last month's report into DIR as CSV and JSON"
    )
    p.set_defaults(func=cmd_usage)


def reports_dir(policy) -> str:
    """Where the monthly report goes (root's; deploys/gpu.py makes it)."""
    return f"{policy.gpu.state_dir}/reports"


def _argv(args) -> list[str]:
    """The request rebuilt from what was parsed (never the raw words) for sudo."""
    out = ["--by", args.by]
    if args.user:
        out += ["--user", args.user]
    for flag, t in (("--since", args.since), ("--until", args.until)):
        if t is not None:
            out += [flag, datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    if args.report:
        out += ["--report", args.report]
    return out + (["--json"] if args.json else ["--csv"] if args.csv else [])


def _date(text: str) -> float:
    try:
        return parse_date(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fail(message: str, code: int = 1) -> int:
    print(f"ds01 usage: {message}", file=sys.stderr)
    return code


def _viewer(policy) -> str | None:
    """Who asks, when they may see only their own rows; None: root or an admin."""
    if not os.environ.get("SUDO_UID"):
        return None  # root itself
    from ds01.gpu.cli import _caller
    from ds01.identity.local import role_of

    user = _caller()
    return None if role_of(user, policy) == ADMIN_ROLE else user


def cmd_usage(args) -> int:
    if os.geteuid() != 0:
        os.execvp("sudo", ["sudo", "-n", DS01, "usage", *_argv(args)])
    if os.environ.get("SUDO_UID") and args.policy != DEFAULT_POLICY_PATH:
        return _fail("--policy cannot be used through sudo", 2)
    from ds01.config_cli import load_or_exit
    from ds01.gpu.allocator import Allocator

    policy = load_or_exit(args.policy or DEFAULT_POLICY_PATH)
    viewer = _viewer(policy)
    if viewer is not None and args.report:
        return _fail("--report is root's (the report holds everyone's rows)", 2)
    if viewer is not None and args.user not in (None, viewer):
        return _fail(
            f"what {args.user} uses is theirs and the admins'; you see your own rows "
            "and everyone's totals",
            2,
        )
    now = time.time()
    if args.report:
        since, until, month = last_month(now)
    else:
        t = datetime.fromtimestamp(now, UTC)
        since = (
            args.since or t.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        )
        until = min(args.until or now, now)
    alloc = Allocator(policy)
    try:
        leases, waits = alloc.ledger(since)
    finally:
        alloc.close()
    rep = report(leases, waits, since, until, args.by, user=args.user, viewer=viewer)
    if args.report:
        for suffix, text in (
            ("csv", rep.to_csv()),
            ("json", json.dumps(rep.to_json(), indent=2) + "\n"),
        ):
            path = _write(args.report, f"gpu-usage-{month}.{suffix}", text)
            print(f"wrote {path}")
    elif args.json:
        print(json.dumps(rep.to_json(), indent=2))
    elif args.csv:
        sys.stdout.write(rep.to_csv())
    else:
        print("\n".join(rep.lines()))
    return 0


def _write(directory: str, name: str, text: str) -> str:
    """Atomically, readable by root alone (the report holds everyone's rows)."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    path = os.path.join(directory, name)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
