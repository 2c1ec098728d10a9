"""Containers in jobs (``ds01 slurm run``, ds01.cluster.containers): which
GPUs Slurm's record gives the job on this node, the CDI devices the deploy
writes for them, and the podman command line built from both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gpu_split import vm_policy

from ds01.cluster import containers
from ds01.cluster.nodes import node_gres
from ds01.gpu.simulated import simulated_layout

FACTS = Path(__file__).resolve().parents[2] / "facts/slurm"
# `scontrol show job -d` (Slurm 22.05) of a batch job on the VM's head.
SHOW_JOB = """\
JobId=41 JobName=wrap
   UserId=lt.researcher(1003) GroupId=lt.researcher(1003) MCS_label=N/A
   Priority=10010 Nice=0 Account=ds01-researcher QOS=ds01-researcher
   JobState=RUNNING Reason=None Dependency=(null)
   NodeList=ds01-test BatchHost=ds01-test
   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=1,mem=32M,node=1,billing=3,gres/gpu=3,gres/gpu:1g.5gb=2,gres/gpu:3g.20gb=1
   JOB_GRES=gpu:3g.20gb:1,gpu:1g.5gb:2
     Nodes=ds01-test CPU_IDs=0 Mem=32 GRES=gpu:3g.20gb:1(IDX:7),gpu:1g.5gb:2(IDX:0-1)
   MinCPUsNode=1 MinMemoryNode=32M MinTmpDiskNode=0
"""


def test_the_job_record_gives_the_owner_and_this_nodes_gres_indexes():
    job = containers.parse_job(SHOW_JOB, "ds01-test")
    assert (job.job, job.user_id, job.gpus) == ("41", 1003, (0, 1, 7))
    assert containers.parse_job(SHOW_JOB, "ds01-node2").gpus == ()  # not on that node


def test_a_host_list_is_expanded():
    text = SHOW_JOB.replace("Nodes=ds01-test CPU", "Nodes=ds01-[test,x] CPU")
    job = containers.parse_job(text, "ds01-test", lambda h: ["ds01-test", "ds01-x"])
    assert job.gpus == (0, 1, 7)


def test_a_record_without_its_owner_is_refused():
    with pytest.raises(ValueError, match="UserId"):
        containers.parse_job(SHOW_JOB.replace("UserId=lt.researcher(1003)", "UserId=?"), "x")


def test_the_cdi_devices_are_numbered_in_slurms_order_not_gres_confs():
    # What slurmd -G printed on the VM's head (tests/facts/slurm/): Slurm sorts
    # the records by type, so the 3g.20gb (gres.conf's first line) is IDX 7.
    listing = json.loads((FACTS / "slurmd_gres.vm_head.json").read_text())["fact"]
    spec = containers.cdi_spec([u["files"] for u in listing])
    assert spec["kind"] == "ds01.slurm/gpu" and spec["cdiVersion"] == "0.5.0"
    assert [d["name"] for d in spec["devices"]] == [str(i) for i in range(8)]
    last = [n["path"] for n in spec["devices"][7]["containerEdits"]["deviceNodes"]]
    assert last == ["/dev/nvidia2", "/dev/nvidia-caps/nvidia-cap282",
                    "/dev/nvidia-caps/nvidia-cap283"]  # fmt: skip
    # the same units as gres.conf is rendered from, in another order
    policy = vm_policy()
    gres = node_gres(policy.cluster.nodes["ds01-test"],
                     simulated_layout(policy.gpu.simulated, policy.site.name))  # fmt: skip
    assert gres[0].type == "3g.20gb"
    assert sorted(g.files for g in gres) == sorted(tuple(u["files"]) for u in listing)


def test_the_command_line_is_built_not_passed_through():
    job = containers.JobOnNode("41", 1003, (0, 3))
    req = containers.RunRequest("me/train:1", ("python", "train.py"), env=("SEED=1",),
                                workdir="/work")  # fmt: skip
    argv = containers.podman_argv(req, job, ["/home/r:/work:rw"], {"0", "1", "2", "3"})
    assert argv == [
        "/usr/bin/podman", "run", "--rm", "--pull=never", "--cgroups=disabled",
        "--cgroupns=host", "--network=host", "--env", "SLURM_JOB_ID=41",
        "--device", "ds01.slurm/gpu=0", "--device", "ds01.slurm/gpu=3",
        "--volume", "/home/r:/work:rw", "--env", "SEED=1", "--workdir", "/work",
        "--", "me/train:1", "python", "train.py",
    ]  # fmt: skip
    # an option in the image's place is the image's name, never podman's
    evil = containers.RunRequest("--privileged", ("sh",))
    assert containers.podman_argv(evil, job, [], {"0", "3"})[-3:] == ["--", "--privileged", "sh"]


def test_a_gpu_missing_from_the_cdi_spec_stops_the_run():
    job = containers.JobOnNode("41", 1003, (5,))
    with pytest.raises(containers.NotInJob, match="not in /etc/cdi"):
        containers.podman_argv(containers.RunRequest("i", ()), job, [], {"0"})


def test_outside_a_job_it_says_so():
    with pytest.raises(containers.NotInJob, match="inside a Slurm job"):
        containers.job_on_this_node({})
