"""Cluster mode end to end: one control plane, two data planes, a private Redis and a
Postgres database, all real processes. Keys propagate within a second; usage survives Redis
outages and a control plane killed with SIGKILL, with exactly one row per request; data
planes restart from their disk snapshot; tampered snapshots are refused; files and batches
reach the control plane only through the signed channel.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster import UPLOAD_BODY_TIMEOUT_S, Cluster, request
from conftest import wait_until

DEMO_KEY = "sk-demo.my-secret"


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path)
    request.node.omg_cluster = c  # failed tests get the processes' logs (conftest hook)
    try:
        yield c.start()
    finally:
        c.close()


def ok_on(cluster: Cluster, index: int, key: str) -> bool:
    status, _, _ = cluster.chat(index, key)
    return status == 200


def refused_on(cluster: Cluster, index: int, key: str) -> bool:
    status, body, _ = cluster.chat(index, key)
    return status == 401 and body["error"]["code"] == "invalid_api_key"


def test_keys_propagate_to_both_dataplanes_within_a_second(cluster: Cluster):
    tid = cluster.tenant_id("demo")
    status, issued = cluster.admin("POST", f"/admin/tenants/{tid}/api-keys", {"name": "e2e"})
    assert status == 201, issued
    key = issued["key"]
    started = time.monotonic()
    for index in (0, 1):
        assert wait_until(lambda: ok_on(cluster, index, key), 1.0 - (time.monotonic() - started) + 0.05), \
            f"new key not usable on dataplane {index} within 1 s\n{cluster.logs()}"

    status, _ = cluster.admin("DELETE", f"/admin/tenants/{tid}/api-keys/{issued['id']}")
    assert status == 200
    started = time.monotonic()
    for index in (0, 1):
        assert wait_until(lambda: refused_on(cluster, index, key), 1.0 - (time.monotonic() - started) + 0.05), \
            f"revoked key still accepted on dataplane {index} after 1 s"
    # The bootstrap key is untouched.
    assert ok_on(cluster, 0, DEMO_KEY) and ok_on(cluster, 1, DEMO_KEY)


def test_redis_outage_spools_usage_and_delivers_it_once(cluster: Cluster):
    ids = []
    for i in range(10):
        rid = f"before-{uuid.uuid4()}"
        assert cluster.chat(i % 2, DEMO_KEY, rid)[0] == 200
        ids.append(rid)
    assert wait_until(lambda: cluster.usage_counts()[0] == 10, 10), cluster.logs()

    cluster.redis.stop()
    for i in range(40):
        rid = f"during-{uuid.uuid4()}"
        status, body, _ = cluster.chat(i % 2, DEMO_KEY, rid)
        assert status == 200, body
        ids.append(rid)
    health = cluster.dp_health(0)
    assert health["mode"] == "cluster", health

    cluster.redis.start()
    assert wait_until(lambda: cluster.usage_counts()[0] >= 50, 30, 0.2), \
        f"spooled usage not delivered: {cluster.usage_counts()}\n{cluster.logs()}"
    rows, distinct = cluster.usage_counts()
    assert rows == distinct == 50
    assert sorted(cluster.usage_request_ids()) == sorted(ids)


def test_controlplane_killed_mid_run_loses_and_duplicates_nothing(cluster: Cluster):
    total = 2000
    ids = [f"load-{i}-{uuid.uuid4()}" for i in range(total)]
    done = 0
    failures = []
    lock = threading.Lock()

    def send(i: int) -> None:
        nonlocal done
        status, body, _ = cluster.chat(i % 2, DEMO_KEY, ids[i])
        with lock:
            done += 1
            if status != 200:
                failures.append((ids[i], status, body))

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(send, i) for i in range(total)]
        assert wait_until(lambda: done >= 400, 60), "load did not start"
        cluster.controlplane.kill9()
        assert wait_until(lambda: done >= 1200, 60)
        cluster.start_controlplane()
        for future in futures:
            future.result()
    assert not failures, failures[:5]
    assert wait_until(lambda: cluster.usage_counts()[0] >= total, 60, 0.25), \
        f"usage rows {cluster.usage_counts()} of {total}\n{cluster.logs()}"
    rows, distinct = cluster.usage_counts()
    assert rows == distinct == total
    assert sorted(cluster.usage_request_ids()) == sorted(ids)


def test_dataplane_restarts_from_its_disk_snapshot_while_redis_is_down(cluster: Cluster):
    assert ok_on(cluster, 0, DEMO_KEY)
    cluster.redis.stop()
    cluster.dataplanes[0].stop()
    cluster.start_dataplane(0)
    assert ok_on(cluster, 0, DEMO_KEY), cluster.dataplanes[0].log()
    health = cluster.dp_health(0)
    assert health["mode"] == "cluster"
    assert health["bus"]["snapshot_source"] == "disk", health
    cluster.redis.start()


def test_tampered_snapshot_is_refused_and_the_last_good_one_kept(cluster: Cluster):
    before = cluster.dp_health(0)
    version = int(before["snapshot"]["version"])
    key = "omg:snapshot"
    cluster.redis.cli("SET", key, "OMGSNAP1-this-is-not-a-sealed-snapshot")
    cluster.redis.cli("SET", f"{key}:version", str(version + 1))
    cluster.redis.cli("PUBLISH", f"{key}:published", str(version + 1))
    assert wait_until(lambda: cluster.dp_health(0)["bus"]["last_error"] is not None, 5), \
        cluster.dp_health(0)
    assert cluster.dp_health(0)["snapshot"]["version"] == version
    assert ok_on(cluster, 0, DEMO_KEY)
    # The control plane's next publication supersedes the garbage.
    assert wait_until(lambda: cluster.dp_health(0)["snapshot"]["version"] > version + 1, 10), \
        cluster.dp_health(0)


def test_files_and_batches_reach_the_controlplane_only_with_a_signature(cluster: Cluster):
    body = bytes(range(256)) * 8192  # 2 MiB
    status, probe, headers = request(
        "POST", f"{cluster.v1(1)}/files/_identity?purpose=batch&after=file-%2Fx&limit=2", body,
        {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/octet-stream",
         "x-request-id": "files-probe-1"})
    assert status == 200, probe
    assert probe["tenant_id"] == cluster.tenant_id("demo")
    assert probe["body_bytes"] == len(body)
    assert probe["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert probe["client_credentials_received"] is False
    assert probe["request_id"] == "files-probe-1"
    # The query string reaches the control plane byte for byte, bound into the signed identity.
    assert probe["query"] == "purpose=batch&after=file-%2Fx&limit=2"
    assert headers.get("x-request-id") == "files-probe-1"

    # Without a key the data plane refuses; the internal listener refuses unsigned calls.
    status, error, _ = request("GET", f"{cluster.v1(0)}/batches/_identity")
    assert status == 401 and error["error"]["code"] == "invalid_api_key"
    status, error, _ = request("POST", f"http://127.0.0.1:{cluster.internal_port}/v1/files/_identity", b"x",
                               {"authorization": f"Bearer {DEMO_KEY}"})
    assert status == 401, error
    assert error["error"]["code"] == "invalid_api_key"


def test_a_trickled_upload_is_cut_at_the_upload_deadline(cluster: Cluster):
    """An upload whose body trickles in (one byte every half second, each read well inside
    Pingora's 60 s per-read timeout) gets 408 once `server.upload_body_timeout` has run out,
    and the connection is closed; real traffic on the same data plane is unaffected. The
    client stops sending a second before the deadline (a byte written after the gateway has
    closed would draw a reset that can discard its answer): the last read is then bounded by
    what is left of the deadline, not by the 60 s per-read timeout."""
    port = cluster.dp_ports[1][0]
    with socket.create_connection(("127.0.0.1", port), timeout=UPLOAD_BODY_TIMEOUT_S + 30) as sock:
        sock.sendall(
            f"POST /v1/files/_identity HTTP/1.1\r\nhost: gateway\r\n"
            f"authorization: Bearer {DEMO_KEY}\r\ncontent-type: application/octet-stream\r\n"
            f"content-length: 100000\r\n\r\n".encode())
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < UPLOAD_BODY_TIMEOUT_S + 30:
            if not answer and time.monotonic() - started < UPLOAD_BODY_TIMEOUT_S - 1:
                sock.sendall(b"x")
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:500]
    assert json.loads(body)["error"]["code"] == "request_timeout", body
    assert b"upload_body_timeout" in body
    assert UPLOAD_BODY_TIMEOUT_S - 0.5 <= elapsed < UPLOAD_BODY_TIMEOUT_S + 30, elapsed
    status, _, _ = cluster.chat(1, DEMO_KEY)
    assert status == 200
