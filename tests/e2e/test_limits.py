"""Limits and budgets across two data planes (real binaries, real Redis and Postgres).

One limit shared by N data planes: RPM under a burst, parallel slots with a slow upstream,
a $1.00 budget under 50 concurrent clients (also sending `n`, images and Chinese prompts,
with Redis up and stopped), leases of a SIGKILLed data plane expiring, and each data plane
holding its share while Redis is stopped.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster import Cluster, psql, request
from conftest import wait_until


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path)
    request.node.omg_cluster = c  # failed tests get the processes' logs (conftest hook)
    try:
        yield c.start()
    finally:
        c.close()


def issue_key(cluster: Cluster, **quota) -> str:
    tid = cluster.tenant_id("demo")
    status, issued = cluster.admin("POST", f"/admin/tenants/{tid}/api-keys", {"name": "limits", **quota})
    assert status == 201, issued
    key = issued["key"]
    for index in (0, 1):
        assert wait_until(lambda: call(cluster, index, key, "mock-chat")[0] != 401, 5), \
            f"key not usable on dataplane {index}"
    return key


def call(cluster: Cluster, index: int, key: str, model: str, **extra) -> tuple[int, dict, dict]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return request("POST", f"{cluster.v1(index)}/chat/completions", body,
                   {"authorization": f"Bearer {key}"}, timeout=30)


def test_rpm_limit_is_shared_by_two_dataplanes_under_a_burst(cluster: Cluster):
    key = issue_key(cluster, rate_limit={"requests_per_minute": 120})
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 30

    def hammer(worker: int) -> None:
        while time.monotonic() < deadline:
            status, body, headers = call(cluster, worker % 2, key, "mock-chat")
            with lock:
                statuses.append(status)
            if status == 429:
                assert body["error"]["code"] == "rate_limit_exceeded", body
                assert int(headers["retry-after"]) >= 1
                assert headers["x-ratelimit-limit-requests"] == "120"

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(hammer, range(6)))
    # The two probes issue_key made (one 200 per data plane) count in the same window.
    accepted = statuses.count(200) + 2
    assert all(s in (200, 429) for s in statuses), sorted(set(statuses))
    assert 120 <= accepted <= 120 * 1.01, accepted
    assert statuses.count(429) > 100


def stream_interval(port: int, key: str) -> tuple[int, float, float]:
    """A streamed request to the slow model: (status, first byte, last byte) times."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"model": "mock-slow", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/chat/completions", body,
                 {"authorization": f"Bearer {key}", "content-type": "application/json"})
    response = conn.getresponse()
    first = time.monotonic()
    response.read()
    last = time.monotonic()
    conn.close()
    return response.status, first, last


def test_parallel_cap_holds_across_dataplanes_with_a_slow_upstream(cluster: Cluster):
    key = issue_key(cluster, rate_limit={"parallel_requests": 5})
    ports = [cluster.dp_ports[0][0], cluster.dp_ports[1][0]]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: stream_interval(ports[i % 2], key), range(60)))
    served = [(first, last) for status, first, last in results if status == 200]
    assert all(status in (200, 429) for status, _, _ in results)
    assert len(served) >= 5
    assert any(status == 429 for status, _, _ in results)
    # An admitted request holds its slot from before its first byte until after its last.
    events = sorted([(first, 1) for first, _ in served] + [(last, -1) for _, last in served],
                    key=lambda e: (e[0], e[1]))
    inflight = peak = 0
    for _, delta in events:
        inflight += delta
        peak = max(peak, inflight)
    assert peak <= 5, peak


