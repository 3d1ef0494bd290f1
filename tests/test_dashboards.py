"""Every Grafana dashboard query names only metrics (and labels) the code really exports;
so does every alert and recording rule. And the other way round: every metric the code
defines is on a dashboard and read by an alert rule, or listed (OFF_DASHBOARDS, NO_ALERT)
with the reason it is not; every alert has its runbook section and a promtool case where
it fires.

Metric names come from prometheus_client's REGISTRY after importing libs.common.metrics:
a counter `x` is exposed as `x_total`, a histogram as `x_bucket`/`x_sum`/`x_count`.
The dashboards are written by `deploy/grafana/build.py`; that they show data on a running
platform is `tests/e2e/test_prometheus.py`'s job.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
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
            for suffix in suffixes[str(value._type)]:  # noqa: SLF001
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
        assert_names_exported(f"{path.name} / {title}", expr, names, labels)
        checked += 1
    assert checked


def assert_names_exported(where: str, expr: str, names: set[str],
                          labels: dict[str, set[str]]) -> None:
    """`expr` reads metrics among `names`, and only labels those metrics have."""
    metrics, used_labels = parse_expr(expr)
    assert metrics, f"{where}: no metric in {expr!r}"
    unknown = metrics - names
    assert not unknown, f"{where}: {sorted(unknown)} are not exported"
    known_labels = set().union(*(labels.get(m, set()) for m in metrics)) | SCRAPE_LABELS
    stray = used_labels - known_labels
    assert not stray, f"{where}: labels {sorted(stray)} not on {sorted(metrics)}"


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


# ---- every metric the code defines: on a dashboard, alerted on or said why not ----------

SOURCES = ("libs", "services", "gateway", "igny8")
PROMETHEUS = GRAFANA.parent / "prometheus"
RUNBOOKS = GRAFANA.parents[1] / "docs" / "runbooks.md"
KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram",
         "Summary": "summary", "Info": "info", "Enum": "stateset"}
FAMILIES = {"CounterMetricFamily": "counter", "GaugeMetricFamily": "gauge",
            "HistogramMetricFamily": "histogram", "SummaryMetricFamily": "summary"}
SAMPLES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
           "summary": ("", "_sum", "_count"), "info": ("_info",), "stateset": ("",)}

# Metrics the code defines that no dashboard shows, each with why. Empty: every one is
# somewhere an operator looks. A metric added to the code goes on a dashboard
# (deploy/grafana/build.py) or here, with its reason.
OFF_DASHBOARDS: dict[str, str] = {}

# Metrics no alert rule reads, each with why. Everything else is read by a rule of
# deploy/prometheus/rules/ (which names its runbook section in docs/runbooks.md).
NO_ALERT = {
    "igny8_kernel_rows_pruned": "housekeeping: rows deleted by the retention pass; a pass "
                                "that fails restarts its loop (IGNY8WorkerUnhealthy)",
    "igny8_rate_limit_rejections": "429s are the limiter working; a surge of them shows on "
                                   "the gateway dashboard, and 5xx burn the error budget",
    "igny8_credits_held": "business volume, not a fault: holds are released or captured; "
                          "a hold left behind expires (billing's sweeper)",
    "igny8_credits_captured": "business volume (charges), not a fault",
    "igny8_ai_tokens": "usage: what a job spent is priced in credits, not a fault",
    "igny8_ai_cost_usd": "the provider's bill per function and model: a cost review on the "
                         "dashboards, not a page; low balances alert (IGNY8BalanceLowSurge)",
}


@dataclass(frozen=True)
class Defined:
    name: str  # the family's name, as prometheus_client exposes it (no `_total`)
    kind: str
    module: str

    @property
    def samples(self) -> set[str]:
        return {self.name + suffix for suffix in SAMPLES[self.kind]}


def _prometheus_names(tree: ast.Module) -> set[str]:
    """What a module imports from prometheus_client (`Counter`, `HistogramMetricFamily`…)."""
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "prometheus_client") for alias in node.names}


def defined_metrics() -> dict[str, Defined]:
    """Every metric family the code constructs, read from its source: prometheus_client's
    metric classes and the `*MetricFamily` of custom collectors, called with a literal
    name (tests left out). `collections.Counter` and the like are not prometheus_client's."""
    found: dict[str, Defined] = {}
    root = GRAFANA.parents[1]
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            if "tests" in path.relative_to(root).parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            imported = _prometheus_names(tree)
            if not imported:
                continue
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in imported and node.args
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)):
                    continue
                kind = KINDS.get(node.func.id) or FAMILIES.get(node.func.id)
                if kind is None:
                    continue
                name = node.args[0].value
                if kind == "counter":
                    name = name.removesuffix("_total")
                found[name] = Defined(name, kind, module)
    return found


