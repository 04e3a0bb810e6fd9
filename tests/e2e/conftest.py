"""Fixtures for the end-to-end suite: the real `omg-dataplane` binary, fronting the real
`omg-mock-upstream` binary, driven by the official OpenAI Python SDK.

Binaries come from `OMG_DATAPLANE_BIN` and `OMG_MOCK_UPSTREAM_BIN` (scripts/test.sh sets
both); when unset, `target/debug/<name>` of this repo is used. A missing binary fails the
session with a message naming the variable — nothing is skipped.

Only the standard library is used here for HTTP (urllib), sockets and processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

CLIENT_KEY = "sk-demo.my-secret"
UPSTREAM_KEY = "upstream-key"

# Aliases the demo tenant may use, and the one it may not.
ALLOWED_ALIASES = [
    "mock-chat",
    "mock-embed",
    "gpt-up",
    "embed-up",
    "gpt-failover",
    "claude-up",
    "azure-up",
    "hf-chat",
    "hf-embed",
    "gemini-up",
    "gemini-embed-up",
    "bedrock-up",
    "bedrock-embed-up",
    "mock-img",
    "gpt-img-up",
    "bedrock-image-up",
    "gemini-image-up",
]
FORBIDDEN_ALIAS = "secret-model"
# Aliases with a price in the config below (their usage records must carry a cost).
PRICED_ALIASES = {"mock-chat", "gpt-up", "claude-up", "azure-up", "gemini-up", "bedrock-up"}
# The test-only Google service account (tests/fixtures/vertex/); its `token_uri` is pointed at
# the mock upstream's token endpoint, which verifies the JWTs it signs.
TEST_SERVICE_ACCOUNT = REPO_ROOT / "tests" / "fixtures" / "vertex" / "test-service-account.json"
# The access key id the mock's Bedrock routes verify SigV4 for (its secret is UPSTREAM_KEY).
BEDROCK_ACCESS_KEY_ID = "AKIAMOCKUPSTREAM0001"

MOCK_START_TIMEOUT_S = 30.0
GATEWAY_START_TIMEOUT_S = 60.0
GATEWAY_START_ATTEMPTS = 3
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 4000

CONFIG_TEMPLATE = """\
server:
  listen_addr: "127.0.0.1:{port}"
  admin_listen_addr: "127.0.0.1:{admin_port}"
  graceful_shutdown_delay: 0s
  graceful_shutdown_timeout: 10s
usage:
  jsonl_path: "{usage_path}"
