"""Run a pyinfra operation against fixture facts and compare the commands it yields.

A fixture is a JSON file: ``args`` (the operation's keyword arguments),
``facts`` (``{"facts.acl.Acl": {"key=value,...": result}}``: the fact's
module-qualified name, then its arguments sorted by name), and either ``commands`` (what it must yield, as strings) or
``exception`` (a substring of the OperationError it must raise). ``noop``
(optional) is a substring of the no-op message it must report; a fixture
with no commands must report one. ``"executing": false`` runs the operation
as pyinfra's change detection does while it prepares (default: executing).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from pyinfra.api import OperationError


class FakeHost:
    def __init__(self, facts: dict, executing: bool = True):
        self.facts = facts
        self.state = SimpleNamespace(is_executing=executing)  # prepare: False
        self.noops: list[str] = []
        self.asked: list[str] = []

    def get_fact(self, cls, **kwargs):
        # Keyed by the fact's module-qualified name, as pyinfra's own tests do
        # ("facts.acl.Acl", "files.File"): two facts may share a class name.
        key = ",".join(f"{k}={_key(v)}" for k, v in sorted(kwargs.items()))
        self.asked.append(f"{cls.name}[{key}]")
        by_args = self.facts[cls.name]
        if key not in by_args:
            raise AssertionError(f"fixture has no {cls.name} fact for {key!r}: {sorted(by_args)}")
        return by_args[key]

    def noop(self, message: str) -> None:
        self.noops.append(message)


def _key(value) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _text(command) -> str:
    if hasattr(command, "get_raw_value"):
        return command.get_raw_value()
    return f"upload {command.dest}: {command.src.getvalue() if hasattr(command.src, 'getvalue') else command.src}"


def run_fact_fixture(fact_cls, path: Path) -> None:
    """A fact fixture: ``args`` (the fact's command arguments), ``command``
    (the shell command it must run), ``output`` (lines of recorded output) and
    ``fact`` (what ``process`` must return)."""
    spec = json.loads(path.read_text())
    fact = fact_cls()
    if "command" in spec:
        command = fact.command(**spec.get("args", {}))
        text = command.get_raw_value() if hasattr(command, "get_raw_value") else command
        assert text == spec["command"], f"{path.name}: command {text!r}"
    assert fact.process(spec["output"]) == spec["fact"], f"{path.name}: fact differs"


def fixtures(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def run_fixture(module, op_name: str, path: Path) -> None:
    spec = json.loads(path.read_text())
    fake = FakeHost(spec.get("facts", {}), executing=spec.get("executing", True))
    op = getattr(module, op_name)._inner
    with mock.patch.object(module, "host", fake):
        if "exception" in spec:
            try:
                list(op(**spec["args"]))
            except OperationError as e:
                assert spec["exception"] in str(e), str(e)
                return
            raise AssertionError(f"{path.name}: expected OperationError {spec['exception']!r}")
        commands = [_text(c) for c in op(**spec["args"])]
    assert commands == spec["commands"], f"{path.name}: got\n" + "\n".join(commands)
    if not commands:
        assert fake.noops, f"{path.name}: yields nothing but reports no no-op"
    if "noop" in spec:
        assert any(spec["noop"] in n for n in fake.noops), fake.noops
    if commands:
        assert not fake.noops, f"{path.name}: reported a no-op although it changed something"
