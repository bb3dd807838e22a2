"""Prometheus metrics of the onboard daemon (prometheus-client, on a registry of its own).

A registry per daemon, not the library's global one, so that several pipelines (tests, replay)
can live in one process without clashing names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_MS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280)


class OnboardMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.frames = Counter("carlink_onboard_frames", "frames processed", registry=r)
        self.chosen = Gauge(
            "carlink_onboard_chosen_option", "1 for the option the allocator chose per task, 0 otherwise",
            ["task", "option"], registry=r,
        )
        self.results = Counter(
            "carlink_onboard_results", "results emitted per task by source (cloud or on-car)",
            ["task", "source"], registry=r,
        )
        self.cloud_hit_rate = Gauge(
            "carlink_onboard_cloud_hit_rate", "share of the uploads sent whose answer was used (since start)",
            registry=r,
        )
        self.deadline_misses = Counter(
            "carlink_onboard_deadline_misses", "results that came after their task's deadline", ["task"], registry=r,
        )
        self.estimate_bps = Gauge("carlink_onboard_bandwidth_estimate_bps", "uplink bandwidth estimate", registry=r)
        self.rtt_ms = Gauge("carlink_onboard_rtt_ms", "round-trip estimate", registry=r)
        self.solve_ms = Histogram("carlink_onboard_solve_ms", "allocation solve time", buckets=_MS_BUCKETS, registry=r)
        self.encode_ms = Histogram(
            "carlink_onboard_encode_ms", "resize + encode time of one frame's uploads", buckets=_MS_BUCKETS, registry=r,
        )
        self.uploads = Counter("carlink_onboard_uploads", "upload outcomes", ["status"], registry=r)
        # What went wrong around the pipeline: nothing of it stops the daemon, all of it is counted.
        self.source_skipped = Counter(
            "carlink_onboard_source_skipped", "source input skipped (corrupt_record, undecodable_image, unreadable_file)",
            ["reason"], registry=r,
        )
        self.source_degraded = Gauge(
            "carlink_onboard_source_degraded", "1 while the frame source cannot be read (retrying), else 0", registry=r,
        )
        self.source_failures = Counter(
            "carlink_onboard_source_failures", "attempts to read the frame source that failed", registry=r,
        )
        self.cloud_refused = Gauge(
            "carlink_onboard_cloud_refused", "1 while the cloud refuses the car's calls (authentication), else 0",
            registry=r,
        )
        self.cloud_refusals = Counter(
            "carlink_onboard_cloud_refusals", "calls the cloud refused (UNAUTHENTICATED, PERMISSION_DENIED)",
            ["code"], registry=r,
        )
        self.sink_errors = Counter("carlink_onboard_sink_errors", "results the sink failed to write", registry=r)
        self._server = None

    def set_choice(self, task: str, options: list[str], chosen: str) -> None:
        for opt in options:
            self.chosen.labels(task=task, option=opt).set(1.0 if opt == chosen else 0.0)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint; returns the port (useful when 0 picked a free one)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
