"""The DS01 docker access service: a Docker API endpoint for ordinary users.

It listens on ``docker.user_socket`` (group ``docker-users``), learns who is
calling from the kernel (``SO_PEERCRED``: the uid cannot be forged), maps the
uid to a user and role through NSS, parses each request into a canonical form
(:mod:`ds01.docker.request`), decides it (:func:`ds01.docker.policy.decide`)
and, when allowed, writes its own request to the real socket from that
decision alone: its request line with the pinned API version, its own headers,
its own JSON. Only payloads that are streams by nature (a build context, a
tar) pass through, re-framed by the service. One request per upstream
connection; only a real ``101 Switching Protocols`` on a hijack route (attach,
exec start) turns the connection into raw pipes.

It fails closed: a request it cannot parse, a lookup that fails, or any error
while deciding is answered with an error and nothing is sent to the daemon.

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
from collections import Counter
from collections.abc import Callable

from ds01 import events
from ds01.config import Policy
from ds01.docker import http, schema
from ds01.docker import policy as rules
from ds01.docker.daemon import MAX_LOOKUP_RESPONSE, Upstream, read_response_head
from ds01.docker.http import BadRequest, Head, error_response, render_head
from ds01.docker.policy import Allow, Caller, Deny, Facts, Request
from ds01.docker.request import ParsedRequest, build_query, parse_request

log = logging.getLogger("ds01.docker")

# A refused request's unread body is read and dropped up to this much.
LINGER_BYTES = 1 << 30

# Response headers of the daemon that the service does not pass on (it frames
# the answer itself).
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
}


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


def realpath_or_none(path: str) -> str | None:
    real = os.path.realpath(path)
    return real if os.path.exists(real) else None


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------


class AccessService:
    """
    + policy: the validated policy (``docker.service`` gives timeouts and the
      per-user connection cap)
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
        limits = policy.docker.service
        self.timeouts = http.Timeouts(
            head=limits.header_timeout, idle=limits.idle_timeout, body=limits.body_timeout
        )
        self.max_connections = limits.max_connections_per_user
        self.server: asyncio.AbstractServer | None = None
        # Strong references to the connection tasks: asyncio keeps only a weak
        # one once a client half-closes, and a collected task dies mid-stream.
        self._tasks: set[asyncio.Task] = set()
        self._open: Counter[int] = Counter()

    async def start(self, path: str, mode: int = 0o660, group: str | None = None) -> None:
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.server = await asyncio.start_unix_server(self.handle, path=path, limit=http.MAX_HEAD)
        os.chmod(path, mode)
        if group:
            os.chown(path, 0, grp.getgrnam(group).gr_gid)

    async def start_on(self, sock: socket.socket) -> None:
        """Serve a socket systemd passed in (socket activation)."""
        self.server = await asyncio.start_unix_server(self.handle, sock=sock, limit=http.MAX_HEAD)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        counted = None
        try:
            _, uid, _ = peer_uid(writer.get_extra_info("socket"))
            if uid != 0 and self._open[uid] >= self.max_connections:
                log.warning("uid %d: connection refused, %d already open", uid, self._open[uid])
                writer.write(
                    error_response(
                        429,
                        f"DS01 docker service: your account already has {self._open[uid]} open "
                        f"connections (the most is {self.max_connections}); close some "
                        "(stop idle 'docker logs -f', 'docker events' or scripts) and retry",
                        False,
                    )
                )
                await writer.drain()
                return
            self._open[uid] += 1
            counted = uid
            caller = await asyncio.to_thread(self.identify, uid)
            if caller is None:
                writer.write(error_response(403, f"uid {uid} has no account on this server", False))
                await writer.drain()
                return
            first = True
            while await self.one_request(reader, writer, caller, first):
                first = False
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except Exception:  # never let one connection take the service down
            log.exception("unexpected error on a client connection")
        finally:
            if counted is not None:
                self._open[counted] -= 1
                if self._open[counted] <= 0:
                    del self._open[counted]
            writer.close()
            self._tasks.discard(task)

    async def one_request(self, reader, writer, caller: Caller, first: bool = True) -> bool:
        """Serve one request; True to keep the client connection for another."""
        t = self.timeouts
        try:
            head = await http.read_head(reader, timeout=t.head, idle=None if first else t.idle)
            if head is None:
                return False
            parsed = parse_request(head)
            body = None
            if parsed.route is not None and parsed.route.body == "json":
                if head.get("expect") is not None:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                raw = await http.read_body(reader, head, rules.MAX_JSON_BODY, t.body)
                body = parsed.json_body(raw)
            req = Request(parsed.method, parsed.path, parsed.query, body)
            decision = await self.decide(req, caller, parsed)
        except BadRequest as e:
            return await self._refuse(writer, caller, None, e.status, e.message, False)
        except rules.Refused as e:
            return await self._refuse(writer, caller, None, e.status, e.message, False)
        except (ValueError, KeyError, ConnectionError, asyncio.IncompleteReadError) as e:
            status = 502 if isinstance(e, ConnectionError) else 400
            msg = f"DS01 docker service: the request could not be checked ({e}); nothing was done"
            return await self._refuse(writer, caller, None, status, msg, False)

        # The body of a refused request was not read unless it was JSON.
        consumed = parsed.route is not None and parsed.route.body == "json" or not head.has_body
        keep = consumed and parsed.keep_alive
        if isinstance(decision, Deny):
            await self._refuse(writer, caller, req, decision.status, decision.message, keep)
            if not consumed:
                await self._linger(reader)
            return keep

        pre = await self.gpu_before(caller, decision)
        if isinstance(pre, Deny):
            return await self._refuse(writer, caller, req, pre.status, pre.message, keep)
        decision = pre
        self._record(caller, req, decision, None)
        status, keep = await self.forward(reader, writer, head, parsed, req, caller, decision)
        await self.gpu_after(decision, status)
        return keep and parsed.keep_alive

    async def _refuse(self, writer, caller, req, status: int, message: str, keep: bool) -> bool:
        self._record(caller, req, None, (status, message))
        writer.write(error_response(status, message, keep))
        await writer.drain()
        return keep

    async def _linger(self, reader) -> None:
        """Read and discard what a refused client is still sending (a build
        context, a tar) before closing, so that it reads the answer instead of
        a broken pipe. Bounded in bytes and by the body timeout."""
        left = LINGER_BYTES
        try:
            while left > 0:
                data = await asyncio.wait_for(reader.read(65536), self.timeouts.body)
                if not data:
                    return
                left -= len(data)
        except (TimeoutError, ConnectionError, OSError):
            return

    def _record(self, caller: Caller, req: Request | None, allow: Allow | None, deny) -> None:
        """One structured line per decision."""
        rec = {
            "user": caller.name,
            "role": caller.role,
            "method": req.method if req else None,
            "path": req.path if req else None,
            "decision": "allow" if allow is not None else "deny",
        }
        if deny is not None:
            rec["status"], rec["message"] = deny
            events.emit("docker_refused", **rec)
        (log.info if allow is not None else log.warning)("decision %s", json.dumps(rec))

    async def decide(self, req: Request, caller: Caller, parsed: ParsedRequest) -> rules.Decision:
        facts = Facts()
        rt = parsed.route
        if rt is not None:
            n = rules.needs(req, caller, rt)
            found = await asyncio.gather(*(self.upstream.target(k, r) for k, r in n.targets))
            facts.targets = dict(zip(n.targets, found, strict=True))
            facts.realpaths = {p: realpath_or_none(p) for p in n.paths}
            facts.home_realpath = realpath_or_none(caller.home)
            facts.host_cpus = os.cpu_count()
            if n.count_containers or n.own_containers:
                facts.own_containers = await self.upstream.owned_containers(caller.name)
                facts.owned_containers = len(facts.own_containers)
        return rules.decide(req, caller, self.policy, facts)

    # ----- GPU lifecycle hooks (the decision says which applies)
    async def gpu_before(self, caller: Caller, d: Allow) -> rules.Decision:
        if d.gpu_hook == "assign":
            if self.gpu is None:
                return Deny(409, "GPUs are not available through this docker service")
            name = d.query["name"]
            try:
                assigned = await self.gpu.assign(name, caller, d.gpu)
            except self.gpu.errors as e:
                return Deny(409, e.message)
            body = rules.apply_gpu(d.body, assigned.uuids, self.gpu.device_requests)
            return Allow(
                d.query, body, d.filter, d.gpu, d.endpoint, d.target, d.gpu_hook, assigned.created
            )
        if d.gpu_hook == "allocate":
            if self.gpu is None:
                return Deny(
                    409, "this container holds a GPU but the GPU allocator is not available"
                )
            try:
                await self.gpu.allocate(d.target.name)
            except self.gpu.errors as e:
                return Deny(409, e.message)
        return d

    async def gpu_after(self, d: Allow, status: int) -> None:
        if self.gpu is None or d.gpu_hook is None:
            return
        if d.gpu_hook == "assign" and status >= 300 and d.gpu_created:
            # Only an assignment this request made: a repeated create of a
            # running container's name (409) must not free its units.
            await self.gpu.forget(d.query["name"])
        elif d.gpu_hook == "allocate" and status >= 300 and status != 304:
            await self.gpu.release(d.target.name)
        elif d.gpu_hook == "forget" and status < 300:
            await self.gpu.forget(d.target.name)

    # ----- the upstream request, written from the decision
    def upstream_head(self, parsed: ParsedRequest, d: Allow, head: Head, body: bytes | None):
        rt = parsed.route
        target = rules.upstream_path(rt)
        query = build_query(rt.spec.op, d.query if d.query is not None else parsed.query)
        if query:
            target += "?" + query
        headers = [("Host", "docker"), ("User-Agent", "ds01-docker")]
        for name in rt.spec.headers:
            value = head.get(name)
            if value is not None:
                headers.append((name, value))
        if rt.hijack:
            headers += [("Connection", "Upgrade"), ("Upgrade", "tcp")]
        else:
            headers.append(("Connection", "close"))
        if body is not None:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        elif rt.body == "stream" and head.has_body:
            # Never the client's type: dockerd reads a form-encoded body as
            # query parameters (build?networkmode=host in the body).
            headers += [("Content-Type", "application/x-tar"), ("Transfer-Encoding", "chunked")]
        return render_head(f"{parsed.method} {target} HTTP/1.1", headers)

    async def forward(
        self, reader, writer, head: Head, parsed: ParsedRequest, req: Request, caller, d: Allow
    ) -> tuple[int, bool]:
        """Send the decided request upstream and the answer back; return
        (status, whether the client connection stays usable)."""
        rt = parsed.route
        body = None
        if rt.body == "json":
            payload = d.body if d.body is not None else req.body
            body = b"" if payload is None else schema.dumps(payload)
        streaming = rt.body == "stream" and head.has_body
        if streaming and head.get("expect") is not None:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()

        up_reader, up_writer = await self.upstream.open()
        body_task = None
        try:
            up_writer.write(self.upstream_head(parsed, d, head, body))
            if body:
                up_writer.write(body)
            await up_writer.drain()
            if streaming:
                body_task = asyncio.create_task(self._stream_body(reader, up_writer, head))
            rhead = await read_response_head(up_reader)
            status = rhead.status
            keep = True
            if body_task is not None:
                if status >= 300 and not body_task.done():
                    body_task.cancel()
                try:
                    await body_task
                except (asyncio.CancelledError, ConnectionError, OSError, BadRequest):
                    keep = False
                body_task = None

            if status == 101:
                if not rt.hijack:
                    raise ConnectionError("the docker daemon switched protocols on a plain route")
                writer.write(
                    render_head(
                        rhead.first,
                        [*self._pass_headers(rhead), ("Connection", "Upgrade"), ("Upgrade", "tcp")],
                    )
                )
                await writer.drain()
                await self._pipe_both(reader, writer, up_reader, up_writer)
                return status, False
            return status, await self._answer(
                (reader, writer), (up_reader, up_writer), rhead, parsed, caller, d, keep
            )
        finally:
            if body_task is not None:
                body_task.cancel()
            up_writer.close()

    async def _stream_body(self, reader, up_writer, head: Head) -> None:
        """A streamed payload, re-framed by the service as chunks."""
        async for data in http.body_pieces(reader, head, self.timeouts.body):
            up_writer.write(http.chunk(data))
            await up_writer.drain()
        up_writer.write(http.LAST_CHUNK)
        await up_writer.drain()

    @staticmethod
    def _pass_headers(rhead: Head) -> list[tuple[str, str]]:
        return [(k, v) for k, v in rhead.headers if k.lower() not in _HOP]

    async def _answer(self, client, daemon, rhead: Head, parsed, caller, d: Allow, keep) -> bool:
        """The daemon's answer to the client, framed by the service."""
        reader, writer = client
        up_reader, up_writer = daemon
        status = rhead.status
        headers = self._pass_headers(rhead)
        framed = rhead.chunked or rhead.length is not None
        no_body = parsed.method == "HEAD" or status in (204, 304)
        conn = [("Connection", "keep-alive" if keep and parsed.keep_alive else "close")]
        if d.filter and status == 200:
            if framed:
                raw = await http.read_body(up_reader, rhead, MAX_LOOKUP_RESPONSE)
            else:
                raw = await http.read_until_close(up_reader, MAX_LOOKUP_RESPONSE)
            data = json.dumps(
                rules.filter_response(d, json.loads(raw), caller, self.policy)
            ).encode()
            writer.write(
                render_head(rhead.first, [*headers, ("Content-Length", str(len(data))), *conn])
            )
            writer.write(data)
            await writer.drain()
            return keep
        if no_body:
            length = [("Content-Length", str(rhead.length))] if rhead.length is not None else []
            writer.write(render_head(rhead.first, [*headers, *length, *conn]))
            await writer.drain()
            return keep
        if rhead.chunked:
            writer.write(
                render_head(rhead.first, [*headers, ("Transfer-Encoding", "chunked"), *conn])
            )
            await writer.drain()
            async for data in http.chunks(up_reader):
                writer.write(http.chunk(data))
                await writer.drain()
            writer.write(http.LAST_CHUNK)
            await writer.drain()
            return keep
        if rhead.length is not None:
            writer.write(
                render_head(rhead.first, [*headers, ("Content-Length", str(rhead.length)), *conn])
            )
            await writer.drain()
            async for data in http.pieces(up_reader, rhead.length):
                writer.write(data)
                await writer.drain()
            return keep
        # Unframed: a body that ends when the daemon closes, or (hijack routes
        # only) the old-style raw stream of attach/exec without an upgrade.
        writer.write(render_head(rhead.first, [*headers, ("Connection", "close")]))
        await writer.drain()
        if parsed.route.hijack:
            await self._pipe_both(reader, writer, up_reader, up_writer)
        else:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
        return False

    async def _pipe_both(self, reader, writer, up_reader, up_writer) -> None:
        """Raw bytes both ways until both sides end (half-close passed on)."""
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


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
