"""Strict parsers for the unit-bearing values of the policy file.

Each parser raises ``ValueError`` with a message an admin can act on. Values
are integers underneath (bytes, seconds, percent) so nothing downstream ever
parses a string again.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^(\d+)([kmgt])$")
_SIZE_FACTOR = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_DURATION_FACTOR = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PERCENT = re.compile(r"^(\d+)%$")


def parse_size(value: object) -> int:
    """``"32g"`` -> bytes. Integer number plus one of k, m, g, t (powers of 1024)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a size such as '32g', got {value!r}")
    if isinstance(value, int):
        raise ValueError(f"size {value!r} needs a unit: write '{value}g', '{value}m', ...")
    m = _SIZE.match(value.strip().lower())
    if not m:
        raise ValueError(
            f"bad size {value!r}: write a whole number and one of k, m, g, t (e.g. '32g', '512m')"
        )
    return int(m.group(1)) * _SIZE_FACTOR[m.group(2)]


def parse_duration(value: object) -> int:
    """``"24h"`` -> seconds. Whole number plus one of s, m, h, d, w."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a duration such as '24h', got {value!r}")
    if isinstance(value, int):
        raise ValueError(f"duration {value!r} needs a unit: write '{value}h', '{value}d', ...")
    m = _DURATION.match(value.strip().lower())
    if not m:
        raise ValueError(
            f"bad duration {value!r}: write a whole number and one of s, m, h, d, w "
            "(e.g. '30m' rather than '0.5h')"
        )
    return int(m.group(1)) * _DURATION_FACTOR[m.group(2)]


def parse_percent(value: object) -> int:
    """``"3200%"`` -> 3200 (systemd CPUQuota: 100% is one CPU)."""
    if not isinstance(value, str) or not _PERCENT.match(value.strip()):
        raise ValueError(f"bad percentage {value!r}: write a whole number and '%' (e.g. '3200%')")
    pct = int(value.strip()[:-1])
    if pct <= 0:
        raise ValueError(f"percentage {value!r} must be above 0%")
    return pct


def format_size(n: int) -> str:
    """Bytes -> the shortest exact policy spelling (``34359738368`` -> ``"32g"``)."""
    for unit in "tgmk":
        f = _SIZE_FACTOR[unit]
        if n % f == 0:
            return f"{n // f}{unit}"
    return str(n)


def format_duration(s: int) -> str:
    for unit in "wdhms":
        f = _DURATION_FACTOR[unit]
        if s and s % f == 0:
            return f"{s // f}{unit}"
    return "0s"
