"""SSSD (optional, off by default): directory users through NSS/PAM.

Leave identity.sssd.enabled false where IT owns the server's AD join; the
test VM turns it on against the test AD. For a test VM, the controller may
hand over the bind secret and the CA: DS01_BIND_SECRET_FILE, DS01_LDAP_CA_FILE.
"""

import os

from pyinfra import host
from pyinfra.operations import apt, files, systemd

from deploys._support import REPO, apt_packages
from operations import sssd

policy = host.data.policy
d = policy.identity.directory

if policy.identity.sssd.enabled:
    apt.packages(name="SSSD packages", packages=apt_packages("sssd"))
    if os.environ.get("DS01_BIND_SECRET_FILE"):
        files.put(name=f"Bind password {d.bind_password_file} (from the controller, test only)",
                  src=os.environ["DS01_BIND_SECRET_FILE"], dest=d.bind_password_file,
                  user="root", group="root", mode="0600")  # fmt: skip
    if os.environ.get("DS01_LDAP_CA_FILE") and d.ca_file:
        files.put(name=f"Directory CA {d.ca_file} (from the controller, test only)",
                  src=os.environ["DS01_LDAP_CA_FILE"], dest=d.ca_file,
                  user="root", group="root", mode="0644")  # fmt: skip
    conf = files.template(
        name="SSSD configuration /etc/sssd/sssd.conf",
        src=str(REPO / "templates/identity/sssd.conf.j2"),
        dest="/etc/sssd/sssd.conf",
        user="root",
        group="root",
        mode="0600",
        d=d,
        s=policy.identity.sssd,
        home_root=policy.identity.home.root,
    )
    files.directory(name="SSSD snippets /etc/sssd/conf.d", path="/etc/sssd/conf.d",
                    user="root", group="root", mode="0711")  # fmt: skip
    secret = sssd.secret_snippet(
        name="SSSD bind password /etc/sssd/conf.d/ds01-bind.conf (written on the server)",
        secret_file=d.bind_password_file,
        dest="/etc/sssd/conf.d/ds01-bind.conf",
        section=f"domain/{d.domain}",
        key="ldap_default_authtok",
    )
    systemd.service(name="SSSD running", service="sssd", running=True, enabled=True,
                    restarted=conf.will_change or secret.will_change)  # fmt: skip
