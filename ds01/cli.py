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
    "ds01.docker.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ds01", description="DS01 shared GPU server tools")
    parser.add_argument("--version", action="version", version=f"ds01 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
