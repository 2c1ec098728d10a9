"""Private homes and the admin's sudoers drop-in."""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha1File

from facts.privacy import Homes


@operation()
def private_homes(root: str, mode: str = "0700"):
    """
    Give every user's home under ``root`` the private ``mode`` (root-owned
    directories are left alone), in one ``chmod`` whatever their number.

    + root: the homes' parent, e.g. ``/home``
    + mode: octal mode of a home

    **Example:**

    .. code:: python

        privacy.private_homes(name="Homes are private (0700)", root="/home", mode="0700")
    """
    homes = host.get_fact(Homes, root=root)
    wrong = sorted(p for p, h in homes.items() if h["uid"] != 0 and h["mode"] != mode)
    if not wrong:
        host.noop(f"all {len(homes)} homes under {root} are {mode}")
        return
    yield StringCommand("chmod", mode, "--", *[QuoteString(p) for p in wrong])


@operation()
def sudoers_dropin(path: str, content: str):
    """
    Install a sudoers drop-in only after ``visudo -c`` accepts it: the text
    is written beside the target under a name sudo ignores (it holds a dot),
    checked, then renamed into place with mode 0440. A rejected text leaves
    the old file untouched and fails the operation.

    + path: e.g. ``/etc/sudoers.d/ds01-admin``
    + content: the complete file text

    **Example:**

    .. code:: python

        privacy.sudoers_dropin(name="Admin keeps sudo", path="/etc/sudoers.d/ds01-admin",
                               content="datasciencelab ALL=(ALL:ALL) ALL\\n")
    """
    info = host.get_fact(File, path=path)
    same = host.get_fact(Sha1File, path=path) == hashlib.sha1(content.encode()).hexdigest()
    if info and same and info.get("mode") == 440 and info.get("user") == "root":
        host.noop(f"{path} is in place")
        return
    directory, _, name = path.rpartition("/")
    tmp = f"{directory}/.{name}.ds01-new"
    yield StringCommand(
        "umask 077 &&", "printf '%s'", QuoteString(content), ">", QuoteString(tmp),
        "&& chown root:root", QuoteString(tmp), "&& chmod 0440", QuoteString(tmp),
        "&& visudo -cf", QuoteString(tmp), "&& mv -f", QuoteString(tmp), QuoteString(path),
        "|| { rm -f", QuoteString(tmp), "; exit 1; }",
    )  # fmt: skip
