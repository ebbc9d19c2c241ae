"""Request tracing: the one module that knows aws-xray-sdk and OpenTelemetry.

FINFAAS_TRACING picks the backend per target: `xray` (aws-xray-sdk, segments over UDP to the X-Ray
daemon; the SDK reaches end of support on 2027-02-25), `otel` (OpenTelemetry: X-Ray-format trace
ids, the X-Amzn-Trace-Id header, OTLP/HTTP export to a collector such as ADOT, which forwards to
X-Ray) or `off`. Either way, and without any, a trace id is carried: taken from X-Amzn-Trace-Id or
made up, logged with every line and passed on over HTTP and SQS, so one request's traces and logs
join across functions.
"""

from __future__ import annotations

import contextvars
import importlib.util
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from finfaas.platform import config
from finfaas.platform.logging import get_logger

TRACE_HEADER = "X-Amzn-Trace-Id"
SQS_TRACE_ATTRIBUTE = "AWSTraceHeader"
PATCHED_LIBRARIES_DEFAULT = ("botocore", "requests")
trace_header_chars_max = 256
# The first traced request waits this long for the SDK's background import, then runs untraced.
sdk_ready_wait_seconds_max = 3.0
# Requests without a sampled caller that OpenTelemetry keeps (X-Ray's default rule keeps 5 %).
otel_sample_ratio_default = 0.05

_TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
_PARENT_ID = re.compile(r"^[0-9a-f]{16}$")

_log = get_logger("tracing")


@dataclass(frozen=True)
class TraceContext:
    """Where a request sits in a trace: root id, caller's segment id, sampling decision."""

    trace_id: str
    parent_id: str | None = None
    sampled: bool | None = None

    def header(self) -> str:
        parts = [f"Root={self.trace_id}"]
        if self.parent_id:
            parts.append(f"Parent={self.parent_id}")
        if self.sampled is not None:
            parts.append(f"Sampled={int(self.sampled)}")
        return ";".join(parts)


def new_trace_id(now_seconds: float | None = None) -> str:
    """An X-Ray trace id: version, epoch seconds in hex, 96 random bits."""
    epoch = int(time.time() if now_seconds is None else now_seconds)
    return f"1-{epoch:08x}-{secrets.token_hex(12)}"


def parse_trace_header(raw: str | None) -> TraceContext:
    """The trace an incoming header names; a fresh root when it is missing or malformed."""
    fields: dict[str, str] = {}
    if raw and len(raw) <= trace_header_chars_max:
        for part in raw.split(";"):
            key, _, value = part.strip().partition("=")
            fields[key.strip()] = value.strip()
    root = fields.get("Root", "")
    if not _TRACE_ID.match(root):
        return TraceContext(new_trace_id())
    parent = fields.get("Parent")
    sampled = {"1": True, "0": False}.get(fields.get("Sampled", ""))
    return TraceContext(root, parent if parent and _PARENT_ID.match(parent) else None, sampled)


class Invocation:
    """The trace of one request; the HTTP layer reports the outcome into it."""

    def __init__(self, context: TraceContext, segment: Any = None) -> None:
        self.context = context
        self._segment = segment
        self.status: int | None = None

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    def set_status(self, status: int) -> None:
        self.status = status

    def set_user(self, sub: str) -> None:
        if self._segment is None:
            return
        if hasattr(self._segment, "set_user"):
            self._segment.set_user(sub)
        else:  # an OpenTelemetry span
            self._segment.set_attribute("enduser.id", sub)


_LOADERS: dict[str, Callable[[str, config.TracingSettings, Sequence[str]], _Sdk | _OtelSdk]] = {}
_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("finfaas_trace", default=None)


class _Sdk:
    """The loaded X-Ray SDK: the recorder and the header class."""

    def __init__(self, recorder: Any, header_class: Any) -> None:
        self.recorder = recorder
        self.header_class = header_class

    def segment(self, name: str, context: TraceContext, method: str, url: str) -> Any:
        return _xray_segment(self, name, context, method, url)

    def header(self, invocation: Invocation) -> str | None:
        entity = self.recorder.get_trace_entity() if invocation._segment else None
        if entity is None:
            return invocation.context.header()
        if not getattr(entity, "sampled", False):
            return TraceContext(invocation.trace_id, invocation.context.parent_id, False).header()
        header: str = self.header_class(root=entity.trace_id, parent=entity.id, sampled=1).to_header_str()
        return header


