"""NATS refuses anonymous clients, and each process's user can do only its own part
(libs/common/natsauth.py), on the test plugin's embedded server, which runs the same
configuration as `igny8 up`."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig

from libs.common import nats as nats_kernel
from libs.common.ai_jobs.request import AIFunction
from libs.common.commands import Command
from libs.common.events import JOBS_STREAM, job_consumer, stream_name
from libs.common.jobs import JobWorker
from libs.common.natsauth import (
    COMMAND_CALLERS,
    EVENT_CONSUMERS,
    GATEWAY_USER,
    IDEMPOTENCY_BUCKET,
    JOB_FUNCTIONS,
    PLATFORM_SERVICES,
    RATE_LIMIT_BUCKET,
    REVOCATIONS_BUCKET,
    TASK_PROGRESS_BUCKET,
    access,
    inbox_prefix,
    permissions,
    server_config,
)
from libs.common.testing.plugin import NatsServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(nats_server: NatsServer) -> NatsServer:
    if not nats_server.passwords:
        pytest.skip("needs the embedded server, whose users the plugin knows")
    return nats_server


class Violations:
    """Permission violations the server reported on one connection."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.errors.append(str(exc).lower())

    async def seen(self, subject: str, nc: NATS) -> bool:
        for _ in range(40):
            await nc.flush()
            if any("permissions violation" in e and subject.lower() in e for e in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False


@asynccontextmanager
async def connected(server: NatsServer, user: str) -> AsyncIterator[tuple[NATS, Violations]]:
    assert server.passwords is not None
    violations = Violations()
    nc = await nats.connect(server.url, user=user, password=server.passwords[user],
                            inbox_prefix=inbox_prefix(user), error_cb=violations.record,
                            allow_reconnect=False, connect_timeout=5, name=f"test-{user}")
    try:
        yield nc, violations
    finally:
        await nc.close()


async def test_an_anonymous_connection_is_refused(server: NatsServer) -> None:
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=5,
                           max_reconnect_attempts=0, error_cb=_ignore)


async def test_a_wrong_password_is_refused(server: NatsServer) -> None:
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(server.url, user="planner", password="guess", allow_reconnect=False,
                           connect_timeout=5, max_reconnect_attempts=0, error_cb=_ignore)


async def _ignore(_: Exception) -> None:
    return None


async def test_only_auth_writes_revocations(server: NatsServer) -> None:
    sid = uuid.uuid4().hex
    async with connected(server, "auth") as (auth, _):
        buckets = await nats_kernel.ensure_platform(auth.jetstream(), "auth")
        await buckets[REVOCATIONS_BUCKET].put(f"sid.{sid}", b"1")
    for user in ("planner", "billing", "gateway", "writer"):
        async with connected(server, user) as (nc, violations):
            js = nc.jetstream(timeout=1.0)
            kv = await js.key_value(REVOCATIONS_BUCKET)
            assert (await kv.get(f"sid.{sid}")).value == b"1"  # every process reads them
            with pytest.raises(Exception):  # noqa: B017, PT011 - the server never answers
                await kv.delete(f"sid.{sid}")
            assert await violations.seen(f"$KV.{REVOCATIONS_BUCKET}.sid.{sid}", nc)
            for api in (f"$JS.API.STREAM.PURGE.KV_{REVOCATIONS_BUCKET}",
                        f"$JS.API.STREAM.DELETE.KV_{REVOCATIONS_BUCKET}",
                        f"$JS.API.STREAM.MSG.DELETE.KV_{REVOCATIONS_BUCKET}",
                        f"$JS.API.STREAM.UPDATE.KV_{REVOCATIONS_BUCKET}"):
                await nc.publish(api, b"{}")
                assert await violations.seen(api, nc), api
    async with connected(server, "auth") as (auth, _):
        kv = await auth.jetstream().key_value(REVOCATIONS_BUCKET)
        assert (await kv.get(f"sid.{sid}")).value == b"1"  # still revoked


