"""Fixture tests of facts/groups.py, facts/directory.py, facts/privacy.py:
recorded command output -> parsed fact; the commands also run here for real."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from facts.directory import DirectoryView, SecretSnippet
from facts.groups import GroupMembers, UsersSyncPending
from facts.privacy import Homes
from operations import sssd

HERE = Path(__file__).parent
FACTS = {"group_members": GroupMembers, "directory_view": DirectoryView, "homes": Homes,
         "users_sync_pending": UsersSyncPending, "secret_snippet": SecretSnippet}  # fmt: skip


@pytest.mark.parametrize("fixture", sorted(HERE.glob("*.json")), ids=lambda p: p.stem)
def test_fact(fixture):
    spec = json.loads(fixture.read_text())
    fact = FACTS[fixture.stem.split(".")[0]]()
    if "error" in spec:
        with pytest.raises(ValueError, match=spec["error"]):
            fact.process(spec["output"])
        return
    assert fact.process(spec["output"]) == spec["fact"]
    if "command" in spec:
        assert fact.command(**spec["arg"]).get_raw_value() == spec["command"]
    if "requires" in spec:  # pyinfra returns the default, None, while this is missing
        assert fact.requires_command(**spec["arg"]) == spec["requires"]


def sh(cmd) -> list[str]:
    out = subprocess.run(
        cmd.get_raw_value(), shell=True, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_group_members_command_runs_and_tolerates_missing_groups():
    cmd = GroupMembers().command(groups=["root", "no-such-group-ds01"])
    got = GroupMembers().process(sh(cmd))
    assert set(got) == {"root"} and got["root"]["gid"] == 0


def test_homes_command_runs(tmp_path):
    (tmp_path / "a.b").mkdir(mode=0o750)
    os.chmod(tmp_path / "a.b", 0o750)
    (tmp_path / "lost+found").mkdir()
    got = Homes().process(sh(Homes().command(root=str(tmp_path))))
    assert got == {str(tmp_path / "a.b"): {"mode": "0750", "uid": os.getuid()}}


def test_secret_snippet_is_compared_and_written_on_the_server(tmp_path):
    secret, dest = tmp_path / "bind.secret", tmp_path / "ds01-bind.conf"
    args = dict(secret_file=str(secret), dest=str(dest), section="domain/example.lan",
                key="ldap_default_authtok")  # fmt: skip
    state = lambda: SecretSnippet().process(sh(SecretSnippet().command(**args)))  # noqa: E731
    assert state() == "missing"
    secret.write_text("Read3r-Passw0rd!\n")
    assert state() == "differ"
    write = sssd.secret_snippet._inner

    class H:
        def get_fact(self, cls, **kw):
            return state()

        def noop(self, m):
            raise AssertionError(m)

    from unittest import mock

    with mock.patch.object(sssd, "host", H()):
        cmds = list(write(**args))
    assert "Read3r" not in cmds[0].get_raw_value()  # the secret never appears in a command
    subprocess.run(cmds[0].get_raw_value(), shell=True, check=True)
    assert dest.read_text() == "[domain/example.lan]\nldap_default_authtok = Read3r-Passw0rd!\n"
    assert dest.stat().st_mode & 0o077 == 0
    assert state() == "same"
