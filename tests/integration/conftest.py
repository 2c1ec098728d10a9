"""Shared fixtures of the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def env():
    """A private dockerd with the access service in front of it and no GPU glue,
    one per test module (a module that needs another policy defines its own)."""
    from docker_env import Env

    try:
        e = Env(gpu=False)
    except RuntimeError as err:
        pytest.skip(str(err))
    yield e
    e.close()