@pytest.mark.parametrize("bucket", [IDEMPOTENCY_BUCKET, RATE_LIMIT_BUCKET])
async def test_only_the_gateway_touches_idempotency_and_rate_limits(
        server: NatsServer, bucket: str) -> None:
    key = f"k{uuid.uuid4().hex}"
    async with connected(server, "gateway") as (gw, _):
        buckets = await nats_kernel.ensure_platform(gw.jetstream(), "gateway")
        await buckets[bucket].put(key, b"stored answer")
    for user in ("auth", "planner", "billing"):
        async with connected(server, user) as (nc, violations):
            for subject in (f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}",
                            f"$JS.API.STREAM.MSG.GET.KV_{bucket}",
                            f"$JS.API.STREAM.INFO.KV_{bucket}",
                            f"$JS.API.CONSUMER.CREATE.KV_{bucket}",
                            f"$KV.{bucket}.{key}"):
                await nc.publish(subject, b"{}")
                assert await violations.seen(subject, nc), (user, subject)


async def test_only_billing_answers_billing_commands(server: NatsServer) -> None:
    async with connected(server, "planner") as (planner, violations):
        await planner.subscribe("igny8.cmd.billing.capture", queue="billing")
        assert await violations.seen("igny8.cmd.billing.capture", planner)
    async with connected(server, "billing") as (billing, _), \
            connected(server, "planner") as (planner, _):

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"captured")

        await billing.subscribe("igny8.cmd.billing.capture", queue="billing", cb=answer)
        await billing.flush()
        for attempt in range(5):  # the subscription may take a moment on a loaded machine
            try:
                reply = await planner.request("igny8.cmd.billing.capture", b"{}", timeout=5)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5)
        assert reply.data == b"captured"


async def test_a_service_publishes_only_its_own_events_and_jobs(server: NatsServer) -> None:
    async with connected(server, "planner") as (planner, violations):
        for subject in ("igny8.billing.credits.captured", "igny8.auth.user.updated",
                        "igny8.jobs.writer.generate_content"):
            await planner.publish(subject, b"{}")
            assert await violations.seen(subject, planner), subject
        before = len(violations.errors)
        await planner.publish("igny8.planner.keyword.created", b"{}")
        await planner.publish("igny8.jobs.planner.auto_cluster", b"{}")
        await planner.flush()
        await asyncio.sleep(0.2)
        assert violations.errors[before:] == []


async def test_a_service_cannot_read_another_process_replies(server: NatsServer) -> None:
    async with connected(server, "planner") as (planner, violations):
        await planner.subscribe("_INBOX.gateway.>")
        assert await violations.seen("_INBOX.gateway.>", planner)
        await planner.subscribe(">")
        assert await violations.seen(">", planner)


async def test_jobs_consumers_only_for_own_functions(server: NatsServer) -> None:
    async with connected(server, "planner") as (planner, violations):
        subject = f"$JS.API.CONSUMER.CREATE.{JOBS_STREAM}.steal.igny8.jobs.writer.generate"
        await planner.publish(subject, b"{}")
        assert await violations.seen(subject, planner)
        await planner.publish(f"$JS.API.STREAM.DELETE.{JOBS_STREAM}", b"{}")
        assert await violations.seen(f"$JS.API.STREAM.DELETE.{JOBS_STREAM}", planner)


def _allowed(user: str) -> Callable[[str], bool]:
    granted = permissions(access(user))["publish"]
    assert isinstance(granted, dict)
    patterns = [p.split(".") for p in granted["allow"]]

    def matches(subject: str) -> bool:
        tokens = subject.split(".")
        for pattern in patterns:
            for i, token in enumerate(pattern):
                if token == ">":
                    if len(tokens) > i:
                        return True
                    break
                if i >= len(tokens) or (token != "*" and token != tokens[i]):
                    break
            else:
                if len(pattern) == len(tokens):
                    return True
        return False

    return matches


