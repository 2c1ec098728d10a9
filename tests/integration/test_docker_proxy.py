"""The access service in front of a real dockerd, used by invented users
through the docker CLI and the Python SDK (run as their own uids, so the
service learns them from SO_PEERCRED exactly as on the server)."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from ds01.names import user_slice

pytestmark = pytest.mark.integration

ALICE, BOB, ADMIN, GUEST, STRANGER = 61001, 61002, 61003, 61004, 61099
IMG = "ds01-test/debian:bookworm"


@pytest.fixture(scope="module")
def env():
    from docker_env import Env

    try:
        e = Env(simulated_policy())
    except RuntimeError as err:
        pytest.skip(str(err))
    yield e
    e.close()


def simulated_policy() -> str:
    from docker_env import test_policy_text

    # one GPU with a single MIG slice: two users' containers must share its only unit
    return test_policy_text(
        [{"name": "NVIDIA A100-SXM4-40GB", "memory": "40g", "mig_slices": 7, "mig": ["1g.5gb"]}]
    )


def ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def refused(r, words: str):
    assert r.returncode != 0, r.stdout
    assert words in r.stderr, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def alices(env):
    """alice's long-running container and bob's, created through the service."""
    ok(env.as_user(ALICE, "run", "-d", "--name", "a1", IMG, "sleep", "1000"))
    ok(env.as_user(BOB, "run", "-d", "--name", "b1", IMG, "sleep", "1000"))
    return "a1"


def test_run_attaches_and_streams(env):
    assert (
        ok(env.as_user(ALICE, "run", "--rm", IMG, "sh", "-c", "echo out; echo err >&2")) == "out\n"
    )
    r = (env.as_user(ALICE, "run", "--rm", "-i", IMG, "sh", "-c", "tr a-z A-Z"),)
    r = env.as_user(ALICE, "run", "--rm", "-i", IMG, "tr", "a-z", "A-Z", input="hello\n")
    assert ok(r) == "HELLO\n"  # stdin through the hijacked connection, half-closed at EOF


def test_create_is_labelled_limited_and_in_the_users_slice(env, alices):
    info = env.dockerd.inspect("a1")
    labels = info["Config"]["Labels"]
    assert labels["ds01.user"] == "123456@example.lan" and labels["ds01.container_type"] == "docker"
    h = info["HostConfig"]
    assert h["CgroupParent"] == user_slice("student", "123456@example.lan")
    assert (h["Memory"], h["NanoCpus"], h["PidsLimit"]) == (256 * 2**20, 10**9, 256)
    # the limits are in force inside the container (cgroup v1 on this host, v2 on the VM)
    out = ok(
        env.as_user(
            ALICE,
            "exec",
            "a1",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
            "/sys/fs/cgroup/pids/pids.max 2>/dev/null || "
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max",
        )
    )
    assert out.split() == [str(256 * 2**20), "256"]


def test_spoofed_owner_label_is_overwritten(env):
    ok(
        env.as_user(
            BOB,
            "create",
            "--name",
            "spoof",
            "--label",
            "ds01.user=123456@example.lan",
            "--label",
            "devcontainer.local_folder=/x",
            IMG,
            "true",
        )
    )
    labels = env.dockerd.inspect("spoof")["Config"]["Labels"]
    assert labels["ds01.user"] == "654321@example.lan"
    assert labels["ds01.container_type"] == "devcontainer"
    ok(env.as_user(BOB, "rm", "spoof"))


# what bob tries on alice's container a1, and what he is told
OTHERS = [
    ("inspect", ["inspect", "a1"]),
    ("logs", ["logs", "a1"]),
    ("exec", ["exec", "a1", "true"]),
    ("stop", ["stop", "a1"]),
    ("kill", ["kill", "a1"]),
    ("restart", ["restart", "a1"]),
    ("rename", ["rename", "a1", "mine"]),
    ("update", ["update", "--cpus", "0.5", "a1"]),
    ("commit", ["commit", "a1", "stolen"]),
    ("export", ["export", "-o", "x.tar", "a1"]),
    ("rm", ["rm", "-f", "a1"]),
    ("top", ["top", "a1"]),
    ("cp", ["cp", "a1:/etc/hostname", "-"]),
    ("port", ["port", "a1"]),
    ("pause", ["pause", "a1"]),
    ("attach", ["attach", "--no-stdin", "a1"]),
    ("stats", ["stats", "--no-stream", "a1"]),
    ("diff", ["diff", "a1"]),
]


@pytest.mark.parametrize("what,args", OTHERS, ids=[w for w, _ in OTHERS])
def test_no_operation_on_another_users_container(env, alices, what, args):
    r = env.as_user(BOB, *args)
    assert r.returncode != 0, r.stdout
    assert "belongs to 123456@example.lan" in r.stderr or "No such container" in r.stderr, r.stderr
    assert env.dockerd.inspect("a1")["State"]["Running"]


def test_owner_may_do_the_same(env, alices):
    assert ok(env.as_user(ALICE, "exec", "a1", "echo", "mine")) == "mine\n"
    ok(env.as_user(ALICE, "logs", "a1"))
    ok(env.as_user(ALICE, "top", "a1"))
    ok(env.as_user(ALICE, "update", "--cpus", "0.5", "a1"))
    refused(env.as_user(ALICE, "update", "--memory", "2g", "a1"), "above your role's limit")
    r = env.as_user(ALICE, "exec", "-i", "a1", "cat", input="through stdin\n")
    assert ok(r) == "through stdin\n"


def test_lists_and_inspect_show_own_containers_only(env, alices):
    names = ok(env.as_user(BOB, "ps", "-a", "--format", "{{.Names}}")).split()
    assert "b1" in names and "a1" not in names
    names = ok(env.as_user(ALICE, "ps", "-a", "--format", "{{.Names}}")).split()
    assert "a1" in names and "b1" not in names
    names = ok(env.as_user(ADMIN, "ps", "-a", "--format", "{{.Names}}")).split()
    assert {"a1", "b1"} <= set(names)


def test_python_sdk_is_held_to_the_same_rules(env, alices):
    out = env.python_as(
        BOB,
        """
