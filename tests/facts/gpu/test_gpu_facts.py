"""Fixture tests of facts.gpu: recorded probe output -> parsed fact.

Each gpu.<case>.json holds the fact's command, the output recorded on a host
(its "note" says which: the simulated backend, the build machine without a
driver, nvidia-smi's documented format, or the NVML backend over the fake
pynvml; no real NVIDIA GPU was at hand when they were recorded), and the fact
expected from it."""

import json
from pathlib import Path

import pytest

from ds01.gpu.layout import Layout
from facts.gpu import GpuLayout

HERE = Path(__file__).parent
FIXTURES = sorted(HERE.glob("gpu.*.json"))


def load(case: str) -> dict:
    return json.loads((HERE / f"gpu.{case}.json").read_text())


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_fact(fixture):
    spec = json.loads(fixture.read_text())
    assert GpuLayout().command() == spec["command"]
    assert GpuLayout().process(spec["output"]) == spec["fact"]


def units(case: str):
    return Layout.from_json(GpuLayout().process(load(case)["output"])).units()


def test_simulated_a100_units_and_weights():
    got = [(u.gpu_index, u.kind, round(u.weight * 7)) for u in units("simulated_4xa100_two_mig")]
    assert got == [
        (0, "gpu", 7), (1, "gpu", 7),
        (2, "3g.20gb", 3), (2, "2g.10gb", 2), (2, "1g.5gb", 1), (2, "1g.5gb", 1),
        (3, "2g.10gb", 2), (3, "2g.10gb", 2), (3, "2g.10gb", 2), (3, "1g.5gb", 1),
    ]  # fmt: skip


def test_simulated_h100_units():
    got = [(u.gpu_index, u.kind) for u in units("simulated_3xh100")]
    assert got == [(0, "1g.12gb"), (0, "1g.12gb"), (0, "2g.24gb"), (0, "3g.47gb"),
                   (1, "7g.94gb"), (2, "gpu")]  # fmt: skip


def test_nvml_layout_keeps_processes_and_placement():
    fact = GpuLayout().process(load("nvml_fake_pynvml_a100_mig")["output"])
    whole, mig = fact["gpus"]
    assert whole["processes"] == [{"pid": 31337, "memory_used": 3 * 1024**3}]
    assert [(i["profile"], i["placement_start"], i["gi_id"]) for i in mig["instances"]] == [
        ("3g.20gb", 0, 1), ("1g.5gb", 6, 13)]  # fmt: skip


@pytest.mark.parametrize("case", ["nvml_no_driver", "no_ds01_no_nvidia_smi", "unreadable_probe"])
def test_no_gpus_is_an_empty_layout_with_a_reason(case):
    fact = GpuLayout().process(load(case)["output"])
    assert fact["gpus"] == [] and fact["error"]


def test_default_is_the_empty_layout():
    """pyinfra returns default() without calling process() when there is no output."""
    assert GpuLayout.default() == GpuLayout().process([])
    assert GpuLayout.default()["gpus"] == []


def test_nvidia_smi_fallback_mig_modes():
    fact = GpuLayout().process(load("nvidia_smi_fallback")["output"])
    assert [(g["mig_current"], g["mig_pending"]) for g in fact["gpus"]] == [
        (True, True), (False, True), (None, None)]  # fmt: skip
    assert fact["gpus"][0]["memory_total"] == 40 * 1024**3


def test_unexpected_nvidia_smi_line_is_reported():
    fact = GpuLayout().process(["NVIDIA-SMI has failed because it couldn't communicate"])
    assert fact["gpus"] == [] and "unexpected nvidia-smi output" in fact["error"]


def test_nvml_memory_slices_weigh_h200_units():
    """Four 1g.35gb take all 8 memory slices of an H200: one GPU, not 4/7;
    3g.71gb + 4g.71gb (1/2 + 4/7) are scaled to one GPU."""
    got = [
        (u.gpu_index, u.kind, round(u.weight, 4)) for u in units("nvml_fake_pynvml_h200_a100_h100")
    ]
    assert got == [
        (0, "1g.35gb", 0.25), (0, "1g.35gb", 0.25), (0, "1g.35gb", 0.25), (0, "1g.35gb", 0.25),
        (1, "3g.71gb", round(7 / 15, 4)), (1, "4g.71gb", round(8 / 15, 4)),
        (2, "1g.10gb+me", round(1 / 7, 4)), (2, "2g.20gb", round(2 / 7, 4)), (2, "3g.40gb", 0.5),
        (3, "gpu", 1.0),
    ]  # fmt: skip


def test_layout_plan_fact():
    from facts.gpu import GpuLayoutPlan

    fact = GpuLayoutPlan()
    assert fact.command() == "/usr/local/bin/ds01 gpu layout plan --json 2>/dev/null; true"
    assert fact.requires_command() == "/usr/local/bin/ds01"
    out = ['{"at": 1, "backend": "simulated", "gpus": [{"gpu": 3, "changes": true}]}']
    assert fact.process(out) == {
        "at": 1,
        "backend": "simulated",
        "gpus": [{"gpu": 3, "changes": True}],
    }
    assert fact.process(["ds01 gpu: this is an admin command: run it with sudo"]) is None
    assert fact.process([]) is None
