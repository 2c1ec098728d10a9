"""The simulated backend and the gpu section of the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds01.config import PolicyError, parse_policy
from ds01.gpu.backend import backend_for
from ds01.gpu.layout import Layout, profile_slices
from ds01.gpu.simulated import SimulatedBackend, simulated_layout

REPO = Path(__file__).resolve().parents[3]


def test_layout_from_the_policy(policy):
    layout = SimulatedBackend(policy).read()
    assert [(g.index, g.mig_current, len(g.instances)) for g in layout.gpus] == [
        (0, False, 0),
        (1, False, 0),
        (2, True, 4),
        (3, True, 4),
    ]
    g2 = layout.gpus[2]
    assert [(i.profile, i.placement_start, i.placement_size) for i in g2.instances] == [
        ("3g.20gb", 0, 4),  # placements are in memory slices: 20 GB of 40 is 4 of 8
        ("2g.10gb", 4, 2),
        ("1g.5gb", 6, 1),
        ("1g.5gb", 7, 1),
    ]
    assert sum(u.weight for u in layout.units()) == pytest.approx(4.0)
    # GPU 2's dominant shares 1/2 + 2/7 + 1/7 + 1/7 exceed 1: scaled to one GPU
    assert [u.weight for u in layout.units() if u.gpu_index == 2] == pytest.approx(
        [7 / 15, 4 / 15, 2 / 15, 2 / 15]
    )


def test_uuids_are_stable_and_change_with_the_partitioning(policy):
    a, b = SimulatedBackend(policy).read(), SimulatedBackend(policy).read()
    assert [u.uuid for u in a.units()] == [u.uuid for u in b.units()]
    assert len({u.uuid for u in a.units()}) == 10
    spec = policy.gpu.simulated[3].model_copy(update={"mig": ["7g.40gb"]})
    other = simulated_layout([*policy.gpu.simulated[:3], spec], policy.site.name)
    assert {u.uuid for u in other.units()} & {u.uuid for u in a.units()} == {
        u.uuid for u in a.units() if u.gpu_index < 3
    }


def test_json_round_trip(policy):
    layout = SimulatedBackend(policy).read()
    assert Layout.from_json(layout.to_json()) == layout
    with pytest.raises(ValueError, match="not a GPU layout"):
        Layout.from_json({"gpus": []})


def test_policy_rejects_profiles_that_do_not_fit():
    text = (REPO / "config/resource-allocation.yaml").read_text()
    bad = text.replace("mig: [3g.20gb, 2g.10gb, 1g.5gb, 1g.5gb]", "mig: [7g.40gb, 1g.5gb]")
    with pytest.raises(PolicyError) as e:
        parse_policy(bad, "p.yaml")
    (problem,) = e.value.problems
    assert problem.path == "gpu.simulated[2]" and "need 8 compute slices" in problem.message


@pytest.mark.parametrize("name, slices", [("1g.5gb", 1), ("7g.80gb", 7), ("1c.3g.20gb", 1)])
def test_profile_slices(name, slices):
    assert profile_slices(name) == slices


def test_auto_backend_without_a_driver_is_simulated(policy):
    assert isinstance(backend_for(policy, "auto"), SimulatedBackend)
