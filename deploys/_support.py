"""Controller-side helpers shared by the deploys: the package list and the
wheelhouse of the ds01 package. Nothing here touches a host."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGES_FILE = REPO / "deploys/packages.yaml"
REQUIREMENTS_FILE = REPO / "deploys/server-requirements.txt"
WHEELHOUSE = REPO / "build/wheelhouse"
# A fixed timestamp makes the ds01 wheel byte-identical between builds, so an
# unchanged tree uploads nothing and reinstalls nothing.
SOURCE_DATE_EPOCH = "315532800"


def apt_packages(component: str) -> list[str]:
    """The Debian packages a component installs (deploys/packages.yaml)."""
    return list(yaml.safe_load(PACKAGES_FILE.read_text())[component])


def all_apt_packages() -> list[str]:
    return sorted({p for pkgs in yaml.safe_load(PACKAGES_FILE.read_text()).values() for p in pkgs})


def server_requirements() -> list[str]:
    lines = REQUIREMENTS_FILE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"building the ds01 wheelhouse failed: {' '.join(cmd)}\n{proc.stderr}")


@cache
def wheelhouse(python_version: str = "3.11") -> tuple[Path, str]:
    """Build ``build/wheelhouse/py<version>`` once per run; return it and a
    sha256 over its wheels (the build identity the server's venv is stamped with)."""
    out = WHEELHOUSE / f"py{python_version}"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("ds01-*.whl"):
        old.unlink()
    pip = [sys.executable, "-m", "pip"]
    _run(pip + ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)])
    reqs = server_requirements()
    have = {p.name.split("-")[0].lower().replace("_", "-") for p in out.glob("*.whl")}
    if any(r.split("==")[0].lower() not in have for r in reqs):
        _run(pip + [
            "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(out),
            "--platform", "manylinux2014_x86_64", "--implementation", "cp",
            "--python-version", python_version, *reqs,
        ])  # fmt: skip
    digest = hashlib.sha256()
    for whl in sorted(out.glob("*.whl")):
        digest.update(whl.name.encode() + b"\0" + hashlib.sha256(whl.read_bytes()).digest())
    return out, digest.hexdigest()
