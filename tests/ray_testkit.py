"""Helpers for the tests that run on a real local Ray (2 CPUs), never a mock.

Ray is the optional extra ``carlink[ray]``. Where it is not installed the Ray tests skip, saying
so, except under CI (``CI=true``), whose set-up installs the extra: there a missing Ray fails.
"""

from __future__ import annotations

import os
import sys
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


def local_ray() -> Iterator[Any]:
    """Body of a module-scoped fixture: one local Ray for the module's tests, shut down after."""
    ray = require_ray()
    from carlink.replay.distributed import start_local_ray

    start_local_ray(LOCAL_CPUS)  # as `--workers` starts one: tried again where Ray timed out starting
    try:
        yield ray
    finally:
        ray.shutdown()


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
