"""Writes `deploy/grafana/dashboards/*.json` from one description of what each part of the
platform really emits. Edit this file, then `python deploy/grafana/build.py`;
`python deploy/grafana/build.py --check` (and `tests/test_dashboards.py`) fails when the JSON
and this file disagree.

Rules every query follows (issue 13, *Dashboards*):

- a panel exists only for what its service has: no consumer panels where a service
  consumes nothing, no job panels where it runs no jobs;
- request counts leave out Prometheus's scrapes and the probes (`TRAFFIC`);
- a count that is simply zero shows 0, not "No data" (`… or vector(0)`, and
  `… or on() vector(0)` after a `by (...)`, so the 0 appears only when no series exists);
- a panel that fills only under a condition says so in its description, on a line of its
  own: `Fills when: <condition>.` (`FILLS_WHEN`). `tests/e2e/test_prometheus.py` runs every
  query against a real Prometheus scraping `igny8 up` and requires data from every query
  of a panel without that line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"

# The marker of a panel that shows data only under a condition (see the module docstring).
FILLS_WHEN = "Fills when: "
# With no credits held in the window a capture/hold ratio has no denominator: "No data"
# is the truth there (a 0 would read as "nothing held was captured").
CREDITS_HELD = "credits were held in the last hour"

# Scrapes and probes are counted under their own route, apart from traffic.
TRAFFIC = 'route!~"/metrics|/healthz|/readyz"'
RI = "$__rate_interval"
FIVE = ',status=~"5.."'
FOUR = ',status=~"4.."'
TOO_MANY = ',status="429"'
UNAVAILABLE = ',status=~"503|504"'


@dataclass(frozen=True)
class Part:
    """A service as its dashboard sees it."""

    name: str
    title: str
    consumers: bool = False  # it runs durable event consumers
    jobs: tuple[str, ...] = ()  # the job functions its worker runs
    ai: bool = False  # its jobs are billed AI functions (tokens and cost)
    condition: str | None = None  # every panel fills only when this holds


PLANNER_JOBS = ("auto_cluster", "auto_generate_ideas")
WRITER_JOBS = ("auto_generate_content", "generate_image_prompts", "generate_images", "optimize")

PARTS = (
    Part("auth", "Auth: accounts, users, tokens, sites"),
    Part("planner", "Planner: keywords, clusters, ideas", consumers=True, jobs=PLANNER_JOBS,
         ai=True),
    Part("writer", "Writer: tasks, content, images", consumers=True, jobs=WRITER_JOBS, ai=True),
    Part("billing", "Billing: credits, ledger, invoices", consumers=True),
    Part("automation", "Automation: pipeline runs", consumers=True),
)


# ---- panels ------------------------------------------------------------------------------


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str | None]]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    fills_when: str | None = None
    stack: bool = False
    thresholds: tuple[tuple[str, float], ...] = ()
    width: int = 12
    height: int = 8


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


def stat(title: str, expr: str, unit: str, *, description: str = "",
         thresholds: tuple[tuple[str, float], ...] = (), fills_when: str | None = None) -> Panel:
    return Panel(title, [(expr, None)], unit, "stat", description, fills_when,
                 thresholds=thresholds, width=6, height=4)


def graph(title: str, *targets: tuple[str, str | None], unit: str = "short",
          description: str = "", stack: bool = False, fills_when: str | None = None) -> Panel:
    return Panel(title, list(targets), unit, "timeseries", description, fills_when, stack)


def zero(expr: str) -> str:
    """`expr`, or 0 when it has no series (a plain sum: no labels to keep)."""
    return f"{expr} or vector(0)"


def zero_by(expr: str) -> str:
    """`expr` grouped by labels, or one 0 when no group exists at all."""
    return f"{expr} or on() vector(0)"


def requests(selector: str) -> str:
    return f"igny8_http_requests_total{{{selector}}}"


def buckets(selector: str) -> str:
    return f"igny8_http_request_duration_seconds_bucket{{{selector}}}"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, 0 when nothing matched the numerator, 0 when idle."""
    return f"({zero(numerator)}) / clamp_min({zero(denominator)}, 1e-9)"


