"""``ds01 users sync``: make the role groups match the directory, fail-safe.

:func:`plan` is pure: the directory's answer, the groups as they are and the
policy in, the exact membership and every change (with its reason) out. The
deploy (deploys/groups.py) and the cron job both use it; :func:`apply` carries
a plan out on the server with one ``groupmod -U`` per changed group.

Fail-safe: when the directory cannot be read, answers partially, returns no
users, or returns fewer than ``(1 - max_drop_fraction)`` of the users of the
last good sync, nobody is removed from any group (additions still happen),
the run is marked refused and the command exits non-zero saying why.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ds01 import events, hooks
from ds01.config import Policy
from ds01.identity.classify import Decision, classify_all, linux_name, plain
from ds01.identity.local import managed_groups
from ds01.identity.model import DirectoryView
from ds01.names import DOCKER_USERS_GROUP, role_group


@dataclass(frozen=True)
class Change:
    action: str  # "add" | "remove"
    group: str
    user: str
    reason: str

    def __str__(self) -> str:
        prep = "to" if self.action == "add" else "from"
        return f"{self.action} {self.user} {prep} {self.group}: {self.reason}"


@dataclass
class Plan:
    decisions: dict[str, Decision]
    current: dict[str, set[str]]  # group -> members now (missing groups absent)
    desired: dict[str, list[str]]  # group -> exact members after the run
    changes: list[Change]  # what will be done
    withheld: list[Change] = field(default_factory=list)  # removals not done (refused)
    refused: str | None = None  # why removals are withheld
    new_users: list[tuple[str, str]] = field(default_factory=list)  # (name, role) for the hooks
    unresolved: list[str] = field(default_factory=list)  # have a role, NSS does not know them
    directory_users: int | None = None

    @property
    def changed_groups(self) -> list[str]:
        return sorted({c.group for c in self.changes} | (set(self.desired) - set(self.current)))

    def to_json(self) -> dict:
        return {
            "refused": self.refused,
            "directory_users": self.directory_users,
            "desired": self.desired,
            "changes": [asdict(c) for c in self.changes],
            "withheld": [asdict(c) for c in self.withheld],
            "new_users": [list(x) for x in self.new_users],
            "unresolved": self.unresolved,
            "changed_groups": self.changed_groups,
        }


def candidate_names(view: DirectoryView | None, policy: Policy) -> set[str]:
    """Every Linux name whose NSS resolution matters to the plan."""
    out = {linux_name(u.account, policy) for u in view.users} if view else set()
    dom = policy.identity.directory.domain
    for users in policy.identity.members.values():
        for n in users:
            out.update((n, linux_name(plain(n, dom), policy)))
    return out


def refusal(
    policy: Policy, view: DirectoryView | None, error: str | None, baseline: int | None
) -> str | None:
    """Why removals must not happen this run, or None when it is safe."""
    if not policy.identity.directory.enabled:
        return None
    if error or view is None:
        return f"the directory could not be read completely: {error or 'no answer'}"
    n = len(view.users)
    if n == 0:
        return "the directory returned no users (wrong base DN or filter?)"
    frac = policy.identity.sync.max_drop_fraction
    if baseline and n < baseline * (1 - frac):
        return (
            f"the directory returned {n} users, {baseline - n} fewer than the {baseline} of the "
            f"last good sync (more than identity.sync.max_drop_fraction = {frac:g}); if this is "
            "intended, run `ds01 users sync --accept-drop`"
        )
    return None


def plan(
    policy: Policy,
    view: DirectoryView | None,
    error: str | None,
    current: dict[str, set[str]],
    local_names: set[str],
    known: dict[str, str] | None = None,
    baseline: int | None = None,
) -> Plan:
    """The exact membership of every managed group and the changes to get there.

    + view/error: the directory's answer, or None and why it failed
    + current: members of the managed groups now (a group that does not exist is absent)
    + local_names: names that resolve through NSS (only they can be group members)
    + known: name -> role of the last good sync (new or re-roled users get the hooks)
    + baseline: the directory's user count at the last good sync
    """
    decisions = classify_all(view, policy, local_names)
    groups = managed_groups(policy)
    want: dict[str, set[str]] = {g: set() for g in groups}
    unresolved = []
    for name, d in decisions.items():
        if d.role is None:
            continue
        if name not in local_names:
            unresolved.append(name)
            continue
        want[role_group(d.role)].add(name)
        want[DOCKER_USERS_GROUP].add(name)

    refused = refusal(policy, view, error, baseline)
    changes: list[Change] = []
    withheld: list[Change] = []
    desired: dict[str, list[str]] = {}
    for g in groups:
        cur = current.get(g, set())
        for name in sorted(want[g] - cur):
            changes.append(Change("add", g, name, decisions[name].reason))
        removals = []
        for name in sorted(cur - want[g]):
            d = decisions.get(name)
            if d is None:
                why = "not in the directory and not in any identity.members list"
            elif d.role is None:
                why = d.reason
            elif name not in local_names:
                why = "no longer resolves through NSS"
            else:
                why = f"role is now {d.role}: {d.reason}"
            removals.append(Change("remove", g, name, why))
        if refused:
            withheld += removals
            desired[g] = sorted(cur | want[g])
        else:
            changes += removals
            desired[g] = sorted(want[g])
    known = known or {}
    new_users = [
        (name, d.role)
        for name, d in decisions.items()
        if d.role and name in local_names and known.get(name) != d.role
    ]
    return Plan(
        decisions=decisions, current=current, desired=desired, changes=changes,
        withheld=withheld, refused=refused, new_users=new_users, unresolved=sorted(unresolved),
        directory_users=len(view.users) if view else None,
    )  # fmt: skip


# --------------------------------------------------------------------------
# On the server
# --------------------------------------------------------------------------


@dataclass
class State:
    """What the last good sync saw (``identity.sync.state_file``)."""

    directory_users: int | None = None
    known: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> State:
        try:
            data = json.loads(Path(path).read_text())
        except (FileNotFoundError, PermissionError):  # first run, or a reader that is not root
            return cls()
        return cls(directory_users=data.get("directory_users"), known=data.get("known", {}))

    def save(self, path: str) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        os.replace(tmp, p)


class ChangeLog:
    """Append-only log of every change and refusal: when, what, who, why."""

    def __init__(self, path: str, actor: str):
        self.path, self.actor = Path(path), actor

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(self.path, "a") as f:
            for line in lines:
                f.write(f"{stamp} {self.actor}: {line}\n")


Runner = Callable[[list[str]], None]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} ... failed: {proc.stderr.strip()}")


def membership_commands(p: Plan) -> list[list[str]]:
    """One ``groupadd`` per missing group and one ``groupmod -U`` per changed
    group: the count does not grow with the number of users."""
    cmds = []
    for g in p.changed_groups:
        if g not in p.current:
            cmds.append(["groupadd", "--force", g])
        cmds.append(["groupmod", "-U", ",".join(p.desired[g]), g])
    return cmds


@dataclass
class Outcome:
    plan: Plan
    hook_failures: list[tuple[str, str, str]]  # (user, handler, error)


def apply(
    p: Plan,
    policy: Policy,
    state: State,
    log: ChangeLog,
    run: Runner = _run,
    user_of: Callable[[str, str], hooks.LocalUser] | None = None,
) -> Outcome:
    """Carry out a plan: memberships, then the new-user hooks, then the state."""
    from ds01.identity.local import local_user

    user_of = user_of or local_user
    lines = []
    if p.refused:
        lines.append(f"REFUSED to remove anyone: {p.refused}")
        lines += [f"withheld: {c}" for c in p.withheld]
    for cmd in membership_commands(p):
        run(cmd)
    log.write(lines + [str(c) for c in p.changes])  # before the hooks, which may be slow
    if p.refused:
        events.emit("sync_refused", reason=p.refused, withheld=[str(c) for c in p.withheld])
    for c in p.changes:
        events.emit("membership", user=c.user, action=c.action, group=c.group, reason=c.reason)
    failures = []
    done: dict[str, str] = {}
    for name, role in p.new_users:
        try:
            errs = hooks.run_new_user(user_of(name, role), policy)
        except KeyError:
            errs = [("nss", KeyError(f"{name} no longer resolves"))]
        for spec, e in errs:
            failures.append((name, spec, str(e)))
            log.write([f"new-user handler {spec} failed for {name} ({role}): {e}"])
        if not errs:
            done[name] = role
            log.write([f"new user {name} ({role}): set up"])
            events.emit("new_user", user=name, role=role)
    roles = {n: d.role for n, d in p.decisions.items() if d.role}
    known = {n: r for n, r in roles.items() if state.known.get(n) == r or n in done}
    known.update({n: r for n, r in state.known.items() if n not in roles and p.refused})
    new_state = State(
        directory_users=state.directory_users if p.refused else p.directory_users,
        known=dict(sorted(known.items())),
    )
    new_state.save(policy.identity.sync.state_file)
    return Outcome(plan=p, hook_failures=failures)


class Lock:
    """One sync at a time (cron and a deploy may overlap)."""

    def __init__(self, state_file: str):
        self.path = Path(state_file).with_suffix(".lock")

    def __enter__(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def desired_from_facts(
    policy: Policy, seen: dict | None, current: dict[str, set[str]]
) -> tuple[dict[str, list[str]], str | None]:
    """The deploy's side: (exact members per managed group, why removals are
    refused) from the server's ``ds01 users directory`` output (``seen``) and
    the groups as they are. ``seen`` is None while ds01 is not installed yet:
    then the groups keep their members and the sync run by the deploy fills them."""
    if seen is None:
        return {g: sorted(current.get(g, ())) for g in managed_groups(policy)}, None
    view = DirectoryView.from_json(seen) if not seen["error"] else None
    p = plan(
        policy, view, seen["error"], current, set(seen["resolvable"]), baseline=seen["baseline"]
    )
    return p.desired, p.refused
