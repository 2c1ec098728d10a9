"""``ds01 storage purge|usage`` and ``ds01 limits``."""

from __future__ import annotations

import argparse
import os
import pwd
import sys

from ds01.config_cli import add_policy_option, load_or_exit
from ds01.storage import areas, purge, quota, usage


def register(sub: argparse._SubParsersAction) -> None:
    storage = sub.add_parser("storage", help="shared areas: scratch purge, disk usage")
    ssub = storage.add_subparsers(dest="storage_command", metavar="ACTION", required=True)
    p = ssub.add_parser("purge", help="remove scratch files unused for the policy's time (root)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--quiet", action="store_true", help="print nothing unless something failed")
    add_policy_option(p)
    # Tests only: purge as if it were this Unix time (a file's ctime cannot be backdated).
    p.add_argument("--as-of", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_purge)
    u = ssub.add_parser("usage", help="your disk usage against your quota")
    u.add_argument("user", nargs="?", help="another user (root only: what a person uses is theirs)")
    add_policy_option(u)
    u.set_defaults(func=cmd_usage)
    lim = sub.add_parser(
        "limits", help="your limits (CPU, memory, processes, GPUs) and current use"
    )
    lim.add_argument("user", nargs="?", help="another user (root only; default: you)")
    add_policy_option(lim)
    lim.set_defaults(func=cmd_limits)


def _user(name: str | None) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name) if name else pwd.getpwuid(os.getuid())
    except KeyError:
        raise SystemExit(f"ds01: no such user {name!r}") from None


def _private(command: str, pw: pwd.struct_passwd) -> bool:
    """DS01's privacy rule: what is taken is public (GPU units: ``ds01 gpu
    status``); what a person uses (disk, CPU, memory) is theirs and root's.
    True, with the refusal printed, when the caller may not see ``pw``'s."""
    if os.geteuid() == 0 or pw.pw_uid == os.getuid():
        return False
    print(f"ds01 {command}: what {pw.pw_name} uses is theirs; root sees it "
          f"(sudo ds01 {command} {pw.pw_name})", file=sys.stderr)  # fmt: skip
    return True


def cmd_purge(args: argparse.Namespace) -> int:
    policy = load_or_exit(args.policy)
    scratch = [a for a in areas.scratch_areas(policy) if a.purge is not None]
    if not scratch:
        print(
            "ds01 storage purge: the policy has no scratch area with a purge section; nothing to do"
        )
        return 0
    if not args.dry_run and os.geteuid() != 0:
        print("ds01 storage purge: only root purges (try --dry-run)", file=sys.stderr)
        return 2
    area = scratch[0]
    try:
        report = purge.run_locked(area, dry_run=args.dry_run, now=args.as_of)
    except purge.Locked as e:
        print(f"ds01 storage purge: {e}", file=sys.stderr)
        return 1
    if not args.quiet or report.errors:
        verb = "would remove" if args.dry_run else "removed"
        for user, t in sorted(report.users.items()):
            if t.removed_files or t.removed_dirs or t.warned:
                print(
                    f"{user}: {verb} {t.removed_files} files ({purge.human(t.removed_bytes)}), "
                    f"{t.removed_dirs} directories; {len(t.warned)} due soon"
                )
        for line in report.skipped + report.errors:
            print(line, file=sys.stderr)
        print(f"{area.path}: {report.seen} entries seen, {verb} {report.removed_files} files")
    return 1 if report.errors else 0


def cmd_usage(args: argparse.Namespace) -> int:
    policy = load_or_exit(args.policy)
    pw = _user(args.user)
    if _private("storage usage", pw):
        return 2
    area = quota.quota_area(policy)
    if area is None or policy.storage.quota_filesystem is None:
        print("No disk quotas are set on this server.")
        return 0
    use = quota.usage_of(policy, pw.pw_name)
    where = area.link or area.path
    if use is None:
        print(
            f"ds01 storage usage: cannot read the quota of {pw.pw_name} on "
            f"{policy.storage.quota_filesystem}",
            file=sys.stderr,
        )
        return 1
    used = use.used_kib * 1024
    if use.hard_kib:
        limit = use.hard_kib * 1024
        pct = 100 * use.used_kib / use.hard_kib
        print(
            f"{pw.pw_name}: {usage.format_size_human(used)} of {usage.format_size_human(limit)} "
            f"({pct:.0f}%) used on {policy.storage.quota_filesystem} ({where} and the other "
            f"areas there), {use.files} files"
        )
        if pct >= 90:
            print(
                f"Nearly full: writing past the limit fails with 'Disk quota exceeded'. "
                f"Remove what you no longer need from {where}."
            )
    else:
        print(
            f"{pw.pw_name}: {usage.format_size_human(used)} used on "
            f"{policy.storage.quota_filesystem}, {use.files} files (no quota for your role)"
        )
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    policy = load_or_exit(args.policy)
    pw = _user(args.user)
    if _private("limits", pw):
        return 2
    from ds01.identity.local import role_of

    print(usage.limits_report(policy, pw.pw_name, pw.pw_uid, role_of(pw.pw_name, policy)))
    return 0
