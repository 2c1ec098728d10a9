"""restic command lines from the policy, and restic's ``--json`` output read back.

Secrets never reach a command line: the repository password is read by restic
from ``RESTIC_PASSWORD_FILE``; credentials of a remote repository come from the
policy's root-only ``env_file`` into restic's environment only.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import TypedDict

from ds01.config import Backup, Policy

DOCKER_VOLUMES = "/var/lib/docker/volumes"
STATE_DIR = "/var/lib/ds01"
BACKUP_STATE = "/var/lib/ds01/backup"  # status file, staged database copies
STAGING = f"{BACKUP_STATE}/staging"
RESTIC = "/usr/bin/restic"


def sources(policy: Policy) -> list[str]:
    """The paths one backup run saves, in a stable order, without duplicates."""
    b = _backup(policy)
    src = b.sources
    paths: list[str] = []
    if src.homes:
        paths.append(policy.identity.home.root)
    if src.shared_areas:
        paths += [a.path for a in policy.storage.areas.values() if a.kind != "scratch"]
    if src.docker_volumes:
        paths.append(DOCKER_VOLUMES)
    if src.etc_ds01:
        paths.append("/etc/ds01")
    if src.state:
        paths.append(STATE_DIR)  # holds STAGING, the database's consistent copy
    paths += src.configs + src.extra
    return list(dict.fromkeys(paths))


def excludes(policy: Policy) -> list[str]:
    """restic's exclude options: the user's marks, caches, and the live files
    that only a staged copy represents (the allocator database, the repository
    itself when it lies under a saved path)."""
    b = _backup(policy)
    args: list[str] = []
    if b.exclude_caches:
        args.append("--exclude-caches")
    for name in b.exclude_if_present:
        args += ["--exclude-if-present", name]
    for pattern in b.exclude:
        args += ["--exclude", pattern]
    db = os.path.join(policy.gpu.state_dir, "gpu", "allocator.sqlite3")
    for live in (db, db + "-wal", db + "-shm", db + "-journal"):
        args += ["--exclude", live]
    if b.repository.startswith("/"):
        args += ["--exclude", b.repository]
    return args


def backup_argv(policy: Policy, tag: str = "ds01") -> list[str]:
    return [RESTIC, "backup", "--json", "--tag", tag,
            *excludes(policy), *[p for p in sources(policy) if os.path.lexists(p)]]  # fmt: skip


def forget_argv(policy: Policy) -> list[str]:
    r = _backup(policy).retention
    return [RESTIC, "forget", "--prune", "--tag", "ds01", "--keep-daily", str(r.keep_daily),
            "--keep-weekly", str(r.keep_weekly), "--keep-monthly", str(r.keep_monthly)]  # fmt: skip


def check_argv(policy: Policy) -> list[str]:
    return [RESTIC, "check", f"--read-data-subset={_backup(policy).check_subset}"]


def restore_argv(snapshot: str, target: str, include: list[str]) -> list[str]:
    argv = [RESTIC, "restore", snapshot, "--target", target]
    for path in include:
        argv += ["--include", path]
    return argv


def env(policy: Policy, base: dict[str, str] | None = None) -> dict[str, str]:
    """restic's environment: repository, password file, the env file's credentials."""
    b = _backup(policy)
    out = {k: v for k, v in (base if base is not None else os.environ).items()
           if not k.startswith(("RESTIC_", "AWS_", "B2_", "AZURE_", "GOOGLE_"))}  # fmt: skip
    if b.env_file:
        out.update(read_env_file(b.env_file))
    out["RESTIC_REPOSITORY"] = b.repository
    out["RESTIC_PASSWORD_FILE"] = b.password_file
    out.setdefault("RESTIC_CACHE_DIR", f"{BACKUP_STATE}/cache")
    return out


def read_env_file(path: str) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, optional quotes), as systemd's EnvironmentFile."""
    out: dict[str, str] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            name = name.removeprefix("export ").strip()
            if not sep or not name.replace("_", "").isalnum():
                raise ValueError(f"{path}:{n}: expected NAME=value")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out[name] = value
    return out


def _backup(policy: Policy) -> Backup:
    if policy.backup is None:
        raise ValueError("the policy has no backup section")
    return policy.backup


class Summary(TypedDict):
    """The last line restic ``backup --json`` prints (its ``summary`` message)."""

    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    total_files_processed: int
    total_bytes_processed: int
    total_duration: float


def parse_backup_output(text: str) -> tuple[Summary | None, list[str]]:
    """The summary of a ``restic backup --json`` run and its errors (unreadable
    files and the like, which restic reports and skips: exit code 3)."""
    summary: Summary | None = None
    errors: list[str] = []
    for line in text.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("message_type") == "summary":
            summary = {k: msg.get(k, 0) for k in Summary.__annotations__}  # type: ignore[assignment]
            summary["snapshot_id"] = str(msg.get("snapshot_id", ""))
        elif msg.get("message_type") == "error":
            err = msg.get("error")
            what = err.get("message", "") if isinstance(err, dict) else str(err)
            errors.append(f"{msg.get('item', '')}: {what}".strip(": "))
    return summary, errors


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    hostname: str


def parse_snapshots(text: str) -> list[Snapshot]:
    """``restic snapshots --json``: oldest first, as restic lists them."""
    data = json.loads(text or "[]")
    return [Snapshot(id=s["id"], short_id=s.get("short_id", s["id"][:8]), time=s["time"],
                     paths=tuple(s.get("paths") or ()), tags=tuple(s.get("tags") or ()),
                     hostname=s.get("hostname", "")) for s in data or []]  # fmt: skip


class Node(TypedDict):
    path: str
    size: int
    mode: int


def parse_ls(text: str) -> list[Node]:
    """The regular files of ``restic ls --json SNAPSHOT`` (its first line is the snapshot)."""
    out: list[Node] = []
    for line in text.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("struct_type") == "node" and msg.get("type") == "file":
            out.append({"path": msg["path"], "size": int(msg.get("size", 0)),
                        "mode": int(msg.get("mode", 0))})  # fmt: skip
    return out


def call(policy: Policy, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run restic with the policy's environment, output captured as text."""
    return subprocess.run(argv, env=env(policy), capture_output=True, text=True, **kw)
