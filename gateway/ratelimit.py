"""Scoped rate limits shared by every gateway replica: GCRA over a JetStream KV bucket.

Each (scope, caller) key holds its theoretical arrival time (TAT, unix seconds). A request
at `now` is admitted when `max(TAT, now) + T - now <= period` (T = period / limit, so a
full minute's quota may be spent at once and then refills evenly); admitting writes the new
TAT with compare-and-set on the key's revision, so two replicas never both spend the last
slot. Every replica mirrors the bucket through a watch: a refusal costs no round trip; a
stale mirror only costs a retry (fresh read, then CAS again).

Leases (decision 0014): a replica whose key is busy reserves a few permits more than it
needs with the same CAS (TAT moves by one interval per permit, as if those requests had
arrived) and spends them locally, without a round trip, for at most `_LEASE_SECONDS`.
The shared TAT already counts every leased permit, so the sum over replicas never exceeds
the limit; a permit left unspent when its lease expires is simply lost (stricter, never
looser). Leases grow while the key stays busy, stop when it goes quiet, and are capped
at a small share of the limit, so small limits (`auth_strict`'s 5) are never leased.

When the store does not answer in time the request is admitted (fail open) and counted:
an outage of NATS should not take the API down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.metrics import RATE_LIMITED, UPSTREAM_ERRORS

log = logging.getLogger("igny8.gateway.ratelimit")

_UNSAFE_KEY_CHARS = re.compile(r"[^-_=.a-zA-Z0-9]")
_MAX_ATTEMPTS = 8
# Entries older than the bucket's TTL are gone from the store: forget them here too.
_FORGET_AFTER_SECONDS = 600.0
# A leased permit not spent within this long after its CAS is lost.
_LEASE_SECONDS = 1.0
# At most 1/_LEASE_SHARE of a key's limit, and _MAX_LEASE permits, leased at once.
_LEASE_SHARE = 32
_MAX_LEASE = 256


class _Lease:
    """Permits this replica reserved in the shared TAT and has not spent yet."""

    __slots__ = ("end_tat", "expires", "left", "size", "taken")

    def __init__(self) -> None:
        self.end_tat = 0.0  # the shared TAT right after the CAS that reserved them
        self.expires = 0.0
        self.left = 0
        self.size = 0  # extra permits the next CAS reserves
        self.taken = 0.0  # when the last CAS for this key was won


@dataclass(slots=True)  # not frozen: one per request, and frozen __init__s cost 8 setattrs
class Decision:
    allowed: bool
    scope: str
    limit: int
    period: float
    remaining: int
    reset_at: float  # unix time when the full quota is back
    retry_after: float  # seconds; meaningful when refused
    now: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        reset_in = max(0, math.ceil(self.reset_at - self.now))
        limit, policy = _policy_headers(self.scope, self.limit, self.period)
        out = [
            limit,
            (b"x-throttle-remaining", b"%d" % self.remaining),
            (b"x-throttle-reset", b"%d" % math.ceil(self.reset_at)),
            policy,
            (b"ratelimit", f'"{self.scope}";r={self.remaining};t={reset_in}'.encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        return out


@functools.lru_cache(maxsize=256)
def _policy_headers(scope: str, limit: int, period: float
                    ) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """The headers that only change with a scope's configuration, built once."""
    return ((b"x-throttle-limit", b"%d" % limit),
            (b"ratelimit-policy", f'"{scope}";q={limit};w={int(period)}'.encode()))


def lockout_headers(retry_after: int, now: float) -> list[tuple[bytes, bytes]]:
    """The throttle headers of a refusal decided elsewhere (auth's sign-in lockout, or
    a service's own 429): nothing remains until `retry_after` seconds from now."""
    return [(b"x-throttle-remaining", b"0"),
            (b"x-throttle-reset", b"%d" % math.ceil(now + retry_after)),
            (b"retry-after", b"%d" % retry_after)]


