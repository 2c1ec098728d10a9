"""The converged VM, from the outside: deploys/docker.py and the access service.

    DS01_VM=dk python3 -m pytest tests/infra/test_docker.py

Needs a VM converged with deploys/all.py (role groups, docker-users, slices
and the GPU allocator come from the other deploys). Users are the VM's local
test accounts: lt.student and lt.student2 (students), lt.researcher, lt.admin.
Every user command goes through /usr/local/bin/docker exactly as a login would.
"""

from __future__ import annotations

import base64
import json
import shlex

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.vm


POLICY = yaml.safe_load((REPO / "tests/vm/policy.yaml").read_text())
IMG = "ds01-vm/tiny:1"
S1, S2, RES, ADM = "lt.student", "lt.student2", "lt.researcher", "lt.admin"

# A tiny image from the VM's own binaries (the VM has no registry).
MAKE_IMAGE = r"""
set -e
docker -H unix:///run/docker.sock image inspect {img} >/dev/null 2>&1 && exit 0
d=$(mktemp -d); cd $d; ln -s usr/bin bin; ln -s usr/lib lib; ln -s usr/lib64 lib64
mkdir -p usr/bin usr/lib usr/lib64 tmp proc sys dev etc; chmod 1777 tmp
for b in dash sleep cat id echo env ls touch head stat; do
  f=$(readlink -f /usr/bin/$b); cp $f .$f
  ldd $f | grep -o '/[^ ]*' | while read l; do r=$(readlink -f $l); mkdir -p .$(dirname $r); \
    cp $r .$r; [ "$l" = "$r" ] || { mkdir -p .$(dirname $l); [ -e .$l ] || ln -s $r .$l; }; done
done
ln -s dash usr/bin/sh; echo 'root:x:0:0:root:/:/bin/sh' > etc/passwd
tar -c . | docker -H unix:///run/docker.sock import - {img} >/dev/null
"""


@pytest.fixture(scope="module", autouse=True)
def tiny_image(vm):
    vm.check_output("sh -c " + shlex.quote(MAKE_IMAGE.replace("{img}", IMG)))


def dk(vm, user: str, args: str, stdin: str | None = None):
    """``docker ARGS`` as ``user``, the way their shell would run it."""
    cmd = f"cd /tmp && docker {args}"
    if stdin is not None:
        cmd = f"printf %s {shlex.quote(stdin)} | docker {args}"
    return vm.run(f"runuser -u {user} -- sh -c {shlex.quote(cmd)}")


def ok(r) -> str:
    assert r.rc == 0, r.stderr
    return r.stdout


def refused(r, words: str) -> str:
    assert r.rc != 0, r.stdout
    assert words in r.stderr, r.stderr
    return r.stderr


def real(vm, args: str) -> str:
    return vm.check_output(f"docker -H unix:///run/docker.sock {args}")


def inspect(vm, ref: str) -> dict:
    return json.loads(real(vm, f"inspect {ref}"))[0]


# --------------------------------------------------------------------------
# The engine and the sockets
# --------------------------------------------------------------------------


def test_engine_settings(vm):
    assert vm.service("docker").is_running and vm.service("docker").is_enabled
    cfg = json.loads(vm.file("/etc/docker/daemon.json").content_string)
    assert cfg["exec-opts"] == ["native.cgroupdriver=systemd"]
    assert cfg["cgroup-parent"] == "ds01.slice" and cfg["live-restore"] is True
    assert cfg["log-opts"] == {
        "max-size": POLICY["docker"]["log_max_size"],
        "max-file": str(POLICY["docker"]["log_max_files"]),
    }
    assert real(vm, "info --format '{{.CgroupDriver}}'").strip() == "systemd"


def test_real_socket_is_root_and_admins_only(vm):
    sock = vm.file("/run/docker.sock")
    assert (sock.user, sock.group, sock.mode) == ("root", "ds01-admin", 0o660)
    assert vm.group("docker").exists and not vm.check_output("getent group docker").split(":")[3]
    r = dk(vm, S1, "-H unix:///run/docker.sock ps")
    assert r.rc != 0 and "permission denied" in r.stderr
    ok(vm.run("runuser -u lt.admin -- /usr/bin/docker -H unix:///run/docker.sock version"))


def test_access_service_and_its_socket(vm):
    assert vm.service("ds01-docker.socket").is_enabled
    assert vm.service("ds01-docker.service").is_running
    sock = vm.file("/run/ds01/docker.sock")
    assert (sock.user, sock.group, sock.mode) == ("root", "docker-users", 0o660)
    assert S1 in vm.check_output("getent group docker-users")
    r = vm.run("runuser -u nobody -- /usr/bin/docker -H unix:///run/ds01/docker.sock ps")
    assert r.rc != 0 and "permission denied" in r.stderr