def test_a_new_service_gets_a_default_from_its_name() -> None:
    """A service natsauth has never heard of (`notes`) needs no entry: its own events,
    jobs and commands, every platform service's events to read, nothing of the gateway's
    or auth's."""
    may = _allowed("notes")
    assert may("igny8.notes.note.created")
    assert may("igny8.jobs.notes.summarise")
    assert may("$JS.API.STREAM.UPDATE.IGNY8_NOTES")
    assert may("$JS.API.CONSUMER.DURABLE.CREATE.IGNY8_AUTH.notes-auth-read-models")
    # Its jobs' consumers and the commands it calls come with its entries in
    # JOB_FUNCTIONS and COMMAND_CALLERS: none yet.
    assert not may("$JS.API.CONSUMER.CREATE.IGNY8_JOBS.notes-job-x.igny8.jobs.notes.x")
    assert not may("igny8.cmd.billing.hold")
    assert may(f"$KV.{TASK_PROGRESS_BUCKET}.abc")
    assert not may("igny8.planner.keyword.created")
    assert not may("$JS.API.CONSUMER.CREATE.IGNY8_JOBS.x.igny8.jobs.planner.x")
    assert not may(f"$KV.{REVOCATIONS_BUCKET}.sid.x")
    assert not may(f"$JS.API.DIRECT.GET.KV_{IDEMPOTENCY_BUCKET}")
    assert not may("$JS.API.STREAM.UPDATE.IGNY8_AUTH")
    assert not may("$JS.API.STREAM.NAMES")
    subscribe = permissions(access("notes"))["subscribe"]
    assert subscribe == {"allow": ["_INBOX.notes.>", "igny8.cmd.notes.>"]}


def test_the_server_config_references_passwords_it_does_not_hold() -> None:
    """Kubernetes: nats-server reads each password from its environment."""
    text = server_config({"planner": None, "gateway": "p"})
    assert '"password": $IGNY8_NATS_PASSWORD_PLANNER}' in text
    assert '"password": "p"' in text
    assert "no_auth_user" not in text


async def test_a_process_connects_as_its_own_user(server: NatsServer) -> None:
    from libs.common.settings import PlatformSettings

    assert server.passwords is not None
    settings = PlatformSettings(nats_url=server.url, nats_password=server.passwords["billing"])
    nc = await nats_kernel.connect_as(settings, "billing", "test")
    try:
        assert nc.connected_url is not None
        assert nc._inbox_prefix.decode() == "_INBOX.billing"  # noqa: SLF001
        buckets = await nats_kernel.ensure_platform(nc.jetstream(), "billing")
        assert set(buckets) == {REVOCATIONS_BUCKET, TASK_PROGRESS_BUCKET}
    finally:
        await nc.close()


async def test_a_service_cannot_touch_another_services_job_consumer(server: NatsServer) -> None:
    """Issue 13: planner knows writer's consumer name; it can neither fetch writer's jobs,
    read or acknowledge on that consumer, nor take it over by re-creating it with its own
    filter. Its own consumer works."""
    writer_consumer = job_consumer("writer", "optimize")
    async with connected(server, "writer") as (writer, _):
        js = writer.jetstream(timeout=5.0)
        await nats_kernel.ensure_platform(js, "writer")
        worker = JobWorker("writer", "optimize", _no_job, js, progress=None)  # type: ignore[arg-type]
        await worker.provision()
        assert (await js.consumer_info(JOBS_STREAM, writer_consumer)).name == writer_consumer
    async with connected(server, "planner") as (planner, violations):
        for subject in (f"$JS.API.CONSUMER.MSG.NEXT.{JOBS_STREAM}.{writer_consumer}",
                        f"$JS.API.CONSUMER.INFO.{JOBS_STREAM}.{writer_consumer}",
                        f"$JS.API.CONSUMER.CREATE.{JOBS_STREAM}.{writer_consumer}"
                        ".igny8.jobs.planner.auto_cluster",
                        f"$JS.API.CONSUMER.DURABLE.CREATE.{JOBS_STREAM}.{writer_consumer}",
                        f"$JS.API.CONSUMER.DELETE.{JOBS_STREAM}.{writer_consumer}",
                        f"$JS.ACK.{JOBS_STREAM}.{writer_consumer}.1.1.1.1.0"):
            await planner.publish(subject, b"{}")
            assert await violations.seen(subject, planner), subject
        js = planner.jetstream(timeout=5.0)
        own = JobWorker("planner", "auto_cluster", _no_job, js, progress=None)  # type: ignore[arg-type]
        await own.provision()
        await js.publish("igny8.jobs.planner.auto_cluster", b"{}")
        sub = await js.pull_subscribe_bind(durable=own.durable, stream=JOBS_STREAM)
        (job,) = await sub.fetch(1, timeout=5)
        await job.ack_sync()
        assert not any(own.durable.lower() in e for e in violations.errors)


