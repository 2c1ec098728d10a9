"""Slices: ds01.slice -> ds01-<role>.slice -> one slice per user (the cgroup
parent of their containers), and a drop-in holding each user's login sessions
(user-<uid>.slice) to their role's ``login`` limits.

Limits come from the policy (roles.*.user_slice / login, then overrides); the
unit files are rendered by ds01/slices.py, which the new-user hook also uses.
"""

from pyinfra import host

from ds01 import slices as ds01_slices
from ds01.names import role_group
from ds01.storage.areas import roles_of_users
from facts.acl import Nss
from operations import slices

policy = host.data.policy
role_groups = [role_group(r) for r in policy.roles]
explicit = sorted({u for users in policy.identity.members.values() for u in users})
nss = host.get_fact(Nss, users=explicit, groups=role_groups)
missing_groups = sorted(set(role_groups) - set(nss["groups"]))
if missing_groups:
    raise SystemExit(
        f"slices on {host.name}: group(s) {', '.join(missing_groups)} do not exist. The role "
        "groups come from deploys/groups.py: run deploys/all.py, or that deploy first."
    )
group_members = {g: nss["groups"][g][1] for g in role_groups}
members = sorted({u for g in role_groups for u in group_members[g]} - set(nss["users"]))
known = {**nss["users"], **host.get_fact(Nss, users=members, groups=[])["users"]}
users = {
    u: (known[u][0], role) for u, role in roles_of_users(policy, group_members, set(known)).items()
}

slices.converge(
    name=f"DS01 slices: ds01.slice, {len(policy.roles)} role slices, {len(users)} user slices "
    "and login drop-ins",
    files=ds01_slices.unit_files(policy, users),
    start=ds01_slices.slices_to_start(policy, users),
)
