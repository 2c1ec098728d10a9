"""Controller-side helpers shared by the deploys: the package list, the
wheelhouse of the ds01 package, and the one way a deploy schedules a job
(``scheduled_job``, an operation; everything else here touches no host)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
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
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"building the ds01 wheelhouse failed: {' '.join(cmd)}\n{proc.stderr}")


@dataclass(frozen=True)
class Wheelhouse:
    path: Path  # local directory holding every wheel
    ds01_wheel: str  # file name of the ds01 wheel
    ds01_build: str  # sha256 of the ds01 wheel
    deps_build: str  # sha256 over the dependency wheels


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def wheelhouse(python_version: str = "3.11") -> Wheelhouse:
    """Build ``build/wheelhouse/py<version>`` once per run: the ds01 wheel
    (byte-reproducible) and the pinned dependencies for the server's Python."""
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
    ds01 = next(out.glob("ds01-*.whl"))
    digest = hashlib.sha256()
    for whl in sorted(out.glob("*.whl")):
        if whl != ds01:
            digest.update(whl.name.encode() + b"\0" + _sha(whl).encode())
    return Wheelhouse(out, ds01.name, _sha(ds01), digest.hexdigest())


def scheduled_job(policy, key: str, deploy: str, log: str):
    """The cron job of schedule ``key`` (``policy.schedules``): ``/etc/cron.d/ds01-<key>``
    running its command from ``ds01.ops.schedule.CRON_JOBS`` through ``ds01 job run``."""
    from pyinfra.operations import files

    from ds01.names import cron_file
    from ds01.ops.schedule import CRON_JOBS

    command, what = CRON_JOBS[key]
    schedule = getattr(policy.schedules, key)
    return files.template(
        name=f"Cron job {cron_file(key)} ({schedule}): {what}",
        src=str(REPO / "templates/ops/job.cron.j2"), dest=cron_file(key),
        user="root", group="root", mode="0644", deploy=deploy, key=key,
        schedule=schedule, command=command, log=log,
    )  # fmt: skip


def slurm_name(h) -> str:
    """A host's name in Slurm: its inventory data ``slurm_name``, else its
    short host name (inventory.py's DS01_GPU_NODES sets it)."""
    return h.data.get("slurm_name") or h.name.split(".")[0]
