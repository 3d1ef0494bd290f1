"""Who may do what on NATS: one user per process kind, with subject and bucket permissions.

Every process connects as its own user (`IGNY8_NATS_USER`, default the service's name,
with `IGNY8_NATS_PASSWORD`); the server refuses anonymous connections. What a user may
publish and subscribe to is computed here from `ACCESS`, the one table of exceptions;
a service that is not in it (a new one) gets `NatsAccess(name)`, the default derived
from its name:

- publishes its own events (`igny8.<name>.>`, stream `IGNY8_<NAME>`) and jobs
  (`igny8.jobs.<name>.>`), creates and updates its own stream;
- answers its own commands only (`igny8.cmd.<name>.>`), and calls only the commands
  `COMMAND_CALLERS` lists it for (the one table of who calls what);
- reads platform services' event streams through its own durables only
  (`EVENT_CONSUMERS`; without an entry, the directory's `<name>-auth-read-models`); on
  the shared jobs stream creates, fetches from and acknowledges only the consumers of its own job
  functions (`JOB_FUNCTIONS`, consumer `<name>-job-<function>`): NATS wildcards match
  whole tokens, not name prefixes, so each consumer is named in the permissions;
- writes task progress, reads the revocations;
- receives replies only on its own inbox prefix (`_INBOX.<name>.`), so it cannot read
  another process's replies (stored answers, PubAcks, command results).

The exceptions: only auth writes `igny8_revocations`; only the gateway reads or writes
`igny8_idempotency` and `igny8_rate_limits`; the gateway publishes no events and answers
no commands. JetStream's API is granted per stream (`$JS.API.STREAM.INFO.<stream>`,
`$JS.API.CONSUMER.*.<stream>.…`): no user may delete or purge a stream or a bucket, delete
a message, or list the account's streams. Streams of others and buckets are only created
when missing (with the configuration in libs/common/nats.py), never updated, by those
that do not own them.

A service gets an entry in `COMMAND_CALLERS` for each command it starts calling, in
`JOB_FUNCTIONS` for each job function it runs and in `EVENT_CONSUMERS` for each durable
event consumer; libs/common/tests/test_natsauth.py checks the three tables against the
declared commands, the services' job functions and the consumers their workers build.

`server_config` renders the users for nats-server (`igny8 up`, the test plugin, and
deploy/k8s/nats through `$IGNY8_NATS_PASSWORD_<USER>` environment references).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs.common.events import (
    COMMAND_PREFIX,
    EVENT_PREFIX,
    JOBS_PREFIX,
    JOBS_STREAM,
    command_subject,
    directory_consumer_name,
    job_consumer,
    job_subject,
    stream_name,
)

# The platform's KV buckets (libs/common/nats.py creates them).
TASK_PROGRESS_BUCKET = "igny8_task_progress"
REVOCATIONS_BUCKET = "igny8_revocations"
RATE_LIMIT_BUCKET = "igny8_rate_limits"
IDEMPOTENCY_BUCKET = "igny8_idempotency"

# The services whose event streams exist on the platform (readers may consume them).
PLATFORM_SERVICES: tuple[str, ...] = ("auth", "planner", "writer", "billing", "automation")
GATEWAY_USER = "gateway"
INBOX_ROOT = "_INBOX"


@dataclass(frozen=True)
class NatsAccess:
    """What one NATS user may do; the defaults are those of an ordinary service."""

    user: str
    # Publishes events on `igny8.<user>.>` into its own stream.
    events: bool = True
    # Queues and runs its own jobs (`igny8.jobs.<user>.<function>`).
    jobs: bool = True
    # Answers `igny8.cmd.<user>.>` (request-reply).
    answers_commands: bool = True
    # Whose event streams it may consume; None: every platform service's (and its own).
    reads: tuple[str, ...] | None = None
    bucket_writes: tuple[str, ...] = (TASK_PROGRESS_BUCKET,)
    bucket_reads: tuple[str, ...] = (REVOCATIONS_BUCKET,)

    @property
    def buckets(self) -> tuple[str, ...]:
        """Every bucket it may open (reads and writes)."""
        return tuple(dict.fromkeys((*self.bucket_writes, *self.bucket_reads)))

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.user)

    def calls(self) -> list[str]:
        """The command subjects it may publish on (`COMMAND_CALLERS`)."""
        return [command_subject(*command.split(".", 1))
                for command, callers in COMMAND_CALLERS.items() if self.user in callers]

    def job_consumers(self) -> list[tuple[str, str]]:
        """(durable consumer, filter subject) of each of its job functions."""
        return [(job_consumer(self.user, function), job_subject(self.user, function))
                for function in JOB_FUNCTIONS.get(self.user, ())]

    def event_consumers(self) -> list[tuple[str, str]]:
        """(stream, durable consumer) of each event consumer its worker runs: its entry in
        `EVENT_CONSUMERS`, or, for a service without one, the kernel directory's consumer
        of auth's stream (`<name>-auth-read-models`, what a new service starts with)."""
        if not self.events:
            return []
        default = {"auth": directory_consumer_name(self.user)}
        return [(stream_name(source), name)
                for source, name in EVENT_CONSUMERS.get(self.user, default).items()]

    def read_streams(self) -> list[str]:
        services = PLATFORM_SERVICES if self.reads is None else self.reads
        own = (self.user,) if self.events else ()
        return [stream_name(s) for s in dict.fromkeys((*services, *own))]


