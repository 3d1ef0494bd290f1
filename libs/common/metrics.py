"""Prometheus metrics every process exports, and the `/metrics` endpoint.

One process per pod (scaling by replicas) keeps prometheus-client out of multiprocess
mode. Names here are the contract with `deploy/grafana/`: a test checks every dashboard
query against what the code registers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response


class HttpRequestMetrics(Collector):
    """`igny8_http_requests_total` and `igny8_http_request_duration_seconds`, recorded
    once per request by every service and the gateway.

    prometheus-client's labelled children hash and validate their labels and take a lock
    per call (three locks and a walk over the buckets per request): a tenth of the
    gateway's Python time per request. Here a request is one dict lookup, one bisect and
    two increments; the families are built when Prometheus scrapes. Requests are recorded
    on the event loop's thread; a scrape from another thread reads plain lists, at worst
    one request behind.
    """

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        # (service, method, route, status) → [count per bucket..., count above, sum]
        self._series: dict[tuple[str, str, str, int], list[float]] = {}

    def record(self, service: str, method: str, route: str, status: int,
               seconds: float) -> None:
        key = (service, method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0] * (len(self.BUCKETS) + 2)
        series[bisect_left(self.BUCKETS, seconds)] += 1
        series[-1] += seconds

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (CounterMetricFamily("igny8_http_requests", "HTTP requests handled",
                                    labels=["service", "method", "route", "status"]),
                HistogramMetricFamily("igny8_http_request_duration_seconds",
                                      "HTTP request latency",
                                      labels=["service", "method", "route"]))

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        requests, durations = self._families()
        # The histogram has no status label: its series add up over statuses.
        merged: dict[tuple[str, str, str], list[float]] = {}
        for (service, method, route, status), series in list(self._series.items()):
            counts = list(series)
            requests.add_metric([service, method, route, str(status)], sum(counts[:-1]))
            total = merged.setdefault((service, method, route), [0] * len(counts))
            for i, value in enumerate(counts):
                total[i] += value
        bounds = [*(repr(b) for b in self.BUCKETS), "+Inf"]
        for labels, counts in merged.items():
            cumulative = list(accumulate(counts[:-1]))
            durations.add_metric(list(labels), list(zip(bounds, cumulative, strict=True)),
                                 sum_value=counts[-1])
        yield requests
        yield durations


HTTP_METRICS = HttpRequestMetrics()
REGISTRY.register(HTTP_METRICS)
EVENTS_PUBLISHED = Counter(
    "igny8_events_published_total", "Events published from the outbox", ["service", "subject"]
)
EVENTS_PUBLISH_FAILURES = Counter(
    "igny8_outbox_publish_failures_total", "Outbox publish attempts that failed", ["service"]
)
OUTBOX_LAG = Gauge(
    "igny8_outbox_lag_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
ROWS_PRUNED = Counter(
    "igny8_kernel_rows_pruned_total",
    "Outbox and processed-event rows deleted by the retention pass", ["service", "table"],
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
# Unlabelled, so it is 0 from the start: the first hold to expire is an increase
# (IGNY8CreditHoldsExpired).
CREDIT_HOLDS_EXPIRED = Counter(
    "igny8_credit_holds_expired_total",
    "Credit holds neither captured nor released before they expired, released by billing's "
    "sweeper (their holder died or lost billing)",
)
AI_TOKENS = Counter("igny8_ai_tokens_total", "AI tokens used", ["function", "model", "direction"])
AI_COST = Counter("igny8_ai_cost_usd_total", "AI cost in USD", ["function", "model"])
AI_JOBS_ABANDONED = Counter(
    "igny8_ai_jobs_abandoned",
    "Billed AI jobs closed as failed by the sweep: open past their deadline, no attempt alive",
    ["service", "function"],
)
CONSUMER_PENDING = Gauge(
    "igny8_consumer_pending_messages",
    "Messages waiting for a durable consumer (events or jobs), as the server last said",
    ["stream", "consumer"],
)
WORKER_HEALTHY = Gauge(
    "igny8_worker_healthy", "1 while every loop of the worker runs and NATS is connected",
    ["service"],
)
WORKER_NATS_CONNECTED = Gauge(
    "igny8_worker_nats_connected", "1 while the worker's NATS connection is up", ["service"],
)
UPSTREAM_ERRORS = Counter(
    "igny8_gateway_upstream_errors_total", "Upstream failures seen by the gateway",
    ["upstream", "kind"],
)


def metrics_response() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def metrics_endpoint(_: Request) -> Response:
    return metrics_response()
