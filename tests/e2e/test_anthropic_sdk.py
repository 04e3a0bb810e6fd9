"""The official Anthropic Python SDK against the gateway's native `/v1/messages`.

`claude-up` is an `anthropic` deployment (the mock's Messages API, which checks what
Anthropic checks): the request goes upstream as written. `gpt-up` (an OpenAI-compatible
upstream) and `mock-chat` (the built-in mock) are answered through the OpenAI form and
translated back. Either way the same key, limits, budgets and usage records apply.
`count_tokens` is Anthropic's own count for `claude-up` (forwarded) and the gateway's
estimate for the others; it is never metered.
"""

from __future__ import annotations

import anthropic
import pytest

from conftest import CLIENT_KEY, read_usage, wait_for_usage
from test_openai_sdk import check_success_record, show

QUESTION = [{"role": "user", "content": "Say hello to the Anthropic SDK."}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
ALIASES = ["claude-up", "gpt-up", "mock-chat"]


def make_client(gateway, api_key: str = CLIENT_KEY) -> anthropic.Anthropic:
    # The SDK appends /v1/messages to its base URL.
    root = gateway.base_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key=api_key, max_retries=0, timeout=30.0)


@pytest.fixture
def claude(gateway):
    with make_client(gateway) as client:
        yield client


@pytest.mark.parametrize("alias", ALIASES)
def test_messages_create(claude, gateway, alias):
    raw = claude.messages.with_raw_response.create(
        model=alias, max_tokens=200, system="Be brief.", messages=QUESTION
    )
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == alias
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    record = wait_for_usage(gateway, raw.headers["x-request-id"])
    check_success_record(record, alias, stream=False)
    assert record["endpoint"] == "messages", show(record)
    assert record["completion_tokens"] == message.usage.output_tokens, show(record)


@pytest.mark.parametrize("alias", ALIASES)
def test_messages_stream(claude, gateway, alias):
    with claude.messages.stream(model=alias, max_tokens=200, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    record = wait_for_usage(gateway, request_id)
    check_success_record(record, alias, stream=True)
    assert record["completion_tokens"] == final.usage.output_tokens, show(record)


def test_tool_use_round_trip(claude):
    message = claude.messages.create(
        model="claude-up",
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"location": "Paris"}
    follow_up = claude.messages.create(
        model="claude-up",
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
        ],
    )
    assert follow_up.content[0].type == "text"


# The mock's count_tokens adds this to its word count, so a forwarded count is never the
# gateway's own estimate (see tests/mock-upstream/src/anthropic/count.rs).
MOCK_COUNT_FRAMING = 1000


def test_count_tokens(claude, gateway):
    # An Anthropic deployment counts: the request goes upstream, the answer comes back as is.
    counted = claude.messages.count_tokens(model="claude-up", system="Be brief.", messages=QUESTION)
    assert counted.input_tokens == 8 + MOCK_COUNT_FRAMING
    raw = claude.messages.with_raw_response.count_tokens(
        model="claude-up", messages=QUESTION, tools=[WEATHER_TOOL]
    )
    assert raw.parse().input_tokens == 6 + MOCK_COUNT_FRAMING
    assert raw.headers["x-omg-deployment"] == "claude-up#0"
    # Anthropic's own refusal (a Messages-only field) reaches the SDK as its exception.
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude.messages.count_tokens(model="claude-up", messages=QUESTION, extra_body={"max_tokens": 5})
    assert "max_tokens" in str(raised.value)
    # Other providers: the gateway's estimate, nothing upstream.
    estimated = claude.messages.count_tokens(model="gpt-up", messages=QUESTION)
    assert 0 < estimated.input_tokens < MOCK_COUNT_FRAMING
    # Never metered: a later request's record is written, the counts' never are.
    later = claude.messages.with_raw_response.create(model="mock-chat", max_tokens=10, messages=QUESTION)
    wait_for_usage(gateway, later.headers["x-request-id"])
    records = read_usage(gateway.usage_path)
    assert raw.headers["x-request-id"] not in {r.get("request_id") for r in records}
    assert all(r.get("endpoint") != "messages.count_tokens" for r in records), show(records[-3:])


def test_errors_are_anthropic_exceptions(gateway, claude):
    with make_client(gateway, api_key="sk-demo.wrong") as bad:
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="claude-up", max_tokens=10, messages=QUESTION)
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=10, messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude.messages.create(
            model="gpt-up",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}],
        )
    assert "document" in str(raised.value)