def dashboard_metrics() -> set[str]:
    return {metric for path in dashboards() for _title, expr in exprs(json.loads(path.read_text()))
            for metric in parse_expr(expr)[0]}


def rules() -> list[dict[str, Any]]:
    return [rule for path in sorted((PROMETHEUS / "rules").glob("*.yml"))
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_the_scan_finds_every_metric_the_registry_has() -> None:
    """The source scan and prometheus_client agree: each module that defines metrics,
    imported, registers exactly the families the scan read from it (and the scan is not
    fooled by `collections.Counter`)."""
    defined = defined_metrics()
    assert "igny8_ai_jobs_abandoned" in defined
    assert "igny8_http_requests" in defined  # a custom collector's family
    for module in {d.module for d in defined.values()}:
        importlib.import_module(module)
    registered = {family.name for family in REGISTRY.collect()
                  if family.name.startswith("igny8_")}
    assert registered == set(defined)
    for d in defined.values():
        assert d.samples <= exported_names(), d


def test_every_metric_is_on_a_dashboard() -> None:
    """What the code measures is where an operator looks: each metric (by any of its
    samples) is read by a dashboard query, or is in OFF_DASHBOARDS with its reason."""
    shown = dashboard_metrics()
    defined = defined_metrics()
    missing = sorted(name for name, d in defined.items()
                     if not d.samples & shown and name not in OFF_DASHBOARDS)
    assert missing == [], (f"on no dashboard (deploy/grafana/build.py) nor in "
                           f"OFF_DASHBOARDS: {missing}")
    stale = sorted(name for name in OFF_DASHBOARDS
                   if name not in defined or defined[name].samples & shown)
    assert stale == [], f"OFF_DASHBOARDS names metrics not defined, or shown after all: {stale}"


def test_every_metric_is_alerted_on_or_says_why_not() -> None:
    alerted = {metric for rule in rules() for metric in parse_expr(rule["expr"])[0]}
    defined = defined_metrics()
    missing = sorted(name for name, d in defined.items()
                     if not d.samples & alerted and name not in NO_ALERT)
    assert missing == [], f"read by no alert rule and not in NO_ALERT: {missing}"
    stale = sorted(name for name in NO_ALERT
                   if name not in defined or defined[name].samples & alerted)
    assert stale == [], f"NO_ALERT names metrics not defined, or alerted on after all: {stale}"
    assert "igny8_ai_jobs_abandoned_total" in alerted


def test_every_rule_names_exported_metrics_and_labels() -> None:
    """As the dashboards' queries: an alert on a misspelt metric never fires, and
    promtool cannot tell (it knows no metric names)."""
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    names = exported_names() | recorded
    labels = exported_labels()
    for rule in rules():
        assert_names_exported(rule.get("alert") or rule["record"], rule["expr"], names, labels)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_its_runbook_section_and_a_case_where_it_fires() -> None:
    """Each alert's `runbook_url` names a section of docs/runbooks.md, and the promtool
    tests (deploy/prometheus/tests/, run by `make deploy-check` and below) have a case
    where it fires."""
    sections = {_slug(line[3:]) for line in RUNBOOKS.read_text().splitlines()
                if line.startswith("## ")}
    fired = {case["alertname"] for path in sorted((PROMETHEUS / "tests").glob("*.yml"))
             for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    alerts = [rule for rule in rules() if "alert" in rule]
    assert alerts
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbooks.md", f"{rule['alert']}: {url}"
        assert anchor in sections, f"{rule['alert']}: no section #{anchor} in docs/runbooks.md"
        assert rule["alert"] in fired, f"{rule['alert']}: no promtool case where it fires"


def test_promtool_loads_the_rules_and_passes_their_tests() -> None:
    """Debian's promtool (tests/ensure-system-packages), as `make deploy-check` runs it:
    every rule's expression parses and loads, and every case of the rules' tests passes."""
    spec = importlib.util.spec_from_file_location("deploy_check_promtool",
                                                  GRAFANA.parent / "check.py")
    assert spec is not None
    assert spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert check.promtool() == []
