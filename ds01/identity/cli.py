"""``ds01 users sync|explain|report|directory`` and ``ds01 admin-guard``.

Exit codes: 0 done; 1 refused or failed (the reason is printed); 2 bad usage
or an invalid policy file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit

_policy_arg = add_policy_option  # the one --policy option of every ds01 command


def register(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="directory users, their roles and homes")
    usub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    s = usub.add_parser("sync", help="make the role groups match the directory (fail-safe)")
    s.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    s.add_argument("--json", action="store_true", help="print the plan as JSON")
    s.add_argument(
        "--accept-drop",
        action="store_true",
        help="accept a drop in directory users beyond max_drop_fraction, once",
    )
    _policy_arg(s)
    s.set_defaults(func=cmd_sync)

    e = usub.add_parser("explain", help="which role a user gets, and why")
    e.add_argument("name", help="the user, as written anywhere (j.doe or j.doe@example.lan)")
    _policy_arg(e)
    e.set_defaults(func=cmd_explain)

    r = usub.add_parser("report", help="staleness report: last login, last change, size")
    fmt = r.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the report as JSON")
    fmt.add_argument("--csv", action="store_true", help="print the report as CSV")
    r.add_argument(
        "--save",
        action="store_true",
        help="also write JSON and CSV into identity.report.dir (cron)",
    )
    _policy_arg(r)
    r.set_defaults(func=cmd_report)

    d = usub.add_parser("directory", help="the directory's view as JSON (for the deploy)")
    _policy_arg(d)
    d.set_defaults(func=cmd_directory)

    g = sub.add_parser("admin-guard", help="make sure the admin account keeps sudo")
    g.add_argument("--check", action="store_true", help="only report; exit 1 if sudo is missing")
    _policy_arg(g)
    g.set_defaults(func=cmd_admin_guard)


def _read_directory(policy: Policy):
    """(view, error): the directory's answer or why there is none."""
    from ds01.identity.directory import DirectoryError, read

    if not policy.identity.directory.enabled:
        return None, None
    try:
        return read(policy.identity.directory), None
    except DirectoryError as e:
        return None, e.message
    except Exception as e:  # a garbled answer can break the LDAP library itself: still unreadable
        return (
            None,
            f"unexpected error reading {policy.identity.directory.uri}: {type(e).__name__}: {e}",
        )


def cmd_directory(args: argparse.Namespace) -> int:
    """The directory as this server reads it, plus what the deploy's plan needs
    from the server: which candidate names resolve through NSS here and the
    user count of the last good sync (the fail-safe's baseline)."""
    from ds01.identity import local, sync

    policy = load_or_exit(args.policy)
    view, error = _read_directory(policy)
    out = view.to_json() if view else {"users": [], "group_parents": {}}
    resolvable = sorted(local.resolvable(sync.candidate_names(view, policy)))
    baseline = sync.State.load(policy.identity.sync.state_file).directory_users
    print(json.dumps({**out, "error": error, "enabled": policy.identity.directory.enabled,
                      "resolvable": resolvable, "baseline": baseline}))  # fmt: skip
    return 1 if error else 0


