"""The one place a Linux user is mapped to a role.

Every component asks here: the deploys (storage, slices), the docker access
service, the GPU allocator, the CLI and the reports. The role of a user who
exists on the server, in this order:

1. ``identity.system_users`` and ``identity.archived`` -> no role;
2. in no ``ds01-<role>`` group -> no role (the sync adds people, and it alone
   knows whether the directory disabled an account);
3. in an explicit list (``identity.members.<role>``) -> that role, whichever
   role group they are in now (the sync moves them there);
4. otherwise the highest-priority role group that lists them (two at once
   only while a refused sync holds a removal back).

Names compare as accounts, whatever the style: ``c.rivera`` in the policy
and ``c.rivera@example.lan`` on the server (``name_style: qualified``) are one
user. What the directory says belongs to the sync (ds01/identity/classify.py);
this reads the server's state that the sync wrote.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ds01 import config
from ds01.config import Policy
from ds01.names import role_group


def account_key(name: str, policy: Policy) -> str:
    """``C.Rivera@example.lan`` and ``c.rivera`` -> ``c.rivera`` (for the policy's domain)."""
    return config.account_key(name, policy.identity.directory.domain)


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
        held = [r for r in self.by_priority if name in group_members.get(role_group(r), ())]
        if key in self.none or not held:
            return None
        return self.listed.get(key, held[0])

    def of_users(
        self, group_members: Mapping[str, Collection[str]], existing: Collection[str]
    ) -> dict[str, str]:
        """User -> role for every user in a role group, among ``existing``
        (the names that resolve on the server)."""
        names = {u for r in self.policy.roles for u in group_members.get(role_group(r), ())}
        out = {u: self.role(u, group_members) for u in names if u in existing}
        return {u: r for u, r in sorted(out.items()) if r is not None}


def role_of(name: str, policy: Policy, group_members: Mapping[str, Collection[str]]) -> str | None:
    """See :class:`Roles`."""
    return Roles(policy).role(name, group_members)
