"""The scheduled backup work: a backup run, the repository check and the
restore drill. All three take one lock, so no two ever overlap (a run that
finds the lock held gives up at once and says so); each leaves its result in
the status file that ``ds01 backup status``, ``ds01 doctor`` and the exporter
read, and an event in the event log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ds01 import events
from ds01.backup import restic
from ds01.config import Policy

LOCK_FILE = "/run/lock/ds01-backup.lock"
STATUS_FILE = Path(restic.BACKUP_STATE) / "status.json"


class Busy(Exception):
    """Another backup, check or drill holds the lock."""


@contextlib.contextmanager
def locked(path: str | None = None) -> Iterator[None]:
    path = path or LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another backup run holds {path}") from None
        yield
    finally:
        os.close(fd)


def read_status(path: Path | None = None) -> dict:
    path = path or STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _update_status(section: str, values: dict, path: Path | None = None) -> dict:
    """Merge ``values`` into ``section`` of the status file, atomically; a
    failure keeps the section's last success."""
    path = path or STATUS_FILE
    status = read_status(path)
    merged = {**status.get(section, {}), **values}
    status[section] = merged
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status.")
    with os.fdopen(fd, "w") as f:
        json.dump(status, f, indent=1)
    os.chmod(tmp, 0o644)  # sizes and times only: the exporter and doctor read it
    os.replace(tmp, path)
    return merged


def stage_database(db: str, staging: str | None = None) -> str | None:
    """A consistent copy of the SQLite database ``db`` in ``staging`` through
    SQLite's online backup (writers may go on meanwhile); None if there is no
    database yet."""
    if not os.path.exists(db):
        return None
    staging = staging or restic.STAGING
    os.makedirs(staging, mode=0o700, exist_ok=True)
    dest = os.path.join(staging, os.path.basename(db))
    tmp = dest + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    os.replace(tmp, dest)
    return dest


def backup(policy: Policy) -> int:
    """One backup run, then the retention's ``forget --prune``; returns an exit code."""
    with locked():
        started = time.time()
        _update_status("backup", {"last_attempt": started})
        staged = stage_database(os.path.join(policy.gpu.state_dir, "gpu", "allocator.sqlite3"))
        proc = restic.call(policy, restic.backup_argv(policy))
        summary, errors = restic.parse_backup_output(proc.stdout)
        # restic exits 3 when it skipped unreadable files: the snapshot exists but is incomplete
        ok = proc.returncode == 0 and summary is not None
        values: dict = {"last_result": "ok" if ok else "failed", "exit_code": proc.returncode,
                        "errors": errors[:20] or _tail(proc.stderr),
                        "finished": time.time()}  # fmt: skip
        if summary is not None:
            values.update(snapshot_id=summary["snapshot_id"],
                          files=summary["total_files_processed"],
                          bytes=summary["total_bytes_processed"],
                          data_added=summary["data_added"],
                          files_new=summary["files_new"], files_changed=summary["files_changed"],
                          duration=round(time.time() - started, 1),
                          database_staged=staged is not None)  # fmt: skip
        if ok:
            values["last_success"] = values["finished"]
        _update_status("backup", values)
        events.emit("backup", result=values["last_result"], **{
            k: values[k] for k in ("snapshot_id", "files", "bytes", "data_added", "duration")
            if k in values})  # fmt: skip
        print(f"backup {values['last_result']}: " + (
            f"snapshot {summary['snapshot_id'][:8]}, {summary['total_files_processed']} files, "
            f"{summary['total_bytes_processed']} bytes, {summary['data_added']} bytes added, "
            f"{values['duration']}s" if summary else f"exit {proc.returncode}: "
            + "; ".join(values["errors"])), flush=True)  # fmt: skip
        if proc.returncode not in (0, 3) or summary is None:
            return proc.returncode or 1
        forget = restic.call(policy, restic.forget_argv(policy))
        if forget.returncode != 0:
            print(f"forget --prune failed: {'; '.join(_tail(forget.stderr))}", flush=True)
            return forget.returncode
        return proc.returncode