names = [c.name for c in client.containers.list(all=True)]
try:
    client.containers.get('a1')
    got = 'visible'
except docker.errors.APIError as e:
    got = e.explanation
result = {'names': names, 'get': got}
""",
    )
    assert "a1" not in out["names"] and "b1" in out["names"]
    assert "belongs to 123456@example.lan" in out["get"]


def test_events_show_own_objects_only(env, alices):
    since = str(int(time.time()) - 3600)
    until = str(int(time.time()) + 1)
    out = ok(
        env.as_user(BOB, "events", "--since", since, "--until", until, "--format", "{{json .}}")
    )
    events = [json.loads(x) for x in out.splitlines()]
    assert events, "bob should see his own events"
    assert all(e["Actor"]["Attributes"].get("ds01.user") == "654321@example.lan" for e in events)


REFUSED_CREATES = [
    (["--privileged"], "privileged"),
    (["--cap-add", "SYS_ADMIN"], "SYS_ADMIN is not allowed"),
    (["--device", "/dev/null:/dev/x"], "--device"),
    (["--pid", "host"], "process namespace"),
    (["--ipc", "host"], "IPC namespace"),
    (["--userns", "host"], "user namespace"),
    (["--network", "host"], "host's network"),
    (["-v", "/etc:/x"], "is not allowed"),
    (["-v", "/run/docker.sock:/var/run/docker.sock"], "docker socket"),
    (["-v", "/var/run:/r"], "docker socket"),
    (["--security-opt", "seccomp=unconfined"], "security option"),
    (["--gpus", "all"], "--gpus all"),
    (["--volumes-from", "b1"], "belongs to"),
    (["--network", "container:b1"], "belongs to"),
]


@pytest.mark.parametrize(
    "flags,words", REFUSED_CREATES, ids=[" ".join(f) for f, _ in REFUSED_CREATES]
)
def test_refused_creates(env, alices, flags, words):
    refused(env.as_user(ALICE, "run", "--rm", *flags, IMG, "true"), words)


def test_bind_mounts_home_ok_others_home_refused_and_run_as_caller(env):
    a, b = env.caller(ALICE), env.caller(BOB)
    out = ok(
        env.as_user(
            ALICE,
            "run",
            "--rm",
            "-v",
            f"{a.home}/proj:/w",
            IMG,
            "sh",
            "-c",
            "id -u; cat /w/data.txt",
        )
    )
    assert out.split() == ["61001", "123456@example.lan"]
    refused(
        env.as_user(ALICE, "run", "--rm", "-v", f"{b.home}/proj:/w", IMG, "true"), "not allowed"
    )
    refused(
        env.as_user(ALICE, "run", "--rm", "-u", "0", "-v", f"{a.home}/proj:/w", IMG, "true"),
        "run as you",
    )


def test_prune_is_for_admins(env):
    for args in (
        ["image", "prune", "-f"],
        ["system", "prune", "-f"],
        ["container", "prune", "-f"],
        ["volume", "prune", "-f"],
        ["network", "prune", "-f"],
        ["builder", "prune", "-f"],
    ):
        refused(env.as_user(ALICE, *args), "admins only")
    ok(env.as_user(ADMIN, "image", "prune", "-f"))


def test_images_built_are_owned(env):
    a = env.caller(ALICE)
    ok(
        env.as_user(
            ALICE,
            "run",
            "--rm",
            "-v",
            f"{a.home}/proj:/w",
            IMG,
            "sh",
            "-c",
            f"printf 'FROM {IMG}\\nRUN echo built > /built\\n' > /w/Dockerfile",
        )
    )
    ok(env.as_user(ALICE, "build", "-q", "-t", "alice/app", f"{a.home}/proj"))
    labels = env.dockerd.inspect("alice/app")["Config"]["Labels"]
    assert labels["ds01.user"] == "123456@example.lan"
    refused(env.as_user(BOB, "image", "rm", "alice/app"), "only remove images you built")
    refused(env.as_user(BOB, "run", "--rm", "alice/app", "true"), "built by 123456@example.lan")
    refused(env.as_user(BOB, "image", "rm", IMG), "shared base image")
    imgs = ok(env.as_user(BOB, "images", "--format", "{{.Repository}}")).split()
    assert "alice/app" not in imgs and "ds01-test/debian" in imgs
    ok(env.as_user(ALICE, "image", "rm", "alice/app"))


def test_unowned_images_are_the_admins(env):
    a = env.caller(ALICE)
    ok(
        env.as_user(
            ALICE, "run", "--rm", "-v", f"{a.home}/proj:/w", IMG, "sh", "-c",
            f"printf 'FROM {IMG}\\nRUN echo 1 > /a\\nRUN echo 2 > /b\\n' > /w/Dockerfile",
        )
    )  # fmt: skip
    ok(env.as_user(ALICE, "build", "-t", "alice/steps", f"{a.home}/proj"))
    final = env.dockerd.inspect("alice/steps")["Id"]
    parents = [
        i for i in env.dockerd.cli("images", "-aq", "--no-trunc").stdout.split() if i != final
    ]
    middle = env.dockerd.inspect(final)["Parent"]
    assert middle in parents and "ds01.user" not in (
        env.dockerd.inspect(middle)["Config"]["Labels"] or {}
    )
    # the build's intermediate image: nobody's, so neither listed nor usable
    refused(env.as_user(ALICE, "run", "--rm", middle, "true"), "no owner on DS01")
    assert middle[7:19] not in ok(env.as_user(ALICE, "images", "-aq"))
    # a loaded or pulled image would be nobody's too: those are the admins'
    saved = ok(env.as_user(ALICE, "save", "-o", f"{a.home}/steps.tar", "alice/steps")) == ""
    assert saved
    refused(env.as_user(ALICE, "load", "-i", f"{a.home}/steps.tar"), "admins only")
    refused(env.as_user(ALICE, "pull", "debian:bookworm"), "for admins")
    # nobody but an admin takes a shared base image's name
    refused(env.as_user(ALICE, "tag", "alice/steps", IMG), "shared base image name")
    refused(env.as_user(ALICE, "build", "-t", IMG, f"{a.home}/proj"), "shared base image name")
    assert env.dockerd.inspect(IMG)["Id"] != final
    ok(env.as_user(ALICE, "image", "rm", "alice/steps"))


def test_builtin_network_inspect_lists_only_the_callers_containers(env, alices):
    mine = json.loads(ok(env.as_user(ALICE, "network", "inspect", "none")))[0]["Containers"]
    names = {c["Name"] for c in mine.values()}
    assert "b1" not in names


def test_volumes_and_networks_are_owned(env):
    ok(env.as_user(ALICE, "volume", "create", "avol"))
    assert env.dockerd.cli("volume", "inspect", "avol").stdout.count("123456@example.lan") == 1
    refused(env.as_user(BOB, "volume", "rm", "avol"), "belongs to")
    assert "avol" not in ok(env.as_user(BOB, "volume", "ls", "-q")).split()
    assert "avol" in ok(env.as_user(ALICE, "volume", "ls", "-q")).split()
    refused(env.as_user(BOB, "run", "--rm", "-v", "avol:/v", IMG, "true"), "belongs to")
    refused(
        env.as_user(
            ALICE,
            "volume",
            "create",
            "-o",
            "type=none",
            "-o",
            "o=bind",
            "-o",
            "device=/etc",
            "evil",
        ),
        "bind any",
    )
    ok(env.as_user(ALICE, "run", "--rm", "-v", "auto:/v", IMG, "true"))  # created on first use
    assert (
        json.loads(env.dockerd.cli("volume", "inspect", "auto").stdout)[0]["Labels"]["ds01.user"]
        == "123456@example.lan"
    )
    ok(env.as_user(ALICE, "network", "create", "anet"))
    refused(env.as_user(BOB, "network", "rm", "anet"), "belongs to")
    refused(env.as_user(BOB, "network", "inspect", "anet"), "not yours")
    assert "anet" not in ok(env.as_user(BOB, "network", "ls", "--format", "{{.Name}}")).split()
    ok(env.as_user(ALICE, "network", "rm", "anet"))
    ok(env.as_user(ALICE, "volume", "rm", "avol", "auto"))


def test_users_without_role_or_account_are_refused(env):
    refused(env.as_user(GUEST, "ps"), "no DS01 role")
    refused(env.as_user(STRANGER, "ps"), "has no account")


def test_malformed_and_oversized_requests_fail_closed(env):
    import socket

    def raw(data: bytes) -> bytes:
        s = socket.socket(socket.AF_UNIX)
        s.connect(env.sock)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service answered and closed before reading it all: as it should
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        s.close()
        return out

    # as root (uid 0 is an admin) the policy allows much; framing errors are still refused
    assert raw(
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope"
    ).startswith(b"HTTP/1.1 400")
    big = b"{" + b" " * (2 << 20) + b"}"
    assert raw(
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big)
        + big
    ).startswith(b"HTTP/1.1 413")
    assert raw(b"GET /_ping HTTP/1.1\r\nBad Header\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"GET /_ping HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n").startswith(
        b"HTTP/1.1 431"
    )


def allocator_state(env, name: str) -> str | None:
    db = sqlite3.connect(env.allocator_db)
    row = db.execute("SELECT state FROM containers WHERE name = ?", (name,)).fetchone()
    db.close()
    return row[0] if row else None


def wait_state(env, name, want, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if allocator_state(env, name) == want:
            return
        time.sleep(0.1)
    assert allocator_state(env, name) == want


def test_gpu_lifecycle(env):
    ok(env.as_user(ALICE, "create", "--gpus", "1", "--name", "ga", IMG, "sleep", "1000"))
    assert allocator_state(env, "ga") == "assigned"
    info = env.dockerd.inspect("ga")
    uuid = info["Config"]["Labels"]["ds01.gpu"]
    assert uuid.startswith("MIG-") and f"NVIDIA_VISIBLE_DEVICES={uuid}" in info["Config"]["Env"]
    ok(env.as_user(BOB, "create", "--gpus", "1", "--name", "gb", IMG, "sleep", "1000"))
    assert env.dockerd.inspect("gb")["Config"]["Labels"]["ds01.gpu"] == uuid  # the only unit
    ok(env.as_user(ALICE, "start", "ga"))
    assert allocator_state(env, "ga") == "allocated"
    # a second create of the running container's name: dockerd says 409, and the
    # running container keeps its unit (the service forgets only what it assigned)
    r = env.as_user(ALICE, "create", "--gpus", "1", "--name", "ga", IMG, "sleep", "1")
    assert r.returncode != 0 and "already in use" in r.stderr, r.stderr
    assert allocator_state(env, "ga") == "allocated"
    msg = refused(env.as_user(BOB, "start", "gb"), "123456@example.lan")
    assert not env.dockerd.inspect("gb")["State"]["Running"], msg
    refused(env.as_user(ALICE, "restart", "ga"), "docker stop and docker start")
    ok(env.as_user(ALICE, "stop", "-t", "1", "ga"))
    wait_state(env, "ga", "released")  # the die event, seen on the event stream
    ok(env.as_user(BOB, "start", "gb"))
    assert allocator_state(env, "gb") == "allocated"
    ok(env.as_user(BOB, "kill", "gb"))  # stopped some other way: the event stream sees it too
    wait_state(env, "gb", "released")
    ok(env.as_user(ALICE, "rm", "ga"))
    wait_state(env, "ga", None)
    env.dockerd.cli("rm", "gb")  # removed behind the service's back
    wait_state(env, "gb", None)


def test_nvidia_env_cannot_reach_unassigned_gpus(env):
    # Checked on the created container's configuration: what a short `docker
    # run` prints through the service was seen lost once in a loaded full run
    # (an attach race still under investigation; test_run_attaches_and_streams
    # covers streaming).
    ok(env.as_user(ALICE, "create", "--name", "nv", "-e", "NVIDIA_VISIBLE_DEVICES=void", IMG, "true"))
    try:
        assert "NVIDIA_VISIBLE_DEVICES=void" in env.dockerd.inspect("nv")["Config"]["Env"]
    finally:
        ok(env.as_user(ALICE, "rm", "nv"))
    refused(
        env.as_user(ALICE, "run", "--rm", "-e", "NVIDIA_VISIBLE_DEVICES=all", IMG, "true"),
        "NVIDIA_VISIBLE_DEVICES=all",
    )


def test_user_commands(env):
    a = env.caller(ALICE)
    rc, out, err = env.ds01_as(
        ALICE, "container", "create", "tc", "--image", IMG, "--gpu", "--workspace", f"{a.home}/proj"
    )
    assert rc == 0, err
    assert "created tc with GPU unit MIG-" in out
    assert env.dockerd.inspect("tc")["Config"]["User"] == "61001:61001"
    rc, out, err = env.ds01_as(ALICE, "container", "start", "tc")
    assert rc == 0 and "start: tc" in out, err
    assert allocator_state(env, "tc") == "allocated"
    rc, out, err = env.ds01_as(ALICE, "container", "ls")
    assert "tc " in out and "running" in out and "MIG-" in out
    rc, out, err = env.ds01_as(BOB, "container", "stop", "tc")
    assert rc == 1 and "belongs to 123456@example.lan" in err
    rc, out, err = env.ds01_as(BOB, "container", "ls")
    assert "tc " not in out
    rc, out, err = env.ds01_as(BOB, "container", "create", "tb", "--image", IMG, "--gpu", "gpu")
    assert rc == 1 and err.startswith("ds01: "), err  # students may not have a whole GPU
    for action in ("stop", "rm"):
        rc, out, err = env.ds01_as(ALICE, "container", action, "tc")
        assert rc == 0, err
    wait_state(env, "tc", None)
