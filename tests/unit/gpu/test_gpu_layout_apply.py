"""The declarative MIG layout: the policy's check against each model's valid
placements, `ds01 gpu layout plan`, and `apply` against the fake NVML state
machine (mode change pending until reset, creation failures, a busy GPU),
with what each failure leaves in the allocator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_pynvml import FakeNvml, model_gpu
from gpu_helpers import Clock

from ds01.config import GpuLayout, PolicyError, parse_policy
from ds01.gpu.allocator import Allocator
from ds01.gpu.mig import MigFailed, MigPending, NvmlPartitioner
from ds01.gpu.nvml import NvmlBackend
from ds01.gpu.profiles import LayoutInvalid, place
from ds01.gpu.repartition import LayoutRefused, apply, describe_plan, plan

REPO = Path(__file__).resolve().parents[3]
TEXT = (REPO / "config/resource-allocation.yaml").read_text()
A40 = "NVIDIA A100-SXM4-40GB"


# -- the policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    "model, profiles, starts",
    [
        (A40, ["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"], [0, 2, 3, 4]),
        (A40, ["4g.20gb", "3g.20gb"], [0, 4]),
        (A40, ["1g.5gb"] * 7, list(range(7))),
        (A40, ["2g.10gb"] * 3 + ["1g.10gb"], [0, 2, 4, 6]),
        ("NVIDIA A100-SXM4-80GB", ["3g.40gb", "3g.40gb"], [0, 4]),
        ("NVIDIA H100 80GB HBM3", ["1g.10gb+me", "1g.20gb", "4g.40gb"], [0, 4, 6]),
        ("NVIDIA H200", ["1g.35gb"] * 4, [0, 2, 4, 6]),
        ("NVIDIA H200", ["7g.141gb"], [0]),
    ],
)
def test_valid_layouts_are_placed_at_valid_starts(model, profiles, starts):
    placed = place(model, profiles)
    assert sorted(p.start for p in placed) == starts
    assert sorted(p.profile.name for p in placed) == sorted(profiles)
    for p in placed:
        assert p.start in p.profile.starts


@pytest.mark.parametrize(
    "model, profiles, says",
    [
        (A40, ["1g.5gb"] * 8, "at most 7 1g.5gb"),
        (A40, ["4g.20gb", "4g.20gb"], "needs 8 compute"),
        (A40, ["1g.5gb+me", "1g.5gb+me"], "at most 1 1g.5gb+me"),
        (A40, ["3g.40gb"], "not a MIG profile of the NVIDIA A100-SXM4-40GB"),
        (A40, ["3g.20gb", "3g.20gb", "1g.5gb"], "needs 7 compute and 9 memory"),
        (A40, ["2g.10gb"] * 3 + ["1g.5gb", "1g.5gb"], "needs 8 compute and 8 memory"),
        ("NVIDIA H200", ["1g.35gb"] * 5, "needs 5 compute and 10 memory"),
        ("NVIDIA T4", ["1g.5gb"], "unknown GPU model"),
    ],
)
def test_impossible_layouts_say_why(model, profiles, says):
    with pytest.raises(LayoutInvalid, match=re.escape(says)):
        place(model, profiles)


def _with_layout(layout_yaml: str) -> str:
    return TEXT.replace("  reconcile_interval: 1m\n", "  reconcile_interval: 1m\n" + layout_yaml, 1)


def test_policy_names_file_line_and_key_of_an_impossible_layout():
    text = _with_layout(
        "  layout:\n"
        f"    - {{gpus: [0], model: {A40}, mig: null}}\n"
        f"    - {{gpus: [1], model: {A40}, mig: [4g.20gb, 4g.20gb]}}\n"
    )
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "p.yaml")
    line = text[: text.index("mig: [4g.20gb")].count("\n") + 1
    assert [str(p) for p in e.value.problems] == [
        f"p.yaml:{line}: gpu.layout[1]: 4g.20gb + 4g.20gb needs 8 compute and 8 memory "
        f"slices; the {A40} has 7 and 8"
    ]


def test_policy_refuses_a_gpu_laid_out_twice():
    text = _with_layout(
        "  layout:\n"
        f"    - {{gpus: [0, 1], model: {A40}, mig: null}}\n"
        f"    - {{gpus: [1], model: {A40}, mig: [7g.40gb]}}\n"
    )
    with pytest.raises(PolicyError, match=r"GPU 1 is already laid out by layout\[0\]"):
        parse_policy(text, "p.yaml")


# -- plan and apply against the fake NVML ---------------------------------------


@pytest.fixture
def nv():
    return FakeNvml(
        [
            model_gpu(
                A40, "aaaa", ["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"], mode_needs_reset=False
            ),
            model_gpu(A40, "bbbb", None),  # MIG off; turning it on waits for a reset
        ]  # fmt: skip
    )


def _policy(policy, *entries):
    gpu = policy.gpu.model_copy(
        update={"layout": [GpuLayout.model_validate(e) for e in entries], "backend": "nvml"}
    )
    return policy.model_copy(update={"gpu": gpu})


@pytest.fixture
def make(policy, nv, tmp_path):
    made = []

    def make(*entries):
        a = Allocator(
            _policy(policy, *entries), str(tmp_path / "gpu.sqlite3"),
            backend=NvmlBackend(nv.module()), clock=Clock(),
        )  # fmt: skip
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


def _apply(alloc, nv, **kw):
    lines: list[str] = []
    backend = NvmlBackend(nv.module())
    done = apply(alloc, backend.read, NvmlPartitioner(nv.module()), "root", say=lines.append, **kw)
    return done, lines


def _units(alloc, gpu):
    return [s for s in alloc.status() if s.unit.gpu_index == gpu and s.state != "missing"]


TWO_3G = {"gpus": [0], "model": A40, "mig": ["3g.20gb", "3g.20gb"]}


def test_plan_lists_what_changes_and_who_holds_what_vanishes(make, nv):
    alloc = make(TWO_3G, {"gpus": [1], "model": A40, "mig": None})
    a = alloc.assign("train", "j.doe", "researcher", kind="2g.10gb")
    alloc.allocate("train")
    plans = plan(alloc.policy, NvmlBackend(nv.module()).read(), alloc.status())
    gpu0, gpu1 = plans
    assert gpu0.changes and gpu0.current == ["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"]
    assert len(gpu0.vanishing) == 4
    [held] = [s for s in gpu0.vanishing if s.holder]
    assert (held.holder, held.user, held.unit.uuid) == ("train", "j.doe", a.units[0].uuid)
    assert not gpu1.changes and gpu1.vanishing == []  # already whole
    text = "\n".join(describe_plan(plans))
    assert "MIG 3g.20gb + 2g.10gb + 1g.5gb + 1g.5gb -> MIG 3g.20gb + 3g.20gb" in text
    assert "held by j.doe (container 'train')" in text
    assert "GPU 1 NVIDIA A100-SXM4-40GB: as the policy asks (whole GPU (MIG off))" in text


def test_plan_reports_a_model_mismatch_and_a_missing_gpu(make, nv):
    alloc = make({"gpus": [0], "model": "NVIDIA H200", "mig": ["7g.141gb"]},
                 {"gpus": [5], "model": A40, "mig": None})  # fmt: skip
    p0, p5 = plan(alloc.policy, NvmlBackend(nv.module()).read(), alloc.status())
    assert "GPU 0 is a NVIDIA A100-SXM4-40GB, but the policy lays it out as a NVIDIA H200" in (
        p0.problem
    )
    assert p5.problem.startswith("there is no GPU 5 on this host (2 found")
    with pytest.raises(LayoutRefused, match="nothing was changed"):
        _apply(alloc, nv)
    assert nv.calls == []


def test_apply_in_nvidias_order_then_resumes(make, nv):
    alloc = make(TWO_3G)
    old = {s.unit.uuid for s in _units(alloc, 0)}
    done, _ = _apply(alloc, nv)
    assert [p.index for p in done] == [0]
    kinds = [c.split()[0] for c in nv.calls]
    # every CI before any GI, GIs before the mode, then GI+CI pairs
    assert kinds == ["destroy-ci"] * 4 + ["destroy-gi"] * 4 + ["create-gi", "create-ci"] * 2
    assert [c for c in nv.calls if c.startswith("create-gi")] == [
        "create-gi 0 3g.20gb@0", "create-gi 0 3g.20gb@4"]  # fmt: skip
    units = _units(alloc, 0)
    assert [s.unit.kind for s in units] == ["3g.20gb", "3g.20gb"]
    assert all(s.state == "free" for s in units) and not old & {s.unit.uuid for s in units}
    assert alloc.layout_drains() == {}
    assert alloc.check_invariants() == []
    # a second apply has nothing to do and touches nothing
    nv.calls.clear()
    done, lines = _apply(alloc, nv)
    assert done == [] and nv.calls == [] and "nothing to do" in lines[0]


def test_apply_refuses_while_a_unit_is_held_and_leaves_the_gpu_drained(make, nv):
    alloc = make(TWO_3G)
    a = alloc.assign("train", "j.doe", "researcher", kind="2g.10gb")
    alloc.allocate("train")
    alloc.enqueue("111111", "student", "1g.5gb")
    with pytest.raises(LayoutRefused) as e:
        _apply(alloc, nv)
    msg = str(e.value)
    assert "held by j.doe (container 'train')" in msg
    assert f"sudo ds01 gpu release {a.units[0].uuid}" in msg
    assert "sudo ds01 gpu layout resume" in msg and "now drained" in msg
    assert nv.calls == []  # the hardware was not touched
    units = _units(alloc, 0)
    assert all(s.state in ("drained", "allocated") for s in units)
    # nobody new is given a unit of GPU 0, and the queue waits instead of holding one
    with pytest.raises(Exception, match="no 1g.5gb is free"):
        alloc.assign("new", "222222", "student", kind="1g.5gb")
    assert [q.state for q in alloc.queue()] == ["waiting"]
    # never half-drained: one unit cannot be put back alone
    free = next(s.unit.uuid for s in units if s.state == "drained")
    with pytest.raises(Exception, match="being re-partitioned"):
        alloc.drain(free, by="root", drained=False)
    assert alloc.check_invariants() == []
    # once the holder is gone, apply goes ahead
    alloc.forget("train")
    done, _ = _apply(alloc, nv)
    assert [p.index for p in done] == [0]
    assert [s.state for s in _units(alloc, 0)] == ["free", "free"] or alloc.queue()[0].unit


def test_a_busy_gpu_is_left_unchanged_and_back_in_the_pool(make, nv):
    alloc = make(TWO_3G)
    nv.gpus[0].slots[0].processes = [(4242, 1 << 20)]  # a process outside the allocator
    with pytest.raises(MigFailed) as e:
        _apply(alloc, nv)
    assert not e.value.changed
    assert "MIG device 0 is in use by process(es) 4242" in e.value.message
    assert "nothing on it was changed" in e.value.message
    assert not any(c.startswith("destroy") for c in nv.calls)
    assert "GPU 0 is back in the pool unchanged" in e.value.message
    assert {s.state for s in _units(alloc, 0)} == {"free"}
    assert alloc.layout_drains() == {}


def test_a_failed_creation_leaves_the_gpu_drained_until_an_apply_succeeds(make, nv):
    alloc = make(TWO_3G, {"gpus": [1], "model": A40, "mig": ["7g.40gb"]})
    nv.gpus[1].mode_needs_reset = False
    nv.gpus[0].fail_ci = {"3g.20gb"}
    with pytest.raises(MigFailed) as e:
        _apply(alloc, nv)
    assert e.value.changed
    assert "NVML_ERROR_INSUFFICIENT_RESOURCES" in e.value.message
    assert "GPU 0 stays drained" in e.value.message
    assert "GPU(s) 1 resumed" in e.value.message  # not reached: untouched, back in the pool
    assert set(alloc.layout_drains()) == {0}
    assert _units(alloc, 0) == []  # a GPU instance without its compute instance is no unit
    assert [s.state for s in _units(alloc, 1)] == ["free"]
    # the cause fixed, the next apply finishes GPU 0 (and GPU 1) and resumes it
    nv.gpus[0].fail_ci = set()
    done, _ = _apply(alloc, nv)
    assert [p.index for p in done] == [0, 1]
    assert [s.unit.kind for s in _units(alloc, 0)] == ["3g.20gb", "3g.20gb"]
    assert {s.state for s in _units(alloc, 0) + _units(alloc, 1)} == {"free"}
    assert alloc.layout_drains() == {} and alloc.check_invariants() == []


def test_units_appearing_on_a_gpu_being_repartitioned_stay_drained(make, nv):
    alloc = make(TWO_3G)
    nv.gpus[0].fail_gi = {"3g.20gb"}
    with pytest.raises(MigFailed) as e:
        _apply(alloc, nv)
    assert e.value.changed and set(alloc.layout_drains()) == {0}
    # an admin's `nvidia-smi mig -cgi` (or the reconciler reading midway) adds units:
    nv.gpus[0].fail_gi = set()
    nv.repartition([model_gpu(A40, "aaaa", ["7g.40gb"]), nv.gpus[1]])
    alloc.sync_layout(NvmlBackend(nv.module()).read())
    assert [s.state for s in _units(alloc, 0)] == ["drained"]


def test_a_mode_change_waits_for_a_reset(make, nv):
    alloc = make({"gpus": [1], "model": A40, "mig": ["4g.20gb", "3g.20gb"]})
    with pytest.raises(MigPending) as e:
        _apply(alloc, nv)
    assert "pending a GPU reset" in e.value.message and "nvidia-smi -r -i 1" in e.value.message
    assert "GPU 1 stays drained" in e.value.message
    assert nv.gpus[1].mig == (0, 1)
    assert _units(alloc, 1) == []  # a GPU whose mode is pending offers nothing
    [p] = plan(alloc.policy, NvmlBackend(nv.module()).read(), alloc.status(), alloc.layout_drains())
    assert p.pending and p.drained
    nv.reset(1)
    done, _ = _apply(alloc, nv)
    assert [p.index for p in done] == [1]
    assert [s.unit.kind for s in _units(alloc, 1)] == ["4g.20gb", "3g.20gb"]
    assert alloc.layout_drains() == {}


def test_boot_reapplies_the_layout_over_holds_from_before_the_reboot(make, nv):
    alloc = make(TWO_3G)
    _apply(alloc, nv)
    alloc.assign("train", "j.doe", "researcher", kind="3g.20gb")
    alloc.allocate("train")
    nv.reboot()  # MIG mode survives, instances do not
    assert nv.gpus[0].slots == {} and nv.gpus[0].mig == (1, 1)
    with pytest.raises(LayoutRefused):
        _apply(alloc, nv)  # not at boot: a hold is a hold
    done, lines = _apply(alloc, nv, boot=True)
    assert [p.index for p in done] == [0]
    assert any("before the reboot" in line for line in lines)
    assert [s.unit.kind for s in _units(alloc, 0)] == ["3g.20gb", "3g.20gb"]
    assert alloc.check_invariants() == []


def test_turning_mig_off_destroys_then_disables(make, nv):
    alloc = make({"gpus": [0], "model": A40, "mig": None})
    done, _ = _apply(alloc, nv)
    assert nv.calls[-1] == "set-mig 0 0" and nv.gpus[0].mig == (0, 0)
    assert [s.unit.kind for s in _units(alloc, 0)] == ["gpu"]


# -- a cluster's head: Slurm's GPUs are not the allocator's to repartition -------


def _slurm_has_gpu_1(alloc):
    """The head (the controller) is a compute node whose GPU 1 is Slurm's."""
    from ds01.config import Cluster

    cluster = Cluster.model_validate({
        "name": "lab", "controller": "head",
        "nodes": {"head": {"gpus": {"slurm": [1], "interactive": [0]}}},
        "partitions": {"gpu": {"nodes": ["head"], "default": True}},
    })  # fmt: skip
    alloc.policy = alloc.policy.model_copy(update={"cluster": cluster})
    return alloc


