"""The directory's view of users and groups, as read on the server."""

from __future__ import annotations

import json

from pyinfra.api import FactBase, QuoteString, StringCommand


class DirectoryView(FactBase[dict | None]):
    """
    What ``ds01 users directory`` prints on the server: the directory's users
    and groups (read with the server's own bind secret, which never leaves it),
    the candidate names that resolve through NSS there, and the user count of
    the last good sync. ``None`` when ds01 is not installed yet.

    + ds01: path of the ds01 command on the server

    .. code:: python

        {
            "enabled": True,
            "error": None,  # or why the directory could not be read completely
            "users": [{"account": "j.doe", "dn": "CN=j.doe,OU=People,DC=example,DC=lan",
                       "principal": "j.doe@example.lan", "mail": "j.doe@example.lan",
                       "display_name": "J. Doe", "uid_number": 200001, "gid_number": 200000,
                       "member_of": ["DS01-Researchers"], "disabled": False,
                       "last_logon": 1764000000.0}],
            "group_parents": {"Faculty-Staff": ["DS01-Faculty"], "DS01-Faculty": []},
            "resolvable": ["j.doe@example.lan", "lt.student"],
            "baseline": 1109,  # or None before the first good sync
        }
    """


    def requires_command(self, ds01: str = "/usr/local/bin/ds01") -> str:
        # Missing while planning a fresh server (deploys/base.py installs it).
        return ds01

    def command(self, ds01: str = "/usr/local/bin/ds01") -> StringCommand:
        # The exit code says whether the directory answered; the JSON says it too.
        return StringCommand(QuoteString(ds01), "users directory 2>/dev/null; true")

    def process(self, output: list[str]) -> dict | None:
        text = "\n".join(output).strip()
        if not text:
            return None
        data = json.loads(text)
        for key in ("enabled", "error", "users", "group_parents", "resolvable", "baseline"):
            if key not in data:
                raise ValueError(
                    f"ds01 users directory printed no {key!r}: is the server's ds01 older?"
                )
        return data


class SecretSnippet(FactBase[str]):
    """
    Whether the SSSD snippet ``dest`` holds ``[section]`` and ``key = `` the
    first line of ``secret_file``. Compared on the server, so the secret never
    travels or shows in a log.

    + secret_file: root-only file holding the secret
    + dest: the snippet file
    + section: ini section, e.g. ``domain/example.lan``
    + key: ini key, e.g. ``ldap_default_authtok``

    .. code:: python

        "same"   # or "differ", or "missing" (no secret file on the server)
    """

    default = str

    def command(self, secret_file: str, dest: str, section: str, key: str) -> StringCommand:
        return StringCommand(
            "if ! test -s", QuoteString(secret_file), "; then echo missing;",
            "elif", snippet(secret_file, section, key), "| cmp -s -", QuoteString(dest),
            "; then echo same; else echo differ; fi",
        )  # fmt: skip

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else "missing"


def snippet(secret_file: str, section: str, key: str) -> StringCommand:
    """Shell that prints the snippet (its text is built on the server)."""
    return StringCommand(
        "{ printf '[%s]\\n%s = '", QuoteString(section), QuoteString(key), ";",
        "head -n1", QuoteString(secret_file), "; }",
    )  # fmt: skip
