"""Failover and idempotency through the official OpenAI Python SDK.

`gpt-failover` has two deployments on the mock upstream: the first (priority 0) always answers
503, the second (priority 1) works. The SDK must never see the failure: it gets a normal
answer (JSON or stream) naming the second deployment. `Idempotency-Key` sent by the SDK as an
extra header makes a retry replay the stored answer.
"""

from __future__ import annotations

import json
import uuid

import openai

from conftest import http_get, wait_for_usage

MESSAGES = [{"role": "user", "content": "Say hello to the resilience suite."}]


def test_chat_fails_over_to_the_backup_deployment(client: openai.OpenAI, gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-failover", messages=MESSAGES)
    assert raw.headers.get("x-omg-deployment") == "gpt-failover#1"
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens > 0
    record = wait_for_usage(gateway, raw.headers["x-request-id"])
    assert record["status"] == 200 and record["deployment"] == "gpt-failover#1", record


def test_stream_fails_over_before_the_first_byte(client: openai.OpenAI, gateway) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-failover", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers.get("x-omg-deployment") == "gpt-failover#1"
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    record = wait_for_usage(gateway, request_id)
    assert record["status"] == 200 and record["stream"] is True, record


def test_the_failing_deployment_is_visible_on_the_admin_listener(client: openai.OpenAI, gateway) -> None:
    client.chat.completions.create(model="gpt-failover", messages=MESSAGES)
    status, body = http_get(f"{gateway.admin_url}/deployments")
    assert status == 200
    by_id = {d["id"]: d for d in json.loads(body)["deployments"]}
    failing = by_id["gpt-failover#0"]
    assert failing["last_error"] == "status_5xx", failing
    assert failing["state"] in ("open", "closed", "half_open"), failing
    assert by_id["gpt-failover#1"]["state"] == "closed"


def test_idempotency_key_replays_without_a_second_call(client: openai.OpenAI, gateway) -> None:
    key = f"e2e-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    first = client.chat.completions.with_raw_response.create(
        model="gpt-up", messages=MESSAGES, extra_headers=headers
    )
    second = client.chat.completions.with_raw_response.create(
        model="gpt-up", messages=MESSAGES, extra_headers=headers
    )
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.parse().id == second.parse().id
    replay = wait_for_usage(gateway, second.headers["x-request-id"])
    assert replay["cost_micro_usd"] == 0 and replay.get("idempotent_replay") is True, replay

    # The same key with another body is a client mistake the SDK raises on.
    try:
        client.chat.completions.create(
            model="gpt-up",
            messages=[{"role": "user", "content": "something else"}],
            extra_headers=headers,
        )
    except openai.UnprocessableEntityError as err:
        assert err.body["code"] == "idempotency_key_reused", err.body
    else:
        raise AssertionError("a reused key with another body must be refused")
