"""The one place a Linux user is mapped to a role.

Every component asks here: the deploys (storage, slices), the docker access
service, the GPU allocator, the CLI and the reports. The role of a user who
exists on the server, in this order:

1. ``identity.system_users`` and ``identity.archived`` -> no role;
2. an explicit list (``identity.members.<role>``) -> that role (the sync
   puts them there; until it has, they already hold it);
3. the ``ds01-<role>`` groups that list them -> the highest-priority one
   (two at once only while a refused sync holds a removal back);
4. otherwise no role.

Names compare as accounts, whatever the style: ``c.rivera`` in the policy
and ``c.rivera@example.lan`` on the server (``name_style: qualified``) are one
user. What the directory says belongs to the sync (ds01/identity/classify.py);
this reads the server's state that the sync wrote.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ds01.config import Policy
from ds01.names import role_group


def account_key(name: str, policy: Policy) -> str:
    """``C.Rivera@example.lan`` and ``c.rivera`` -> ``c.rivera`` (for the policy's domain)."""
    user, at, domain = name.rpartition("@")
    if at and domain.casefold() == policy.identity.directory.domain.casefold():
        name = user
    return name.casefold()


class Roles:
    """Role lookups of one policy, built once."""

    def __init__(self, policy: Policy):
        ident = policy.identity
        self.policy = policy
        self.none = {account_key(u, policy) for u in [*ident.system_users, *ident.archived]}
        self.listed = {
            account_key(u, policy): role for role, users in ident.members.items() for u in users
        }
        self.by_priority = sorted(policy.roles, key=lambda r: -policy.roles[r].priority)

    def role(self, name: str, group_members: Mapping[str, Collection[str]]) -> str | None:
        """The role of ``name`` (a user that exists on the server), given the
        members of the ``ds01-<role>`` groups as the server lists them."""
        key = account_key(name, self.policy)
        if key in self.none:
            return None
        if key in self.listed:
            return self.listed[key]
        for role in self.by_priority:
            if name in group_members.get(role_group(role), ()):
                return role
        return None

    def of_users(
        self, group_members: Mapping[str, Collection[str]], existing: Collection[str]
    ) -> dict[str, str]:
        """User -> role for every user in a role group or in an explicit list,
        among ``existing`` (the names that resolve on the server, canonical)."""
        names = {u for r in self.policy.roles for u in group_members.get(role_group(r), ())}
        names |= {u for u in existing if account_key(u, self.policy) in self.listed}
        out = {u: self.role(u, group_members) for u in names if u in existing}
        return {u: r for u, r in sorted(out.items()) if r is not None}


def role_of(name: str, policy: Policy, group_members: Mapping[str, Collection[str]]) -> str | None:
    """See :class:`Roles`."""
    return Roles(policy).role(name, group_members)
