"""Without a ``cluster`` section DS01 deploys exactly as before: the same
deploy files in the same order, the same inventory groups and hosts."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from cases import BASE, case
from pyinfra import local

from ds01.config import load_policy

REPO = Path(__file__).resolve().parents[3]
SINGLE_SERVER = [
    "deploys/base.py", "deploys/sssd.py", "deploys/groups.py", "deploys/storage.py",
    "deploys/slices.py", "deploys/gpu.py", "deploys/docker.py", "deploys/privacy.py",
    "deploys/users.py", "deploys/backup.py", "deploys/maintenance.py", "deploys/monitoring.py",
]  # fmt: skip


def included(policy, name: str = "ds01") -> list[str]:
    seen: list[str] = []
    data = SimpleNamespace(policy=policy, get=lambda key, default=None: default)
    fake_host = SimpleNamespace(name=name, data=data)
    with mock.patch("pyinfra.host", fake_host), mock.patch.object(local, "include", seen.append):
        runpy.run_path(str(REPO / "deploys/all.py"))
    return seen


def test_without_cluster_all_deploys_the_single_server():
    assert included(load_policy(BASE)) == SINGLE_SERVER


def test_with_cluster_slurm_comes_after_the_users():
    policy, _ = case("one-node")
    assert included(policy) == [*SINGLE_SERVER[:-2], "deploys/slurm.py", *SINGLE_SERVER[-2:]]


def test_a_compute_only_node_gets_the_users_and_slurm():
    policy, _ = case("ten-nodes")
    assert policy.cluster.controller == "head"
    assert included(policy, "a100-01.example.lan") == [
        "deploys/base.py", "deploys/sssd.py", "deploys/groups.py", "deploys/slurm.py"]  # fmt: skip
    assert included(policy, "head") == [*SINGLE_SERVER[:-2], "deploys/slurm.py",
                                        *SINGLE_SERVER[-2:]]  # fmt: skip


def inventory(env: dict) -> dict:
    with mock.patch.dict("os.environ", env, clear=True):
        ns = runpy.run_path(str(REPO / "inventory.py"))
    return {k: v for k, v in ns.items() if isinstance(v, list) and not k.startswith("_")}


def test_single_server_inventory_is_unchanged():
    got = inventory({"DS01_HOST": "ds01.example.lan", "DS01_SSH_USER": "datasciencelab"})
    assert got == {"ds01_servers": [("ds01.example.lan", {
        "ssh_user": "datasciencelab", "ssh_port": 22, "_sudo": True})]}  # fmt: skip


def test_gpu_nodes_group():
    got = inventory({"DS01_HOST": "ds01.example.lan", "DS01_GPU_NODES": "gpu02, gpu03=10.0.0.13"})
    assert got["ds01_gpu_nodes"] == [
        ("gpu02", {"ssh_user": "root", "ssh_port": 22, "_sudo": False, "slurm_name": "gpu02"}),
        ("gpu03", {"ssh_hostname": "10.0.0.13", "ssh_user": "root", "ssh_port": 22,
                   "_sudo": False, "slurm_name": "gpu03"}),
    ]  # fmt: skip
    assert list(got) == ["ds01_servers", "ds01_gpu_nodes"]
