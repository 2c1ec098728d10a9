"""A GPU is Slurm's or the interactive allocator's, never both: the split of
``cluster.nodes.<head>.gpus`` as both sides read it (``NodeGpus.slurm_owns``).

The policy is the VM's as ``tests/run cluster`` converges it (tests/vm/policy.yaml
and tests/vm/cluster.yaml): GPUs 0 and 1 whole, GPUs 2 and 3 in MIG; the
head ds01-test, GPUs 2 and 3 are Slurm's, 0 and 1 interactive (ds01-node2, a
compute-only node, has one GPU in Slurm).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cases import with_cluster

from ds01.cluster.nodes import node_gres, slurm_gpus
from ds01.config import parse_policy
from ds01.gpu.allocator import Allocator, GpuDenied
from ds01.gpu.layout import Process
from ds01.gpu.reconciler import reconcile
from ds01.gpu.simulated import SimulatedBackend, simulated_layout

VM_CLUSTER = Path(__file__).resolve().parents[2] / "vm/cluster.yaml"


def vm_policy(gpus: dict | None = None, controller: str = "ds01-test"):
    spec = yaml.safe_load(VM_CLUSTER.read_text())
    spec["cluster"]["controller"] = controller
    if gpus is not None:
        spec["cluster"]["nodes"]["ds01-test"]["gpus"] = gpus
    return parse_policy(with_cluster(yaml.safe_dump(spec)), "vm+cluster")


def allocator(policy, tmp_path) -> Allocator:
    return Allocator(policy, str(tmp_path / "gpu.sqlite3"), backend=SimulatedBackend(policy),
                     clock=lambda: 1_800_000_000.0)  # fmt: skip


def test_the_allocator_pool_and_gres_conf_split_the_gpus_without_overlap(tmp_path):
    policy = vm_policy()
    layout = simulated_layout(policy.gpu.simulated, policy.site.name)
    alloc = allocator(policy, tmp_path)
    pool = {s.unit.gpu_index for s in alloc.status()}
    slurm = {g.index for g in slurm_gpus(policy.cluster.nodes["ds01-test"], layout)}
    assert pool == {0, 1} and slurm == {2, 3}
    assert pool | slurm == {g.index for g in layout.gpus}


def test_a_mig_request_waits_rather_than_take_a_slurm_slice(tmp_path):
    # The only MIG devices of the VM are on Slurm's GPUs.
    alloc = allocator(vm_policy(), tmp_path)
    with pytest.raises(GpuDenied):
        alloc.assign("c1", "lt.student", "student", kind="1g.5gb")
    a = alloc.assign("c2", "lt.researcher", "researcher", kind="gpu")
    assert [u.gpu_index for u in a.units] in ([0], [1])


def test_gpus_given_to_slurm_later_leave_the_pool(tmp_path):
    no_split = vm_policy(controller="ds01-head")  # the head is no compute node
    before = allocator(no_split, tmp_path)
    assert {s.unit.gpu_index for s in before.status()} == {0, 1, 2, 3}
    before.close()
    after = allocator(vm_policy(), tmp_path)
    after.sync_layout(SimulatedBackend(after.policy).read())
    assert {s.unit.gpu_index for s in after.status()} == {0, 1}


def test_slurm_all_leaves_the_allocator_nothing(tmp_path):
    policy = vm_policy(gpus={"slurm": "all"})
    assert allocator(policy, tmp_path).status() == []
    layout = simulated_layout(policy.gpu.simulated, policy.site.name)
    assert {g.type for g in node_gres(policy.cluster.nodes["ds01-test"], layout)} == {
        "a100", "3g.20gb", "2g.10gb", "1g.5gb"}  # fmt: skip


def test_a_gpu_in_neither_list_stays_interactive(tmp_path):
    # Only a GPU Slurm was given is Slurm's; gres.conf lists GPU 2 alone.
    policy = vm_policy(gpus={"slurm": [2], "interactive": [0]})
    assert {s.unit.gpu_index for s in allocator(policy, tmp_path).status()} == {0, 1, 3}
    layout = simulated_layout(policy.gpu.simulated, policy.site.name)
    assert {g.index for g in slurm_gpus(policy.cluster.nodes["ds01-test"], layout)} == {2}


def test_a_slurm_jobs_process_is_no_foreign_process_to_the_reconciler(tmp_path):
    policy = vm_policy()
    alloc = allocator(policy, tmp_path)
    layout = simulated_layout(policy.gpu.simulated, policy.site.name)
    inst = layout.gpus[2].instances[0]
    inst.processes.append(Process(pid=4242, memory_used=1))
    report = reconcile(alloc, None, layout)
    assert not [p for p in report.problems if "4242" in p], report.problems
