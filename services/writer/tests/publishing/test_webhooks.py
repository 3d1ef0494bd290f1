"""Webhook signatures: the Standard Webhooks test vector, and every refusal."""

from __future__ import annotations

import time

import pytest

from libs.common.problems import DomainError
from services.writer.publishing.webhooks import (
    InMemoryReplayStore,
    WebhookRejected,
    WebhookReplayed,
    sign,
    signed_headers,
    verify,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"post_id": 12, "status": "publish"}'


def test_the_standard_webhooks_reference_vector() -> None:
    assert sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_a_valid_message_is_accepted_once() -> None:
    replays = InMemoryReplayStore()
    headers = signed_headers(SECRET, "msg_1", BODY)
    verified = await verify(SECRET, headers, BODY, replays)
    assert verified.message_id == "msg_1"
    with pytest.raises(WebhookReplayed) as caught:
        await verify(SECRET, headers, BODY, replays)
    assert caught.value.status == 409


async def test_one_valid_signature_among_several_is_enough() -> None:
    headers = signed_headers(SECRET, "msg_2", BODY)
    headers["webhook-signature"] = (
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + headers["webhook-signature"]
        + " v2,ignored"
    )
    await verify(SECRET, headers, BODY, InMemoryReplayStore())


@pytest.mark.parametrize(
    "tamper",
    ["body", "id", "timestamp", "secret", "scheme"],
)
async def test_anything_changed_breaks_the_signature(tamper: str) -> None:
    headers = signed_headers(SECRET, "msg_3", BODY)
    body, secret = BODY, SECRET
    if tamper == "body":
        body = BODY.replace(b"12", b"13")
    elif tamper == "id":
        headers["webhook-id"] = "msg_4"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    elif tamper == "secret":
        secret = "whsec_" + "QUJD" * 8
    else:
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    replays = InMemoryReplayStore()
    with pytest.raises(WebhookRejected) as caught:
        await verify(secret, headers, body, replays)
    assert caught.value.status == 401
    assert replays.seen == {}  # a forged message burns no id


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
async def test_an_old_or_future_timestamp_is_refused(skew: int) -> None:
    stamp = int(time.time()) + skew
    headers = signed_headers(SECRET, "msg_5", BODY, timestamp=stamp)
    with pytest.raises(WebhookRejected, match="timestamp"):
        await verify(SECRET, headers, BODY, InMemoryReplayStore())
    await verify(SECRET, headers, BODY, InMemoryReplayStore(), now=stamp + 299)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_missing_headers_are_a_400_naming_them(missing: str) -> None:
    headers = signed_headers(SECRET, "msg_6", BODY)
    del headers[missing]
    with pytest.raises(DomainError) as caught:
        await verify(SECRET, headers, BODY, InMemoryReplayStore())
    assert caught.value.status == 400
    assert caught.value.errors == {missing: ["This header is required."]}


async def test_header_names_are_case_insensitive_and_plain_secrets_work() -> None:
    headers = {k.title(): v for k, v in signed_headers("plain secret", "m", BODY).items()}
    await verify("plain secret", headers, BODY, InMemoryReplayStore())


async def test_remembered_ids_expire() -> None:
    replays = InMemoryReplayStore()
    assert await replays.first_time("a", time.time() - 1)
    assert await replays.first_time("a", time.time() + 60)  # the stale entry was dropped
    assert not await replays.first_time("a", time.time() + 60)
