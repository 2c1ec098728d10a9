"""The test VMs as a two-node Slurm cluster (deploys/slurm.py), from the outside.

    tests/run cluster        (sets DS01_CLUSTER=1 and DS01_VM_NODES; the
                              policy gains tests/vm/cluster.yaml)

The head VM's two simulated MIG GPUs (2 and 3) are Slurm's (partition gpu):
GPU 2 is 3g.20gb, 2g.10gb, 1g.5gb, 1g.5gb; GPU 3 is 2g.10gb x3, 1g.5gb. The
second VM, ds01-node2, is a compute node only (partition compute), with one
whole A100. The device files are character devices without a driver:
opening one the job's cgroup allows fails with ENXIO ("No such device or
address"), one it denies with EPERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time

import pytest
from conftest import as_login, as_user, ssh_argv, vm_host

if os.environ.get("DS01_CLUSTER") != "1":
    pytest.skip("the VM is a cluster only in `tests/run cluster`", allow_module_level=True)

pytestmark = pytest.mark.vm
# tests/vm/inventory.py's DS01_VM_NODES: "<vm name>=<slurm name>"
NODE_VM, NODE = os.environ.get("DS01_VM_NODES", "=").split(",")[0].split("=")
JOB = "-p gpu -t 5 --mem=32M"
# as_user keeps root's working directory: a batch job must not write there
# (slurmstepd, as the user, fails to open /root/slurm-N.out and the job dies
# at once, which frees its share of the quota).
BATCH = f"sbatch --chdir=/tmp --output=/dev/null {JOB}"


def wait_state(vm, job: str, want: set[str], timeout=90) -> str:
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        state = vm.check_output(f"squeue -h -j {job} -o '%T|%r'")
        if state.split("|")[0] in want:
            return state
        time.sleep(2)
    pytest.fail(f"job {job} never reached {want}: {state!r}")


def test_services_run(vm):
    for unit in ("munge", "mariadb", "slurmdbd", "slurmctld", "slurmd"):
        assert vm.service(unit).is_running and vm.service(unit).is_enabled, unit


@pytest.fixture(scope="module")
def node():
    """The compute-only node (the second VM)."""
    if not NODE_VM:
        pytest.fail("DS01_VM_NODES names no compute node VM (tests/run cluster sets it)")
    return vm_host(NODE_VM)


def test_sinfo_shows_both_nodes_and_their_gres(vm):
    lines = vm.check_output("sinfo -h -N -o '%N|%P|%G|%T'").splitlines()
    nodes = {n: (p, sorted(g.split(",")), t) for n, p, g, t in (ln.split("|") for ln in lines)}
    assert nodes == {
        "ds01-test": ("gpu*", ["gpu:1g.5gb:3", "gpu:2g.10gb:4", "gpu:3g.20gb:1"], "idle"),
        NODE: ("compute", ["gpu:a100:1"], "idle"),
    }, lines


def test_the_compute_node_has_slurm_and_not_the_interactive_platform(node):
    for unit in ("munge", "slurmd"):
        assert node.service(unit).is_running and node.service(unit).is_enabled, unit
    for unit in ("slurmctld", "slurmdbd"):
        assert not node.service(unit).is_running, unit
    for unit in ("podman.socket", "podman.service"):  # jobs run rootless Podman, no root API
        assert not node.service(unit).is_enabled and not node.service(unit).is_running, unit
    # the head's own parts are not deployed here (the image has their packages)
    for path in ("/etc/systemd/system/ds01-docker.socket", "/etc/cron.d/ds01-users-sync",
                 "/etc/systemd/system/ds01-exporter.service"):  # fmt: skip
        assert not node.file(path).exists, path
    assert node.file("/usr/local/bin/ds01").exists  # but the package is
    # the controller's munge key, root-only
    key = node.file("/etc/munge/munge.key")
    assert (key.user, key.mode) == ("munge", 0o400)


def test_a_job_on_the_compute_node_gets_its_whole_gpu(vm, node):
    out = f"/tmp/ds01-test-node-job-{os.getpid()}.out"
    sub = as_user(vm, "lt.researcher", (
        f"sbatch --parsable --chdir=/tmp -p compute -t 5 --mem=32M --gres=gpu:a100:1 "
        f"--output={out} --wrap 'echo cuda=$CUDA_VISIBLE_DEVICES; head -c0 /dev/nvidia0'"
    ))  # fmt: skip
    assert sub.rc == 0, sub.stderr
    job = sub.stdout.strip()
    deadline = time.time() + 90
    while vm.check_output(f"squeue -h -j {job} -o %T") and time.time() < deadline:
        time.sleep(2)
    text = node.check_output(f"cat {out}")
    assert "cuda=0" in text, text
    assert "'/dev/nvidia0' for reading: No such device or address" in text, text
    node.run(f"rm -f {out}")


def test_ssh_to_the_compute_node_lands_in_a_job_or_nowhere(vm, node):
    # The test key as the users' own on the node (a real cluster shares /home).
    for user in ("lt.student", "lt.admin"):
        node.check_output(
            f"install -d -m 700 -o {user} -g {user} /home/{user}/.ssh && "
            f"install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys /home/{user}/.ssh/"
        )

    def ssh(user: str, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(ssh_argv(user, NODE_VM) + [command], capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    admin = ssh("lt.admin", "echo in")
    assert admin.returncode == 0 and admin.stdout == "in\n", admin.stderr  # ds01-admin: exempt
    refused = ssh("lt.student", "echo in")
    assert refused.returncode == 255 and refused.stdout == "", refused
    log = node.check_output("journalctl -b --no-pager -o cat | grep -a 'lt.student' | tail -n 20")
    assert "Access denied for user lt.student by PAM account configuration" in log, log
    sub = as_user(vm, "lt.student", "sbatch --parsable --chdir=/tmp --output=/dev/null "
                                    "-p compute -t 5 --mem=32M --wrap 'sleep 300'")  # fmt: skip
    assert sub.rc == 0, sub.stderr
    job = sub.stdout.strip()
    try:
        wait_state(vm, job, {"RUNNING"})
        inside = ssh("lt.student", "cat /proc/self/cgroup")
        assert inside.returncode == 0, inside.stderr
        assert f"/job_{job}/" in inside.stdout, inside.stdout  # adopted into the job
    finally:
        vm.run(f"scancel {job}")


def test_researcher_gets_exactly_the_mig_device_asked_for(vm):
    out = as_user(vm, "lt.researcher", (
        f"srun {JOB} --gres=gpu:3g.20gb:1 sh -c '"
        "echo cuda=$CUDA_VISIBLE_DEVICES; "
        "for d in /dev/nvidia2 /dev/nvidia-caps/nvidia-cap282 /dev/nvidia-caps/nvidia-cap283 "
        "/dev/nvidia-caps/nvidia-cap291 /dev/nvidia3; do head -c0 $d 2>&1 || true; done'"
    ))  # fmt: skip
    assert out.rc == 0, out.stderr
    text = out.stdout
    assert "cuda=" in text and "cuda=\n" not in text  # Slurm named the device
    caps = "/dev/nvidia-caps/nvidia-cap"
    for allowed in ("/dev/nvidia2", f"{caps}282", f"{caps}283"):  # the 3g.20gb of GPU 2
        assert f"'{allowed}' for reading: No such device or address" in text, text
    for denied in (f"{caps}291", "/dev/nvidia3"):  # GPU 2's 2g.10gb, GPU 3
        assert f"'{denied}' for reading: Operation not permitted" in text, text


def test_accounts_and_qos_follow_the_roles(vm):
    assoc = vm.check_output("sacctmgr -n -P show assoc format=Account,User,QOS")
    rows = {tuple(line.split("|")) for line in assoc.splitlines()}
    assert ("ds01-student", "lt.student", "ds01-student") in rows
    assert ("ds01-researcher", "lt.researcher", "ds01-researcher") in rows
    student2 = [r for r in rows if r[1] == "lt.student2"]
    assert len(student2) == 1 and student2[0][2].startswith("ds01-uid"), student2  # override
    qos = vm.check_output("sacctmgr -n -P show qos ds01-student format=MaxWall,MaxTRESPU,Flags")
    assert qos.startswith("7-00:00:00|") and "billing=14" in qos and "DenyOnLimit" in qos


def test_job_over_max_runtime_is_refused(vm):
    out = as_user(vm, "lt.student", "sbatch -p gpu -t 8-00:00:00 --mem=32M --wrap true")
    assert out.rc != 0 and "policy" in out.stderr.lower(), out.stderr


def job_field(vm, job: str, key: str) -> str:
    text = vm.check_output(f"scontrol show job {job}")
    return next(w.split("=", 1)[1] for w in text.split() if w.startswith(key + "="))


def test_job_beyond_the_gpu_quota_is_refused_alone_and_waits_beside_others(vm):
    # lt.student2's override: quota 1.0 GPU = 7 billing units; a 2g.10gb bills 2.
    alone = as_user(vm, "lt.student2", f"{BATCH} --gres=gpu:2g.10gb:4 --wrap true")
    assert alone.rc != 0 and "QOSMaxBillingPerUser" in alone.stderr, alone.stderr
    first = as_user(vm, "lt.student2", f"{BATCH} --parsable --gres=gpu:2g.10gb:3 "
                                       "--wrap 'sleep 120'")  # fmt: skip
    assert first.rc == 0, first.stderr
    a = first.stdout.strip()
    second = None
    try:
        wait_state(vm, a, {"RUNNING"})
        uid = vm.check_output("id -u lt.student2")
        assert job_field(vm, a, "QOS") == f"ds01-uid{uid}"  # the override's, not "normal"
        assert "billing=6," in job_field(vm, a, "TRES")
        second = as_user(vm, "lt.student2", f"{BATCH} --parsable --gres=gpu:2g.10gb:1 "
                                            "--wrap true")  # fmt: skip
        assert second.rc == 0, second.stderr
        b = second.stdout.strip()
        assert "billing=2," in job_field(vm, b, "TRES")
        wait_state(vm, b, {"PENDING"})
        time.sleep(5)  # a scheduling pass later it still waits, for a QOS limit
        state = vm.check_output(f"squeue -h -j {b} -o '%T|%r'")
        # With the VM's policy the role's one CPU per user binds before the
        # GPU quota (Slurm names the first limit hit: cpu comes before billing).
        assert re.fullmatch(r"PENDING\|QOSMax\w+PerUser(Limit)?", state), state
        assert vm.check_output(f"squeue -h -j {a} -o %T") == "RUNNING"  # waits beside it
    finally:
        vm.run(f"scancel {a} {second.stdout.strip() if second else ''}")


def test_a_user_added_to_the_directory_reaches_slurm_after_one_sync(vm):
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    import samba_ad

    ad = Path(os.environ["DS01_TEST_AD_DIR"])
    # Not 7xxxxx: the VM's user_filter leaves the AD's generated 7xxxxx accounts out.
    name = str(random.randint(610000, 689999))
    samba_ad.add_user(ad, name, [])
    fq = f"{name}@example.lan"
    vm.run("sss_cache -E")
    assert vm.run("ds01 users sync").rc == 0
    r = vm.run("ds01 slurm sync")
    assert r.rc == 0, r.stderr
    assoc = vm.check_output(f"sacctmgr -n -P show assoc user={fq} format=Account,QOS")
    assert assoc == "ds01-student|ds01-student", assoc
    again = vm.run("ds01 slurm sync")
    assert again.rc == 0 and "match the policy" in again.stdout


def test_a_users_image_runs_in_a_job_with_the_jobs_gpus_and_mount_rules(vm):
    from test_docker import MAKE_IMAGE  # a tiny image from the VM's own binaries

    vm.check_output("sh -c " + shlex.quote(MAKE_IMAGE.replace("{img}", "ds01-vm/tiny:1")))
    user = "lt.researcher"
    # docs/cluster.md: build with docker (the DS01 service), load into podman
    built = as_login(vm, user, "cd /tmp && printf 'FROM ds01-vm/tiny:1\\nLABEL job=1\\n' | "
                              "docker build -q -t researcher-job:1 -")  # fmt: skip
    assert built.rc == 0, built.stderr
    loaded = as_login(vm, user, "cd /tmp && docker save researcher-job:1 | podman load")
    assert loaded.rc == 0, loaded.stderr
    out = f"/tmp/ds01-test-container-{os.getpid()}.out"
    inside = ("ls /dev /dev/nvidia-caps; cat /proc/self/cgroup; "
              "ls /work >/dev/null && echo home-mounted")  # fmt: skip
    script = f"ds01 slurm run -v $HOME:/work researcher-job:1 sh -c {shlex.quote(inside)}"
    sub = as_login(vm, user, f"sbatch --parsable --chdir=/tmp -p gpu -t 5 --mem=384M "
                             f"--gres=gpu:3g.20gb:1 --output={out} --wrap {shlex.quote(script)}")
    assert sub.rc == 0, sub.stderr
    job = sub.stdout.strip()
    try:
        deadline = time.time() + 180
        while vm.check_output(f"squeue -h -j {job} -o %T") and time.time() < deadline:
            time.sleep(3)
        text = vm.check_output(f"cat {out}")
        names = set(text.split())
        # GPU 2's 3g.20gb (the GPU and its two capability files), nothing else
        assert {"nvidia2", "nvidia-cap282", "nvidia-cap283"} <= names, text
        assert not names & {"nvidia0", "nvidia1", "nvidia3", "nvidia-cap291"}, text
        assert f"/job_{job}/" in text, text  # in the job's cgroup, under its limits
        assert "home-mounted" in text, text
        assert job_field(vm, job, "ExitCode") == "0:0"
    finally:
        vm.run(f"scancel {job}; rm -f {out}")
    # the docker service's mount rule: nothing outside the home and the role's areas
    refused = as_user(vm, user, "srun -p gpu -t 5 --mem=256M "  # ds01 itself needs ~60M
                                "ds01 slurm run -v /etc:/x researcher-job:1 true")  # fmt: skip
    assert refused.rc != 0 and "is not allowed" in refused.stderr, refused.stderr
    # and not outside a job
    outside = as_user(vm, user, "ds01 slurm run researcher-job:1 true")
    assert outside.rc == 2 and "inside a Slurm job" in outside.stderr, outside.stderr


# A long timeout: under TCG, with the VM's timers running, one scrape took 9-15 s
# over HTTP (node-exporter's 6 s) though the exporter's collect is ~1.1 s.
SCRAPE = "python3 -c \"import urllib.request; print(urllib.request.urlopen(" \
         "'http://127.0.0.1:9901/metrics', timeout=60).read().decode())\""  # fmt: skip


def scrape_until(vm, pattern: str, within: float = 90) -> str:
    """The exporter's page once it matches ``pattern``: it serves its poller's
    last reading of Slurm (ds01.cluster.queue.Poller, every 15 s)."""
    deadline = time.monotonic() + within
    while True:
        text = vm.check_output(SCRAPE)
        if re.search(pattern, text, re.M) or time.monotonic() > deadline:
            return text
        time.sleep(3)


def test_status_and_the_exporter_show_a_users_slurm_job(vm):
    from test_monitoring import query, wait_for

    sub = as_user(vm, "lt.researcher", f"{BATCH} --parsable --gres=gpu:3g.20gb:1 "
                                       "--wrap 'sleep 120'")  # fmt: skip
    assert sub.rc == 0, sub.stderr
    jid = sub.stdout.strip()
    try:
        wait_state(vm, jid, {"RUNNING"})
        mine = as_user(vm, "lt.researcher", "ds01 status")
        assert mine.rc == 0, mine.stderr
        assert re.search(r"^Slurm: [1-9]\d* running, \d+ pending; GPUs allocated: .*"
                         r"gpu 3g\.20gb 1/1", mine.stdout, re.M), mine.stdout  # fmt: skip
        assert re.search(rf"^ +{jid} lt\.researcher +gpu +RUNNING +3g\.20gb x1$",
                         mine.stdout, re.M), mine.stdout  # fmt: skip
        other = as_user(vm, "lt.student", "ds01 status --json")
        assert other.rc == 0, other.stderr
        slurm = json.loads(other.stdout)["slurm"]
        assert slurm["up"] and slurm["running"] >= 1  # the queue they wait in, counted
        assert jid not in {j["id"] for j in slurm["jobs"]}  # but not another's job
        # The exporter (its own user, its sandbox) read it with squeue and sinfo
        # (the exposition format sorts the labels).
        running = r'^ds01_slurm_jobs\{partition="gpu",qos="ds01-researcher",state="RUNNING"\} [1-9]'
        text = scrape_until(vm, running)
        assert "ds01_slurm_up 1.0" in text, text
        assert re.search(running, text, re.M), text
        age = float(re.search(r"^ds01_slurm_read_age_seconds (\S+)", text, re.M).group(1))
        assert age < 60, f"the exporter's reading of Slurm is {age} s old"
        assert 'ds01_slurm_user_gpus{type="3g.20gb",user="lt.researcher"} 1.0' in text
        assert 'ds01_slurm_gres{kind="allocated",partition="gpu",type="3g.20gb"} 1.0' in text
        # and Prometheus has it from its scrape
        wait_for("ds01_slurm_user_gpus in Prometheus", lambda: query(
            vm, 'ds01_slurm_user_gpus{user="lt.researcher",type="3g.20gb"} == 1'), 30)  # fmt: skip
    finally:
        vm.run(f"scancel {jid}")


def test_slurm_down_is_one_status_line_and_a_gauge(vm):
    vm.check_output("systemctl stop slurmctld")
    try:
        out = as_user(vm, "lt.student", "ds01 status")
        assert out.rc == 0, out.stderr
        # squeue retries the controller for 9 s before its own "connect failure"
        # (measured here); the reader gives up at queue.TIMEOUT, 5 s.
        lines = [line for line in out.stdout.splitlines() if line.startswith("Slurm")]
        assert lines == ["Slurm: not reachable (squeue: no answer in 5s)"], out.stdout
        text = scrape_until(vm, r"^ds01_slurm_up 0\.0")
        assert "ds01_slurm_up 0.0" in text and "ds01_gpu_snapshot_up" in text
        assert 'ds01_exporter_collector_errors{collector="slurm"} 0.0' in text
    finally:
        vm.check_output("systemctl start slurmctld")
        wait = "for i in $(seq 30); do scontrol ping | grep -q UP && exit 0; sleep 1; done; exit 1"
        vm.check_output(wait)
