"""Run independent units of work on Ray: N local workers or an existing cluster, in fixed order.

The profiler and the replay sweep hand this module a list of *units* (small picklable values)
and a *worker factory* (a picklable callable returning an object with ``run(unit) -> result``).
Each Ray worker is an actor that builds its worker once and keeps it (and whatever models it
loads) for the whole run, so a model is loaded once per worker, not once per unit. Results come
back in the units' order whatever order they finish in; ``on_result`` sees each as it arrives
(the profiler appends it to its checkpoint there).

Faults: a worker process that dies is restarted by Ray (``max_restarts``) and the units it held
are run again (``max_task_retries``), so units must be pure: the same unit gives the same result
on any worker. An exception raised *by* a unit is not retried: it is re-raised in the driver
as the original exception. Ctrl-C stops the run: the actors are killed and a Ray started here is
shut down before ``KeyboardInterrupt`` propagates.

Ray is an optional extra (``pip install 'carlink[ray]'``) imported only when a run asks for it.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

log = logging.getLogger("carlink.replay.distributed")

U = TypeVar("U")
R = TypeVar("R")

RAY_EXTRA = "pip install 'carlink[ray]'"
# Two units queued per worker: the next one is already on the worker when the current one ends.
_IN_FLIGHT_PER_WORKER = 2
_GCS_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"
# The driver's settings a worker needs to find what the driver names (the models directory).
FORWARDED_ENV = ("CARLINK_MODELS_DIR",)


class DistributedError(RuntimeError):
    """Ray is missing, the cluster cannot be reached, or a worker died too often."""


class UnitWorker(Protocol[U, R]):
    def run(self, unit: U) -> R: ...


@dataclass(frozen=True)
class RayTarget:
    """Where and how wide to run: ``workers`` local CPUs, or the cluster at ``address``.

    With an address and no ``workers``, one worker per CPU of the cluster.
    """

    workers: int | None = None
    address: str | None = None
    verbose: bool = False  # show the workers' logs in this terminal
    connect_timeout_s: float = 10.0
    max_restarts: int = 3  # per worker; each restart retries the units the worker held

    def __post_init__(self) -> None:
        if self.workers is None and self.address is None:
            raise DistributedError("a Ray run needs --workers N or --ray-address ADDRESS")
        if self.workers is not None and self.workers < 1:
            raise DistributedError(f"--workers must be >= 1, got {self.workers}")
        if self.address is not None and not self.address.strip():
            raise DistributedError("--ray-address is empty")


def import_ray() -> Any:
    """The ``ray`` module, or a DistributedError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise DistributedError(
            f"--workers/--ray-address run on Ray, which is not installed ({exc}); "
            f"install it with: {RAY_EXTRA}") from None
    return ray


