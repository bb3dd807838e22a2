"""``carlink cloud serve`` and ``carlink cloud models``."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from carlink.cli import CommandError
from carlink.cli_types import non_negative_float, non_negative_int, positive_int

log = logging.getLogger("carlink.cloud.cli")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("cloud", help="the cloud inference server",
                       description="Serve the zoo's models over gRPC (carlink.v1.Inference), or list them.")
    p.set_defaults(parser=p)
    cloud_sub = p.add_subparsers(dest="cloud_command", metavar="SUBCOMMAND")
    _register_serve(cloud_sub)
    _register_models(cloud_sub)


def _register_serve(sub) -> None:
    s = sub.add_parser(
        "serve", help="run the gRPC inference server",
        description="Run carlink.v1.Inference with the standard health and reflection services. "
                    "TLS is required unless --insecure is given. SIGTERM/SIGINT drain the server: "
                    "health turns NOT_SERVING, new calls are refused, calls in flight get --grace seconds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--models", required=True, type=_csv,
                   help="comma-separated zoo model names to serve (see `carlink cloud models`)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on ([::] or 0.0.0.0 for all)")
    s.add_argument("--port", type=non_negative_int, default=50051, help="port to listen on; 0 picks a free one (logged)")
    sec = s.add_argument_group("security")
    sec.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM)")
    sec.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    sec.add_argument("--client-ca", type=Path, help="CA bundle (PEM); when given, clients need a certificate it signed (mTLS)")
    sec.add_argument("--token-file", type=Path, help="file holding the bearer token every call must carry "
                     "as 'authorization: Bearer <token>' (health checks are exempt)")
    sec.add_argument("--insecure", action="store_true", help="serve plaintext without TLS (only on trusted networks)")
    sec.add_argument("--allow-plaintext-token", action="store_true",
                     help="accept --token-file together with --insecure (the token then crosses the network "
                          "in cleartext: trusted networks only)")
    m = s.add_argument_group("models")
    m.add_argument("--allow-untrained", action="store_true",
                   help="serve torch models without weights (random init); responses say untrained=true")
    m.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                   help="weights file for a model (repeatable); otherwise the torch hub cache is used")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="device for torch models (auto: the GPU when one is visible)")
    m.add_argument("--backend", default="torch", choices=["auto", "opencv", "torch"],
                   help="backend for Darknet models (torch: GPU when present, batched; auto: torch on CUDA, else opencv)")
    m.add_argument("--models-dir", type=Path, default=None,
                   help="Darknet models directory (default: $CARLINK_MODELS_DIR, else ~/.cache/carlink/models)")
    m.add_argument("--workers-per-model", type=positive_int, default=1,
                   help="model instances (threads) per unbatched model, e.g. HOG")
    q = s.add_argument_group("admission and batching")
    q.add_argument("--max-concurrency", type=positive_int, default=32,
                   help="Infer calls in progress at once; more are answered RESOURCE_EXHAUSTED")
    q.add_argument("--max-batch", type=positive_int, default=1, help="largest batch for batchable (torch) models")
    q.add_argument("--batch-wait-ms", type=non_negative_float, default=2.0,
                   help="longest a request waits for others to join its batch")
    q.add_argument("--max-payload-bytes", type=positive_int, default=16 * 1024 * 1024, help="largest image payload")
    q.add_argument("--max-pixels", type=positive_int, default=50_000_000, help="largest image (width*height), from its header")
    q.add_argument("--max-pixels-in-flight", type=positive_int, default=100_000_000,
                   help="decoded pixels all calls together may hold (3 bytes each); a call waits for room "
                        "until its deadline (at most --budget-wait-ms), then hears RESOURCE_EXHAUSTED")
    q.add_argument("--budget-wait-ms", type=non_negative_float, default=1000.0,
                   help="longest a call waits for room in --max-pixels-in-flight")
    q.add_argument("--tasks", type=_csv, default=(), help="comma-separated accepted task names (default: any)")
    q.add_argument("--deadline-skew-ms", type=non_negative_float, default=0.0,
                   help="allowance for the car/server clock offset when checking deadline_unix_us")
    o = s.add_argument_group("operations")
    o.add_argument("--metrics-port", type=non_negative_int, help="serve Prometheus metrics at http://METRICS_HOST:PORT/metrics")
    o.add_argument("--metrics-host", default="127.0.0.1",
                   help="address of the /metrics endpoint (loopback by default; 0.0.0.0 exposes it)")
    o.add_argument("--grace", type=non_negative_float, default=10.0, help="seconds in-flight calls get to finish on SIGTERM")
    o.add_argument("--drain-delay", type=non_negative_float, default=0.0,
                   help="seconds between turning health NOT_SERVING and refusing new calls on SIGTERM")
    o.add_argument("--access-log", action="store_true", help="log every Infer call (JSON), not just refusals")
    s.set_defaults(func=_serve)


def _register_models(sub) -> None:
    mp = sub.add_parser("models", help="list the models of the zoo that the server can serve",
                        description="List the zoo's models: name, family, input size, classes, batching.")
    mp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    mp.set_defaults(func=_models)


def _csv(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _parse_weights(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CommandError(f"--weights {item!r}: expected MODEL=PATH")
        out[name] = Path(path)
    return out


def build_config(args: argparse.Namespace):
    from pydantic import ValidationError

    from carlink.validation import problems

    from .config import ServerConfig

    try:
        return ServerConfig(
            models=args.models, host=args.host, port=args.port, insecure=args.insecure,
            tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.client_ca, token_file=args.token_file,
            allow_plaintext_token=args.allow_plaintext_token, metrics_host=args.metrics_host,
            metrics_port=args.metrics_port, allow_untrained=args.allow_untrained, device=args.device,
            backend=args.backend, models_dir=args.models_dir,
            weights=_parse_weights(args.weights), workers_per_model=args.workers_per_model,
            max_concurrency=args.max_concurrency, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
            max_payload_bytes=args.max_payload_bytes, max_pixels=args.max_pixels,
            max_pixels_in_flight=args.max_pixels_in_flight, budget_wait_ms=args.budget_wait_ms, tasks=args.tasks,
            deadline_skew_ms=args.deadline_skew_ms, grace_s=args.grace, drain_delay_s=args.drain_delay,
        )
    except ValidationError as exc:
        raise CommandError(f"invalid server settings: {'; '.join(problems(exc))}") from None


def _serve(args: argparse.Namespace) -> int:
    from carlink.logs import configure_json_logging

    from .server import InferenceServer, ServerSetupError

    config = build_config(args)
    configure_json_logging("carlink.cloud", logging.DEBUG if args.access_log else logging.INFO)
    try:
        server = InferenceServer(config)
        server.start()
    except (ServerSetupError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    stop_requested = threading.Event()

    def on_signal(signum, frame):
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The main thread only waits; the drain runs here, outside the signal handler.
    while not stop_requested.wait(0.5):
        pass
    server.stop()
    return 0


def _models(args: argparse.Namespace) -> int:
    import json

    from carlink.zoo.registry import list_specs

    specs = list_specs()
    if args.json:
        print(json.dumps([{
            "name": s.name, "family": s.family,
            "input_size": list(s.input_size) if s.input_size else None,
            "classes": [c.label for c in s.classes], "batchable": s.batchable, "description": s.description,
        } for s in specs], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "family", "input", "classes", "batch", "description")
    for s in specs:
        size = f"{s.input_size[0]}x{s.input_size[1]}" if s.input_size else "native"
        table.add_row(s.name, s.family, size, ",".join(c.label for c in s.classes) or "-",
                      "yes" if s.batchable else "no", s.description)
    Console(width=160).print(table)
    return 0
