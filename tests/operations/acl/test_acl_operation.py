"""Fixture tests of operations.acl (one JSON file per case in this folder)."""

import importlib.util
from pathlib import Path

import pytest

import operations.acl as acl_ops

_spec = importlib.util.spec_from_file_location("_harness", Path(__file__).with_name("_harness.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

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