class _OtelSdk:
    """The loaded OpenTelemetry SDK: a tracer whose spans carry X-Ray ids, and the X-Ray propagator."""

    def __init__(self, tracer: Any, propagator: Any, trace_api: Any) -> None:
        self.tracer = tracer
        self.propagator = propagator
        self.trace_api = trace_api

    @contextmanager
    def segment(self, name: str, context: TraceContext, method: str, url: str) -> Iterator[Invocation]:
        # The caller's span (Root and Parent) becomes this span's parent; without a Parent it starts
        # a root span under the id the request already logs.
        parent = self.propagator.extract({TRACE_HEADER: context.header()}) if context.parent_id else None
        with self.tracer.start_as_current_span(
            name, context=parent, kind=self.trace_api.SpanKind.SERVER, record_exception=False,
            set_status_on_exception=False, attributes={"http.request.method": method, "url.path": url},
        ) as span:
            trace_id = _xray_trace_id(span.get_span_context().trace_id)
            invocation = Invocation(TraceContext(trace_id, context.parent_id, context.sampled), span)
            try:
                yield invocation
            except BaseException as error:
                span.record_exception(error)
                invocation.set_status(invocation.status or 500)
                raise
            finally:
                if invocation.status is not None:
                    span.set_attribute("http.response.status_code", invocation.status)
                    if invocation.status >= 500:
                        span.set_status(self.trace_api.StatusCode.ERROR)

    def header(self, invocation: Invocation) -> str | None:
        span = invocation._segment
        if span is None:
            return invocation.context.header()
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=self.trace_api.set_span_in_context(span))
        return carrier.get(TRACE_HEADER) or invocation.context.header()


def _xray_trace_id(otel_trace_id: int) -> str:
    """1-<8 hex epoch>-<24 hex>: AwsXRayIdGenerator puts the epoch seconds in the first 32 bits."""
    digits = f"{otel_trace_id:032x}"
    return f"1-{digits[:8]}-{digits[8:]}"


class Tracer:
    """Loads the X-Ray SDK off the request path when enabled and opens a segment per invocation."""

    def __init__(
        self,
        service_name: str,
        settings: config.TracingSettings,
        patched: Sequence[str] = PATCHED_LIBRARIES_DEFAULT,
        loader: Callable[[str, config.TracingSettings, Sequence[str]], _Sdk | _OtelSdk] | None = None,
        ready_wait_seconds: float = sdk_ready_wait_seconds_max,
    ) -> None:
        self.service_name = service_name
        self.settings = settings
        self.patched = tuple(patched)
        self.ready_wait_seconds = ready_wait_seconds
        self._loader_function = loader or _LOADERS[settings.backend]
        self.sdk_load_ms: float | None = None
        self._sdk: _Sdk | _OtelSdk | None = None
        self._loaded = threading.Event()
        self._loader: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def start(self) -> None:
        """Begin importing the SDK in a background thread (it costs ~0.4 s); no-op when disabled."""
        if not self.enabled or self._loader is not None:
            return
        self._loader = threading.Thread(target=self._load_sdk, name="xray-sdk-loader", daemon=True)
        self._loader.start()

    def wait_ready(self) -> bool:
        if not self.enabled:
            return False
        self.start()
        return self._loaded.wait(self.ready_wait_seconds) and self._sdk is not None

    def _load_sdk(self) -> None:
        started = time.perf_counter()
        try:
            self._sdk = self._loader_function(self.service_name, self.settings, self.patched)
        except Exception:
            # Tracing must never take a function down: run untraced and say why.
            _log.exception("x-ray sdk failed to load; tracing is off", service=self.service_name)
        finally:
            self.sdk_load_ms = round((time.perf_counter() - started) * 1000, 1)
            self._loaded.set()

    @contextmanager
    def invocation(self, name: str, trace_header: str | None, method: str, url: str) -> Iterator[Invocation]:
        """One request's trace; an X-Ray segment when enabled and sampled."""
        context = parse_trace_header(trace_header)
        sdk = self._sdk if self.wait_ready() else None
        if sdk is None:
            with _activated(Invocation(context)) as invocation:
                yield invocation
            return
        with sdk.segment(name, context, method, url) as invocation, _activated(invocation):
            yield invocation

    def current_header(self) -> str | None:
        """The header an outbound call should carry: the current (sub)segment as its parent."""
        invocation = _current.get()
        if invocation is None:
            return None
        sdk = self._sdk
        if sdk is None:
            return invocation.context.header()
        return sdk.header(invocation)


