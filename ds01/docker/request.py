"""A request as the service reads it: one canonical form the rules decide on
and the upstream request is written from.

The request line gives the method, the API version (refused below the
minimum, see :data:`ds01.docker.policy.MIN_API_VERSION`), the route and its
path parameter; the query is parsed as strictly as dockerd could read it two
ways (a parameter given twice, a bad escape, ';'); a JSON body is parsed into
its schema's canonical spelling (:mod:`ds01.docker.schema`), so that a key the
daemon would match case-insensitively is never missed by the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from ds01.docker import policy as rules
from ds01.docker.http import BadRequest, Head, parse_request_line


@dataclass(frozen=True)
class ParsedRequest:
    method: str
    path: str  # decoded, without the version prefix
    version: tuple[int, int] | None
    route: rules.Route | None
    query: dict[str, list[str]]
    keep_alive: bool  # the client allows another request on this connection

    def json_body(self, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return canonical_body(self.route.spec.op, raw)
        except Malformed as e:
            raise BadRequest(f"malformed request: {e.message}") from None


def parse_request(head: Head) -> ParsedRequest:
    line = parse_request_line(head.first)
    target = line.target
    if "#" in target:
        raise BadRequest("malformed request target (a fragment)")
    raw_path, _, raw_query = target.partition("?")
    version, path = rules.split_version(raw_path)
    rules.check_version(version)
    rt = rules.route(line.method, raw_path)
    path = rt.path if rt is not None else path
    op = rt.spec.op if rt is not None else ""
    try:
        query = parse_query(op, raw_query)
    except Malformed as e:
        raise BadRequest(f"malformed request: {e.message}") from None
    if rt is not None and rt.body == "none" and head.has_body:
        raise BadRequest(f"{line.method} {path} takes no request body")
    conn = head.tokens("connection")
    keep = "close" not in conn and (line.minor == 1 or "keep-alive" in conn)
    upgrade = head.get("upgrade")
    if upgrade is not None and (rt is None or not rt.spec.hijack):
        raise BadRequest("Upgrade is only accepted on attach and exec start")
    expect = head.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        raise BadRequest(f"Expect: {expect[:40]} is not supported", 417)
    return ParsedRequest(line.method, path, version, rt, query, keep)


def split_query(raw: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` as (name, value) pairs, refusing what Go and Python decode
    differently (';' separators, bad percent-escapes)."""
    if not raw:
        return []
    pairs = []
    for part in raw.split("&"):
        if not part:
            continue
        if ";" in part:
            raise Malformed("a ';' in the query (use '&' between parameters)")
        name, _, value = part.partition("=")
        pairs.append((_unescape(name), _unescape(value)))
    return pairs


def _unescape(s: str) -> str:
    i = s.find("%")
    while i != -1:
        h = s[i + 1 : i + 3]
        if len(h) != 2 or any(c not in "0123456789abcdefABCDEF" for c in h):
            raise Malformed("a bad percent-escape in the query")
        i = s.find("%", i + 3)
    return unquote_plus(s, errors="strict")


# ---- interim, until the typed schemas land: strict JSON and query rules
import json  # noqa: E402


class Malformed(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


MULTI = {"t", "names", "changes"}


def parse_query(op: str, raw: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in split_query(raw):
        if name in out and name not in MULTI:
            raise Malformed(f"the query parameter {name!r} is given twice")
        out.setdefault(name, []).append(value)
    return out


def canonical_body(op: str, raw: bytes) -> Any:
    def pairs(items):
        seen = set()
        for k, _ in items:
            if k.lower() in seen:
                raise Malformed(f"the key {k!r} is given twice")
            seen.add(k.lower())
        return dict(items)

    try:
        return json.loads(raw, object_pairs_hook=pairs)
    except RecursionError:
        raise Malformed("the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        if isinstance(e, Malformed):
            raise
        raise Malformed("the body is not JSON") from None
