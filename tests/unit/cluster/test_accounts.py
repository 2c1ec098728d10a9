"""Roles as Slurm accounts and QOS, users as associations: the plan against
what ``sacctmgr show --parsable2 --noheader`` reports (the VM policy's roles)."""

from __future__ import annotations

import pytest
from cases import BASE as VM_POLICY
from cases import case

from ds01.cluster import accounts
from ds01.config import load_policy

USERS = {
    "lt.student": (200101, "student"),
    "lt.student2": (200102, "student"),  # has an override: gpu quota 1.0
    "lt.researcher": (200103, "researcher"),
    "123456@example.lan": (200104, "student"),
}

FRESH = {  # a new slurmdbd: the default QOS, the root account and user
    "cluster": [],
    "qos": ["normal|0||||"],
    "assoc": ["root||normal|normal", "root|root|normal|normal"],
    "user": ["root|root"],
}

CONVERGED = {
    "cluster": ["ds01"],
    "qos": [
        "normal|0||||",
        "ds01-admin|40||||DenyOnLimit",
        "ds01-faculty|30|30-00:00:00|5|cpu=2,mem=1G,billing=28|DenyOnLimit",
        "ds01-researcher|20|14-00:00:00|5|cpu=1,mem=768M,billing=28|DenyOnLimit",
        "ds01-student|10|7-00:00:00|3|cpu=1,mem=512M,billing=14|DenyOnLimit",
        "ds01-uid200102|10|7-00:00:00|3|cpu=1,mem=512M,billing=7|DenyOnLimit",
    ],
    "assoc": [
        "root||normal|normal",
        "root|root|normal|normal",
        "ds01-admin||ds01-admin|ds01-admin",
        "ds01-faculty||ds01-faculty|ds01-faculty",
        "ds01-researcher||ds01-researcher|ds01-researcher",
        "ds01-researcher|lt.researcher|ds01-researcher|ds01-researcher",
        "ds01-student||ds01-student|ds01-student",
        "ds01-student|123456@example.lan|ds01-student|ds01-student",
        "ds01-student|lt.student|ds01-student|ds01-student",
        "ds01-student|lt.student2|ds01-uid200102|ds01-uid200102",
    ],
    "user": [
        "123456@example.lan|ds01-student", "lt.researcher|ds01-researcher",
        "lt.student|ds01-student", "lt.student2|ds01-student", "root|root",
    ],
}  # fmt: skip


def policy():
    p, _ = case("one-node")  # the VM policy's roles with a cluster section
    return p


def plan(sections, users=USERS):
    return [" ".join(c) for c in accounts.plan(
        accounts.desired(policy(), users), accounts.parse_state(sections))]  # fmt: skip


def test_fresh_database_gets_every_account_qos_and_user():
    sm = "sacctmgr -i"
    assert plan(FRESH) == [
        f"{sm} add cluster ds01",
        f"{sm} add qos ds01-admin",
        f"{sm} modify qos where name=ds01-admin set Priority=40 MaxWall=-1 MaxJobsPerUser=-1 "
        "MaxTRESPerUser=billing=-1,cpu=-1,mem=-1 Flags=DenyOnLimit",
        f"{sm} add qos ds01-faculty",
        f"{sm} modify qos where name=ds01-faculty set Priority=30 MaxWall=43200 MaxJobsPerUser=5 "
        "MaxTRESPerUser=billing=28,cpu=2,mem=1024 Flags=DenyOnLimit",
        f"{sm} add qos ds01-researcher",
        f"{sm} modify qos where name=ds01-researcher set Priority=20 MaxWall=20160 "
        "MaxJobsPerUser=5 MaxTRESPerUser=billing=28,cpu=1,mem=768 Flags=DenyOnLimit",
        f"{sm} add qos ds01-student",
        f"{sm} modify qos where name=ds01-student set Priority=10 MaxWall=10080 MaxJobsPerUser=3 "
        "MaxTRESPerUser=billing=14,cpu=1,mem=512 Flags=DenyOnLimit",
        f"{sm} add qos ds01-uid200102",
        f"{sm} modify qos where name=ds01-uid200102 set Priority=10 MaxWall=10080 "
        "MaxJobsPerUser=3 MaxTRESPerUser=billing=7,cpu=1,mem=512 Flags=DenyOnLimit",
        f"{sm} add account ds01-admin Cluster=ds01 Description=Administrators (no GPU quota, "
        "no runtime limit) Organization=ds01 QOS=ds01-admin DefaultQOS=ds01-admin",
        f"{sm} add account ds01-faculty Cluster=ds01 Description=Faculty Organization=ds01 "
        "QOS=ds01-faculty DefaultQOS=ds01-faculty",
        f"{sm} add account ds01-researcher Cluster=ds01 Description=Researchers and PhD "
        "candidates Organization=ds01 QOS=ds01-researcher DefaultQOS=ds01-researcher",
        f"{sm} add account ds01-student Cluster=ds01 Description=Students (default role; "
        "six-digit accounts) Organization=ds01 QOS=ds01-student DefaultQOS=ds01-student",
        f"{sm} add user lt.researcher Account=ds01-researcher DefaultAccount=ds01-researcher "
        "Cluster=ds01 QOS=ds01-researcher DefaultQOS=ds01-researcher",
        f"{sm} add user 123456@example.lan,lt.student Account=ds01-student "
        "DefaultAccount=ds01-student Cluster=ds01 QOS=ds01-student DefaultQOS=ds01-student",
        f"{sm} add user lt.student2 Account=ds01-student DefaultAccount=ds01-student "
        "Cluster=ds01 QOS=ds01-uid200102 DefaultQOS=ds01-uid200102",
    ]


