"""One role resolution (ds01.identity.roles): the deploy (operations/deferred.py
role_users), the server's NSS view (local.role_of: the CLI, the reports, the
GPU allocator) and the docker access service agree on a table of awkward users."""

from __future__ import annotations

from unittest import mock

import pytest

from ds01.docker.service import default_role_of
from ds01.identity import local
from ds01.identity.roles import Roles, account_key
from operations import deferred

GROUPS = {
    "ds01-student": ["123456@example.lan", "204214@example.lan", "lt.student",
                     "x.old@example.lan"],
    "ds01-researcher": ["m.both@example.lan", "c.rivera@example.lan"],
    "ds01-faculty": ["w.prof@example.lan", "m.both@example.lan"],
    "ds01-admin": ["w.prof@example.lan", "datasciencelab"],
}  # fmt: skip
# name on the server -> role
TABLE = {
    "123456@example.lan": "student",
    "lt.student": "student",  # a local account
    "204214@example.lan": "researcher",  # explicit list (plain '204214') beats the student group
    "w.prof@example.lan": "faculty",  # explicit; also in ds01-admin
    "m.both@example.lan": "faculty",  # two groups while a refused sync holds: higher priority
    "c.rivera@example.lan": "faculty",  # listed as 'C.Rivera' (another spelling, plain)
    "h.admin@example.lan": None,  # listed, in no group: the sync (it knows disabled) adds
    "datasciencelab": None,  # a system user, though in ds01-admin
    "x.old@example.lan": None,  # archived, though still in ds01-student
    "n.body@example.lan": None,  # in no group, no list
}


@pytest.fixture
def policy(make_policy):
    return make_policy({
        "members": {"admin": ["h.admin"], "faculty": ["w.prof", "C.Rivera"],
                    "researcher": ["204214"]},
        "archived": ["x.old@EXAMPLE.LAN"],
    })  # fmt: skip


def test_account_key_ignores_style_and_case(policy):
    assert account_key("C.Rivera@Example.LAN", policy) == account_key("c.rivera", policy)
    assert account_key("c.rivera@other.org", policy) == "c.rivera@other.org"


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_component_decides_the_same(policy, name):
    sets = {g: set(m) for g, m in GROUPS.items()}
    with mock.patch.object(local, "group_members", lambda groups: {g: sets[g] for g in groups}):
        server = local.role_of(name, policy)  # ds01 CLI, reports, GPU allocator
        docker = default_role_of(policy)(name)  # the docker access service
    deploy = deploy_roles(policy).get(name)  # storage and slices deploys
    assert Roles(policy).role(name, GROUPS) == server == docker == TABLE[name]
    if name in {u for m in GROUPS.values() for u in m}:
        assert deploy == TABLE[name]


def deploy_roles(policy) -> dict[str, str]:
    """operations/deferred.role_users on the facts a converged server returns."""
    everyone = sorted({u for m in GROUPS.values() for u in m} | set(TABLE))

    class Host:
        def get_fact(self, cls, **kwargs):
            if cls.__name__ == "ManagedGroups":
                return {g: {"gid": 2000 + i, "members": m} for i, (g, m) in
                        enumerate({**GROUPS, "docker-users": []}.items())}  # fmt: skip
            return {"users": {u: {"uid": 200000 + i, "gid": 200000, "home": f"/home/{u}",
                                  "group": "200000"}
                              for i, u in enumerate(everyone) if u in kwargs["users"]}}  # fmt: skip

    with mock.patch.object(deferred, "host", Host()):
        return {u: role for u, (_uid, role) in deferred.role_users(policy).items()}
