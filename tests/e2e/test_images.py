"""Image generation with the official OpenAI Python SDK (`client.images.generate`).

`mock-img` is drawn by the gateway's built-in mock provider; `gpt-img-up` is OpenAI's image API
at the `omg-mock-upstream` binary (token usage like `gpt-image-1`). The Bedrock and Vertex image
aliases are in `test_providers.py`.
"""

from __future__ import annotations

import base64

import openai
import pytest

from conftest import wait_for_usage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("alias", ["mock-img", "gpt-img-up"])
def test_generate_base64_images_and_bill_them(client: openai.OpenAI, gateway, alias: str) -> None:
    kwargs = {"response_format": "b64_json"} if alias == "mock-img" else {}
    result = client.images.generate(model=alias, prompt="a lighthouse at dawn", n=2, **kwargs)

    assert len(result.data) == 2
    for image in result.data:
        assert image.b64_json, result
        assert base64.b64decode(image.b64_json).startswith(PNG_SIGNATURE)

    record = wait_for_usage(gateway, result._request_id)
    assert record["status"] == 200 and record["alias"] == alias, record
    assert record["endpoint"] == "images.generations", record
    assert record["images"] == 2, record
    if alias == "mock-img":
        assert record["cost_micro_usd"] == 2 * 40_000, record
    else:
        # Tokens the upstream reported, plus $0.01 per image.
        assert result.usage is not None and result.usage.output_tokens > 0, result
        assert record["prompt_tokens"] == result.usage.input_tokens, record
        assert record["completion_tokens"] == result.usage.output_tokens, record
        assert record["cost_micro_usd"] > 2 * 10_000, record


def test_url_answers_are_data_urls_for_byte_only_providers(client: openai.OpenAI) -> None:
    result = client.images.generate(model="mock-img", prompt="a red fox", response_format="url")
    assert result.data[0].url and result.data[0].url.startswith("data:image/png;base64,"), result


def test_image_errors_reach_the_sdk_as_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.images.generate(model="mock-img", prompt="x", n=11)
    assert error.value.code == "invalid_value" and error.value.param == "n"

    # Chat on an image model, and image generation on a chat model.
    with pytest.raises(openai.BadRequestError) as error:
        client.images.generate(model="mock-chat", prompt="a red fox")
    assert error.value.code == "operation_unsupported"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mock-img", messages=[{"role": "user", "content": "hi"}])
