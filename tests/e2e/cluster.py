"""Cluster-mode processes for the end-to-end suite: a private Redis, a Postgres database, the
real `omg-controlplane` and any number of real `omg-dataplane` processes joined through them.

Every test gets its own Redis server (so it can stop it), its own database and its own work
directory; nothing is shared with other tests. Binaries: OMG_CONTROLPLANE_BIN and
OMG_DATAPLANE_BIN (default target/debug/...); Redis: OMG_REDIS_SERVER_BIN (default
`redis-server` on PATH); Postgres: OMG_TEST_PG (default postgres://postgres:postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import binary, free_port, stop_process, tail, tcp_accepts, wait_until

PEPPER = "e2e-cluster-pepper-0123456789-abcdefgh"
ENC_KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="  # base64 of 32 bytes
JWT_SECRET = "e2e-cluster-jwt-secret-0123456789-abcdefgh"
INTERNAL_SECRET = "e2e-cluster-internal-secret-0123456789-abcdef"
# The control plane's snapshot signing key (Ed25519 PKCS#8) and its public key.
SIGNING_KEY = "MC4CAQAwBQYDK2VwBCIEIPj8YMeXzvQ+acNBRe9F+msgNqKVnYM+wR9NM93Q0VXt"
PUBLIC_KEY = "fVMN55tYSjEEjuu/FEUm8E+BaApt7WJ98lkXK34MzNc="
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-admin-password-4411"
START_TIMEOUT_S = 60.0
# Data planes' `server.upload_body_timeout`: short, so a trickled upload is cut quickly.
UPLOAD_BODY_TIMEOUT_S = 3

CATALOG = """\
model_catalog:
  - alias: mock-chat
    provider: mock
    price_input: 0.001
    price_output: 0.002
    metadata:
      mock_chunks: "2"
  - alias: mock-slow
    provider: mock
    metadata:
      mock_chunks: "5"
      mock_chunk_interval_ms: "200"
  - alias: mock-hold
    provider: mock
    metadata:
      mock_chunks: "150"
      mock_chunk_interval_ms: "200"
  - alias: mock-priced
    provider: mock
    price_input: 1.0
    price_output: 1.0
    metadata:
      mock_chunks: "2"
  - alias: mock-worst
    provider: mock
    price_input: 0.001
    price_output: 0.002
    metadata:
      mock_chunks: "2"
      mock_prompt_tokens: "2990"
      mock_completion_tokens: "800"
      mock_latency_ms: "50"
"""


def pg_base() -> str:
    return os.environ.get("OMG_TEST_PG", "postgres://postgres:postgres@127.0.0.1:5432")


def psql(database_url: str, sql: str) -> str:
    out = subprocess.run(
        ["psql", database_url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise AssertionError(f"psql failed: {out.stderr}")
    return out.stdout.strip()


def request(method: str, url: str, body: Any = None, headers: Optional[dict] = None,
            timeout: float = 10.0) -> tuple[int, Any, dict]:
    """HTTP with urllib; JSON in and out. Returns (status, parsed body or text, headers)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback)
            raw, status, rh = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, rh = err.read(), err.code, dict(err.headers)
    try:
        return status, json.loads(raw), rh
    except ValueError:
        return status, raw.decode(errors="replace"), rh


class Redis:
    """A private redis-server on a free port; stop() and start() keep the port."""

    def __init__(self, workdir: Path):
        self.exe = os.environ.get("OMG_REDIS_SERVER_BIN") or shutil.which("redis-server")
        if not self.exe:
            pytest.fail("redis-server not found: install it (scripts/test.sh does) or set OMG_REDIS_SERVER_BIN")
        self.port = free_port()
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / f"redis-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        if not wait_until(lambda: tcp_accepts("127.0.0.1", self.port), 20):
            pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        wait_until(lambda: not tcp_accepts("127.0.0.1", self.port), 10)

    def cli(self, *args: str) -> str:
        """A Redis command over a raw socket (no redis-cli needed); returns the raw reply."""
        import socket

        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"".join(parts))
            reply = b""
            while not reply.endswith(b"\r\n"):  # SET and PUBLISH answer with one line
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.decode(errors="replace")


