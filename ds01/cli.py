"""The ``ds01`` command. Each area of the package registers its own sub-commands.

Exit codes: 0 success, 1 the work failed (a check found problems, a sync refused
to run), 2 bad usage or an invalid policy file.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ds01 import __version__

# Modules with a ``register(subparsers)`` function, in the order of `ds01 --help`.
COMMAND_MODULES = (
    "ds01.config_cli",
    "ds01.storage.cli",
    "ds01.identity.cli",
    "ds01.gpu.cli",
    "ds01.gpu.usage_cli",
    "ds01.docker.cli",
    "ds01.jobs",
    "ds01.backup.cli",
    "ds01.ops.schedule",
    "ds01.events",
    "ds01.ops.maintenance",
    "ds01.ops.doctor",
    "ds01.monitoring.exporter",
    "ds01.monitoring.status",
    "ds01.cluster.cli",  # issue 14: only does something with the policy's cluster section
)


# How `ds01 --help` groups the commands: a user's first screen shows theirs first.
HELP_GROUPS = (
    ("for everyone", ("status", "limits", "container", "gpu", "usage", "storage", "events")),
    ("for admins", ("users", "config", "images", "admin-guard", "backup", "schedule", "doctor",
                    "monitoring", "slurm")),
    ("run by the system", ("docker", "job", "maintenance")),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ds01", description="DS01 shared GPU server tools",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"ds01 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.epilog = _grouped(sub)
    return parser


def _grouped(sub: argparse._SubParsersAction) -> str:
    """The commands' one-line help, grouped by who uses them; the flat list
    argparse would print is left out (argparse has no grouping of its own)."""
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    sub._choices_actions.clear()
    placed = {n for _, names in HELP_GROUPS for n in names}
    groups = [*HELP_GROUPS, ("other", tuple(n for n in helps if n not in placed))]
    out = []
    for title, names in groups:
        names = [n for n in names if n in helps]
        if names:
            out.append(f"commands {title}:")
            out += [f"  {n:<12} {helps[n]}" for n in names]
            out.append("")
    return "\n".join([*out, "`ds01 COMMAND --help` tells more."])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
