"""Prometheus metrics every process exports, and the `/metrics` endpoint.

One process per pod (scaling by replicas) keeps prometheus-client out of multiprocess
mode. Names here are the contract with `deploy/grafana/`: a test checks every dashboard
query against what the code registers.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "igny8_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "igny8_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "igny8_events_published_total", "Events published from the outbox", ["service", "subject"]
)
EVENTS_PUBLISH_FAILURES = Counter(
    "igny8_outbox_publish_failures_total", "Outbox publish attempts that failed", ["service"]
)
OUTBOX_LAG = Gauge(
    "igny8_outbox_lag_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
EVENTS_CONSUMED = Counter(
    "igny8_events_consumed_total", "Events handled by consumers", ["service", "consumer", "outcome"]
)
JOB_DURATION = Histogram(
    "igny8_job_duration_seconds",
    "Duration of background jobs",
    ["service", "function", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RATE_LIMITED = Counter(
    "igny8_rate_limit_rejections_total", "Requests rejected by the rate limiter", ["scope"]
)
CREDITS_HELD = Counter("igny8_credits_held_total", "Credits placed on hold", ["operation"])
CREDITS_CAPTURED = Counter("igny8_credits_captured_total", "Credits captured", ["operation"])
AI_TOKENS = Counter("igny8_ai_tokens_total", "AI tokens used", ["function", "model", "direction"])
AI_COST = Counter("igny8_ai_cost_usd_total", "AI cost in USD", ["function", "model"])
UPSTREAM_ERRORS = Counter(
    "igny8_gateway_upstream_errors_total", "Upstream failures seen by the gateway",
    ["upstream", "kind"],
)


def metrics_response() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def metrics_endpoint(_: Request) -> Response:
    return metrics_response()
