"""Slices: ds01.slice -> ds01-<role>.slice -> one slice per user (the cgroup
parent of their containers), and a drop-in holding each user's login sessions
(user-<uid>.slice) to their role's ``login`` limits.

Limits come from the policy (roles.*.user_slice / login, then overrides); the
unit files are rendered by ds01/slices.py, which the new-user hook also uses.
"""

from pyinfra import host

from ds01 import slices as ds01_slices
from operations import deferred, slices
from operations.deferred import role_users

policy = host.data.policy


def all_slices():
    # Read when it runs: the role groups and their members come from
    # deploys/groups.py earlier in the same converge.
    users = role_users(policy)
    yield from slices.converge._inner(
        files=ds01_slices.unit_files(policy, users),
        start=ds01_slices.slices_to_start(policy, users),
    )


deferred.planned_at_execution(
    name=f"DS01 slices: ds01.slice, {len(policy.roles)} role slices, one slice per user "
    "and login drop-ins",
    plan=all_slices,
    what="slices",
)
