from pathlib import Path

import pytest

from ds01.config import load_policy

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def policy():
    return load_policy(REPO / "config/resource-allocation.yaml")


@pytest.fixture(scope="session")
def policy_text():
    return (REPO / "config/resource-allocation.yaml").read_text()
