"""``ds01 config check [FILE]``: validate the policy and summarise it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection
from pathlib import Path

from ds01.config import (
    DEFAULT_POLICY_PATH,
    Policy,
    PolicyError,
    account_key,
    line_of,
    load_policy,
    source_lines,
)
from ds01.units import format_duration, format_size


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="the policy file")
    csub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate the policy file and print a summary")
    check.add_argument("file", nargs="?", default=DEFAULT_POLICY_PATH,
                       help="the policy file (default: %(default)s)")  # fmt: skip
    check.set_defaults(func=cmd_check)
    docs = csub.add_parser("docs", help="the policy reference, generated from the model")
    docs.add_argument("-o", "--output", metavar="FILE",
                      help="write it to FILE (e.g. docs/admin/policy-reference.md), "
                           "else print it")  # fmt: skip
    docs.set_defaults(func=cmd_docs)


def add_policy_option(parser: argparse.ArgumentParser) -> None:
    """The one ``--policy`` option of every ds01 command (DS01_POLICY sets its default)."""
    parser.add_argument(
        "--policy", default=os.environ.get("DS01_POLICY", DEFAULT_POLICY_PATH),
        help="policy file (default: $DS01_POLICY, else %(default)s)",
    )  # fmt: skip


def load_or_exit(path: str) -> Policy:
    """Load the policy for a command; on error print every problem and exit 2."""
    try:
        return load_policy(path)
    except PolicyError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        print(f"{path}: {len(e.problems)} problem(s); nothing was changed", file=sys.stderr)
        raise SystemExit(2) from None


def _q(v: float | None, fmt=lambda x: f"{x:g}") -> str:
    return "-" if v is None else fmt(v)


def summary(policy: Policy) -> str:
    ident = policy.identity
    rows = [
        f"{policy.site.name} policy: {len(policy.roles)} roles, "
        f"{sum(len(v) for v in ident.members.values())} explicit members, "
        f"{len(policy.overrides)} overrides, {len(ident.archived)} archived, "
        f"system users: {', '.join(ident.system_users) or '-'}",
        "",
        f"{'role':<11} {'members':>7} {'prio':>4} {'gpu-eq':>6} {'units':>5} {'full':>4} "
        f"{'cpus':>5} {'memory':>7} {'ctrs':>4} {'slice cpu':>9} {'slice mem':>9} {'idle':>5}",
    ]
    for name, r in policy.roles.items():
        rows.append(
            f"{name:<11} {len(ident.members.get(name, [])):>7} {r.priority:>4} "
            f"{_q(r.gpu.quota):>6} {r.gpu.max_units_per_container:>5} "
            f"{'yes' if r.gpu.allow_full_gpu else 'no':>4} {r.container.cpus:>5g} "
            f"{format_size(r.container.memory):>7} {_q(r.lifecycle.max_containers):>4} "
            f"{_q(r.user_slice.cpu_quota, lambda x: f'{x}%'):>9} "
            f"{_q(r.user_slice.memory_max, format_size):>9} "
            f"{_q(r.lifecycle.idle_timeout, format_duration):>5}"
        )
    areas = ", ".join(
        f"{n} ({a.kind}, {a.link or a.path})" for n, a in policy.storage.areas.items()
    )
    gpus = policy.gpu.simulated
    rows += [
        "",
        f"default role: {ident.default_role}; naming rules: {len(ident.naming_rules)}; "
        f"directory: {ident.directory.uri if ident.directory.enabled else 'off'}",
        f"areas: {areas}",
        f"gpu backend: {policy.gpu.backend} (simulated: {len(gpus)} GPUs, "
        f"{sum(1 for g in gpus if g.mig)} in MIG)",
    ]
    return "\n".join(rows)


def unknown_names(policy: Policy, path: str, known: Collection[str]) -> list[str]:
    """Warnings, FILE:LINE: key: ..., for each override and explicit member
    that names nobody the last directory read saw (``known``: its users)."""
    domain = policy.identity.directory.domain
    seen = {account_key(n, domain) for n in known}
    lines = source_lines(Path(path).read_text())
    named = [(("overrides", u), u) for u in policy.overrides]
    named += [
        (("identity", "members", role, i), u)
        for role, users in policy.identity.members.items()
        for i, u in enumerate(users)
    ]
    return [
        f"{path}:{line_of(lines, loc)}: {'.'.join(map(str, loc[:3]))}: warning: '{user}' "
        "names nobody in the last directory read (a typo, or someone who left?)"
        for loc, user in named
        if account_key(user, domain) not in seen
    ]


def cmd_check(args: argparse.Namespace) -> int:
    policy = load_or_exit(args.file)
    print(summary(policy))
    from ds01.identity.sync import State

    state = State.load(policy.identity.sync.state_file)
    if state.known:
        for warning in unknown_names(policy, args.file, state.known):
            print(warning, file=sys.stderr)
    else:
        print(f"(no directory read in {policy.identity.sync.state_file}: "
              "names in overrides and members not checked)")  # fmt: skip
    print(f"\n{args.file}: OK")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from ds01 import policy_docs

    if args.output is None:
        sys.stdout.write(policy_docs.render())
    elif policy_docs.write(args.output):
        print(f"{args.output}: written")
    else:
        print(f"{args.output}: up to date")
    return 0
