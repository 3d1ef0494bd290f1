"""Settings shared by every process; each service subclasses `ServiceSettings`.

Settings are built in the app factory (never at import) so tests and `igny8 up` can hand
each process its own environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "igny8-development-only-secret-change-me"


class PlatformSettings(BaseSettings):
    """What every process needs: where NATS is, who signs tokens, how to log and trace."""

    model_config = SettingsConfigDict(env_prefix="IGNY8_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    nats_url: str = "nats://127.0.0.1:4222"
    # Each process is its own NATS user (libs/common/natsauth.py): the user defaults to
    # the service's name (`gateway` for the gateway); without a password, the URL's
    # `user:password@` if any.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    # The CA that signed the NATS server's certificate (PEM file). With it, or with a
    # `tls://` URL, the connection is TLS and the server's certificate is verified.
    nats_tls_ca: str | None = None
    jwt_issuer: str = "igny8-auth"
    jwt_audience: str = "igny8-api"
    jwt_leeway_seconds: int = 30
    # Where verifiers fetch the public keys (auth's JWKS endpoint).
    jwks_url: str = "http://127.0.0.1:8101/api/v1/auth/jwks/"
    secret_key: str = DEVELOPMENT_SECRET
    log_level: str = "INFO"
    otlp_endpoint: str | None = None
    # Public base URL of the gateway, used for absolute links (pagination, file URLs).
    public_url: str = "http://localhost:8000"
    # Lets calls made for tenants (WordPress, OpenAI-compatible base URLs, webhooks) reach
    # loopback and private addresses (libs/common/outbound.py): `igny8 up` and the tests
    # need it, production refuses it.
    outbound_allow_private: bool = False

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> PlatformSettings:
        if self.environment == "production" and self.secret_key == DEVELOPMENT_SECRET:
            raise ValueError("IGNY8_SECRET_KEY must be set to a real secret in production")
        if self.environment == "production" and self.outbound_allow_private:
            raise ValueError("IGNY8_OUTBOUND_ALLOW_PRIVATE is for development, not production")
        return self


# How long an event stream keeps an event (libs.common.nats): a consumer recreated from the
# start of its stream sees that much again.
EVENT_MAX_AGE_DAYS = 7


class ServiceSettings(PlatformSettings):
    """A service with its own database. `service_name` is fixed by each subclass."""

    service_name: str = "service"
    # The role the service runs as: cannot bypass row-level security. Unset: the service's
    # own database and role on a local server (`igny8_<service>`, `igny8_<service>_app`).
    database_url: str = ""
    # The owner role, used only to run migrations.
    migration_database_url: str | None = None
    db_pool_size: int = 10
    db_max_overflow: int = 10
    http_port: int = 8100
    # Where a worker serves /healthz and /metrics: loopback unless told (igny8 up keeps it
    # there; Kubernetes and compose set 0.0.0.0, where Prometheus scrapes the pod's address).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # On SIGTERM a worker stops taking work and waits this long for what runs (a job) to
    # finish before cancelling it; Kubernetes' grace period must be longer.
    worker_drain_seconds: float = 10.0
    # The kernel tables kept bounded by the worker (libs/common/retention.py): published
    # outbox rows this long after they were written; processed events at least as long as
    # a stream keeps an event, or an event delivered again would be applied twice.
    outbox_retention_days: float = Field(default=7.0, gt=0)
    processed_events_retention_days: float = Field(default=14.0, ge=EVENT_MAX_AGE_DAYS)
    retention_interval_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _own_database_by_default(self) -> ServiceSettings:
        if not self.database_url:
            name = self.service_name
            self.database_url = (
                f"postgresql+psycopg://igny8_{name}_app@127.0.0.1:5432/igny8_{name}")
        return self


class JetStreamSettings(BaseSettings):
    """How the streams and KV buckets are created (`IGNY8_NATS_*`): copies per NATS
    cluster node and size caps. Read where they are provisioned, by every process alike, so
    a consumer that provisions another service's stream creates it the same way."""

    model_config = SettingsConfigDict(env_prefix="IGNY8_NATS_", extra="ignore")

    # 1 for a single server (igny8 up, tests); 3 on the 3-node cluster of deploy/k8s.
    replicas: int = Field(default=1, ge=1, le=5)
    # Per event stream and for the jobs stream; events drop their oldest messages at the
    # cap, the jobs stream refuses new ones (a job is never silently dropped).
    stream_max_bytes: int = Field(default=2 * 1024**3, ge=1024**2)
    bucket_max_bytes: int = Field(default=512 * 1024**2, ge=1024**2)