model_catalog:
  - alias: mock-chat          # built-in mock provider: deterministic text, no network
    provider: mock
    price_input: 0.001        # USD per 1K tokens
    price_output: 0.002
    metadata:
      mock_chunks: "4"
  - alias: mock-embed
    provider: mock
    model_type: embedding
  - alias: mock-img           # built-in mock provider: real (tiny) PNGs
    provider: mock
    model_type: image
    price_per_image: 0.04     # USD per generated image
  - alias: gpt-img-up         # OpenAI's image API at the mock upstream: tokens and images billed
    provider: openai-compatible
    model_type: image
    provider_model: gpt-image-1
    endpoint: "{upstream}/v1"
    api_key: "{upstream_key}"
    price_input: 0.005
    price_output: 0.04
    price_per_image: 0.01
  - alias: gpt-up             # forwarded to the mock upstream
    provider: openai-compatible
    provider_model: gpt-test
    endpoint: "{upstream}/v1"
    api_key: "{upstream_key}"
    price_input: 0.001
    price_output: 0.002
  - alias: embed-up
    provider: openai-compatible
    model_type: embedding
    provider_model: text-embedding-test
    endpoint: "{upstream}/v1"
    api_key: "{upstream_key}"
  - alias: gpt-failover       # its first deployment always fails: requests fail over
    provider: openai-compatible
    provider_model: "gpt-test+fail-503"
    endpoint: "{upstream}/v1"
    api_key: "{upstream_key}"
  - alias: gpt-failover
    provider: openai-compatible
    provider_model: gpt-test
    endpoint: "{upstream}/v1"
    api_key: "{upstream_key}"
    priority: 1
  - alias: claude-up          # provider: anthropic, translated to the mock's Messages API
    provider: anthropic
    provider_model: claude-test
    endpoint: "{upstream}"
    api_key: "{upstream_key}"
    price_input: 0.003
    price_output: 0.015
  - alias: azure-up           # provider: azure, the mock's Azure OpenAI routes
    provider: azure
    endpoint: "{upstream}"
    deployment: gpt-test
    api_version: "2024-10-21"
    api_key: "{upstream_key}"
    price_input: 0.0025
    price_output: 0.01
  - alias: hf-chat            # provider: huggingface, TGI's OpenAI-compatible route (the
    provider: huggingface     # mock answers model `tgi` in TGI's dialect)
    provider_model: tgi
    endpoint: "{upstream}/v1"
    api_key: "{upstream_key}"
    health_check: false
  - alias: hf-embed           # provider: huggingface, Text Embeddings Inference's /embed
    provider: huggingface
    model_type: embedding
    provider_model: BAAI/bge-small-en-v1.5
    endpoint: "{upstream}"
    api_key: "{upstream_key}"
    health_check: false
  - alias: gemini-up          # provider: vertex, service-account token minted at the mock
    provider: vertex
    provider_model: gemini-test
    endpoint: "{upstream}"
    region: us-central1
    api_key: '{gcp_service_account}'
    price_input: 0.0003
    price_output: 0.0025
  - alias: gemini-embed-up    # provider: vertex, `:predict` embeddings
    provider: vertex
    model_type: embedding
    provider_model: text-embedding-test
    endpoint: "{upstream}"
    api_key: '{gcp_service_account}'
  - alias: bedrock-up         # provider: bedrock, the mock's Bedrock Runtime routes (SigV4 verified)
    provider: bedrock
    provider_model: "anthropic.claude-test-v1:0"
    endpoint: "{upstream}"
    region: us-east-1
    api_key: "{upstream_key}"  # with metadata.aws_access_key_id: that key's secret (SigV4)
    metadata:
      aws_access_key_id: "{bedrock_access_key_id}"
    price_input: 0.003
    price_output: 0.015
  - alias: bedrock-embed-up   # Titan text embeddings; api_key alone is a Bedrock API key (bearer)
    provider: bedrock
    model_type: embedding
    provider_model: "amazon.titan-embed-text-v2:0"
    endpoint: "{upstream}"
    region: us-east-1
    api_key: "{upstream_key}"
  - alias: bedrock-image-up   # Titan Image Generator through InvokeModel (SigV4 verified)
    provider: bedrock
    model_type: image
    provider_model: "amazon.titan-image-generator-v2:0"
    endpoint: "{upstream}"
    region: us-east-1
    api_key: "{upstream_key}"
    metadata:
      aws_access_key_id: "{bedrock_access_key_id}"
      bedrock_image_quality: premium
    price_per_image: 0.04
  - alias: gemini-image-up    # Imagen through Vertex AI `:predict`, the token minted at the mock
    provider: vertex
    model_type: image
    provider_model: imagen-test
    endpoint: "{upstream}"
    api_key: '{gcp_service_account}'
    price_per_image: 0.04
  - alias: secret-model       # exists, but the demo tenant may not use it
    provider: mock
bootstrap:
  tenants:
    - name: demo
      allowed_models: [mock-chat, mock-embed, gpt-up, embed-up, gpt-failover, claude-up, azure-up, hf-chat, hf-embed, gemini-up, gemini-embed-up, bedrock-up, bedrock-embed-up, mock-img, gpt-img-up, bedrock-image-up, gemini-image-up]
  api_keys:
    - tenant: demo
      prefix: demo
      secret: my-secret
      name: demo key