@pytest.mark.parametrize("boot", [False, True])
def test_apply_leaves_a_gpu_slurm_owns_as_it_is(make, nv, boot):
    """GPU 1 would change (MIG off -> 7g.40gb) but is Slurm's: its MIG devices
    are in Slurm's gres.conf and its jobs' hands, which the allocator's drain
    cannot see; the plan says so and apply, at boot too, changes only GPU 0."""
    alloc = _slurm_has_gpu_1(make(TWO_3G, {"gpus": [1], "model": A40, "mig": ["7g.40gb"]}))
    p0, p1 = plan(alloc.policy, NvmlBackend(nv.module()).read(), alloc.status())
    assert p0.changes and not p1.changes and p1.slurm == "cluster.nodes.head.gpus"
    assert p1.to_json()["slurm"] == "cluster.nodes.head.gpus" and p1.placed is None
    text = "\n".join(describe_plan([p0, p1]))
    assert "GPU 1: Slurm's (cluster.nodes.head.gpus), left as it is" in text
    done, lines = _apply(alloc, nv, boot=boot)
    assert [p.index for p in done] == [0] and "GPU(s) 1 are Slurm's: left as they are" in lines
    assert nv.calls and all(c.split()[1] == "0" for c in nv.calls), nv.calls
    assert alloc.layout_drains() == {} and alloc.check_invariants() == []
