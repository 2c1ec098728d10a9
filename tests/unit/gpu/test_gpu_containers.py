"""The containers interface on the GPU side, and the layering it allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ds01.gpu.containers import (
    GPU_LABEL,
    OWNER_LABEL,
    DockerContainers,
    cpu_percent,
    docker_time,
    net_bytes,
)

GPU_PACKAGE = Path(__file__).resolve().parents[3] / "ds01/gpu"


def test_the_gpu_package_never_imports_the_access_service():
    offenders = []
    for path in sorted(GPU_PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("ds01.docker")]
    assert offenders == []


def test_labels_agree_with_the_access_service():
    from ds01.docker import policy

    assert (OWNER_LABEL, GPU_LABEL) == (policy.OWNER, policy.GPU)


def test_docker_times():
    assert docker_time("0001-01-01T00:00:00Z") is None and docker_time(None) is None
    assert docker_time("2027-01-15T08:00:00.123456789Z") == pytest.approx(1_800_000_000.123456)


def test_cpu_percent_and_network_counters():
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 1000,
                           "online_cpus": 4}}  # fmt: skip
    pct, prev = cpu_percent(None, stats)
    assert pct is None and prev == (300, 1000)  # the first reading has nothing to compare
    later = {"cpu_stats": {"cpu_usage": {"total_usage": 400}, "system_cpu_usage": 2000,
                           "online_cpus": 4}}  # fmt: skip
    assert cpu_percent(prev, later)[0] == pytest.approx(40.0)
    assert net_bytes({"networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 7}}}) == 12
    assert net_bytes({}) is None


class FakeApi:
    """The few calls of docker's low-level API that DockerContainers makes."""

    def __init__(self):
        self.stopped = []

    def containers(self, all, filters):
        assert all and filters == {"label": [OWNER_LABEL]}
        return [{"Id": "a1"}, {"Id": "b2"}]

    def inspect_container(self, cid):
        labels = {OWNER_LABEL: "j.doe"}
        if cid == "a1":
            labels[GPU_LABEL] = "MIG-x,MIG-y"
        return {
            "Id": cid,
            "Name": f"/c-{cid}",
            "Config": {"Labels": labels},
            "State": {"Running": cid == "a1", "StartedAt": "2027-01-15T08:00:00Z",
                      "FinishedAt": "0001-01-01T00:00:00Z"},
        }  # fmt: skip

    def stats(self, cid, stream, one_shot):
        assert cid == "a1"  # running GPU containers only
        return {"cpu_stats": {}, "networks": {"eth0": {"rx_bytes": 1, "tx_bytes": 2}}}

    def stop(self, cid, timeout):
        self.stopped.append(cid)


def test_docker_containers_over_the_api():
    api = FakeApi()
    client = type("Client", (), {"api": api})()
    got = {c.name: c for c in DockerContainers(client=client).list()}
    assert got["c-a1"].gpu_uuids == ["MIG-x", "MIG-y"] and got["c-a1"].running
    assert got["c-a1"].user == "j.doe" and got["c-a1"].net_bytes == 3
    assert got["c-a1"].started_at == 1_800_000_000.0 and got["c-a1"].finished_at is None
    assert got["c-b2"].gpu_uuids == [] and got["c-b2"].net_bytes is None
    DockerContainers(client=client).stop("a1", "idle")
    assert api.stopped == ["a1"]
