"""JSON answers from a chat model, validated, with exactly one repair retry.

`complete_json` asks for JSON, parses it (tolerating a Markdown code fence around it),
validates it with the caller's pydantic model, and on failure sends the model its own
answer plus the validation errors once. A second failure raises `AIResponseInvalid`,
which the job layer turns into a full refund.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from libs.common.ai.base import ChatMessage, TextGenerator, Usage
from libs.common.ai.errors import AIResponseInvalid

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)

REPAIR_INSTRUCTION = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with only the corrected JSON object, no prose and no code fence."
)


@dataclass(frozen=True, slots=True)
class JSONAnswer(Generic[T]):
    value: T
    model: str
    usage: Usage
    attempts: int


def parse_json_object(text: str) -> Any:
    """The JSON value in `text`: bare, or inside one ```json fence."""
    m = _FENCE.match(text)
    return json.loads(m.group(1) if m else text)


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            parts.append(f"{loc}: {err['msg']}")
        return "the JSON does not match the contract: " + "; ".join(parts)
    if isinstance(exc, json.JSONDecodeError):
        return f"it is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return str(exc)


async def complete_json(
    provider: TextGenerator,
    messages: Sequence[ChatMessage],
    schema: type[T],
    *,
    check: Callable[[T], None] | None = None,
    model: str | None = None,
    temperature: float = 0.2,
    max_tokens: int | None = None,
) -> JSONAnswer[T]:
    """`check` may raise ValueError for rules the schema cannot express (e.g. "only
    keywords from the input"); that counts as malformed too."""
    conversation = list(messages)
    usage = Usage()
    last_text = ""
    last_error = ""
    for attempt in (1, 2):
        completion = await provider.complete(
            conversation,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            json_mode=True,
        )
        usage = usage + completion.usage
        last_text = completion.text
        try:
            value = schema.model_validate(parse_json_object(completion.text))
            if check is not None:
                check(value)
        except (ValueError, ValidationError) as exc:
            last_error = _explain(exc)
            if attempt == 1:
                conversation += [
                    ChatMessage("assistant", completion.text),
                    ChatMessage("user", REPAIR_INSTRUCTION.format(error=last_error)),
                ]
            continue
        return JSONAnswer(value=value, model=completion.model, usage=usage, attempts=attempt)
    raise AIResponseInvalid(
        f"the model's answer stayed malformed after one repair: {last_error}",
        raw=last_text[:2000],
        attempts=2,
    )
