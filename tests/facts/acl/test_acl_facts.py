"""Fixture tests of facts.acl: recorded command output -> parsed fact."""

import json
import subprocess
from pathlib import Path

import pytest

from facts.acl import Acl, Nss

HERE = Path(__file__).parent
FACTS = {"acl": Acl, "nss": Nss}


@pytest.mark.parametrize("fixture", sorted(HERE.glob("*.json")), ids=lambda p: p.stem)
def test_fact(fixture):
    spec = json.loads(fixture.read_text())
    fact = FACTS[fixture.stem.split(".")[0]]()
    assert fact.process(spec["output"]) == spec["fact"]
    if "command" in spec:
        assert fact.command(**spec["arg"]).get_raw_value() == spec["command"]


def test_getfacl_garbage_is_an_error():
    with pytest.raises(ValueError, match="unexpected getfacl line"):
        Acl().process(["# file: /x", "user::rwx", "nonsense"])


def test_nss_lookup_is_by_name_not_uid():
    """Run the fact's own command locally: root resolves, '0' (a UID) does not."""
    cmd = Nss().command(
        users=["root", "0", "no.such.user@example.lan"], groups=["root", "nogroup-x"]
    )
    out = subprocess.run(
        cmd.get_raw_value(), shell=True, capture_output=True, text=True, check=True
    )
    got = Nss().process(out.stdout.splitlines())
    assert set(got["users"]) == {"root"}
    assert got["users"]["root"] == {"uid": 0, "gid": 0, "home": "/root", "group": "root",
                                     "shell": got["users"]["root"]["shell"]}  # fmt: skip
    assert got["users"]["root"]["shell"].startswith("/")
    assert set(got["groups"]) == {"root"}
