"""Privacy: homes are private, system paths can be passed through but not
listed, `home` is in everyone's shell, and the admin account keeps sudo.

Modes, not ACLs: /home, /opt, ... become 0711, so `ls /home` fails while a
path inside (a user's home, /opt/ds01/venv/bin/ds01) still works. SSH and
VS Code remote only need the user's own home, which stays theirs (0700).
"""

from pyinfra import host
from pyinfra.operations import files

from deploys._support import REPO
from ds01.identity.guard import DROPIN, SUDO_GROUP, sudoers_text
from operations import groups, privacy

policy = host.data.policy
ident = policy.identity

for path in ident.privacy.unlistable:
    files.directory(name=f"{path}: can be passed through, not listed (0711)",
                    path=path, user="root", group="root", mode="0711")  # fmt: skip

privacy.private_homes(name=f"Homes under {ident.home.root} are private ({ident.home.mode})",
                      root=ident.home.root, mode=ident.home.mode)  # fmt: skip

files.template(name="`home` command for every shell: /etc/profile.d/ds01-home.sh",
               src=str(REPO / "templates/identity/home.sh.j2"), dest="/etc/profile.d/ds01-home.sh",
               user="root", group="root", mode="0644")  # fmt: skip
files.line(name="`home` in interactive non-login shells too (/etc/bash.bashrc)",
           path="/etc/bash.bashrc",
           line=". /etc/profile.d/ds01-home.sh  # ds01-infra: the `home` command")  # fmt: skip

privacy.sudoers_dropin(name=f"{ident.admin_account} keeps sudo: {DROPIN} (checked by visudo)",
                       path=DROPIN, content=sudoers_text(policy))  # fmt: skip
groups.member(name=f"{ident.admin_account} is in the {SUDO_GROUP} group",
              user=ident.admin_account, group=SUDO_GROUP)  # fmt: skip
files.template(
    name=f"Cron job /etc/cron.d/ds01-admin-guard ({policy.schedules.admin_guard})",
    src=str(REPO / "templates/identity/cron.j2"),
    dest="/etc/cron.d/ds01-admin-guard",
    user="root",
    group="root",
    mode="0644",
    deploy="deploys/privacy.py",
    job="admin_guard",
    schedule=policy.schedules.admin_guard,
    command="/usr/local/bin/ds01 admin-guard",
)
