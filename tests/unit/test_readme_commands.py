"""The README's deploy commands are the ones CI runs against the fresh VM
(tests/run -> tests/converge.py): if either side changes alone, this fails."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import converge

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
RUN = (REPO / "tests/run").read_text()


def readme_deploy_commands() -> set[str]:
    """Every whole-platform pyinfra command the README shows, inline or indented."""
    inline = re.findall(r"`(pyinfra inventory\.py deploys/all\.py[^`]*)`", README)
    blocks = re.findall(r"^ {4,}(pyinfra inventory\.py deploys/all\.py.*)$", README, re.M)
    return {c.strip() for c in inline + blocks}


def test_readme_shows_exactly_the_commands_ci_runs():
    assert readme_deploy_commands() == {converge.README_PLAN, converge.README_APPLY}


def test_ci_runs_them_as_written_against_the_vm_inventory():
    for command in (converge.README_PLAN, converge.README_APPLY):
        argv = converge.vm_command(command)
        assert Path(argv[0]).name == "pyinfra"
        assert argv[1:] == ["tests/vm/inventory.py", *shlex.split(command)[2:]]
        assert not {"-y", "--yes"} & set(argv)  # the confirmation is answered, not skipped


def test_tests_run_plans_then_converges_with_those_commands():
    calls = [shlex.split(line.strip()) for line in RUN.splitlines()
             if "tests/converge.py" in line and not line.lstrip().startswith("#")]  # fmt: skip
    assert [c[2:] for c in calls] == [["--dry"], ["--runs", "2"]]


def test_results_table_is_read_with_spaces_in_names():
    out = """--> Results:
    Operation                          Hosts   Success   Error   No Change
    Area scratch: /srv/ds01/scratch    1       1         -       -
    Docker engine running              1       -         1       -
    Cron job x (0 3 * * *)             1       -         -       1
    Grand total                        3       1         1       1

--> Disconnecting from hosts...
"""
    assert converge.results(out) == (
        ["Area scratch: /srv/ds01/scratch"], ["Docker engine running"], 3
    )
