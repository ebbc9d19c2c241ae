"""The local gateway: OpenFaaS's routes on 127.0.0.1, each function in its own process.

Routes, as the OpenFaaS gateway serves them:
  /function/<name>[/<path>]        proxy (method, path, query, headers, body) to the function
  /async-function/<name>[/<path>]  202 + X-Call-Id now; invoke later; POST the result to X-Callback-Url
  /system/functions                the functions, their replicas (0/1) and invocation counts
  /system/function/<name>          one of them
  /healthz                         the gateway itself

A function's process starts on its first request, stops after its idle time when its
com.openfaas.scale.zero label says so, and is started afresh after a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from finfaas.platform.config import LOCAL_SECRETS_DIR_DEFAULT, OPENFAAS_SECRETS_DIR
from finfaas.platform.http import CLIENT_IP_HEADER_DEFAULT, CLIENT_IP_HEADER_ENV
from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, Problem
from multidict import CIMultiDictProxy

from finfaas_dev import http1
from finfaas_dev.http1 import Reply, Request
from finfaas_dev.process_pool import (
    FunctionPool,
    FunctionRuntime,
    FunctionStartError,
    log_event,
)
from finfaas_dev.stackfile import Stack, StackError, load_stack
from finfaas_dev.upstream import UpstreamBrokenError, UpstreamConnectError

LOOPBACK_HOST = "127.0.0.1"
GATEWAY_PORT_DEFAULT = 8080
GATEWAY_PORT_ENV = "FINFAAS_GATEWAY_PORT"
REQUEST_BODY_BYTES_MAX = 10 * 1024 * 1024
FUNCTION_TIMEOUT_SECONDS_DEFAULT = 60.0  # when stack.yml sets no exec_timeout
ASYNC_QUEUE_DEPTH_MAX = 1000
ASYNC_WORKERS_COUNT = 4
CALLBACK_ATTEMPTS_MAX = 3
CALLBACK_BACKOFF_SECONDS = 0.5
CALLBACK_TIMEOUT_SECONDS = 10.0
SHUTDOWN_DRAIN_SECONDS = 5.0

FUNCTION_PREFIX = "/function/"
ASYNC_FUNCTION_PREFIX = "/async-function/"
SYSTEM_FUNCTIONS_PATH = "/system/functions"
SYSTEM_FUNCTION_PREFIX = "/system/function/"
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the client library recomputes.
_HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "content-length",
    }
)
_REQUEST_HEADERS_DROPPED = _HOP_BY_HOP_HEADERS | {"proxy-authorization", "host", "expect"}
_RESPONSE_HEADERS_DROPPED = _HOP_BY_HOP_HEADERS
_HEAD_RESPONSE_HEADERS_DROPPED = _RESPONSE_HEADERS_DROPPED - {"content-length"}
# The header the gateway sets to the connected peer's address, as an ingress in front of OpenFaaS
# does; its functions run with FINFAAS_CLIENT_IP_HEADER naming it (platform.http.client_ip).
CLIENT_IP_HEADER = CLIENT_IP_HEADER_DEFAULT
# Headers only the gateway may set: a client's copies are dropped, never passed on. The address
# headers are all dropped, whichever one a deployment trusts, so none can be forged through here.
_SET_BY_GATEWAY = frozenset(
    {"x-call-id", "x-real-ip", "x-forwarded-for", "forwarded", "x-envoy-external-address"}
)


@dataclass(frozen=True)
class AsyncCall:
    function: str
    method: str
    path_and_query: str
    headers: list[tuple[str, str]]
    body: bytes
    call_id: str
    callback_url: str | None


@dataclass
class GatewayConfig:
    stack: Stack
    port: int = GATEWAY_PORT_DEFAULT
    idle_seconds_override: float | None = None
    logs_dir: Path | None = None
    connector: bool = True
    xray_collector: bool = False
    xray_address: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def problem(status: int, code: str, title: str, detail: str) -> Reply:
    """An RFC 9457 problem document; the detail says what happened, never a stack trace."""
    document = Problem(status=status, code=code, title=title, detail=detail).to_dict()
    return Reply(status, [("Content-Type", PROBLEM_MEDIA_TYPE)], json.dumps(document).encode())


def json_reply(document: object) -> Reply:
    return Reply(200, [("Content-Type", "application/json")], json.dumps(document).encode())


_CONNECTION_PROBLEMS = {
    400: ("bad_request", "Bad Request", "the request could not be parsed"),
    408: ("request_timeout", "Request Timeout", "the request body did not arrive in time"),
    413: ("request_too_large", "Payload Too Large", f"request body exceeds {REQUEST_BODY_BYTES_MAX} bytes"),
    500: ("gateway_error", "Internal Server Error", "the gateway failed on this request"),
}


def connection_problem(status: int) -> Reply:
    """What the HTTP layer answers when a request never reaches routing."""
    return problem(status, *_CONNECTION_PROBLEMS[status])


def split_function_path(raw_path: str, prefix: str) -> tuple[str, str]:
    """'/function/echo/a/b?x=1' -> ('echo', '/a/b?x=1'); the tail keeps its original encoding.

    OpenFaaS also accepts 'echo.<namespace>'; locally there is one namespace, so it is ignored.
    """
    path, question, query = raw_path.partition("?")
    name, _, tail = path[len(prefix) :].partition("/")
    return name.partition(".")[0], "/" + tail + (question + query)


def upstream_request_headers(
    incoming: CIMultiDictProxy | Mapping[str, str], call_id: str, client_address: str | None
) -> list[tuple[str, str]]:
    """The client's end-to-end headers, the gateway's X-Call-Id and X-Real-Ip (the connected peer).

    Whatever a client says about its own address is dropped: functions trust X-Real-Ip for
    per-address limits and audit records, so only the gateway may set it. No X-Forwarded-For
    either: waitress drops it from untrusted peers (as in the image, where of-watchdog is the peer).
    """
    headers = [
        (key, value)
        for key, value in incoming.items()
        if key.lower() not in _REQUEST_HEADERS_DROPPED and key.lower() not in _SET_BY_GATEWAY
    ]
    headers.append(("X-Call-Id", call_id))
    if client_address is not None:
        headers.append((CLIENT_IP_HEADER, client_address))
    return headers


def downstream_response_headers(upstream: list[tuple[str, str]], head_request: bool) -> list[tuple[str, str]]:
    """The function's headers minus framing ones; a HEAD reply keeps its Content-Length."""
    dropped = _HEAD_RESPONSE_HEADERS_DROPPED if head_request else _RESPONSE_HEADERS_DROPPED
    return [(key, value) for key, value in upstream if key.lower() not in dropped]