"""


# Everything here talks to loopback: never through a proxy the environment may name.
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1", "localhost"]))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def abort(message: str) -> None:
    """Stops the whole session with `message` (printed once): without the binaries running,
    no test can say anything useful, and every test repeating a start-up failure is noise."""
    pytest.exit(message, returncode=1)


def binary(env_var: str, name: str) -> tuple[Path, str]:
    """The binary named by `env_var` (default `target/debug/<name>`), and what is wrong with
    it ("" when it is an executable file)."""
    configured = os.environ.get(env_var)
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / name
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    how = f"{env_var}={configured!r}" if configured else f"{env_var} is unset, default {path}"
    return path, (
        f"{name} binary not found or not executable ({how}). Build it with "
        f"`cargo build --workspace --bins` and set {env_var} to its path "
        f"(scripts/test.sh does both)."
    )


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port that was free a moment ago (the caller retries if it is taken meanwhile), and
    never one this process handed out before: the kernel may offer a just-closed port again,
    and two listeners given the same port would share it (SO_REUSEPORT), each getting some
    of the other's connections."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    if len(text) > chars:
        text = "…" + text[-chars:]
    return text or "<empty>"


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Polls `condition` until it is true (→ True) or `timeout` seconds pass (→ False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET with urllib; returns (status, body). Connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> Optional[int]:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def read_usage(path: Path) -> list[dict[str, Any]]:
    """All complete JSON lines of the usage file (a half-written last line is ignored)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def wait_for_usage(gateway: "Gateway", request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Polls the usage JSONL file until the record of `request_id` appears; returns it."""
    assert request_id, "no request id to look for (the response carried no x-request-id?)"
    found: list[dict[str, Any]] = []

    def present() -> bool:
        found[:] = [r for r in read_usage(gateway.usage_path) if r.get("request_id") == request_id]
        return bool(found)

    if not wait_until(present, timeout, interval=0.05):
        records = read_usage(gateway.usage_path)
        recent = [r.get("request_id") for r in records[-10:]]
        pytest.fail(
            f"no usage record for request_id {request_id!r} in {gateway.usage_path} after "
            f"{timeout}s ({len(records)} records; last request ids: {recent})"
        )
    assert len(found) == 1, f"{len(found)} usage records for {request_id!r}: {found}"
    return found[0]


# --------------------------------------------------------------------------------------------
# mock upstream
# --------------------------------------------------------------------------------------------


@dataclass
class MockUpstream:
    url: str  # http://127.0.0.1:PORT (no /v1)
    proc: subprocess.Popen
    log_path: Path


@dataclass
class Binaries:
    dataplane: Path
    mock_upstream: Path


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    """Both binaries, checked before either is started (one message names every missing one)."""
    missing = []
    found = {}
    for attr, env_var, name in (
        ("dataplane", "OMG_DATAPLANE_BIN", "omg-dataplane"),
        ("mock_upstream", "OMG_MOCK_UPSTREAM_BIN", "omg-mock-upstream"),
    ):
        path, problem = binary(env_var, name)
        found[attr] = path
        if problem:
            missing.append(problem)
    if missing:
        abort("\n".join(missing))
    return Binaries(**found)


@pytest.fixture(scope="session")
def mock_upstream(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory):
    exe = binaries.mock_upstream
    workdir = tmp_path_factory.mktemp("mock-upstream")
    port_file = workdir / "port"
    log_path = workdir / "mock-upstream.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "--listen", "127.0.0.1:0", "--api-key", UPSTREAM_KEY, "--port-file", str(port_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    address: list[tuple[str, int]] = []

    def ready() -> bool:
        if proc.poll() is not None:
            return True  # reported below
        try:
            text = port_file.read_text().strip()
        except OSError:
            return False
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            return False  # not fully written yet
        if not tcp_accepts(host, int(port)):
            return False
        address[:] = [(host, int(port))]
        return True

    ok = wait_until(ready, MOCK_START_TIMEOUT_S)
    if proc.poll() is not None or not ok or not address:
        stop_process(proc, timeout=5)
        why = (
            f"exited with code {proc.returncode} during start-up"
            if proc.returncode is not None
            else f"wrote no reachable address to {port_file} within {MOCK_START_TIMEOUT_S}s"
        )
        abort(
            f"omg-mock-upstream {why} ({exe})\n"
            f"--- its output ---\n{tail(log_path)}"
        )
    global _MOCK
    host, port = address[0]
    _MOCK = MockUpstream(url=f"http://{host}:{port}", proc=proc, log_path=log_path)
    try:
        yield _MOCK
    finally:
        _MOCK = None
        stop_process(proc, timeout=10)


# --------------------------------------------------------------------------------------------
# gateway
# --------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    base_url: str  # http://127.0.0.1:PORT/v1
    admin_url: str  # http://127.0.0.1:ADMIN_PORT
    usage_path: Path
    log_path: Path
    config_path: Path
    proc: subprocess.Popen


# The running processes, for the failure report hook below.
_GATEWAY: Optional[Gateway] = None
_MOCK: Optional[MockUpstream] = None


def service_account_json(upstream_url: str) -> str:
    """The test service account's key, one line, `token_uri` at the mock upstream."""
    key = json.loads(TEST_SERVICE_ACCOUNT.read_text())
    key["token_uri"] = f"{upstream_url}/token"
    return json.dumps(key)


def _start_gateway(exe: Path, workdir: Path, upstream_url: str) -> tuple[Optional[Gateway], str]:
    """One start attempt. Returns (gateway, "") when healthy, (None, reason) when the process
    exited early (worth retrying with new ports); fails the session on a timeout."""
    port, admin_port = free_port(), free_port()
    while admin_port == port:
        admin_port = free_port()
    usage_path = workdir / "usage.jsonl"
    config_path = workdir / "gateway.yaml"
    log_path = workdir / "gateway.log"
    config_path.write_text(
        CONFIG_TEMPLATE.format(
            port=port,
            admin_port=admin_port,
            usage_path=usage_path,
            upstream=upstream_url,
            upstream_key=UPSTREAM_KEY,
            gcp_service_account=service_account_json(upstream_url),
            bedrock_access_key_id=BEDROCK_ACCESS_KEY_ID,
        )
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    admin_url = f"http://127.0.0.1:{admin_port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            return True  # reported below
        try:
            status, _ = http_get(f"{admin_url}/healthz", timeout=1.0)
        except OSError:
            return False
        return status == 200

    ok = wait_until(healthy, GATEWAY_START_TIMEOUT_S, interval=0.1)
    if proc.poll() is not None:
        return None, f"omg-dataplane exited with {proc.returncode} during start-up\n--- {log_path} ---\n{tail(log_path)}"
    if not ok:
        stop_process(proc, timeout=5)
        abort(
            f"omg-dataplane: GET {admin_url}/healthz did not answer 200 within "
            f"{GATEWAY_START_TIMEOUT_S}s\n--- {log_path} ---\n{tail(log_path)}"
        )
    gateway = Gateway(
        base_url=f"http://127.0.0.1:{port}/v1",
        admin_url=admin_url,
        usage_path=usage_path,
        log_path=log_path,
        config_path=config_path,
        proc=proc,
    )
    return gateway, ""


@pytest.fixture(scope="session")
def gateway(binaries: Binaries, mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory):
    global _GATEWAY
    exe = binaries.dataplane
    failures = []
    gw: Optional[Gateway] = None
    for attempt in range(1, GATEWAY_START_ATTEMPTS + 1):
        workdir = tmp_path_factory.mktemp(f"gateway-{attempt}")
        gw, reason = _start_gateway(exe, workdir, mock_upstream.url)
        if gw is not None:
            break
        failures.append(f"attempt {attempt}: {reason}")
    if gw is None:
        abort(
            f"omg-dataplane did not start in {GATEWAY_START_ATTEMPTS} attempts ({exe}):\n" + "\n\n".join(failures)
        )
    _GATEWAY = gw
    try:
        yield gw
    finally:
        _GATEWAY = None
        code = stop_process(gw.proc)
        # A clean SIGTERM drain exits 0; anything else is worth a look in the log.
        if code not in (0, -signal.SIGTERM):
            print(f"\nomg-dataplane exited with {code} on SIGTERM\n--- {gw.log_path} ---\n{tail(gw.log_path)}")


def make_client(gateway: Gateway, api_key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0, timeout=30.0)


@pytest.fixture
def client(gateway: Gateway):
    if gateway.proc.poll() is not None:
        pytest.fail(
            f"omg-dataplane is no longer running (exit {gateway.proc.returncode})\n"
            f"--- {gateway.log_path} ---\n{tail(gateway.log_path)}"
        )
    with make_client(gateway) as c:
        yield c


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the tails of the gateway's and the mock upstream's logs."""
    report = yield
    if report.when == "call" and report.failed:
        if _GATEWAY is not None:
            report.sections.append((f"omg-dataplane log (tail of {_GATEWAY.log_path})", tail(_GATEWAY.log_path)))
        if _MOCK is not None:
            report.sections.append((f"omg-mock-upstream log (tail of {_MOCK.log_path})", tail(_MOCK.log_path, 1500)))
        cluster = getattr(item, "omg_cluster", None)
        if cluster is not None:
            report.sections.append(("cluster process logs (tails)", cluster.logs()))
    return report