def _load_xray(service_name: str, settings: config.TracingSettings, patched: Sequence[str]) -> _Sdk:
    # The SDK reads its own switch; ours is authoritative, so tell it before it is imported.
    os.environ.setdefault("AWS_XRAY_SDK_ENABLED", "true")
    from aws_xray_sdk.core import patch, xray_recorder
    from aws_xray_sdk.core.models.trace_header import TraceHeader
    from aws_xray_sdk.core.sampling.local.sampler import LocalSampler

    xray_recorder.configure(
        service=service_name,
        daemon_address=settings.daemon_address,
        # Local rules: centralized sampling would poll a daemon that the local runtime lacks.
        sampler=LocalSampler(),
        sampling=not settings.sample_all,
        # AWS calls outside a request (start-up, background relays) are simply not traced.
        context_missing="IGNORE_ERROR",
        plugins=(),
    )
    # A library the image does not install has no calls to trace (webhooks has no `requests`).
    present = [name for name in patched if importlib.util.find_spec(name) is not None]
    if present:
        patch(present)
    return _Sdk(xray_recorder, TraceHeader)


def _load_otel(service_name: str, settings: config.TracingSettings, patched: Sequence[str]) -> _OtelSdk:
    # The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and OTEL_BSP_* itself. No library is
    # patched here (that takes instrumentation packages): outbound calls carry the header through
    # outbound_headers() and sqs_message_system_attributes(), as they do without any SDK.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.propagators.aws import AwsXRayPropagator
    from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBasedTraceIdRatio

    sampler = ALWAYS_ON if settings.sample_all else ParentBasedTraceIdRatio(otel_sample_ratio_default)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              id_generator=AwsXRayIdGenerator(), sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return _OtelSdk(provider.get_tracer("finfaas"), AwsXRayPropagator(), trace)


@contextmanager
def _xray_segment(
    sdk: _Sdk, name: str, context: TraceContext, method: str, url: str
) -> Iterator[Invocation]:
    sampling = None if context.sampled is None else int(context.sampled)
    segment = sdk.recorder.begin_segment(
        name, traceid=context.trace_id, parent_id=context.parent_id, sampling=sampling
    )
    invocation = Invocation(context, segment)
    segment.put_http_meta("method", method)
    segment.put_http_meta("url", url)
    try:
        yield invocation
    except BaseException as error:
        segment.add_exception(error, [])
        invocation.set_status(invocation.status or 500)
        raise
    finally:
        if invocation.status is not None:
            segment.put_http_meta("status", invocation.status)
            segment.apply_status_code(invocation.status)
        sdk.recorder.end_segment()


@contextmanager
def _activated(invocation: Invocation) -> Iterator[Invocation]:
    token = _current.set(invocation)
    try:
        yield invocation
    finally:
        _current.reset(token)


_LOADERS.update({config.TRACING_XRAY: _load_xray, config.TRACING_OTEL: _load_otel})
_tracer: Tracer | None = None
_tracer_lock = threading.Lock()


def start(service_name: str, patched: Sequence[str] = PATCHED_LIBRARIES_DEFAULT) -> Tracer:
    """The process tracer, created once from the environment; loads the SDK in the background."""
    global _tracer
    with _tracer_lock:
        if _tracer is None:
            _tracer = Tracer(service_name, config.tracing_settings(), patched)
            _tracer.start()
        return _tracer


def current_trace_header() -> str | None:
    tracer = _tracer
    if tracer is None:
        invocation = _current.get()
        return invocation.context.header() if invocation else None
    return tracer.current_header()


def outbound_headers() -> dict[str, str]:
    """Headers for an outbound HTTP call made without `requests` (which X-Ray patches itself)."""
    header = current_trace_header()
    return {TRACE_HEADER: header} if header else {}


def sqs_message_system_attributes() -> dict[str, dict[str, str]]:
    """MessageSystemAttributes for SQS SendMessage carrying the current trace."""
    header = current_trace_header()
    if not header:
        return {}
    return {SQS_TRACE_ATTRIBUTE: {"DataType": "String", "StringValue": header}}


def sqs_trace_header(message: Mapping[str, Any]) -> str | None:
    """The trace header of a received SQS message (ask for MessageSystemAttributeNames=[AWSTraceHeader])."""
    attributes = message.get("Attributes") or {}
    header = attributes.get(SQS_TRACE_ATTRIBUTE)
    return header if isinstance(header, str) else None
