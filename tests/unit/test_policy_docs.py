"""The policy reference (docs/admin/policy-reference.md) is generated from the
model and says truthfully what enforces each key."""

import re
from pathlib import Path

import pytest

from ds01 import policy_docs
from ds01.config_cli import cmd_docs

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_is_fresh():
    committed = (ROOT / policy_docs.REFERENCE_PATH).read_text()
    assert committed == policy_docs.render(), (
        f"{policy_docs.REFERENCE_PATH} is stale: run "
        f"`ds01 config docs -o {policy_docs.REFERENCE_PATH}` and commit it"
    )


def test_every_model_field_has_an_enforcer_entry():
    # A new key must say what acts on it (or that nothing does: Info).
    missing = [k.path for k in policy_docs.walk() if k.enforcer is None]
    assert not missing, f"add these to policy_docs.ENFORCERS: {missing}"
    stale = set(policy_docs.ENFORCERS) - set(policy_docs.model_fields())
    assert not stale, f"ENFORCERS names fields the model no longer has: {sorted(stale)}"


@pytest.mark.parametrize("field", sorted(policy_docs.ENFORCERS))
def test_the_enforcer_reads_the_key(field):
    entry = policy_docs.ENFORCERS[field]
    if isinstance(entry, policy_docs.Info):
        return
    path = ROOT / entry.where
    assert path.is_file(), f"{field}: {entry.where} does not exist"
    name = field.split(".")[1]
    assert re.search(rf"\b{name}\b", path.read_text()), (
        f"{field}: {entry.where} no longer mentions '{name}': it cannot enforce it"
    )


def test_every_key_has_a_meaning_type_and_default():
    for k in policy_docs.walk():
        meaning, _ = policy_docs._meaning_and_enforcer(k)
        assert meaning and k.type and k.default, k


def test_types_units_and_defaults_read_as_the_file_writes_them():
    keys = {k.path: k for k in policy_docs.walk()}
    mem = keys["roles.ROLE.container.memory"]
    assert (mem.type, mem.default) == ("size", "required") and "512m" in mem.unit
    hold = keys["docker.service.header_timeout"]
    assert hold.type == "duration" and hold.default == "`10s`"
    assert keys["roles.ROLE.lifecycle.max_runtime"].type == "duration or null"
    assert keys["identity.directory.kind"].type == "`ad` or `rfc2307`"
    assert keys["gpu.bare_metal_roles"].type == "list of name"
    assert keys["storage.areas.AREA.quota"].type == "map name → size"
    assert keys["schedules.container_cleanup"].default == "`20 * * * *`"
    assert keys["identity.sssd.enabled"].default == "`false`"
    assert "gpu.simulated[].serial" in keys


def test_meaning_comes_from_the_fields_comment():
    comments = policy_docs.field_comments(
        "class A(Base):\n"
        "    # above, first line\n"
        "    # and second\n"
        "    x: int\n"
        "    y: str = 'a'  # trailing\n"
        "    z: int  # type: ignore\n"
    )
    assert comments == {"A.x": "above, first line and second", "A.y": "trailing"}


def test_an_info_key_is_never_shown_as_enforced():
    text = policy_docs.render()
    for k in policy_docs.walk():
        if isinstance(k.enforcer, policy_docs.Info):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{k.path}` |"))
            assert row.rstrip(" |").split("| ")[-1].startswith("*not enforced*"), row


def test_a_new_field_without_an_entry_shows_as_unknown(monkeypatch):
    monkeypatch.delitem(policy_docs.ENFORCERS, "Site.cpus")
    assert "| **unknown** |" in policy_docs.render()
    assert any(k.path == "site.cpus" and k.enforcer is None for k in policy_docs.walk())


def test_docs_command_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "ref.md"
    cmd_docs(type("A", (), {"output": str(out)})())
    cmd_docs(type("A", (), {"output": str(out)})())
    assert capsys.readouterr().out.splitlines() == [f"{out}: written", f"{out}: up to date"]
    assert out.read_text() == policy_docs.render()
