"""Calls to an account's AI provider through its OpenAI-compatible HTTP API (OpenAI,
vLLM, Ollama, LM Studio, ...): listing models to test a key, generating a test image."""

from __future__ import annotations

from typing import Any

import aiohttp

from libs.common.problems import ValidationFailed


class ProviderError(ValidationFailed):
    title = "Provider call failed"


async def _call(
    method: str, url: str, api_key: str, timeout: float, json: dict[str, Any] | None = None
) -> Any:
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.request(method, url, headers=headers, json=json) as resp,
        ):
            if resp.status in (401, 403):
                raise ProviderError(f"The provider rejected the API key (HTTP {resp.status}).")
            if resp.status >= 400:
                raise ProviderError(f"The provider answered HTTP {resp.status}.")
            return await resp.json(content_type=None)
    except ProviderError:
        raise
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ProviderError(f"Could not reach the provider: {exc.__class__.__name__}.") from exc


async def list_models(base_url: str, api_key: str, *, timeout: float = 10.0) -> list[str]:
    body = await _call("GET", f"{base_url}/models", api_key, timeout)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ProviderError("The provider's /models answer is not OpenAI-compatible.")
    return [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]


async def generate_image(
    base_url: str, api_key: str, *, model: str, prompt: str, size: str, timeout: float = 60.0
) -> dict[str, Any]:
    body = await _call(
        "POST",
        f"{base_url}/images/generations",
        api_key,
        timeout,
        json={"model": model, "prompt": prompt, "size": size, "n": 1},
    )
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ProviderError("The provider's image answer is not OpenAI-compatible.")
    return {"url": data[0].get("url"), "b64_json": data[0].get("b64_json")}
