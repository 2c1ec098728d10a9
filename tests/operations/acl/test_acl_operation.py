"""Fixture tests of operations.acl (one JSON file per case in this folder)."""

from pathlib import Path

import harness
import pytest

import operations.acl as acl_ops

HERE = Path(__file__).parent


@pytest.mark.parametrize("fixture", harness.fixtures(HERE), ids=lambda p: p.stem)
def test_directory(fixture):
    harness.run_fixture(acl_ops, fixture.stem.split(".")[0], fixture)


def test_mask_is_union_of_group_class():
    assert (
        acl_ops.with_mask({"user:": "rwx", "group:": "r--", "user:a": "-w-", "other:": "---"})[
            "mask:"
        ]
        == "rw-"
    )
    assert "mask:" not in acl_ops.with_mask({"user:": "rwx", "group:": "r-x", "other:": "---"})