def http_row(service: str) -> Row:
    sel = f'service="{service}",{TRAFFIC}'
    all_ = f"sum(rate({requests(sel)}[{RI}]))"
    five = f"sum(rate({requests(sel + FIVE)}[{RI}]))"
    four = f"sum(rate({requests(sel + FOUR)}[{RI}]))"
    q = [(f"histogram_quantile({p}, sum by (le) (rate({buckets(sel)}[{RI}])))", f"p{label}")
         for p, label in ((0.50, "50"), (0.95, "95"), (0.99, "99"))]
    return Row("HTTP (RED, without scrapes and probes)", [
        stat("Requests/s", zero(all_), "reqps"),
        stat("5xx ratio", ratio(five, all_), "percentunit",
             thresholds=(("orange", 0.01), ("red", 0.05))),
        stat("p95 latency", q[1][0], "s",
             description="NaN while no request arrived in the window."),
        stat("4xx/s", zero(four), "reqps"),
        graph("Requests by route",
              (f"sum by (method, route) (rate({requests(sel)}[{RI}]))", "{{method}} {{route}}"),
              unit="reqps"),
        graph("Responses by status",
              (f"sum by (status) (rate({requests(sel)}[{RI}]))", "{{status}}"), unit="reqps"),
        graph("Latency p50 / p95 / p99", *q, unit="s"),
        graph("Slowest routes (p95)",
              (f"topk(10, histogram_quantile(0.95, sum by (le, route) "
               f"(rate({buckets(sel)}[{RI}]))))", "{{route}}"), unit="s"),
    ])


def events_row(part: Part) -> Row:
    s = f'service="{part.name}"'
    panels = [
        graph("Events published by subject",
              (zero_by(f"sum by (subject) (rate(igny8_events_published_total{{{s}}}[{RI}]))"),
               "{{subject}}"), unit="ops"),
        graph("Outbox lag (oldest unpublished row)",
              (f"max(igny8_outbox_lag_seconds{{{s}}})", "lag"), unit="s"),
        graph("Outbox publish failures",
              (zero(f"sum(rate(igny8_outbox_publish_failures_total{{{s}}}[{RI}]))"),
               "failures"), unit="ops"),
        graph("Kernel rows pruned per hour by table",
              (zero_by(f"sum by (table) (increase(igny8_kernel_rows_pruned_total{{{s}}}[1h]))"),
               "{{table}}"),
              description="Published outbox rows and processed-event rows the worker's "
                          "retention pass deleted (libs/common/retention.py): 0 until rows "
                          "outlive outbox_retention_days / processed_events_retention_days."),
    ]
    if part.consumers:
        panels += [
            graph("Events consumed by consumer and outcome",
                  (zero_by(f"sum by (consumer, outcome) "
                           f"(rate(igny8_events_consumed_total{{{s}}}[{RI}]))"),
                   "{{consumer}} {{outcome}}"), unit="ops"),
            graph("Consumer backlog (messages pending)",
                  (f'max by (stream, consumer) (igny8_consumer_pending_messages'
                   f'{{consumer=~"{part.name}-.*"}})', "{{stream}} {{consumer}}"),
                  description="What the server last said, per durable consumer (events and "
                              "jobs): reported after a fetch and after ~10 s idle."),
        ]
    return Row("Events and outbox", panels)


ABANDONED = ("Billed AI jobs no attempt would finish (a worker died on the last attempt, "
             "its failure could not be recorded, the job message was lost), closed as failed "
             "by the workers' sweep once past their deadline, their holds released "
             "(ADR 0043). Above 0: alert IGNY8AIJobsAbandoned (docs/runbooks.md).")


def abandoned_jobs(selector: str, by: str) -> str:
    return zero_by(f"sum by ({by}) (increase(igny8_ai_jobs_abandoned_total{selector}[1h]))")


def jobs_row(part: Part) -> Row:
    s = f'service="{part.name}"'
    count = f"igny8_job_duration_seconds_count{{{s}}}"
    abandoned = [graph("Abandoned jobs closed by the sweep (per hour)",
                       (abandoned_jobs(f"{{{s}}}", "function"), "{{function}}"),
                       description=ABANDONED)] if part.ai else []
    return Row("Jobs", [
        graph("Jobs by function and outcome",
              (f"sum by (function, outcome) (rate({count}[{RI}]))", "{{function}} {{outcome}}"),
              unit="ops"),
        graph("Job duration p95 by function",
              (f"histogram_quantile(0.95, sum by (le, function) "
               f"(rate(igny8_job_duration_seconds_bucket{{{s}}}[{RI}])))", "{{function}}"),
              unit="s", description="NaN for a function with no job in the window."),
        graph("Average job duration",
              (f"sum by (function) (rate(igny8_job_duration_seconds_sum{{{s}}}[{RI}])) / "
               f"sum by (function) (rate({count}[{RI}]))", "{{function}}"), unit="s",
              description="NaN for a function with no job in the window."),
        graph("Failed jobs",
              (zero_by(f'sum by (function) (rate(igny8_job_duration_seconds_count'
                       f'{{{s},outcome!="success"}}[{RI}]))'), "{{function}}"), unit="ops"),
        *abandoned,
    ])


