"""The DS01 docker access service: a Docker API endpoint for ordinary users.

It listens on ``docker.user_socket`` (group ``docker-users``), learns who is
calling from the kernel (``SO_PEERCRED``: the uid cannot be forged), maps the
uid to a user and role through NSS, decides every request with
:func:`ds01.docker.policy.decide`, and forwards what is allowed to the real
socket, which only root (and admins) can reach. Streams pass through
untouched: chunked and long-lived responses (``logs -f``, ``events``,
``build``), and hijacked connections (``attach``, ``exec``, ``docker run -it``,
BuildKit sessions) are piped both ways with half-close.

It fails closed: a request it cannot parse, a lookup that fails, or any error
while deciding is answered with an error and never forwarded.

Run it with ``ds01 docker serve`` (the systemd unit ds01-docker.service does).
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ds01.config import Policy
from ds01.docker import policy as rules
from ds01.docker.policy import Allow, Caller, Deny, Facts, Request, Target

log = logging.getLogger("ds01.docker")

MAX_HEAD = 64 * 1024  # request line + headers
MAX_HEADERS = 100
MAX_LIST_RESPONSE = 256 * 1024 * 1024  # a filtered list response is read whole
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
}
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------
# Who is calling
# --------------------------------------------------------------------------


def peer_uid(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process on the other end, from the kernel."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def nss_caller(uid: int, role_of: Callable[[str], str | None]) -> Caller | None:
    """The caller as NSS knows them (None: the uid has no account)."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return None
    gids = os.getgrouplist(pw.pw_name, pw.pw_gid)
    names = set()
    for g in gids:
        try:
            names.add(grp.getgrgid(g).gr_name)
        except KeyError:
            pass
    role = None if uid == 0 else role_of(pw.pw_name)
    return Caller(
        uid, pw.pw_gid, pw.pw_name, pw.pw_dir, role, frozenset({str(g) for g in gids} | names)
    )


def default_role_of(policy: Policy) -> Callable[[str], str | None]:
    from ds01.identity.local import role_of  # the identity layer owns role membership

    return lambda name: role_of(name, policy)


# --------------------------------------------------------------------------
# HTTP/1.1 framing
# --------------------------------------------------------------------------


