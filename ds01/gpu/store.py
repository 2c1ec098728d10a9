"""The allocator's store: one SQLite database in WAL mode, its schema, and
transactions.

Every decision is one ``BEGIN IMMEDIATE`` transaction, so concurrent callers
(processes) are serialised and a caller killed mid-decision leaves nothing
half-done. Writers queue on an ``flock`` first: the kernel wakes the next one
at once (SQLite's busy handler would poll with sleeps) and frees the lock of a
killed process. A refusal (:class:`~ds01.gpu.results.GpuError`) still commits
the housekeeping done before it; any other error rolls everything back.
Each decision that writes records its latency (waiting for the lock included:
what the caller waits) in a histogram per operation, the ``decisions`` table,
which the status snapshot carries to the exporter.

The database is root's alone (who holds what, since when, who waits): it is
created 0600, and SQLite gives its -wal and -shm files the same mode; users
read the status snapshot instead (:mod:`ds01.gpu.snapshot`).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypedDict

from ds01 import events
from ds01.gpu.results import GpuError

SCHEMA_VERSION = 4  # 2: index events_at (retention); 3: leases, waits, layout_drains; 4: decisions
DB_NAME = "gpu/allocator.sqlite3"
# Upper bounds (seconds) of the decision-latency histogram's buckets; +Inf is the count.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    uuid TEXT PRIMARY KEY,
    gpu_index INTEGER NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,  -- order in the layout (placement order)
    profile TEXT,                        -- NULL: a whole GPU
    weight REAL NOT NULL CHECK (weight > 0 AND weight <= 1),
    present INTEGER NOT NULL DEFAULT 1,  -- 0: gone from the layout (re-partitioned)
    drained INTEGER NOT NULL DEFAULT 0,  -- 1: an admin took it out of the pool
    drained_by TEXT,
    holder TEXT REFERENCES containers(name),  -- the one container holding it
    held_since REAL,
    reserved_for INTEGER REFERENCES queue(id),  -- the queue entry it waits for
    reserved_until REAL
);
CREATE TABLE IF NOT EXISTS containers (
    name TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('assigned', 'allocated', 'held', 'released')),
    kind TEXT,
    count INTEGER NOT NULL,
    assigned_at REAL NOT NULL,
    allocated_at REAL,
    stopped_at REAL,
    release_at REAL
);
CREATE TABLE IF NOT EXISTS targets (
    container TEXT NOT NULL REFERENCES containers(name) ON DELETE CASCADE,
    uuid TEXT NOT NULL REFERENCES units(uuid),
    PRIMARY KEY (container, uuid)
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    priority INTEGER NOT NULL,
    kind TEXT,                           -- NULL: any unit the role may use
    enqueued_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'reserved', 'done', 'expired', 'cancelled')),
    unit TEXT,
    reserved_until REAL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    what TEXT NOT NULL,
    container TEXT,
    user TEXT,
    unit TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS reaper (      -- the idle reaper's readings per container
    container TEXT PRIMARY KEY REFERENCES containers(name) ON DELETE CASCADE,
    idle_checks INTEGER NOT NULL DEFAULT 0,
    idle_since REAL,
    last_check REAL,
    last_net INTEGER,
    warned_at REAL,
    warning TEXT
);
-- The usage ledger (issue 11): one row per continuous hold of one unit by one
-- container (a restart within the hold continues it). Kept for good: it is
-- the record `ds01 usage` and the monthly report read (one row per lease,
-- small), unlike events and queue, which are pruned.
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    container TEXT NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    unit TEXT NOT NULL,
    gpu_index INTEGER NOT NULL,
    kind TEXT NOT NULL,                  -- 'gpu' or the MIG profile
    weight REAL NOT NULL,                -- GPU-equivalents
    started_at REAL NOT NULL,
    ended_at REAL,                       -- NULL: still held
    end_reason TEXT,                     -- stopped, hold expired, removed, admin release, ...
    idle_seconds REAL NOT NULL DEFAULT 0 -- between consecutive idle samples of the reaper
);
CREATE INDEX IF NOT EXISTS leases_open ON leases(container) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS leases_started ON leases(started_at);
-- Every ended queue entry, written by the trigger below whichever code ends it.
CREATE TABLE IF NOT EXISTS waits (
    id INTEGER PRIMARY KEY,              -- the queue entry's id
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT,
    enqueued_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    outcome TEXT NOT NULL                -- done (got a unit), expired, cancelled
);
CREATE TRIGGER IF NOT EXISTS queue_ended AFTER UPDATE OF state, ended_at ON queue
WHEN NEW.state IN ('done', 'expired', 'cancelled') AND NEW.ended_at IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO waits(id, user, role, kind, enqueued_at, ended_at, outcome)
    VALUES (NEW.id, NEW.user, NEW.role, NEW.kind, NEW.enqueued_at, NEW.ended_at, NEW.state);
END;
-- GPUs being re-partitioned by `ds01 gpu layout apply`: their units, and any
-- that appear on them meanwhile, stay drained until it resumes them.
CREATE TABLE IF NOT EXISTS layout_drains (
    gpu_index INTEGER PRIMARY KEY,
    by TEXT NOT NULL,
    since REAL NOT NULL
);
-- Decision latency per operation, cumulative since the database was made:
-- buckets is a JSON list of counts aligned with LATENCY_BUCKETS (cumulative).
CREATE TABLE IF NOT EXISTS decisions (
    op TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    buckets TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS units_holder ON units(holder);
CREATE INDEX IF NOT EXISTS targets_uuid ON targets(uuid);
CREATE INDEX IF NOT EXISTS queue_state ON queue(state, priority, enqueued_at);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
"""


