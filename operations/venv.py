"""Python virtual environments installed from an uploaded wheelhouse, offline."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from facts.venv import VenvStamp

_PIP = "install --quiet --no-index --no-cache-dir --disable-pip-version-check"


def _stamp(path: str, stamp: str, build: str) -> StringCommand:
    stamp_file = QuoteString(f"{path}/.ds01-stamp-{stamp}")
    return StringCommand("echo", QuoteString(build), ">", stamp_file)


@operation()
def dependencies(path: str, wheelhouse: str, requirements: list[str], build: str):
    """
    Make ``path`` a virtual environment holding exactly ``requirements``,
    installed with ``pip --no-index`` from ``wheelhouse`` (the server needs no
    package index). Rebuilt only when ``build`` differs from the stamp left by
    the last build; the new environment is built beside the live one and
    swapped in, so a failed install never leaves the server without one.

    + path: virtual environment directory
    + wheelhouse: directory on the server holding the wheels
    + requirements: pinned requirement specifiers (``name==version``)
    + build: identity of the requirements' wheels (e.g. a sha256 over them)

    **Example:**

    .. code:: python

        venv.dependencies(
            name="ds01 dependencies",
            path="/opt/ds01/venv",
            wheelhouse="/opt/ds01/wheelhouse",
            requirements=["pyyaml==6.0.4"],
            build="9f2c...e1",
        )
    """
    if host.get_fact(VenvStamp, path=path, stamp="deps") == build:
        host.noop(f"{path} dependencies are already built from {build[:12]}")
        return
    new, old = f"{path}.new", f"{path}.old"
    yield StringCommand("rm -rf", QuoteString(new))
    yield StringCommand("python3 -m venv", QuoteString(new))
    yield StringCommand(
        QuoteString(f"{new}/bin/pip"), _PIP, "--find-links", QuoteString(wheelhouse),
        *[QuoteString(r) for r in requirements],
    )  # fmt: skip
    yield _stamp(new, "deps", build)
    # venv scripts hard-code their directory: point them at the final path.
    yield StringCommand(
        "grep -rlF", QuoteString(new), QuoteString(f"{new}/bin"),
        "| xargs -r sed -i", QuoteString(f"s|{new}|{path}|g"),
    )  # fmt: skip
    yield StringCommand(
        "rm -rf", QuoteString(old), "&&",
        "{ ! test -e", QuoteString(path), "|| mv", QuoteString(path), QuoteString(old), "; } &&",
        "mv", QuoteString(new), QuoteString(path), "&& rm -rf", QuoteString(old),
    )  # fmt: skip


@operation()
def package(path: str, wheel: str, dist: str, build: str):
    """
    Install one wheel (without its dependencies) into an existing virtual
    environment when ``build`` differs from the stamp of its last install.

    + path: virtual environment directory
    + wheel: the wheel file on the server
    + dist: the distribution name (names the stamp)
    + build: identity of the wheel (its sha256)

    **Example:**

    .. code:: python

        venv.package(
            name="ds01 package",
            path="/opt/ds01/venv",
            wheel="/opt/ds01/wheelhouse/ds01-0.1.0-py3-none-any.whl",
            dist="ds01",
            build="55492a4d...",
        )
    """
    if host.get_fact(VenvStamp, path=path, stamp=dist) == build:
        host.noop(f"{dist} in {path} is already {build[:12]}")
        return
    yield StringCommand(
        QuoteString(f"{path}/bin/pip"), _PIP, "--no-deps --force-reinstall", QuoteString(wheel)
    )
    yield _stamp(path, dist, build)
