"""The real docker socket as a small client: the lookups a decision needs,
and the daemon's event stream. Every request here is written by the service
(one per connection, ``Connection: close``, the pinned API version)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

from ds01.docker import http
from ds01.docker.policy import OWNER, PINNED_API_VERSION, Target

MAX_LOOKUP_RESPONSE = 256 * 1024 * 1024  # a list response is read whole


class Upstream:
    def __init__(self, path: str):
        self.path = path

    async def open(self):
        return await asyncio.open_unix_connection(self.path, limit=http.MAX_HEAD)

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """One request to the daemon (``path`` without the version prefix)."""
        reader, writer = await self.open()
        try:
            data = b"" if body is None else json.dumps(body).encode()
            headers = [
                ("Host", "docker"),
                ("Connection", "close"),
                ("Content-Length", str(len(data))),
            ]
            if body is not None:
                headers.append(("Content-Type", "application/json"))
            writer.write(
                http.render_head(f"{method} /v{PINNED_API_VERSION}{path} HTTP/1.1", headers) + data
            )
            await writer.drain()
            head = await read_response_head(reader)
            if head.chunked or head.length is not None:
                raw = await http.read_body(reader, head, MAX_LOOKUP_RESPONSE)
            else:
                raw = await http.read_until_close(reader, MAX_LOOKUP_RESPONSE)
            return head.status, (json.loads(raw) if raw.strip() else None)
        finally:
            writer.close()

    async def target(self, kind: str, ref: str) -> Target | None:
        q = quote(ref, safe="")
        if kind == "exec":
            status, data = await self.call("GET", f"/exec/{q}/json")
            if status == 404:
                return None
            c = await self.target("container", _ok(status, data)["ContainerID"])
            return None if c is None else Target("exec", ref, c.name, c.labels, container=c.ref)
        path = {
            "container": f"/containers/{q}/json",
            "image": f"/images/{q}/json",
            "volume": f"/volumes/{q}",
            "network": f"/networks/{q}",
        }[kind]
        status, data = await self.call("GET", path)
        if status == 404:
            return None
        data = _ok(status, data)
        if kind == "container":
            labels = (data.get("Config") or {}).get("Labels") or {}
            return Target(kind, data.get("Id", ref), data.get("Name", "").lstrip("/"), labels)
        if kind == "image":
            labels = (data.get("Config") or {}).get("Labels") or {}
            tags = tuple(data.get("RepoTags") or ())
            return Target(kind, ref, "", labels, image_id=data.get("Id", ""), tags=tags)
        return Target(kind, ref, data.get("Name", ref), data.get("Labels") or {})

    async def owned_containers(self, user: str) -> list[str]:
        """Ids of every container (running or not) labelled as ``user``'s."""
        filters = json.dumps({"label": [f"{OWNER}={user}"]})
        status, data = await self.call("GET", f"/containers/json?all=1&filters={quote(filters)}")
        return [c["Id"] for c in _ok(status, data)]


async def read_response_head(reader: asyncio.StreamReader) -> http.Head:
    """The daemon's final head: 1xx interim answers other than 101 are skipped."""
    while True:
        try:
            head = await http.read_head(reader)
        except http.BadRequest as e:
            raise ConnectionError(
                f"the docker daemon sent a malformed answer ({e.message})"
            ) from None
        if head is None:
            raise ConnectionError("the docker daemon closed the connection")
        if head.status == 101 or head.status >= 200:
            return head


def _ok(status: int, data: object):
    if status >= 300 or not isinstance(data, (dict, list)):
        raise ConnectionError(f"the docker daemon answered {status} to a lookup")
    return data


async def events(upstream: Upstream, filters: dict) -> AsyncIterator[dict]:
    """The daemon's event stream as dicts (one per JSON line)."""
    reader, writer = await upstream.open()
    try:
        path = f"/v{PINNED_API_VERSION}/events?filters={quote(json.dumps(filters))}"
        writer.write(http.render_head(f"GET {path} HTTP/1.1", [("Host", "docker")]))
        await writer.drain()
        head = await read_response_head(reader)
        if head.status != 200:
            raise ConnectionError(f"events: {head.first}")
        buf = b""
        pieces = http.chunks(reader) if head.chunked else _until_close(reader)
        async for data in pieces:
            buf += data
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                if ln.strip():
                    yield json.loads(ln)
    finally:
        writer.close()


async def _until_close(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(65536):
        yield data
