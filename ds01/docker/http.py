"""HTTP/1.1 as the DS01 docker service speaks it, to clients and to dockerd.

Strict where a client could make two parsers disagree (RFC 9112): a head
with CR, LF or NUL inside a line, obsolete line folding, a header name that
is not a token, two Content-Length or Transfer-Encoding fields, both of them
together, or a transfer coding other than ``chunked`` is refused. Bodies are
read through one chunk decoder and re-framed by the service: no client byte
of framing ever reaches dockerd.

Every read from a client has a deadline (:class:`Timeouts`); reads from the
daemon's streams (logs -f, events, attach) have none, they end when it ends.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # request line + headers
MAX_HEADERS = 100
MAX_CHUNK = 1 << 31
MAX_TRAILERS = 32

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(r"([A-Z]+) (/[\x21-\x7e]*) HTTP/1\.([01])")
_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})(;[\t\x20-\x7e]*)?\r\n")


class BadRequest(Exception):
    """A request the service answers with ``status`` and closes."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Timeouts:
    """Deadlines (seconds) for reads from a client."""

    head: float = 10.0  # the whole request head, once its first byte is in
    idle: float = 60.0  # waiting for the next request on a kept-alive connection
    body: float = 60.0  # between two reads of a request body


@dataclass(frozen=True)
class Head:
    """A parsed request or response head. Framing fields are unique by
    construction (:func:`parse_head` refuses repeats)."""

    first: str
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def tokens(self, name: str) -> set[str]:
        """A comma-separated header's tokens, lower-cased (Connection, Upgrade)."""
        out: set[str] = set()
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                out |= {t.strip().lower() for t in v.split(",") if t.strip()}
        return out

    @property
    def chunked(self) -> bool:
        return self.get("transfer-encoding") is not None

    @property
    def length(self) -> int | None:
        cl = self.get("content-length")
        return None if cl is None else int(cl)

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.length)

    @property
    def status(self) -> int:
        m = _STATUS_LINE.fullmatch(self.first)
        if not m:
            raise ConnectionError(f"the docker daemon sent a malformed status line {self.first!r}")
        return int(m.group(1))


@dataclass(frozen=True)
class RequestLine:
    method: str
    target: str
    minor: int  # HTTP/1.<minor>


def parse_request_line(first: str) -> RequestLine:
    m = _REQUEST_LINE.fullmatch(first)
    if not m:
        raise BadRequest(f"malformed request line {first[:80]!r}")
    return RequestLine(m.group(1), m.group(2), int(m.group(3)))


