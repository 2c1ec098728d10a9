"""What a new user reads on day one: every `ds01 ...` command a help text
suggests is a command the real `ds01` parser accepts, and no help points at
files the server does not have."""

from __future__ import annotations

import argparse
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


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, path + (name,))


# The commands whose parsers this checks (the gpu and docker ones have owners of their own).
CHECKED = {"config", "users", "limits", "storage", "admin-guard"}


def test_every_option_says_what_it_does():
    missing = [
        f"ds01 {' '.join(path)} {a.option_strings[0] if a.option_strings else a.dest}"
        for path, p in parsers(build_parser())
        if path and path[0] in CHECKED
        for a in p._actions
        if not a.help and not isinstance(a, argparse._SubParsersAction)
    ]
    assert missing == []


def test_help_shows_a_users_commands_first(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert out.index("commands for everyone:") < out.index("limits ") < out.index(
        "commands for admins:") < out.index("config ")  # fmt: skip
    assert "admin-guard" in out.split("commands for admins:")[1]


def test_home_into_a_missing_folder_says_so(tmp_path):
    fn = (REPO / "templates/identity/home.sh.j2").read_text()
    (tmp_path / "projects").mkdir()
    run = lambda arg: subprocess.run(  # noqa: E731
        ["sh", "-c", f"{fn}\nhome {arg} && pwd"], capture_output=True, text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    ok, missing, plain = run("projects"), run("thesis"), run("")
    assert ok.returncode == 0 and ok.stdout.strip() == str(tmp_path / "projects")
    assert missing.returncode == 1
    assert missing.stderr == "home: you have no ~/thesis (mkdir ~/thesis makes it)\n"
    assert plain.stdout.strip() == str(tmp_path)


@pytest.mark.parametrize("argv", [["limits", "root"], ["storage", "usage", "root"]])
def test_one_privacy_rule_for_what_a_person_uses(argv, monkeypatch, capsys):
    from ds01.cli import main

    monkeypatch.setattr("os.geteuid", lambda: 4242)
    monkeypatch.setattr("os.getuid", lambda: 4242)
    policy = str(REPO / "config/resource-allocation.yaml")
    assert main([*argv, "--policy", policy]) == 2
    assert "what root uses is theirs; root sees it" in capsys.readouterr().err


def test_one_policy_option_honours_ds01_policy(monkeypatch):
    monkeypatch.setenv("DS01_POLICY", "/tmp/elsewhere.yaml")
    parser = build_parser()
    for argv in (["limits"], ["storage", "usage"], ["storage", "purge"], ["users", "sync"],
                 ["users", "explain", "j.doe"], ["users", "report"]):  # fmt: skip
        assert parser.parse_args(argv).policy == "/tmp/elsewhere.yaml", argv
