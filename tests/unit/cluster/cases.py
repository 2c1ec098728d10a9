"""Cluster policies for the tests: the VM's policy with a ``cluster`` section,
and node facts whose GPU layouts come from the simulated backend."""

from __future__ import annotations

from pathlib import Path

import yaml

from ds01.cluster.nodes import NodeFacts
from ds01.config import Policy, SimulatedGpu, parse_policy
from ds01.gpu.simulated import simulated_layout

HERE = Path(__file__).parent
BASE = HERE.parent.parent / "vm/policy.yaml"


def with_cluster(cluster_yaml: str) -> str:
    """The VM policy's text with ``cluster_yaml`` (a top-level block) appended."""
    return BASE.read_text().rstrip("\n") + "\n" + cluster_yaml


def case(name: str) -> tuple[Policy, dict[str, NodeFacts]]:
    spec = yaml.safe_load((HERE / f"{name}.yaml").read_text())
    policy = parse_policy(with_cluster(yaml.safe_dump({"cluster": spec["cluster"]})), name)
    facts = {}
    for node, f in spec["facts"].items():
        gpus = [SimulatedGpu.model_validate(g) for g in f["gpus"]]
        facts[node] = NodeFacts(
            cpus=f["cpus"], sockets=f["sockets"], cores_per_socket=f["cores_per_socket"],
            threads_per_core=f["threads_per_core"], memory_mib=f["memory_mib"],
            layout=simulated_layout(gpus, site=node), nvml_plugin=f["nvml_plugin"],
        )  # fmt: skip
    return policy, facts

