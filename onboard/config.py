"""The onboard daemon's TOML configuration, validated on load.

Parsing is tomllib (standard library); validation is pydantic, whose errors are turned into one
message per problem that names the file, the key path (e.g. ``tasks[1].deadline_ms``) and what
is wrong with it, so a typo stops the daemon at start-up instead of misbehaving on the road.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from carlink.network import PING_INTERVAL_S
from carlink.validation import StrictModel, problems

if TYPE_CHECKING:
    from carlink.onboard.policy import PolicySettings  # numpy and scipy: loaded only when planning


class ConfigError(ValueError):
    """The configuration file is missing, not TOML, or has bad values (message names the key)."""


class TaskConfig(StrictModel):
    """Car-side settings of one task of the profile; unset values come from the profile."""

    name: str = Field(min_length=1, description="task name as in the profile")
    camera: str | None = Field(default=None, min_length=1, description="camera name, e.g. FRONT")
    onboard_model: str | None = Field(default=None, min_length=1, description="zoo model run on the car")
    deadline_ms: float | None = Field(default=None, gt=0, le=60_000)
    weight: float | None = Field(default=None, ge=0)


class SourceConfig(StrictModel):
    kind: Literal["waymo", "tf-example", "folder", "camera", "synthetic"]
    path: str | None = None  # file or folder; required for all kinds but camera and synthetic
    device: int | str = 0  # camera index or URL for kind = "camera"
    rate_hz: float = Field(default=10.0, gt=0, le=1000, description="pace of folder/synthetic frames")
    realtime: bool = True  # pace frames at their timestamps; False: as fast as possible
    loop: bool = False  # start again at the end (folder, recorded files)
    max_frames: int | None = Field(default=None, ge=1)
    camera_name: str = "FRONT"  # camera name given to single-camera sources (folder, camera)
    # An unreadable source (device gone, no readable record) is retried this often, the daemon
    # reporting itself degraded meanwhile.
    retry_s: float = Field(default=2.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _path_needed(self) -> "SourceConfig":
        if self.kind in ("waymo", "tf-example", "folder") and not self.path:
            raise ValueError(f"source kind {self.kind!r} needs a 'path'")
        return self


class CloudConfig(StrictModel):
    """The cloud server and how the car proves who it is. TLS unless ``insecure`` says otherwise;
    a bearer token over plaintext needs ``allow_plaintext_token`` as well."""

    address: str = Field(default="127.0.0.1:50051", min_length=1, description="host:port")
    insecure: bool = False  # plaintext: only on a trusted network (e.g. loopback tests)
    ca_cert: str | None = None  # PEM file of the CA that signed the server's certificate; unset: system roots
    client_cert: str | None = None  # PEM certificate the car presents (mutual TLS), with client_key
    client_key: str | None = None  # its unencrypted PEM private key
    token_file: str | None = None  # file with the bearer token (server run with --token-file)
    allow_plaintext_token: bool = False  # token_file with insecure = true: the token crosses in cleartext
    ping_interval_s: float = Field(default=PING_INTERVAL_S, gt=0, le=60)
    # Extra time the car allows for the answer to travel back and be fused.
    response_margin_ms: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _tls(self) -> "CloudConfig":
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both 'client_cert' and 'client_key'")
        if self.insecure:
            unused = [k for k in ("ca_cert", "client_cert", "client_key") if getattr(self, k)]
            if unused:
                raise ValueError(f"insecure = true sends plaintext, so {', '.join(unused)} would not be used; "
                                 "remove insecure (TLS is the default) or the TLS keys")
            if self.token_file and not self.allow_plaintext_token:
                raise ValueError("token_file with insecure = true would send the bearer token in cleartext; use TLS "
                                 "(leave insecure unset), or set allow_plaintext_token = true as well (trusted networks only)")
        return self


class EstimatorConfig(StrictModel):
    window_s: float = Field(default=5.0, gt=0, le=600, description="sliding window of samples")
    quantile: float = Field(default=0.1, ge=0, le=1, description="low quantile: conservative")
    initial_bps: float = Field(default=1e6, ge=0, description="estimate before any sample")
    min_bps: float = Field(default=0.0, ge=0)
    stale_after_s: float = Field(default=2.0, gt=0, description="no sample for this long: decay")
    decay_half_life_s: float = Field(default=2.0, gt=0)
    probe: bool = True
    probe_below_fraction: float = Field(
        default=0.5, gt=0, le=1, description="probe when the allocation uses less than this share"
    )
    probe_max_bps: float = Field(default=200_000, ge=0, description="cap on padding traffic")
    probe_model: str = "noop"  # cloud model that answers probe requests (padding, no work)


class PolicyConfig(StrictModel):
    """Which candidate plans carlink's per-frame policy scores (onboard/policy.py). An unset key
    keeps the policy's default (:class:`carlink.onboard.policy.PolicySettings`), the same the
    replay's carlink uses."""

    quantiles: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(
        default=None, min_length=1, description="quantiles of the bandwidth samples planned for")
    runtimes: list[Literal["p50", "p99"]] | None = Field(
        default=None, min_length=1, description="runtime statistics each budget is planned with")

    def settings(self) -> "PolicySettings":
        """The policy's settings: the keys given here, the policy's defaults for the rest."""
        from carlink.onboard.policy import PolicySettings

        return PolicySettings(**{k: tuple(v) for k, v in self.model_dump(exclude_none=True).items()})