_HOST_PORT = re.compile(r"^\[?([^\[\]]+?)\]?:(\d{1,5})$")


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, naming ``address``, unless a Ray cluster answers there.

    ``ray.init`` on an unreachable address retries for minutes and may end the process; one
    gRPC call to the cluster's control store (GCS) answers within ``timeout_s``. Any answer from
    Ray's own service counts, an authentication refusal included (ray.init then reports it).
    ``auto`` (the cluster this node belongs to) is left to Ray.
    """
    if address == "auto":
        return
    if address.startswith("ray://"):
        raise DistributedError(
            f"--ray-address {address}: Ray Client addresses (ray://) are not supported; run carlink "
            "on a node of the cluster and give the head's HOST:PORT (default port 6379) or 'auto'")
    if _HOST_PORT.match(address) is None:
        raise DistributedError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
    import grpc

    channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
    try:
        channel.unary_unary(_GCS_PROBE_METHOD)(b"", timeout=timeout_s)
    except grpc.RpcError as exc:
        if exc.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            reason = ("no answer within " f"{timeout_s:g} s" if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                      else f"{exc.code().name.lower()}: {exc.details()}")
            raise DistributedError(
                f"cannot reach a Ray cluster at {address} ({reason}); start one there with "
                "`ray start --head` or check the address and port") from None
    finally:
        channel.close()


@dataclass(frozen=True)
class RaySession:
    workers: int  # actors to start
    started_here: bool  # a local Ray this run started (and shuts down)


# Ray gives a new node's GCS 30 s to write its port and its raylet 30 s to register; on a busy
# machine (2 cores, a third process busy, a cold disk) a start can miss either once, and the next
# start succeeds. The GCS wait is raised to GCS_PORT_WAIT_S unless the user set Ray's variable.
LOCAL_START_ATTEMPTS = 2
GCS_PORT_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
GCS_PORT_WAIT_S = 90
# What Ray's two start-up timeouts say (it raises bare Exception / RuntimeError for them).
_START_TIMEOUTS = ("timed out during startup", "Timed out waiting for file")


def start_local_ray(num_cpus: int, *, verbose: bool = False, attempts: int = LOCAL_START_ATTEMPTS) -> None:
    """Start a local Ray of ``num_cpus`` CPUs in this process, trying again where Ray timed out
    starting; a DistributedError saying so when every attempt did."""
    ray = import_ray()
    quiet = logging.INFO if verbose else logging.ERROR
    os.environ.setdefault(GCS_PORT_WAIT_ENV, str(GCS_PORT_WAIT_S))
    for attempt in range(1, attempts + 1):
        try:
            # address="local": a new Ray of its own, even where `ray start` runs one on this machine
            # (ray.init() alone would join that one, and refuse num_cpus).
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=verbose,
                     logging_level=quiet)
            return
        except Exception as exc:  # Ray raises a bare Exception or RuntimeError for a slow start
            ray.shutdown()
            if not any(text in str(exc) for text in _START_TIMEOUTS):
                raise
            if attempt == attempts:
                raise DistributedError(
                    f"a local Ray of {num_cpus} CPUs did not start ({attempts} attempts; the GCS given "
                    f"{os.environ[GCS_PORT_WAIT_ENV]} s ({GCS_PORT_WAIT_ENV}), the raylet Ray's 30 s): {exc}"
                ) from None
            log.warning("a local Ray did not start in time (attempt %d of %d): starting it again", attempt, attempts)


@contextmanager
def ray_session(target: RayTarget) -> Iterator[RaySession]:
    """Connect to the cluster or start a local Ray for the run; leave it as it was afterwards.

    A Ray already initialised in this process (a caller's, or a test's) is used as it is.
    """
    ray = import_ray()
    quiet = logging.INFO if target.verbose else logging.ERROR
    started = False
    if not ray.is_initialized():
        if target.address is not None:
            check_reachable(target.address, target.connect_timeout_s)
            ray.init(address=target.address, log_to_driver=target.verbose, logging_level=quiet)
        else:
            start_local_ray(target.workers, verbose=target.verbose)
        started = True
    try:
        workers = target.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        yield RaySession(workers, started)
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class DriverContext:
    """What a worker takes over from the driver, so that paths mean the same on both sides."""

    cwd: str
    env: dict[str, str]

    @classmethod
    def here(cls) -> "DriverContext":
        return cls(os.getcwd(), {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})

    def apply(self) -> None:
        os.environ.update(self.env)
        # relative paths (scenes, traces, profiles) resolve as in the driver where the folder exists
        # on this node; on a cluster, give absolute paths that exist on every node
        if os.path.isdir(self.cwd):
            os.chdir(self.cwd)


class _WorkerHost:
    """The actor: builds its worker once and runs units on it (Ray wraps it lazily)."""

    def __init__(self, make_worker: Callable[[], UnitWorker], context: DriverContext) -> None:
        context.apply()
        self._make_worker = make_worker
        self._worker: UnitWorker | None = None

    def run(self, unit: Any) -> Any:
        # Built on the first unit, not in __init__: an error building it (a model file missing on
        # this node) is then a unit's error, raised in the driver as itself.
        if self._worker is None:
            self._worker = self._make_worker()
        return self._worker.run(unit)

    def pid(self) -> int:
        return os.getpid()


def run_units(
    units: Sequence[U],
    make_worker: Callable[[], UnitWorker],
    target: RayTarget,
    *,
    on_result: Callable[[int, R], None] | None = None,
    weight: Callable[[U], int] | None = None,
    progress_bar: bool = True,
    desc: str = "running",
    unit_name: str = "unit",
) -> list[R]:
    """Run ``make_worker().run(unit)`` for every unit on Ray workers; results in units' order.

    ``weight(unit)`` is what a unit adds to the progress bar (default 1); ``on_result(i, r)``
    is called in the driver as each unit's result arrives (in completion order).
    """
    if not units:
        return []
    with ray_session(target) as session:
        return _schedule(units, make_worker, target, session, on_result, weight, progress_bar, desc, unit_name)


def _schedule(units, make_worker, target, session, on_result, weight, progress_bar, desc, unit_name) -> list:
    from tqdm import tqdm

    ray = import_ray()
    from ray.exceptions import RayActorError, RayTaskError

    host_cls = ray.remote(num_cpus=1, max_restarts=target.max_restarts,
                          max_task_retries=target.max_restarts)(_WorkerHost)
    n_workers = min(session.workers, len(units))
    context = DriverContext.here()
    actors = [host_cls.remote(make_worker, context) for _ in range(n_workers)]
    todo = deque(range(len(units)))
    pending: dict[Any, tuple[int, int]] = {}  # object ref -> (unit index, actor index)
    results: list[Any] = [None] * len(units)

    def submit(a: int) -> None:
        if todo:
            i = todo.popleft()
            pending[actors[a].run.remote(units[i])] = (i, a)

    total = sum(weight(u) for u in units) if weight else len(units)
    try:
        with tqdm(total=total, desc=desc, unit=unit_name, disable=not progress_bar, leave=False) as bar:
            for _ in range(_IN_FLIGHT_PER_WORKER):
                for a in range(n_workers):
                    submit(a)
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                i, a = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except RayTaskError as exc:
                    log.debug("unit %d failed on a worker: %s", i, exc)  # with the worker's traceback
                    cause = getattr(exc, "cause", None)
                    raise (cause if isinstance(cause, Exception) else DistributedError(str(exc))) from None
                except RayActorError as exc:
                    raise DistributedError(
                        f"a Ray worker died {target.max_restarts + 1} times running {unit_name} {i}: "
                        f"{_last_line(exc)}; see the worker logs (--verbose)") from None
                if on_result is not None:
                    on_result(i, results[i])
                bar.update(weight(units[i]) if weight else 1)
                submit(a)
    finally:
        # Ctrl-C or an error: stop every worker now (no restart); a run ends with no actor left
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return results


def _last_line(exc: Exception) -> str:
    """The gist of Ray's multi-line error text: its last non-empty line (the original error)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:400]


__all__ = ["DistributedError", "DriverContext", "FORWARDED_ENV", "RAY_EXTRA", "RaySession", "RayTarget", "UnitWorker", "check_reachable",
           "import_ray", "ray_session", "run_units"]
