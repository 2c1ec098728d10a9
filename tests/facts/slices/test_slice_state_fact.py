"""Fixture tests of facts.slices (output recorded on the test VM)."""

import json
from pathlib import Path

import pytest

from facts.slices import SliceState


@pytest.mark.parametrize(
    "fixture", sorted(Path(__file__).parent.glob("*.json")), ids=lambda p: p.stem
)
def test_slice_state(fixture):
    spec = json.loads(fixture.read_text())
    assert SliceState().process(spec["output"]) == spec["fact"]


def test_escaped_unit_names_and_unknown_enablement():
    got = SliceState().process(
        [
            "U ds01-student-123456\\x40example.lan.slice active",
            "F 00ff 0 /etc/systemd/system/ds01-old.slice",
        ]
    )
    assert got["units"] == {
        "ds01-student-123456\\x40example.lan.slice": {"active": "active", "enabled": ""}
    }
    assert got["files"]["/etc/systemd/system/ds01-old.slice"] == {
        "sha256": "00ff",
        "managed": False,
    }
