"""A fake OpenAI-compatible server on loopback: `/chat/completions` answering scripted
replies, `/images/generations` answering real PNGs as `b64_json`, `/models` listing
`models`, with the rules the
real API enforces that clients trip on (each model's sizes; GPT image models refuse
`response_format` and report token usage; dall-e-3 revises prompts)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from libs.common.ai.images import OPENAI_SIZES
from libs.common.testing.fake_http import FakeServer, solid_image

GPT_IMAGE_USAGE = {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210}


def _error(message: str, status: int = 400, code: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": code}}, status=status)


class FakeOpenAI(FakeServer):
    """`url` is the base URL to configure (`.../v1`). Chat answers pop `chat_replies`
    (a string is the content; a dict is sent as JSON content)."""

    def __init__(self, api_key: str = "sk-test") -> None:
        super().__init__()
        self.api_key = api_key
        self.chat_replies: list[Any] = []
        self.models: list[str] = ["gpt-4o-mini", "dall-e-3"]

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.handler(self._chat))
        app.router.add_post("/v1/images/generations", self.handler(self._images))
        app.router.add_get("/v1/models", self.handler(self._models))

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not self._authorised(request):
            return _error("Incorrect API key provided", 401, "invalid_api_key")
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    async def _chat(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not self._authorised(request):
            return _error("Incorrect API key provided", 401, "invalid_api_key")
        content = self.chat_replies.pop(0)
        if not isinstance(content, str):
            content = json.dumps(content)
        return web.json_response({
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200},
        })

    async def _images(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not self._authorised(request):
            return _error("Incorrect API key provided", 401, "invalid_api_key")
        model = str(body.get("model", ""))
        family = next((p for p in OPENAI_SIZES if model.startswith(p)), None)
        if family is None:
            return _error(f"The model '{model}' does not exist", 404, "model_not_found")
        if family == "gpt-image" and "response_format" in body:
            return _error("Unknown parameter: 'response_format'.")
        if family != "gpt-image" and body.get("response_format") != "b64_json":
            return _error("this fake only answers b64_json")
        size = str(body.get("size", "1024x1024"))
        allowed = [f"{w}x{h}" for w, h in OPENAI_SIZES[family]]
        if size not in allowed:
            return _error(f"Invalid value: '{size}'. Supported values are: {allowed}")
        width, height = (int(v) for v in size.split("x"))
        item: dict[str, Any] = {
            "b64_json": base64.b64encode(solid_image(width, height, "PNG", body["prompt"]))
            .decode()
        }
        answer: dict[str, Any] = {"created": 1_700_000_000, "data": [item]}
        if family == "gpt-image":
            answer["usage"] = GPT_IMAGE_USAGE
        if family == "dall-e-3":
            item["revised_prompt"] = "A revised prompt: " + body["prompt"]
        return web.json_response(answer)


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A running `FakeOpenAI` (API key `sk-test`, base URL `fake_openai.url`)."""
    async with FakeOpenAI() as fake:
        yield fake
