"""The policy model: the shipped files are valid, and every class of mistake is
reported as FILE:LINE: key.path: message, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds01.cli import main
from ds01.config import PolicyError, load_policy, parse_policy

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "config/resource-allocation.yaml"
TEXT = DEFAULT.read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "p.yaml")
    return [str(p) for p in e.value.problems]


def line_of(text: str, needle: str, start: int = 0) -> int:
    return text[: text.index(needle, start)].count("\n") + 1


@pytest.mark.parametrize("path", ["config/resource-allocation.yaml", "tests/vm/policy.yaml"])
def test_shipped_policies_are_valid(path):
    policy = load_policy(REPO / path)
    assert set(policy.roles) == {"student", "researcher", "faculty", "admin"}


def test_default_reproduces_todays_ds01_values():
    p = load_policy(DEFAULT)
    s, r, f, a = (p.roles[n] for n in ("student", "researcher", "faculty", "admin"))
    assert (s.gpu.quota, s.container.cpus, s.container.memory, s.lifecycle.max_containers) == (
        2.0, 32, 32 * 2**30, 3)  # fmt: skip
    assert (r.gpu.quota, r.container.cpus, r.container.memory, r.lifecycle.max_containers) == (
        4.0, 48, 64 * 2**30, 5)  # fmt: skip
    assert (f.gpu.quota, f.container.cpus, f.container.memory) == (4.0, 64, 128 * 2**30)
    assert a.gpu.quota is None and a.lifecycle.max_containers is None
    assert p.identity.default_role == "student"
    assert "204214" in p.identity.members["researcher"]
    assert p.identity.admin_account == "datasciencelab"


def test_three_kinds_of_error_reported_together_with_lines():
    text = TEXT.replace("  cpus: 128 ", "  colour: blue\n  cpus: 128 ", 1)
    text = text.replace("      memory: 32g\n", "      memory: 32gb\n", 1)
    text = text.replace("faculty: [w.prof", "faculty: ['204214', w.prof")
    out = problems(text)
    assert len(out) == 3, out
    assert out[0] == f"p.yaml:{line_of(text, 'colour')}: site.colour: unknown key (check its spelling and where it is nested)"
    assert out[1].startswith(f"p.yaml:{line_of(text, '32gb')}: roles.student.container.memory: bad size '32gb'")
    assert f"p.yaml:{line_of(text, 'researcher: [' + chr(39) + '204214')}:" in out[2] or (
        f"p.yaml:{line_of(text, 'faculty: [' + chr(39) + '204214')}:" in out[2]
    )
    assert "listed in two roles" in out[2]


@pytest.mark.parametrize(
    "old,new,path,message",
    [
        ("      cpus: 32\n", "      cpus: '32g'\n", "roles.student.container.cpus", "valid number, got '32g'"),
        ("gpu_hold_after_stop: 15m", "gpu_hold_after_stop: 0.5h", "roles.student.lifecycle.gpu_hold_after_stop", "'30m' rather than '0.5h'"),
        ("      cpu_quota: 3200%", "      cpu_quota: 19600%", "roles.student.user_slice.cpu_quota", "more than the server has"),
        ("      cpu_quota: 3200%", "      cpu_quota: 3200", "roles.student.user_slice.cpu_quota", "bad percentage"),
        ("      memory: 32g\n", "      memory: 32\n", "roles.student.container.memory", "needs a unit"),
        ("      cpus: 32\n", "      cpus: 40\n", "roles.student.container.cpus", "above the per-user aggregate"),
        ("      memory: 32g\n", "      memory: 128g\n", "roles.student.container.memory", "above the per-user aggregate"),
        ("      memory_high: 60g", "      memory_high: 70g", "roles.student.user_slice.memory_high", "above memory_max"),
        ("default_role: student", "default_role: guest", "identity.default_role", "role 'guest' is not defined"),
        ("      role: researcher\n", "      role: phd\n", "identity.naming_rules[1].role", "role 'phd' is not defined"),
        ("DS01-Admins: admin", "DS01-Admins: root", "identity.directory_groups.DS01-Admins", "not defined"),
        ("  archived: []", "  archived: [w.prof]", "identity.archived[0]", "in role 'faculty'"),
        ("  users_sync: '*/15 * * * *'", "  users_sync: 'every 15 min'", "schedules.users_sync", "5-field cron"),
        ("- pattern: '^\\d{6}$'", "- pattern: '^(\\d{6}$'", "identity.naming_rules[0].pattern", "bad regular expression"),
        ("  state_dir: /var/lib/ds01", "  state_dir: var/lib/ds01", "gpu.state_dir", "absolute path"),
        ("    mode: '0700'", "    mode: 'rwx'", "identity.home.mode", "octal"),
        ("      write: [admin]\n", "      write: [admins]\n", "storage.areas.data.write[0]", "not defined"),
        ("  max_drop_fraction: 0.1", "  max_drop_fraction: 2", "identity.sync.max_drop_fraction", "less than or equal to 1"),
        ("      quota: 3.0\n", "      quota: 3.0\n      colour: red\n", "overrides.c.rivera.gpu.colour", "unknown key"),
        ("    lifecycle:\n      max_containers: 4", "    lifecycle:\n      max_containers: 4\n    container:\n      cpus: 99", "overrides.c.rivera.container.cpus", "above the per-user aggregate"),
    ],
)
def test_each_mistake_names_its_line_and_key(old, new, path, message):
    assert old in TEXT, old
    text = TEXT.replace(old, new, 1)
    out = problems(text)
    hits = [p for p in out if f": {path}: " in p]
    assert hits, out
    assert message in hits[0], hits[0]
    line = int(hits[0].split(":")[1])
    pos = TEXT.index(old)  # the edit starts here in both texts
    changed = text[:pos].count("\n") + 1 + new.rstrip("\n").count("\n")
    assert line == changed, (hits[0], changed)


def test_duplicate_key_is_an_error():
    text = TEXT.replace("  name: DS01\n", "  name: DS01\n  name: DS02\n", 1)
    out = problems(text)
    assert out == [f"p.yaml:{line_of(text, 'DS02')}: site.name: duplicate key (the later one would win)"]


def test_missing_key_is_named():
    out = problems(TEXT.replace("      pids: 4096\n", "", 1))
    assert any("roles.student.container.pids: missing required key 'pids'" in p for p in out), out


def test_yaml_syntax_error_has_a_line():
    out = problems(TEXT.replace("version: 1", "version: [1", 1))
    assert out[0].startswith("p.yaml:") and "(yaml)" in out[0]


def test_override_merges_over_role():
    p = load_policy(DEFAULT)
    eff = p.limits_for("student", "c.rivera")
    assert eff.gpu.quota == 3.0 and eff.lifecycle.max_containers == 4
    assert eff.container == p.roles["student"].container
    assert p.limits_for("student", "j.doe") is p.roles["student"]


def test_cli_check_ok_prints_summary(capsys):
    assert main(["config", "check", str(DEFAULT)]) == 0
    out = capsys.readouterr().out
    assert "student" in out and "researcher" in out and f"{DEFAULT}: OK" in out


def test_cli_check_bad_file_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEXT.replace("      memory: 32g\n", "      memory: 32gb\n", 1))
    with pytest.raises(SystemExit) as e:
        main(["config", "check", str(bad)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line_of(bad.read_text(), '32gb')}: roles.student.container.memory:" in err


def test_cli_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["config", "check", str(tmp_path / "nope.yaml")])
    assert "cannot read" in capsys.readouterr().err


def test_cleartext_directory_is_refused_unless_allowed():
    text = TEXT.replace("    uri: ldaps://dc1.example.lan\n", "    uri: ldap://dc1.example.lan\n", 1)
    out = problems(text)
    assert len(out) == 1 and "cleartext" in out[0], out
    assert out[0].startswith(f"p.yaml:{line_of(text, '  directory:')}: identity.directory"), out
    allowed = text.replace("    start_tls: false", "    allow_cleartext: true\n    start_tls: false", 1)
    assert parse_policy(allowed, "p.yaml").identity.directory.allow_cleartext
    with_tls = text.replace("    start_tls: false", "    start_tls: true", 1)
    assert not parse_policy(with_tls, "p.yaml").identity.directory.allow_cleartext


def test_override_applies_whatever_the_name_style():
    p = load_policy(DEFAULT)  # name_style: qualified; the override is written 'c.rivera'
    assert "c.rivera" in p.overrides
    for name in ("c.rivera", "c.rivera@example.lan", "C.Rivera@EXAMPLE.LAN"):
        assert p.limits_for("student", name).gpu.quota == 3.0, name
    assert p.limits_for("student", "c.rivera@other.org") is p.roles["student"]


def test_check_warns_about_names_nobody_has(tmp_path, capsys):
    from ds01.config_cli import unknown_names

    p = load_policy(DEFAULT)
    known = {"c.rivera@example.lan", "h.admin@example.lan", "204214@example.lan"}
    warnings = unknown_names(p, str(DEFAULT), known)
    assert not any("'c.rivera'" in w or "'h.admin'" in w or "'204214'" in w for w in warnings)
    w = next(w for w in warnings if "'w.prof'" in w)
    assert w.startswith(f"{DEFAULT}:{line_of(TEXT, 'faculty: [w.prof')}: identity.members.faculty:")
    assert "names nobody in the last directory read" in w


def test_cli_check_reads_the_last_directory_read(tmp_path, capsys):
    import json

    state = tmp_path / "state.json"
    state.write_text(json.dumps({"directory_users": 3, "known": {"w.prof@example.lan": "faculty"}}))
    f = tmp_path / "p.yaml"
    f.write_text(TEXT.replace("/var/lib/ds01/identity/state.json", str(state), 1))
    assert main(["config", "check", str(f)]) == 0  # warnings do not fail the check
    err = capsys.readouterr().err
    assert f"{f}:{line_of(TEXT, 'admin: [h.admin]')}: identity.members.admin: warning: 'h.admin'" in err
    assert "'w.prof'" not in err
