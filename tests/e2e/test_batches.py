"""Batches end to end: the official OpenAI SDK uploads a JSONL file and runs a batch through the
real control plane, data planes, Redis and Postgres; the lines reach the mock upstream (a real
process) as the batch's key. A completed batch's output matches its input by custom_id and the
control plane stores one usage row per line with the batch id; a key over budget stops the
batch (`budget_exceeded` in the error file); a cancel ends a running batch with partial
output; and a control plane killed with SIGKILL mid-batch is restarted and completes it with
every line sent to the provider exactly once.
"""

from __future__ import annotations

import collections
import io
import json
import uuid

import openai
import pytest

from cluster import Cluster, psql, request
from conftest import UPSTREAM_KEY, wait_until

DEMO_KEY = "sk-demo.my-secret"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def upstream_catalog(upstream: str) -> str:
    """Aliases served by the mock upstream process (so its recorded requests can be counted)."""
    return f"""\
  - alias: batch-up
    provider: openai-compatible
    provider_model: gpt-test
    endpoint: "{upstream}/v1"
    api_key: "{UPSTREAM_KEY}"
  - alias: batch-slow
    provider: openai-compatible
    provider_model: "gpt-test+slow-1500"
    endpoint: "{upstream}/v1"
    api_key: "{UPSTREAM_KEY}"
"""


@pytest.fixture
def cluster(tmp_path, request, mock_upstream):
    c = Cluster(tmp_path, dataplanes=1, extra_catalog=upstream_catalog(mock_upstream.url))
    request.node.omg_cluster = c  # failed tests get the processes' logs (conftest hook)
    try:
        yield c.start()
    finally:
        c.close()


def client_for(cluster: Cluster, key: str = DEMO_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=cluster.v1(0), api_key=key, max_retries=0, timeout=60)


def lines_for(token: str, model: str, count: int) -> bytes:
    """`count` chat lines; line i's message is `token` repeated i+1 times, so the answer's
    `prompt_tokens` (the mock counts words) says which line it answers."""
    out = []
    for i in range(count):
        out.append(json.dumps({
            "custom_id": f"{token}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": " ".join([token] * (i + 1))}]},
        }))
    return ("\n".join(out) + "\n").encode()


def start_batch(client: openai.OpenAI, data: bytes, **extra):
    uploaded = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"suite": "e2e"}, **extra)


def wait_terminal(client: openai.OpenAI, batch_id: str, timeout: float = 90.0):
    final = {}

    def done() -> bool:
        final["batch"] = client.batches.retrieve(batch_id)
        return final["batch"].status in TERMINAL

    assert wait_until(done, timeout, 0.25), f"batch stuck in {final['batch'].status}"
    return final["batch"]


def jsonl(client: openai.OpenAI, file_id: str) -> list[dict]:
    text = client.files.content(file_id).read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def upstream_calls(upstream_url: str, token: str) -> collections.Counter:
    """How many times the mock upstream was asked each line of `token` (by its word count)."""
    status, listed, _ = request("GET", f"{upstream_url}/__mock/requests", timeout=30)
    assert status == 200, listed
    seen: collections.Counter = collections.Counter()
    for recorded in listed["data"]:
        if recorded["path"].startswith("/v1/chat/completions") and token in recorded["body"]:
            content = json.loads(recorded["body"])["messages"][0]["content"]
            seen[len(content.split())] += 1
    return seen


def test_a_batch_runs_through_the_data_plane_and_matches_its_input(cluster: Cluster, mock_upstream):
    client = client_for(cluster)
    token = uuid.uuid4().hex[:12]
    batch = start_batch(client, lines_for(token, "batch-up", 50),
                        output_expires_after={"anchor": "created_at", "seconds": 7200})
    assert batch.status == "in_progress", batch
    assert batch.request_counts.total == 50 and batch.model == "batch-up"
    assert batch.metadata == {"suite": "e2e"}
    batch = wait_terminal(client, batch.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.completed, batch.request_counts.failed) == (50, 0)
    assert batch.error_file_id is None and batch.completed_at is not None
    assert batch.usage.input_tokens == sum(range(1, 51))

    output_file = client.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output"
    assert output_file.expires_at == output_file.created_at + 7200, output_file
    output = jsonl(client, batch.output_file_id)
    assert len(output) == 50
    for line in output:
        index = int(line["custom_id"].rsplit("-", 1)[1])
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["usage"]["prompt_tokens"] == index + 1, line
        assert line["error"] is None
    assert upstream_calls(mock_upstream.url, token) == collections.Counter({n: 1 for n in range(1, 51)})

    # The usage rows: exactly one per line, each with the batch id.
    def rows() -> str:
        return psql(cluster.db_url, f"SELECT count(*), count(DISTINCT request_id) FROM requests "
                                    f"WHERE batch_id = '{batch.id}'")

    assert wait_until(lambda: rows() == "50|50", 30, 0.5), rows()
    # Listing, and tenant isolation of the id through the admin API.
    listed = client.batches.list(limit=1)
    assert listed.data[0].id == batch.id
    assert client.batches.retrieve(batch.id).id == batch.id
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_doesnotexist0000000000")
    assert "batch worker:" in cluster.controlplane.log()