def cmd_sync(args: argparse.Namespace) -> int:
    from ds01.identity import local, sync

    policy = load_or_exit(args.policy)
    if not args.dry_run and os.geteuid() != 0:
        print("ds01 users sync changes groups and homes: run it as root "
              "(or add --dry-run)", file=sys.stderr)  # fmt: skip
        return 2
    cfg = policy.identity.sync
    with sync.Lock(cfg.state_file) if not args.dry_run else _nolock():
        state = sync.State.load(cfg.state_file)
        view, error = _read_directory(policy)
        current = local.group_members(local.managed_groups(policy))
        names = local.resolvable(sync.candidate_names(view, policy))
        baseline = None if args.accept_drop else state.directory_users
        p = sync.plan(policy, view, error, current, names, state.known, baseline)
        if args.json:
            print(json.dumps(p.to_json()))
        else:
            _print_plan(p, dry=args.dry_run)
        if args.dry_run:
            return 1 if p.refused else 0
        actor = f"sync (uid {os.getuid()}, {os.environ.get('SUDO_USER') or 'cron/root'})"
        out = sync.apply(p, policy, state, sync.ChangeLog(cfg.log_file, actor))
    for user, spec, err in out.hook_failures:
        print(f"new-user handler {spec} failed for {user}: {err}", file=sys.stderr)
    if p.refused:
        print(f"REFUSED to remove anyone: {p.refused}", file=sys.stderr)
        return 1
    return 1 if out.hook_failures else 0


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _print_plan(p, dry: bool) -> None:
    verb = "would" if dry else "will"
    print(f"directory users: {p.directory_users if p.directory_users is not None else '-'}; "
          f"{len(p.changes)} change(s), {len(p.new_users)} new user(s) "
          f"{verb} be set up")  # fmt: skip
    for c in p.changes:
        print(f"  {c}")
    for name, role in p.new_users:
        print(f"  new user {name} ({role})")
    for name in p.unresolved:
        print(f"  not resolvable through NSS (skipped): {name}")
    if p.refused:
        print(f"REFUSED to remove anyone: {p.refused}")
        for c in p.withheld:
            print(f"  withheld: {c}")


def cmd_explain(args: argparse.Namespace) -> int:
    from ds01.identity import local
    from ds01.identity.classify import Classifier, plain
    from ds01.identity.directory import DirectoryError, read_one

    policy = load_or_exit(args.policy)
    c = Classifier(policy)
    account = plain(args.name, policy.identity.directory.domain)
    entry, where = None, "directory off"
    if policy.identity.directory.enabled:
        try:
            view = read_one(policy.identity.directory, account)
            entry = view.users[0] if view.users else None
            where = "found in the directory" if entry else "not in the directory"
        except DirectoryError as e:
            where = f"directory unreadable ({e.message})"
    if where.startswith("directory unreadable"):
        # An ordinary user cannot read the bind secret: say what the server
        # holds, rather than guess from the rules as if every name were in AD.
        return _explain_from_server(args.name, policy, where)
    if entry:
        d = c.classify_user(entry, view)
    else:
        d = c.classify(args.name, in_directory=False)
    now = local.role_of(d.name, policy) if local.resolvable([d.name]) else None
    print(f"{d.name}: {d.role or 'no role'} ({d.rule})")
    print(f"  why: {d.reason}")
    print(f"  directory: {where}")
    if entry:
        groups = ", ".join(entry.member_of) or "-"
        print(f"  groups: {groups}; disabled: {'yes' if entry.disabled else 'no'}")
    print(f"  on this server now: {now or 'no role'}"
          + ("" if now == d.role else "  (differs: the next sync changes it)"))  # fmt: skip
    return 0


def _explain_from_server(name: str, policy, where: str) -> int:
    from ds01.identity import local
    from ds01.identity.classify import linux_name, plain

    spellings = [name, linux_name(plain(name, policy.identity.directory.domain), policy)]
    found = sorted(local.resolvable(spellings))
    if not found:
        print(f"{name}: no account on this server")
        return 0
    role = local.role_of(found[0], policy)
    print(f"{found[0]}: {role or 'no role'} (on this server now: the role groups the last "
          "sync wrote)")  # fmt: skip
    print(f"  directory: not read here ({where.removeprefix('directory unreadable (')[:-1]})")
    print(f"  why: an admin sees it with `sudo ds01 users explain {name}`")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ds01.identity import report

    policy = load_or_exit(args.policy)
    rows = report.build(policy)
    if args.save:
        report.save(rows, policy)
    if args.json:
        print(report.to_json(rows))
    elif args.csv:
        sys.stdout.write(report.to_csv(rows))
    else:
        print(report.to_text(rows, policy))
    return 0


def cmd_admin_guard(args: argparse.Namespace) -> int:
    from ds01.identity import guard

    policy = load_or_exit(args.policy)
    return guard.run(policy, check_only=args.check)
