"""``ds01 gpu ...`` end to end on a temporary state directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ds01.cli import main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def policy_file(tmp_path):
    text = (REPO / "config/resource-allocation.yaml").read_text()
    text = text.replace(
        "state_dir: /var/lib/ds01",
        f"state_dir: {tmp_path}/state\n  runtime_dir: {tmp_path}/run",
    )
    text = text.replace("backend: auto", "backend: simulated")
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return str(p)


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SUDO_UID", raising=False)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_as_root_then_as_an_ordinary_user(policy_file, as_root, capsys, monkeypatch):
    code, out, _ = run(capsys, "gpu", "status", "--json", "--policy", policy_file)
    snap = json.loads(out)
    assert code == 0 and len(snap["units"]) == 10
    assert {u["state"] for u in snap["units"]} == {"free"}
    # A decision leaves the snapshot an ordinary user reads.
    from ds01.config import load_policy
    from ds01.gpu.allocator import Allocator

    alloc = Allocator(load_policy(policy_file))
    alloc.assign("c1", "123456", "student", kind="3g.20gb")
    alloc.allocate("c1")
    alloc.close()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out, _ = run(capsys, "gpu", "status", "--policy", policy_file)
    assert code == 0
    row = next(line for line in out.splitlines() if "3g.20gb" in line)
    assert "allocated" in row and "123456" in row and "c1" in row
    assert "9 of 10 units free" in out
    snapshot = Path(policy_file).parent / "run/status.json"
    assert oct(snapshot.stat().st_mode & 0o777) == "0o644"


def test_snapshot_is_rewritten_after_a_reboot(policy_file, as_root, capsys, monkeypatch):
    run(capsys, "gpu", "status", "--json", "--policy", policy_file)
    snapshot = Path(policy_file).parent / "run/status.json"
    snapshot.unlink()  # /run is a tmpfs: empty after a reboot
    assert run(capsys, "gpu", "reconcile", "--policy", policy_file)[0] == 0
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out, _ = run(capsys, "gpu", "status", "--policy", policy_file)
    assert code == 0 and "10 of 10 units free" in out


def test_status_before_anything_ran(policy_file, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run(capsys, "gpu", "status", "--policy", policy_file)
    assert code == 1 and "has not run" in err


def test_queue_join_acts_for_the_sudo_caller(policy_file, as_root, capsys, monkeypatch):
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    monkeypatch.setenv("SUDO_UID", str(os.getuid()))
    import ds01.identity.local as local

    monkeypatch.setattr(local, "role_of", lambda user, policy: "student" if user == me else None)
    # --policy is refused through sudo: a user must not point root at their own file.
    code, _, err = run(capsys, "gpu", "queue", "join", "--kind", "1g.5gb", "--policy", policy_file)
    assert code == 2 and "--policy cannot be used through sudo" in err
    monkeypatch.setattr("ds01.gpu.cli.DEFAULT_POLICY_PATH", policy_file)
    code, out, _ = run(capsys, "gpu", "queue", "join", "--kind", "1g.5gb")
    assert code == 0 and "is reserved for you until" in out  # a 1g.5gb was free
    code, out, _ = run(capsys, "gpu", "queue", "--json")
    (entry,) = json.loads(out)
    assert (entry["user"], entry["state"], entry["kind"]) == (me, "reserved", "1g.5gb")
    code, out, _ = run(capsys, "gpu", "notice")
    assert "DS01 GPU: a 1g.5gb" in out
    code, out, _ = run(capsys, "gpu", "queue", "join", "--kind", "gpu")
    assert code == 1
    code, out, _ = run(capsys, "gpu", "queue", "leave", "--all")
    assert out.strip() == "left 1 queue entry"


def test_bad_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["gpu", "queue", "join", "--kind", "huge"])
    assert e.value.code == 2


def test_admin_commands_need_root(policy_file, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as e:
        main(["gpu", "drain", "MIG-x", "--policy", policy_file])
    assert e.value.code == 2 and "admin command" in capsys.readouterr().err


def test_drain_release_and_reconcile(policy_file, as_root, capsys):
    code, out, _ = run(capsys, "gpu", "status", "--json", "--policy", policy_file)
    uuid = json.loads(out)["units"][0]["uuid"]
    assert run(capsys, "gpu", "drain", uuid, "--policy", policy_file)[0] == 0
    snap = json.loads(run(capsys, "gpu", "status", "--json", "--policy", policy_file)[1])
    assert snap["units"][0]["state"] == "drained"
    assert run(capsys, "gpu", "drain", uuid, "--undo", "--policy", policy_file)[0] == 0
    code, out, _ = run(capsys, "gpu", "release", uuid, "--policy", policy_file)
    assert code == 0 and "was not held" in out
    code, _, err = run(capsys, "gpu", "release", "MIG-none", "--policy", policy_file)
    assert code == 1 and "no GPU unit MIG-none" in err
    code, out, _ = run(capsys, "gpu", "reconcile", "--policy", policy_file)
    assert code == 0 and "reconciled in" in out
    # the pass leaves its readings of every unit, world-readable, for the exporter
    readings = Path(policy_file).parent / "run/readings.json"
    data = json.loads(readings.read_text())
    assert oct(readings.stat().st_mode & 0o777) == "0o644" and data["backend"] == "simulated"
    assert set(data["units"]) == {u["uuid"] for u in snap["units"]} and data["unread_gpus"] == []


def test_probe_without_nvml_prints_an_empty_layout(capsys):
    code, out, _ = run(capsys, "gpu", "probe", "--json", "--backend", "nvml")
    data = json.loads(out)
    assert code == 0 and data["gpus"] == [] and data["backend"] == "none" and data["error"]


def test_notice_says_so_by_hand_and_is_silent_at_login(policy_file, as_root, capsys, monkeypatch):
    run(capsys, "gpu", "status", "--policy", policy_file)  # the snapshot exists
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)  # run by hand, in a terminal
    code, out, _ = run(capsys, "gpu", "notice", "--policy", policy_file)
    assert code == 0 and out.startswith("DS01 GPU: nothing to report for ")
    code, out, _ = run(capsys, "gpu", "notice", "--login", "--policy", policy_file)
    assert code == 0 and out == ""  # the login script: quiet
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert run(capsys, "gpu", "notice", "--policy", policy_file)[1] == ""  # into a pipe


def test_allocator_database_is_root_only(policy_file, as_root, capsys):
    from ds01.config import load_policy
    from ds01.gpu.allocator import Allocator

    policy = load_policy(policy_file)
    db = Path(policy.gpu.state_dir) / "gpu/allocator.sqlite3"
    alloc = Allocator(policy)
    alloc.assign("c1", "123456", "student")
    alloc.close()
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700
    assert (Path(policy.gpu.runtime_dir) / "status.json").stat().st_mode & 0o777 == 0o644
    db.chmod(0o644)  # as an earlier version left it
    Allocator(policy).close()
    assert db.stat().st_mode & 0o777 == 0o600


def _laid_out(policy_file: str) -> str:
    text = (
        Path(policy_file)
        .read_text()
        .replace(
            "  reconcile_interval: 1m\n",
            "  reconcile_interval: 1m\n  layout:\n"
            "    - {gpus: [2], model: NVIDIA A100-SXM4-40GB, mig: [3g.20gb, 2g.10gb, 1g.5gb, 1g.5gb]}\n"
            "    - {gpus: [3], model: NVIDIA A100-SXM4-40GB, mig: [3g.20gb, 3g.20gb]}\n",
            1,
        )
    )
    Path(policy_file).write_text(text)
    return policy_file


def test_layout_plan_on_the_simulated_backend(policy_file, as_root, capsys):
    policy_file = _laid_out(policy_file)
    from ds01.config import load_policy
    from ds01.gpu.allocator import Allocator

    alloc = Allocator(load_policy(policy_file))
    [unit] = [s.unit for s in alloc.status() if s.unit.gpu_index == 3 and s.unit.kind == "1g.5gb"]
    for s in alloc.status():
        if s.unit.gpu_index == 2:
            alloc.drain(s.unit.uuid, by="root")  # so that the student gets GPU 3's
    alloc.assign("nb", "111111", "student", kind="1g.5gb")
    alloc.allocate("nb")
    alloc.close()
    code, out, _ = run(capsys, "gpu", "layout", "plan", "--policy", policy_file)
    assert code == 0
    assert "GPU 2 NVIDIA A100-SXM4-40GB: as the policy asks" in out
    assert "GPU 3 NVIDIA A100-SXM4-40GB: MIG 2g.10gb + 2g.10gb + 2g.10gb + 1g.5gb -> " in out
    assert f"vanishes: GPU 3 slice 1g.5gb ({unit.uuid}), held by 111111 (container 'nb')" in out
    code, out, _ = run(capsys, "gpu", "layout", "plan", "--json", "--policy", policy_file)
    gpus = {g["gpu"]: g for g in json.loads(out)["gpus"]}
    assert (gpus[2]["changes"], gpus[3]["changes"]) == (False, True)
    assert len(gpus[3]["vanishing"]) == 4
    # the simulated layout is the policy's gpu.simulated: apply refuses, at boot it is a no-op
    code, _, err = run(capsys, "gpu", "layout", "apply", "--policy", policy_file)
    assert code == 2 and "only real GPUs are re-partitioned" in err
    code, out, _ = run(capsys, "gpu", "layout", "apply", "--boot", "--policy", policy_file)
    assert code == 0 and "nothing to re-partition" in out


def test_layout_commands_are_for_admins(policy_file, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as e:
        run(capsys, "gpu", "layout", "plan", "--policy", policy_file)
    assert e.value.code == 2


def test_layout_resume_puts_back_what_an_apply_left_drained(policy_file, as_root, capsys):
    from ds01.config import load_policy
    from ds01.gpu.allocator import Allocator

    alloc = Allocator(load_policy(policy_file))
    alloc.drain_gpus([3], "ds01 gpu layout apply (root)")
    alloc.close()
    code, out, _ = run(capsys, "gpu", "layout", "resume", "--policy", policy_file)
    assert code == 0 and out == "GPU 3 back in the pool (drained by ds01 gpu layout apply (root))\n"
    alloc = Allocator(load_policy(policy_file))
    assert {s.state for s in alloc.status() if s.unit.gpu_index == 3} == {"free"}
    alloc.close()
    code, out, _ = run(capsys, "gpu", "layout", "resume", "--policy", policy_file)
    assert out == "no GPU was left drained by a layout apply\n"
