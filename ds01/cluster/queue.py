"""Slurm's queue and GPU use, as ``ds01 status`` and the exporter show them.

One reader for both: :func:`read` runs ``squeue`` and ``sinfo`` with
explicit ``--Format`` fields (``:0|``: unpadded, ``|`` after each field) and
:func:`parse_jobs` / :func:`parse_nodes` turn their lines into small typed
records. Not ``--json``: Debian 12's Slurm (22.05.8) has it, through its
``openapi/v0.0.38`` plugin, but that schema is renamed with every Slurm
release (v0.0.39, v0.0.40: another data_parser), while these ``--Format``
field names have held since 17.x.

Nothing here is called without ``cluster:`` in the policy (the callers check
``policy.cluster``): a single server never runs ``squeue``. When Slurm does
not answer (slurmctld down, munge broken, a timeout), :func:`read` returns a
:class:`SlurmState` with ``error`` set instead of raising, so a status screen
says so in one line and a scrape still succeeds (``ds01_slurm_up 0``).
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ds01.config import Policy

log = logging.getLogger(__name__)

# slurmctld answers in milliseconds; a scrape must not hang on a dead one.
TIMEOUT = 5.0

JOB_FIELDS = ("JobID", "UserName", "Account", "QOS", "State", "Reason", "Partition",
              "tres-per-node", "tres-alloc")  # fmt: skip
NODE_FIELDS = ("Partition", "NodeHost", "StateLong", "Gres", "GresUsed")
# Jobs not yet or no longer on a node; squeue lists them until they leave it.
PENDING = "PENDING"
RUNNING = "RUNNING"


def format_arg(fields: Iterable[str]) -> str:
    """``--Format`` value: each field unpadded (size 0) and followed by ``|``."""
    return ",".join(f"{f}:0|" for f in fields)


SQUEUE = ["squeue", "--noheader", "--Format=" + format_arg(JOB_FIELDS)]
# -N: one line per node and partition, so per-partition sums need no node list
SINFO = ["sinfo", "--noheader", "--Node", "--Format=" + format_arg(NODE_FIELDS)]


@dataclass(frozen=True)
class SlurmJob:
    """One line of ``squeue``. ``gpus_asked``: GPU type -> count per node as
    submitted (``--gres``); ``gpus_allocated``: what a running job holds
    (empty while it waits); ``billing``: the TRES billing units it is charged
    (the GPU quota's currency, ``ds01.cluster.nodes``)."""

    id: str
    user: str
    account: str
    qos: str
    state: str
    reason: str  # "None" while running; the pending reason otherwise
    partition: str
    gpus_asked: dict[str, int] = field(default_factory=dict)
    gpus_allocated: dict[str, int] = field(default_factory=dict)
    billing: int | None = None


@dataclass(frozen=True)
class NodeGres:
    """One node of one partition (``sinfo -N``): GPU type -> count."""

    partition: str
    node: str
    state: str
    total: dict[str, int]
    allocated: dict[str, int]


@dataclass(frozen=True)
class SlurmState:
    """What :func:`read` found; ``error`` is set (and the rest empty) when
    Slurm could not be asked."""

    jobs: tuple[SlurmJob, ...] = ()
    nodes: tuple[NodeGres, ...] = ()
    error: str | None = None
    at: float | None = None  # when it was read (epoch seconds)

    @property
    def up(self) -> bool:
        return self.error is None


# A GRES entry, as sinfo (``gpu:2g.10gb:4(S:0)``, used: ``gpu:2g.10gb:3(IDX:4-6)``)
# and squeue's tres-per-node (``gres:gpu:2g.10gb:3``, newer ``gres/gpu:2g.10gb=3``)
# write it. An untyped request (``--gres=gpu:2``) has no type: "any".
_GRES = re.compile(r"(?:gres[:/])?gpu(?::(?P<type>[^:=(),]+))?[:=](?P<n>\d+)(?:\([^)]*\))?")
UNTYPED = "any"


def parse_gres(text: str) -> dict[str, int]:
    """GPU type -> count from a GRES field; "(null)" and "N/A" are none."""
    out: Counter[str] = Counter()
    for m in _GRES.finditer(text):
        out[m["type"] or UNTYPED] += int(m["n"])
    return dict(out)


def parse_tres(text: str) -> tuple[dict[str, int], int | None]:
    """GPU type -> count and the billing units, from a TRES string
    (``cpu=1,mem=32M,node=1,billing=6,gres/gpu=3,gres/gpu:2g.10gb=3``). The
    untyped ``gres/gpu`` total is left out where typed entries say the same."""
    gpus: dict[str, int] = {}
    billing = None
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key == "billing" and value.isdigit():
            billing = int(value)
        elif key.startswith("gres/gpu:") and value.isdigit():
            gpus[key.removeprefix("gres/gpu:")] = int(value)
        elif key == "gres/gpu" and value.isdigit():
            gpus.setdefault(UNTYPED, int(value))
    if len(gpus) > 1:
        gpus.pop(UNTYPED, None)
    return gpus, billing


def _rows(text: str, width: int) -> Iterable[list[str]]:
    for line in text.splitlines():
        cells = line.split("|")
        # each field ends in "|": width cells and an empty last one
        if len(cells) == width + 1 and cells[0]:
            yield cells[:width]


def parse_jobs(text: str) -> list[SlurmJob]:
    """:data:`SQUEUE`'s output."""
    jobs = []
    for jid, user, account, qos, state, reason, partition, per_node, alloc in _rows(
        text, len(JOB_FIELDS)
    ):
        running = state != PENDING
        gpus, billing = parse_tres(alloc)
        jobs.append(SlurmJob(
            id=jid, user=user, account=account, qos=qos, state=state, reason=reason,
            partition=partition, gpus_asked=parse_gres(per_node),
            gpus_allocated=gpus if running else {}, billing=billing,
        ))  # fmt: skip
    return jobs


def parse_nodes(text: str) -> list[NodeGres]:
    """:data:`SINFO`'s output; a default partition's trailing ``*`` is dropped."""
    return [
        NodeGres(part.rstrip("*"), node, state, parse_gres(gres), parse_gres(used))
        for part, node, state, gres, used in _rows(text, len(NODE_FIELDS))
    ]


Runner = Callable[[list[str]], str]


def run_command(argv: list[str]) -> str:
    """stdout of ``argv``; raises OSError, CalledProcessError or TimeoutExpired."""
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout


def read(run: Runner = run_command, clock: Callable[[], float] = time.time) -> SlurmState:
    """Slurm's jobs and nodes now; a failure of either command is the
    state's ``error`` (the command and Slurm's own words), never raised."""
    at = clock()
    try:
        jobs = parse_jobs(run(SQUEUE))
        nodes = parse_nodes(run(SINFO))
    except subprocess.CalledProcessError as e:
        said = (e.stderr or "").strip().splitlines()
        why = said[-1] if said else f"exit {e.returncode}"
        return SlurmState(error=f"{e.cmd[0]}: {why}", at=at)
    except subprocess.TimeoutExpired as e:
        return SlurmState(error=f"{e.cmd[0]}: no answer in {e.timeout:g}s", at=at)
    except OSError as e:
        return SlurmState(error=f"{e.filename or 'squeue'}: {e.strerror}", at=at)
    return SlurmState(tuple(jobs), tuple(nodes), at=at)


# How often the exporter reads Slurm (Prometheus scrapes every 15 s by default).
POLL_INTERVAL = 15.0


class Poller:
    """:func:`read` in a thread of its own, every ``interval`` seconds;
    calling the poller returns the latest reading at once.

    For the exporter: two slurmctld round trips took a second on the loaded
    test VM and up to :data:`TIMEOUT` each on a dead controller, inside a
    scrape whose own timeout is seconds, so scrapes failed and the allocator's
    metrics went with them. The reading's ``at`` says how old it is
    (``ds01_slurm_read_age_seconds``). Only the first call waits, for the
    first reading. A reading that raises anyway (a parse error on a Slurm
    that prints something new) is an ``error`` state, and polling goes on.
    """

    def __init__(self, read: Callable[[], SlurmState], interval: float = POLL_INTERVAL):
        self._read = read
        self._interval = interval
        self._state = SlurmState(error="Slurm not read yet")
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slurm-poller", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                state = self._read()
            except Exception as e:  # the thread must outlive one bad reading
                log.exception("reading Slurm")
                state = SlurmState(error=f"reading Slurm failed: {e}", at=time.time())
            with self._lock:
                self._state = state
            self._first.set()
            self._stop.wait(self._interval)

    def __call__(self) -> SlurmState:
        self._first.wait(2 * TIMEOUT + 1)
        with self._lock:
            return self._state


def reader(policy: Policy, run: Runner = run_command) -> Callable[[], SlurmState] | None:
    """What ``ds01 status`` and the exporter call to read Slurm: :func:`read`
    where the policy has ``cluster:``; None on a single server, where no
    ``squeue`` runs at all (and none may be installed)."""
    if policy.cluster is None:
        return None
    return lambda: read(run)


# --------------------------------------------------------------------------
# Summaries both callers read
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GresUse:
    partition: str
    type: str
    total: int
    allocated: int


def gres_use(nodes: Iterable[NodeGres]) -> list[GresUse]:
    """GPU types per partition, summed over its nodes."""
    total: Counter[tuple[str, str]] = Counter()
    used: Counter[tuple[str, str]] = Counter()
    for n in nodes:
        for t, c in n.total.items():
            total[(n.partition, t)] += c
        for t, c in n.allocated.items():
            used[(n.partition, t)] += c
    return [GresUse(p, t, total[(p, t)], used[(p, t)]) for p, t in sorted(total | used)]


def job_counts(jobs: Iterable[SlurmJob]) -> Counter[tuple[str, str, str]]:
    """(state, partition, qos) -> jobs."""
    return Counter((j.state, j.partition, j.qos) for j in jobs)


def pending_reasons(jobs: Iterable[SlurmJob]) -> Counter[str]:
    """Why the pending jobs wait: reason -> jobs."""
    return Counter(j.reason for j in jobs if j.state == PENDING)
