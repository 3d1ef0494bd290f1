"""Form-encoded and multipart bodies pass the gateway as they came, under the same guards
as JSON (the body limit, Idempotency-Key): the services read them as DRF does (ADR 0044;
the whole chain, gateway and real services: `tests/e2e/test_platform_up.py`)."""

from __future__ import annotations

import uuid

import httpx

from gateway.tests.conftest import new_ids
from gateway.tests.upstream import Counters
from libs.common.testing.tokens import TestIssuer

ECHO = "/api/v1/planner/echo_body/"
FORM = "application/x-www-form-urlencoded"


def _headers(issuer: TestIssuer, **more: str) -> dict[str, str]:
    user_id, account_id = new_ids()
    return {**issuer.headers(user_id=user_id, account_id=account_id), **more}


async def test_a_form_body_reaches_the_service_unchanged(gw: httpx.AsyncClient,
                                                         issuer: TestIssuer) -> None:
    body = "ids=1&ids=2&name=caf%C3%A9&raw=café&nul=a%00b"
    sent = await gw.post(ECHO, content=body.encode(), headers=_headers(
        issuer, **{"content-type": f"{FORM}; charset=utf-8"}))
    assert sent.status_code == 201
    assert sent.json()["data"]["content_type"] == f"{FORM}; charset=utf-8"
    assert sent.json()["data"]["body"].encode("latin-1") == body.encode()

    multipart = await gw.post(ECHO, data={"keyword": "k"}, files={"file": ("a.csv", b"x\n")},
                              headers=_headers(issuer))
    echoed = multipart.json()["data"]
    assert echoed["content_type"].startswith("multipart/form-data; boundary=")
    assert 'name="keyword"' in echoed["body"]
    assert 'filename="a.csv"' in echoed["body"]


async def test_a_form_body_has_the_guards_a_json_body_has(
        gw: httpx.AsyncClient, issuer: TestIssuer, counters: Counters) -> None:
    headers = _headers(issuer, **{"content-type": FORM,
                                  "Idempotency-Key": f"k-{uuid.uuid4()}"})
    before = counters.posts
    first = await gw.post(ECHO, content=b"keyword=seo&ids=1", headers=headers)
    again = await gw.post(ECHO, content=b"keyword=seo&ids=1", headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert counters.posts == before + 1
    other = await gw.post(ECHO, content=b"keyword=seo&ids=2", headers=headers)
    assert other.status_code == 422  # the same key with another body

    # The test gateway's body limit is 4096 bytes, whatever the body's type.
    too_large = await gw.post(ECHO, content=b"keyword=" + b"x" * 5000,
                              headers=_headers(issuer, **{"content-type": FORM}))
    assert too_large.status_code == 413
    anonymous = await gw.post(ECHO, content=b"keyword=seo", headers={"content-type": FORM})
    assert anonymous.status_code == 401
