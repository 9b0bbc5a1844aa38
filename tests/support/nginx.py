"""A real nginx (the Debian package) in front of several Ladder nodes: round-robin, no affinity."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.server import ScratchProcess, free_port, wait_for_port

CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream ladder {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ladder;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 120s;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout;
{extra}
        }}
    }}
}}
"""


class Nginx(ScratchProcess):
    """nginx as a plain round-robin load balancer over ``upstreams`` (loopback ports)."""

    def __init__(self, upstreams: list[int], *, extra: str = "") -> None:
        self.upstreams = upstreams
        self.port = free_port()
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix="ladder-nginx-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=3s;" for port in self.upstreams
        )
        conf = self.dir / "nginx.conf"
        conf.write_text(CONFIG.format(dir=self.dir, servers=servers, port=self.port, extra=self.extra))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.dir), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for_port(self.port, proc=self.proc)
        return self
