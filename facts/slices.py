"""The DS01 slice units on a host: their files, and whether each is enabled and active."""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api import FactBase

from ds01.slices import LOGIN_DROPIN, MARK, UNIT_DIR


class SliceFile(TypedDict):
    sha256: str
    managed: bool  # starts with the ds01-infra header


class SliceUnit(TypedDict):
    active: str  # ActiveState: active, inactive, failed, ...
    enabled: str  # UnitFileState: enabled, disabled, static, ... ('' when unknown)


class SliceStateData(TypedDict):
    files: dict[str, SliceFile]
    units: dict[str, SliceUnit]


class SliceState(FactBase[SliceStateData]):
    """
    Every ``ds01*.slice`` unit file and every ``user-<uid>.slice.d`` login
    drop-in under /etc/systemd/system (with a sha256 of its content and
    whether ds01-infra wrote it), and the state of every ``ds01*.slice`` unit
    systemd knows.

    .. code:: python

        {
            "files": {"/etc/systemd/system/ds01.slice": {"sha256": "9f2c...", "managed": True}},
            "units": {"ds01.slice": {"active": "active", "enabled": "enabled"}},
        }
    """

    default = dict

    def command(self) -> str:
        return (
            f"cd {UNIT_DIR} 2>/dev/null && "
            f"for f in ds01*.slice user-*.slice.d/{LOGIN_DROPIN}; do "
            '[ -f "$f" ] || continue; '
            f"if head -n1 \"$f\" | grep -qF '{MARK}'; then m=1; else m=0; fi; "
            f'echo "F $(sha256sum < "$f" | cut -c1-64) $m {UNIT_DIR}/$f"; done; '
            "systemctl list-units --all --plain --no-legend --no-pager 'ds01*.slice' "
            "| awk '{print \"U\", $1, $3}'; "
            "systemctl list-unit-files --no-legend --no-pager 'ds01*.slice' "
            "| awk '{print \"E\", $1, $2}'; true"
        )

    def process(self, output: list[str]) -> SliceStateData:
        files: dict[str, SliceFile] = {}
        units: dict[str, SliceUnit] = {}
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            if kind == "F":
                sha, managed, path = rest.split(" ", 2)
                files[path] = {"sha256": sha, "managed": managed == "1"}
            elif kind == "U":
                unit, active = rest.split(" ", 1)
                units.setdefault(unit, {"active": "inactive", "enabled": ""})["active"] = active
            elif kind == "E":
                unit, enabled = rest.split(" ", 1)
                units.setdefault(unit, {"active": "inactive", "enabled": ""})["enabled"] = enabled
        return {"files": files, "units": units}
