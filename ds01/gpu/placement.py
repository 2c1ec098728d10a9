"""Placement: which free units a request gets (pure functions over unit rows).

Shared by ``assign`` and the queue's reservations, so a waiting user is
reserved the very unit ``assign`` would give them.
"""

from __future__ import annotations

from typing import Any

EPSILON = 1e-9  # GPU-equivalents are sums of fractions: compare with a tolerance

Row = dict[str, Any]  # a units row (plus reserved_user and targeted where known)


def order(row: Row, user: str | None = None) -> tuple:
    """Placement order: a unit reserved for the user first, MIG slices before
    whole GPUs (whole GPUs stay free for those who need them), lightest first,
    then the one fewest other containers target, then layout order."""
    return (
        user is None or row.get("reserved_user") != user,
        row["profile"] is None,
        row["weight"],
        row.get("targeted") or 0,
        row["gpu_index"],
        row["position"],
    )


def choose(candidates: list[Row], count: int, budget: float, user: str | None = None) -> list[Row]:
    """Up to ``count`` units in placement order whose weights fit ``budget``."""
    chosen: list[Row] = []
    for r in sorted(candidates, key=lambda r: order(r, user)):
        if len(chosen) == count:
            break
        if sum(c["weight"] for c in chosen) + r["weight"] <= budget + EPSILON:
            chosen.append(r)
    return chosen


def best(candidates: list[Row], budget: float) -> Row | None:
    """The one unit a queue entry is reserved: the first in placement order that fits."""
    fits = [r for r in candidates if r["weight"] <= budget + EPSILON]
    return min(fits, key=order) if fits else None