async def _no_job(_: object) -> None:
    return None


async def test_a_service_calls_only_the_commands_it_uses(server: NatsServer) -> None:
    """Issue 13: each process publishes only on the command subjects COMMAND_CALLERS
    gives it: planner holds credits but does not queue writer's pipeline or quote;
    automation drives the pipeline but holds nothing; the gateway calls nothing;
    nobody sends billing's refund."""
    refused = {
        "planner": ("igny8.cmd.writer.pipeline_queue", "igny8.cmd.billing.quote",
                    "igny8.cmd.billing.refund", "igny8.cmd.planner.pipeline_pending"),
        "writer": ("igny8.cmd.auth.seed_keywords", "igny8.cmd.planner.pipeline_queue"),
        "automation": ("igny8.cmd.billing.hold", "igny8.cmd.billing.capture",
                       "igny8.cmd.auth.ai_settings", "igny8.cmd.planner.lookup_cluster"),
        "auth": ("igny8.cmd.billing.hold",),
        "billing": ("igny8.cmd.auth.lookup_site",),
        "gateway": ("igny8.cmd.auth.lookup_site", "igny8.cmd.billing.hold"),
    }
    allowed = {"planner": ("igny8.cmd.billing.hold", "igny8.cmd.auth.seed_keywords"),
               "writer": ("igny8.cmd.planner.lookup_cluster",),
               "automation": ("igny8.cmd.writer.pipeline_publish", "igny8.cmd.billing.quote")}
    for user, subjects in refused.items():
        async with connected(server, user) as (nc, violations):
            for subject in subjects:
                await nc.publish(subject, b"{}")
                assert await violations.seen(subject, nc), (user, subject)
            before = len(violations.errors)
            for subject in allowed.get(user, ()):
                await nc.publish(subject, b"{}")
            await nc.flush()
            await asyncio.sleep(0.2)
            assert violations.errors[before:] == [], user


def _declared_commands() -> set[str]:
    from libs.common import auth, billing, pipeline, planner

    return {f"{value.service}.{value.name}" for module in (auth, billing, pipeline, planner)
            for value in vars(module).values() if isinstance(value, Command)}


def test_the_command_table_names_every_declared_command() -> None:
    """A new command needs its callers in COMMAND_CALLERS (else nobody may send it), and
    the table names no command that does not exist."""
    declared = _declared_commands()
    assert declared <= set(COMMAND_CALLERS), (
        f"add the callers of {sorted(declared - set(COMMAND_CALLERS))} to "
        "libs/common/natsauth.COMMAND_CALLERS")
    assert set(COMMAND_CALLERS) <= declared
    services = {*PLATFORM_SERVICES, GATEWAY_USER}
    for command, callers in COMMAND_CALLERS.items():
        assert set(callers) <= services, command


