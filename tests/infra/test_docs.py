"""The user guide runs: its marked blocks (tests/docblocks.py) on the converged VM.

    DS01_VM=h15 python3 -m pytest tests/infra/test_docs.py

Each `<!-- run -->` block of docs/user/ runs in a login shell of lt.student, an
ordinary student, in page order; `<!-- file -->` blocks are written into their
home; the output shown after a block must appear. The VM has no registry, so
the lab's base image the guide builds FROM (ds01/pytorch:...) is stood in for
by a small image made from the VM's own Python with the same contract: one
environment at /opt/venv on PATH, writable by every uid, WORKDIR /workspace
(images/pytorch/Dockerfile is checked to keep that contract in
tests/unit/test_images.py). It is shared the way an admin shares a base image:
built on the engine's socket with the label ds01.shared=true. Its JupyterLab
and ipykernel are images/pytorch's versions (tests/vm/jupyter-wheels.txt), so
the guide's Jupyter steps run too: the server side as the guide shows, then the
laptop side from the controller (the guide's SSH tunnel as the user, the
token, the kernel "Python 3 (DS01 /opt/venv)" running a cell in the GPU
container, a notebook saved into ~/myproject). The VS Code steps run the way
VS Code runs them: the Dev Containers CLI (tests/vm/devcontainers-cli.txt)
over the user's ssh login, with the guide's devcontainer.json.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket
from conftest import REPO, as_login, as_user, ssh_argv
from docblocks import guide_steps, unmatched

pytestmark = pytest.mark.vm

USER = "lt.student"
STEPS = guide_steps()
GUIDE_DOCKERFILE = next(s.text for s in STEPS if s.arg == "~/myproject/Dockerfile")
BASE = re.search(r"^ARG BASE=(\S+)", GUIDE_DOCKERFILE, re.M).group(1)
REAL = "docker -H unix:///run/docker.sock"
JUPYTER_LOCK = REPO / "tests/vm/jupyter-wheels.txt"
JUPYTER_WHEELS = REPO / ".cache/wheels/jupyter"
JUPYTER_TAR = "/var/tmp/ds01-docs-jupyter.tar.gz"
KERNEL = "Python 3 (DS01 /opt/venv)"
DEVCONTAINERS_LOCK = REPO / "tests/vm/devcontainers-cli.txt"
DEVCONTAINERS_CLI = REPO / ".cache/devcontainers/cli.tgz"
TOOLS = "/usr/local/lib/ds01-docs-tools"  # in the VM while this module runs: node and the CLI

# The stand-in's root filesystem: python3 with its standard library, ensurepip's
# wheels, the few programs the guide runs inside a container, and Jupyter's
# part of /opt/venv (in the one imported layer: as a layer of its own, ADD and
# commit took twice as long under TCG).
MAKE_BASE = r"""
set -e
{real} image inspect {img} >/dev/null 2>&1 && exit 0
if ! {real} image inspect ds01-docs/rootfs:4 >/dev/null 2>&1; then
d=$(mktemp -d); cd $d; ln -s usr/bin bin; ln -s usr/lib lib; ln -s usr/lib64 lib64
mkdir -p usr/bin usr/lib usr/lib64 usr/share tmp proc sys dev etc; chmod 1777 tmp
py=$(readlink -f /usr/bin/python3)
cp -a /usr/lib/$(basename $py) usr/lib/; cp -a /usr/share/python-wheels usr/share/
bins="$py $(readlink -f /usr/bin/dash /usr/bin/sleep /usr/bin/id /usr/bin/cat /usr/bin/ls /usr/bin/uname)"
for f in $bins $(readlink -f /usr/bin/which); do mkdir -p .$(dirname $f); cp $f .$f; done
[ -e usr/bin/which ] || ln -s $(basename $(readlink -f /usr/bin/which)) usr/bin/which
# The system libraries manylinux wheels may link (Jupyter's pyzmq, rpds-py, ...).
{ ldd $bins /usr/lib/$(basename $py)/lib-dynload/*.so 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*'
  for l in libstdc++.so.6 libgcc_s.so.1 librt.so.1 libpthread.so.0 libdl.so.2 libm.so.6 libutil.so.1; do
    ls /usr/lib/x86_64-linux-gnu/$l; done; } | sort -u |
while read l; do r=$(readlink -f $l); mkdir -p .$(dirname $r); [ -e .$r ] || cp $r .$r; \
  [ "$l" = "$r" ] || { mkdir -p .$(dirname $l); [ -e .$l ] || ln -s $r .$l; }; done
ln -sf $(basename $py) usr/bin/python3; ln -sf dash usr/bin/sh
echo 'root:x:0:0:root:/:/bin/sh' > etc/passwd
tar -xzf {jupyter}
tar -c . | {real} import - ds01-docs/rootfs:4 >/dev/null
cd /; rm -rf $d
fi
b=$(mktemp -d)
cat > $b/make_env.py <<'EOF'
# /opt/venv with pip unpacked from Debian's wheel (ensurepip takes minutes
# under TCG), writable by every uid, and a HOME any uid can write, as in
# images/*/Dockerfile.
import glob, os, venv, zipfile
venv.create("/opt/venv", with_pip=False)
site = glob.glob("/opt/venv/lib/python3*/site-packages")[0]
zipfile.ZipFile(glob.glob("/usr/share/python-wheels/pip-*.whl")[0]).extractall(site)
with open("/opt/venv/bin/pip", "w") as f:
    f.write("#!/opt/venv/bin/python\nimport sys\nfrom pip._internal.cli.main import main\n"
            "sys.exit(main())\n")
os.makedirs("/home/ds01")
for top, dirs, files in os.walk("/opt/venv"):
    for n in dirs + files:
        p = os.path.join(top, n)
        if not os.path.islink(p):
            add = 0o777 if os.path.isdir(p) or n == "pip" else 0o666
            mode = os.stat(p).st_mode
            if mode | add != mode:  # a chmod copies the file up into this layer
                os.chmod(p, mode | add)
os.chmod("/home/ds01", 0o1777)
EOF
cat > $b/Dockerfile <<'EOF'
FROM ds01-docs/rootfs:4
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/bin:/bin HOME=/home/ds01
COPY make_env.py /tmp/make_env.py
RUN python3 /tmp/make_env.py
RUN python -m ipykernel install --prefix /opt/venv --name ds01 \
      --display-name "Python 3 (DS01 /opt/venv)"
WORKDIR /workspace
LABEL ds01.shared=true
CMD ["sleep", "infinity"]
EOF
{real} build -q -t {img} $b >/dev/null
rm -rf $b
"""


def _jupyter_tarball(vm) -> str:
    """images/pytorch's JupyterLab and ipykernel, put into the VM as a tarball of /opt/venv.

    Installed here from the pinned wheels tests/run downloads (the VM has no
    package index, and pip takes minutes under TCG), with the scripts' first
    line pointing at /opt/venv/bin/python, where the stand-in base has them.
    """
    wheels = sorted(JUPYTER_WHEELS.glob("*.whl")) if JUPYTER_WHEELS.is_dir() else []
    if not wheels:
        pytest.fail(f"no wheels in {JUPYTER_WHEELS}: tests/run downloads them "
                    f"(pip download --no-deps --only-binary=:all: -r {JUPYTER_LOCK.name})")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--ignore-installed", "--no-index", "--no-deps",
                        "--no-compile", "--no-warn-script-location", "--find-links", str(JUPYTER_WHEELS),
                        "--prefix", "/opt/venv", "--root", str(stage), "-r", str(JUPYTER_LOCK)],
                       check=True)  # fmt: skip
        for script in (stage / "opt/venv/bin").iterdir():
            text = script.read_bytes()
            if text.startswith(b"#!"):
                script.write_bytes(b"#!/opt/venv/bin/python" + text[text.index(b"\n"):])

        def writable(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if "/jedi/third_party/typeshed" in info.name:
                return None  # completion stubs: half the files, a minute of ADD under TCG
            # as make_env.py leaves the rest of the environment: any uid may pip install
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode |= 0o777 if info.isdir() or info.mode & 0o100 else 0o666
            return info

        tarball = Path(tmp) / "jupyter.tar.gz"
        with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
            tar.add(stage / "opt", arcname="opt", filter=writable)
        with tarball.open("rb") as f:
            subprocess.run(ssh_argv() + [f"cat > {JUPYTER_TAR}"], stdin=f, check=True)
    return JUPYTER_TAR


def _clean(vm) -> None:
    as_login(vm, USER, "docker rm -f myproject myproject-lab >/dev/null 2>&1; rm -f ~/.ssh/authorized_keys; "
                       "sed -i '/^export UID$/d' ~/.bashrc; "
                       "docker image rm myproject:1 >/dev/null 2>&1; "
                       "rm -rf ~/myproject /scratch/$USER/hello; true")  # fmt: skip


@pytest.fixture(scope="module")
def guide_world(vm):
    script = MAKE_BASE.replace("{real}", REAL).replace("{img}", BASE)
    if vm.run(f"{REAL} image inspect {BASE}").rc != 0:
        script = script.replace("{jupyter}", _jupyter_tarball(vm))
    r = vm.run("sh -c " + shlex.quote(script))
    assert r.rc == 0, f"building the stand-in for {BASE}: {r.stderr}"
    _clean(vm)
    yield
    _clean(vm)


def _write(vm, path: str, text: str) -> None:
    data = base64.b64encode(text.encode()).decode()
    target = "$HOME/" + path.removeprefix("~/")
    r = as_login(vm, USER, f'mkdir -p "$(dirname "{target}")" && '
                           f'printf %s {data} | base64 -d > "{target}"')  # fmt: skip
    assert r.rc == 0, r.stderr


def _http(base: str, path: str, token: str | None = None, method: str = "GET", body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())  # fmt: skip
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _run_in_kernel(base: str, kernel: str, token: str, code: str) -> str:
    """What ``code`` prints in the kernel, over its websocket, as JupyterLab sends a cell."""
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + f"/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {token}"], timeout=60,
    )  # fmt: skip
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": USER, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))  # fmt: skip
        printed = []
        while True:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "error":
                raise AssertionError(f"the cell failed: {content['ename']}: {content['evalue']}")
            elif kind == "execute_reply":
                return "".join(printed)
    finally:
        ws.close()


def _authorize_ssh(vm) -> None:
    """The controller's test key logs in as the user, as their laptop's key would."""
    r = vm.run(f"install -d -m 0700 -o {USER} -g {USER} ~{USER}/.ssh && install -m 0600 -o {USER} "
               f"-g {USER} /root/.ssh/authorized_keys ~{USER}/.ssh/authorized_keys")  # fmt: skip
    assert r.rc == 0, r.stderr


def _browse_jupyter(vm, server_output: str) -> None:
    """The guide's laptop steps after its Jupyter step: the tunnel, the browser, the kernel.

    The controller plays the laptop: it opens the guide's tunnel as the user
    (their own ssh login, ``-N -L LOCAL:127.0.0.1:PORT``) and does what
    JupyterLab in a browser does through it.
    """
    port = int(re.search(r"your port: (\d+)", server_output).group(1))
    token = re.search(r"http://127\.0\.0\.1:8888/lab\?token=(\w+)", server_output).group(1)
    _authorize_ssh(vm)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    argv = ssh_argv(USER)
    argv[-1:-1] = ["-N", "-L", f"{local}:127.0.0.1:{port}", "-o", "ExitOnForwardFailure=yes"]
    tunnel = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{local}"
    try:
        for _ in range(60):
            assert tunnel.poll() is None, f"the tunnel failed: {tunnel.stderr.read().decode()}"
            try:
                if _http(base, "/api")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("Jupyter did not answer through the tunnel within 60 s")
        assert _http(base, "/api/kernelspecs")[0] == 403, "Jupyter answered without its token"
        status, page = _http(base, f"/lab?token={token}")
        assert status == 200 and "JupyterLab" in page, (status, page[:300])
        specs = json.loads(_http(base, "/api/kernelspecs", token)[1])["kernelspecs"]
        names = {n: k["spec"]["display_name"] for n, k in specs.items()}
        assert names.get("ds01") == KERNEL, f"the guide's kernel {KERNEL!r} is not there: {names}"
        status, body = _http(base, "/api/kernels", token, "POST", {"name": "ds01"})
        assert status == 201, (status, body)
        kernel = json.loads(body)["id"]
        printed = _run_in_kernel(base, kernel, token, "import os, sys\n"
                                 "print(sys.executable, os.getuid(), os.environ['NVIDIA_VISIBLE_DEVICES'])")  # fmt: skip
        exe, uid, gpu = printed.split()
        assert exe == "/opt/venv/bin/python", printed
        assert uid == as_user(vm, USER, "id -u").stdout.strip(), printed
        assert gpu.startswith(("GPU-", "MIG-")), f"the kernel's container has no GPU: {printed}"
        notebook = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4,
                                                    "nbformat_minor": 5}}  # fmt: skip
        status, body = _http(base, "/api/contents/tunnel.ipynb", token, "PUT", notebook)
        assert status in (200, 201), (status, body)
        owner = as_user(vm, USER, "stat -c %U ~/myproject/tunnel.ipynb")
        assert owner.stdout.strip() == USER, f"the notebook is not in ~/myproject: {owner.stderr}"
        _http(base, f"/api/kernels/{kernel}", token, "DELETE")
    finally:
        tunnel.terminate()
        tunnel.wait(10)


def test_the_stand_in_base_is_shared_and_has_the_environment(vm, guide_world):
    r = as_login(vm, USER, f"docker run --rm {BASE} python -c 'import sys; print(sys.prefix)'")
    assert r.rc == 0 and r.stdout.strip() == "/opt/venv", r.stderr


def test_the_user_guide_runs_as_an_ordinary_user(vm, guide_world):
    assert as_user(vm, USER, "id -nG").stdout.split().count("ds01-student") == 1
    ran = 0
    for step in STEPS:
        if step.kind == "file":
            _write(vm, step.arg, step.text)
            continue
        r = as_login(vm, USER, "{ set -e\n" + step.text + "} 2>&1")
        out = r.stdout
        if step.arg == "fails":
            assert r.rc != 0, f"{step.where}: expected a refusal, it succeeded:\n{out}"
        else:
            assert r.rc == 0, f"{step.where}: exit {r.rc}:\n{step.text}\n--- output:\n{out}"
        missing = unmatched(step.expect, out)
        assert not missing, f"{step.where}: the guide shows {missing[0]!r}; got:\n{out}"
        if "jupyter lab" in step.text:
            _browse_jupyter(vm, out)
        ran += 1
    assert ran >= 10


@pytest.fixture(scope="module")
def devcontainer(vm):
    """The Dev Containers CLI in the VM: what VS Code's extension runs on the server.

    Run by the controller's Node.js (the CLI needs 20 or newer; the VM has
    none), both streamed into the VM for this module only.
    """
    node = shutil.which("node")
    if node is None or not DEVCONTAINERS_CLI.is_file():
        pytest.fail(f"needs Node.js >= 20 on the controller and {DEVCONTAINERS_CLI} "
                    f"(tests/run fetches it: {DEVCONTAINERS_LOCK.name})")  # fmt: skip
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()[1:].split(".")[0])
    assert major >= 20, f"{node} is Node.js {major}: the Dev Containers CLI needs 20 or newer"
    for src, into in ((node, f"cat > {TOOLS}/node && chmod 0755 {TOOLS}/node"),
                      (DEVCONTAINERS_CLI, f"tar -xzf - -C {TOOLS} --no-same-owner")):  # fmt: skip
        with open(src, "rb") as f:
            subprocess.run(ssh_argv() + [f"install -d -m 0755 {TOOLS} && {into}"], stdin=f, check=True)
    yield f"{TOOLS}/node {TOOLS}/package/devcontainer.js"
    vm.run(f"rm -rf {TOOLS}")


def test_the_guides_devcontainer_opens_as_vs_code_opens_it(vm, guide_world, devcontainer):
    """The guide's VS Code steps: Remote-SSH logs in, Dev Containers builds and enters.

    VS Code's server runs in the user's ssh login and resolves its environment
    from an interactive login shell, where the guide's ``export UID`` in
    ~/.bashrc applies; its Dev Containers extension then runs this CLI with the
    guide's devcontainer.json, through the user's ``docker`` (the DS01 service).
    """
    for step in STEPS:
        if step.kind == "file":  # the project and its devcontainer.json, as the guide left them
            _write(vm, step.arg, step.text)
    _authorize_ssh(vm)
    assert as_user(vm, USER, "echo 'export UID' >> ~/.bashrc").rc == 0

    def in_vs_code_server(args: str) -> subprocess.CompletedProcess:
        command = "bash -ilc " + shlex.quote(f"{devcontainer} {args} 2>/tmp/devcontainer-$UID.log")
        return subprocess.run(ssh_argv(USER) + [command], capture_output=True, text=True, timeout=600)

    up = in_vs_code_server("up --workspace-folder ~/myproject")
    log = as_user(vm, USER, "cat /tmp/devcontainer-$(id -u).log").stdout
    result = json.loads(up.stdout.strip().splitlines()[-1]) if up.stdout.strip() else {}
    container = result.get("containerId")
    try:
        assert up.returncode == 0 and result.get("outcome") == "success", f"{up.stdout}\n{log[-3000:]}"
        uid = as_user(vm, USER, "id -u").stdout.strip()
        assert result["remoteUser"] == uid and result["remoteWorkspaceFolder"] == "/workspace", result
        probe = ("import os, sys; print(sys.executable, os.getuid(), os.getcwd(), os.environ['NVIDIA_VISIBLE_DEVICES']); "
                 "open('from-vscode.txt', 'w').write('saved in the container')")  # fmt: skip
        ran = in_vs_code_server("exec --workspace-folder ~/myproject python -c " + shlex.quote(probe))
        assert ran.returncode == 0, f"{ran.stdout}{ran.stderr}"
        exe, who, cwd, gpu = ran.stdout.split()[-4:]
        assert (exe, who, cwd) == ("/opt/venv/bin/python", uid, "/workspace"), ran.stdout
        assert gpu.startswith(("GPU-", "MIG-")), f"the dev container has no GPU: {ran.stdout}"
        owner = as_user(vm, USER, "stat -c %U ~/myproject/from-vscode.txt")
        assert owner.stdout.strip() == USER, f"the workspace is not the user's ~/myproject: {owner.stderr}"
        kind = as_login(vm, USER, f"docker inspect -f '{{{{index .Config.Labels \"ds01.container_type\"}}}}' "
                                  f"{container}")  # fmt: skip
        assert kind.stdout.strip() == "devcontainer", f"docs/docker.md's container type: {kind.stdout}{kind.stderr}"
        name = as_login(vm, USER, f"docker inspect -f '{{{{.Name}}}}' {container}").stdout.strip().lstrip("/")
        held = as_login(vm, USER, "ds01 gpu status").stdout
        assert any("allocated" in ln and name in ln for ln in held.splitlines()), f"{name}:\n{held}"
    finally:
        if container:
            image = as_login(vm, USER, f"docker inspect -f '{{{{.Config.Image}}}}' {container}").stdout.strip()
            as_login(vm, USER, f"docker rm -f {container} >/dev/null; docker image rm {image} >/dev/null")
