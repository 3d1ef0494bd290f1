"""A client for any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LM Studio).

Speaks `/chat/completions`, `/embeddings`, `/images/generations` and `/models` under
`base_url` with a bearer key. One aiohttp session per provider; close it with `aclose()` or use the
provider as an async context manager.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from libs.common.ai.base import (
    ChatMessage,
    Completion,
    Embeddings,
    GeneratedImage,
    Usage,
    normalize_rows,
)
from libs.common.ai.errors import AIConfigurationError, AIProviderError, AIResponseInvalid
from libs.common.ai.images import (
    ImageOutcome,
    ImageRequest,
    RetryPolicy,
    clip_prompt,
    each_image,
    provider_size,
    sniff_media_type,
    with_retries,
)
from libs.common.outbound import (
    OutboundPolicy,
    OutboundRefused,
    SessionOwner,
)

DEFAULT_CHAT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_IMAGE_MODEL = "dall-e-3"


def _usage(body: dict[str, Any]) -> Usage:
    u = body.get("usage") or {}
    return Usage(
        prompt_tokens=int(u.get("prompt_tokens") or 0),
        completion_tokens=int(u.get("completion_tokens") or 0),
    )


class OpenAIProvider(SessionOwner):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        chat_model: str = DEFAULT_CHAT_MODEL,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
        image_model: str = DEFAULT_IMAGE_MODEL,
        timeout_seconds: float | None = None,
        embedding_batch: int = 512,
        session: aiohttp.ClientSession | None = None,
        policy: OutboundPolicy | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AIConfigurationError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        self.image_model = image_model
        self.embedding_batch = embedding_batch
        super().__init__(session, policy=policy, timeout_seconds=timeout_seconds)

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, payload)

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One call under `base_url`. Redirects are not followed: an OpenAI-compatible API
        never needs one, and following it would send the key where it was not saved for."""
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self._api_key}"}
        try:
            async with self._client().request(
                method, url, json=payload, headers=headers, allow_redirects=False
            ) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise AIProviderError(
                        f"{path} answered HTTP {resp.status}: {text[:300]}",
                        status=resp.status,
                        retryable=resp.status == 429 or resp.status >= 500,
                    )
                try:
                    body = await resp.json(content_type=None)
                except ValueError as exc:
                    raise AIProviderError(f"{path} answered non-JSON: {text[:300]}") from exc
        except OutboundRefused as exc:  # the guard's answer: final, safe to show
            raise AIProviderError(f"{path} was not called: {exc.reason}") from None
        except aiohttp.ClientError as exc:
            raise AIProviderError(f"{path} failed: {exc}", retryable=True) from exc
        except TimeoutError as exc:
            raise AIProviderError(f"{path} timed out", retryable=True) from exc
        if not isinstance(body, dict):
            raise AIProviderError(f"{path} answered a JSON {type(body).__name__}, not an object")
        return body

    async def list_models(self) -> list[str]:
        """The model ids `GET /models` lists: the cheapest call that proves URL and key."""
        body = await self._request("GET", "/models")
        data = body.get("data")
        if not isinstance(data, list):
            raise AIResponseInvalid("/models answered without a data list", raw=str(body)[:300])
        return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int | None = None,
        json_mode: bool = False,
    ) -> Completion:
        payload: dict[str, Any] = {
            "model": model or self.chat_model,
            "messages": [m.as_dict() for m in messages],
            "temperature": temperature,
        }
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        body = await self._post("/chat/completions", payload)
        try:
            text = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise AIResponseInvalid(
                "chat completion without choices[0].message.content", raw=str(body)[:500]
            ) from exc
        if not isinstance(text, str):
            raise AIResponseInvalid("chat completion content is not text", raw=str(text)[:500])
        return Completion(
            text=text, model=str(body.get("model") or payload["model"]), usage=_usage(body)
        )

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> Embeddings:
        name = model or self.embedding_model
        rows: list[list[float]] = []
        usage = Usage()
        items = list(texts)
        for start in range(0, len(items), self.embedding_batch):
            batch = items[start : start + self.embedding_batch]
            body = await self._post("/embeddings", {"model": name, "input": batch})
            data = body.get("data")
            if not isinstance(data, list) or len(data) != len(batch):
                raise AIResponseInvalid(
                    f"/embeddings returned {len(data) if isinstance(data, list) else 'no'} "
                    f"vectors for {len(batch)} inputs",
                    raw=str(body)[:500],
                )
            ordered = sorted(data, key=lambda d: int(d.get("index", 0)))
            rows.extend(d["embedding"] for d in ordered)
            usage = usage + _usage(body)
        if not rows:
            return Embeddings(vectors=np.zeros((0, 0), dtype=np.float32), model=name, usage=usage)
        return Embeddings(vectors=normalize_rows(rows), model=name, usage=usage)

    # Transient failures of image calls (429, 5xx, timeouts) are retried within bounds.
    image_retry = RetryPolicy()
    image_concurrency = 2

    async def generate_image(
        self, prompt: str, *, size: str = "1024x1024", model: str | None = None
    ) -> GeneratedImage:
        """One image as base64 (`b64_json`). GPT image models always answer base64 and
        refuse `response_format`, so it is sent to the DALL-E models only."""
        name = model or self.image_model
        payload: dict[str, Any] = {"model": name, "prompt": prompt, "size": size, "n": 1}
        if not name.startswith("gpt-image"):
            payload["response_format"] = "b64_json"
        body = await with_retries(
            lambda: self._post("/images/generations", payload), self.image_retry
        )
        try:
            item = body["data"][0]
            data = base64.b64decode(item["b64_json"], validate=True)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise AIResponseInvalid(
                "image response without data[0].b64_json", raw=str(body)[:300]
            ) from exc
        media = sniff_media_type(data)
        if media is None:
            raise AIResponseInvalid("the image data is not PNG, JPEG, WebP or GIF")
        counted = body.get("usage") or {}
        return GeneratedImage(
            data=data,
            media_type=media,
            model=name,
            provider=self.name,
            size=size,
            usage=Usage(
                prompt_tokens=int(counted.get("input_tokens") or 0),
                completion_tokens=int(counted.get("output_tokens") or 0),
            ),
            revised_prompt=item.get("revised_prompt") or None,
        )

    async def generate_images(
        self, requests: Sequence[ImageRequest], *, model: str | None = None
    ) -> list[ImageOutcome]:
        """One call per image (the API makes one prompt per call), two at a time, each at
        the supported size closest in shape to the request; failures stay per image."""
        name = model or self.image_model
        limit = 1000 if name.startswith("dall-e-2") else 4000

        async def make(request: ImageRequest) -> GeneratedImage:
            width, height = provider_size(self.name, name, request.width, request.height)
            prompt = request.prompt
            if request.negative_prompt:
                prompt = f"{prompt} Avoid: {request.negative_prompt}"
            return await self.generate_image(
                clip_prompt(prompt, limit), size=f"{width}x{height}", model=name
            )

        return await each_image(requests, make, concurrency=self.image_concurrency)
