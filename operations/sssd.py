"""SSSD's bind password, written on the server from the root-only secret file."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from facts.directory import SecretSnippet, snippet


@operation()
def secret_snippet(secret_file: str, dest: str, section: str, key: str):
    """
    Write ``[section]`` / ``key = <first line of secret_file>`` to ``dest``
    (mode 0600), on the server: the secret never passes through the
    controller, its logs or the fact cache.

    + secret_file: root-only file holding the secret (placed by the admin)
    + dest: the snippet, e.g. ``/etc/sssd/conf.d/ds01-bind.conf``
    + section: ini section, e.g. ``domain/example.lan``
    + key: ini key, e.g. ``ldap_default_authtok``

    **Example:**

    .. code:: python

        sssd.secret_snippet(name="SSSD bind password", secret_file="/etc/ds01/ldap-bind.secret",
                            dest="/etc/sssd/conf.d/ds01-bind.conf",
                            section="domain/example.lan", key="ldap_default_authtok")
    """
    state = host.get_fact(
        SecretSnippet, secret_file=secret_file, dest=dest, section=section, key=key
    )
    if state == "same":
        host.noop(f"{dest} is current")
        return
    # "missing" may be fixed by an earlier operation of this run (an upload): check then.
    missing = (f"{secret_file} is missing or empty on the server: put the directory bind "
               "password there (root:root, mode 0600) and run the deploy again")  # fmt: skip
    tmp = f"{dest}.ds01-new"
    yield StringCommand(
        "test -s", QuoteString(secret_file), "|| { echo", QuoteString(missing), ">&2; exit 1; } &&",
        "umask 077 &&", snippet(secret_file, section, key), ">", QuoteString(tmp),
        "&& mv -f", QuoteString(tmp), QuoteString(dest),
    )  # fmt: skip
