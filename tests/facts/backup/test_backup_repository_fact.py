"""facts.backup: ds01 backup init --check's answer read back."""

from facts.backup import BackupRepository


def test_ready_absent_and_missing_tool():
    assert BackupRepository().process(["ready"]) == "ready"
    assert BackupRepository().process(["absent"]) == "absent"
    assert BackupRepository().process([]) == "absent"  # ds01 not installed yet
    assert BackupRepository().default() == "absent"