def parse_head(raw: bytes) -> Head:
    """Parse a head (without its final blank line); refuse what two parsers
    could read differently."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    first, fields = lines[0], lines[1:]
    if any(c in first for c in "\r\n\0"):
        raise BadRequest("a bare CR, LF or NUL in the request line")
    if len(fields) > MAX_HEADERS:
        raise BadRequest("too many HTTP headers", 431)
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in fields:
        if "\r" in line or "\n" in line or "\0" in line:
            raise BadRequest("a bare CR, LF or NUL inside an HTTP header")
        if line[:1] in (" ", "\t"):
            raise BadRequest("obsolete line folding in an HTTP header")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest(f"malformed HTTP header {line[:80]!r}")
        value = value.strip(" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise BadRequest(f"a control character in the HTTP header {name}")
        key = name.lower()
        if key in ("content-length", "transfer-encoding", "host"):
            if key in seen:
                raise BadRequest(f"the HTTP header {name} is given twice")
            seen.add(key)
        headers.append((name, value))
    head = Head(first, tuple(headers))
    cl, te = head.get("content-length"), head.get("transfer-encoding")
    if cl is not None and te is not None:
        raise BadRequest("both Content-Length and Transfer-Encoding are given")
    if cl is not None and not (cl.isascii() and cl.isdigit() and len(cl) <= 18):
        raise BadRequest(f"bad Content-Length {cl[:40]!r}")
    if te is not None and te.lower() != "chunked":
        raise BadRequest(f"transfer coding {te[:40]!r} is not supported (only chunked)")
    return head


async def _within(awaitable, timeout: float | None, what: str):
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise BadRequest(f"timed out waiting for {what}", 408) from None


async def read_head(
    reader: asyncio.StreamReader, timeout: float | None = None, idle: float | None = None
) -> Head | None:
    """One head, or None at a clean end of stream (or an idle keep-alive
    connection that sent nothing within ``idle`` seconds)."""
    first = b""
    if idle is not None:
        try:
            first = await asyncio.wait_for(reader.readexactly(1), idle)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
    try:
        raw = await _within(reader.readuntil(b"\r\n\r\n"), timeout, "the request head")
    except asyncio.IncompleteReadError as e:
        if not (first + e.partial).strip():
            return None
        raise BadRequest("incomplete HTTP head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest("HTTP head too large", 431) from None
    return parse_head(first + raw[:-4])


async def chunks(
    reader: asyncio.StreamReader, timeout: float | None = None
) -> AsyncIterator[bytes]:
    """The data of a chunked body, chunk by chunk (the one chunk decoder)."""
    while True:
        try:
            line = await _within(reader.readuntil(b"\r\n"), timeout, "a chunk")
        except asyncio.LimitOverrunError:
            raise BadRequest("malformed chunked body (chunk line too long)") from None
        m = _CHUNK_SIZE.fullmatch(line)
        if not m:
            raise BadRequest("malformed chunk size line")
        size = int(m.group(1), 16)
        if size == 0:
            for _ in range(MAX_TRAILERS):
                t = await _within(reader.readuntil(b"\r\n"), timeout, "the trailers")
                if t == b"\r\n":
                    return
                if b"\n" in t[:-2] or b"\r" in t[:-2] or b":" not in t:
                    raise BadRequest("malformed trailer in a chunked body")
            raise BadRequest("too many trailers in a chunked body")
        if size > MAX_CHUNK:
            raise BadRequest("chunk too large", 413)
        async for data in pieces(reader, size, timeout, "a chunk"):
            yield data
        if await _within(reader.readexactly(2), timeout, "a chunk") != b"\r\n":
            raise BadRequest("malformed chunked body (no CRLF after a chunk)")


async def body_pieces(
    reader: asyncio.StreamReader, head: Head, timeout: float | None = None
) -> AsyncIterator[bytes]:
    """A body's data as it arrives: chunked, Content-Length, or nothing."""
    if head.chunked:
        async for data in chunks(reader, timeout):
            yield data
        return
    async for data in pieces(reader, head.length or 0, timeout, "the request body"):
        yield data


async def pieces(
    reader: asyncio.StreamReader, n: int, timeout: float | None = None, what: str = "data"
) -> AsyncIterator[bytes]:
    """Exactly ``n`` bytes, as they arrive (an early end of stream raises)."""
    while n:
        data = await _within(reader.read(min(n, 65536)), timeout, what)
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        yield data


async def read_body(
    reader: asyncio.StreamReader, head: Head, limit: int, timeout: float | None = None
) -> bytes:
    """A whole body, refused past ``limit`` bytes."""
    if not head.chunked and (head.length or 0) > limit:
        raise BadRequest(f"request body larger than {limit} bytes", 413)
    out = bytearray()
    async for data in body_pieces(reader, head, timeout):
        out += data
        if len(out) > limit:
            raise BadRequest(f"request body larger than {limit} bytes", 413)
    return bytes(out)


async def read_until_close(reader: asyncio.StreamReader, limit: int) -> bytes:
    out = bytearray()
    while data := await reader.read(65536):
        out += data
        if len(out) > limit:
            raise ConnectionError(f"the docker daemon's answer is larger than {limit} bytes")
    return bytes(out)


def render_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    for k, v in headers:
        if not _TOKEN.fullmatch(k) or not _FIELD_VALUE.fullmatch(v):
            raise ValueError(f"refusing to write a malformed header {k!r}")
    return ("\r\n".join([first, *(f"{k}: {v}" for k, v in headers)]) + "\r\n\r\n").encode("latin-1")


def status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"


def error_response(status: int, message: str, keep_alive: bool) -> bytes:
    body = json.dumps({"message": message}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Server", "ds01-docker"),
        ("Connection", "keep-alive" if keep_alive else "close"),
    ]
    return render_head(status_line(status), headers) + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"
