"""The gRPC inference server: the carlink.v1.Inference servicer and its lifecycle.

Status codes of Infer:
  INVALID_ARGUMENT    empty/ill-formed task, bad encoding, undecodable/truncated image, a JPEG whose
                      entropy data is corrupt (libjpeg's warnings are errors), image over the
                      payload or pixel limits (checked from the header, before decoding)
  NOT_FOUND           unknown model, or a task not in the server's --tasks list
  DEADLINE_EXCEEDED   the request's deadline (deadline_unix_us, or the gRPC call deadline,
                      whichever is earlier) passed before the model ran; the model never runs
  RESOURCE_EXHAUSTED  more than max_concurrency Infer calls in progress, or no room for the image
                      in the decoded-pixel budget of all calls (max_pixels_in_flight) in time
  UNAVAILABLE         the model runner has shut down (the server is stopping)
  UNAUTHENTICATED     missing or wrong bearer token (security.BearerTokenInterceptor)
  INTERNAL            the model raised
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Callable

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from carlink.detection import Detection
from carlink.logs import event
from carlink.proto import inference_pb2 as pb
from carlink.proto import inference_pb2_grpc as pb_grpc
from carlink.secrets import CredentialError, read_token_file
from carlink.wire import detections_to_proto, unix_us
from carlink.zoo.base import Detector

from .batching import DeadlineExpired, JobResult, ModelRunner, RunnerClosed
from .budget import PixelBudget
from .config import ServerConfig
from .decode import BadImage, DecodeLimits, PayloadTooLarge, check_header, decode
from .metrics import ServerMetrics
from .security import BearerTokenInterceptor, server_credentials

log = logging.getLogger("carlink.cloud.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inference"].full_name
# Handed to models that declare needs_pixels=False in place of a decoded image.
_PLACEHOLDER = np.zeros((1, 1, 3), dtype=np.uint8)
# gRPC reports "no deadline" as a deadline centuries away; anything beyond a day is none.
_NO_DEADLINE_S = 86400.0
# Room for the request's other fields above the payload limit in gRPC's message size limit.
_MESSAGE_OVERHEAD = 64 * 1024


class ServerSetupError(RuntimeError):
    """The server cannot start as configured (unknown model, missing weights, bad device...)."""


class _Refusal(Exception):
    """An Infer call answered with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Outcome:
    code: grpc.StatusCode
    message: str
    response: pb.InferResponse | None


def load_detectors(config: ServerConfig) -> dict[str, list[Detector]]:
    """Build the configured models from the zoo: per model, one instance per worker thread."""
    from carlink.zoo import registry  # the zoo imports torch; only a running server needs it

    detectors: dict[str, list[Detector]] = {}
    for name in config.models:
        try:
            spec = registry.get_spec(name)
            # OpenCV and no-op models run on the CPU whatever is asked; torch models take the device.
            device = config.device if spec.family in ("torchvision", "darknet") else "auto"
            # Darknet models have two backends (torch by default here); other families only their own.
            extra = {"backend": config.backend, "models_dir": config.models_dir} if spec.family == "darknet" else {}
            copies = 1 if spec.batchable else config.workers_per_model
            detectors[name] = [registry.get_model(name, weights=config.weights.get(name),
                                                  allow_untrained=config.allow_untrained, device=device, **extra)
                               for _ in range(copies)]
        except Exception as exc:
            raise ServerSetupError(f"cannot load model {name!r}: {exc}") from exc
    return detectors


