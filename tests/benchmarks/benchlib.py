"""Helpers shared by the benchmark scripts (run as ``python tests/benchmarks/<subject>.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """$CARLINK_TEST_DATA, else ../shared/data beside the repository (not checked: a default
    for a --data option)."""
    env = os.environ.get("CARLINK_TEST_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root() -> Path:
    """The real data folder (:func:`default_data_dir`); exits with a message where it is missing."""
    root = default_data_dir()
    if not root.is_dir():
        sys.exit(f"test data not found at {root}: set CARLINK_TEST_DATA")
    return root


# -- a cloud server in its own process (client and server do not share a GIL) ---------------------

NOOP_DECODE = "noop-decode"  # a no-op outside the "noop" family: the server decodes its pixels


def _server_main(settings: dict, load_models: bool, noop_decode: bool, torch_threads: int, conn) -> None:
    """Child process: one server until the parent closes the pipe."""
    from carlink.cloud.config import ServerConfig
    from carlink.cloud.server import InferenceServer, load_detectors

    config = ServerConfig(**settings)
    detectors = {}
    if load_models:  # torch only where models need it: it would weigh on a memory measurement
        import torch

        torch.set_num_threads(torch_threads)
        detectors = load_detectors(config)
    if noop_decode:
        from carlink.zoo.base import ModelSpec
        from carlink.zoo.noop import NoopDetector

        detectors[NOOP_DECODE] = [NoopDetector(ModelSpec(NOOP_DECODE, "test", None, (), batchable=True))]
    server = InferenceServer(config, detectors=detectors)
    conn.send(server.start())
    try:
        conn.recv()
    except EOFError:
        pass
    server.stop(grace=2.0)


class ServerProcess:
    """``with ServerProcess(**ServerConfig fields) as port:`` a plaintext loopback server in a spawned
    process. ``load_models=False`` serves only the no-op that decodes (``noop_decode``)."""

    def __init__(self, *, load_models: bool = True, noop_decode: bool = False, torch_threads: int = 1,
                 **settings) -> None:
        import multiprocessing as mp

        settings = {"port": 0, "insecure": True, "max_concurrency": 64, **settings}
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_server_main, args=(settings, load_models, noop_decode, torch_threads, child),
                                 daemon=True)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def __enter__(self) -> int:
        self._proc.start()
        if not self._conn.poll(300):
            raise RuntimeError("server process did not start within 300 s")
        return self._conn.recv()

    def __exit__(self, *exc) -> None:
        self._conn.close()
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()


def stub(port: int):
    """(channel, Inference stub) to a loopback server, sending up to 64 MiB."""
    import grpc

    from carlink.proto import inference_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", [("grpc.max_send_message_length", 64 << 20)])
    return channel, pb_grpc.InferenceStub(channel)