# Schema 3's migration: the holds in progress become open leases.
_OPEN_LEASES = """
INSERT INTO leases(container, user, role, unit, gpu_index, kind, weight, started_at)
SELECT c.name, c.user, c.role, u.uuid, u.gpu_index, coalesce(u.profile, 'gpu'), u.weight,
       coalesce(u.held_since, ?)
FROM units u JOIN containers c ON c.name = u.holder
"""


def _statements(schema: str) -> list[str]:
    """The schema's statements (a trigger's body holds semicolons of its own)."""
    out, part = [], ""
    for piece in schema.split(";"):
        part += piece + ";"
        if sqlite3.complete_statement(part):
            if part.strip(" \n;"):
                out.append(part)
            part = ""
    return out


class UnitRow(TypedDict):
    """A row of ``units``."""

    uuid: str
    gpu_index: int
    position: int
    profile: str | None
    weight: float
    present: int
    drained: int
    drained_by: str | None
    holder: str | None
    held_since: float | None
    reserved_for: int | None
    reserved_until: float | None


class ContainerRow(TypedDict):
    """A row of ``containers``."""

    name: str
    user: str
    role: str
    state: str
    kind: str | None
    count: int
    assigned_at: float
    allocated_at: float | None
    stopped_at: float | None
    release_at: float | None


class QueueRow(TypedDict):
    """A row of ``queue``."""

    id: int
    user: str
    role: str
    priority: int
    kind: str | None
    enqueued_at: float
    state: str
    unit: str | None
    reserved_until: float | None
    ended_at: float | None


