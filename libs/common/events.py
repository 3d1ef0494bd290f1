"""The event document every service publishes, and the subjects and streams it lives on.

Subjects: `igny8.<service>.<entity>.<verb>` for domain events (one stream per publishing
service), `igny8.jobs.<service>.<function>` for the work queue, and
`igny8.cmd.<service>.<command>` for request-reply commands (kept outside every stream:
a stream capturing a command subject would answer the request with its own PubAck).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, Field

EVENT_PREFIX = "igny8"
JOBS_STREAM = "IGNY8_JOBS"
JOBS_PREFIX = "igny8.jobs"
COMMAND_PREFIX = "igny8.cmd"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """A versioned fact. `type` is `<service>.<entity>.<verb>`, e.g. `auth.site.created`."""

    id: UUID = Field(default_factory=uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    account_id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{EVENT_PREFIX}.{self.type}"

    @property
    def service(self) -> str:
        return self.type.split(".", 1)[0]


def stream_name(service: str) -> str:
    return f"IGNY8_{service.upper()}"


def stream_subjects(service: str) -> list[str]:
    return [f"{EVENT_PREFIX}.{service}.>"]


def job_subject(service: str, function: str) -> str:
    return f"{JOBS_PREFIX}.{service}.{function}"


def job_consumer(service: str, function: str) -> str:
    """The durable consumer of one job function on the jobs stream (the NATS permissions
    of libs/common/natsauth.py name it: only `service` may create, fetch from, ack it)."""
    return f"{service}-job-{function}"


def directory_consumer_name(service: str) -> str:
    """The durable consumer of auth's stream that keeps a service's directory current
    (libs/common/directory; named in the NATS permissions of libs/common/natsauth.py)."""
    return f"{service}-auth-read-models"


def command_subject(service: str, command: str) -> str:
    return f"{COMMAND_PREFIX}.{service}.{command}"
