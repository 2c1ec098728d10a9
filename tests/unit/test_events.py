"""ds01.events: one JSON line per event, appended atomically by concurrent
writers, never raising into the caller; reading and filtering."""

import json
import multiprocessing
import os

import pytest

from ds01 import events


def test_emit_appends_one_line(events_file):
    assert events.emit("membership", user="j.doe@example.lan", action="add", group="ds01-student")
    assert events.emit("backup", result="ok", bytes=10)
    lines = events_file.read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["membership", "backup"]
    assert json.loads(lines[0])["user"] == "j.doe@example.lan"
    assert oct(events_file.stat().st_mode & 0o777) == "0o640"


def _writer(path, n, tag):
    events.EVENTS_FILE = path
    for i in range(n):
        events.emit("load", writer=tag, i=i, pad="x" * 300)


def test_concurrent_writers_never_interleave(events_file):
    procs = [multiprocessing.Process(target=_writer, args=(events_file, 200, t)) for t in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = events_file.read_text().splitlines()
    assert len(lines) == 1200
    parsed = [json.loads(line) for line in lines]  # every line whole
    assert {(e["writer"], e["i"]) for e in parsed} == {(t, i) for t in range(6) for i in range(200)}


def test_unwritable_log_never_raises(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(events, "EVENTS_FILE", tmp_path / "missing-dir" / "events.jsonl")
    before = events.dropped
    assert events.emit("docker_refused", user="lt.student") is False
    assert events.dropped == before + 1
    assert "dropped event docker_refused" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_full_disk_never_raises(monkeypatch, capsys):
    monkeypatch.setattr(events, "EVENTS_FILE", "/dev/full")  # every write: ENOSPC
    assert events.emit("gpu_allocated", user="lt.student") is False
    assert "No space left" in capsys.readouterr().err


def test_read_skips_torn_lines_and_includes_rotated(events_file):
    rotated = events_file.with_name(events_file.name + ".1")
    rotated.write_text('{"time": 1, "kind": "old"}\n')
    events_file.write_text('{"time": 2, "kind": "new", "user": "a"}\n{"time": 3, "kin\n')
    assert [e["kind"] for e in events.read(events_file)] == ["old", "new"]


def test_select_user_kind_family_since():
    evs = [{"time": 10, "kind": "gpu_allocated", "user": "a"},
           {"time": 20, "kind": "gpu_released", "user": "b"},
           {"time": 30, "kind": "backup", "result": "ok"},
           {"time": 40, "kind": "backup_check", "result": "ok"}]
    assert [e["time"] for e in events.select(evs, user="a")] == [10]
    assert [e["time"] for e in events.select(evs, kind="gpu")] == [10, 20]
    assert [e["time"] for e in events.select(evs, kind="backup")] == [30, 40]
    assert [e["time"] for e in events.select(evs, since=25)] == [30, 40]


def test_parse_since():
    assert events.parse_since("2h", 10000.0) == 10000.0 - 7200
    assert events.parse_since("2026-12-01", 0) > 0
    with pytest.raises(ValueError, match="--since"):
        events.parse_since("yesterday-ish", 0)
