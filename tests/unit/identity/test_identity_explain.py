"""`ds01 users explain` run by an ordinary user (no bind secret): the truth
about the server's state, not a guess as if every name were a directory account."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import yaml

from ds01.cli import main
from ds01.identity import local

REPO_POLICY = Path(__file__).resolve().parents[3] / "config/resource-allocation.yaml"


def test_explain_without_the_bind_secret_reports_the_server_state(tmp_path, capsys):
    data = yaml.safe_load(REPO_POLICY.read_text())
    data["identity"]["directory"]["bind_password_file"] = str(tmp_path / "not-readable")
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data))
    groups = {"ds01-student": {"123456@example.lan"}, "ds01-researcher": {"j.doe@example.lan"}}
    with (
        mock.patch.object(local, "group_members", lambda gs: {g: groups.get(g, set()) for g in gs}),
        mock.patch.object(local, "resolvable", lambda names: set(names) & {"j.doe@example.lan"}),
    ):
        assert main(["users", "explain", "j.doe", "--policy", str(f)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("j.doe@example.lan: researcher (on this server now")
        assert "differs" not in out and "cannot read the bind password file" in out
        assert main(["users", "explain", "x.nobody", "--policy", str(f)]) == 0
        assert capsys.readouterr().out == "x.nobody: no account on this server\n"
