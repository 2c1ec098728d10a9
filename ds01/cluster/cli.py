"""``ds01 slurm sync``: Slurm's users follow the role groups; ``ds01 slurm
run``: an image in a job (ds01.cluster.containers).

Runs on the controller after ``ds01 users sync`` (cron, deploys/slurm.py), so
a user the directory sync put into a role group is associated with the role's
Slurm account within one sync, and one who left loses it. The plan is
``ds01.cluster.accounts.plan``, the same one the deploy's operation uses; the
roles are ``ds01.identity``'s, read from the groups as NSS lists them.
"""

from __future__ import annotations

import argparse
import pwd
import subprocess
import sys

from ds01.cluster import accounts
from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit
from ds01.identity.local import group_members, resolvable
from ds01.identity.roles import Roles
from ds01.names import role_group


def register(sub: argparse._SubParsersAction) -> None:
    slurm = sub.add_parser("slurm", help="Slurm accounts, QOS and users from the policy")
    ssub = slurm.add_subparsers(dest="slurm_command", metavar="ACTION", required=True)
    s = ssub.add_parser("sync", help="associate the role groups' users with their accounts")
    s.add_argument("--dry-run", action="store_true", help="print the sacctmgr commands only")
    add_policy_option(s)
    s.set_defaults(func=cmd_sync)
    r = ssub.add_parser(
        "run", help="in a Slurm job: run an image with the job's GPUs (rootless Podman)",
        description="Run IMAGE in this job's cgroup with the GPUs Slurm gave the job on this "
        "node. Load your image first: docker save IMAGE | podman load (docs/cluster.md).",
    )  # fmt: skip
    r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind mount (your home, your role's storage areas)")  # fmt: skip
    r.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    r.add_argument("image")
    r.add_argument("command", nargs=argparse.REMAINDER, help="the command (default: the image's)")
    add_policy_option(r)
    r.set_defaults(func=cmd_run)


def user_roles(policy: Policy) -> dict[str, tuple[int, str]]:
    """Every user in a role group who resolves here: user -> (uid, role)."""
    groups = group_members([role_group(r) for r in policy.roles])
    names = resolvable({u for members in groups.values() for u in members})
    roles = Roles(policy).of_users(groups, names)
    return {u: (pwd.getpwnam(u).pw_uid, r) for u, r in roles.items()}


def read_state(cluster: str, run=subprocess.run) -> accounts.State:
    """slurmdbd's state; raises RuntimeError when sacctmgr fails (never an empty view)."""
    sections = {}
    for key, query in accounts.QUERIES.items():
        argv = ["sacctmgr", *query.replace("{cluster}", f"cluster={cluster}").split(),
                "--parsable2", "--noheader"]  # fmt: skip
        proc = run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {proc.stderr.strip()}")
        sections[key] = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    return accounts.parse_state(sections)


def sync(policy: Policy, dry_run: bool = False, run=subprocess.run) -> list[list[str]]:
    assert policy.cluster is not None
    want = accounts.desired(policy, user_roles(policy))
    commands = accounts.plan(want, read_state(policy.cluster.name, run))
    for argv in commands:
        print(" ".join(argv))
        if not dry_run:
            proc = run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return commands


def cmd_sync(args: argparse.Namespace) -> int:
    policy = load_or_exit(args.policy)
    if policy.cluster is None:
        print("no cluster section in the policy: nothing to do")
        return 0
    try:
        commands = sync(policy, args.dry_run)
    except RuntimeError as e:
        print(f"ds01 slurm sync: {e}; nothing more was changed", file=sys.stderr)
        return 1
    if not commands:
        print("Slurm's accounts and users match the policy")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from ds01.cluster import containers
    from ds01.docker.model import Refused

    policy = load_or_exit(args.policy)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    req = containers.RunRequest(args.image, tuple(command), tuple(args.volume),
                                tuple(args.env), args.workdir)  # fmt: skip
    try:
        job = containers.job_on_this_node(dict(os.environ))
        binds = containers.checked_binds(req.volumes, policy, os.getuid())
        try:
            with open(containers.CDI_SPEC) as f:
                devices = containers.spec_devices(f.read())
        except FileNotFoundError:
            devices = set()
        argv = containers.podman_argv(req, job, binds, devices)
        env = containers.podman_env(dict(os.environ), os.getuid())
    except (containers.NotInJob, ValueError, Refused) as e:
        print(f"ds01 slurm run: {e}", file=sys.stderr)
        return 2
    os.execve(argv[0], argv, env)
    return 0  # not reached