def check(policy: Policy) -> int:
    """``restic check`` reading a subset of the data (the policy's check_subset)."""
    with locked():
        started = time.time()
        proc = restic.call(policy, restic.check_argv(policy))
        ok = proc.returncode == 0
        values = {"last_attempt": started, "finished": time.time(),
                  "last_result": "ok" if ok else "failed",
                  "errors": [] if ok else _tail(proc.stderr or proc.stdout)}  # fmt: skip
        if ok:
            values["last_success"] = values["finished"]
        _update_status("check", values)
        events.emit("backup_check", result=values["last_result"],
                    subset=policy.backup.check_subset if policy.backup else None)  # fmt: skip
        print(f"check {values['last_result']}" + ("" if ok else ": " + "; ".join(values["errors"])))
        return proc.returncode


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sha256_dump(policy: Policy, snapshot: str, path: str) -> str:
    """The file's checksum as the repository holds it (``restic dump``, streamed)."""
    h = hashlib.sha256()
    with subprocess.Popen([restic.RESTIC, "dump", snapshot, path], env=restic.env(policy),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p:  # fmt: skip
        assert p.stdout is not None
        while chunk := p.stdout.read(1 << 20):
            h.update(chunk)
    if p.returncode != 0:
        raise RuntimeError(f"restic dump {path} exited {p.returncode}")
    return h.hexdigest()


def drill(policy: Policy, sample: int | None = None, rng: random.Random | None = None) -> int:
    """Restore a random sample of the latest snapshot's files into a temporary
    directory and compare each with the snapshot's record: its size from
    ``restic ls``, its content's SHA-256 from ``restic dump``."""
    assert policy.backup is not None
    n = sample or policy.backup.drill_sample
    rng = rng or random.SystemRandom()
    with locked():
        started = time.time()
        listing = restic.call(policy, [restic.RESTIC, "ls", "--json", "latest"])
        # restic --include takes patterns: a name with \ * ? [ would not name itself
        files = [f for f in restic.parse_ls(listing.stdout)
                 if f["size"] > 0 and not any(c in f["path"] for c in "\\*?[")]
        problems: list[str] = []
        picked = rng.sample(files, min(n, len(files))) if files else []
        if listing.returncode != 0 or not picked:
            why = "; ".join(_tail(listing.stderr))
            problems.append(f"no snapshot with files to restore: {why}")
        workdir = tempfile.mkdtemp(prefix="drill.", dir=restic.BACKUP_STATE)
        restored_bytes = 0
        try:
            if picked:
                proc = restic.call(policy, restic.restore_argv(
                    "latest", workdir, [f["path"] for f in picked]))  # fmt: skip
                if proc.returncode != 0:
                    problems.append("restore failed: " + "; ".join(_tail(proc.stderr)))
            for f in picked if not problems else ():
                got = os.path.join(workdir, f["path"].lstrip("/"))
                if not os.path.isfile(got):
                    problems.append(f"{f['path']}: not restored")
                    continue
                size = os.path.getsize(got)
                restored_bytes += size
                if size != f["size"]:
                    problems.append(f"{f['path']}: {size} bytes restored, {f['size']} recorded")
                elif sha256_file(got) != _sha256_dump(policy, "latest", f["path"]):
                    problems.append(f"{f['path']}: checksum differs from the snapshot's")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        ok = not problems
        values = {"last_attempt": started, "finished": time.time(),
                  "last_result": "ok" if ok else "failed", "files": len(picked),
                  "bytes": restored_bytes, "duration": round(time.time() - started, 1),
                  "problems": problems[:20]}  # fmt: skip
        if ok:
            values["last_success"] = values["finished"]
        _update_status("drill", values)
        events.emit("restore_drill", result=values["last_result"], files=len(picked),
                    bytes=restored_bytes, problems=len(problems))  # fmt: skip
        print(f"restore drill {values['last_result']}: {len(picked)} files, {restored_bytes} "
              f"bytes compared in {values['duration']}s" + "".join(f"\n  {p}" for p in problems),
              flush=True)  # fmt: skip
        return 0 if ok else 1


def _tail(text: str, n: int = 5) -> list[str]:
    return [line for line in (text or "").strip().splitlines()[-n:] if line]