class CallIds:
    """Unique X-Call-Id values shaped like UUIDs: a random prefix per gateway, then a counter.

    os.urandom per request was a system call on the proxy path for no gain in uniqueness.
    """

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]  # 8-4-4-4- of a random UUID
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


class Gateway:
    """The HTTP front of the local runtime; owns the function pool and the async queue."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # Functions here trust the header this gateway sets, whatever the caller's shell says.
        function_env = {**config.env, CLIENT_IP_HEADER_ENV: CLIENT_IP_HEADER}
        self.pool = FunctionPool(
            config.stack.functions, function_env, config.idle_seconds_override, config.logs_dir
        )
        self.port: int | None = None
        self._timeouts = {
            name: spec.timeout_seconds("exec_timeout") or FUNCTION_TIMEOUT_SECONDS_DEFAULT
            for name, spec in config.stack.functions.items()
        }
        self._session: aiohttp.ClientSession | None = None
        self._call_ids = CallIds()
        self._http = http1.Http1Server(self._handle, connection_problem, REQUEST_BODY_BYTES_MAX)
        self._async_queue: asyncio.Queue[AsyncCall] = asyncio.Queue(ASYNC_QUEUE_DEPTH_MAX)
        self._workers: list[asyncio.Task] = []
        self._companions: list = []  # connector, trace collector: started after us, stopped before us

    async def start(self) -> int:
        """Listen on 127.0.0.1:<port> (0: any free port) and return the port."""
        yield_cpu_to_functions()
        self._session = aiohttp.ClientSession()  # for callbacks only; functions are reached via upstream
        await self._http.start(LOOPBACK_HOST, self.config.port)
        self.port = self._http.port
        self.pool.start_reaper()
        self._warn_missing_secrets()
        self._workers = [asyncio.create_task(self._async_worker()) for _ in range(ASYNC_WORKERS_COUNT)]
        await self._start_companions()
        log_event(
            "gateway_listening", host=LOOPBACK_HOST, port=self.port, functions=sorted(self.pool.runtimes)
        )
        return self.port

    async def stop(self) -> None:
        """Stop companions, drain in-flight requests briefly, then stop every function process."""
        for companion in reversed(self._companions):
            await companion.stop()
        for worker in self._workers:
            worker.cancel()
        if not self._async_queue.empty():
            log_event("async_calls_dropped", count=self._async_queue.qsize())
        await self._http.stop(SHUTDOWN_DRAIN_SECONDS)  # stop listening, let in-flight requests finish
        await self.pool.stop_all()
        if self._session is not None:
            await self._session.close()
        log_event("gateway_stopped")

    # -- routing ---------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Reply:
        target = request.target
        if target.startswith(FUNCTION_PREFIX):
            return await self._proxy(request)
        if target.startswith(ASYNC_FUNCTION_PREFIX):
            return await self._enqueue(request)
        path = request.path
        if path.rstrip("/") == SYSTEM_FUNCTIONS_PATH and request.method == "GET":
            return json_reply([self._describe(r) for r in self.pool.runtimes.values()])
        if path.startswith(SYSTEM_FUNCTION_PREFIX) and request.method == "GET":
            runtime = self.pool.get(path[len(SYSTEM_FUNCTION_PREFIX) :].strip("/"))
            if runtime is None:
                return problem(404, "function_not_found", "Not Found", "no such function")
            return json_reply(self._describe(runtime))
        if path == "/healthz":
            return Reply(200, [("Content-Type", "text/plain")], b"OK")
        return problem(404, "route_not_found", "Not Found", f"no route for {request.method} {path}")

    # -- synchronous invocation --------------------------------------------------------------

    async def _proxy(self, request: Request) -> Reply:
        name, path_and_query = split_function_path(request.target, FUNCTION_PREFIX)
        runtime = self.pool.get(name)
        if runtime is None:
            return problem(404, "function_not_found", "Not Found", f"function {name!r} is not deployed")
        call_id = request.headers.get("X-Call-Id") or self._call_ids.next()
        headers = upstream_request_headers(request.headers, call_id, request.peer)
        outcome = await self.invoke(runtime, request.method, path_and_query, headers, request.body)
        reply_headers = downstream_response_headers(outcome.headers, request.method == "HEAD")
        reply_headers.append(("X-Call-Id", call_id))
        reply_headers.append(("X-Duration-Seconds", f"{outcome.duration_seconds:.6f}"))
        return Reply(outcome.status, reply_headers, outcome.body)

    async def invoke(
        self,
        runtime: FunctionRuntime,
        method: str,
        path_and_query: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> Reply:
        """Send one request to the function's process; a problem document when that fails."""
        name = runtime.spec.name
        # A refused connection means the request never reached the function, so one retry
        # against a freshly started process cannot apply anything twice.
        for attempt in (1, 2):
            try:
                process = await runtime.acquire()
            except FunctionStartError as error:
                log_event("function_start_failed", function=name, detail=str(error))
                return problem(502, "function_start_failed", "Bad Gateway", str(error))
            began = time.monotonic()
            try:
                raw = await process.upstream.request(
                    method, path_and_query, headers, body, self._timeouts[name]
                )
                return Reply(raw.status, raw.headers, raw.body, time.monotonic() - began)
            except TimeoutError:
                return problem(
                    504,
                    "function_timeout",
                    "Gateway Timeout",
                    f"function {name!r} did not answer within {self._timeouts[name]:g} s",
                )
            except UpstreamConnectError:
                await runtime.forget_broken(process)
                if attempt == 2:
                    return problem(
                        502,
                        "function_unreachable",
                        "Bad Gateway",
                        f"function {name!r} refused the connection",
                    )
            except UpstreamBrokenError:
                await runtime.forget_broken(process)
                log_event("function_connection_broken", function=name, pid=process.pid)
                return problem(
                    502,
                    "function_crashed",
                    "Bad Gateway",
                    f"function {name!r} closed the connection before answering",
                )
            finally:
                runtime.release()
        raise AssertionError("unreachable")

    # -- asynchronous invocation -------------------------------------------------------------

    async def _enqueue(self, request: Request) -> Reply:
        name, path_and_query = split_function_path(request.target, ASYNC_FUNCTION_PREFIX)
        if self.pool.get(name) is None:
            return problem(404, "function_not_found", "Not Found", f"function {name!r} is not deployed")
        if request.method != "POST":
            return problem(405, "method_not_allowed", "Method Not Allowed", "async invocations are POST only")
        callback_url = request.headers.get("X-Callback-Url")
        if callback_url and not _is_http_url(callback_url):
            return problem(
                400, "invalid_callback_url", "Bad Request", "X-Callback-Url must be an http(s) URL"
            )
        call_id = request.headers.get("X-Call-Id") or self._call_ids.next()
        headers = [
            h
            for h in upstream_request_headers(request.headers, call_id, request.peer)
            if h[0].lower() != "x-callback-url"
        ]
        call = AsyncCall(name, request.method, path_and_query, headers, request.body, call_id, callback_url)
        try:
            self._async_queue.put_nowait(call)
        except asyncio.QueueFull:
            return problem(
                429,
                "async_queue_full",
                "Too Many Requests",
                f"{ASYNC_QUEUE_DEPTH_MAX} async calls are already waiting",
            )
        return Reply(202, [("X-Call-Id", call_id)])

    async def _async_worker(self) -> None:
        while True:
            call = await self._async_queue.get()
            try:
                await self._run_async_call(call)
            except Exception as error:  # one bad call must not stop the worker
                log_event(
                    "async_call_failed", function=call.function, call_id=call.call_id, error=repr(error)
                )
            finally:
                self._async_queue.task_done()

    async def _run_async_call(self, call: AsyncCall) -> None:
        runtime = self.pool.get(call.function)
        outcome = await self.invoke(runtime, call.method, call.path_and_query, call.headers, call.body)
        log_event("async_call_done", function=call.function, call_id=call.call_id, status=outcome.status)
        if call.callback_url:
            await self._post_callback(call, outcome)

    async def _post_callback(self, call: AsyncCall, outcome: Reply) -> None:
        headers = {
            "X-Call-Id": call.call_id,
            "X-Function-Name": call.function,
            "X-Function-Status": str(outcome.status),
            "X-Duration-Seconds": f"{outcome.duration_seconds:.6f}",
            "Content-Type": _header_value(outcome.headers, "content-type") or "application/octet-stream",
        }
        timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)
        for attempt in range(1, CALLBACK_ATTEMPTS_MAX + 1):
            try:
                async with self._session.post(
                    call.callback_url, data=outcome.body, headers=headers, timeout=timeout
                ) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError) as error:
                log_event("callback_failed", call_id=call.call_id, attempt=attempt, error=repr(error))
            await asyncio.sleep(CALLBACK_BACKOFF_SECONDS * attempt)
        log_event("callback_abandoned", call_id=call.call_id, url=call.callback_url)

    # -- system ------------------------------------------------------------------------------

    def _describe(self, runtime: FunctionRuntime) -> dict:
        spec = runtime.spec
        process = runtime.process
        return {
            "name": spec.name,
            "image": spec.image,
            "namespace": "openfaas-fn",
            "envProcess": spec.fprocess,
            "labels": spec.labels,
            "annotations": spec.annotations,
            "secrets": list(spec.secrets),
            "replicas": runtime.replicas,
            "availableReplicas": runtime.replicas,
            "invocationCount": runtime.invocation_count,
            "createdAt": process.started_at.isoformat() if process is not None else None,
            "pid": process.pid if process is not None else None,
            "coldStarts": runtime.cold_start_count,
            "crashes": runtime.crash_count,
        }

    def _warn_missing_secrets(self) -> None:
        """OpenFaaS refuses to deploy without them; locally the function would fail on first use."""
        folders = [
            OPENFAAS_SECRETS_DIR,
            Path(self.config.env.get("FINFAAS_SECRETS_DIR", LOCAL_SECRETS_DIR_DEFAULT)),
        ]
        for spec in self.config.stack.functions.values():
            missing = [name for name in spec.secrets if not any((f / name).is_file() for f in folders)]
            if missing:
                log_event(
                    "function_secrets_missing",
                    function=spec.name,
                    secrets=missing,
                    looked_in=[str(f) for f in folders],
                )

    async def _start_companions(self) -> None:
        if self.config.connector and any(spec.topics for spec in self.config.stack.functions.values()):
            from finfaas_dev.connector import QueueConnector, connector_wait_seconds

            connector = QueueConnector.for_stack(
                self.config.stack,
                f"http://{LOOPBACK_HOST}:{self.port}",
                wait_seconds=connector_wait_seconds(self.config.env),
            )
            await connector.start()
            self._companions.append(connector)
        if self.config.xray_collector:
            from finfaas_dev.xray_collector import XRayCollector, parse_daemon_address, parse_otlp_address

            # Both paths: UDP segments (FINFAAS_TRACING=xray) and OTLP/HTTP spans (otel), unless the
            # spans are meant for a collector elsewhere.
            try:
                otlp_address: tuple[str, int] | None = parse_otlp_address(None, self.config.env)
            except ValueError:
                otlp_address = None
            collector = XRayCollector(parse_daemon_address(self.config.xray_address),
                                      otlp_address=otlp_address)
            try:
                await collector.start()
            except OSError as error:  # a real X-Ray daemon may own the port: traces still flow
                log_event("xray_collector_unavailable", address=collector.address, detail=str(error))
            else:
                self._companions.append(collector)


