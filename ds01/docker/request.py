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
from urllib.parse import urlencode

from ds01.docker import policy as rules
from ds01.docker import schema
from ds01.docker.apispec import QUERIES, SCHEMAS
from ds01.docker.http import BadRequest, Head, parse_request_line
from ds01.docker.schema import Malformed


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
            return schema.canonical(schema.loads(raw), SCHEMAS[self.route.spec.op])
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


def parse_query(op: str, raw: str) -> dict[str, Any]:
    """The allow-listed, typed query of ``op`` (its table in apispec). Routes
    beyond the table are the admins' (swarm, plugins): their parameters are
    kept as lists, in order, still refusing what Go and Python read apart."""
    if op in QUERIES:
        return schema.parse_query(raw, QUERIES[op])
    out: dict[str, list[str]] = {}
    for key, value in schema.query_pairs(raw):
        out.setdefault(key, []).append(value)
    return out


def build_query(op: str, query: dict[str, Any]) -> str:
    """The upstream query, written from the decided form alone."""
    if op in QUERIES:
        return schema.build_query(query, QUERIES[op])
    return urlencode([(k, v) for k, vs in query.items() for v in vs])