# Who calls each command (`<service>.<command>`, the `Command`s of libs/common/auth.py,
# billing.py, planner.py and pipeline.py): only those users may publish on its subject. A command
# nobody calls (billing's `refund`) is answered, but no process may send it.
COMMAND_CALLERS: dict[str, tuple[str, ...]] = {
    "auth.lookup_site": ("planner", "writer", "automation"),
    "auth.seed_keywords": ("planner",),
    "auth.ai_settings": ("planner", "writer"),
    "billing.hold": ("planner", "writer"),
    "billing.hold_batch": ("planner", "writer"),
    "billing.capture": ("planner", "writer"),
    "billing.capture_batch": ("planner", "writer"),
    "billing.release": ("planner", "writer"),
    "billing.refund": (),
    "billing.quote": ("automation",),
    "planner.lookup_cluster": ("writer",),
    "planner.pipeline_pending": ("automation",),
    "planner.pipeline_queue": ("automation",),
    "writer.pipeline_pending": ("automation",),
    "writer.pipeline_queue": ("automation",),
    "writer.pipeline_publish": ("automation",),
}

# Each service's durable event consumers, by the service whose stream they read (the
# names are the ones in use: a consumer's name keys its `processed_events`, so renaming
# one would apply its stream again). Only the owner may create, read, fetch from or
# acknowledge on each.
EVENT_CONSUMERS: dict[str, dict[str, str]] = {
    "auth": {},
    "planner": {"auth": "planner-auth-read-models", "writer": "planner-writer-events"},
    "writer": {"auth": "writer-auth-read-models", "planner": "writer-planner-events"},
    "billing": {"auth": "billing-auth"},
    "automation": {"auth": "automation-auth-read-models",
                   "billing": "automation-billing-events",
                   "planner": "automation-planner-events",
                   "writer": "automation-writer-events",
                   "automation": "automation-automation-events"},
}

# Each service's job functions (`igny8.jobs.<service>.<function>`, libs/common/jobs.py).
JOB_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "planner": ("auto_cluster", "auto_generate_ideas"),
    "writer": ("auto_generate_content", "generate_image_prompts", "generate_images",
               "optimize", "publish", "unpublish"),
}

# The exceptions to the default; a new service needs no entry.
ACCESS: dict[str, NatsAccess] = {
    "auth": NatsAccess("auth", bucket_writes=(REVOCATIONS_BUCKET, TASK_PROGRESS_BUCKET),
                       bucket_reads=()),
    GATEWAY_USER: NatsAccess(
        GATEWAY_USER, events=False, jobs=False, answers_commands=False, reads=(),
        bucket_writes=(RATE_LIMIT_BUCKET, IDEMPOTENCY_BUCKET),
        bucket_reads=(REVOCATIONS_BUCKET, TASK_PROGRESS_BUCKET)),
}


def access(user: str) -> NatsAccess:
    return ACCESS.get(user) or NatsAccess(user)


def inbox_prefix(user: str) -> str:
    return f"{INBOX_ROOT}.{user}"


def _api(*tail: str) -> str:
    return ".".join(("$JS.API", *tail))