def ai_row(functions: tuple[str, ...]) -> Row:
    f = f'function=~"{"|".join(functions)}"'
    return Row("AI usage (billed AI jobs)", [
        graph("AI tokens/s by function and model",
              (f"sum by (function, model, direction) "
               f"(rate(igny8_ai_tokens_total{{{f}}}[{RI}]))",
               "{{function}} {{model}} {{direction}}"), stack=True),
        graph("AI cost (USD per hour) by function and model",
              (f"sum by (function, model) (increase(igny8_ai_cost_usd_total{{{f}}}[1h]))",
               "{{function}} {{model}}"), unit="currencyUSD"),
    ])


def writer_row() -> Row:
    def per_hour(functions: str) -> str:
        return zero(f'sum(increase(igny8_job_duration_seconds_count{{service="writer",'
                    f'function=~"{functions}",outcome="success"}}[1h]))')
    return Row("Drafts and images", [
        stat("Drafts written (1h)", per_hour("auto_generate_content"), "short",
             description="auto_generate_content jobs that succeeded in the last hour."),
        stat("Image prompt jobs (1h)", per_hour("generate_image_prompts"), "short"),
        stat("Image generation jobs (1h)", per_hour("generate_images"), "short"),
        stat("Optimize jobs (1h)", per_hour("optimize"), "short"),
    ])


def process_row(jobs: str, worker: str | None = None) -> Row:
    health = [graph("Worker healthy and connected to NATS",
                    (f'min(igny8_worker_healthy{{service="{worker}"}})', "healthy"),
                    (f'min(igny8_worker_nats_connected{{service="{worker}"}})',
                     "NATS connected"),
                    description="1 while every loop of the worker runs (healthy) and while "
                                "its NATS connection is up; the lowest over its replicas.")
              ] if worker else []
    return Row("Process", [
        graph("Resident memory",
              (f'process_resident_memory_bytes{{job=~"{jobs}"}}', "{{job}} {{instance}}"),
              unit="bytes"),
        graph("CPU",
              (f'rate(process_cpu_seconds_total{{job=~"{jobs}"}}[{RI}])', "{{job}} {{instance}}"),
              unit="percentunit"),
        *health,
    ])


def service_rows(part: Part) -> list[Row]:
    rows = [http_row(part.name), events_row(part)]
    if part.jobs:
        rows.append(jobs_row(part))
    if part.ai:
        rows.append(ai_row(part.jobs))
    if part.name == "writer":
        rows.append(writer_row())
    if part.name == "billing":
        rows.append(credits_row())
    rows.append(process_row(f"igny8-{part.name}-(api|worker)", worker=part.name))
    return rows


def credits_row() -> Row:
    held = "sum(increase(igny8_credits_held_total[1h]))"
    captured = "sum(increase(igny8_credits_captured_total[1h]))"
    return Row("Credits", [
        graph("Credits held by operation",
              (zero_by(f"sum by (operation) (rate(igny8_credits_held_total[{RI}]))"),
               "{{operation}}")),
        graph("Credits captured by operation",
              (zero_by(f"sum by (operation) (rate(igny8_credits_captured_total[{RI}]))"),
               "{{operation}}")),
        stat("Credits captured (24h)",
             zero("sum(increase(igny8_credits_captured_total[24h]))"), "short"),
        stat("Capture / hold ratio (1h)", f"{captured} / clamp_min({held}, 1e-9)",
             "percentunit", fills_when=CREDITS_HELD),
        graph("Holds expired per hour",
              (zero("sum(increase(igny8_credit_holds_expired_total[1h]))"), "expired"),
              description="Holds neither captured nor released before they expired, released "
                          "by the hold sweeper: their holder (a job's worker, an API request) "
                          "died or lost billing. Above 0: alert IGNY8CreditHoldsExpired "
                          "(docs/runbooks.md)."),
    ])


