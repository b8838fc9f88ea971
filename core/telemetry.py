"""Metrics and traces for the worker and the HTTP service.

Metrics: the Temporal SDK's own (workflow and activity task latencies, schedule-to-start,
sticky cache, polls...) and the product's business counters (core/metrics.py) are exported
together by the Temporal runtime's Prometheus endpoint, one per process, at the address the
settings give (`WORKER_METRICS_ADDRESS`, `HTTP_METRICS_ADDRESS`, host:port; off when unset).
The business counters are created on `Runtime.default()`'s meter, so each process sets its
runtime as the default before anything connects.

Traces: off by default; with the standard `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans go to that
OTLP/HTTP collector. `temporalio.contrib.opentelemetry.TracingInterceptor` on the client
carries the trace from an HTTP request through `start_workflow` into the workflow and each
activity, so a webhook's trace reaches the activity that sends its e-mail.
"""

from __future__ import annotations

import os

from temporalio.runtime import LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig

_tracing_on = False


def temporal_runtime(metrics_address: str | None) -> Runtime:
    """A runtime exporting Prometheus metrics on `metrics_address` (host:port), or none when None."""
    metrics = PrometheusConfig(bind_address=metrics_address) if metrics_address else None
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig.default, metrics=metrics))


def install_runtime(metrics_address: str | None) -> Runtime:
    """Make the process's default runtime the one with this metrics endpoint (call once, before
    the first client connects)."""
    runtime = temporal_runtime(metrics_address)
    Runtime.set_default(runtime, error_if_already_set=False)
    return runtime


def setup_tracing(service_name: str, exporter=None) -> bool:
    """Install a tracer provider for this process: with `exporter` (tests pass an in-memory one),
    or an OTLP/HTTP exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set. True when tracing is on."""
    global _tracing_on
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return _tracing_on
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(processor)
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
    _tracing_on = True
    return True


def tracing_interceptors() -> list:
    """The client interceptors that carry traces (empty while tracing is off)."""
    if not _tracing_on:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]
