"""Whether the backup repository exists and opens with its password file."""

from __future__ import annotations

from pyinfra.api import FactBase


class BackupRepository(FactBase[str]):
    """
    ``ready`` when ``restic cat config`` opens the policy's repository with
    its password file (``ds01 backup init --check``), else ``absent`` (also
    while planning a server that has no ds01 yet).

    .. code:: python

        "ready"
    """

    default = lambda _self: "absent"  # noqa: E731

    def command(self) -> str:
        return "/usr/local/bin/ds01 backup init --check 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return "ready" if output and output[-1].strip() == "ready" else "absent"