def test_the_job_table_names_every_job_function_the_workers_run() -> None:
    from services.writer.service.publishing import PUBLISH_FUNCTION, UNPUBLISH_FUNCTION

    declared: dict[str, set[str]] = {}
    for module in ("services.planner.events", "services.writer.events",
                   "services.automation.events"):
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, AIFunction):
                declared.setdefault(value.service, set()).add(value.name)
    declared["writer"] |= {PUBLISH_FUNCTION, UNPUBLISH_FUNCTION}
    assert {k: set(v) for k, v in JOB_FUNCTIONS.items()} == declared


async def test_a_service_cannot_touch_another_services_event_consumer(
        server: NatsServer) -> None:
    """Planner reads auth's stream too, and knows writer's consumer there: it can neither
    fetch writer's events (they would be acknowledged away from writer), read or ack on
    that consumer, nor re-create it with another filter. Its own works."""
    theirs = EVENT_CONSUMERS["writer"]["auth"]
    stream = stream_name("auth")
    async with connected(server, "writer") as (writer, _):
        js = writer.jetstream(timeout=5.0)
        await nats_kernel.ensure_event_stream(js, "auth", update=False)
        await js.add_consumer(stream, ConsumerConfig(
            durable_name=theirs, ack_policy=AckPolicy.EXPLICIT,
            filter_subjects=["igny8.auth.site.>"]))
    async with connected(server, "planner") as (planner, violations):
        for subject in (f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{theirs}",
                        f"$JS.API.CONSUMER.INFO.{stream}.{theirs}",
                        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{theirs}",
                        f"$JS.API.CONSUMER.CREATE.{stream}.{theirs}.igny8.auth.user.>",
                        f"$JS.API.CONSUMER.CREATE.{stream}",
                        f"$JS.ACK.{stream}.{theirs}.1.1.1.1.0"):
            await planner.publish(subject, b"{}")
            assert await violations.seen(subject, planner), subject
        js = planner.jetstream(timeout=5.0)
        own = EVENT_CONSUMERS["planner"]["auth"]
        await js.add_consumer(stream, ConsumerConfig(
            durable_name=own, ack_policy=AckPolicy.EXPLICIT,
            filter_subjects=["igny8.auth.site.>"]))
        sub = await js.pull_subscribe_bind(durable=own, stream=stream)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=0.5)
        assert not any(own in e for e in violations.errors)


def _worker_consumers(service: str) -> set[tuple[str, str]]:
    """(stream, consumer) of every event consumer `service`'s worker runs: its `run` with
    the runtime replaced by one that only builds the consumers."""
    module = importlib.import_module(f"services.{service}.worker")
    built: set[tuple[str, str]] = set()

    async def run_worker(settings: object, *, consumers: Callable[[Any], Any] = lambda _: (),
                         **_: object) -> None:
        ctx = SimpleNamespace(db=None, js=None, nc=None, buckets={}, stop=asyncio.Event())
        built.update((c.stream, c.name) for c in consumers(ctx))

    original = getattr(module, "run_worker", None)
    runtime_module = importlib.import_module("libs.common.runtime")
    saved = runtime_module.run_worker
    try:
        if original is not None:
            module.run_worker = run_worker  # type: ignore[attr-defined]
        runtime_module.run_worker = run_worker  # type: ignore[assignment]
        asyncio.run(module.run(asyncio.Event()))
    finally:
        if original is not None:
            module.run_worker = original  # type: ignore[attr-defined]
        runtime_module.run_worker = saved  # type: ignore[assignment]
    return built


@pytest.mark.parametrize("service", PLATFORM_SERVICES)
def test_the_event_consumer_table_is_what_the_workers_run(service: str) -> None:
    """A worker's new consumer needs its name in natsauth.EVENT_CONSUMERS (else its
    provisioning is refused); the table names no consumer a worker does not run."""
    granted = set(access(service).event_consumers())
    assert _worker_consumers(service) == granted, (
        f"{service}: make natsauth.EVENT_CONSUMERS[{service!r}] name its worker's consumers")

