"""The server's system Python."""

from __future__ import annotations

from pyinfra.api import FactBase


class PythonVersion(FactBase[str | None]):
    """
    ``major.minor`` of the server's ``python3`` (what the ds01 wheelhouse is
    built for), or ``None`` when there is no python3.

    .. code:: python

        "3.11"
    """

    @staticmethod
    def default() -> None:
        return None

    def command(self) -> str:
        return "python3 -c 'import sys; print(*sys.version_info[:2], sep=\".\")' || true"

    def process(self, output: list[str]) -> str | None:
        text = "".join(output).strip()
        return text or None
