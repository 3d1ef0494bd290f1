"""The request metrics collector speaks Prometheus' exposition format as the labelled
Counter and Histogram it replaced did."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.metrics import HttpRequestMetrics


def _samples(metrics: HttpRequestMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counts_per_status_and_cumulative_buckets_over_statuses() -> None:
    metrics = HttpRequestMetrics()
    metrics.record("svc", "GET", "/a/", 200, 0.0004)
    metrics.record("svc", "GET", "/a/", 200, 0.001)  # on a bound: counted in it (le)
    metrics.record("svc", "GET", "/a/", 404, 0.03)
    metrics.record("svc", "GET", "/a/", 500, 12.0)  # above every bound
    samples = _samples(metrics)

    def requests(status: str) -> float:
        return samples[("igny8_http_requests_total", (("method", "GET"), ("route", "/a/"),
                                                      ("service", "svc"), ("status", status)))]

    assert (requests("200"), requests("404"), requests("500")) == (2, 1, 1)
    labels = (("method", "GET"), ("route", "/a/"), ("service", "svc"))

    def bucket(le: str) -> float:
        return samples[("igny8_http_request_duration_seconds_bucket",
                        tuple(sorted((*labels, ("le", le)))))]

    assert bucket("0.001") == 2
    assert bucket("0.025") == 2
    assert bucket("0.05") == 3
    assert bucket("10.0") == 3
    assert bucket("+Inf") == 4
    assert samples[("igny8_http_request_duration_seconds_count", labels)] == 4
    assert abs(samples[("igny8_http_request_duration_seconds_sum", labels)] - 12.0314) < 1e-9
