"""Role classification: pure, deterministic, and every decision says why.

Order of decision (the first that applies wins):

1. ``system_users``, and the directory's bind account (``bind_dn``) -> no role
   (service and admin accounts are never classified)
2. ``archived``       -> no role (home kept for the admin)
3. disabled in the directory -> no role
4. ``members``        -> the listed role (explicit lists always win)
5. ``directory_groups`` (direct or nested) -> the mapped role; when several
   match, the role with the highest priority
6. ``naming_rules``   -> the first rule whose pattern matches the plain account
7. ``default_role``

Names in the policy may be written plain (``j.doe``) or qualified
(``j.doe@example.lan``); both match the same account, case-insensitively.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from ds01.config import Policy
from ds01.identity.directory import dn_key
from ds01.identity.model import DirectoryUser, DirectoryView


@dataclass(frozen=True)
class Decision:
    name: str  # the Linux name (plain or qualified, per identity.directory.name_style)
    account: str  # the plain account name
    role: str | None
    rule: (
        str  # system_user | archived | disabled | member | directory_group | naming_rule | default
    )
    reason: str


def plain(name: str, domain: str) -> str:
    """``j.doe@example.lan`` -> ``j.doe`` (only for the configured domain)."""
    user, at, dom = name.rpartition("@")
    if at and dom.casefold() == domain.casefold():
        return user
    return name


def linux_name(account: str, policy: Policy) -> str:
    """The name NSS gives a directory account on this server."""
    d = policy.identity.directory
    return f"{account}@{d.domain}" if d.name_style == "qualified" else account


def _key(name: str, domain: str) -> str:
    return plain(name, domain).casefold()


def group_paths(
    direct: tuple[str, ...], parents: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Every group reachable from ``direct``, with the shortest path to it
    (``{"DS01-Faculty": ("Staff", "DS01-Faculty")}``). Cycles are tolerated.
    Group CNs compare case-insensitively; keys keep the directory's spelling."""
    by_fold = {g.casefold(): g for g in parents}
    paths: dict[str, tuple[str, ...]] = {}
    queue = deque((g, (g,)) for g in direct)
    while queue:
        group, path = queue.popleft()
        fold = group.casefold()
        if fold in paths:
            continue
        paths[fold] = path
        for parent in parents.get(by_fold.get(fold, group), ()):
            if parent.casefold() not in paths:
                queue.append((parent, path + (parent,)))
    return {path[-1]: path for path in paths.values()}


class Classifier:
    """Classify accounts against one policy (lookups are built once)."""

    def __init__(self, policy: Policy):
        ident = policy.identity
        self.policy = policy
        self.domain = ident.directory.domain
        self.system = {_key(u, self.domain) for u in ident.system_users}
        self.archived = {_key(u, self.domain) for u in ident.archived}
        self.members = {
            _key(u, self.domain): role for role, users in ident.members.items() for u in users
        }
        self.groups = {g.casefold(): (g, role) for g, role in ident.directory_groups.items()}
        self.rules = [(re.compile(r.pattern), r.pattern, r.role) for r in ident.naming_rules]
        bind = ident.directory.bind_dn
        self.bind = dn_key(bind) if bind else None

    def classify(
        self,
        name: str,
        *,
        member_of: tuple[str, ...] = (),
        group_parents: dict[str, tuple[str, ...]] | None = None,
        disabled: bool = False,
        in_directory: bool = True,
        dn: str | None = None,
    ) -> Decision:
        """Decide the role of one account. ``name`` may be plain or qualified;
        ``dn`` is its directory entry's DN, when it has one."""
        account = plain(name, self.domain)
        key = account.casefold()
        lname = linux_name(account, self.policy) if in_directory else name

        def decide(role: str | None, rule: str, reason: str) -> Decision:
            return Decision(name=lname, account=account, role=role, rule=rule, reason=reason)

        if key in self.system:
            return decide(None, "system_user", "listed in identity.system_users (never classified)")
        if dn is not None and self.bind is not None and dn_key(dn) == self.bind:
            return decide(
                None, "system_user", "the policy's bind account (identity.directory.bind_dn)"
            )
        if key in self.archived:
            return decide(None, "archived", "listed in identity.archived (no role, home kept)")
        if disabled:
            return decide(None, "disabled", "the account is disabled in the directory")
        if key in self.members:
            role = self.members[key]
            return decide(
                role, "member", f"listed in identity.members.{role} (explicit lists always win)"
            )
        matched = []
        for group, path in group_paths(member_of, group_parents or {}).items():
            hit = self.groups.get(group.casefold())
            if hit:
                matched.append((self.policy.roles[hit[1]].priority, hit[1], hit[0], path))
        if matched:
            _, role, group, path = max(matched, key=lambda m: (m[0], m[1]))
            via = f" (nested: {' -> '.join(path)})" if len(path) > 1 else ""
            return decide(role, "directory_group", f"member of directory group {group}{via}")
        if not in_directory:
            return decide(
                None, "unknown", "not in the directory and not in any identity.members list"
            )
        for rx, pattern, role in self.rules:
            if rx.search(account):
                return decide(role, "naming_rule", f"account matches naming rule '{pattern}'")
        role = self.policy.identity.default_role
        return decide(
            role, "default", "no list, group or naming rule applies: identity.default_role"
        )

    def classify_user(self, user: DirectoryUser, view: DirectoryView) -> Decision:
        return self.classify(
            user.account,
            member_of=user.member_of,
            group_parents=view.group_parents,
            disabled=user.disabled,
            dn=user.dn,
        )


def classify_all(
    view: DirectoryView | None, policy: Policy, local_names: set[str]
) -> dict[str, Decision]:
    """Decisions for every directory account plus every explicitly listed
    member that resolves through NSS on this server (``local_names``) but is not
    in the directory. Keyed by Linux name; same input, same output."""
    c = Classifier(policy)
    out: dict[str, Decision] = {}
    seen: set[str] = set()
    for user in view.users if view else ():
        d = c.classify_user(user, view)
        out[d.name] = d
        seen.add(d.account.casefold())
    for users in policy.identity.members.values():
        for name in users:
            if _key(name, c.domain) in seen:
                continue
            # local_names are canonical: the qualified form first (SSSD's), then as written
            for candidate in (linux_name(plain(name, c.domain), policy), name):
                if candidate in local_names:
                    out[candidate] = c.classify(candidate, in_directory=False)
                    break
    return dict(sorted(out.items()))