@dataclass
class Process:
    name: str
    args: list[str]
    log_path: Path
    env: dict = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        env = {**os.environ, "OMG_LOG": "info", **self.env}
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=20)
            self.proc = None

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def log(self) -> str:
        return tail(self.log_path)


class Cluster:
    """One control plane, N data planes, one private Redis, one database."""

    def __init__(self, workdir: Path, dataplanes: int = 2, reclaim_idle: str = "2s",
                 files_yaml: Optional[str] = None, upload_body_timeout_s: int = UPLOAD_BODY_TIMEOUT_S,
                 extra_catalog: str = ""):
        """`files_yaml`: the control plane's `files:` section (default: a local directory
        under `workdir`); `extra_catalog`: catalog entries appended to the control plane's."""
        self.workdir = workdir
        if files_yaml is None:
            files_yaml = f'files:\n  local_dir: "{workdir / "files"}"\n'

        self.redis = Redis(workdir)
        self.redis.start()
        self.db_name = f"omg_e2e_{uuid.uuid4().hex[:16]}"
        psql(f"{pg_base()}/postgres", f"CREATE DATABASE {self.db_name}")
        self.db_url = f"{pg_base()}/{self.db_name}"
        cp_bin, problem = binary("OMG_CONTROLPLANE_BIN", "omg-controlplane")
        dp_bin, problem2 = binary("OMG_DATAPLANE_BIN", "omg-dataplane")
        if problem or problem2:
            pytest.fail(problem or problem2)
        self.cp_port, self.internal_port = free_port(), free_port()
        # The data planes' ports first: the control plane's batch worker sends to the first.
        self.dp_ports: list[tuple[int, int]] = [(free_port(), free_port()) for _ in range(dataplanes)]
        cp_config = workdir / "controlplane.yaml"
        cp_config.write_text(f"""\
server:
  listen_addr: "127.0.0.1:{self.cp_port}"
database:
  url: "{self.db_url}"
  max_connections: 8
redis:
  url: "{self.redis.url}"
cluster:
  publish_debounce: 20ms
  publish_interval: 2s
  usage_reclaim_idle: {reclaim_idle}
  internal_listen_addr: "127.0.0.1:{self.internal_port}"
  internal_secret: "{INTERNAL_SECRET}"
  snapshot_signing_key: "{SIGNING_KEY}"
security:
  api_key_pepper: "{PEPPER}"
  encryption_keys:
    - version: 1
      key: "{ENC_KEY}"
admin:
  session:
    jwt_secret: "{JWT_SECRET}"
    cookie_secure: false
{files_yaml}
batches:
  dataplane_url: "http://127.0.0.1:{self.dp_ports[0][0] if dataplanes else 9}"
  poll_interval: 200ms
  claim_lease: 5s
{CATALOG}{extra_catalog}
bootstrap:
  tenants:
    - name: demo
  admin_users:
    - email: "{ADMIN_EMAIL}"
      password: "{ADMIN_PASSWORD}"
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
      rate_limit: {{requests_per_minute: 0, parallel_requests: 100}}  # 0 = unlimited: load tests
""")
        self.controlplane = Process("controlplane", [str(cp_bin), "--config", str(cp_config), "serve"],
                                    workdir / "controlplane.log")
        self.dataplanes: list[Process] = []
        for index in range(dataplanes):
            port, admin_port = self.dp_ports[index]
            dp_dir = workdir / f"dp{index}"
            dp_dir.mkdir()
            config = dp_dir / "dataplane.yaml"
            config.write_text(f"""\
server:
  listen_addr: "127.0.0.1:{port}"
  admin_listen_addr: "127.0.0.1:{admin_port}"
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 10s
  upload_body_timeout: {upload_body_timeout_s}s
redis:
  url: "{self.redis.url}"
rate_limits:
  lease_ttl: 3s
cluster:
  snapshot_poll_interval: 500ms
  snapshot_cache_path: "{dp_dir}/snapshot.sealed"
  spool_dir: "{dp_dir}/spool"
  internal_url: "http://127.0.0.1:{self.internal_port}"
  internal_secret: "{INTERNAL_SECRET}"
  snapshot_public_keys: "{PUBLIC_KEY}"
security:
  api_key_pepper: "{PEPPER}"
  encryption_keys:
    - version: 1
      key: "{ENC_KEY}"
""")
            self.dataplanes.append(Process(f"dataplane{index}", [str(dp_bin), "--config", str(config)],
                                           dp_dir / "dataplane.log"))
        self.token: Optional[str] = None

    # -- lifecycle ------------------------------------------------------------------------

    def start_controlplane(self) -> None:
        self.controlplane.start()
        ok = wait_until(lambda: not self.controlplane.alive() or self.cp_healthy(), START_TIMEOUT_S, 0.1)
        if not ok or not self.controlplane.alive():
            pytest.fail(f"control plane did not become healthy\n{self.controlplane.log()}")

    def cp_healthy(self) -> bool:
        try:
            status, _, _ = request("GET", f"http://127.0.0.1:{self.cp_port}/healthz", timeout=2)
            return status == 200
        except OSError:
            return False

    def start_dataplane(self, index: int) -> None:
        dp = self.dataplanes[index]
        dp.start()
        port = self.dp_ports[index][0]
        ok = wait_until(lambda: not dp.alive() or tcp_accepts("127.0.0.1", port), START_TIMEOUT_S, 0.1)
        if not ok or not dp.alive():
            pytest.fail(f"{dp.name} did not start listening\n{dp.log()}")

    def start(self) -> "Cluster":
        self.start_controlplane()
        for index in range(len(self.dataplanes)):
            self.start_dataplane(index)
        return self

    def close(self) -> None:
        for dp in self.dataplanes:
            dp.stop()
        self.controlplane.stop()
        self.redis.stop()
        try:
            psql(f"{pg_base()}/postgres", f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        except AssertionError:
            pass

    def logs(self) -> str:
        parts = [f"--- {p.name} ---\n{p.log()}" for p in [self.controlplane, *self.dataplanes]]
        return "\n".join(parts)

    # -- admin API ------------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.token is None:
            status, session, _ = request("POST", f"http://127.0.0.1:{self.cp_port}/admin/auth/login",
                                         {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert status == 200, session
            self.token = session["access_token"]
        status, answer, _ = request(method, f"http://127.0.0.1:{self.cp_port}{path}", body,
                                    {"authorization": f"Bearer {self.token}"})
        return status, answer

    def tenant_id(self, name: str) -> str:
        status, page = self.admin("GET", "/admin/tenants?limit=200")
        assert status == 200, page
        return next(t["id"] for t in page["data"] if t["name"] == name)

    # -- data plane -----------------------------------------------------------------------

    def v1(self, index: int) -> str:
        return f"http://127.0.0.1:{self.dp_ports[index][0]}/v1"

    def chat(self, index: int, key: str, request_id: Optional[str] = None) -> tuple[int, Any, dict]:
        headers = {"authorization": f"Bearer {key}"}
        if request_id:
            headers["x-request-id"] = request_id
        return request("POST", f"{self.v1(index)}/chat/completions",
                       {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}, headers)

    def dp_health(self, index: int) -> dict:
        status, body, _ = request("GET", f"http://127.0.0.1:{self.dp_ports[index][1]}/healthz")
        assert status == 200, body
        return body

    # -- usage ----------------------------------------------------------------------------

    def usage_counts(self) -> tuple[int, int]:
        """(rows, distinct event ids) in the requests table."""
        out = psql(self.db_url, "SELECT count(*), count(DISTINCT event_id) FROM requests")
        rows, distinct = out.split("|")
        return int(rows), int(distinct)

    def usage_request_ids(self) -> list[str]:
        out = psql(self.db_url, "SELECT request_id FROM requests")
        return [line for line in out.splitlines() if line]
