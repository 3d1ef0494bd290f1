"""Runware's image API over HTTP: `POST <base_url>` (`https://api.runware.ai/v1`) with a JSON
array of tasks, an `authentication` task first and then one `imageInference` task per
image, each with its own `taskUUID`.

The answer is `{"data": [...], "errors": [...]}`: results and errors each name the
`taskUUID` they belong to, so one image of a batch can fail while the others succeed.
An error without a task (a refused key, a malformed request) fails the whole batch. We
ask for `base64Data` (never a URL to fetch afterwards: the image comes in the answer) in
WebP, with `includeCost` so the usage log carries what Runware charged.

Transient failures of the whole request (429, 5xx, connection errors, timeouts) are
retried with bounded backoff, with fresh task UUIDs each time. The answer's size is
capped. Calls made for a tenant go through the outbound guard: pass its `policy` (or a
session made by `outbound_session`); without either, a plain session is made (tests,
platform-owned keys).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson

from libs.common.ai.base import GeneratedImage
from libs.common.ai.errors import AIConfigurationError, AIProviderError, AIResponseInvalid
from libs.common.ai.images import (
    ImageFailure,
    ImageOutcome,
    ImageRequest,
    RetryPolicy,
    clip_prompt,
    parse_retry_after,
    provider_size,
    sniff_media_type,
    with_retries,
)
from libs.common.outbound import (
    OutboundPolicy,
    OutboundRefused,
    ResponseTooLarge,
    SessionOwner,
    read_capped,
)

DEFAULT_BASE_URL = "https://api.runware.ai/v1"
DEFAULT_MODEL = "runware:100@1"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class RunwareProvider(SessionOwner):
    name = "runware"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        timeout_seconds: float | None = None,
        batch_size: int = 8,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        session: aiohttp.ClientSession | None = None,
        policy: OutboundPolicy | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AIConfigurationError(f"base_url must be an http(s) URL, not {base_url!r}")
        if not api_key:
            raise AIConfigurationError("Runware needs an API key")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.model = model
        self.batch_size = max(1, batch_size)
        self.retry = retry or RetryPolicy()
        self.max_response_bytes = max_response_bytes
        super().__init__(session, policy=policy, timeout_seconds=timeout_seconds)

    # --- the protocol ------------------------------------------------------------------------

    def _task(self, request: ImageRequest, model: str) -> dict[str, Any]:
        width, height = provider_size(self.name, model, request.width, request.height)
        task: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "positivePrompt": clip_prompt(request.prompt),
            "model": model,
            "width": width,
            "height": height,
            "numberResults": 1,
            "outputType": "base64Data",
            "outputFormat": "WEBP",
            "includeCost": True,
        }
        if request.negative_prompt:
            task["negativePrompt"] = clip_prompt(request.negative_prompt)
        return task

    async def _send(self, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """One POST of the task array; the parsed answer, or `AIProviderError` when the
        request as a whole failed."""
        payload = [{"taskType": "authentication", "apiKey": self._api_key}, *tasks]
        try:
            async with self._client().post(
                self.base_url,
                data=orjson.dumps(payload),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                allow_redirects=False,
            ) as resp:
                body = await self._read(resp)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except OutboundRefused as exc:  # the guard's answer: final, safe to show
            raise AIProviderError(f"Runware was not called: {exc.reason}") from None
        except aiohttp.ClientError as exc:
            raise AIProviderError(f"Runware failed: {exc}", retryable=True) from exc
        except TimeoutError as exc:
            raise AIProviderError("Runware timed out", retryable=True) from exc
        try:
            answer = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise AIProviderError(
                f"Runware answered HTTP {status} without a JSON object: {body[:200]!r}",
                status=status,
                retryable=status == 429 or status >= 500,
                retry_after=retry_after,
            )
        task_ids = {t["taskUUID"] for t in tasks}
        errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
        general = [e for e in errors if e.get("taskUUID") not in task_ids]
        if status >= 300 and (general or not errors):
            # The request failed as a whole (a refused key, throttling, an outage).
            detail = "; ".join(_describe(e) for e in general) or f"HTTP {status}"
            raise AIProviderError(
                f"Runware answered HTTP {status}: {detail}"[:500],
                status=status,
                retryable=status == 429 or status >= 500,
                retry_after=retry_after,
            )
        if general:
            raise AIProviderError(
                "Runware refused the request: " + "; ".join(_describe(e) for e in general)[:400],
                status=status,
            )
        return answer

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await read_capped(resp, self.max_response_bytes)
        except ResponseTooLarge as exc:
            raise AIProviderError(f"Runware's answer is too large: {exc}") from None

    async def _batch(self, requests: Sequence[ImageRequest], model: str) -> list[ImageOutcome]:
        sent: list[list[dict[str, Any]]] = []

        async def attempt() -> dict[str, Any]:
            tasks = [self._task(r, model) for r in requests]  # fresh UUIDs per attempt
            sent.append(tasks)
            return await self._send(tasks)

        try:
            answer = await with_retries(attempt, self.retry)
        except AIProviderError as exc:
            failure = exc.message[:500]
            code = str(exc.status) if exc.status else "request"
            return [ImageFailure(r.ref, failure, code, exc.retryable) for r in requests]
        tasks = sent[-1]
        results: dict[str, dict[str, Any]] = {}
        for item in answer.get("data") or []:
            if isinstance(item, dict) and item.get("taskType") == "imageInference":
                results.setdefault(str(item.get("taskUUID")), item)
        task_errors = {
            str(e.get("taskUUID")): e for e in answer.get("errors") or [] if isinstance(e, dict)
        }
        outcomes: list[ImageOutcome] = []
        for request, task in zip(requests, tasks, strict=True):
            task_id = task["taskUUID"]
            if task_id in task_errors:
                error = task_errors[task_id]
                outcomes.append(
                    ImageFailure(request.ref, _describe(error)[:500], str(error.get("code", "")))
                )
            elif task_id in results:
                outcomes.append(self._image(request, task, results[task_id]))
            else:
                outcomes.append(
                    ImageFailure(request.ref, "Runware answered nothing for this image", "missing")
                )
        return outcomes

    def _image(
        self, request: ImageRequest, task: dict[str, Any], item: dict[str, Any]
    ) -> ImageOutcome:
        encoded = item.get("imageBase64Data")
        if not isinstance(encoded, str):
            return ImageFailure(request.ref, "Runware's result has no imageBase64Data", "invalid")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return ImageFailure(request.ref, "Runware's imageBase64Data is not base64", "invalid")
        media = sniff_media_type(data)
        if media is None:
            return ImageFailure(request.ref, "Runware's result is not an image", "invalid")
        return GeneratedImage(
            data=data,
            media_type=media,
            model=task["model"],
            provider=self.name,
            size=f"{task['width']}x{task['height']}",
            cost_usd=_cost(item.get("cost")),
        )

    async def authenticate(self) -> None:
        """Send the authentication task alone: proves the URL and key without making (or
        paying for) an image. `AIProviderError` when Runware refuses it."""
        await self._send([])

    async def generate_images(
        self, requests: Sequence[ImageRequest], *, model: str | None = None
    ) -> list[ImageOutcome]:
        """Every request, `batch_size` tasks per POST; one outcome per request, in order."""
        name = model or self.model
        outcomes: list[ImageOutcome] = []
        for start in range(0, len(requests), self.batch_size):
            outcomes += await self._batch(requests[start : start + self.batch_size], name)
        return outcomes

    async def generate_image(
        self, prompt: str, *, size: str = "1024x1024", model: str | None = None
    ) -> GeneratedImage:
        """One image (the `ImageGenerator` interface); a failure raises."""
        try:
            width, height = (int(v) for v in size.lower().split("x", 1))
            request = ImageRequest(prompt=prompt, width=width, height=height)
        except ValueError as exc:
            raise AIConfigurationError(f"bad image size {size!r}: {exc}") from exc
        [outcome] = await self.generate_images([request], model=model)
        if isinstance(outcome, ImageFailure):
            if outcome.code in ("invalid", "missing"):
                raise AIResponseInvalid(outcome.message)
            raise AIProviderError(outcome.message, retryable=outcome.retryable)
        return outcome


def _describe(error: dict[str, Any]) -> str:
    code, message = error.get("code"), error.get("message")
    return ": ".join(str(p) for p in (code, message) if p) or "unknown error"


def _cost(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    return cost if cost.is_finite() and cost >= 0 else None
