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
built on the engine's socket with the label ds01.shared=true.
"""

from __future__ import annotations

import base64
import re
import shlex

import pytest
from conftest import as_login, as_user
from docblocks import guide_steps, unmatched

pytestmark = pytest.mark.vm

USER = "lt.student"
STEPS = guide_steps()
GUIDE_DOCKERFILE = next(s.text for s in STEPS if s.arg == "~/myproject/Dockerfile")
BASE = re.search(r"^ARG BASE=(\S+)", GUIDE_DOCKERFILE, re.M).group(1)
REAL = "docker -H unix:///run/docker.sock"

# The stand-in's root filesystem: python3 with its standard library, ensurepip's
# wheels and the few programs the guide runs inside a container.
MAKE_BASE = r"""
set -e
{real} image inspect {img} >/dev/null 2>&1 && exit 0
if ! {real} image inspect ds01-docs/rootfs:1 >/dev/null 2>&1; then
d=$(mktemp -d); cd $d; ln -s usr/bin bin; ln -s usr/lib lib; ln -s usr/lib64 lib64
mkdir -p usr/bin usr/lib usr/lib64 usr/share tmp proc sys dev etc; chmod 1777 tmp
py=$(readlink -f /usr/bin/python3)
cp -a /usr/lib/$(basename $py) usr/lib/; cp -a /usr/share/python-wheels usr/share/
bins="$py $(readlink -f /usr/bin/dash /usr/bin/sleep /usr/bin/id /usr/bin/cat /usr/bin/ls)"
for f in $bins $(readlink -f /usr/bin/which); do mkdir -p .$(dirname $f); cp $f .$f; done
[ -e usr/bin/which ] || ln -s $(basename $(readlink -f /usr/bin/which)) usr/bin/which
ldd $bins /usr/lib/$(basename $py)/lib-dynload/*.so 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*' | sort -u |
while read l; do r=$(readlink -f $l); mkdir -p .$(dirname $r); [ -e .$r ] || cp $r .$r; \
  [ "$l" = "$r" ] || { mkdir -p .$(dirname $l); [ -e .$l ] || ln -s $r .$l; }; done
ln -sf $(basename $py) usr/bin/python3; ln -sf dash usr/bin/sh
echo 'root:x:0:0:root:/:/bin/sh' > etc/passwd
tar -c . | {real} import - ds01-docs/rootfs:1 >/dev/null
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
            os.chmod(p, os.stat(p).st_mode | add)
os.chmod("/home/ds01", 0o1777)
EOF
cat > $b/Dockerfile <<'EOF'
FROM ds01-docs/rootfs:1
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/bin:/bin HOME=/home/ds01
COPY make_env.py /tmp/make_env.py
RUN python3 /tmp/make_env.py
WORKDIR /workspace
LABEL ds01.shared=true
CMD ["sleep", "infinity"]
EOF
{real} build -q -t {img} $b >/dev/null
rm -rf $b
"""


def _clean(vm) -> None:
    as_login(vm, USER, "docker rm -f myproject myproject-lab >/dev/null 2>&1; "
                       "docker image rm myproject:1 >/dev/null 2>&1; "
                       "rm -rf ~/myproject /scratch/$USER/hello; true")  # fmt: skip


@pytest.fixture(scope="module")
def guide_world(vm):
    script = MAKE_BASE.replace("{real}", REAL).replace("{img}", BASE)
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
        ran += 1
    assert ran >= 10
