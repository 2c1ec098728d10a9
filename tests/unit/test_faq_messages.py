"""Each refusal docs/user/faq.md quotes is still in the code that prints it."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAQ = ROOT / "docs/user/faq.md"
_ENTRY = re.compile(r"<!-- message: (\S+) -->\s*\n```text\n(.*?)\n```", re.S)


def quoted() -> list[tuple[str, str]]:
    return _ENTRY.findall(FAQ.read_text())


def literals(source: str) -> list[str]:
    """The file's string literals, each f-string's replacement fields as '…'
    (implicit concatenation is one literal to ast)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("".join(
                v.value if isinstance(v, ast.Constant) else "…" for v in node.values
            ))  # fmt: skip
    return out


def found(message: str, path: Path) -> bool:
    text = path.read_text()
    if path.suffix == ".py":
        return any(message in lit for lit in literals(text))
    # A template or shell script: the fixed parts, in order.
    pos = 0
    for part in message.split("…"):
        pos = text.find(part, pos)
        if pos < 0:
            return False
        pos += len(part)
    return True


def test_the_faq_quotes_messages():
    assert len(quoted()) >= 25


@pytest.mark.parametrize("source,message", quoted(), ids=lambda x: x[:50])
def test_each_quoted_message_is_in_its_source(source, message):
    path = ROOT / source
    assert path.is_file(), f"faq.md names {source}, which does not exist"
    assert found(message, path), (
        f"docs/user/faq.md quotes a message {source} no longer prints:\n  {message}\n"
        "update the FAQ entry (meaning and fix) to the new wording"
    )


def test_a_changed_message_is_caught():
    src = "raise Refused(f'host port {p} is below 1024; ' 'publish higher')\n"
    assert "host port … is below 1024; publish higher" in literals(src)
    tmp = ROOT / "ds01/docker/create.py"
    assert found("host port … is below 1024 (the server's own services)", tmp)
    assert not found("host port … is below 1000", tmp)
