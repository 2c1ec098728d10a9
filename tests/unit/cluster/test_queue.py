"""Slurm's queue as ``ds01 status`` and the exporter read it
(ds01/cluster/queue.py), from the real output of Debian 12's Slurm 22.05.8.

The fixtures were captured on the test VM (`tests/run cluster`) with
queue.SQUEUE / queue.SINFO while four jobs were submitted: lt.researcher
running on the 3g.20gb, lt.student2 running on three 2g.10gb and waiting for
a fourth behind their QOS's one CPU, lt.student waiting with an untyped
``--gres=gpu:1`` for CPUs (the node's two were taken); ``squeue-down.err``
is squeue's stderr with slurmctld stopped (exit 1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cases import case

from ds01.cluster import queue
from ds01.config import load_policy

FIX = Path(__file__).parent / "fixtures/queue"
REPO = Path(__file__).resolve().parents[3]


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def runner(squeue: str = "squeue-busy.txt", sinfo: str = "sinfo-busy.txt"):
    calls = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        return fixture(squeue if argv[0] == "squeue" else sinfo)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_jobs_are_parsed_with_what_they_asked_and_hold():
    jobs = {j.id: j for j in queue.parse_jobs(fixture("squeue-busy.txt"))}
    assert sorted(jobs) == ["1", "2", "3", "4"]
    running = jobs["2"]
    assert (running.user, running.account, running.qos, running.state, running.partition) == (
        "lt.student2", "ds01-student", "ds01-uid1002", "RUNNING", "gpu")  # fmt: skip
    assert running.gpus_asked == {"2g.10gb": 3} and running.gpus_allocated == {"2g.10gb": 3}
    assert running.billing == 6  # 3 x 2g.10gb at 2 units each
    waiting = jobs["3"]
    assert (waiting.state, waiting.reason) == ("PENDING", "QOSMaxCpuPerUserLimit")
    assert waiting.gpus_asked == {"2g.10gb": 1} and waiting.gpus_allocated == {}  # holds none
    untyped = jobs["4"]
    assert untyped.gpus_asked == {queue.UNTYPED: 1} and untyped.reason == "Resources"
    assert untyped.billing is None  # Slurm bills it once it knows the type
    assert jobs["1"].gpus_allocated == {"3g.20gb": 1} and jobs["1"].reason == "None"


def test_an_empty_queue_is_no_jobs():
    assert fixture("squeue-empty.txt") == "" and queue.parse_jobs("") == []


@pytest.mark.parametrize(
    "name, used",
    [
        ("sinfo-idle.txt", {"1g.5gb": 0, "2g.10gb": 0, "3g.20gb": 0}),
        ("sinfo-busy.txt", {"1g.5gb": 0, "2g.10gb": 3, "3g.20gb": 1}),
    ],
)
def test_nodes_carry_their_gres_total_and_allocated(name, used):
    (node,) = queue.parse_nodes(fixture(name))
    assert (node.partition, node.node) == ("gpu", "ds01-test")  # the default's "*" dropped
    assert node.total == {"1g.5gb": 3, "2g.10gb": 4, "3g.20gb": 1}  # the VM's gres.conf
    assert node.allocated == used


def test_gres_spellings_of_other_versions_and_sockets():
    # sinfo with socket affinity, an index list with commas, newer squeue's "gres/"
    assert queue.parse_gres("gpu:a100:4(S:0-1),gpu:h100:2(S:1)") == {"a100": 4, "h100": 2}
    assert queue.parse_gres("gpu:a100:2(IDX:0,2),gpu:1g.10gb:0(IDX:N/A)") == {
        "a100": 2, "1g.10gb": 0}  # fmt: skip
    assert queue.parse_gres("gres/gpu:h100=2") == {"h100": 2}
    assert queue.parse_gres("gres:gpu:2") == {queue.UNTYPED: 2}
    assert queue.parse_gres("(null)") == {} and queue.parse_gres("N/A") == {}


def test_partition_sums_and_pending_reasons():
    state = queue.read(runner())
    assert state.up and state.error is None
    use = {(g.partition, g.type): (g.allocated, g.total) for g in queue.gres_use(state.nodes)}
    assert use == {("gpu", "1g.5gb"): (0, 3), ("gpu", "2g.10gb"): (3, 4),
                   ("gpu", "3g.20gb"): (1, 1)}  # fmt: skip
    assert queue.pending_reasons(state.jobs) == {"QOSMaxCpuPerUserLimit": 1, "Resources": 1}
    assert queue.job_counts(state.jobs)[("RUNNING", "gpu", "ds01-uid1002")] == 1


def test_the_commands_ask_for_unpadded_delimited_fields():
    assert queue.SQUEUE[:2] == ["squeue", "--noheader"]
    assert queue.SQUEUE[2].startswith("--Format=JobID:0|,UserName:0|,")
    assert queue.SINFO[2] == "--Node"


def _fails(exc: Exception):
    def run(argv):
        raise exc

    return run


@pytest.mark.parametrize(
    "exc, said",
    [
        (subprocess.CalledProcessError(1, queue.SQUEUE, "", fixture("squeue-down.err")),
         "squeue: slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
        (subprocess.TimeoutExpired(queue.SQUEUE, queue.TIMEOUT),
         "squeue: no answer in 5s"),
        (FileNotFoundError(2, "No such file or directory", "squeue"),
         "squeue: No such file or directory"),
        (subprocess.CalledProcessError(1, queue.SQUEUE, "", ""), "squeue: exit 1"),
    ],
)  # fmt: skip
def test_slurm_not_answering_is_an_error_never_raised(exc, said):
    state = queue.read(_fails(exc))
    assert not state.up and state.error == said and state.jobs == () and state.nodes == ()


def test_sinfo_failing_after_squeue_is_an_error_too():
    def run(argv):
        if argv[0] == "sinfo":
            raise subprocess.CalledProcessError(1, argv, "", "sinfo: error: Invalid user\n")
        return fixture("squeue-busy.txt")

    state = queue.read(run)
    assert state.error == "sinfo: sinfo: error: Invalid user" and state.jobs == ()


def test_without_a_cluster_there_is_no_reader_and_no_squeue(monkeypatch):
    def no_subprocess(*a, **kw):
        raise AssertionError("squeue ran on a single server")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert queue.reader(load_policy(REPO / "config/resource-allocation.yaml")) is None
    policy, _ = case("one-node")
    run = runner()
    read = queue.reader(policy, run)
    assert read is not None and run.calls == []  # asked only when called
    assert len(read().jobs) == 4 and [a[0] for a in run.calls] == ["squeue", "sinfo"]
