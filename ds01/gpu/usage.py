"""GPU usage from the allocator's ledger: what ``ds01 usage`` and the monthly
report print.

A *lease* is one continuous hold of one unit by one container (the ``leases``
table of :mod:`ds01.gpu.store`: from the start that took the unit to the
release that gave it back; a restart within the hold continues it). Over a
period ``[since, until)``:

* GPU-equivalent hours: each lease's overlap with the period, in hours, times
  its unit's weight (a whole GPU 1.0; see :mod:`ds01.gpu.layout`). A lease
  crossing a boundary counts only its part inside; an open lease counts up
  to ``until`` (at most now).
* idle hours: the time between consecutive idle samples of the idle reaper
  (``idle_seconds``), in the same proportion as the lease is inside the
  period (the samples themselves are not kept), in unit-hours.
* queue waits: entries of the GPU queue (``waits``, and those still waiting),
  their count and hours waited inside the period.

Privacy (DS01's rule: what is taken is public, what a person uses is theirs
and the admins'): a user who is not an admin gets the rows made of their own
leases and waits, and the totals over everyone, never another's rows.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

BY = ("user", "role", "unit")


@dataclass(frozen=True)
class Lease:
    container: str
    user: str
    role: str
    unit: str
    gpu_index: int
    kind: str
    weight: float
    started_at: float
    ended_at: float | None
    end_reason: str | None
    idle_seconds: float


@dataclass(frozen=True)
class Wait:
    user: str
    role: str
    kind: str | None
    enqueued_at: float
    ended_at: float | None  # None: still waiting
    outcome: str  # done, expired, cancelled, waiting


@dataclass
class Row:
    key: str
    leases: int = 0
    gpu_hours: float = 0.0  # GPU-equivalent hours
    unit_hours: float = 0.0  # hours any unit was held, whatever its size
    idle_hours: float = 0.0
    queue_waits: int = 0
    queue_wait_hours: float = 0.0

    def rounded(self) -> dict:
        d = asdict(self)
        for k in ("gpu_hours", "unit_hours", "idle_hours", "queue_wait_hours"):
            d[k] = round(d[k], 4)
        return d


def _overlap(start: float, end: float, since: float, until: float) -> float:
    return max(0.0, min(end, until) - max(start, since))


def _add_lease(row: Row, lease: Lease, since: float, until: float) -> None:
    end = lease.ended_at if lease.ended_at is not None else until
    inside = _overlap(lease.started_at, end, since, until)
    if inside <= 0 and not since <= lease.started_at < until:
        return  # wholly outside (a lease of no length counts where it started)
    row.leases += 1
    row.gpu_hours += inside / 3600 * lease.weight
    row.unit_hours += inside / 3600
    whole = end - lease.started_at
    if whole > 0:
        row.idle_hours += min(lease.idle_seconds, whole) * (inside / whole) / 3600


def _add_wait(row: Row, wait: Wait, since: float, until: float) -> None:
    end = wait.ended_at if wait.ended_at is not None else until
    inside = _overlap(wait.enqueued_at, end, since, until)
    if inside <= 0 and not since <= wait.enqueued_at < until:
        return
    row.queue_waits += 1
    row.queue_wait_hours += inside / 3600


@dataclass(frozen=True)
class Report:
    since: float
    until: float
    by: str
    rows: list[Row]
    totals: Row
    viewer: str | None  # None: an admin (every row); else only this user's

    def to_json(self) -> dict:
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "by": self.by,
            "only_user": self.viewer,
            "rows": [r.rounded() for r in self.rows],
            "totals": self.totals.rounded(),
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        fields = list(Row("").rounded())
        w = csv.DictWriter(out, fieldnames=[self.by, *fields[1:]], lineterminator="\n")
        w.writeheader()
        for r in [*self.rows, self.totals]:
            d = r.rounded()
            d[self.by] = d.pop("key")
            w.writerow(d)
        return out.getvalue()

    def lines(self) -> list[str]:
        head = f"GPU usage {_iso(self.since)} to {_iso(self.until)}, by {self.by}" + (
            f" (your rows: {self.viewer}; totals: everyone)" if self.viewer else ""
        )
        out = [
            head,
            f"{self.by:<24} {'leases':>6} {'GPU-eq h':>9} {'unit h':>8} {'idle h':>8} "
            f"{'waits':>5} {'wait h':>7}",
        ]
        for r in [*self.rows, self.totals]:
            out.append(
                f"{r.key:<24} {r.leases:>6} {r.gpu_hours:>9.2f} {r.unit_hours:>8.2f} "
                f"{r.idle_hours:>8.2f} {r.queue_waits:>5} {r.queue_wait_hours:>7.2f}"
            )
        return out


def report(
    leases: list[Lease],
    waits: list[Wait],
    since: float,
    until: float,
    by: str = "user",
    *,
    user: str | None = None,
    viewer: str | None = None,
) -> Report:
    """Usage over ``[since, until)`` grouped ``by`` user, role or unit.

    + user: only this user's rows (``--user``)
    + viewer: who asks, when not an admin: rows are theirs alone (the totals
      stay everyone's); asking for another ``user`` is refused by the caller
    """
    if by not in BY:
        raise ValueError(f"--by is one of {', '.join(BY)}, not {by!r}")
    totals = Row("total")
    rows: dict[str, Row] = defaultdict(lambda: Row(""))
    only = viewer or user
    for lease in leases:
        _add_lease(totals, lease, since, until)
        if only is None or lease.user == only:
            key = {"user": lease.user, "role": lease.role, "unit": f"{lease.unit} ({lease.kind})"}
            row = rows[key[by]]
            row.key = key[by]
            _add_lease(row, lease, since, until)
    for wait in waits:
        _add_wait(totals, wait, since, until)
        if by != "unit" and (only is None or wait.user == only):
            key = wait.user if by == "user" else wait.role
            row = rows[key]
            row.key = key
            _add_wait(row, wait, since, until)
    kept = [r for r in rows.values() if r.leases or r.queue_waits]
    return Report(since, until, by, sorted(kept, key=lambda r: r.key), totals, viewer)


def parse_date(text: str) -> float:
    """``2026-11-01`` (midnight UTC) or an ISO time with or without zone (UTC)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date such as 2026-11-01 or 2026-11-01T08:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def last_month(now: float) -> tuple[float, float, str]:
    """The calendar month before ``now`` (UTC): (start, end, "YYYY-MM")."""
    t = datetime.fromtimestamp(now, UTC)
    end = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if end.month == 1:
        start = end.replace(year=end.year - 1, month=12)
    else:
        start = end.replace(month=end.month - 1)
    return start.timestamp(), end.timestamp(), start.strftime("%Y-%m")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
