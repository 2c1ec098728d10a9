"""deploys/base.py, from outside: the ds01 package, its command, the policy file."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, as_user

POLICY = "/etc/ds01/resource-allocation.yaml"


def test_venv_holds_ds01(vm):
    venv = vm.file("/opt/ds01/venv/bin/python")
    assert venv.exists
    assert vm.file("/opt/ds01/venv").user == "root"
    out = vm.check_output("/opt/ds01/venv/bin/python -c 'import ds01, pydantic; print(ds01.__version__)'")
    assert out == "0.1.0"


def test_ds01_runs_as_an_ordinary_user(vm):
    r = as_user(vm, "lt.student", "ds01 --version && ds01 config check")
    assert r.rc == 0, r.stderr
    assert "ds01 0.1.0" in r.stdout
    assert f"{POLICY}: OK" in r.stdout


def test_policy_is_root_owned_and_not_world_writable(vm):
    f = vm.file(POLICY)
    assert f.user == "root" and f.group == "root"
    assert f.mode & 0o022 == 0
    assert vm.file("/etc/ds01").mode & 0o022 == 0
    assert f.content_string == (REPO / "tests/vm/policy.yaml").read_text()


def test_ordinary_user_cannot_change_the_install(vm):
    r = as_user(vm, "lt.student", f"touch /opt/ds01/venv/bin/x; echo x >> {POLICY}")
    assert r.rc != 0


def test_invalid_policy_stops_pyinfra_before_any_change(vm, tmp_path):
    """A file with an unknown key, a bad unit and a user in two roles: three
    FILE:LINE errors, non-zero exit, and the VM's policy file untouched."""
    before = vm.file(POLICY).sha256sum
    bad = tmp_path / "bad.yaml"
    text = (REPO / "tests/vm/policy.yaml").read_text()
    text = text.replace("site: {name: DS01-test,", "site: {colour: blue, name: DS01-test,", 1)
    text = text.replace("memory: 256m,", "memory: 256mb,", 1)
    text = text.replace("student: [lt.student, lt.student2]", "student: [lt.student, lt.student2, lt.faculty]")
    bad.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "tests/vm/inventory.py", "deploys/all.py"],
        cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "DS01_POLICY": str(bad)},
    )  # fmt: skip
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{bad}:") and ": " in ln]
    paths = {ln.split(": ")[1] for ln in errors if ln.split(":")[1].isdigit()}
    assert {"site.colour", "roles.student.container.memory"} <= paths, proc.stderr
    assert any("listed in two roles" in ln for ln in errors), proc.stderr
    assert "Starting operation" not in proc.stderr + proc.stdout
    assert vm.file(POLICY).sha256sum == before
