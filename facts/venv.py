"""What the ds01 virtual environment on the server was built from."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class VenvBuild(FactBase[str | None]):
    """
    The build stamp written into a virtual environment after its last install
    (the sha256 of the wheelhouse it was installed from), or ``None`` when the
    environment or its stamp is missing.

    + path: the virtual environment's directory

    .. code:: python

        "9f2c...e1"   # or None
    """

    default = None

    def command(self, path: str) -> StringCommand:
        stamp = QuoteString(f"{path}/.ds01-build")
        python = QuoteString(f"{path}/bin/python")
        return StringCommand("test -x", python, "&&", "cat", stamp, "2>/dev/null", "|| true")

    def process(self, output: list[str]) -> str | None:
        text = "".join(output).strip()
        return text or None
