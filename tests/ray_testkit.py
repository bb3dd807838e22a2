"""Helpers for the tests that run on a real local Ray (2 CPUs), never a mock.

Ray is the optional extra ``carlink[ray]``. Where it is not installed the Ray tests skip, saying
so, except under CI (``CI=true``), whose set-up installs the extra: there a missing Ray fails.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

LOCAL_CPUS = 2
# Python run with `ray` made unimportable: what a user without the extra has.
WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from carlink.cli import main; sys.exit(main(sys.argv[1:]))"


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed in CI: the README's set-up command must install carlink[ray]")
        pytest.skip("Ray is not installed (pip install 'carlink[ray]')")
    return ray


# Seconds a head node may take to start (Ray's own start-up waits are 30 s each), and starts tried.
HEAD_START_S = 180.0
HEAD_START_ATTEMPTS = 2


def local_ray() -> Iterator[Any]:
    """Body of a module-scoped fixture: one local Ray of LOCAL_CPUS CPUs for the module's tests,
    which this process joins as a driver; stopped after them.

    The head runs in a process of its own (`ray start --head --block`), not in pytest's: started
    from a pytest process that had run hundreds of tests (gRPC servers', torch's threads), Ray's
    raylet exited at once, on both tries, in suite runs on a busy machine (Ray's 30 s start-up
    timeouts; the cause inside Ray not found). The commands under test start their own Ray in
    their own fresh process, as a user's do.
    """
    ray = require_ray()
    head = _start_head(LOCAL_CPUS)
    try:
        ray.init(address=head.address, log_to_driver=False, logging_level=logging.ERROR)
        yield ray
    finally:
        ray.shutdown()
        head.stop()


class _Head:
    """A `ray start --head --block` process; its daemons share its fate (killed with it)."""

    def __init__(self, num_cpus: int) -> None:
        with socket.socket() as s:  # a free port for the GCS
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        ray_cli = Path(sys.executable).with_name("ray")
        # A temp dir of its own: `ray start` records itself as this machine's current cluster
        # there (in /tmp/ray a plain ray.init() elsewhere would join it, or its stale record).
        self.temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit
        self.proc = subprocess.Popen(
            [str(ray_cli), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
             f"--temp-dir={self.temp_dir}",
             f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
             "--block"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # as a local ray.init's cluster: no token
        self.output: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            if "Ray runtime started" in line:
                self.started.set()
        self.started.set()  # the process ended: wait no longer

    def wait_started(self, timeout_s: float) -> bool:
        return self.started.wait(timeout_s) and self.proc.poll() is None

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _start_head(num_cpus: int) -> _Head:
    for attempt in range(1, HEAD_START_ATTEMPTS + 1):
        head = _Head(num_cpus)
        if head.wait_started(HEAD_START_S):
            return head
        head.stop()
        if attempt == HEAD_START_ATTEMPTS:
            pytest.fail(f"a local Ray head did not start ({attempt} attempts):\n{''.join(head.output)[-3000:]}")
    raise AssertionError("unreachable")


def gcs_address(ray: Any) -> str:
    """HOST:PORT of the running local Ray, as ``--ray-address`` takes it."""
    return ray.get_runtime_context().gcs_address


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), to find the Ray workers a test's run started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def carlink_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "carlink", *args]
