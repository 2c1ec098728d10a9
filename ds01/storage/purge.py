"""Scratch purge: remove what nobody has used for the configured time.

Safety, in the order it is enforced:

* Only the scratch root of the policy is walked; every directory is opened
  relative to its parent with ``O_NOFOLLOW`` and checked against the ``lstat``
  seen while listing, so a symlink (even one swapped in during the walk) is
  never followed: a symlink is an entry like a file, and removing it removes
  the link, never its target.
* A directory on another filesystem (``st_dev`` differs) is never entered.
* The scratch root and the directories directly in it (the users' private
  directories) are never removed; other directories only when empty and unused.
* A file is *used* at the newest of its access, modification and change
  times (a freshly unpacked archive keeps old mtimes but a new ctime).

What is removed is logged per user; what will go within ``warn_before`` is
written to a notice each user sees at login (``/etc/profile.d/ds01-scratch-notice.sh``).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
import time
from collections import defaultdict
from dataclasses import dataclass, field

from ds01 import events
from ds01.config import Area

NOTICE_DIR = "/var/lib/ds01/scratch-notices"
LOG_FILE = "/var/log/ds01/scratch-purge.log"
LOCK_FILE = "/run/ds01-scratch-purge.lock"
MAX_DEPTH = 256  # deeper trees are reported, not walked (bounded stack and open files)
NOTICE_LINES = 20
DAY = 86400


@dataclass
class Tally:
    removed_files: int = 0
    removed_bytes: int = 0
    removed_dirs: int = 0
    warned: list[tuple[str, int, float]] = field(default_factory=list)  # path, size, due time


@dataclass
class Report:
    root: str
    dry_run: bool
    users: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    skipped: list[str] = field(default_factory=list)  # why something was left alone
    errors: list[str] = field(default_factory=list)
    seen: int = 0

    @property
    def removed_files(self) -> int:
        return sum(t.removed_files for t in self.users.values())


class _Names:
    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, uid: int) -> str:
        if uid not in self._cache:
            try:
                self._cache[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._cache[uid] = f"#{uid}"
        return self._cache[uid]


def _last_used(st: os.stat_result) -> float:
    return max(st.st_atime, st.st_mtime, st.st_ctime)


class Purger:
    def __init__(self, root: str, after: int, warn_before: int, now: float, dry_run: bool):
        if not os.path.isabs(root) or os.path.normpath(root) != root or root == "/":
            raise ValueError(
                f"scratch root {root!r} must be a normalised absolute path other than /"
            )
        self.root, self.after, self.warn_before = root, after, warn_before
        self.now, self.dry_run = now, dry_run
        self.report = Report(root=root, dry_run=dry_run)
        self.name_of = _Names()
        self.dev = -1

    def run(self) -> Report:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            self.dev = os.fstat(fd).st_dev
            self._walk(fd, self.root, 0)
        finally:
            os.close(fd)
        return self.report

    def _walk(self, dir_fd: int, path: str, depth: int) -> bool:
        """Purge inside ``dir_fd``; return True when it is left empty."""
        try:
            with os.scandir(dir_fd) as it:
                entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        except OSError as e:
            self.report.errors.append(f"{path}: cannot list: {e.strerror}")
            return False
        left = len(entries)
        for name, st in entries:
            self.report.seen += 1
            full = f"{path}/{name}"
            if stat.S_ISDIR(st.st_mode):
                if self._directory(dir_fd, name, full, st, depth):
                    left -= 1
            elif self._file(dir_fd, name, full, st):
                left -= 1
        return left == 0

    def _directory(self, dir_fd: int, name: str, full: str, st: os.stat_result, depth: int) -> bool:
        if st.st_dev != self.dev:
            self.report.skipped.append(f"{full}: another filesystem, not entered")
            return False
        if depth + 1 > MAX_DEPTH:
            self.report.skipped.append(f"{full}: deeper than {MAX_DEPTH} levels, not walked")
            return False
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError as e:  # ELOOP: replaced by a symlink since it was listed
            self.report.errors.append(f"{full}: not opened: {e.strerror}")
            return False
        try:
            now_st = os.fstat(fd)
            if (now_st.st_dev, now_st.st_ino) != (st.st_dev, st.st_ino):
                self.report.errors.append(f"{full}: changed while being purged, left alone")
                return False
            empty = self._walk(fd, full, depth + 1)
        finally:
            os.close(fd)
        if not empty or depth == 0 or self.now - _last_used(st) < self.after:
            return False
        tally = self.report.users[self.name_of(st.st_uid)]
        if not self.dry_run:
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except OSError as e:  # something was created in it meanwhile: keep it
                self.report.errors.append(f"{full}: not removed: {e.strerror}")
                return False
        tally.removed_dirs += 1
        return True

    def _file(self, dir_fd: int, name: str, full: str, st: os.stat_result) -> bool:
        idle = self.now - _last_used(st)
        if idle < self.after:
            if idle >= self.after - self.warn_before:
                due = _last_used(st) + self.after
                self.report.users[self.name_of(st.st_uid)].warned.append((full, st.st_size, due))
            return False
        if not self.dry_run:
            try:
                now_st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if (now_st.st_ino, _last_used(now_st)) != (st.st_ino, _last_used(st)):
                    return False  # used or replaced since it was listed
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return True
            except OSError as e:
                self.report.errors.append(f"{full}: not removed: {e.strerror}")
                return False
        tally = self.report.users[self.name_of(st.st_uid)]
        tally.removed_files += 1
        tally.removed_bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return True


def purge(area: Area, now: float | None = None, dry_run: bool = False) -> Report:
    """Purge a scratch area as its policy says (``area.purge``)."""
    if area.kind != "scratch" or area.purge is None:
        raise ValueError(f"{area.path} is not a scratch area with a purge policy")
    p = area.purge
    report = Purger(
        area.path, p.after, p.warn_before, time.time() if now is None else now, dry_run
    ).run()
    if not dry_run:
        for user, t in report.users.items():
            if t.removed_files or t.removed_dirs:
                events.emit("scratch_purge", user=user, area=area.path, files=t.removed_files,
                            bytes=t.removed_bytes, dirs=t.removed_dirs)  # fmt: skip
    return report


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def notice_text(user: str, tally: Tally, area: Area) -> str:
    assert area.purge is not None
    items = sorted(tally.warned, key=lambda w: w[2])
    total = sum(size for _, size, _ in items)
    first = time.strftime("%Y-%m-%d", time.localtime(items[0][2]))
    lines = [
        f"ds01: {len(items)} file(s) ({human(total)}) of yours in {area.link or area.path} "
        f"have not been used for a while and will be deleted from {first} on (scratch keeps files "
        f"{area.purge.after // DAY} days after their last use).",
        "      Move what you need to your home or a project, or use it to keep it. Soonest first:",
    ]
    for path, size, due in items[:NOTICE_LINES]:
        lines.append(
            f"      {time.strftime('%Y-%m-%d', time.localtime(due))}  {human(size):>10}  {path}"
        )
    if len(items) > NOTICE_LINES:
        lines.append(f"      ... and {len(items) - NOTICE_LINES} more")
    return "\n".join(lines) + "\n"


def write_notices(report: Report, area: Area, notice_dir: str = NOTICE_DIR) -> None:
    """One notice per user with files due; stale notices are removed. The
    notice directory is root's (mode 0711); each notice is its user's, 0600."""
    due = {u: t for u, t in report.users.items() if t.warned and not u.startswith("#")}
    for name in os.listdir(notice_dir):
        if name not in due:
            os.unlink(os.path.join(notice_dir, name))
    for user, tally in due.items():
        pw = pwd.getpwnam(user)
        tmp = os.path.join(notice_dir, f".{user}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(notice_text(user, tally, area))
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.replace(tmp, os.path.join(notice_dir, user))


def log_lines(report: Report, when: float) -> list[str]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))
    verb = "would remove" if report.dry_run else "removed"
    out = []
    for user, t in sorted(report.users.items()):
        if t.removed_files or t.removed_dirs:
            out.append(
                f"{stamp} {report.root} user={user} {verb} files={t.removed_files} "
                f"dirs={t.removed_dirs} bytes={t.removed_bytes}"
            )
        if t.warned:
            out.append(f"{stamp} {report.root} user={user} warned files={len(t.warned)}")
    out += [f"{stamp} {report.root} skipped: {s}" for s in report.skipped]
    out += [f"{stamp} {report.root} error: {e}" for e in report.errors]
    out.append(
        f"{stamp} {report.root} done: {report.seen} entries seen, {verb} "
        f"{report.removed_files} files"
    )
    return out


class Locked(Exception):
    pass


def run_locked(
    area: Area,
    dry_run: bool,
    log_file: str = LOG_FILE,
    notice_dir: str = NOTICE_DIR,
    lock_file: str = LOCK_FILE,
    now: float | None = None,
) -> Report:
    """The scheduled job: one purge at a time, logged, notices refreshed."""
    with open(lock_file, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(
                f"another scratch purge holds {lock_file}; not starting a second"
            ) from None
        now = time.time() if now is None else now
        report = purge(area, now=now, dry_run=dry_run)
        if not dry_run:
            os.makedirs(os.path.dirname(log_file), mode=0o750, exist_ok=True)
            with open(log_file, "a") as f:
                f.write("\n".join(log_lines(report, now)) + "\n")
            if os.path.isdir(notice_dir):
                write_notices(report, area, notice_dir)
        return report
