"""Gateway settings, from `IGNY8_*` environment variables (built in the app factory)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from libs.common.settings import PlatformSettings

MiB = 1024 * 1024


class GatewaySettings(PlatformSettings):
    model_config = SettingsConfigDict(env_prefix="IGNY8_", extra="ignore", populate_by_name=True)

    http_port: int = 8000
    # The HTTP server (gateway/server.py): idle keep-alive connections close after this;
    # on SIGTERM, requests in flight get this long to finish.
    keep_alive_seconds: float = 5.0
    graceful_shutdown_seconds: float = 20.0
    # What one client can make the server hold (issue 13, H1/H2; gateway/server.py): a
    # request head must arrive within, and a body within, these many seconds (else 408);
    # a client that reads none of an answer for `write_timeout_seconds` is disconnected.
    request_head_timeout_seconds: float = 10.0
    request_body_timeout_seconds: float = 60.0
    write_timeout_seconds: float = 30.0
    # Parsed requests that may wait their turn on one connection (pipelining).
    max_pipelined_requests: int = 16
    # Connections per client address (socket peer). Applies only without trusted proxies
    # (IGNY8_TRUSTED_PROXY_HOPS=0): behind an ingress every peer is the ingress, which
    # limits connections per client itself. 0: no cap.
    max_connections_per_address: int = 32
    # Request bodies being received at once, reserved by declared length: per client
    # address (default: one body of the largest size) and for the process (at least one
    # body of the largest size). What stalled uploads can make a replica hold, whoever
    # sends them; a body that does not fit waits, unread. Behind an ingress that buffers
    # request bodies (nginx does by default), bodies arrive at once and rarely wait.
    body_budget_per_address_bytes: int | None = None
    body_budget_bytes: int = 16 * MiB
    # /metrics is served on this port (all of the gateway's routes answer there), and on
    # the public port only to loopback clients that came through no proxy. Unset: public
    # port only, loopback only.
    metrics_port: int | None = None

    # Upstream base URLs (scheme://host:port). Unset: routes to that service answer 503.
    auth_url: str | None = None
    planner_url: str | None = None
    writer_url: str | None = None
    billing_url: str | None = None
    automation_url: str | None = None

    # Limits.
    max_body_bytes: int = 10 * MiB
    upstream_timeout_seconds: float = 30.0
    upstream_connect_timeout_seconds: float = 3.0
    upstream_pool_size: int = 512
    # How long a Basic/ApiKey credential exchanged at auth is reused (never past its expiry).
    exchange_cache_seconds: float = 60.0
    # Rate limits: off with IGNY8_DEBUG_THROTTLE=True or DEBUG=True (development only).
    debug_throttle: bool = False
    debug: bool = Field(default=False, validation_alias=AliasChoices("debug", "DEBUG",
                                                                     "IGNY8_DEBUG"))
    # Per-scope limits (requests per minute) replacing the reference's, as JSON in the
    # environment: IGNY8_RATE_LIMIT_OVERRIDES='{"default": 1000}'. Unknown scopes refuse to start.
    rate_limit_overrides: dict[str, int] = Field(default_factory=dict)
    # A NATS round trip slower than this admits the request (fail open, counted).
    rate_limit_store_timeout_seconds: float = 0.5
    # Proxies in front of the gateway whose X-Forwarded-For entries are trusted (ingress: 1).
    trusted_proxy_hops: int = 0

    # CORS: exact origins, or "*" for any. Comma separated in the environment.
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = True
    cors_max_age_seconds: int = 600

    # OpenAPI merge: how long each service's document is reused.
    openapi_cache_seconds: float = 60.0
    # System status: how long to wait for each upstream's /readyz.
    status_timeout_seconds: float = 2.0
    # Share of new traces the gateway samples (parent-based: a client's sampled trace stays
    # sampled). 0 never creates gateway spans; with no exporter configured none are created
    # either. The trace context (traceparent) is forwarded upstream in every case.
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    # Server-Timing on every answer (gateway and upstream durations). Off by default (it
    # tells outsiders how long each step takes); on with DEBUG. An account's own timings
    # are always at /api/v1/system/request-metrics/<request id>/.
    server_timing: bool = False
    # Request timing breakdowns kept in memory for /api/v1/system/request-metrics/.
    request_metrics_size: int = 10_000

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import orjson

                return orjson.loads(value)
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    def rate_limits(self, defaults: dict[str, int]) -> dict[str, int]:
        unknown = set(self.rate_limit_overrides) - set(defaults)
        if unknown:
            raise ValueError(f"IGNY8_RATE_LIMIT_OVERRIDES names unknown scopes: {sorted(unknown)}")
        if any(limit < 1 for limit in self.rate_limit_overrides.values()):
            raise ValueError("IGNY8_RATE_LIMIT_OVERRIDES: every limit must be at least 1")
        return {**defaults, **self.rate_limit_overrides}

    @property
    def throttle_disabled(self) -> bool:
        return self.debug_throttle or self.debug

    def upstream_urls(self) -> dict[str, str | None]:
        return {
            "auth": self.auth_url,
            "planner": self.planner_url,
            "writer": self.writer_url,
            "billing": self.billing_url,
            "automation": self.automation_url,
        }