def test_converged_database_needs_nothing():
    assert plan(CONVERGED) == []


def test_a_changed_limit_touches_that_qos_only():
    changed = {**CONVERGED, "qos": [
        q.replace("|10|7-00:00:00|3|", "|10|3-00:00:00|3|") if q.startswith("ds01-student|") else q
        for q in CONVERGED["qos"]]}  # fmt: skip
    assert plan(changed) == [
        "sacctmgr -i modify qos where name=ds01-student set Priority=10 MaxWall=10080 "
        "MaxJobsPerUser=3 MaxTRESPerUser=billing=14,cpu=1,mem=512 Flags=DenyOnLimit"
    ]


def test_a_new_user_costs_one_command_however_many_join():
    many = {f"{300000 + i}@example.lan": (300000 + i, "student") for i in range(500)}
    cmds = plan(CONVERGED, {**USERS, **many})
    assert len(cmds) == 1 and cmds[0].count("@example.lan") == 500


def test_a_promoted_user_gets_the_new_account_before_losing_the_old():
    users = {**USERS, "lt.student": (200101, "researcher")}
    assert plan(CONVERGED, users) == [
        "sacctmgr -i add user lt.student Account=ds01-researcher DefaultAccount=ds01-researcher "
        "Cluster=ds01 QOS=ds01-researcher DefaultQOS=ds01-researcher",
        "sacctmgr -i modify user where name=lt.student set DefaultAccount=ds01-researcher",
        "sacctmgr -i delete user where name=lt.student account=ds01-student cluster=ds01",
    ]


def test_a_removed_user_leaves_ds01s_accounts_only_and_their_override_qos_goes():
    users = {k: v for k, v in USERS.items() if k != "lt.student2"}
    foreign = {**CONVERGED, "assoc": [*CONVERGED["assoc"], "physics|lt.student2|normal|normal"]}
    assert plan(foreign, users) == [
        "sacctmgr -i delete user where name=lt.student2 account=ds01-student cluster=ds01",
        "sacctmgr -i delete qos name=ds01-uid200102",
    ]


def test_an_override_added_later_moves_the_user_to_their_own_qos():
    pol = load_policy(VM_POLICY)
    assert pol.override_for("lt.student2") is not None
    edited = {**CONVERGED, "assoc": [
        a.replace("ds01-uid200102|ds01-uid200102", "ds01-student|ds01-student")
        for a in CONVERGED["assoc"]]}  # fmt: skip
    assert plan(edited) == [
        "sacctmgr -i modify user where name=lt.student2 account=ds01-student cluster=ds01 "
        "set QOS=ds01-uid200102 DefaultQOS=ds01-uid200102"
    ]


@pytest.mark.parametrize("text, minutes", [
    ("7-00:00:00", 10080), ("01:00:00", 60), ("30:00", 30), ("1-02:03:00", 1563),
    ("", accounts.UNSET), ("00:00:30", 1),
])  # fmt: skip
def test_sacctmgr_durations(text, minutes):
    assert accounts.parse_minutes(text) == minutes


def test_sacctmgr_tres_in_any_memory_unit():
    assert accounts.parse_tres("cpu=32,mem=64G,billing=14") == {"cpu": 32, "mem": 65536,
                                                                "billing": 14}
    assert accounts.parse_tres("mem=512M,gres/gpu=2") == {"mem": 512, "gres/gpu": 2}
    with pytest.raises(ValueError, match="unexpected TRES value"):
        accounts.parse_tres("mem=lots")


def test_the_desired_state_survives_json():
    d = accounts.desired(policy(), USERS)
    assert accounts.desired_from_json(accounts.desired_to_json(d)) == d