def gateway_rows() -> list[Row]:
    sel = f'service="gateway",{TRAFFIC}'
    all_ = f"sum(rate({requests(sel)}[{RI}]))"
    return [
        http_row("gateway"),
        Row("Upstreams and limits", [
            graph("Upstream errors by upstream and kind",
                  (zero_by(f"sum by (upstream, kind) "
                           f"(rate(igny8_gateway_upstream_errors_total[{RI}]))"),
                   "{{upstream}} {{kind}}"), unit="ops"),
            graph("Rate-limit rejections by scope",
                  (zero_by(f"sum by (scope) (rate(igny8_rate_limit_rejections_total[{RI}]))"),
                   "{{scope}}"), unit="ops"),
            graph("429 share of answers",
                  (ratio(f"sum(rate({requests(sel + TOO_MANY)}[{RI}]))", all_),
                   "429 share"), unit="percentunit"),
            graph("503/504 answers (upstream down or slow)",
                  (zero_by(f"sum by (status) (rate({requests(sel + UNAVAILABLE)}[{RI}]))"),
                   "{{status}}"), unit="reqps"),
            graph("Scrapes and probes (left out of traffic)",
                  (f'sum by (route) (rate(igny8_http_requests_total{{service="gateway",'
                   f'route=~"/metrics|/healthz|/readyz"}}[{RI}]))', "{{route}}"),
                  unit="reqps"),
        ]),
        process_row("igny8-gateway"),
    ]


def overview_rows() -> list[Row]:
    gw = f'service="gateway",{TRAFFIC}'
    gw_all = f"sum(rate({requests(gw)}[{RI}]))"
    by_service = f"sum by (service) (rate({requests(TRAFFIC)}[{RI}]))"
    five_by_service = f"sum by (service) (rate({requests(TRAFFIC + FIVE)}[{RI}]))"
    return [
        Row("Platform", [
            stat("Requests/s (gateway)", zero(gw_all), "reqps"),
            stat("5xx ratio (gateway)",
                 ratio(f"sum(rate({requests(gw + FIVE)}[{RI}]))", gw_all),
                 "percentunit", thresholds=(("orange", 0.01), ("red", 0.05))),
            stat("p95 latency (gateway)",
                 f"histogram_quantile(0.95, sum by (le) (rate({buckets(gw)}[{RI}])))", "s",
                 description="NaN while no request arrived in the window."),
            stat("Max outbox lag", "max(igny8_outbox_lag_seconds)", "s",
                 thresholds=(("orange", 5.0), ("red", 60.0))),
            graph("Requests/s by service", (by_service, "{{service}}"), unit="reqps"),
            graph("5xx ratio by service",
                  (f"({five_by_service} or 0 * {by_service}) / clamp_min({by_service}, 1e-9)",
                   "{{service}}"), unit="percentunit"),
            graph("p95 latency by service",
                  (f"histogram_quantile(0.95, sum by (le, service) "
                   f"(rate({buckets(TRAFFIC)}[{RI}])))", "{{service}}"), unit="s"),
            graph("Outbox lag by service",
                  ("max by (service) (igny8_outbox_lag_seconds)", "{{service}}"), unit="s"),
            graph("Processes up",
                  ('sum by (job) (up{job=~"igny8-.*"})', "{{job}}"),
                  description="Scrape targets answering, per process kind."),
            graph("Workers healthy",
                  ("min by (service) (igny8_worker_healthy)", "{{service}}"),
                  description="1 while every loop of the worker runs and NATS is connected."),
            graph("Workers connected to NATS",
                  ("min by (service) (igny8_worker_nats_connected)", "{{service}}"),
                  description="1 while the worker's NATS connection is up (0 everywhere: "
                              "alert IGNY8NATSDown)."),
        ]),
        Row("Events and jobs", [
            graph("Events published by service",
                  (zero_by(f"sum by (service) (rate(igny8_events_published_total[{RI}]))"),
                   "{{service}}"), unit="ops"),
            graph("Events consumed by service and outcome",
                  (zero_by(f"sum by (service, outcome) "
                           f"(rate(igny8_events_consumed_total[{RI}]))"),
                   "{{service}} {{outcome}}"), unit="ops"),
            graph("Jobs by service and outcome",
                  (zero_by(f"sum by (service, outcome) "
                           f"(rate(igny8_job_duration_seconds_count[{RI}]))"),
                   "{{service}} {{outcome}}"), unit="ops"),
            graph("Consumer backlog (messages pending)",
                  ("max by (stream, consumer) (igny8_consumer_pending_messages)",
                   "{{stream}} {{consumer}}")),
            graph("Gateway upstream errors",
                  (zero_by(f"sum by (upstream) (rate(igny8_gateway_upstream_errors_total"
                           f"[{RI}]))"), "{{upstream}}"), unit="ops"),
            graph("Rate-limit rejections by scope",
                  (zero_by(f"sum by (scope) (rate(igny8_rate_limit_rejections_total[{RI}]))"),
                   "{{scope}}"), unit="ops"),
            graph("Abandoned AI jobs closed by the sweep (per hour)",
                  (abandoned_jobs("", "service, function"), "{{service}} {{function}}"),
                  description=ABANDONED),
        ]),
        Row("Credits and AI", [
            graph("Credits captured by operation",
                  (zero_by(f"sum by (operation) (rate(igny8_credits_captured_total[{RI}]))"),
                   "{{operation}}")),
            graph("AI cost (USD per hour) by function and model",
                  ("sum by (function, model) (increase(igny8_ai_cost_usd_total[1h]))",
                   "{{function}} {{model}}"), unit="currencyUSD"),
            graph("AI tokens/s by function and model",
                  (f"sum by (function, model) (rate(igny8_ai_tokens_total[{RI}]))",
                   "{{function}} {{model}}"), stack=True),
        ]),
    ]


