"""Fixture tests of facts.quota (output recorded on the test VM's quota disk)."""

import json
from pathlib import Path

import pytest

from facts.quota import UserQuotas


@pytest.mark.parametrize(
    "fixture", sorted(Path(__file__).parent.glob("*.json")), ids=lambda p: p.stem
)
def test_user_quotas(fixture):
    spec = json.loads(fixture.read_text())
    assert UserQuotas().command(**spec["arg"]).get_raw_value() == spec["command"]
    assert UserQuotas().process(spec["output"]) == spec["fact"]
