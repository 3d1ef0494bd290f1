"""Connecting to NATS and provisioning what a service publishes into.

Streams and KV buckets are provisioned explicitly at start-up: a re-subscribe does not
update an existing durable's configuration, so the configuration lives here, in code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from libs.common.events import JOBS_PREFIX, JOBS_STREAM, stream_name, stream_subjects
from libs.common.settings import JetStreamSettings

log = logging.getLogger(__name__)

# Buckets shared by the platform, with how long an entry lives.
TASK_PROGRESS_BUCKET = "igny8_task_progress"
REVOCATIONS_BUCKET = "igny8_revocations"
RATE_LIMIT_BUCKET = "igny8_rate_limits"
IDEMPOTENCY_BUCKET = "igny8_idempotency"

BUCKET_TTLS: dict[str, float] = {
    TASK_PROGRESS_BUCKET: 24 * 3600,
    # Longer than an access token lives (15 min) plus leeway: after that, nothing to revoke.
    REVOCATIONS_BUCKET: 20 * 60,
    # Longer than the longest rate-limit period (one minute).
    RATE_LIMIT_BUCKET: 10 * 60,
    IDEMPOTENCY_BUCKET: 24 * 3600,
}


async def connect(url: str, name: str, *, first_attempt_timeout: float = 30.0) -> NATS:
    """Connect, retrying the first connection too (nats-py only retries reconnects)."""
    deadline = asyncio.get_running_loop().time() + first_attempt_timeout
    delay = 0.1
    while True:
        try:
            return await nats.connect(
                servers=[url],
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
            )
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("NATS not reachable yet at %s: %s", url, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _add_or_update_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_event_stream(js: JetStreamContext, service: str,
                              limits: JetStreamSettings | None = None) -> None:
    limits = limits or JetStreamSettings()
    await _add_or_update_stream(
        js,
        StreamConfig(
            name=stream_name(service),
            subjects=stream_subjects(service),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 24 * 3600,
            max_bytes=limits.stream_max_bytes,
            num_replicas=limits.replicas,
            duplicate_window=120,
            discard=DiscardPolicy.OLD,
        ),
    )


async def ensure_jobs_stream(js: JetStreamContext,
                             limits: JetStreamSettings | None = None) -> None:
    limits = limits or JetStreamSettings()
    await _add_or_update_stream(
        js,
        StreamConfig(
            name=JOBS_STREAM,
            subjects=[f"{JOBS_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_bytes=limits.stream_max_bytes,
            num_replicas=limits.replicas,
            # Full: publishing fails (the outbox retries) rather than dropping queued jobs.
            discard=DiscardPolicy.NEW,
            duplicate_window=120,
        ),
    )


async def ensure_bucket(js: JetStreamContext, bucket: str,
                        limits: JetStreamSettings | None = None) -> KeyValue:
    """The bucket, created with the configured copies and cap, or brought to them (a
    bucket is the stream `KV_<bucket>`)."""
    limits = limits or JetStreamSettings()
    try:
        kv = await js.key_value(bucket)
    except (NotFoundError, Exception):
        return await js.create_key_value(
            KeyValueConfig(bucket=bucket, history=1, ttl=BUCKET_TTLS.get(bucket),
                           storage=StorageType.FILE, replicas=limits.replicas,
                           max_bytes=limits.bucket_max_bytes)
        )
    config = (await js.stream_info(f"KV_{bucket}")).config
    if (config.num_replicas, config.max_bytes) != (limits.replicas, limits.bucket_max_bytes):
        config.num_replicas, config.max_bytes = limits.replicas, limits.bucket_max_bytes
        await js.update_stream(config)
    return kv


async def ensure_platform(js: JetStreamContext, *services: str) -> dict[str, Any]:
    """Everything a process of the platform may touch; idempotent."""
    limits = JetStreamSettings()
    for service in services:
        await ensure_event_stream(js, service, limits)
    await ensure_jobs_stream(js, limits)
    return {bucket: await ensure_bucket(js, bucket, limits) for bucket in BUCKET_TTLS}
