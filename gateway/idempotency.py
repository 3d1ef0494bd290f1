"""`Idempotency-Key` on POST: the first answer per (account or client address, key) is
kept 24 hours in the KV bucket `igny8_idempotency` and replayed byte for byte.

The key is claimed with a create (compare-and-set on "no such key") before the request
goes upstream, so of two concurrent duplicates exactly one runs; the other gets 409 while
the first is in flight. The same key with another method, path, query or body is 422.
5xx answers are not kept (the claim is released so the client can retry), nor are answers
too large for one KV value. A claim left by a crashed gateway is taken over once it is
older than the upstream timeout plus a margin.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

HEADER = b"idempotency-key"
REPLAY_HEADER = (b"idempotent-replayed", b"true")
# Response headers that are part of the answer (others are per request or per hop).
KEPT_HEADERS = frozenset({
    b"content-type", b"location", b"content-location", b"content-disposition", b"etag",
    b"last-modified", b"cache-control", b"x-request-id",
})
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# NATS' default max payload is 1 MiB; leave room for the metadata line and headers.
MAX_STORED_BYTES = 900 * 1024


def valid_key(value: str) -> bool:
    return bool(_VALID_KEY.match(value))


@dataclass(slots=True)
class Stored:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class Claim:
    """The outcome of `begin`: proceed (we own `key` at `revision`), replay, conflict or
    mismatch."""

    outcome: str
    key: str = ""
    revision: int = 0
    stored: Stored | None = field(default=None)
    fingerprint: str = ""  # of the request that claimed the key


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyStore:
    def __init__(self, kv: KeyValue, stale_after_seconds: float) -> None:
        self.kv = kv
        self.stale_after = stale_after_seconds

    @staticmethod
    def storage_key(tenant: str, key: str) -> str:
        return "r." + hashlib.sha256(f"{tenant}\x00{key}".encode()).hexdigest()

    async def begin(self, tenant: str, key: str, fp: str) -> Claim:
        storage_key = self.storage_key(tenant, key)
        pending = orjson.dumps({"s": "p", "fp": fp, "at": time.time()}) + b"\n"
        for _ in range(4):
            try:
                revision = await self.kv.create(storage_key, pending)
                return Claim("proceed", storage_key, revision, fingerprint=fp)
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self.kv.get(storage_key)
            except KeyNotFoundError:
                continue
            meta, _, body = (entry.value or b"").partition(b"\n")
            try:
                doc = orjson.loads(meta)
            except orjson.JSONDecodeError:
                doc = {"s": "p", "fp": "", "at": 0}
            if doc.get("fp") != fp:
                return Claim("mismatch", storage_key)
            if doc.get("s") == "d":
                headers = [(str(k).encode("latin-1"), str(v).encode("latin-1"))
                           for k, v in doc.get("h", [])]
                return Claim("replay", storage_key,
                             stored=Stored(int(doc["st"]), headers, body))
            if time.time() - float(doc.get("at", 0)) > self.stale_after:
                try:
                    revision = await self.kv.update(storage_key, pending,
                                                    last=entry.revision)
                    return Claim("proceed", storage_key, revision, fingerprint=fp)
                except KeyWrongLastSequenceError:
                    continue
            return Claim("conflict", storage_key)
        return Claim("conflict", storage_key)

    async def finish(self, claim: Claim, fp: str, status: int,
                     headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if status >= 500 or len(body) > MAX_STORED_BYTES:
            await self.release(claim)
            return
        kept = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers
                if k in KEPT_HEADERS]
        meta = orjson.dumps({"s": "d", "fp": fp, "st": status, "h": kept, "at": time.time()})
        try:
            await self.kv.update(claim.key, meta + b"\n" + body, last=claim.revision)
        except KeyWrongLastSequenceError:
            # Someone took over a claim they thought stale; theirs is the answer kept.
            return

    async def release(self, claim: Claim) -> None:
        try:
            await self.kv.delete(claim.key, last=claim.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            return