def test_budget_holds_under_fifty_concurrent_clients(cluster: Cluster):
    key = issue_key(cluster, budget_usd=1.0, rate_limit={"parallel_requests": 100})
    admitted_after_refusal = []

    def client(worker: int) -> int:
        admitted = 0
        while True:
            status, body, headers = call(cluster, worker % 2, key, "mock-priced", max_tokens=20)
            if status == 200:
                admitted += 1
                assert "x-budget-remaining" in headers
                continue
            assert status == 429, body
            assert body["error"]["code"] == "budget_exceeded", body
            assert headers["x-should-retry"] == "false"
            return admitted

    with ThreadPoolExecutor(50) as pool:
        admitted = sum(pool.map(client, range(50)))
    # A client refused while others held reservations may see room again once they settle
    # below their worst case; with nothing in flight, spend alone leaves no room: refused on
    # both data planes, with nothing reserved.
    for attempt in range(400):
        status, _, headers = call(cluster, attempt % 2, key, "mock-priced", max_tokens=20)
        if status == 200:
            admitted += 1
        elif headers.get("x-budget-reserved") == "0.000000":
            break
    def refused_with_nothing_reserved(index: int) -> bool:
        # Settling runs just after a response, so the last reservation may still be open.
        status, body, headers = call(cluster, index, key, "mock-priced", max_tokens=20)
        admitted_after_refusal.append(status)
        assert status == 429 and body["error"]["code"] == "budget_exceeded", body
        return headers["x-budget-reserved"] == "0.000000"

    for index in (0, 1):
        assert wait_until(lambda: refused_with_nothing_reserved(index), 5)
    assert set(admitted_after_refusal) == {429}
    # Every admitted request reaches Postgres; the spend there is within the budget plus
    # the cost of one request.
    expected_rows = admitted + 2  # the probes issue_key made
    assert wait_until(lambda: int(psql(cluster.db_url, "SELECT count(*) FROM requests WHERE status = 200")) >= expected_rows, 30)
    rows = psql(cluster.db_url, "SELECT coalesce(sum(cost_micro_usd), 0), coalesce(max(cost_micro_usd), 0) "
                                "FROM requests WHERE status = 200 AND key_id IS NOT NULL "
                                "AND key_id = (SELECT id FROM api_keys WHERE name = 'limits')")
    spent, largest = (int(v) for v in rows.split("|"))
    assert spent <= 1_000_000 + largest, (spent, largest)
    assert spent > 900_000, spent


