"""A request body read whole by a middleware and replayed to the app behind it."""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, and the message that ended it early (a disconnect), if any."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay_body(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """`receive` for the app: the body already read, then what the server sends next."""
    pending: list[Message] = [ended or {"type": "http.request", "body": body,
                                        "more_body": False}]
    if ended is not None:
        pending.insert(0, {"type": "http.request", "body": body, "more_body": True})

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