def make_runner(detectors: list[Detector], config: ServerConfig, metrics: ServerMetrics) -> ModelRunner:
    """A runner whose queue waits, model calls and drops are recorded in ``metrics``."""

    def on_call(model: str, seconds: float, size: int) -> None:
        metrics.inference.labels(model).observe(seconds)
        metrics.batch_size.labels(model).observe(size)

    def on_wait(model: str, seconds: float) -> None:
        metrics.queue_wait.labels(model).observe(seconds)

    def on_drop(model: str, reason: str) -> None:
        metrics.drops.labels(model, reason).inc()

    return ModelRunner(detectors, max_batch=config.max_batch, batch_wait_s=config.batch_wait_ms / 1e3,
                       on_call=on_call, on_wait=on_wait, on_drop=on_drop)


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(self, config: ServerConfig, runners: dict[str, ModelRunner], metrics: ServerMetrics,
                 wall_clock: Callable[[], float] = time.time,
                 mono_clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.runners = runners
        self.metrics = metrics
        self.limits = DecodeLimits(config.max_payload_bytes, config.max_pixels, config.max_side)
        self._wall = wall_clock
        self._mono = mono_clock
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self.pixel_budget = PixelBudget(config.max_pixels_in_flight)

    # -- RPCs -----------------------------------------------------------------------------------

    def Infer(self, request: pb.InferRequest, context: grpc.ServicerContext) -> pb.InferResponse:
        t0 = self._mono()
        label = request.model if request.model in self.runners else "other"
        if not self._slots.acquire(blocking=False):
            outcome = _Outcome(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"server busy: {self.config.max_concurrency} Infer calls already in progress", None)
        else:
            self.metrics.in_flight.inc()
            try:
                outcome = self._infer(request, context, t0)
            finally:
                self.metrics.in_flight.dec()
                self._slots.release()
        elapsed = self._mono() - t0
        self.metrics.requests.labels(label, outcome.code.name).inc()
        self.metrics.latency.labels(label).observe(elapsed)
        level = logging.DEBUG if outcome.code == grpc.StatusCode.OK else logging.INFO
        event(log, level, "infer", model=request.model, task=request.task, frame_id=request.frame_id,
              code=outcome.code.name, ms=round(elapsed * 1e3, 3), detail=outcome.message or None)
        if outcome.response is None:
            context.abort(outcome.code, outcome.message)
        return outcome.response

    def InferStream(self, requests, context: grpc.ServicerContext) -> pb.InferResponse:
        """Infer as the server registers it: a request stream of one message (the same bytes on the
        wire as a unary call). A message that gRPC refused for its size never reaches a unary
        handler; here it shows as no message, and is counted and logged like any other refusal."""
        try:
            request = next(requests, None)
        except grpc.RpcError:  # the call ended before its message arrived
            request = None
        if request is None:
            # gRPC refused the message (RESOURCE_EXHAUSTED to the client), or the client gave up
            # while sending it: from here the two look the same.
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            cap = self.config.max_payload_bytes + _MESSAGE_OVERHEAD
            self.metrics.requests.labels("other", code.name).inc()
            self.metrics.drops.labels("other", "message_refused").inc()
            event(log, logging.INFO, "infer", code=code.name,
                  detail=f"no request message: over the message limit of {cap} bytes, or cancelled while sending")
            context.abort(code, f"request message larger than the limit of {cap} bytes")
        return self.Infer(request, context)

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[self._model_info(r) for r in self.runners.values()])

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        return pb.PingResponse(client_time_unix_us=request.client_time_unix_us,
                               server_time_unix_us=unix_us(self._wall()))

    # -- Infer, step by step --------------------------------------------------------------------

    def _infer(self, request: pb.InferRequest, context: grpc.ServicerContext, t0: float) -> _Outcome:
        try:
            runner = self._runner_for(request)
            deadline = self._local_deadline(request, context, t0)
            self._check_deadline(runner, deadline, "before decoding")
            payload_size = (request.payload_size.width, request.payload_size.height) \
                if request.HasField("payload_size") else None
            payload = request.payload  # upb copies the bytes on every access: once per call
            try:
                header = check_header(payload, request.encoding, payload_size, self.limits)
            except (BadImage, PayloadTooLarge) as exc:
                raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"payload: {exc}") from None
            size = (header.width, header.height)
            if not runner.spec.needs_pixels:  # header and limit checks only
                decode_s = 0.0
                result = self._run_model(runner, _PLACEHOLDER, deadline, context)
            else:
                decode_s, result = self._decode_and_run(runner, payload, request.encoding, payload_size, header.pixels,
                                                        deadline, context)
        except _Refusal as r:
            return _Outcome(r.code, str(r), None)
        w, h = size
        dets = _rescale(result.detections, w, h, request.original_size if request.HasField("original_size") else None)
        total_ms = (self._mono() - t0) * 1e3
        response = pb.InferResponse(
            task=request.task, model=request.model, frame_id=request.frame_id,
            detections=detections_to_proto(dets),
            timings=pb.ServerTimings(queue_wait_ms=result.queue_wait_s * 1e3, decode_ms=decode_s * 1e3,
                                     inference_ms=result.inference_s * 1e3, total_ms=total_ms,
                                     batch_size=result.batch_size),
            untrained=runner.untrained, decoded_size=pb.ImageSize(width=w, height=h),
            server_time_unix_us=unix_us(self._wall()),
        )
        return _Outcome(grpc.StatusCode.OK, "", response)

    def _decode_and_run(self, runner: ModelRunner, payload: bytes, encoding: int, payload_size, pixels: int,
                        deadline: float | None, context: grpc.ServicerContext) -> tuple[float, JobResult]:
        """Decode within the pixel budget, then run the model. The pixels go back to the budget
        once neither this handler nor the model's worker holds the image any more."""
        wait = self.config.budget_wait_ms / 1e3
        if deadline is not None:
            wait = min(wait, deadline - self._mono())
        if not self.pixel_budget.acquire(pixels, wait):
            self.metrics.drops.labels(runner.name, "pixel_budget").inc()
            raise _Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"server busy: decoded-pixel budget ({self.pixel_budget.limit} pixels for all calls) "
                           f"has no room for {pixels} more within {max(wait, 0.0) * 1e3:.0f} ms")
        self.metrics.pixels_in_flight.inc(pixels)
        hold = _Holders(lambda: (self.pixel_budget.release(pixels), self.metrics.pixels_in_flight.dec(pixels)))
        try:
            t_dec = self._mono()
            try:
                image = decode(payload, encoding, payload_size, self.limits)
            except (BadImage, PayloadTooLarge) as exc:
                raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"payload: {exc}") from None
            decode_s = self._mono() - t_dec
            self.metrics.decode.labels(runner.name).observe(decode_s)
            self._check_deadline(runner, deadline, "after decoding")
            hold.add()  # the worker's hold, let go when the job is done
            fut = self._submit(runner, image, context, deadline, on_done=hold.let_go)
            del image  # from here only the worker holds it
            return decode_s, self._result(runner, fut, deadline)
        finally:
            hold.let_go()

    def _runner_for(self, request: pb.InferRequest) -> ModelRunner:
        if not request.task:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "task is empty")
        if not self.config.task_allowed(request.task):
            known = ", ".join(self.config.tasks) if self.config.tasks else "names of [A-Za-z0-9_.:-], 1-64 chars"
            raise _Refusal(grpc.StatusCode.NOT_FOUND, f"unknown task {request.task[:80]!r}; accepted: {known}")
        runner = self.runners.get(request.model)
        if runner is None:
            raise _Refusal(grpc.StatusCode.NOT_FOUND,
                           f"unknown model {request.model[:80]!r}; served: {', '.join(self.runners)}")
        return runner

    def _local_deadline(self, request: pb.InferRequest, context: grpc.ServicerContext, t0: float) -> float | None:
        """The earlier of the request's and the call's deadlines, on this server's monotonic clock."""
        candidates = []
        if request.deadline_unix_us:
            # deadline_unix_us is on the car's wall clock; the skew allowance covers the offset.
            remaining = request.deadline_unix_us / 1e6 - self._wall() + self.config.deadline_skew_ms / 1e3
            candidates.append(t0 + remaining)
        call_remaining = context.time_remaining()
        if call_remaining is not None and call_remaining < _NO_DEADLINE_S:
            candidates.append(t0 + call_remaining)
        return min(candidates) if candidates else None

    def _check_deadline(self, runner: ModelRunner, deadline: float | None, when: str) -> None:
        if deadline is not None:
            now = self._mono()
            if now >= deadline:
                self.metrics.drops.labels(runner.name, "deadline").inc()  # a deadline drop, as README says
                raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"deadline passed {(now - deadline) * 1e3:.1f} ms ago ({when}); model not run")

    def _run_model(self, runner: ModelRunner, image, deadline: float | None,
                   context: grpc.ServicerContext) -> JobResult:
        return self._result(runner, self._submit(runner, image, context, deadline), deadline)

    def _submit(self, runner: ModelRunner, image, context: grpc.ServicerContext, deadline: float | None,
                on_done: Callable[..., None] | None = None) -> futures.Future:
        """Queue the image; ``on_done`` runs when the runner is done with it (answered, failed, cancelled)."""
        fut = runner.submit(image, deadline)
        if on_done is not None:
            fut.add_done_callback(on_done)
        context.add_callback(fut.cancel)  # a client that hangs up frees its place in the queue
        return fut

    def _result(self, runner: ModelRunner, fut: futures.Future, deadline: float | None) -> JobResult:
        timeout = None if deadline is None else max(0.0, deadline - self._mono())
        try:
            return fut.result(timeout=timeout)
        except futures.TimeoutError:
            if fut.cancel():
                self.metrics.drops.labels(runner.name, "deadline").inc()
                raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"deadline passed while queued for model {runner.name}; model not run") from None
            raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"deadline passed while model {runner.name} was running") from None
        except futures.CancelledError:
            raise _Refusal(grpc.StatusCode.CANCELLED, "call cancelled by the client") from None
        except DeadlineExpired as exc:
            raise _Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)) from None
        except RunnerClosed as exc:
            raise _Refusal(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        except Exception as exc:
            raise _Refusal(grpc.StatusCode.INTERNAL, f"model {runner.name} failed: {type(exc).__name__}: {exc}") from None

    def _model_info(self, runner: ModelRunner) -> pb.ModelInfo:
        spec = runner.spec
        p50, p99, n = runner.stats.percentiles_ms()
        info = pb.ModelInfo(
            name=spec.name, family=spec.family, classes=[int(c) for c in spec.classes],
            untrained=runner.untrained, runtime_p50_ms=p50, runtime_p99_ms=p99, runtime_samples=n,
            batchable=spec.batchable, max_batch=runner.max_batch, device=runner.device,
            description=spec.description,
        )
        if spec.input_size is not None:
            info.input_size.CopyFrom(pb.ImageSize(width=spec.input_size[0], height=spec.input_size[1]))
        return info


def _add_inference_service(servicer: InferenceServicer, server: grpc.Server) -> None:
    """carlink.v1.Inference as the generated code registers it, except that Infer is served as a
    request stream (InferStream), so that messages refused for their size are counted."""
    handlers = {
        "Infer": grpc.stream_unary_rpc_method_handler(
            servicer.InferStream, request_deserializer=pb.InferRequest.FromString,
            response_serializer=pb.InferResponse.SerializeToString),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels, request_deserializer=pb.ListModelsRequest.FromString,
            response_serializer=pb.ListModelsResponse.SerializeToString),
        "Ping": grpc.unary_unary_rpc_method_handler(
            servicer.Ping, request_deserializer=pb.PingRequest.FromString,
            response_serializer=pb.PingResponse.SerializeToString),
    }
    # Generic handlers only: with registered ones gRPC receives a message before Python sees the
    # call, and fails one over the size limit out of sight.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