# ---- JSON --------------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int,
                condition: str | None) -> dict[str, Any]:
    description = panel.description
    fills_when = panel.fills_when or condition
    if fills_when:
        description = (description + "\n" if description else "") + f"{FILLS_WHEN}{fills_when}."
    targets = []
    for i, (expr, legend) in enumerate(panel.targets):
        target: dict[str, Any] = {"refId": chr(ord("A") + i), "datasource": DATASOURCE,
                                  "expr": expr}
        if legend:
            target["legendFormat"] = legend
        targets.append(target)
    out: dict[str, Any] = {"id": panel_id, "type": panel.kind, "title": panel.title}
    if description:
        out["description"] = description
    out["datasource"] = DATASOURCE
    if panel.kind == "stat":
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        steps += [{"color": color, "value": value} for color, value in panel.thresholds]
        out["fieldConfig"] = {"defaults": {"unit": panel.unit, "thresholds": {
            "mode": "absolute", "steps": steps}}, "overrides": []}
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]},
                          "colorMode": "value", "graphMode": "area"}
    else:
        out["fieldConfig"] = {"defaults": {"unit": panel.unit, "custom": {
            "stacking": {"mode": "normal" if panel.stack else "none"}}}, "overrides": []}
        out["options"] = {"legend": {"displayMode": "table", "placement": "bottom",
                                     "calcs": ["mean", "max"]},
                          "tooltip": {"mode": "multi"}}
    out["targets"] = targets
    out["gridPos"] = {"x": x, "y": y, "w": panel.width, "h": panel.height}
    return out


def dashboard(stem: str, title: str, rows: list[Row], *,
              condition: str | None = None) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row in rows:
        panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": False,
                       "panels": [], "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, next_id, x, y, condition))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    description = f"Every panel fills only when {condition}." if condition else ""
    out: dict[str, Any] = {
        "uid": f"igny8-{stem}",
        "title": f"IGNY8 / {title}",
        "tags": ["igny8", stem],
        "timezone": "browser",
        "schemaVersion": 39,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Data source",
                                 "current": {}}]},
        "annotations": {"list": []},
        "links": [{"title": "IGNY8", "type": "dashboards", "tags": ["igny8"],
                   "asDropdown": True}],
        "panels": panels,
    }
    if description:
        out["description"] = description
    return out


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    boards = {
        "overview": dashboard("overview", "Overview", overview_rows()),
        "gateway": dashboard("gateway", "Gateway: routing, limits, upstreams", gateway_rows()),
    }
    for part in PARTS:
        boards[part.name] = dashboard(part.name, part.title, service_rows(part),
                                      condition=part.condition)
    return {f"{stem}.json": json.dumps(board, indent=2) + "\n" for stem, board in boards.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail when the JSON files differ from what this file writes")
    args = parser.parse_args()
    stale = []
    for name, text in render().items():
        path = DASHBOARDS / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python deploy/grafana/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
