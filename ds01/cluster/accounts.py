"""Roles as Slurm accounts and QOS, users as associations: the plan.

One account and one QOS per role (``ds01.names.slurm_account`` /
``slurm_qos``). The QOS carries the role's limits:

* ``Priority``: the role's priority (PriorityWeightQOS in slurm.conf);
* ``MaxWall``: ``lifecycle.max_runtime``;
* ``MaxJobsPerUser``: ``lifecycle.max_containers`` (a job is the cluster's container);
* ``MaxTRESPerUser``: ``billing`` is the GPU quota in whole MIG slices (see
  ``ds01.cluster.nodes.BILLING_PER_GPU`` for why never fractions), ``cpu`` and
  ``mem`` are the role's ``user_slice`` (everything one user runs, together);
* ``Flags=DenyOnLimit``: a job that alone breaks a limit (a longer ``--time``
  than MaxWall, more GPUs than the quota) is refused at submission; a job that
  fits but not next to the user's running ones waits (reason QOSMax...PerUser).

A user's account comes from ``ds01.identity`` (the role resolution every other
component uses), handed in by the caller. A user with an override in the
policy gets a QOS of their own (``ds01.names.slurm_user_qos``) holding
``Policy.limits_for`` their role and them; everyone else their role's.
:func:`plan` compares that with what ``sacctmgr show`` reports
(``parse_state``) and returns the ``sacctmgr`` commands that close the
difference, nothing when converged. It touches only
DS01's own accounts, QOS and the users in them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ds01.cluster.nodes import quota_billing
from ds01.config import Policy
from ds01.names import SLURM_USER_QOS_PREFIX, slurm_account, slurm_qos, slurm_user_qos

# sacctmgr clears a limit when it is set to -1.
UNSET = -1
TRES_KEYS = ("billing", "cpu", "mem")


@dataclass(frozen=True)
class Qos:
    name: str
    priority: int
    max_wall_minutes: int  # UNSET: none
    max_jobs_per_user: int  # UNSET: none
    max_tres_per_user: dict[str, int]  # billing, cpu, mem (MiB); absent: none
    flags: tuple[str, ...] = ("DenyOnLimit",)


@dataclass(frozen=True)
class Account:
    name: str
    description: str
    qos: str


@dataclass(frozen=True)
class Assoc:
    account: str
    qos: str  # the association's only QOS, and its default


@dataclass(frozen=True)
class Desired:
    cluster: str
    qos: tuple[Qos, ...]
    accounts: tuple[Account, ...]
    users: dict[str, Assoc]


@dataclass
class State:
    """What slurmdbd holds (only what the plan compares)."""

    clusters: set[str] = field(default_factory=set)
    qos: dict[str, Qos] = field(default_factory=dict)
    account_qos: dict[str, tuple[set[str], str]] = field(default_factory=dict)  # QOS, default
    users: dict[str, dict[str, Assoc]] = field(default_factory=dict)  # user -> account -> assoc
    default_account: dict[str, str] = field(default_factory=dict)


def role_qos(policy: Policy, role: str, user: str | None = None, uid: int = 0) -> Qos:
    """The QOS of ``role``; with ``user``, of that user's override (named by ``uid``)."""
    r = policy.limits_for(role, user)
    life, sl = r.lifecycle, r.user_slice
    tres: dict[str, int] = {}
    if r.gpu.quota is not None:
        tres["billing"] = quota_billing(r.gpu.quota)
    if sl.cpu_quota is not None:
        tres["cpu"] = max(1, sl.cpu_quota // 100)  # 3200% is 32 CPUs
    if sl.memory_max is not None:
        tres["mem"] = sl.memory_max // 1024**2
    return Qos(
        name=slurm_user_qos(uid) if user else slurm_qos(role),
        priority=r.priority,
        max_wall_minutes=UNSET if life.max_runtime is None else -(-life.max_runtime // 60),
        max_jobs_per_user=UNSET if life.max_containers is None else life.max_containers,
        max_tres_per_user=tres,
    )


def desired(policy: Policy, user_roles: Mapping[str, tuple[int, str]]) -> Desired:
    """What slurmdbd should hold; ``user_roles`` is user -> (uid, role) from
    ``ds01.identity`` (``operations.deferred.role_users``)."""
    assert policy.cluster is not None
    roles = sorted(policy.roles)
    qos = [role_qos(policy, r) for r in roles]
    users: dict[str, Assoc] = {}
    for user, (uid, role) in sorted(user_roles.items()):
        if role not in policy.roles:
            continue
        if policy.override_for(user) is not None:
            qos.append(role_qos(policy, role, user, uid))
            users[user] = Assoc(slurm_account(role), qos[-1].name)
        else:
            users[user] = Assoc(slurm_account(role), slurm_qos(role))
    return Desired(
        cluster=policy.cluster.name,
        qos=tuple(qos),
        accounts=tuple(
            Account(slurm_account(r), policy.roles[r].description, slurm_qos(r)) for r in roles
        ),
        users=users,
    )


# --------------------------------------------------------------------------
# sacctmgr's answers (--parsable2 --noheader: fields split by '|')
# --------------------------------------------------------------------------

# What parse_state reads: ``sacctmgr <query> --parsable2 --noheader`` per section
# ({cluster} is ``cluster=<ClusterName>``). facts.slurm and the server's
# ``ds01 slurm sync`` run the same queries.
QUERIES = {
    "cluster": "show cluster format=Cluster",
    "qos": "show qos format=Name,Priority,MaxWall,MaxJobsPU,MaxTRESPU,Flags",
    "assoc": "show assoc where {cluster} format=Account,User,QOS,DefaultQOS",
    "user": "show user format=User,DefaultAccount",
}


def parse_minutes(text: str) -> int:
    """``7-00:00:00``, ``01:00:00``, ``30:00``, ``5`` (minutes) -> minutes; ``""`` -> UNSET."""
    if not text:
        return UNSET
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = parts
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


_MEM = {"": 1, "M": 1, "G": 1024, "T": 1024**2, "K": 1 / 1024}


def parse_tres(text: str) -> dict[str, int]:
    """``cpu=32,mem=64G,billing=14`` -> ``{"cpu": 32, "mem": 65536, "billing": 14}``
    (mem in MiB, whatever unit sacctmgr printed)."""
    out: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        m = re.fullmatch(r"(\d+)([KMGT]?)", value)
        if not m:
            raise ValueError(f"unexpected TRES value {item!r}")
        n = int(m.group(1))
        out[key] = int(n * _MEM[m.group(2)]) if key == "mem" else n
    return out


def parse_state(sections: Mapping[str, list[str]]) -> State:
    """``sections`` are the lines of ``sacctmgr show`` for ``cluster``
    (Cluster), ``qos`` (Name,Priority,MaxWall,MaxJobsPU,MaxTRESPU,Flags),
    ``assoc`` (Account,User,QOS,DefaultQOS) and ``user`` (User,DefaultAccount)."""
    st = State()
    st.clusters = {line.split("|")[0] for line in sections.get("cluster", []) if line}
    for line in sections.get("qos", []):
        f = line.split("|")
        if len(f) != 6:
            raise ValueError(f"unexpected sacctmgr qos line: {line!r}")
        name, prio, wall, jobs, tres, flags = f
        st.qos[name] = Qos(
            name, int(prio or 0), parse_minutes(wall), int(jobs) if jobs else UNSET,
            parse_tres(tres), tuple(sorted(filter(None, flags.split(",")))),
        )  # fmt: skip
    for line in sections.get("assoc", []):
        f = line.split("|")
        if len(f) != 4:
            raise ValueError(f"unexpected sacctmgr assoc line: {line!r}")
        account, user, qos, default = f
        if user:
            # One QOS per association is all DS01 sets; a list reads as "differs".
            st.users.setdefault(user, {})[account] = Assoc(account, qos if default == qos else "")
        else:
            st.account_qos[account] = (set(filter(None, qos.split(","))), default)
    for line in sections.get("user", []):
        f = line.split("|")
        if len(f) != 2:
            raise ValueError(f"unexpected sacctmgr user line: {line!r}")
        st.default_account[f[0]] = f[1]
    return st


# --------------------------------------------------------------------------
# The difference, as sacctmgr commands (argv lists, run with -i: no prompt)
# --------------------------------------------------------------------------


def _qos_settings(q: Qos) -> list[str]:
    tres = ",".join(f"{k}={q.max_tres_per_user.get(k, UNSET)}" for k in TRES_KEYS)
    return [
        f"Priority={q.priority}",
        f"MaxWall={q.max_wall_minutes}",
        f"MaxJobsPerUser={q.max_jobs_per_user}",
        f"MaxTRESPerUser={tres}",
        "Flags=" + (",".join(q.flags) or "-1"),
    ]


def _same_qos(want: Qos, have: Qos) -> bool:
    return (
        want.priority == have.priority
        and want.max_wall_minutes == have.max_wall_minutes
        and want.max_jobs_per_user == have.max_jobs_per_user
        and {k: v for k, v in have.max_tres_per_user.items() if k in TRES_KEYS}
        == want.max_tres_per_user
        and tuple(sorted(want.flags)) == have.flags
    )


def plan(want: Desired, have: State) -> list[list[str]]:
    """The sacctmgr commands from ``have`` to ``want``; ``[]`` when converged.

    Users are added in one command per account (constant cost however many
    join), moved by adding the new association before the old one is
    deleted (no moment without an account), and removed only from DS01's
    accounts."""
    sm = ["sacctmgr", "-i"]
    out: list[list[str]] = []
    if want.cluster not in have.clusters:
        out.append(sm + ["add", "cluster", want.cluster])
    for q in want.qos:
        if q.name not in have.qos:
            out.append(sm + ["add", "qos", q.name])
        if q.name not in have.qos or not _same_qos(q, have.qos[q.name]):
            out.append(sm + ["modify", "qos", "where", f"name={q.name}", "set", *_qos_settings(q)])
    ours = {a.name for a in want.accounts}
    for a in want.accounts:
        if a.name not in have.account_qos:
            out.append(sm + [
                "add", "account", a.name, f"Cluster={want.cluster}", f"Description={a.description}",
                "Organization=ds01", f"QOS={a.qos}", f"DefaultQOS={a.qos}",
            ])  # fmt: skip
        elif have.account_qos[a.name] != ({a.qos}, a.qos):
            out.append(sm + [
                "modify", "account", "where", f"name={a.name}", f"cluster={want.cluster}",
                "set", f"QOS={a.qos}", f"DefaultQOS={a.qos}",
            ])  # fmt: skip
    joining: dict[Assoc, list[str]] = {}
    for user, assoc in want.users.items():
        held = have.users.get(user, {})
        if assoc.account not in held:
            joining.setdefault(assoc, []).append(user)
    for assoc, users in sorted(joining.items(), key=lambda kv: (kv[0].account, kv[0].qos)):
        out.append(sm + [
            "add", "user", ",".join(users), f"Account={assoc.account}",
            f"DefaultAccount={assoc.account}", f"Cluster={want.cluster}",
            f"QOS={assoc.qos}", f"DefaultQOS={assoc.qos}",
        ])  # fmt: skip
    for user, assoc in want.users.items():
        held = have.users.get(user, {})
        if assoc.account in held and held[assoc.account].qos != assoc.qos:
            out.append(sm + [
                "modify", "user", "where", f"name={user}", f"account={assoc.account}",
                f"cluster={want.cluster}", "set", f"QOS={assoc.qos}", f"DefaultQOS={assoc.qos}",
            ])  # fmt: skip
        # DefaultAccount on "add user" only applies to a user sacctmgr creates.
        if held and have.default_account.get(user) != assoc.account:
            out.append(sm + [
                "modify", "user", "where", f"name={user}", "set",
                f"DefaultAccount={assoc.account}",
            ])  # fmt: skip
    leaving: dict[str, list[str]] = {}
    for user, held in sorted(have.users.items()):
        for account in sorted(set(held) & ours):
            if user not in want.users or want.users[user].account != account:
                leaving.setdefault(account, []).append(user)
    for account, users in sorted(leaving.items()):
        out.append(sm + [
            "delete", "user", "where", f"name={','.join(users)}", f"account={account}",
            f"cluster={want.cluster}",
        ])  # fmt: skip
    wanted_qos = {q.name for q in want.qos}
    for name in sorted(have.qos):
        if name.startswith(SLURM_USER_QOS_PREFIX) and name not in wanted_qos:
            out.append(sm + ["delete", "qos", f"name={name}"])  # an override that is gone
    return out


def desired_to_json(d: Desired) -> dict:
    """``d`` as plain data (an operation's argument, a fixture)."""
    return {
        "cluster": d.cluster,
        "qos": [{**q.__dict__, "flags": list(q.flags)} for q in d.qos],
        "accounts": [a.__dict__ for a in d.accounts],
        "users": {u: a.__dict__ for u, a in d.users.items()},
    }


def desired_from_json(data: Mapping) -> Desired:
    return Desired(
        cluster=data["cluster"],
        qos=tuple(Qos(**{**q, "flags": tuple(q["flags"])}) for q in data["qos"]),
        accounts=tuple(Account(**a) for a in data["accounts"]),
        users={u: Assoc(**a) for u, a in data["users"].items()},
    )
