"""A policy built from the repository's policy file with identity changes on top."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ds01.config import Policy, parse_policy

REPO_POLICY = Path(__file__).resolve().parents[3] / "config/resource-allocation.yaml"
_BASE = yaml.safe_load(REPO_POLICY.read_text())


def make_policy(identity: dict | None = None, directory: dict | None = None) -> Policy:
    data = copy.deepcopy(_BASE)
    data["identity"].update(identity or {})
    data["identity"]["directory"].update(directory or {})
    return parse_policy(yaml.safe_dump(data), "test-policy.yaml")


@pytest.fixture
def policy() -> Policy:
    return make_policy()


@pytest.fixture(name="make_policy")
def make_policy_fixture():
    return make_policy
