"""``ds01 slurm sync`` on the controller: the same plan as the deploy's
operation, sacctmgr's answers read for real from a recorded run."""

from __future__ import annotations

import subprocess

import pytest
from cases import case
from test_accounts import CONVERGED, USERS

from ds01.cluster import cli

ORDER = ["cluster", "qos", "assoc", "user"]


class FakeSacctmgr:
    def __init__(self, sections, fail=None):
        self.sections, self.fail, self.ran = sections, fail, []

    def __call__(self, argv, capture_output, text):
        self.ran.append(argv)
        if self.fail and self.fail in argv:
            return subprocess.CompletedProcess(argv, 1, "", "sacctmgr: error: slurmdbd down")
        if argv[1] == "show":
            key = ORDER[[a.split()[1] for a in cli.accounts.QUERIES.values()].index(argv[2])]
            return subprocess.CompletedProcess(argv, 0, "\n".join(self.sections[key]) + "\n", "")
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def policy(monkeypatch):
    p, _ = case("one-node")
    monkeypatch.setattr(cli, "user_roles", lambda _policy: dict(USERS))
    return p


def test_converged_runs_the_four_queries_only(policy, capsys):
    fake = FakeSacctmgr(CONVERGED)
    assert cli.sync(policy, run=fake) == []
    assert [a[:3] for a in fake.ran] == [["sacctmgr", "show", k] for k in ORDER]
    assert fake.ran[2][3] == "where" and fake.ran[2][4] == "cluster=ds01"


def test_a_new_role_member_is_associated_in_one_run(policy, monkeypatch):
    users = {**USERS, "234567@example.lan": (200105, "student")}
    monkeypatch.setattr(cli, "user_roles", lambda _policy: users)
    fake = FakeSacctmgr(CONVERGED)
    cli.sync(policy, run=fake)
    assert fake.ran[4:] == [[
        "sacctmgr", "-i", "add", "user", "234567@example.lan", "Account=ds01-student",
        "DefaultAccount=ds01-student", "Cluster=ds01", "QOS=ds01-student",
        "DefaultQOS=ds01-student",
    ]]  # fmt: skip


def test_slurmdbd_down_changes_nothing(policy, monkeypatch):
    monkeypatch.setattr(cli, "user_roles", lambda _policy: {})  # would remove everyone
    fake = FakeSacctmgr(CONVERGED, fail="assoc")
    with pytest.raises(RuntimeError, match="slurmdbd down"):
        cli.sync(policy, run=fake)
    assert all(a[1] == "show" for a in fake.ran)


def test_dry_run_prints_and_runs_nothing(policy, monkeypatch, capsys):
    monkeypatch.setattr(cli, "user_roles", lambda _policy: {})
    fake = FakeSacctmgr(CONVERGED)
    got = cli.sync(policy, dry_run=True, run=fake)
    assert got and all(a[1] == "show" for a in fake.ran)
    assert "delete user where name=123456@example.lan" in capsys.readouterr().out
