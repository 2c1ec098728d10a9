"""The converged test VM, seen from outside with testinfra.

Run after tests/converge.py, with DS01_VM naming the VM (tests/vm/vm.py up).
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


@pytest.fixture(scope="session")
def vm_name() -> str:
    name = os.environ.get("DS01_VM", "ci")
    if not (CACHE / "run" / name / "port").exists():
        pytest.fail(f"VM {name!r} is not up: run tests/vm/vm.py up --name {name} and converge it")
    return name


@pytest.fixture(scope="session")
def vm(vm_name):
    port = (CACHE / "run" / vm_name / "port").read_text().strip()
    return testinfra.get_host(
        f"paramiko://root@127.0.0.1:{port}", ssh_identity_file=str(CACHE / "id_ed25519")
    )


def as_user(host, user: str, cmd: str):
    """Run ``cmd`` through a login shell of ``user`` (their PATH, their slice)."""
    return host.run(f"runuser -l {shlex.quote(user)} -c {shlex.quote(cmd)}")