class EncoderConfig(StrictModel):
    threads: int = Field(default=2, ge=1, le=64)
    # Cut large full-size JPEGs into one strip per thread, joined losslessly (onboard/jpeg_strips.py).
    strips: bool = True


class SinkConfig(StrictModel):
    path: str = "-"  # "-" is stdout
    include_detections: bool = True


class MetricsConfig(StrictModel):
    port: int = Field(default=0, ge=0, le=65535, description="0 disables the HTTP endpoint")
    address: str = "127.0.0.1"


class DaemonConfig(StrictModel):
    profile: str = Field(min_length=1, description="profile JSON (carlink profile)")
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where on-car models run
    # Which zoo backend runs the on-car models. "auto": OpenCV DNN for the Darknet detectors
    # (the car's default: no torch needed) unless device is "cuda", which asks for torch;
    # models with one backend (HOG: opencv, torchvision: torch) use theirs.
    backend: Literal["auto", "opencv", "torch"] = "auto"
    watchdog: bool = True
    status_every_frames: int = Field(default=10, ge=1)
    # Hold a Linux PM QoS CPU wake-up latency limit (onboard/cpu_latency.py); None leaves it alone.
    cpu_wakeup_latency_us: int | None = Field(default=None, ge=0, le=2**31 - 1)


class OnboardConfig(StrictModel):
    """The whole file. ``allocator`` is the allocator's own table (carlink.allocator.solve
    AllocatorConfig: solver, mip_solver, cvxpy_max_tasks, headroom, switching_penalty);
    ``policy`` the candidates the per-frame policy scores (:class:`PolicyConfig`)."""

    daemon: DaemonConfig
    source: SourceConfig
    cloud: CloudConfig = CloudConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    policy: PolicyConfig = PolicyConfig()
    encoder: EncoderConfig = EncoderConfig()
    sink: SinkConfig = SinkConfig()
    metrics: MetricsConfig = MetricsConfig()
    allocator: dict = Field(default_factory=dict)
    # Empty: every task of the profile, as the profile defines it.
    tasks: list[TaskConfig] = Field(default_factory=list)
    # Where relative paths in the file are resolved; set by load_config, not by the file.
    base_dir: str = "."

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        seen: set[str] = set()
        for t in tasks:
            if t.name in seen:
                raise ValueError(f"task name {t.name!r} appears twice")
            seen.add(t.name)
        return tasks

    @field_validator("allocator")
    @classmethod
    def _allocator_table(cls, table: dict) -> dict:
        from carlink.allocator.solve import AllocatorConfig

        AllocatorConfig.from_dict(table)  # its ValueError names the bad key
        return table

    def allocator_config(self):
        from carlink.allocator.solve import AllocatorConfig

        return AllocatorConfig.from_dict(self.allocator)

    def resolve(self, path: str) -> Path:
        """A path from the file, relative paths taken from the file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def profile_path(self) -> Path:
        return self.resolve(self.daemon.profile)


def parse_config(data: dict, where: str = "<config>", base_dir: str | Path = ".") -> OnboardConfig:
    """Validate an already-parsed TOML document."""
    try:
        return OnboardConfig.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as err:
        raise ConfigError("\n".join(f"{where}: {problem}" for problem in problems(err))) from None


def load_config(path: str | Path) -> OnboardConfig:
    """Read and validate a TOML config file; raise ConfigError naming the key on bad input."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte offset {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    if "base_dir" in data:
        raise ConfigError(f"{p}: base_dir: unknown key")
    return parse_config(data, where=str(p), base_dir=p.resolve().parent)