def test_validation_problems_fail_the_batch_with_line_numbers(cluster: Cluster):
    client = client_for(cluster)
    good = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "mock-chat", "messages": []}})
    bad_model = json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "no-such-model"}})
    data = "\n".join([good, "not json", good, bad_model]).encode()
    batch = start_batch(client, data)
    assert batch.status == "failed" and batch.failed_at is not None
    problems = [(e.line, e.code) for e in batch.errors.data]
    assert problems == [(2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "model_not_found")]
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(input_file_id="file-x", endpoint="/v1/images/generations",
                              completion_window="24h")
    assert refused.value.body["param"] == "endpoint"


def test_a_spent_budget_stops_the_batch(cluster: Cluster):
    tid = cluster.tenant_id("demo")
    status, issued = cluster.admin("POST", f"/admin/tenants/{tid}/api-keys",
                                   {"name": "tiny budget", "budget_usd": 0.000001})
    assert status == 201, issued
    client = client_for(cluster, issued["key"])
    assert wait_until(lambda: request("GET", f"{cluster.v1(0)}/models",
                                      headers={"authorization": f"Bearer {issued['key']}"})[0] == 200, 10)
    batch = start_batch(client, lines_for(uuid.uuid4().hex[:8], "mock-priced", 5))
    batch = wait_terminal(client, batch.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.completed, batch.request_counts.failed) == (0, 5)
    assert batch.output_file_id is None
    errors = jsonl(client, batch.error_file_id)
    assert len(errors) == 5
    assert all(line["error"]["code"] == "budget_exceeded" for line in errors), errors
    # At least the line that met the budget carries the data plane's 429.
    assert any(line["response"] and line["response"]["status_code"] == 429 for line in errors)


def test_cancel_ends_a_running_batch_with_partial_output(cluster: Cluster):
    client = client_for(cluster)
    token = uuid.uuid4().hex[:12]
    batch = start_batch(client, lines_for(token, "batch-slow", 40))
    assert wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 1, 60, 0.2)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    batch = wait_terminal(client, batch.id, 30)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    done, failed = batch.request_counts.completed, batch.request_counts.failed
    assert 1 <= done < 40 and done + failed == 40, batch
    assert len(jsonl(client, batch.output_file_id)) == done
    errors = jsonl(client, batch.error_file_id)
    assert all(line["error"]["code"] == "batch_cancelled" and line["response"] is None for line in errors)


def test_a_control_plane_killed_mid_batch_completes_it_after_restart(cluster: Cluster, mock_upstream):
    client = client_for(cluster)
    token = uuid.uuid4().hex[:12]
    batch = start_batch(client, lines_for(token, "batch-slow", 12))
    # Lines are in flight at the provider when the control plane dies.
    assert wait_until(lambda: sum(upstream_calls(mock_upstream.url, token).values()) >= 4, 30, 0.1)
    cluster.controlplane.kill9()
    cluster.start_controlplane()
    # The lines it held come back after their lease (5 s) and are answered from the data
    # plane's stored answers; the others are sent by the restarted worker.
    batch = wait_terminal(client, batch.id, 120)
    assert batch.status == "completed", batch
    assert (batch.request_counts.completed, batch.request_counts.failed) == (12, 0)
    output = jsonl(client, batch.output_file_id)
    assert sorted(int(line["custom_id"].rsplit("-", 1)[1]) for line in output) == list(range(12))
    assert upstream_calls(mock_upstream.url, token) == collections.Counter({n: 1 for n in range(1, 13)}), \
        "every line reached the provider exactly once"
