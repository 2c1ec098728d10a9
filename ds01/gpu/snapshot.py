"""The world-readable status snapshot.

Ordinary users cannot open a WAL database read-only once its last writer has
closed it (and the database is root's alone), so every write transaction
leaves a copy of the status, as JSON, in ``gpu.runtime_dir`` (tmpfs: a rename
there costs no disk flush); ``ds01 gpu status`` reads it when not root. It is
written after COMMIT, under the write lock, so it never shows what the
database rolled back and a later decision cannot overtake it. Its format only
grows (fields are added, never renamed): monitoring reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import suppress
from typing import Any

from ds01.config import Policy

SNAPSHOT_NAME = "status.json"
# A unit's states in the snapshot in which a container holds it (a stopped
# container's hold, until gpu_hold_after_stop, is still its GPU).
HELD_STATES = ("allocated", "held")
_TMP_PREFIX = ".status."


def snapshot_path(policy: Policy) -> str:
    return os.path.join(policy.gpu.runtime_dir, SNAPSHOT_NAME)


# The reconciler's last NVML readings per unit, world-readable beside the
# snapshot: the exporter serves them without opening /dev/nvidia* (which are
# root's and the bare-metal role's only).
READINGS_NAME = "readings.json"


def readings_path(policy: Policy) -> str:
    return os.path.join(policy.gpu.runtime_dir, READINGS_NAME)


def readings(layout, at: float) -> dict[str, Any]:
    """A :class:`~ds01.gpu.layout.Layout`'s per-unit utilisation and memory in
    use; units of GPUs that could not be read are absent (unknown, not idle)."""
    return {
        "at": at,
        "backend": layout.backend,
        "units": {
            uuid: {"utilization": d.utilization, "memory_used": d.memory_used}
            for uuid, d in layout.devices_by_unit().items()
        },
        "unread_gpus": sorted(layout.unread_gpus()),
    }


def write_snapshot(path: str, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically, 0644. Call it under the
    allocator's write lock: no other writer is mid-snapshot then, so any
    temporary file left beside it is from a writer killed before its rename."""
    text = json.dumps(data, separators=(",", ":"))
    folder = os.path.dirname(path)
    for name in os.listdir(folder):
        if name.startswith(_TMP_PREFIX):
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
    replace_file(path, text, _TMP_PREFIX)


def replace_file(path: str, text: str, prefix: str) -> None:
    """Replace ``path`` with ``text``, 0644, by a rename: readers see the old
    file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=prefix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