class _Holders:
    """Counts who still holds a decoded image; ``on_free`` runs once, when the last one lets go."""

    def __init__(self, on_free: Callable[[], object]) -> None:
        self._n = 1
        self._on_free = on_free
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._n += 1

    def let_go(self, *_args) -> None:
        with self._lock:
            self._n -= 1
            free = self._n == 0
        if free:
            self._on_free()


def _rescale(dets: list[Detection], w: int, h: int, original: pb.ImageSize | None) -> list[Detection]:
    """Map boxes from the decoded image to the car's original image size, when given."""
    if original is None or not original.width or not original.height or (original.width, original.height) == (w, h):
        return dets
    sx, sy = original.width / w, original.height / h
    return [Detection(d.box.scaled(sx, sy), d.score, d.cls) for d in dets]


class InferenceServer:
    """A configured gRPC server: Inference + health + reflection, optional TLS/token/metrics."""

    def __init__(self, config: ServerConfig, detectors: dict[str, list[Detector]] | None = None,
                 metrics: ServerMetrics | None = None) -> None:
        """``detectors`` (model name -> instances) replaces loading ``config.models`` from the zoo."""
        self.config = config
        self.metrics = metrics or ServerMetrics()
        loaded = detectors if detectors is not None else load_detectors(config)
        self.runners = {name: make_runner(list(d), self.config, self.metrics) for name, d in loaded.items()}
        self.servicer = InferenceServicer(config, self.runners, self.metrics)
        self.health = health.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._metrics_http = None
        self._stopped = threading.Event()
        interceptors = []
        if config.token_file is not None:
            try:
                token = read_token_file(config.token_file, log)
            except CredentialError as exc:
                raise ServerSetupError(f"--token-file {exc}") from None
            interceptors.append(BearerTokenInterceptor(token, on_refused=self._refused))
        # Threads beyond the concurrency limit, so excess calls reach the handler and hear
        # RESOURCE_EXHAUSTED instead of waiting; gRPC itself refuses calls beyond the threads, so
        # no call waits for a thread holding its payload (payload memory: threads x the limit).
        threads = config.max_concurrency + 8
        message_cap = config.max_payload_bytes + _MESSAGE_OVERHEAD
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", message_cap),
                     ("grpc.max_send_message_length", 64 * 1024 * 1024),
                     # Without this a second server on the same port binds too and takes half the calls.
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=threads,
        )
        _add_inference_service(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server)

    def _refused(self, method: str, code: grpc.StatusCode, reason: str, peer: str) -> None:
        """A call refused by authentication: counted and logged (never with the token presented)."""
        self.metrics.refused.labels(method, code.name, reason).inc()
        event(log, logging.WARNING, "refused", method=method, code=code.name, reason=reason, peer=peer)

    @property
    def address(self) -> str:
        return f"{_host_for_url(self.config.host)}:{self.port}"

    def start(self) -> int:
        """Bind, start serving, report SERVING; return the bound port."""
        bind = f"{_host_for_url(self.config.host)}:{self.config.port}"
        try:
            if self.config.insecure:
                port = self._server.add_insecure_port(bind)
            else:
                # A bad certificate or key is named here (OpenSSL's check), not reported as a bind failure.
                creds = server_credentials(self.config.tls_cert, self.config.tls_key, self.config.client_ca)
                port = self._server.add_secure_port(bind, creds)
        except CredentialError as exc:
            raise ServerSetupError(str(exc)) from None
        except RuntimeError:  # gRPC's "Failed to bind": ask the OS why
            port = 0
        if port == 0:
            raise ServerSetupError(f"cannot listen on {bind}: {_bind_problem(self.config.host, self.config.port)}")
        self.port = port
        if self.config.metrics_port is not None:
            try:
                self._metrics_http = self.metrics.serve_http(self.config.metrics_port, self.config.metrics_host)
            except OSError as exc:
                self._server.stop(None)  # release the gRPC port bound above
                raise ServerSetupError(f"--metrics-port {self.config.metrics_port}: cannot listen on "
                                       f"{self.config.metrics_host}:{self.config.metrics_port}: {exc.strerror or exc}") from None
            self.metrics_port = self._metrics_http[0].server_address[1]
        self._server.start()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        event(log, logging.INFO, "serving", address=self.address, port=port, tls=not self.config.insecure,
              mtls=self.config.client_ca is not None, token=self.config.token_file is not None,
              models=list(self.runners), metrics_port=self.metrics_port)
        return port

    def stop(self, grace: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight ones finish within ``grace``."""
        if self._stopped.is_set():
            return
        grace = self.config.grace_s if grace is None else grace
        self.health.enter_graceful_shutdown()  # every service reports NOT_SERVING from now on
        # Logged once health says so: whoever reads "draining" must not still be told SERVING.
        event(log, logging.INFO, "draining", grace_s=grace)
        if self.config.drain_delay_s:
            time.sleep(self.config.drain_delay_s)  # let load balancers see NOT_SERVING first
        self._server.stop(grace).wait()
        for runner in self.runners.values():
            runner.close()
        if self._metrics_http is not None:
            self._metrics_http[0].shutdown()
        self._stopped.set()
        event(log, logging.INFO, "stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished; True when it has."""
        return self._stopped.wait(timeout)


def _bind_problem(host: str, port: int) -> str:
    """Why the OS refuses ``host:port`` (e.g. "Address already in use"), found by binding it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return "gRPC could not bind it (run with GRPC_VERBOSITY=debug for its reason)"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