class Store:
    """
    + path: the SQLite file (its directory is created 0700)
    + clock: seconds since the epoch, for the event log
    + after_commit: called after every write transaction's COMMIT, still under
      the write lock, with whether it changed anything (the snapshot writer)
    """

    def __init__(self, path: str, clock: Callable[[], float], after_commit: Callable[[bool], None]):
        self.path = path
        self.clock = clock
        self.after_commit = after_commit
        self._pending: list[dict] = []  # this transaction's events, mirrored once committed
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for name in (path, path + "-wal", path + "-shm"):
            with suppress(FileNotFoundError):
                if os.stat(name).st_mode & 0o077:  # made by an earlier version
                    os.chmod(name, 0o600)
        self.lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: consistent after a crash
        self.db.execute("PRAGMA foreign_keys=ON")
        # Not self.tx(): after_commit (the snapshot) reads an allocator not yet made.
        with self.locked():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    for statement in _statements(_SCHEMA):
                        self.db.execute(statement)
                    if 0 < version < 3:
                        # The ledger starts with the holds in progress: nothing held
                        # before the upgrade goes unrecorded.
                        self.db.execute(_OPEN_LEASES, (self.clock(),))
                    self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
        os.close(self.lock)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The write lock alone (no transaction)."""
        fcntl.flock(self.lock, fcntl.LOCK_EX)  # released by the kernel if we are killed
        try:
            yield
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)

    @contextmanager
    def tx(self, op: str = "other") -> Iterator[sqlite3.Connection]:
        """One decision: BEGIN IMMEDIATE ... COMMIT (see the module docstring);
        ``op`` names it in the latency histogram."""
        started = time.monotonic()
        with self.locked():
            self.db.execute("BEGIN IMMEDIATE")
            changes = self.db.total_changes
            try:
                yield self.db
            except GpuError:
                self._commit(changes, op, started)
                raise
            except BaseException:
                self.db.execute("ROLLBACK")
                self._pending.clear()
                raise
            self._commit(changes, op, started)

    def _commit(self, changes_before: int, op: str, started: float) -> None:
        changed = self.db.total_changes != changes_before
        if changed:  # a no-op (a reconcile that found nothing) is no decision to time
            self._record_latency(op, time.monotonic() - started)
        self.db.execute("COMMIT")
        self._commit_events()
        self.after_commit(changed)

    def _commit_events(self) -> None:
        pending, self._pending = self._pending, []
        for ev in pending:  # the platform's event log (issue 12) sees only what was committed
            events.emit("gpu_" + ev.pop("what").replace(" ", "_"), **ev)

    def _record_latency(self, op: str, seconds: float) -> None:
        row = self.db.execute(
            "SELECT count, sum, buckets FROM decisions WHERE op = ?", (op,)
        ).fetchone()
        count, total, buckets = (row[0], row[1], json.loads(row[2])) if row else (0, 0.0, [])
        buckets = (buckets + [0] * len(LATENCY_BUCKETS))[: len(LATENCY_BUCKETS)]
        buckets = [n + (seconds <= le) for n, le in zip(buckets, LATENCY_BUCKETS, strict=True)]
        self.db.execute(
            "INSERT OR REPLACE INTO decisions(op, count, sum, buckets) VALUES (?, ?, ?, ?)",
            (op, count + 1, total + seconds, json.dumps(buckets)),
        )

    def decisions(self) -> dict[str, dict[str, Any]]:
        """op -> {count, sum, buckets: [[le, cumulative count], ...]} (in a read)."""
        rows = self.db.execute("SELECT op, count, sum, buckets FROM decisions ORDER BY op")
        return {
            op: {"count": count, "sum": round(total, 6),
                 "buckets": [[le, n] for le, n in zip(LATENCY_BUCKETS, json.loads(b), strict=True)]}
            for op, count, total, b in rows
        }  # fmt: skip

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reading (no lock on writers)."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    def rows(self, sql: str, args=()) -> list[dict[str, Any]]:
        """The rows of a query as dicts keyed by column name."""
        cur = self.db.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def event(self, what: str, container=None, user=None, unit=None, detail=None) -> None:
        """One line of the event log (pruned after ``gpu.history_retention``)."""
        self.db.execute(
            "INSERT INTO events(at, what, container, user, unit, detail) VALUES (?,?,?,?,?,?)",
            (self.clock(), what, container, user, unit, detail),
        )
        ev = {"what": what, "container": container, "user": user, "unit": unit, "detail": detail}
        self._pending.append({k: v for k, v in ev.items() if v is not None})
        if not self.db.in_transaction:  # autocommit: already committed
            self._commit_events()