def _consumer_owner(stream: str, consumer: str) -> list[str]:
    """Create (durable or named, any filter), read, fetch from and acknowledge on one
    durable consumer of `stream`, by name (NATS wildcards cannot match a name prefix)."""
    return [
        _api("CONSUMER.DURABLE.CREATE", stream, consumer),
        _api("CONSUMER.CREATE", stream, consumer),
        _api("CONSUMER.CREATE", stream, consumer, ">"),
        _api("CONSUMER.INFO", stream, consumer),
        _api("CONSUMER.MSG.NEXT", stream, consumer),
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def _bucket_reader(bucket: str) -> list[str]:
    stream = f"KV_{bucket}"
    return [
        _api("STREAM.INFO", stream),
        # Creating a missing bucket with the platform's configuration (nats.ensure_bucket).
        _api("STREAM.CREATE", stream),
        _api("DIRECT.GET", stream),
        _api("DIRECT.GET", stream, ">"),
        _api("STREAM.MSG.GET", stream),
        # Watches are ordered, ephemeral push consumers (created and replaced on gaps).
        _api("CONSUMER.CREATE", stream),
        _api("CONSUMER.CREATE", stream, ">"),
        _api("CONSUMER.INFO", stream, "*"),
        f"$JS.FC.{stream}.>",
    ]


def permissions(spec: NatsAccess) -> dict[str, object]:
    """nats-server's `permissions` block for `spec`'s user."""
    user = spec.user
    publish: list[str] = [_api("INFO")]
    subscribe: list[str] = [f"{spec.inbox_prefix}.>"]
    if spec.events:
        own = stream_name(user)
        publish += [f"{EVENT_PREFIX}.{user}.>",
                    _api("STREAM.CREATE", own), _api("STREAM.UPDATE", own)]
    for stream in spec.read_streams():
        # A consumer may start before the stream's owner: it creates the stream, as is.
        publish += [_api("STREAM.INFO", stream), _api("STREAM.CREATE", stream)]
    for stream, consumer in spec.event_consumers():
        publish += [_api("STREAM.INFO", stream), _api("STREAM.CREATE", stream),
                    *_consumer_owner(stream, consumer)]
    if spec.jobs:
        publish += [
            f"{JOBS_PREFIX}.{user}.>",
            _api("STREAM.INFO", JOBS_STREAM), _api("STREAM.CREATE", JOBS_STREAM),
            _api("STREAM.UPDATE", JOBS_STREAM),
        ]
        # The consumers of its own functions, each by name (the API subject carries the
        # name, and for a create the filter): nobody else's can be created over, read,
        # fetched from or acknowledged.
        for consumer, subject in spec.job_consumers():
            publish += [
                _api("CONSUMER.CREATE", JOBS_STREAM, consumer, subject),
                _api("CONSUMER.INFO", JOBS_STREAM, consumer),
                _api("CONSUMER.MSG.NEXT", JOBS_STREAM, consumer),
                f"$JS.ACK.{JOBS_STREAM}.{consumer}.>",
            ]
    if spec.answers_commands:
        subscribe.append(f"{COMMAND_PREFIX}.{user}.>")
    publish += spec.calls()
    for bucket in spec.buckets:
        publish += _bucket_reader(bucket)
    for bucket in spec.bucket_writes:
        publish += [f"$KV.{bucket}.>", _api("STREAM.UPDATE", f"KV_{bucket}")]
    return {
        "publish": {"allow": list(dict.fromkeys(publish))},
        "subscribe": {"allow": list(dict.fromkeys(subscribe))},
        # Answers to commands go to the caller's inbox, only as a reply to its request.
        "allow_responses": spec.answers_commands,
    }


def password_env(user: str) -> str:
    """The environment variable holding `user`'s password where nats-server runs
    (deploy/k8s/nats) — each process reads its own as `IGNY8_NATS_PASSWORD`."""
    return f"IGNY8_NATS_PASSWORD_{user.upper()}"


def derive_password(master: str, user: str) -> str:
    """A user's password from one master secret (`igny8 up` and the tests keep one)."""
    return hmac.new(master.encode(), f"nats-user:{user}".encode(), hashlib.sha256).hexdigest()


def server_users(passwords: Mapping[str, str | None], *,
                 superusers: Iterable[str] = ()) -> list[dict[str, object]]:
    """The `authorization.users` list: each user with its permissions; a `None` password
    becomes an environment reference (`$IGNY8_NATS_PASSWORD_<USER>`). `superusers` (the
    test harness only) have no restrictions."""
    free = set(superusers)
    users: list[dict[str, object]] = []
    for user, password in passwords.items():
        entry: dict[str, object] = {
            "user": user,
            "password": password if password is not None else f"${password_env(user)}"}
        if user not in free:
            entry["permissions"] = permissions(access(user))
        users.append(entry)
    return users


def server_config(passwords: Mapping[str, str | None], *,
                  superusers: Iterable[str] = ()) -> str:
    """nats-server configuration text with those users; nobody else may connect."""
    lines = ["# Generated by libs/common/natsauth.py: one user per process, no anonymous access.",
             "authorization {", "  users = ["]
    for entry in server_users(passwords, superusers=superusers):
        password = str(entry["password"])
        if password.startswith("$"):  # an environment reference: unquoted
            body = {k: v for k, v in entry.items() if k != "password"}
            text = json.dumps(body)[1:-1]
            lines.append(f"    {{{text}, \"password\": {password}}}")
        else:
            lines.append(f"    {json.dumps(entry)}")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