def test_access_service_has_room_for_its_connection_cap(vm):
    assert vm.check_output("systemctl show -p LimitNOFILE --value ds01-docker") == "65536"
    # it writes the GPU status snapshot itself (ProtectSystem=strict leaves /run read-only)
    assert POLICY["gpu"].get("runtime_dir", "/run/ds01-gpu") in vm.check_output(
        "systemctl show -p ReadWritePaths --value ds01-docker"
    )


def test_homes_and_areas_are_nosuid_nodev(vm):
    for path in ("/home", "/srv/ds01"):
        opts = vm.check_output(f"findmnt -no OPTIONS -M {path}").splitlines()[-1].split(",")
        assert "nosuid" in opts and "nodev" in opts, (path, opts)
    # a set-uid root file in a home (as a container could write it) gives no root
    home = vm.check_output(f"getent passwd {S1}").split(":")[5]
    vm.check_output(f"install -m 4755 -o root /usr/bin/id {home}/suid-id")
    try:
        out = vm.check_output(f"runuser -u {S1} -- {home}/suid-id -u")
        assert out == vm.check_output(f"id -u {S1}"), "the set-uid bit took effect"
    finally:
        vm.run(f"rm -f {home}/suid-id")


def test_login_shells_point_at_the_service(vm):
    out = vm.check_output(f"su - {S1} -c 'echo $DOCKER_HOST'")
    assert out == "unix:///run/ds01/docker.sock"
    assert "DS01 docker" in ok(dk(vm, S1, "ds01"))


def test_nvidia_device_permissions_are_configured(vm):
    gid = vm.check_output("getent group ds01-admin").split(":")[2]
    conf = vm.file("/etc/modprobe.d/ds01-nvidia.conf").content_string
    assert f"NVreg_DeviceFileGID={gid} NVreg_DeviceFileMode=0660" in conf
    assert (
        'GROUP="ds01-admin", MODE="0660"'
        in vm.file("/etc/udev/rules.d/70-ds01-nvidia.rules").content_string
    )


def test_image_prune_is_scheduled(vm):
    cron = vm.file("/etc/cron.d/ds01-image-prune").content_string
    assert (f"{POLICY['schedules']['image_prune']} root /usr/local/bin/ds01 job run image_prune"
            " -- /usr/local/bin/ds01 images prune") in cron
    out = vm.check_output("ds01 images prune --dry-run")
    assert "image prune:" in out and IMG not in out  # fresh images are kept


# --------------------------------------------------------------------------
# Isolation matrix
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s1(vm):
    for user in (S1, S2):
        vm.run(f"runuser -u {user} -- docker rm -f $(runuser -u {user} -- docker ps -aq) ")
    ok(dk(vm, S1, f"run -d --name s1 {IMG} sleep 1000"))
    ok(dk(vm, S1, "volume create s1vol"))
    ok(dk(vm, S1, "network create s1net"))
    yield "s1"
    dk(vm, S1, "rm -f s1")
    dk(vm, S1, "volume rm s1vol")
    dk(vm, S1, "network rm s1net")


MATRIX = [  # what lt.student2 tries on lt.student's things
    "inspect s1",
    "logs s1",
    "exec s1 true",
    "attach --no-stdin s1",
    "stop s1",
    "kill s1",
    "restart s1",
    "rename s1 x",
    "update --cpus 0.5 s1",
    "commit s1 stolen",
    "export -o /tmp/x s1",
    "rm -f s1",
    "top s1",
    "pause s1",
    "cp s1:/etc/passwd /tmp/p",
    "stats --no-stream s1",
    "volume rm s1vol",
    "volume inspect s1vol",
    "network rm s1net",
    "network inspect s1net",
    "network connect s1net s1",
]


@pytest.mark.parametrize("args", MATRIX)
def test_other_student_is_refused(vm, s1, args):
    r = dk(vm, S2, args)
    assert r.rc != 0, r.stdout
    assert "lt.student" in r.stderr or "not yours" in r.stderr, r.stderr
    assert inspect(vm, "s1")["State"]["Running"]


def test_owner_and_admin_are_allowed(vm, s1):
    assert ok(dk(vm, S1, "exec s1 echo mine")) == "mine\n"
    assert ok(dk(vm, S1, "exec -i s1 cat", stdin="piped")) == "piped"
    ok(dk(vm, S1, "logs s1"))
    ok(dk(vm, ADM, "logs s1"))
    assert "s1" in ok(dk(vm, ADM, "ps --format '{{.Names}}'")).split()


def test_lists_show_own_objects_only(vm, s1):
    assert "s1" not in ok(dk(vm, S2, "ps -a --format '{{.Names}}'")).split()
    assert "s1" in ok(dk(vm, S1, "ps -a --format '{{.Names}}'")).split()
    assert "s1vol" not in ok(dk(vm, S2, "volume ls -q")).split()
    assert "s1net" not in ok(dk(vm, S2, "network ls --format '{{.Name}}'")).split()


