"""``ds01 backup``: status, snapshots, restore (admins: any path; users: their
own home, through the root helper), and the scheduled run/check/drill."""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import subprocess
import sys

from ds01.backup import restic, run
from ds01.backup.restore import HELPER, Refused, check_snapshot, restore_to
from ds01.config_cli import add_policy_option, load_or_exit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="backups: status, snapshots, restore")
    bsub = p.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    for name, helptext, func in (
        ("status", "last backup, check and restore drill", _status),
        ("snapshots", "the repository's snapshots (admins)", _snapshots),
        ("run", "back up now (what the schedule runs; admins)", _run),
        ("check", "restic check with a data subset (admins)", _check),
        ("drill", "restore a sample of the latest snapshot and compare (admins)", _drill),
        ("init", "create the password file and repository if absent (the deploy runs it)", _init),
    ):
        q = bsub.add_parser(name, help=helptext)
        add_policy_option(q)
        q.set_defaults(func=func)
        if name == "init":
            q.add_argument("--check", action="store_true",
                           help="only say whether it is ready (exit 0) or not (exit 1)")
        if name == "status":
            q.add_argument("--json", action="store_true")
    q = bsub.add_parser("restore", help="restore files: yours into your home; admins anywhere")
    add_policy_option(q)
    q.add_argument("paths", nargs="+", metavar="PATH")
    q.add_argument("--snapshot", default="latest", help="snapshot id (default: latest)")
    q.add_argument("--target", help="admins: restore under this directory (full paths kept)")
    q.add_argument("--overwrite", action="store_true", help="users: replace existing files")
    q.set_defaults(func=_restore)


def _policy(args):
    policy = load_or_exit(args.policy)
    if policy.backup is None:
        print("ds01 backup: the policy has no backup section", file=sys.stderr)
        raise SystemExit(2)
    return policy


def _when(t) -> str:
    if not t:
        return "never"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _status(args) -> int:
    import json

    status = run.read_status()
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    b = status.get("backup", {})
    print(f"backup:  last success {_when(b.get('last_success'))}; last run "
          f"{b.get('last_result', 'never')} {_when(b.get('finished'))}")  # fmt: skip
    if b.get("snapshot_id"):
        print(f"         snapshot {b['snapshot_id'][:8]}: {b.get('files')} files, "
              f"{b.get('bytes')} bytes, {b.get('data_added')} bytes added, {b.get('duration')}s")
    for name in ("check", "drill"):
        s = status.get(name, {})
        print(f"{name + ':':<8} last success {_when(s.get('last_success'))}; last run "
              f"{s.get('last_result', 'never')} {_when(s.get('finished'))}")  # fmt: skip
        for problem in s.get("problems", []) + s.get("errors", []):
            print(f"         {problem}")
    return 0 if b.get("last_result", "ok") == "ok" else 1


def _snapshots(args) -> int:
    policy = _policy(args)
    proc = restic.call(policy, [restic.RESTIC, "snapshots", "--json"])
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr, end="")
        return proc.returncode
    for s in restic.parse_snapshots(proc.stdout):
        print(f"{s.short_id}  {s.time[:19].replace('T', ' ')}  {','.join(s.tags)}  "
              f"{len(s.paths)} paths")
    return 0


def _locked(func, args) -> int:
    try:
        return func(_policy(args))
    except run.Busy as e:
        print(f"ds01 backup: {e}; not started", file=sys.stderr)
        return 75


def _run(args) -> int:
    return _locked(run.backup, args)


def _check(args) -> int:
    return _locked(run.check, args)


def _drill(args) -> int:
    return _locked(run.drill, args)


def _init(args) -> int:
    """Password file first (random, root 0600; keep a copy off the server),
    then ``restic init`` only when ``restic cat config`` finds no repository."""
    policy = _policy(args)
    b = policy.backup
    has_password = os.path.exists(b.password_file)
    exists = has_password and restic.call(policy, [restic.RESTIC, "cat", "config"]).returncode == 0
    if args.check:
        print("ready" if exists else "absent")
        return 0 if exists else 1
    if exists:
        return 0
    if not has_password:
        os.makedirs(os.path.dirname(b.password_file), mode=0o700, exist_ok=True)
        fd = os.open(b.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        print(f"created {b.password_file}: keep a copy off this server, the backups need it")
    proc = restic.call(policy, [restic.RESTIC, "init"])
    out = sys.stdout if proc.returncode == 0 else sys.stderr
    print(proc.stdout or proc.stderr, end="", file=out)
    return proc.returncode


def _restore(args) -> int:
    try:
        check_snapshot(args.snapshot)
    except Refused as e:
        print(f"ds01 backup restore: {e}", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        if not args.target:
            print("ds01 backup restore: as root, give --target DIR (full paths are kept under "
                  "it); users restore into their own home", file=sys.stderr)  # fmt: skip
            return 2
        return restore_to(_policy(args), args.snapshot, [os.path.abspath(p) for p in args.paths],
                          args.target)  # fmt: skip
    if args.target:
        print("ds01 backup restore: --target is for admins (root); yours go back into your home",
              file=sys.stderr)  # fmt: skip
        return 2
    argv = ["sudo", "-n", HELPER, "--snapshot", args.snapshot, "--cwd", os.getcwd()]
    if args.overwrite:
        argv.append("--overwrite")
    return subprocess.call([*argv, "--", *args.paths])
