"""Modes and owners of the homes under a root directory."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class Homes(FactBase[dict[str, dict]]):
    """
    Each directory directly under ``root`` (lost+found excepted) with its
    permission bits and owner's UID.

    + root: the homes' parent, e.g. ``/home``

    .. code:: python

        {"/home/j.doe": {"mode": "0700", "uid": 200001},
         "/home/lt.student": {"mode": "0755", "uid": 1001}}
    """

    default = dict

    def command(self, root: str) -> StringCommand:
        return StringCommand(
            "find", QuoteString(root), "-mindepth 1 -maxdepth 1 -type d ! -name lost+found",
            "-printf", QuoteString(r"%m %U %p\n"), "2>/dev/null; true",
        )  # fmt: skip

    def process(self, output: list[str]) -> dict[str, dict]:
        out = {}
        for line in output:
            mode, uid, path = line.split(" ", 2)
            out[path] = {"mode": mode.rjust(4, "0"), "uid": int(uid)}
        return out