def caller_key(scope: str, user_id: int | None, client_address: str) -> str:
    if user_id is not None:
        return f"{scope}.u{user_id}"
    return f"{scope}.a{_UNSAFE_KEY_CHARS.sub('_', client_address) or 'unknown'}"


class RateLimiter:
    def __init__(self, kv: KeyValue, limits: dict[str, int], period: float = 60.0) -> None:
        self.kv = kv
        self.limits = limits
        self.period = period
        # key → (TAT, revision), mirrored from the bucket.
        self._mirror: dict[str, tuple[float, int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Requests waiting for a decision, and the lock whose holder decides them, per key.
        self._waiting: dict[str, list[asyncio.Future[Decision]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._watcher: Any = None
        self._leases: dict[str, _Lease] = {}

    async def start(self) -> None:
        self._watcher = await self.kv.watchall()
        self._tasks.append(asyncio.create_task(self._follow(), name="ratelimit-watch"))
        self._tasks.append(asyncio.create_task(self._forget_loop(), name="ratelimit-prune"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

    async def _follow(self) -> None:
        try:
            async for entry in self._watcher:
                if entry is None:
                    continue
                current = self._mirror.get(entry.key)
                if current is not None and current[1] >= entry.revision:
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    self._mirror.pop(entry.key, None)
                    continue
                with contextlib.suppress(ValueError):
                    self._mirror[entry.key] = (float(entry.value), entry.revision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("rate-limit watch ended, CAS keeps limits exact: %s", exc)

    async def _forget_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            horizon = time.time() - _FORGET_AFTER_SECONDS
            for key in [k for k, (tat, _) in self._mirror.items() if tat < horizon]:
                self._mirror.pop(key, None)
            for key in [k for k, lock in self._locks.items()
                        if not lock.locked() and k not in self._waiting]:
                self._locks.pop(key, None)
            now = time.time()
            for key in [k for k, lease in self._leases.items()
                        if lease.expires + _FORGET_AFTER_SECONDS < now]:
                self._leases.pop(key, None)

    async def _reload(self, key: str) -> None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            self._mirror.pop(key, None)
            return
        try:
            self._mirror[key] = (float(entry.value or b"0"), entry.revision or 0)
        except ValueError:
            self._mirror.pop(key, None)

    async def check(self, scope: str, key: str) -> Decision:
        """Decide one request. Concurrent requests for the same key in this replica are
        decided together by whichever of them holds the key's lock: one CAS for the
        batch instead of one per request racing the others (which made every burst from
        one client cost O(n²) round trips). A permit this replica leased earlier decides
        without waiting at all."""
        leased = self._spend_lease(scope, key)
        if leased is not None:
            return leased
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not future.done():
                batch = self._waiting.pop(key, [])
                # While we waited for the lock, its previous holder may have leased permits.
                while batch and (leased := self._spend_lease(scope, key)) is not None:
                    waiter = batch.pop()
                    if not waiter.done():
                        waiter.set_result(leased)
                try:
                    decisions = await self._decide(scope, key, len(batch)) if batch else []
                except asyncio.CancelledError:
                    # Our caller went away: hand the others back to the next holder.
                    others = [f for f in batch if f is not future and not f.done()]
                    self._waiting.setdefault(key, [])[:0] = others
                    raise
                except Exception as exc:
                    for waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    for waiter, decision in zip(batch, decisions, strict=True):
                        if not waiter.done():
                            waiter.set_result(decision)
        return future.result()

    def _spend_lease(self, scope: str, key: str) -> Decision | None:
        lease = self._leases.get(key)
        if lease is None or not lease.left:
            return None
        now = time.time()
        if now >= lease.expires:
            lease.left = 0
            return None
        lease.left -= 1
        limit = self.limits[scope]
        period = self.period
        interval = period / limit
        # As if this request were the next arrival of the batch that took the lease: the
        # permits still leased after it count as what remains for this caller.
        admitted_tat = lease.end_tat - lease.left * interval
        remaining = min(limit - 1, max(0, math.floor(
            (period - (admitted_tat - now)) / interval + 1e-9)))
        return Decision(True, scope, limit, period, remaining, max(admitted_tat, now), 0.0,
                        now)

    def _lease_size(self, key: str, limit: int, now: float) -> int:
        """Extra permits for the next CAS: none for a quiet key (or one whose last lease
        expired), doubling while the key stays busy and its leases get spent."""
        cap = min(_MAX_LEASE, limit // _LEASE_SHARE)
        if cap == 0:
            return 0
        lease = self._leases.get(key)
        if lease is None or now - lease.taken > _LEASE_SECONDS:
            return 0
        return min(cap, max(1, lease.size * 2))

    async def _decide(self, scope: str, key: str, count: int) -> list[Decision]:
        limit = self.limits[scope]
        period = self.period
        interval = period / limit
        extra = self._lease_size(key, limit, time.time())
        for _ in range(_MAX_ATTEMPTS):
            now = time.time()
            entry = self._mirror.get(key)
            tat = entry[0] if entry is not None else 0.0
            base = max(tat, now)
            # GCRA for `count` (+ `extra` leased) arrivals at once: each admitted one moves
            # TAT by `interval`, and TAT may run at most one period ahead of now.
            fits = max(0, min(count + extra,
                              math.floor((period - (base - now)) / interval + 1e-9)))
            leased = max(0, fits - count)
            final_tat = base + fits * interval
            if fits:
                value = repr(final_tat).encode()
                try:
                    if entry is None:
                        revision = await self.kv.create(key, value)
                    else:
                        revision = await self.kv.update(key, value, last=entry[1])
                except KeyWrongLastSequenceError:
                    await self._reload(key)
                    continue
                current = self._mirror.get(key)
                if current is None or current[1] < revision:
                    self._mirror[key] = (final_tat, revision)
                lease = self._leases.get(key)
                if lease is None:
                    lease = self._leases[key] = _Lease()
                lease.size = extra
                lease.taken = now
                lease.left = leased
                lease.end_tat = final_tat
                lease.expires = time.time() + _LEASE_SECONDS
            decisions = []
            for i in range(count):
                if i < fits:
                    admitted_tat = base + (i + 1) * interval
                    remaining = max(0, math.floor(
                        (period - (admitted_tat - now)) / interval + 1e-9))
                    decisions.append(Decision(True, scope, limit, period, remaining,
                                              admitted_tat, 0.0, now))
                else:
                    RATE_LIMITED.labels(scope).inc()
                    decisions.append(Decision(False, scope, limit, period, 0, final_tat,
                                              final_tat + interval - period - now, now))
            return decisions
        # Persistent contention on one key across replicas: refuse rather than overspend.
        now = time.time()
        RATE_LIMITED.labels(scope).inc(count)
        return [Decision(False, scope, limit, period, 0, now + interval, interval, now)
                for _ in range(count)]

    def refused(self, scope: str, key: str) -> Decision | None:
        """The refusal `check` would give now, read from the mirror alone (no round
        trip); None when a request would be admitted. For keys charged only after the
        fact, such as failed authentication."""
        entry = self._mirror.get(key)
        if entry is None:
            return None
        limit = self.limits[scope]
        period = self.period
        interval = period / limit
        now = time.time()
        tat = max(entry[0], now)
        if math.floor((period - (tat - now)) / interval + 1e-9) >= 1:
            return None
        RATE_LIMITED.labels(scope).inc()
        return Decision(False, scope, limit, period, 0, tat, tat + interval - period - now, now)

    async def check_or_admit(self, scope: str, key: str) -> Decision:
        """`check`, admitting (without headers' promise) when the store is unreachable."""
        try:
            return await self.check(scope, key)
        except (NatsError, TimeoutError, OSError) as exc:
            UPSTREAM_ERRORS.labels("nats", "rate_limit_store").inc()
            log.warning("rate-limit store unavailable, admitting: %s", exc)
            now = time.time()
            limit = self.limits[scope]
            return Decision(True, scope, limit, self.period, limit - 1, now, 0.0, now)
