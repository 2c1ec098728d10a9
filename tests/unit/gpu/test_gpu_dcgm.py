"""dcgm-exporter's job-mapping files: one per GPU index, a line per container
holding a unit of it (held after a stop too), none for GPUs nobody holds;
rewritten with each decision when ``gpu.dcgm_job_map_dir`` is set."""

from __future__ import annotations

import os

from gpu_helpers import make_allocator, policy_with

from ds01.gpu.dcgm import job_map, write_job_map

S, R = "123456@example.lan", "j.doe@example.lan"


def test_job_map_from_a_snapshot():
    snap = {"units": [
        {"gpu": 2, "state": "allocated", "user": S, "container": "nb"},
        {"gpu": 2, "state": "held", "user": R, "container": "train"},
        {"gpu": 2, "state": "allocated", "user": R, "container": "train"},  # two units, one job
        {"gpu": 0, "state": "free", "user": None, "container": None},
        {"gpu": 1, "state": "assigned", "user": S, "container": "next"},  # not started: not running on it
    ]}  # fmt: skip
    assert job_map(snap) == {"2": [f"{S}/nb", f"{R}/train"]}


def test_the_directory_holds_exactly_the_held_gpus(tmp_path):
    d = tmp_path / "map"
    write_job_map(str(d), {"units": [{"gpu": 0, "state": "allocated", "user": S, "container": "a"},
                                     {"gpu": 1, "state": "allocated", "user": R, "container": "b"}]})  # fmt: skip
    assert sorted(os.listdir(d)) == ["0", "1"] and (d / "1").read_text() == f"{R}/b\n"
    (d / "notes.txt").write_text("an admin's file stays")
    write_job_map(str(d), {"units": [{"gpu": 1, "state": "held", "user": R, "container": "b"}]})
    assert sorted(os.listdir(d)) == ["1", "notes.txt"]


def test_the_allocator_rewrites_it_with_each_decision(policy, clock, tmp_path):
    d = tmp_path / "dcgm"
    alloc = make_allocator(policy_with(policy, dcgm_job_map_dir=str(d)), tmp_path / "a.sqlite3", clock)
    try:
        a = alloc.assign("nb", S, "student", kind="1g.5gb")
        assert os.listdir(d) == []  # assigned, not yet started
        alloc.allocate("nb")
        gpu = str(a.units[0].gpu_index)
        assert os.listdir(d) == [gpu] and (d / gpu).read_text() == f"{S}/nb\n"
        alloc.release("nb", hold=False)
        assert os.listdir(d) == []
    finally:
        alloc.close()
