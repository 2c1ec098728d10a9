"""Storage: the shared areas with their ACLs and short paths, private scratch
directories, per-role disk quotas and the scheduled scratch purge.

Everything comes from the policy's ``storage:`` section; the rules that turn it
into directories and ACLs live in ds01/storage/areas.py. Needs the ds01-<role>
groups (deploys/groups.py, which deploys/all.py runs first).
"""

from pyinfra import host
from pyinfra.facts.server import Mounts
from pyinfra.operations import files, server, systemd

from ds01.storage import areas, mounts, purge, quota
from ds01.units import format_duration
from facts.acl import Nss
from operations import acl, deferred
from operations import quota as quota_ops
from operations.deferred import role_users

policy = host.data.policy
plans = areas.plan(policy)
acl_users, acl_groups = areas.principals(plans)

fs = policy.storage.quota_filesystem
if fs and fs not in host.get_fact(Mounts):
    raise SystemExit(
        f"storage on {host.name}: {fs} (storage.quota_filesystem) is not mounted. Mount the data "
        "disk there with usrquota,grpquota,prjquota first; otherwise the areas would be created "
        "on the filesystem below it, without quotas."
    )
known = host.get_fact(Nss, users=sorted(acl_users), groups=[])["users"]
missing_users = set(acl_users) - set(known)
if missing_users:
    print(
        f"storage: not on the server yet, left out of the ACLs: {', '.join(sorted(missing_users))}"
    )


def role_groups_exist():
    role_users(policy)  # raises, naming the group, when one is missing
    yield from ()


deferred.planned_at_execution(
    name="Role groups exist (deploys/groups.py)", plan=role_groups_exist, what="storage"
)

if policy.storage.quota_filesystem:
    files.directory(
        name=f"Storage root {policy.storage.quota_filesystem} (traverse only)",
        path=policy.storage.quota_filesystem,
        user="root",
        group="root",
        mode="0711",
    )

if any(a.sticky and a.kind != "scratch" for a in policy.storage.areas.values()):
    # Debian's default (2) refuses O_CREAT opens of another user's file in a
    # group-writable sticky directory: `>>`, open(f, "w") and most editors
    # could not write a collaborator's file. 1 keeps the protection for
    # world-writable sticky directories such as /tmp.
    server.sysctl(
        name="Collaborators may write each other's files in sticky areas",
        key="fs.protected_regular",
        value=1,
        persist=True,
        persist_file="/etc/sysctl.d/60-ds01-storage.conf",
    )

for d in plans:
    d = areas.without_users(d, missing_users)
    files.directory(name=f"Area {d.area}: {d.path}", path=d.path, user=d.owner, group=d.group)
    acl.directory(
        name=f"ACL of {d.path}",
        path=d.path,
        access=d.access,
        default=d.default,
        setgid=d.setgid,
        sticky=d.sticky,
    )

for _name, area in policy.storage.areas.items():
    if area.link:
        files.link(
            name=f"Short path {area.link} -> {area.path}",
            path=area.link,
            target=area.path,
            user="root",
            group="root",
        )

quota_area = quota.quota_area(policy)


def private_dirs_and_quotas():
    # Read when it runs: the role groups and their members come from
    # deploys/groups.py earlier in the same converge.
    users = role_users(policy)
    for user, (_uid, role) in users.items():
        # No group: the directory is 0700, and a directory user's primary group
        # (AD's Domain Users) may have no name on the server.
        for path in areas.user_dirs(policy, user, role):
            yield from files.directory._inner(path=path, user=user, mode="0700")
    if policy.storage.quota_filesystem and quota_area is not None:
        yield from quota_ops.user_limits._inner(
            filesystem=policy.storage.quota_filesystem,
            limits={user: quota.limit_kib(policy, role) for user, (_, role) in users.items()},
        )


deferred.planned_at_execution(
    name=f"Private scratch directories and disk quotas per role on {fs or '(no quota fs)'}",
    plan=private_dirs_and_quotas,
    what="private directories and quotas",
)

scratch = next(iter(areas.scratch_areas(policy)), None)
if scratch is not None and scratch.purge is not None:
    files.directory(
        name=f"Scratch purge notices {purge.NOTICE_DIR}",
        path=purge.NOTICE_DIR,
        user="root",
        group="root",
        mode="0711",
    )
    files.template(
        name="Login notice of files the scratch purge will remove",
        src="templates/storage/ds01-scratch-notice.sh.j2",
        dest="/etc/profile.d/ds01-scratch-notice.sh",
        user="root",
        group="root",
        mode="0644",
        notice_dir=purge.NOTICE_DIR,
    )
    files.template(
        name="Scratch purge schedule /etc/cron.d/ds01-scratch-purge",
        src="templates/storage/ds01-scratch-purge.cron.j2",
        dest="/etc/cron.d/ds01-scratch-purge",
        user="root",
        group="root",
        mode="0644",
        schedule=policy.schedules.scratch_purge,
        root=scratch.path,
        after=format_duration(scratch.purge.after),
        warn=format_duration(scratch.purge.warn_before),
    )

# Homes and areas nosuid,nodev: files written from containers cannot gain privileges on the host
nosuid_unit = files.template(
    name="Homes and areas mounted nosuid,nodev (ds01-nosuid.service)",
    src="templates/storage/ds01-nosuid.service.j2",
    dest="/etc/systemd/system/ds01-nosuid.service",
    user="root", group="root", mode="0644",
    paths=mounts.nosuid_paths(policy), flags=mounts.FLAGS,
)  # fmt: skip
systemd.service(
    name="Homes and areas nosuid,nodev in force", service="ds01-nosuid.service",
    running=True, enabled=True,
    daemon_reload=nosuid_unit.will_change, restarted=nosuid_unit.will_change,
)  # fmt: skip
