"""What a virtual environment on the server was last built from."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class VenvStamp(FactBase[str | None]):
    """
    A build stamp written into a virtual environment by ``operations.venv``
    (the sha256 of what was installed), or ``None`` when the environment or
    that stamp is missing.

    + path: the virtual environment's directory
    + stamp: which stamp: ``deps`` (the dependencies) or a package name

    .. code:: python

        "9f2c...e1"   # or None
    """

    @staticmethod
    def default() -> None:
        return None

    def command(self, path: str, stamp: str) -> StringCommand:
        python = QuoteString(f"{path}/bin/python")
        stamp_file = QuoteString(f"{path}/.ds01-stamp-{stamp}")
        return StringCommand("test -x", python, "&&", "cat", stamp_file, "2>/dev/null", "|| true")

    def process(self, output: list[str]) -> str | None:
        text = "".join(output).strip()
        return text or None
