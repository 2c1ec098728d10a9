"""Converge the DS01 slice units: files written, systemd reloaded once, slices enabled and active.

pyinfra's ``systemd.service`` reports a change on every run for a slice; this
operation compares content hashes and unit states, so a converged host reports
no change.
"""

from __future__ import annotations

import hashlib
import os
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation

from ds01.slices import is_managed
from facts.slices import SliceState


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@operation()
def converge(files: dict[str, str], start: list[str]):
    """
    Make the DS01 slice files exactly ``files``: write those whose content
    differs, remove managed ones not listed (a slice of a removed user, the
    drop-in of a departed UID), reload systemd once if anything changed, then
    enable and start every slice in ``start`` that is not enabled and active.
    Active slices are never stopped (that would kill what runs in them); new
    limits reach them through the reload.

    + files: absolute path -> content (render with ds01.slices.unit_files)
    + start: slice names, parents first (ds01.slices.slices_to_start)

    **Example:**

    .. code:: python

        slices.converge(
            name="DS01 slices",
            files=ds01.slices.unit_files(policy, {"j.doe@example.lan": (1001, "researcher")}),
            start=ds01.slices.slices_to_start(policy, {"j.doe@example.lan": (1001, "researcher")}),
        )
    """
    state = host.get_fact(SliceState)
    have_files, have_units = state.get("files", {}), state.get("units", {})
    changed = False
    made_dirs = set()
    for path, content in sorted(files.items()):
        if have_files.get(path, {}).get("sha256") == _sha(content):
            continue
        parent = os.path.dirname(path)
        if parent.endswith(".d") and parent not in made_dirs:
            yield StringCommand("mkdir -p", QuoteString(parent))
            made_dirs.add(parent)
        yield FileUploadCommand(StringIO(content), path)
        yield StringCommand("chmod 0644", QuoteString(path))
        changed = True
    for path, info in sorted(have_files.items()):
        if path not in files and info["managed"] and is_managed(path):
            if path.endswith(".slice"):
                yield StringCommand(
                    "systemctl disable --no-reload",
                    QuoteString(os.path.basename(path)),
                    "2>/dev/null || true",
                )
            yield StringCommand("rm -f", QuoteString(path))
            changed = True
    if changed:
        yield StringCommand("systemctl daemon-reload")
    todo = [
        u for u in start
        if have_units.get(u, {}).get("active") != "active"
        or have_units.get(u, {}).get("enabled") != "enabled"
    ]  # fmt: skip
    if todo:
        yield StringCommand("systemctl enable --now", *[QuoteString(u) for u in todo])
    if not changed and not todo:
        host.noop(f"{len(files)} slice files and {len(start)} slices are already as wanted")
