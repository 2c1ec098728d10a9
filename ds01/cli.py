"""The ``ds01`` command. Each area of the package registers its own sub-commands.

Exit codes: 0 success, 1 the work failed (a check found problems, a sync refused
to run), 2 bad usage or an invalid policy file.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ds01 import __version__

# Modules with a ``register(subparsers)`` function, in the order of `ds01 --help`,
# with the commands each registers (a unit test keeps the two equal). A command
# imports only its own module: importing all of them (pydantic models, the
# Prometheus client, the allocator) is most of a command's start-up on a slow CPU.
COMMAND_MODULES = {
    "ds01.config_cli": ("config",),
    "ds01.storage.cli": ("storage", "limits"),
    "ds01.identity.cli": ("users", "admin-guard"),
    "ds01.gpu.cli": ("gpu",),
    "ds01.gpu.usage_cli": ("usage",),
    "ds01.docker.cli": ("docker", "container", "images"),
    "ds01.jobs": ("job",),
    "ds01.backup.cli": ("backup",),
    "ds01.ops.schedule": ("schedule",),
    "ds01.events": ("events",),
    "ds01.ops.maintenance": ("maintenance",),
    "ds01.ops.doctor": ("doctor",),
    "ds01.monitoring.exporter": ("monitoring",),
    "ds01.monitoring.status": ("status",),
    "ds01.cluster.cli": ("slurm",),  # issue 14: acts only with the policy's cluster section
}
MODULE_OF = {cmd: module for module, cmds in COMMAND_MODULES.items() for cmd in cmds}


# How `ds01 --help` groups the commands: a user's first screen shows theirs first.
HELP_GROUPS = (
    ("for everyone", ("status", "limits", "container", "gpu", "usage", "storage", "events")),
    ("for admins", ("users", "config", "images", "admin-guard", "backup", "schedule", "doctor",
                    "monitoring", "slurm")),
    ("run by the system", ("docker", "job", "maintenance")),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` alone (with its module's other commands), or of
    every command, with the grouped help, when ``command`` is None or unknown
    (argparse then names the choices)."""
    parser = argparse.ArgumentParser(
        prog="ds01", description="DS01 shared GPU server tools",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"ds01 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command in MODULE_OF:
        importlib.import_module(MODULE_OF[command]).register(sub)
        return parser
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
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word; an option before it (--help, --version) needs them all.
    command = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(command).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
