"""The documentation site builds with --strict (mkdocs.yml): a broken link,
a missing page or a page left out of the nav fails; and the guide's
runnable blocks are well-formed (tests/infra/test_docs.py runs them)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from docblocks import PAGES, guide_steps, steps, unmatched

ROOT = Path(__file__).resolve().parents[2]


def test_site_builds_strictly(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site/user/inside/index.html").is_file()


def test_a_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](missing.md)\n")
    cfg = tmp_path / "mkdocs.yml"
    cfg.write_text((ROOT / "mkdocs.yml").read_text().split("\nnav:")[0] + "\nnav: [index.md]\n")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(cfg)],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert r.returncode != 0 and "missing.md" in r.stdout + r.stderr


def test_guide_steps_parse():
    got = guide_steps()
    assert sum(s.kind == "run" for s in got) >= 10
    files = {s.arg: s.text for s in got if s.kind == "file"}
    assert "ARG BASE=ds01/pytorch:" in files["~/myproject/Dockerfile"]
    devcontainer = json.loads(files["~/myproject/.devcontainer/devcontainer.json"])
    assert devcontainer["updateRemoteUserUID"] is False
    assert "--privileged" not in devcontainer["runArgs"]
    assert all((ROOT / "docs/user" / p).is_file() for p in PAGES)


def test_markers():
    page = (
        "<!-- file: ~/a.txt -->\n```text\nhello\n```\n"
        "1. step\n\n    <!-- run -->\n    ```sh\n    cat ~/a.txt\n    ```\n"
        "<!-- expect -->\n```text\nhel…\n```\n"
        "<!-- run: fails -->\n```sh\nfalse\n```\n"
        "```sh\nnot marked\n```\n"
    )
    s = steps(page)
    assert [(x.kind, x.arg) for x in s] == [("file", "~/a.txt"), ("run", ""), ("run", "fails")]
    assert s[1].text == "cat ~/a.txt\n" and s[1].expect == ["hel…"]
    with pytest.raises(ValueError, match="must follow a run block"):
        steps("<!-- expect -->\n```text\nx\n```\n")
    with pytest.raises(ValueError, match="not followed by a code block"):
        steps("<!-- run -->\ntext\n")


def test_expected_lines_match_in_order():
    out = "a 1\nb 2\nc 3\n"
    assert unmatched(["a …", "c 3"], out) == []
    assert unmatched(["c 3", "a 1"], out) == ["a 1"]
    assert unmatched(["d"], out) == ["d"]
