"""Connecting to NATS and provisioning what a service publishes into.

Streams and KV buckets are provisioned explicitly at start-up: a re-subscribe does not
update an existing durable's configuration, so the configuration lives here, in code.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

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
from libs.common.natsauth import (
    IDEMPOTENCY_BUCKET,
    RATE_LIMIT_BUCKET,
    REVOCATIONS_BUCKET,
    TASK_PROGRESS_BUCKET,
    access,
    inbox_prefix,
)
from libs.common.settings import EVENT_MAX_AGE_DAYS, JetStreamSettings, PlatformSettings

log = logging.getLogger(__name__)

# Buckets shared by the platform, with how long an entry lives.
BUCKET_TTLS: dict[str, float] = {
    TASK_PROGRESS_BUCKET: 24 * 3600,
    # Longer than an access token lives (15 min) plus leeway: after that, nothing to revoke.
    REVOCATIONS_BUCKET: 20 * 60,
    # Longer than the longest rate-limit period (one minute).
    RATE_LIMIT_BUCKET: 10 * 60,
    IDEMPOTENCY_BUCKET: 24 * 3600,
}


def _without_credentials(url: str) -> tuple[str, str | None]:
    """The URL without `user:password@`, and the user it named."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.username)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and name against
    `ca_file` (the deployment's NATS CA), or the system's CAs without one."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def connect(url: str, name: str, *, user: str | None = None,
                  password: str | None = None, tls_ca: str | None = None,
                  first_attempt_timeout: float = 30.0) -> NATS:
    """Connect as `user` (or as the user the URL names), retrying the first connection
    too (nats-py only retries reconnects). Replies arrive on the user's own inbox prefix
    (libs/common/natsauth.py), the only one its permissions let it read. With `tls_ca`
    or a `tls://` URL the connection is TLS, the server verified (libs/common/natstls.py,
    ADR 0026)."""
    bare, url_user = _without_credentials(url)
    credentials: dict[str, Any] = {}
    if tls_ca or url.startswith("tls://"):
        credentials["tls"] = tls_context(tls_ca)
        url = url.replace("nats://", "tls://", 1)
        bare = bare.replace("nats://", "tls://", 1)
    if user and password:
        url = bare
        credentials.update(user=user, password=password)
    else:
        user = url_user
    if user:
        credentials["inbox_prefix"] = inbox_prefix(user)
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
                **credentials,
            )
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("NATS not reachable yet at %s: %s", bare, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def connect_as(settings: PlatformSettings, user: str, name: str) -> NATS:
    """Connect with a process's settings: `IGNY8_NATS_USER` (default `user`) and
    `IGNY8_NATS_PASSWORD`; without a password, whatever the URL says."""
    password = settings.nats_password.get_secret_value() if settings.nats_password else None
    return await connect(settings.nats_url, name, user=settings.nats_user or user,
                         password=password, tls_ca=settings.nats_tls_ca)


async def _add_or_update_stream(js: JetStreamContext, config: StreamConfig,
                                 update: bool = True) -> None:
    """Created when missing; brought to `config` only by its owner (`update`): the others
    may not change it (libs/common/natsauth.py) and leave it as it is."""
    try:
        await js.add_stream(config)
    except BadRequestError:
        if update:
            await js.update_stream(config)


async def ensure_event_stream(js: JetStreamContext, service: str,
                              limits: JetStreamSettings | None = None, *,
                              update: bool = True) -> None:
    """`service`'s event stream; `update=False` for a consumer of another's stream."""
    limits = limits or JetStreamSettings()
    await _add_or_update_stream(
        js,
        StreamConfig(
            name=stream_name(service),
            subjects=stream_subjects(service),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=EVENT_MAX_AGE_DAYS * 24 * 3600,
            max_bytes=limits.stream_max_bytes,
            num_replicas=limits.replicas,
            duplicate_window=120,
            discard=DiscardPolicy.OLD,
        ),
        update,
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
                        limits: JetStreamSettings | None = None, *,
                        update: bool = True) -> KeyValue:
    """The bucket, created with the configured copies and cap, or brought to them by a
    writer (`update`; a bucket is the stream `KV_<bucket>`)."""
    limits = limits or JetStreamSettings()
    try:
        kv = await js.key_value(bucket)
    except (NotFoundError, Exception):
        return await js.create_key_value(
            KeyValueConfig(bucket=bucket, history=1, ttl=BUCKET_TTLS.get(bucket),
                           storage=StorageType.FILE, replicas=limits.replicas,
                           max_bytes=limits.bucket_max_bytes)
        )
    if not update:
        return kv
    config = (await js.stream_info(f"KV_{bucket}")).config
    if (config.num_replicas, config.max_bytes) != (limits.replicas, limits.bucket_max_bytes):
        config.num_replicas, config.max_bytes = limits.replicas, limits.bucket_max_bytes
        await js.update_stream(config)
    return kv


async def ensure_platform(js: JetStreamContext, service: str, *,
                          user: str | None = None) -> dict[str, KeyValue]:
    """What `user`'s process (default: `service`'s) may touch, created or brought to its
    configuration where it owns it; the buckets it may open, by name. Idempotent."""
    spec = access(user or service)
    limits = JetStreamSettings()
    if spec.events:
        await ensure_event_stream(js, service, limits)
    if spec.jobs:
        await ensure_jobs_stream(js, limits)
    return {bucket: await ensure_bucket(js, bucket, limits,
                                        update=bucket in spec.bucket_writes)
            for bucket in spec.buckets}
