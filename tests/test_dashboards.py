"""Every Grafana dashboard query names only metrics (and labels) the code really exports.

Metric names come from prometheus_client's REGISTRY after importing libs.common.metrics:
a counter `x` is exposed as `x_total`, a histogram as `x_bucket`/`x_sum`/`x_count`.
The dashboards are written by `deploy/grafana/build.py`; that they show data on a running
platform is `tests/e2e/test_prometheus.py`'s job.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import libs.common.metrics as metrics_module

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
EXPECTED = {"overview", "auth", "planner", "writer", "billing", "automation", "gateway"}

# PromQL words that are not metric names.
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "delta",
    "deriv", "exp", "floor", "group", "histogram_quantile", "holt_winters", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10",
    "log2", "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sqrt", "stddev", "stddev_over_time", "stdvar", "sum", "sum_over_time", "time",
    "timestamp", "topk", "vector",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}
# Labels Prometheus adds when it scrapes, and the histogram bucket bound.
SCRAPE_LABELS = {"job", "instance", "pod", "namespace", "container", "le"}
# Series Prometheus writes itself for every target.
SCRAPE_SERIES = {"up"}

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
MATCHERS = re.compile(r"\{([^}]*)\}")
RANGE = re.compile(r"\[[^\]]*\]")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)")
NUMBER = re.compile(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", re.IGNORECASE)


def exported_names() -> set[str]:
    """Every sample name the registry can expose."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
        elif family.type == "summary":
            names |= {family.name, family.name + "_sum", family.name + "_count"}
        elif family.type == "info":
            names.add(family.name + "_info")
        else:
            names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names | SCRAPE_SERIES


def exported_labels() -> dict[str, set[str]]:
    """Label names per exposed sample name, for the metrics the platform defines."""
    labels: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "summary": ("_sum", "_count")}
    for value in vars(metrics_module).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name  # noqa: SLF001 - prometheus_client keeps the base name here
            for suffix in suffixes[value._type]:  # noqa: SLF001
                labels[name + suffix] = set(value._labelnames)  # noqa: SLF001
        elif not isinstance(value, type) and callable(getattr(value, "describe", None)):
            # a custom collector: the families it describes
            for family in value.describe():
                for suffix in suffixes[family.type]:
                    labels[family.name + suffix] = set(family._labelnames)  # noqa: SLF001
    return labels


def parse_expr(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to."""
    text = re.sub(r"\$\{?\w+\}?", "", expr)
    label_names: set[str] = set()
    for _word, inside in GROUPING.findall(text):
        label_names |= {part.strip() for part in inside.split(",") if part.strip()}
    text = GROUPING.sub(" ", text)
    for inside in MATCHERS.findall(STRING.sub('""', text)):
        for matcher in inside.split(","):
            if name := re.split(r"=~|!~|!=|=", matcher)[0].strip():
                label_names.add(name)
    text = STRING.sub(" ", text)
    text = MATCHERS.sub(" ", text)
    text = RANGE.sub(" ", text)
    text = NUMBER.sub(" ", text)
    words = set(IDENT.findall(text))
    return {w for w in words if w not in FUNCTIONS and w.lower() not in KEYWORDS}, label_names


def dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", "?"), target["expr"]


def test_one_overview_and_one_dashboard_per_part() -> None:
    assert {path.stem for path in dashboards()} >= EXPECTED


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == f"igny8-{path.stem}"
    assert dashboard["title"].startswith("IGNY8 / ")
    graphs = [p for p in panels(dashboard) if p["type"] != "row"]
    assert graphs, "a dashboard without panels"
    for panel in graphs:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
    assert len({p["id"] for p in panels(dashboard)}) == len(list(panels(dashboard)))


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_every_query_names_exported_metrics_and_labels(path: Path) -> None:
    names = exported_names()
    labels = exported_labels()
    dashboard = json.loads(path.read_text())
    checked = 0
    for title, expr in exprs(dashboard):
        metrics, used_labels = parse_expr(expr)
        assert metrics, f"{path.name} / {title}: no metric in {expr!r}"
        unknown = metrics - names
        assert not unknown, f"{path.name} / {title}: {sorted(unknown)} are not exported"
        known_labels = set().union(*(labels.get(m, set()) for m in metrics)) | SCRAPE_LABELS
        stray = used_labels - known_labels
        assert not stray, f"{path.name} / {title}: labels {sorted(stray)} not on {sorted(metrics)}"
        checked += 1
    assert checked


def test_the_parser_finds_metrics_and_labels() -> None:
    metrics, used = parse_expr(
        'histogram_quantile(0.95, sum by (le, route) (rate('
        'igny8_http_request_duration_seconds_bucket{service="auth",status=~"5.."}[$__rate_interval])))'
        ' / clamp_min(sum(rate(igny8_http_requests_total[5m])), 1e-9)')
    assert metrics == {"igny8_http_request_duration_seconds_bucket", "igny8_http_requests_total"}
    assert used == {"le", "route", "service", "status"}
    assert "igny8_http_requests_total" in exported_names()
    assert "igny8_not_a_metric_total" not in exported_names()


def build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_json_is_what_build_py_writes() -> None:
    """Edit deploy/grafana/build.py, then run it: the two never drift apart."""
    rendered = build_module().render()
    assert sorted(rendered) == sorted(p.name for p in dashboards())
    stale = [name for name, text in rendered.items() if (DASHBOARDS / name).read_text() != text]
    assert stale == [], f"run python deploy/grafana/build.py ({stale} differ)"


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_request_counts_leave_out_scrapes_and_probes(path: Path) -> None:
    """Prometheus's own scrapes (and the kubelet's probes) are not traffic: every query on
    the request metrics excludes their routes, except the one panel that shows them."""
    traffic = build_module().TRAFFIC
    for panel in panels(json.loads(path.read_text())):
        for target in panel.get("targets", []):
            expr = target["expr"]
            if "igny8_http_request" not in expr or panel["title"].startswith("Scrapes"):
                continue
            selectors = re.findall(r"igny8_http_request\w*\{([^}]*)\}", expr)
            assert selectors, f"{path.name} / {panel['title']}: {expr}"
            assert all(traffic in sel for sel in selectors), (
                f"{path.name} / {panel['title']}: {expr}")


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.stem)
def test_conditional_panels_say_when_they_fill(path: Path) -> None:
    """The marker of a panel that fills only under a condition: a line of its description
    `Fills when: <condition>.` (what tests/e2e/test_prometheus.py reads)."""
    marker = build_module().FILLS_WHEN
    for panel in panels(json.loads(path.read_text())):
        for line in panel.get("description", "").splitlines():
            if line.lower().startswith("fills when"):
                assert re.fullmatch(re.escape(marker) + r"\S.*\.", line), (
                    f"{path.name} / {panel['title']}: {line!r}")
