"""Every unit test writes the event log into its own temporary file, never
the host's /var/log/ds01 (tests that read events use ``events_file``)."""

import pytest

from ds01 import events


@pytest.fixture(autouse=True)
def events_file(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    monkeypatch.setattr(events, "EVENTS_FILE", path)
    return path
