"""The converged test VM, seen from outside with testinfra.

Run after tests/converge.py, with DS01_VM naming the VM (tests/vm/vm.py up).
A VM that is not up fails the tests: they never skip silently.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DS01_VM_CACHE", REPO / ".cache/vm"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/infra/" in str(item.fspath):
            item.add_marker(pytest.mark.vm)


def vm_port(name: str | None = None) -> str:
    """The SSH port of VM ``name``, by default the one DS01_VM names (``ci``)."""
    name = name or os.environ.get("DS01_VM", "ci")
    port_file = CACHE / "run" / name / "port"
    if not port_file.exists():
        pytest.fail(f"VM {name!r} is not up: run tests/vm/vm.py up --name {name} and converge it")
    return port_file.read_text().strip()


def vm_host(name: str | None = None):
    return testinfra.get_host(
        f"paramiko://root@127.0.0.1:{vm_port(name)}", ssh_identity_file=str(CACHE / "id_ed25519")
    )


@pytest.fixture(scope="session")
def vm():
    return vm_host()


def as_user(host, user: str, cmd: str):
    """Run ``cmd`` as ``user`` (root's environment, no login shell)."""
    return host.run(f"runuser -u {shlex.quote(user)} -- sh -c {shlex.quote(cmd)}")


def as_login(host, user: str, cmd: str):
    """Run ``cmd`` in a login shell of ``user`` (their profile, their PATH)."""
    return host.run(f"runuser -l {shlex.quote(user)} -c {shlex.quote(cmd)}")


def ssh_argv(user: str = "root", vm_name: str | None = None) -> list[str]:
    """An ``ssh`` command line into the VM as ``user``, with the test key.

    For what testinfra's session cannot do: stream a file in, or hold a
    tunnel open the way a user's laptop does (``user`` must have the key in
    their authorized_keys).
    """
    return ["ssh", "-q", "-i", str(CACHE / "id_ed25519"), "-p", vm_port(vm_name),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"{user}@127.0.0.1"]  # fmt: skip
