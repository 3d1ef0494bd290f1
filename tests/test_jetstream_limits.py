"""Issue 13, P4: streams and KV buckets are created with the configured copies and size
caps (`IGNY8_NATS_*`), existing ones are brought to them, the jobs stream refuses rather
than drops when full; consumers export their backlog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, StreamConfig
from prometheus_client import REGISTRY

from libs.common import nats as nats_kernel
from libs.common.events import JOBS_STREAM
from libs.common.pull import pull_forever
from libs.common.settings import JetStreamSettings

MiB = 1024**2


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats_kernel.connect(nats_url, "jetstream-limits-tests")
    yield conn
    await conn.drain()


async def test_streams_and_buckets_get_the_configured_copies_and_caps(
        nc: NATS, monkeypatch: pytest.MonkeyPatch) -> None:
    js = nc.jetstream()
    monkeypatch.setenv("IGNY8_NATS_STREAM_MAX_BYTES", str(64 * MiB))
    monkeypatch.setenv("IGNY8_NATS_BUCKET_MAX_BYTES", str(16 * MiB))
    assert JetStreamSettings().replicas == 1  # a single server here; 3 on the cluster
    # Each process brings what it owns (libs/common/natsauth.py): the gateway its buckets,
    # auth the revocations.
    for owner in ("opslimits", "gateway", "auth"):
        await nats_kernel.ensure_platform(js, owner)
    events = (await js.stream_info("IGNY8_OPSLIMITS")).config
    assert (events.max_bytes, events.num_replicas, events.discard) == \
        (64 * MiB, 1, DiscardPolicy.OLD)
    jobs = (await js.stream_info(JOBS_STREAM)).config
    assert (jobs.max_bytes, jobs.discard) == (64 * MiB, DiscardPolicy.NEW)
    for bucket in nats_kernel.BUCKET_TTLS:
        assert (await js.stream_info(f"KV_{bucket}")).config.max_bytes == 16 * MiB

    # Changed settings reach what exists already.
    monkeypatch.setenv("IGNY8_NATS_STREAM_MAX_BYTES", str(128 * MiB))
    monkeypatch.setenv("IGNY8_NATS_BUCKET_MAX_BYTES", str(32 * MiB))
    for owner in ("opslimits", "gateway", "auth"):
        await nats_kernel.ensure_platform(js, owner)
    assert (await js.stream_info("IGNY8_OPSLIMITS")).config.max_bytes == 128 * MiB
    bucket = nats_kernel.RATE_LIMIT_BUCKET
    assert (await js.stream_info(f"KV_{bucket}")).config.max_bytes == 32 * MiB


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="replicas"):
        JetStreamSettings(replicas=0)


async def test_a_consumer_exports_its_backlog(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="OPS_BACKLOG", subjects=["ops.backlog.>"]))
    for i in range(5):
        await js.publish("ops.backlog.x", str(i).encode())
    seen: list[bytes] = []
    during: list[float | None] = []
    stop = asyncio.Event()

    async def provision() -> None:
        await js.add_consumer("OPS_BACKLOG", ConsumerConfig(
            durable_name="ops-backlog", ack_policy=AckPolicy.EXPLICIT))

    async def handle(msg: Msg) -> None:
        seen.append(msg.data)
        during.append(pending())
        await msg.ack()
        if len(seen) == 5:
            stop.set()

    def pending() -> float | None:
        return REGISTRY.get_sample_value("igny8_consumer_pending_messages",
                                         {"stream": "OPS_BACKLOG", "consumer": "ops-backlog"})

    await asyncio.wait_for(pull_forever(js, stream="OPS_BACKLOG", durable="ops-backlog",
                                        batch=2, handle=handle, provision=provision,
                                        stop=stop), 30)
    assert len(seen) == 5
    assert during[2:4] == [3, 3]  # after the first batch of two, three were waiting
    assert pending() == 0
    await js.delete_stream("OPS_BACKLOG")
