"""images/: the lab's base Dockerfiles parse, pin every version, and keep the
contract the user guide relies on (one environment at /opt/venv on PATH,
writable by any uid, its kernel registered under the name the guide gives)."""

import re
import shlex
from pathlib import Path

import pytest
from docblocks import guide_steps
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.parent for p in (ROOT / "images").glob("*/Dockerfile"))
KERNEL = 'Python 3 (DS01 /opt/venv)'


def parse(text: str, tmp_path: Path) -> DockerfileParser:
    p = DockerfileParser(path=str(tmp_path / "Dockerfile"))
    p.content = text
    return p


def instructions(p: DockerfileParser) -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in p.structure if i["instruction"] != "COMMENT"]


def test_both_images_are_there():
    assert [p.name for p in IMAGES] == ["python", "pytorch"]


@pytest.mark.parametrize("folder", IMAGES, ids=lambda p: p.name)
def test_dockerfile_parses_and_pins_its_base(folder, tmp_path):
    p = parse((folder / "Dockerfile").read_text(), tmp_path)
    steps = instructions(p)
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE=")
    assert steps[1] == ("FROM", "${BASE}")
    base = steps[0][1].removeprefix("BASE=")
    assert p.baseimage == base
    name, _, tag = base.rpartition(":")
    assert name and tag and tag != "latest" and re.search(r"\d", tag), f"{base}: pin a tag"


@pytest.mark.parametrize("folder", IMAGES, ids=lambda p: p.name)
def test_environment_contract(folder, tmp_path):
    p = parse((folder / "Dockerfile").read_text(), tmp_path)
    assert p.envs["VIRTUAL_ENV"] == "/opt/venv"
    assert p.envs["PATH"].startswith("/opt/venv/bin:")
    run = " ".join(v for k, v in instructions(p) if k == "RUN")
    words = shlex.split(run.replace("\\\n", " "))
    assert "chmod -R a+rwX /opt/venv" in " ".join(words)
    assert f"--display-name {KERNEL}" in " ".join(words)
    assert ("WORKDIR", "/workspace") in instructions(p)
    for kind, value in instructions(p):
        if kind == "COPY":
            for src in value.split()[:-1]:
                assert (folder / src).is_file(), f"{folder.name}: COPY {src} is missing"


@pytest.mark.parametrize("folder", IMAGES, ids=lambda p: p.name)
def test_requirements_are_pinned(folder):
    lines = [x.split("#")[0].strip() for x in (folder / "requirements.txt").read_text().splitlines()]
    reqs = [x for x in lines if x]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.+-]*", r) for r in reqs), reqs
    assert any(r.startswith("ipykernel==") for r in reqs)


def test_the_guide_builds_on_the_pytorch_image(tmp_path):
    readme = (ROOT / "images/README.md").read_text()
    tags = dict(re.findall(r"^\| `(\w+)/` \| `([^`]+)` \|", readme, re.M))
    header = (ROOT / "images/pytorch/Dockerfile").read_text()
    assert f"-t {tags['pytorch']} images/pytorch" in header
    guide = next(s.text for s in guide_steps() if s.arg == "~/myproject/Dockerfile")
    p = parse(guide, tmp_path)
    assert instructions(p)[:2] == [("ARG", f"BASE={tags['pytorch']}"), ("FROM", "${BASE}")]
    inside = (ROOT / "docs/user/inside.md").read_text()
    assert KERNEL in inside and "/opt/venv/bin/python" in inside


def test_the_guides_jupyter_is_the_pytorch_images():
    """tests/vm/jupyter-wheels.txt (the stand-in base's Jupyter on the VM) pins
    images/pytorch's jupyterlab and ipykernel, each package once."""

    def pins(path: Path) -> dict[str, str]:
        lines = [x.split("#")[0].strip() for x in path.read_text().splitlines()]
        pairs = [x.split("==") for x in lines if x]
        names = [re.sub(r"[-_.]+", "-", n).lower() for n, _ in pairs]
        assert len(names) == len(set(names)), f"{path.name}: a package twice"
        return dict(zip(names, (v for _, v in pairs), strict=True))

    lock = pins(ROOT / "tests/vm/jupyter-wheels.txt")
    image = pins(ROOT / "images/pytorch/requirements.txt")
    for name in ("jupyterlab", "ipykernel"):
        assert lock[name] == image[name], f"{name}: {lock[name]} in the lock, {image[name]} in the image"
