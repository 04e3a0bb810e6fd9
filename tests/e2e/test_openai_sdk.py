"""The official OpenAI Python SDK against the data plane.

`mock-chat` is answered by the gateway's built-in mock provider; `gpt-up` is forwarded to the
`omg-mock-upstream` binary. Every test is independent: each makes its own requests and finds
its own usage record by request id.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import (
    ALLOWED_ALIASES,
    CLIENT_KEY,
    FORBIDDEN_ALIAS,
    PRICED_ALIASES,
    make_client,
    wait_for_usage,
)

CHAT_ALIASES = ["mock-chat", "gpt-up"]
EMBED_ALIASES = ["mock-embed", "embed-up"]
MESSAGES = [{"role": "user", "content": "Say hello to the end-to-end suite."}]

# Fields every usage record carries.
USAGE_FIELDS = {
    "request_id",
    "tenant_id",
    "key_id",
    "alias",
    "provider",
    "deployment",
    "endpoint",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_micro_usd",
    "latency_ms",
    "ttft_ms",
    "stream",
    "usage_estimated",
    "error_code",
}


def show(*things) -> str:
    """Assertion messages as plain strings: pytest would truncate a dict's repr."""
    return " | ".join(json.dumps(t, default=str) if isinstance(t, dict) else repr(t) for t in things)


def check_success_record(record: dict, alias: str, *, stream: bool) -> None:
    """What holds for the usage record of any successful chat/completions request."""
    missing = USAGE_FIELDS - record.keys()
    assert not missing, f"usage record lacks {sorted(missing)}: {record}"
    assert record["status"] == 200, show(record)
    assert record["alias"] == alias, show(record)
    assert record["stream"] is stream, show(record)
    assert record["completion_tokens"] > 0, show(record)
    assert record["prompt_tokens"] > 0, show(record)
    assert record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"], show(record)
    assert record["error_code"] in (None, ""), show(record)
    if stream:
        assert isinstance(record["ttft_ms"], int) and record["ttft_ms"] >= 0, show(record)
    if alias in PRICED_ALIASES:
        assert record["cost_micro_usd"] > 0, show(record)


# 1 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_chat_completion(client: openai.OpenAI, gateway, alias: str) -> None:
    completion = client.chat.completions.create(model=alias, messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0

    request_id = completion._request_id
    assert isinstance(request_id, str) and request_id
    record = wait_for_usage(gateway, request_id)
    check_success_record(record, alias, stream=False)
    assert record["prompt_tokens"] == completion.usage.prompt_tokens, show(record)
    assert record["completion_tokens"] == completion.usage.completion_tokens, show(record)


# 2 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_stream_without_include_usage(client: openai.OpenAI, gateway, alias: str) -> None:
    with client.chat.completions.with_streaming_response.create(model=alias, messages=MESSAGES, stream=True) as response:
        request_id = response.headers.get("x-request-id")
        assert response.headers.get("content-type", "").startswith("text/event-stream")
        chunks = list(response.parse())

    assert chunks, "no chunk streamed"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip(), f"empty streamed content: {chunks}"
    # The gateway asked the upstream for usage; the client did not, so it must not see it.
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    assert all(c.choices for c in chunks), "a chunk without choices reached a client that did not ask for usage"
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert all(c.object == "chat.completion.chunk" for c in chunks)

    record = wait_for_usage(gateway, request_id)
    check_success_record(record, alias, stream=True)  # metered although the client did not ask
    # The tokens are the provider's own count (the gateway asked for the usage chunk), not an
    # estimate.
    assert record["usage_estimated"] is False, show(record)


# 3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_stream_with_include_usage(client: openai.OpenAI, gateway, alias: str) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=alias,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers.get("x-request-id")
        chunks = list(response.parse())

    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1, f"expected exactly one chunk with choices == [], got {len(usage_chunks)}"
    final = usage_chunks[0]
    assert final is chunks[-1], "the usage chunk is not the last one"
    assert final.usage is not None
    assert final.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1]), "usage on a chunk before the final one"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"

    record = wait_for_usage(gateway, request_id)
    check_success_record(record, alias, stream=True)
    assert record["completion_tokens"] == final.usage.completion_tokens, show(record, final.usage)
    assert record["prompt_tokens"] == final.usage.prompt_tokens, show(record, final.usage)


# 4 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_legacy_completions(client: openai.OpenAI, gateway, alias: str) -> None:
    completion = client.completions.create(model=alias, prompt="Say hi")

    assert completion.object == "text_completion"
    assert completion.choices and isinstance(completion.choices[0].text, str)
    assert completion.choices[0].text.strip()
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0

    record = wait_for_usage(gateway, completion._request_id)
    check_success_record(record, alias, stream=False)


# 5 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding_format", [None, "float"], ids=["sdk-default-base64", "float"])
@pytest.mark.parametrize("alias", EMBED_ALIASES)
def test_embeddings(client: openai.OpenAI, gateway, alias: str, encoding_format) -> None:
    inputs = ["first input", "second input", "third"]
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}
    result = client.embeddings.create(model=alias, input=inputs, **kwargs)

    assert len(result.data) == len(inputs)
    assert sorted(item.index for item in result.data) == list(range(len(inputs)))
    dims = {len(item.embedding) for item in result.data}
    assert len(dims) == 1 and dims.pop() > 0, "embeddings of unequal or zero length"
    for item in result.data:
        assert isinstance(item.embedding, list)
        assert all(isinstance(x, float) for x in item.embedding), item.embedding[:5]

    record = wait_for_usage(gateway, result._request_id)
    assert record["status"] == 200 and record["alias"] == alias and record["stream"] is False, show(record)


# 6 -------------------------------------------------------------------------------------------
def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert sorted(ids) == sorted(ALLOWED_ALIASES)
    assert FORBIDDEN_ALIAS not in ids

    model = client.models.retrieve("mock-chat")
    assert model.id == "mock-chat"
    assert model.object == "model"

    with pytest.raises((openai.NotFoundError, openai.PermissionDeniedError)):
        client.models.retrieve(FORBIDDEN_ALIAS)


# 7 -------------------------------------------------------------------------------------------
def test_invalid_key(gateway) -> None:
    assert CLIENT_KEY != "sk-demo.wrong"
    with make_client(gateway, api_key="sk-demo.wrong") as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="mock-chat", messages=MESSAGES)
    err = info.value
    assert err.status_code == 401
    assert err.code == "invalid_api_key", err.body
    assert isinstance(err.request_id, str) and err.request_id

    with make_client(gateway, api_key="nope") as garbage:
        with pytest.raises(openai.AuthenticationError) as info:
            garbage.models.list()
    assert info.value.status_code == 401


# 8 -------------------------------------------------------------------------------------------
def test_unknown_and_forbidden_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.code == "model_not_found", info.value.body

    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=FORBIDDEN_ALIAS, messages=MESSAGES)
    assert info.value.status_code == 403


# 9 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_client_request_id_is_honoured(client: openai.OpenAI, gateway, alias: str) -> None:
    request_id = f"e2e-req-123-{alias}"
    raw = client.chat.completions.with_raw_response.create(
        model=alias, messages=MESSAGES, extra_headers={"x-request-id": request_id}
    )
    assert raw.headers.get("x-request-id") == request_id
    completion = raw.parse()
    assert completion.choices[0].message.content

    record = wait_for_usage(gateway, request_id)
    assert record["alias"] == alias and record["status"] == 200, show(record)