@dataclass
class Head:
    first: str  # request line or status line
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def chunked(self) -> bool:
        te = (self.get("transfer-encoding") or "").lower()
        return "chunked" in te

    def length(self) -> int | None:
        cl = self.get("content-length")
        if cl is None:
            return None
        if not cl.strip().isdigit():
            raise BadRequest(f"bad Content-Length {cl!r}")
        return int(cl)


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """One HTTP head, or None at a clean end of stream."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise BadRequest("incomplete HTTP head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest("HTTP head too large", 431) from None
    lines = raw.decode("latin-1").split("\r\n")[:-2]
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequest("too many HTTP headers", 431)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed HTTP header {line[:80]!r}")
        headers.append((name, value.strip()))
    return Head(lines[0], headers)


async def read_body(reader: asyncio.StreamReader, head: Head, limit: int) -> bytes:
    """A whole body (Content-Length or chunked), refused past ``limit`` bytes."""
    if head.chunked():
        out = bytearray()
        while True:
            size = await _chunk_size(reader)
            if size == 0:
                await _skip_trailers(reader)
                return bytes(out)
            if len(out) + size > limit:
                raise BadRequest(f"request body larger than {limit} bytes", 413)
            out += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest("malformed chunked body")
    n = head.length() or 0
    if n > limit:
        raise BadRequest(f"request body larger than {limit} bytes", 413)
    return await reader.readexactly(n)


async def _chunk_size(reader: asyncio.StreamReader) -> int:
    line = await reader.readuntil(b"\r\n")
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise BadRequest("malformed chunk size") from None


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass


async def copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head) -> None:
    """Copy one framed body as it arrives (chunked framing is kept as is)."""
    if head.chunked():
        while True:
            line = await reader.readuntil(b"\r\n")
            writer.write(line)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("malformed chunk size") from None
            if size == 0:
                while (t := await reader.readuntil(b"\r\n")) != b"\r\n":
                    writer.write(t)
                writer.write(b"\r\n")
                await writer.drain()
                return
            await _copy_n(reader, writer, size + 2)
    else:
        await _copy_n(reader, writer, head.length() or 0)


async def _copy_n(reader, writer, n: int) -> None:
    while n > 0:
        data = await reader.read(min(n, 65536))
        if not data:
            raise ConnectionError("stream ended inside a body")
        writer.write(data)
        n -= len(data)
        await writer.drain()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


def render_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    return ("\r\n".join([first, *(f"{k}: {v}" for k, v in headers)]) + "\r\n\r\n").encode("latin-1")


def error_response(status: int, message: str, keep_alive: bool) -> bytes:
    body = json.dumps({"message": message}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Server", "ds01-docker"),
        ("Connection", "keep-alive" if keep_alive else "close"),
    ]
    return render_head(f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", headers) + body


# --------------------------------------------------------------------------
# The real socket as a small client (lookups for the decision)
# --------------------------------------------------------------------------


class Upstream:
    def __init__(self, path: str):
        self.path = path

    async def open(self):
        return await asyncio.open_unix_connection(self.path, limit=MAX_HEAD)

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
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
            writer.write(render_head(f"{method} {path} HTTP/1.1", headers) + data)
            await writer.drain()
            head = await read_head(reader)
            if head is None:
                raise ConnectionError("the docker daemon closed the connection")
            status = int(head.first.split()[1])
            if head.chunked() or head.length() is not None:
                raw = await read_body(reader, head, MAX_LIST_RESPONSE)
            else:
                raw = await reader.read()
            return status, (json.loads(raw) if raw.strip() else None)
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
        if kind in ("container", "image"):
            labels = (data.get("Config") or {}).get("Labels") or {}
            name = data.get("Name", "").lstrip("/")
            return Target(kind, data.get("Id", ref) if kind == "container" else ref, name, labels)
        return Target(kind, ref, data.get("Name", ref), data.get("Labels") or {})

    async def count_owned(self, user: str) -> int:
        filters = json.dumps({"label": [f"{rules.OWNER}={user}"]})
        status, data = await self.call("GET", f"/containers/json?all=1&filters={quote(filters)}")
        return len(_ok(status, data))


def _ok(status: int, data: object):
    if status >= 300 or not isinstance(data, (dict, list)):
        raise ConnectionError(f"the docker daemon answered {status} to a lookup")
    return data


def realpath_or_none(path: str) -> str | None:
    real = os.path.realpath(path)
    return real if os.path.exists(real) else None


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------


class AccessService:
    """
    + policy: the validated policy
    + upstream: the real docker socket
    + identify: uid -> Caller (default: NSS and ds01.identity.local.role_of)
    + gpu: a :class:`ds01.docker.gpu.GpuGlue` (None: GPU requests are refused)
    """

    def __init__(
        self,
        policy: Policy,
        upstream: str | None = None,
        identify: Callable[[int], Caller | None] | None = None,
        gpu=None,
    ):
        self.policy = policy
        self.upstream = Upstream(upstream or policy.docker.real_socket)
        if identify is None:
            role_of = default_role_of(policy)
            identify = lambda uid: nss_caller(uid, role_of)  # noqa: E731
        self.identify = identify
        self.gpu = gpu
        self.server: asyncio.AbstractServer | None = None

    async def start(self, path: str, mode: int = 0o660, group: str | None = None) -> None:
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.server = await asyncio.start_unix_server(self.handle, path=path, limit=MAX_HEAD)
        os.chmod(path, mode)
        if group:
            os.chown(path, 0, grp.getgrnam(group).gr_gid)

    async def start_on(self, sock: socket.socket) -> None:
        """Serve a socket systemd passed in (socket activation)."""
        self.server = await asyncio.start_unix_server(self.handle, sock=sock, limit=MAX_HEAD)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            _, uid, _ = peer_uid(sock)
            caller = await asyncio.to_thread(self.identify, uid)
            if caller is None:
                writer.write(error_response(403, f"uid {uid} has no account on this server", False))
                await writer.drain()
                return
            while await self.one_request(reader, writer, caller):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except Exception:  # never let one connection take the service down
            log.exception("unexpected error on a client connection")
        finally:
            writer.close()

    async def one_request(self, reader, writer, caller: Caller) -> bool:
        """Serve one request; True to keep the client connection for another."""
        try:
            head = await read_head(reader)
        except BadRequest as e:
            writer.write(error_response(e.status, e.message, False))
            await writer.drain()
            return False
        if head is None:
            return False
        body_read = False
        try:
            method, target, _version = head.first.split(" ")
            split = urlsplit(target)
            path = rules.strip_version(split.path)
            query = parse_qs(split.query, keep_blank_values=True)
            rt = rules.route(method, split.path)
            body = None
            if rt is not None and rt.body == "json":
                raw = await read_body(reader, head, rules.MAX_JSON_BODY)
                body_read = True
                try:
                    body = json.loads(raw) if raw.strip() else None
                except ValueError:
                    raise BadRequest("malformed request: the body is not JSON") from None
            elif head.length() in (None, 0) and not head.chunked():
                body_read = True
            req = Request(method, path, query, body)
            decision = await self.decide(req, caller, rt)
        except BadRequest as e:
            writer.write(error_response(e.status, e.message, False))
            await writer.drain()
            return False
        except (ValueError, KeyError, ConnectionError, asyncio.IncompleteReadError) as e:
            msg = f"DS01 docker service: the request could not be checked ({e}); nothing was done"
            writer.write(error_response(502 if isinstance(e, ConnectionError) else 400, msg, False))
            await writer.drain()
            return False

        if isinstance(decision, Deny):
            log.info("deny %s %s %s: %s", caller.name, req.method, req.path, decision.message)
            writer.write(error_response(decision.status, decision.message, body_read))
            await writer.drain()
            return body_read

        # GPU bookkeeping before forwarding (create: assign; start: allocate)
        pre = await self.gpu_before(req, caller, decision)
        if isinstance(pre, Deny):
            writer.write(error_response(pre.status, pre.message, body_read))
            await writer.drain()
            return body_read
        decision = pre
        status, keep = await self.forward(reader, writer, head, req, split, caller, decision, body)
        await self.gpu_after(req, decision, status)
        return keep

    async def decide(self, req: Request, caller: Caller, rt) -> rules.Decision:
        facts = Facts()
        if rt is not None:
            n = rules.needs(req, caller, rt)
            found = await asyncio.gather(*(self.upstream.target(k, r) for k, r in n.targets))
            facts.targets = dict(zip(n.targets, found, strict=True))
            facts.realpaths = {p: realpath_or_none(p) for p in n.paths}
            facts.home_realpath = realpath_or_none(caller.home)
            facts.host_cpus = os.cpu_count()
            if n.count_containers:
                facts.owned_containers = await self.upstream.count_owned(caller.name)
        return rules.decide(req, caller, self.policy, facts)

    # ----- GPU lifecycle hooks
    async def gpu_before(self, req: Request, caller: Caller, d: Allow) -> rules.Decision:
        if d.endpoint == "containers.create" and d.gpu:
            if self.gpu is None:
                return Deny(409, "GPUs are not available through this docker service")
            name = d.query["name"][-1]
            try:
                uuids = await self.gpu.assign(name, caller, d.gpu)
            except self.gpu.errors as e:
                return Deny(409, e.message)
            body = rules.apply_gpu(d.body, uuids, self.gpu.device_requests)
            return Allow(d.query, body, d.filter, d.gpu, d.endpoint, d.target)
        if d.endpoint == "container.start" and d.target and d.target.labels.get(rules.GPU):
            if self.gpu is None:
                return Deny(
                    409, "this container holds a GPU but the GPU allocator is not available"
                )
            try:
                await self.gpu.allocate(d.target.name)
            except self.gpu.errors as e:
                return Deny(409, e.message)
        if (
            d.endpoint == "container.act"
            and req.path.endswith("/restart")
            and d.target
            and d.target.labels.get(rules.GPU)
        ):
            return Deny(
                409,
                f"{d.target.name} holds a GPU: restart it with docker stop and "
                "docker start, so that the GPU allocator sees both",
            )
        return d

    async def gpu_after(self, req: Request, d: Allow, status: int) -> None:
        if self.gpu is None:
            return
        if d.endpoint == "containers.create" and d.gpu and status >= 300:
            await self.gpu.forget(d.query["name"][-1])
        elif (
            d.endpoint == "container.start"
            and d.target
            and d.target.labels.get(rules.GPU)
            and status >= 300
            and status != 304
        ):
            await self.gpu.release(d.target.name)
        elif (
            d.endpoint == "container.remove"
            and d.target
            and d.target.labels.get(rules.GPU)
            and status < 300
        ):
            await self.gpu.forget(d.target.name)

    # ----- forwarding
    async def forward(
        self, reader, writer, head: Head, req: Request, split, caller: Caller, d: Allow, body
    ) -> tuple[int, bool]:
        """Send the (rewritten) request upstream and the answer back; return
        (status, whether the client connection stays usable)."""
        method = req.method
        target = split.path
        query = d.query if d.query is not None else None
        if query is not None:
            target += "?" + urlencode([(k, v) for k, vs in query.items() for v in vs])
        elif split.query:
            target += "?" + split.query
        upgrade = head.get("upgrade")
        headers = [(k, v) for k, v in head.headers if k.lower() not in HOP_HEADERS]
        headers.append(("Connection", "Upgrade" if upgrade else "close"))
        if upgrade:
            headers.append(("Upgrade", upgrade))
        send_body: bytes | None = None
        rt = rules.route(method, split.path)
        if rt is not None and rt.body == "json":
            payload = d.body if d.body is not None else body
            send_body = b"" if payload is None else json.dumps(payload).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers += [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(send_body))),
            ]
        elif head.chunked():
            headers.append(("Transfer-Encoding", "chunked"))
        elif head.length() is not None:
            headers.append(("Content-Length", str(head.length())))

        up_reader, up_writer = await self.upstream.open()
        try:
            up_writer.write(render_head(f"{method} {target} HTTP/1.1", headers))
            body_task = None
            if send_body is not None:
                up_writer.write(send_body)
            elif head.chunked() or head.length():
                body_task = asyncio.create_task(copy_body(reader, up_writer, head))
            await up_writer.drain()
            rhead = await read_head(up_reader)
            if rhead is None:
                raise ConnectionError("the docker daemon closed the connection")
            status = int(rhead.first.split(" ")[1])
            keep = True
            if body_task is not None:
                if status >= 300 and not body_task.done():
                    body_task.cancel()
                    keep = False
                try:
                    await body_task
                except (asyncio.CancelledError, ConnectionError, OSError):
                    keep = False

            if status == 101:  # hijacked: raw bytes both ways until both sides end
                writer.write(render_head(rhead.first, rhead.headers))
                await writer.drain()
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
                return status, False
            out_headers = [(k, v) for k, v in rhead.headers if k.lower() != "connection"]
            framed = rhead.chunked() or rhead.length() is not None
            no_body = method == "HEAD" or status in (204, 304)
            if d.filter and status == 200 and framed:
                raw = await read_body(up_reader, rhead, MAX_LIST_RESPONSE)
                items = rules.filter_list(d.filter, json.loads(raw), caller)
                data = json.dumps(items).encode()
                out_headers = [
                    (k, v)
                    for k, v in out_headers
                    if k.lower() not in ("content-length", "transfer-encoding")
                ]
                out_headers.append(("Content-Length", str(len(data))))
                writer.write(render_head(rhead.first, out_headers + [("Connection", "keep-alive")]))
                writer.write(data)
                await writer.drain()
                return status, keep
            if framed or no_body:
                writer.write(
                    render_head(
                        rhead.first,
                        out_headers + [("Connection", "keep-alive" if keep else "close")],
                    )
                )
                await writer.drain()
                if not no_body:
                    await copy_body(up_reader, writer, rhead)
                return status, keep
            # Unframed (an old-style hijacked attach, or a body ended by close):
            # pipe both ways until the daemon ends it, then close.
            writer.write(render_head(rhead.first, out_headers + [("Connection", "close")]))
            await writer.drain()
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return status, False
        finally:
            up_writer.close()


def serve(
    policy: Policy,
    socket_path: str | None = None,
    group: str | None = None,
    gpu=None,
    upstream: str | None = None,
) -> None:
    """Run the service until stopped (systemd socket activation when LISTEN_FDS is set)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    async def main():
        service = AccessService(policy, upstream=upstream, gpu=gpu)
        if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
            await service.start_on(socket.socket(fileno=3))
        else:
            await service.start(socket_path or policy.docker.user_socket, 0o660, group)
        tasks = [asyncio.create_task(service.server.serve_forever())]
        if gpu is not None:
            tasks.append(asyncio.create_task(gpu.watch(service.upstream)))
        log.info("ds01 docker access service ready (upstream %s)", service.upstream.path)
        await asyncio.gather(*tasks)

    asyncio.run(main())
