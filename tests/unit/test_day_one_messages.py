"""What a new user reads on day one: every `ds01 ...` command a help text
suggests is a command the real `ds01` parser accepts, and no help points at
files the server does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jinja2
import pytest

from ds01.cli import build_parser

REPO = Path(__file__).resolve().parents[1].parent
PLACEHOLDERS = {"NAME": "train", "IMAGE": "pytorch:latest", "KIND": "1g.5gb"}


def docker_ds01_help(tmp_path: Path) -> str:
    text = (REPO / "templates/docker/docker-wrapper.sh.j2").read_text()
    script = tmp_path / "docker"
    sock = tmp_path / "ds01-docker.sock"
    script.write_text(jinja2.Template(text).render(user_socket=sock, real_docker="/bin/false"))
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))  # the service's socket exists
    try:
        out = subprocess.run(["sh", str(script), "ds01"], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{sock}"})  # fmt: skip
    finally:
        s.close()
    assert out.returncode == 0, out.stderr
    return out.stdout


def suggested(text: str) -> list[list[str]]:
    cmds = re.findall(r"\b(ds01 [a-z][^,;()\n]*)", text)
    return [[PLACEHOLDERS.get(w, w) for w in c.split()[1:]] for c in cmds]


def test_docker_ds01_suggests_only_commands_that_parse(tmp_path):
    text = docker_ds01_help(tmp_path)
    cmds = suggested(text)
    assert ["container", "create", "train", "--image", "pytorch:latest", "--gpu"] in cmds
    parser = build_parser()
    for argv in cmds:
        if argv[-1] == "--help":
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"`ds01 {' '.join(argv)}` in `docker ds01` does not parse")
    assert "/opt/ds01 (" not in text  # the server has no docs there
