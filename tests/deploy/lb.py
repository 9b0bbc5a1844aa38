"""Real load balancers running the shipped ``deploy/`` configs, and what the tests need around them.

* :func:`fill` fills a template's ``${LADDER_*}`` placeholders (what ``envsubst`` does with the
  variable list given in each file), refusing to leave one unfilled.
* :class:`NginxSite` runs Debian's nginx with a site file (``deploy/nginx.conf`` filled in, or a
  test's own) included in a minimal main config that only sets private temp paths.
* :class:`HAProxy` runs Debian's haproxy on ``deploy/haproxy.cfg`` *unchanged*, with the
  ``LADDER_*`` variables in its environment (HAProxy expands them itself).
* :class:`TcpRelay` is a TCP forwarder that can be cut and restored (a node losing Redis).
* :func:`make_tls` writes a throwaway CA and a server certificate for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.net.faultproxy import reset
from tests.support.server import ROOT, ScratchProcess, free_port, wait_for_port

DEPLOY = ROOT / "deploy"
PLACEHOLDER = re.compile(r"\$\{(LADDER_[A-Z0-9_]+)\}")

MAIN = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {access};
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {site};
}}
"""


def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``${LADDER_X}`` by ``values["LADDER_X"]``; every placeholder must have a value."""
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise KeyError(f"no value for {missing}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class NginxSite(ScratchProcess):
    """nginx serving one site file; ``port`` is free and already substituted as LADDER_LISTEN."""

    def __init__(self, site: str, *, port: int | None = None, access_log: bool = False) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ladder-nginx-"))
        self.dir.chmod(0o755)  # nginx's workers (user nobody) write request bodies in here
        self.site = site
        self.access_log = access_log
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_deploy(cls, name: str, values: dict[str, str], **kwargs: object) -> NginxSite:
        """``deploy/<name>`` filled in with ``values`` plus a free LADDER_LISTEN port."""
        port = free_port()
        text = fill((DEPLOY / name).read_text(), {"LADDER_LISTEN": f"127.0.0.1:{port}", **values})
        return cls(text, port=port, **kwargs)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def start(self) -> NginxSite:
        site = self.dir / "site.conf"
        site.write_text(self.site)
        access = f"{self.dir}/access.log" if self.access_log else "off"
        conf = self.dir / "nginx.conf"
        conf.write_text(MAIN.format(dir=self.dir, site=site, access=access))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        check = subprocess.run(
            [binary, "-t", "-q", "-p", str(self.dir), "-c", str(conf)], capture_output=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused the config:\n{check.stderr.decode()}\n{self.site}")
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.dir), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self



class HAProxy(ScratchProcess):
    """haproxy on ``deploy/haproxy.cfg`` exactly as shipped, configured by its environment."""

    def __init__(self, values: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {**os.environ, "LADDER_LISTEN": f"127.0.0.1:{self.port}", **values}
        self.config = DEPLOY / "haproxy.cfg"
        self.dir = Path(tempfile.mkdtemp(prefix="ladder-haproxy-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        """What haproxy said on stderr (health check transitions: ``Server ... is DOWN``)."""
        path = self.dir / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        check = subprocess.run(
            [binary, "-c", "-q", "-f", str(self.config)], env=self.env, capture_output=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(
                f"haproxy -c refused the config:\n{check.stdout.decode()}{check.stderr.decode()}"
            )
        # -db: stay in the foreground (no daemon), so the test owns the process.
        with open(self.dir / "haproxy.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(self.config)], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, proc=self.proc)
        return self



class TcpRelay:
    """A plain TCP forwarder on a free loopback port, on its own thread's event loop.

    :meth:`cut` resets every relayed connection and refuses new ones (with a reset) until
    :meth:`restore`: to whoever uses it, the service behind it became unreachable.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-relay", daemon=True)
        self._server: asyncio.Server | None = None

    def _call(self, fn: object) -> None:
        async def run() -> None:
            result = fn()  # type: ignore[operator]
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def start(self) -> TcpRelay:
        self._thread.start()

        async def listen() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

        self._call(listen)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            reset(writer)
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def cut(self) -> None:
        def apply() -> None:
            self.down = True
            for writer in list(self._writers):
                reset(writer)

        self._call(apply)

    def restore(self) -> None:
        def apply() -> None:
            self.down = False

        self._call(apply)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                reset(writer)

        self._call(close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@dataclass(frozen=True)
class Tls:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost (files in ``dir``)."""

    dir: Path
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """What a client uses to trust only this CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls() -> Tls:
    directory = Path(tempfile.mkdtemp(prefix="ladder-tls-"))
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ladder test CA (throwaway)")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    tls.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tls


def loopback_limits(**extra: object) -> dict[str, object]:
    """``Limits`` fields for servers whose every test client shares 127.0.0.1.

    The per-address request rate and session count (when this version of Ladder has them)
    would count all of a test's clients as one user; they are lifted. Fields this version
    does not know are left out, so the config stays valid either way.
    """
    from ladder import Limits  # noqa: PLC0415 - the library, imported where the config is built

    wanted: dict[str, object] = {"request_rate": 0, "max_sessions_per_address": 1_000_000, **extra}
    known = set(Limits.__dataclass_fields__)
    return {name: value for name, value in wanted.items() if name in known}
