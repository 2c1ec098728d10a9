"""The request the service writes to dockerd is its own: whatever headers,
query repetitions or spellings a client sends, the upstream head carries the
pinned version, the service's own headers and only what the route allows."""

from __future__ import annotations

from docker_world import POLICY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ds01.docker import http
from ds01.docker.policy import PINNED_API_VERSION, Allow
from ds01.docker.request import build_query, parse_request
from ds01.docker.routes import ROUTES
from ds01.docker.service import AccessService

EVIL = [
    "Upgrade",
    "Connection",
    "Transfer-Encoding",
    "Content-Length",
    "Host",
    "Expect",
    "Te",
    "Cookie",
    "Authorization",
    "X-Registry-Auth",
    "X-Registry-Config",
    "X-Forwarded-For",
    "Content-Type",
]
OURS = {"host", "user-agent", "connection", "upgrade", "content-type", "content-length",
        "transfer-encoding"}  # fmt: skip
SAMPLES = [
    ("GET", "/v1.41/containers/json", "all=1&filters=%7B%7D"),
    ("GET", "/v1.40/containers/c1/logs", "follow=1&stdout=1"),
    ("POST", "/v1.41/containers/c1/attach", "stream=1&stdin=1"),
    ("POST", "/v1.41/containers/c1/start", ""),
    ("POST", "/v1.41/build", "t=a&t=b&q=1"),
    ("POST", "/v1.41/images/img/push", "tag=1"),
    ("POST", "/containers/c1/stop", "t=3"),
    ("GET", "/v1.41/_ping", ""),
]
SERVICE = AccessService(POLICY, upstream="/nonexistent", identify=lambda uid: None)


@st.composite
def client_request(draw):
    method, path, query = draw(st.sampled_from(SAMPLES))
    names = draw(st.lists(st.sampled_from(EVIL), max_size=6))
    value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
    headers = [(n, draw(value)) for n in names]
    return method, path, query, headers


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(client_request())
def test_upstream_head_is_written_by_the_service(case):
    method, path, query, headers = case
    raw = "\r\n".join([f"{method} {path}?{query} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)])
    try:
        head = http.parse_head(raw.encode())
        parsed = parse_request(head)
    except Exception:
        return  # refused before any decision: nothing is written upstream
    up = http.parse_head(SERVICE.upstream_head(parsed, Allow(), head, None)[:-4])
    line = http.parse_request_line(up.first)
    assert line.method == method
    assert line.target.startswith(f"/v{PINNED_API_VERSION}/")
    assert line.target.partition("?")[2] == build_query(parsed.route.spec.op, parsed.query)
    allowed = OURS | {h.lower() for h in parsed.route.spec.headers}
    assert {k.lower() for k, _ in up.headers} <= allowed
    assert up.get("host") == "docker"
    assert up.get("connection") == ("Upgrade" if parsed.route.hijack else "close")
    assert (up.get("upgrade") is not None) == parsed.route.hijack
    for name in parsed.route.spec.headers:
        assert up.get(name) == head.get(name)
    if head.has_body and parsed.route.body == "stream":
        assert up.get("transfer-encoding") == "chunked" and up.get("content-length") is None
        assert up.get("content-type") == "application/x-tar"  # never the client's


def test_every_route_has_an_upstream_path_in_the_pinned_version():
    from ds01.docker.routes import route, upstream_path

    for spec in ROUTES:
        assert spec.methods and spec.op
    rt = route("GET", "/v1.40/images/registry.example.lan%2Fteam%2Fimg:1/json")
    assert upstream_path(rt) == f"/v{PINNED_API_VERSION}/images/registry.example.lan/team/img:1/json"
