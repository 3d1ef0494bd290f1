"""A fake Runware REST API on loopback: `POST /v1` with a JSON array of tasks, an
`authentication` task with the API key first, then `imageInference` tasks answered with
real WebP images as `imageBase64Data`, per-task `errors` for the tasks it refuses (the
ones whose prompt contains a `refuse` marker, or with invalid parameters), and a
whole-request error when the key is wrong."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from libs.common.testing.fake_http import FakeServer, solid_image

COST_PER_IMAGE = 0.0019


class FakeRunware(FakeServer):
    def __init__(self, api_key: str = "rw-test", *, refuse: str = "[refuse]") -> None:
        super().__init__()
        self.api_key = api_key
        self.refuse = refuse

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1", self.handler(self._tasks))

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every imageInference task received so far."""
        return [t for r in self.requests if isinstance(r.body, list) for t in r.body
                if isinstance(t, dict) and t.get("taskType") == "imageInference"]

    async def _tasks(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not isinstance(body, list) or not body:
            return web.json_response({"errors": [{
                "code": "invalidRequest", "message": "The request must be an array of tasks."}]},
                status=400)
        auth = body[0] if isinstance(body[0], dict) else {}
        if auth.get("taskType") != "authentication" or auth.get("apiKey") != self.api_key:
            return web.json_response({"errors": [{
                "code": "invalidApiKey", "message": "Invalid API key.", "parameter": "apiKey",
                "taskType": "authentication"}]}, status=401)
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for task in body[1:]:
            problem = self._problem(task)
            if problem:
                errors.append({**problem, "taskType": "imageInference",
                               "taskUUID": task.get("taskUUID")})
                continue
            image = solid_image(task["width"], task["height"], "WEBP", task["positivePrompt"])
            result: dict[str, Any] = {
                "taskType": "imageInference", "taskUUID": task["taskUUID"],
                "imageUUID": str(uuid.uuid4()), "seed": 42,
                "imageBase64Data": base64.b64encode(image).decode(),
            }
            if task.get("includeCost"):
                result["cost"] = COST_PER_IMAGE
            data.append(result)
        answer: dict[str, Any] = {"data": data}
        if errors:
            answer["errors"] = errors
        return web.json_response(answer, status=200 if data or not errors else 400)

    def _problem(self, task: Any) -> dict[str, str] | None:
        if not isinstance(task, dict) or task.get("taskType") != "imageInference":
            return {"code": "invalidTaskType", "message": "Unknown task type."}
        if not isinstance(task.get("taskUUID"), str):
            return {"code": "missingTaskUUID", "message": "taskUUID is required."}
        prompt = task.get("positivePrompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 3000:
            return {"code": "invalidPositivePrompt", "parameter": "positivePrompt",
                    "message": "positivePrompt must be 2-3000 characters."}
        if self.refuse in prompt:
            return {"code": "contentModerated", "parameter": "positivePrompt",
                    "message": "The prompt was refused by content moderation."}
        for side in ("width", "height"):
            value = task.get(side)
            if not isinstance(value, int) or value % 64 or not 128 <= value <= 2048:
                return {"code": f"invalid{side.title()}", "parameter": side,
                        "message": f"{side} must be a multiple of 64 between 128 and 2048."}
        if task.get("outputType") not in ("base64Data", "dataURI", "URL"):
            return {"code": "invalidOutputType", "message": "Unknown outputType."}
        if task.get("outputType") != "base64Data" or task.get("outputFormat") != "WEBP":
            return {"code": "unsupported", "message": "This fake answers base64Data WEBP."}
        if task.get("numberResults", 1) != 1:
            return {"code": "unsupported", "message": "This fake makes one result per task."}
        return None


@pytest.fixture
async def fake_runware() -> AsyncIterator[FakeRunware]:
    """A running `FakeRunware` (API key `rw-test`, base URL `fake_runware.url`)."""
    async with FakeRunware() as fake:
        yield fake
