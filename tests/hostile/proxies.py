"""Real nginx configured the way broken corporate proxies behave.

Each case is an nginx site in front of one Ladder node. They are deliberately wrong; the
correct configuration is ``deploy/nginx.conf``.

(a) ``strip-upgrade``: drops the ``Upgrade`` and ``Connection`` headers, as proxies that do not
    know WebSocket do. The node sees a plain ``GET <mount>/ws`` and answers 426, naming the
    headers a proxy must pass on: WebSocket cannot open.
(b) ``buffering``: buffers responses, ignores ``X-Accel-Buffering: no`` and compresses what it
    buffers (gzip, as "web accelerators" and virus scanners in the path do): a streamed
    response is held back entirely, headers included, until the proxy's buffers fill. It also
    strips ``Upgrade`` (a proxy that buffers everything does not tunnel either; with WebSocket
    through, there would be no buffered rung to detect).
(c) ``idle-cut``: cuts any connection that carried nothing for 10 s (read/send/keep-alive
    timeouts of 10 s), below Ladder's 20 s heartbeat and 25 s long-poll hold. WebSocket passes.
(c') the same with the server's ``heartbeat`` at 8 s: the remedy for (c), nothing is cut.
(d) ``slow``: a correct proxy on a slow, high-latency path: nginx limits each response to 32 KiB/s
    and a fault-injecting proxy in front of it adds 150 ms each way (300 ms round trips).
"""

from __future__ import annotations

from dataclasses import dataclass

SITE = """
map $http_upgrade $hostile_connection {{
    default upgrade;
    ''      '';
}}
upstream hostile_backend {{
    server 127.0.0.1:{backend};
    keepalive 16;
}}
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://hostile_backend;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
{rules}
    }}
}}
"""

PASS_UPGRADE = """
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $hostile_connection;"""

STRIP_UPGRADE = """
        proxy_set_header Upgrade "";
        proxy_set_header Connection "";"""


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    rules: str
    latency: float = 0.0
    """Seconds added each way by a fault-injecting proxy in front of nginx."""
    idle: float = 0.0
    """Seconds of silence in the middle of the test (longer than the proxy's idle timeout)."""
    expect: tuple[str, ...] = ("websocket", "sse", "longpoll", "poll")
    """Rungs a client may end up on (what the case leaves working)."""
    heartbeat: float | None = None
    """The server's heartbeat, when the case sets one (default: Ladder's 20 s)."""

    def site(self, port: int, backend: int) -> str:
        return SITE.format(port=port, backend=backend, rules=self.rules)


IDLE_CUT = """
        proxy_buffering off;
        proxy_read_timeout 10s;
        proxy_send_timeout 10s;
        send_timeout 10s;
        keepalive_timeout 10s;
        client_body_timeout 10s;"""

CASES = [
    Case(
        "a-strip-upgrade",
        "(a) strips Upgrade: WebSocket cannot open",
        STRIP_UPGRADE + "\n        proxy_buffering off;",
        expect=("sse",),
    ),
    Case(
        "b-buffering",
        "(b) buffers (and gzips) responses, ignores X-Accel-Buffering, no WebSocket",
        STRIP_UPGRADE
        + """
        proxy_buffering on;
        proxy_ignore_headers X-Accel-Buffering;
        gzip on;
        gzip_proxied any;
        gzip_min_length 0;
        gzip_types text/event-stream application/x-ndjson application/json;""",
        expect=("longpoll", "poll"),
    ),
    Case("c-idle-cut", "(c) cuts connections idle for 10 s", PASS_UPGRADE + IDLE_CUT, idle=14.0),
    Case(
        "c-idle-cut-heartbeat-8s",
        "(c') the same proxy, server heartbeat set to 8 s (below the proxy's idle timeout)",
        PASS_UPGRADE + IDLE_CUT,
        idle=14.0,
        heartbeat=8.0,
    ),
    Case(
        "d-slow",
        "(d) slow, high-latency path: 300 ms round trips, 32 KiB/s",
        PASS_UPGRADE
        + """
        proxy_buffering off;
        limit_rate 32k;""",
        latency=0.15,
        expect=("websocket",),
    ),
]