def test_a_killed_dataplanes_slots_are_freed_within_the_lease_ttl(cluster: Cluster):
    key = issue_key(cluster, rate_limit={"parallel_requests": 2})
    port0 = cluster.dp_ports[0][0]
    streaming = [threading.Event(), threading.Event()]

    def hold(started: threading.Event) -> None:
        """A 30-second stream on dataplane 0; `started` once its 200 headers arrived. A 429
        is retried: the probes of `issue_key` settle (and free their slots) just after their
        responses."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port0, timeout=60)
            try:
                body = json.dumps({"model": "mock-hold", "stream": True,
                                   "messages": [{"role": "user", "content": "hi"}]})
                conn.request("POST", "/v1/chat/completions", body,
                             {"authorization": f"Bearer {key}", "content-type": "application/json"})
                response = conn.getresponse()
                if response.status == 429:
                    response.read()
                    time.sleep(0.05)
                    continue
                if response.status == 200:
                    started.set()
                response.read()
                return
            except (OSError, http.client.HTTPException):
                return  # the data plane is killed mid-stream
            finally:
                conn.close()

    holders = [threading.Thread(target=hold, args=(event,)) for event in streaming]
    for t in holders:
        t.start()
    # Both slots held on dataplane 0 (nothing else runs meanwhile): dataplane 1 is refused.
    assert all(event.wait(15) for event in streaming), "the two holding streams did not start"
    status, body, _ = call(cluster, 1, key, "mock-chat")
    assert status == 429 and body["error"]["code"] == "parallel_limit_exceeded", body
    cluster.dataplanes[0].kill9()
    killed = time.monotonic()
    assert wait_until(lambda: call(cluster, 1, key, "mock-chat")[0] == 200, 10), cluster.logs()
    # lease_ttl is 3 s in the harness; renewals stopped with the process.
    assert time.monotonic() - killed <= 3 + 2
    for t in holders:
        t.join(timeout=30)


def test_redis_stopped_each_dataplane_holds_its_share(cluster: Cluster):
    key = issue_key(cluster, rate_limit={"requests_per_minute": 10})
    # Both data planes are announced (heartbeats) and counted in the snapshot before the outage.
    assert wait_until(lambda: all(cluster.dp_health(i)["limits"]["live_dataplanes"] == 2 for i in (0, 1)), 20), \
        [cluster.dp_health(i) for i in (0, 1)]
    cluster.redis.stop()
    statuses = {0: [], 1: []}
    for _ in range(12):
        for index in (0, 1):
            status, body, _ = call(cluster, index, key, "mock-chat")
            assert status in (200, 429), (status, body)
            statuses[index].append(status)
    # Two live data planes: each admits at most 10 // 2 = 5 (the probes were counted in Redis,
    # not here).
    for index in (0, 1):
        assert statuses[index].count(200) <= 5, statuses
        assert statuses[index].count(200) >= 4, statuses
        health = cluster.dp_health(index)
        assert health["limits"]["store"] == "local_share", health
    cluster.redis.start()
    assert wait_until(lambda: all(cluster.dp_health(i)["limits"]["store"] == "redis" for i in (0, 1)), 15)


# What `mock-worst` bills each request, as a provider may: two high-detail images (2 × 1,445
# tokens) and 100 tokens of text as prompt, all 8 choices of `max_tokens: 100` as completion:
# 2,990 × $0.001/1K + 800 × $0.002/1K = 4,590 micro-USD. It answers after 50 ms, so the 50
# clients' requests overlap.
WORST_BILLED = 4_590


def costly(cluster: Cluster, index: int, key: str) -> tuple[int, dict, dict]:
    return call_body(cluster, index, key, {
        "model": "mock-worst",
        "n": 8,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "网关在请求之前预留令牌" * 30},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}],
    })


def call_body(cluster: Cluster, index: int, key: str, body: dict) -> tuple[int, dict, dict]:
    return request("POST", f"{cluster.v1(index)}/chat/completions", body,
                   {"authorization": f"Bearer {key}"}, timeout=30)


def spend_until_refused(cluster: Cluster, key: str) -> int:
    """50 clients over both data planes until the budget refuses them; the admitted count."""
    def client(worker: int) -> int:
        admitted = 0
        while True:
            status, body, _ = costly(cluster, worker % 2, key)
            if status == 200:
                admitted += 1
                continue
            assert status == 429, body
            assert body["error"]["code"] == "budget_exceeded", body
            return admitted

    with ThreadPoolExecutor(50) as pool:
        return sum(pool.map(client, range(50)))


def worst_spend(cluster: Cluster, expected_rows: int) -> int:
    """The key's spend in Postgres once `expected_rows` of its requests arrived."""
    where = ("FROM requests WHERE status = 200 AND alias = 'mock-worst' AND key_id = "
             "(SELECT id FROM api_keys WHERE name = 'limits')")
    assert wait_until(lambda: int(psql(cluster.db_url, f"SELECT count(*) {where}")) >= expected_rows, 60), \
        cluster.logs()
    return int(psql(cluster.db_url, f"SELECT coalesce(sum(cost_micro_usd), 0) {where}"))


def test_budget_holds_with_choices_images_and_cjk_on_two_dataplanes(cluster: Cluster):
    key = issue_key(cluster, budget_usd=1.0, rate_limit={"parallel_requests": 100})
    admitted = spend_until_refused(cluster, key)
    assert admitted > 100, admitted
    spent = worst_spend(cluster, admitted)
    assert spent <= 1_000_000 + WORST_BILLED, spent


def test_budget_holds_with_choices_images_and_cjk_while_redis_is_stopped(cluster: Cluster):
    key = issue_key(cluster, budget_usd=1.0, rate_limit={"parallel_requests": 100})
    assert wait_until(lambda: all(cluster.dp_health(i)["limits"]["live_dataplanes"] == 2 for i in (0, 1)), 20), \
        [cluster.dp_health(i) for i in (0, 1)]
    cluster.redis.stop()
    admitted = spend_until_refused(cluster, key)
    for index in (0, 1):
        assert cluster.dp_health(index)["limits"]["store"] == "local_share"
    # Each data plane spent at most its half of the budget; the usage reaches Postgres once
    # Redis is back.
    cluster.redis.start()
    assert admitted > 50, admitted
    spent = worst_spend(cluster, admitted)
    assert spent <= 1_000_000 + WORST_BILLED, spent