def test_python_sdk_of_another_user_is_refused(vm, s1):
    code = (
        "import docker; c = docker.from_env()\n"
        "print(sorted(x.name for x in c.containers.list(all=True)))\n"
        "try:\n    c.containers.get('s1').stop(); print('STOPPED')\n"
        "except docker.errors.APIError as e:\n    print('REFUSED', e.explanation)\n"
    )
    out = vm.check_output(
        f"runuser -u {S2} -- env DOCKER_HOST=unix:///run/ds01/docker.sock "
        f"/opt/ds01/venv/bin/python -c {shlex.quote(code)}"
    )
    assert "'s1'" not in out.splitlines()[0]
    assert "REFUSED" in out and "belongs to lt.student" in out


@pytest.mark.parametrize(
    "args,words",
    [
        ("image prune -f", "admins only"),
        ("system prune -f", "admins only"),
        ("volume prune -f", "admins only"),
        ("builder prune -f", "admins only"),
        (f"image rm {IMG}", "shared base image"),
        (f"run --rm --privileged {IMG} true", "privileged"),
        (f"run --rm --cap-add SYS_ADMIN {IMG} true", "SYS_ADMIN is not allowed"),
        (f"run --rm --pid host {IMG} true", "process namespace"),
        (f"run --rm --network host {IMG} true", "host's network"),
        (f"run --rm --device /dev/null {IMG} true", "--device"),
        (f"run --rm -v /etc:/x {IMG} true", "not allowed"),
        (f"run --rm -v /home/lt.student2:/x {IMG} true", "not allowed"),
        (f"run --rm -v /run/docker.sock:/var/run/docker.sock {IMG} true", "docker socket"),
        (f"run --rm -u 0 -v /home/lt.student:/w {IMG} true", "run as you"),
        (f"run --rm --gpus all {IMG} true", "--gpus all"),
        (f"run --rm --security-opt systempaths=unconfined {IMG} true", "/proc paths"),
        (f"run --rm -p 80:80 {IMG} true", "below 1024"),
        (f"run --rm --ulimit rtprio=99 {IMG} true", "--ulimit rtprio"),
        (f"run --rm -v /home/lt.student:/w:rshared {IMG} true", "propagation"),
        (f"pull {IMG}", "for admins"),
    ],
)
def test_refused_for_students(vm, args, words):
    refused(dk(vm, S1, args), words)


# Raw Docker API requests as lt.student, in the spellings dockerd's Go decoder
# also accepts: the service must read them the same way (issue 9's classes).
RAW = r"""
import json, socket, sys
def call(head, body=b""):
    s = socket.socket(socket.AF_UNIX); s.connect("/run/ds01/docker.sock")
    s.sendall(head + body); s.shutdown(socket.SHUT_WR)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out.decode(errors="replace")
def create(body, version="v1.41"):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    head = ("POST /%s/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            "\r\nContent-Length: %d\r\n\r\n" % (version, len(data)))
    return call(head.encode(), data)
img, home = sys.argv[1], sys.argv[2]
dup = b'{"Image": "%s", "HostConfig": {"Privileged": false, "privileged": true}}' % img.encode()
fold = b'{"Image": "%s", "HostConfig": {"Privileged": false}, "hostConfig": {}}' % img.encode()
print(json.dumps({
  "user0": create({"Image": img, "user": "0:0", "hostconfig": {"binds": [home + ":/w"]}}),
  "lower": create({"Image": img, "hostconfig": {"privileged": True}}),
  "dup": create(dup),
  "fold": create(fold),
  "old": create({"Image": img}, "v1.23"),
  "upgrade": call(b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"),
  "lf": call(b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\nX: 1\nTransfer-Encoding: chunked\r\n\r\n"),
  "repeat": call(b"POST /v1.41/commit?container=s1&container=s1&repo=x HTTP/1.1\r\nHost: x\r\n\r\n"),
}))
"""


def test_raw_api_spellings_are_read_as_dockerd_reads_them(vm, s1):
    home = vm.check_output(f"getent passwd {S1}").split(":")[5]
    # base64: the script's \r\n must reach Python as escapes, not as line ends
    code = f"import base64; exec(base64.b64decode({base64.b64encode(RAW.encode())!r}))"
    out = vm.check_output(
        f"runuser -u {S1} -- /opt/ds01/venv/bin/python -c {shlex.quote(code)} {IMG} {home}"
    )
    answers = json.loads(out)
    assert answers["lower"].startswith("HTTP/1.1 403") and "privileged" in answers["lower"]
    assert answers["user0"].startswith("HTTP/1.1 403") and "run as you" in answers["user0"]
    for key in ("dup", "fold", "old", "upgrade", "lf", "repeat"):
        assert answers[key].startswith("HTTP/1.1 400"), (key, answers[key][:300])
    privileged = vm.check_output(
        "docker -H unix:///run/docker.sock ps -aq | xargs -r "
        "docker -H unix:///run/docker.sock inspect --format '{{.HostConfig.Privileged}}'"
    )
    assert "true" not in privileged.split()