def yield_cpu_to_functions() -> None:
    """Run the calling thread (the gateway's event loop) as SCHED_BATCH: its wake-ups stop preempting.

    On one machine the gateway shares cores with the function processes. Under the default
    policy each of its many short wake-ups preempts whatever function thread holds the CPU
    (and with it the GIL), which cost the functions more CPU per request than the proxy hop
    itself. SCHED_BATCH keeps the gateway's fair share of CPU but lets a running function
    finish its slice; function processes are reset to the default policy when they start.
    """
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError as error:  # e.g. a seccomp profile refusing it: only slower, never wrong
            log_event("gateway_scheduling_unchanged", detail=str(error))


def _header_value(headers: list[tuple[str, str]], lowered_name: str) -> str | None:
    return next((value for name, value in headers if name.lower() == lowered_name), None)


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# -- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"), help="OpenFaaS stack file")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(GATEWAY_PORT_ENV, GATEWAY_PORT_DEFAULT)),
        help=f"port on 127.0.0.1 (default ${GATEWAY_PORT_ENV} or {GATEWAY_PORT_DEFAULT}; 0: any free port)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="stop scale-to-zero functions after this many idle seconds instead of their label's value",
    )
    parser.add_argument(
        "--logs-dir", type=Path, default=None, help="write each function's output to DIR/<fn>.log"
    )
    parser.add_argument(
        "--no-connector", action="store_true", help="do not deliver SQS messages to functions"
    )
    parser.add_argument(
        "--xray-collector",
        action="store_true",
        help="receive X-Ray daemon datagrams and forward them to PutTraceSegments",
    )
    parser.add_argument(
        "--xray-address", default=None, help="UDP address for the collector (AWS_XRAY_DAEMON_ADDRESS)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        stack = load_stack(args.stack)
    except StackError as error:
        log_event("gateway_config_error", detail=str(error))
        return 2
    if args.xray_collector:
        from finfaas_dev.xray_collector import parse_daemon_address

        try:
            parse_daemon_address(args.xray_address)
        except ValueError as error:
            log_event("gateway_config_error", detail=str(error))
            return 2
    config = GatewayConfig(
        stack=stack,
        port=args.port,
        idle_seconds_override=args.idle_seconds,
        logs_dir=args.logs_dir,
        connector=not args.no_connector,
        xray_collector=args.xray_collector,
        xray_address=args.xray_address,
    )
    return run_on_uvloop(serve_until_stopped(config))


def run_on_uvloop(main_coroutine):
    """Run a coroutine on uvloop when available (the proxy path is measurably faster on it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_coroutine)
    return uvloop.run(main_coroutine)


async def serve_until_stopped(config: GatewayConfig) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    gateway = Gateway(config)
    try:
        await gateway.start()
    except OSError as error:
        log_event("gateway_listen_failed", port=config.port, detail=str(error))
        await gateway.stop()
        return 1
    try:
        await stopping.wait()
    finally:
        await gateway.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m finfaas_dev.gateway", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
