"""OpenTelemetry setup and W3C trace-context propagation across HTTP and NATS.

Set up inside each process's lifespan (never before a fork). Exports over OTLP/HTTP when
`IGNY8_OTLP_ENDPOINT` is set; otherwise spans are still created, so trace ids reach the
logs and the event headers. `exporting()` tells a hot path whether any span it creates
can leave the process: the gateway and the services' HTTP middleware skip their per-request
span when none can, and only keep the trace context current (`caller_context`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_configured = False
_exporting = False


def configure_tracing(service: str, otlp_endpoint: str | None = None,
                      exporter: SpanExporter | None = None,
                      sampler: Sampler | None = None) -> TracerProvider:
    """Install the tracer provider once per process; later calls only add an exporter.
    `sampler` (default: the SDK's, parent-based always-on) applies when the provider is
    installed by this call."""
    global _configured, _exporting
    provider = trace.get_tracer_provider()
    if not _configured or not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                  sampler=sampler)
        trace.set_tracer_provider(provider)
        _configured = True
    assert isinstance(provider, TracerProvider)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
        _exporting = True
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _exporting = True
    return provider


def exporting() -> bool:
    """Whether `configure_tracing` installed any exporter in this process."""
    return _exporting


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_trace_headers() -> dict[str, str]:
    """`traceparent`/`tracestate` of the current span, to carry on an event or request."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str] | None) -> context.Context:
    return propagate.extract(dict(headers or {}))


def caller_context(headers: Mapping[str, str] | None) -> context.Context:
    """The caller's trace context, or a new sampled trace when it sent none (valid): what a
    request runs under when no span of its own is worth creating, so its logs and events
    still carry a trace id. No span is recorded."""
    caller = context_from_headers(headers)
    if trace.get_current_span(caller).get_span_context().is_valid:
        return caller
    minted = SpanContext(trace_id=random.getrandbits(128) or 1,
                         span_id=random.getrandbits(64) or 1, is_remote=False,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(minted), caller)
