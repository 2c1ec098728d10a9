"""The runnable parts of the user guide (docs/user/*.md), for tests/infra/test_docs.py.

A fenced block preceded by an HTML comment (invisible on the site) is a step:

    <!-- run -->            the block is a shell script run in a login shell of
                            the test user; it must exit 0
    <!-- run: fails -->     it must exit non-zero (a refusal the guide shows)
    <!-- expect -->         the output the previous run step must print: each
                            line, in order, matches a line of it (`…` stands
                            for anything)
    <!-- file: ~/PATH -->   the block's text is written to PATH (the user's)

Steps run in page order, page after page as listed in PAGES.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("first-login.md", "containers.md", "inside.md", "gpus-and-limits.md")

_MARK = re.compile(r"^<!--\s*(run|expect|file)(?::\s*(.*?))?\s*-->\s*$")
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


@dataclass
class Step:
    kind: str  # run, file
    text: str
    where: str  # page:line, for the failure message
    arg: str = ""  # run: "fails" or ""; file: the path
    expect: list[str] = field(default_factory=list)


def _blocks(text: str):
    """(marker, argument, block text, line) for each marked fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _MARK.match(lines[i].strip())
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        fence = _FENCE.match(lines[j].strip()) if j < len(lines) else None
        if fence is None:
            raise ValueError(f"line {i + 1}: <!-- {m.group(1)} --> is not followed by a code block")
        end = j + 1
        while end < len(lines) and not lines[end].strip().startswith(fence.group(1)):
            end += 1
        if end == len(lines):
            raise ValueError(f"line {j + 1}: the code block never closes")
        indent = len(lines[j]) - len(lines[j].lstrip())  # a block inside a list item
        body = "\n".join(x[indent:] if not x[:indent].strip() else x for x in lines[j + 1 : end])
        yield m.group(1), (m.group(2) or "").strip(), body + "\n", i + 1
        i = end + 1


def steps(text: str, page: str = "<page>") -> list[Step]:
    out: list[Step] = []
    for kind, arg, body, line in _blocks(text):
        where = f"{page}:{line}"
        if kind == "expect":
            if not out or out[-1].kind != "run" or out[-1].expect:
                raise ValueError(f"{where}: <!-- expect --> must follow a run block")
            out[-1].expect = [x for x in body.splitlines() if x.strip()]
        elif kind == "run":
            if arg not in ("", "fails"):
                raise ValueError(f"{where}: unknown run option {arg!r} (only 'fails')")
            out.append(Step("run", body, where, arg))
        else:
            if not arg.startswith("~/"):
                raise ValueError(f"{where}: a file block names a path in the home (~/...)")
            out.append(Step("file", body, where, arg))
    return out


def guide_steps() -> list[Step]:
    return [s for p in PAGES for s in steps((ROOT / "docs/user" / p).read_text(), f"docs/user/{p}")]


def _pattern(line: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in line.strip().split("…")))


def unmatched(expect: list[str], output: str) -> list[str]:
    """The expected lines not found, in order, in ``output`` (empty: it matches)."""
    got = output.splitlines()
    pos = 0
    for n, want in enumerate(expect):
        pat = _pattern(want)
        while pos < len(got) and not pat.search(got[pos]):
            pos += 1
        if pos == len(got):
            return expect[n:]
        pos += 1
    return []
