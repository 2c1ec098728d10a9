"""The policy's cluster section: optional, and checked like the rest
(``FILE:LINE: key.path: what is wrong``)."""

from __future__ import annotations

import pytest
from cases import BASE, with_cluster

from ds01.config import PolicyError, parse_policy

CLUSTER = """\
cluster:
  name: lab
  controller: head
  nodes:
    gpu01:
      gpus:
        slurm: [0, 1]
        interactive: [1, 2]
    gpu02: {}
  partitions:
    a100: {nodes: [gpu01, gpu03]}
"""


def test_without_cluster_section_the_policy_is_the_single_server_one():
    assert parse_policy(BASE.read_text(), "policy.yaml").cluster is None


def test_a_gpu_in_both_hands_and_an_unknown_node_are_errors_with_lines():
    text = with_cluster(CLUSTER)
    first = len(BASE.read_text().rstrip("\n").splitlines())
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "p.yaml")
    got = [str(p) for p in err.value.problems]
    assert got == [
        f"p.yaml:{first + 8}: cluster.nodes.gpu01.gpus.interactive[0]: GPU 1 of node 'gpu01' "
        "is also Slurm's (gpus.slurm: [0, 1]); a GPU belongs to Slurm or to the interactive "
        "allocator, never both: list Slurm's GPUs explicitly",
        f"p.yaml:{first + 11}: cluster.partitions.a100.nodes[1]: node 'gpu03' is not defined "
        "under cluster.nodes (gpu01, gpu02)",
    ]


def test_interactive_gpus_need_slurms_listed_explicitly():
    text = with_cluster(CLUSTER.replace("slurm: [0, 1]", "slurm: all").replace(
        "interactive: [1, 2]", "interactive: [2]").replace("gpu03", "gpu02"))
    with pytest.raises(PolicyError, match=r"interactive\[0\]: GPU 2 of node 'gpu01' is also"):
        parse_policy(text, "p.yaml")


def test_two_default_partitions_are_refused():
    text = with_cluster(CLUSTER.replace("interactive: [1, 2]", "interactive: [2]").replace(
        "a100: {nodes: [gpu01, gpu03]}",
        "a: {nodes: [gpu01], default: true}\n    b: {nodes: [gpu02], default: true}"))
    with pytest.raises(PolicyError, match="partitions a, b are all default; keep one"):
        parse_policy(text, "p.yaml")
