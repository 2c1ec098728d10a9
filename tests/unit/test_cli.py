"""The ``ds01`` command imports only the module of the command it runs."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from ds01.cli import COMMAND_MODULES, build_parser


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_the_table_names_what_each_module_registers(module):
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == COMMAND_MODULES[module]


def test_a_command_imports_only_its_module():
    code = ("import sys; from ds01.cli import main\n"
            "try: main(['gpu', '--help'])\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('ds01.')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out.splitlines()[-1])  # noqa: S307 (our own repr of a list of names)
    assert "ds01.gpu.cli" in loaded
    assert not {"ds01.docker.cli", "ds01.monitoring.exporter", "ds01.backup.cli"} & set(loaded)


def test_help_and_an_unknown_command_see_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser("nosuch").parse_args(["nosuch"])
    err = capsys.readouterr().err
    assert "invalid choice: 'nosuch'" in err and "slurm" in err and "config" in err
    assert "commands for everyone:" in build_parser().format_help()
