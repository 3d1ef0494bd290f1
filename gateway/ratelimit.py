"""Scoped rate limits shared by every gateway replica: GCRA over a JetStream KV bucket.

Each (scope, caller) key holds its theoretical arrival time (TAT, unix seconds). A request
at `now` is admitted when `max(TAT, now) + T - now <= period` (T = period / limit, so a
full minute's quota may be spent at once and then refills evenly); admitting writes the new
TAT with compare-and-set on the key's revision, so two replicas never both spend the last
slot. Every replica mirrors the bucket through a watch: the normal path is one CAS round
trip, a refusal none; a stale mirror only costs a retry (fresh read, then CAS again).

When the store does not answer in time the request is admitted (fail open) and counted:
an outage of NATS should not take the API down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass(frozen=True, slots=True)
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
        period = int(self.period)
        out = [
            (b"x-throttle-limit", str(self.limit).encode()),
            (b"x-throttle-remaining", str(self.remaining).encode()),
            (b"x-throttle-reset", str(math.ceil(self.reset_at)).encode()),
            (b"ratelimit-policy", f'"{self.scope}";q={self.limit};w={period}'.encode()),
            (b"ratelimit", f'"{self.scope}";r={self.remaining};t={reset_in}'.encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        return out


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
        one client cost O(n²) round trips)."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not future.done():
                batch = self._waiting.pop(key, [])
                try:
                    decisions = await self._decide(scope, key, len(batch))
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

    async def _decide(self, scope: str, key: str, count: int) -> list[Decision]:
        limit = self.limits[scope]
        period = self.period
        interval = period / limit
        for _ in range(_MAX_ATTEMPTS):
            now = time.time()
            entry = self._mirror.get(key)
            tat = entry[0] if entry is not None else 0.0
            base = max(tat, now)
            # GCRA for `count` arrivals at once: each admitted one moves TAT by `interval`,
            # and TAT may run at most one period ahead of now.
            fits = max(0, min(count, math.floor((period - (base - now)) / interval + 1e-9)))
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
