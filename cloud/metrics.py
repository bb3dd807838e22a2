"""Prometheus metrics of the inference server.

Each server gets its own CollectorRegistry, so several servers (tests, benchmarks) can live in one
process. Label values are bounded: ``model`` is a served model's name or "other", ``code`` a gRPC
status name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

# Milliseconds to seconds: covers a sub-millisecond no-op up to multi-second CPU models.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("carlink_cloud_requests", "Infer calls answered, by model and status code",
                                ["model", "code"], registry=r)
        self.latency = Histogram("carlink_cloud_request_latency_seconds",
                                 "Infer handler time from start to response, by model", ["model"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("carlink_cloud_queue_wait_seconds",
                                    "time a decoded request waited for its model", ["model"],
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.decode = Histogram("carlink_cloud_decode_seconds", "payload check and decode time", ["model"],
                                buckets=_LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("carlink_cloud_inference_seconds", "model call time (whole batch)",
                                   ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("carlink_cloud_batch_size", "images per model call", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.drops = Counter("carlink_cloud_drops", "requests dropped without running the model, by reason",
                             ["model", "reason"], registry=r)
        self.in_flight = Gauge("carlink_cloud_in_flight", "Infer calls in progress", registry=r)
        self.pixels_in_flight = Gauge("carlink_cloud_decoded_pixels_in_flight",
                                      "decoded pixels held by calls now (bounded by --max-pixels-in-flight)", registry=r)
        # Refused before any handler ran: authentication (method is one this server serves).
        self.refused = Counter("carlink_cloud_refused_calls",
                               "calls refused by authentication, by method, status code and reason",
                               ["method", "code", "reason"], registry=r)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def serve_http(self, port: int, host: str = "127.0.0.1"):
        """Expose /metrics over HTTP; returns (server, thread) so the caller can shut it down."""
        return start_http_server(port, addr=host, registry=self.registry)
