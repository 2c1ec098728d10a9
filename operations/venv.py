"""Install a Python virtual environment from an uploaded wheelhouse, offline."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from facts.venv import VenvBuild


@operation()
def from_wheelhouse(path: str, wheelhouse: str, requirements: list[str], build: str):
    """
    Make ``path`` a virtual environment holding exactly ``requirements``,
    installed with ``pip --no-index`` from ``wheelhouse`` (no package index is
    needed on the server). Reinstalls only when ``build`` differs from the stamp
    left by the last install.

    + path: virtual environment directory
    + wheelhouse: directory on the server holding the wheels
    + requirements: pinned requirement specifiers (``name==version``)
    + build: identity of the wheelhouse's content (e.g. a sha256 of its wheels)

    **Example:**

    .. code:: python

        venv.from_wheelhouse(
            name="ds01 virtual environment",
            path="/opt/ds01/venv",
            wheelhouse="/opt/ds01/wheelhouse",
            requirements=["ds01==0.1.0", "pyyaml==6.0.4"],
            build="9f2c...e1",
        )
    """
    if host.get_fact(VenvBuild, path=path) == build:
        host.noop(f"{path} is already built from {build[:12]}")
        return
    # Build beside the live environment and swap it in, so a failed install
    # never leaves the server without a working `ds01`.
    new = f"{path}.new"
    yield StringCommand("rm -rf", QuoteString(new))
    yield StringCommand("python3 -m venv", QuoteString(new))
    yield StringCommand(
        QuoteString(f"{new}/bin/pip"),
        "install --quiet --no-index --no-cache-dir --disable-pip-version-check",
        "--find-links",
        QuoteString(wheelhouse),
        *[QuoteString(r) for r in requirements],
    )
    yield StringCommand("echo", QuoteString(build), ">", QuoteString(f"{new}/.ds01-build"))
    # venv scripts hard-code their directory: rewrite it before the swap.
    yield StringCommand(
        "grep -rlF",
        QuoteString(new),
        QuoteString(f"{new}/bin"),
        "| xargs -r sed -i",
        QuoteString(f"s|{new}|{path}|g"),
    )
    yield StringCommand(
        "rm -rf", QuoteString(f"{path}.old"), "&&",
        "{ ! test -e", QuoteString(path), "|| mv", QuoteString(path), QuoteString(f"{path}.old"),
        "; } &&", "mv", QuoteString(new), QuoteString(path), "&&",
        "rm -rf", QuoteString(f"{path}.old"),
    )
