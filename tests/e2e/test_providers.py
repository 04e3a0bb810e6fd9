"""The official OpenAI Python SDK through provider adapters other than plain OpenAI.

`claude-up` is an `anthropic` catalog entry pointing at the mock upstream's Messages API,
which checks what Anthropic checks (`x-api-key`, `anthropic-version`, Anthropic's body
rules): a request the gateway translated wrongly fails there. `azure-up` is an `azure` entry
on the mock's Azure OpenAI routes (`api-key`, `api-version`, deployment paths). `gemini-up`
is a `vertex` entry: the gateway mints an OAuth token from the test service account at the
mock's token endpoint (which verifies the signed JWT) and calls the mock's Vertex AI
`generateContent` / `streamGenerateContent` / `predict` routes, which check Gemini's body rules.
`bedrock-up` is a `bedrock` entry on the mock's Bedrock Runtime routes, which recompute
every SigV4 signature and check Converse's body rules; `bedrock-embed-up` embeds with Titan
through a Bedrock API key. `bedrock-image-up` (Titan Image Generator, `InvokeModel`) and
`gemini-image-up` (Imagen, Vertex AI `:predict`) generate images the mock checks like the
providers do.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import CLIENT_KEY, wait_for_usage
from test_openai_sdk import check_success_record, show

MESSAGES = [{"role": "user", "content": "Say hello to the end-to-end suite."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]

TRANSLATED = ["claude-up", "gemini-up", "bedrock-up"]
# Chat and streams through every non-OpenAI adapter. Azure and TGI answer in OpenAI's shapes,
# which pass with the upstream's `model` (the deployment, TGI's served model), not the alias.
ADAPTED = ["claude-up", "azure-up", "hf-chat", "gemini-up", "bedrock-up"]
UPSTREAM_MODEL = {"azure-up": "gpt-test", "hf-chat": "tgi"}


@pytest.fixture(scope="module", autouse=True)
def vertex_token_minted(gateway):
    """Vertex tokens are minted in the background at start-up: until the first one is there,
    `gemini-up` answers 502. Wait for it (a condition, not a sleep)."""
    body = json.dumps({"model": "gemini-up", "messages": MESSAGES, "max_tokens": 5}).encode()
    deadline = time.monotonic() + 20
    while True:
        request = urllib.request.Request(
            f"{gateway.base_url}/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code != 502 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.mark.parametrize("alias", ADAPTED)
def test_chat(client, gateway, alias):
    raw = client.chat.completions.with_raw_response.create(
        model=alias,
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        max_tokens=200,
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == UPSTREAM_MODEL.get(alias, alias)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    record = wait_for_usage(gateway, raw.headers["x-request-id"])
    check_success_record(record, alias, stream=False)
    assert record["prompt_tokens"] == completion.usage.prompt_tokens, show(record)
    assert record["completion_tokens"] == completion.usage.completion_tokens, show(record)


@pytest.mark.parametrize("alias", ADAPTED)
def test_stream_with_usage(client, gateway, alias):
    stream = client.chat.completions.with_raw_response.create(
        model=alias,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = stream.headers["x-request-id"]
    text, finish, usage = "", None, None
    for chunk in stream.parse():
        assert chunk.model == UPSTREAM_MODEL.get(alias, alias)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0
    record = wait_for_usage(gateway, request_id)
    check_success_record(record, alias, stream=True)
    assert record["completion_tokens"] == usage.completion_tokens, show(record)


@pytest.mark.parametrize("alias", ["gpt-up", *ADAPTED])
def test_tool_calls_json_and_streamed(client, alias):
    completion = client.chat.completions.create(
        model=alias, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}

    # The tool's result goes back; the model answers.
    follow_up = client.chat.completions.create(
        model=alias,
        messages=[
            *WEATHER_QUESTION,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 °C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].message.content

    name, arguments, finish, roles, ids = None, "", None, [], []
    for chunk in client.chat.completions.create(
        model=alias, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], stream=True
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        roles += [delta.role] if delta.role else []
        for piece in delta.tool_calls or []:
            assert piece.index == 0
            ids += [piece.id] if piece.id else []
            name = piece.function.name or name
            arguments += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert roles == ["assistant"] and len(ids) == 1, (roles, ids)
    assert name == "get_weather"
    assert json.loads(arguments) == {"location": "Paris"}
    assert finish == "tool_calls"

    # The SDK's own stream helper merges the deltas (concatenating repeated strings): one
    # role, one call id, whole arguments. TGI repeats them in every delta; the gateway mends it.
    with client.chat.completions.stream(
        model=alias, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    merged = final.choices[0]
    assert merged.message.role == "assistant"
    assert merged.finish_reason == "tool_calls"
    merged_call = merged.message.tool_calls[0]
    assert merged_call.function.name == "get_weather"
    assert json.loads(merged_call.function.arguments) == {"location": "Paris"}
    assert final.id and merged_call.id


def test_unsupported_operations_are_refused_with_a_clear_error(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="claude-up", prompt="hello")
    assert raised.value.code == "operation_unsupported"
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="claude-up", messages=MESSAGES, n=2)
    assert raised.value.param == "n"


def test_embeddings_through_text_embeddings_inference(client, gateway):
    # The SDK asks for base64 by default and decodes it: the adapter must encode float32.
    raw = client.embeddings.with_raw_response.create(model="hf-embed", input=["first", "second"])
    result = raw.parse()
    assert [item.index for item in result.data] == [0, 1]
    vector = result.data[0].embedding
    assert len(vector) == 8
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-3
    assert result.usage.prompt_tokens > 0
    record = wait_for_usage(gateway, raw.headers["x-request-id"])
    assert record["endpoint"] == "embeddings" and record["provider"] == "huggingface", show(record)
    floats = client.embeddings.create(model="hf-embed", input="one", encoding_format="float", dimensions=4)
    assert len(floats.data[0].embedding) == 4


@pytest.mark.parametrize("encoding_format", [None, "float"], ids=["sdk-default-base64", "float"])
def test_vertex_embeddings(client, gateway, encoding_format):
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}
    result = client.embeddings.create(model="gemini-embed-up", input=["first input", "second"], **kwargs)
    assert [item.index for item in result.data] == [0, 1]
    # The mock's vectors: (i * 8 + j + 1) / 100, float32 on the base64 path.
    assert result.data[1].embedding == pytest.approx([(8 + j + 1) / 100 for j in range(8)], rel=1e-6)
    assert result.usage.prompt_tokens == 3
    record = wait_for_usage(gateway, result._request_id)
    assert record["status"] == 200 and record["prompt_tokens"] == 3, show(record)


def test_bedrock_embeddings_float_and_base64(client, gateway):
    # The SDK asks for base64 by default and decodes it: little-endian float32.
    result = client.embeddings.create(model="bedrock-embed-up", input="hello embeddings")
    assert len(result.data) == 1
    vector = result.data[0].embedding
    assert len(vector) == 1024 and all(isinstance(x, float) for x in vector)
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-3, "a unit vector"
    assert result.model == "bedrock-embed-up"
    assert result.usage.prompt_tokens == 2
    record = wait_for_usage(gateway, result._request_id)
    assert record["status"] == 200 and record["prompt_tokens"] == 2, show(record)

    floats = client.embeddings.create(
        model="bedrock-embed-up", input=["hello embeddings"], encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(vector, abs=1e-6)

    raw = client.embeddings.with_raw_response.create(
        model="bedrock-embed-up", input="hello embeddings", encoding_format="base64"
    )
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(encoded) * 3 // 4 // 4}f", base64.b64decode(encoded))
    assert list(decoded) == pytest.approx(vector, abs=1e-6)

    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="bedrock-embed-up", input=["one", "two"])
    assert raised.value.param == "input"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("alias", "most"), [("bedrock-image-up", 5), ("gemini-image-up", 4)])
def test_image_generation(client, gateway, alias, most):
    raw = client.images.with_raw_response.generate(
        model=alias, prompt="A red fox in the snow", n=2, response_format="b64_json"
    )
    result = raw.parse()
    assert len(result.data) == 2
    for image in result.data:
        assert base64.b64decode(image.b64_json).startswith(PNG_SIGNATURE)
    record = wait_for_usage(gateway, raw.headers["x-request-id"])
    assert record["status"] == 200 and record["endpoint"] == "images.generations", show(record)
    assert record["images"] == 2 and record["cost_micro_usd"] == 80_000, show(record)

    url = client.images.generate(model=alias, prompt="A lighthouse", response_format="url")
    assert url.data[0].url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.data[0].url.split(",", 1)[1]).startswith(PNG_SIGNATURE)

    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model=alias, prompt="Too many", n=most + 1)
    assert raised.value.param == "n"
