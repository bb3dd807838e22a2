"""Settings of the cloud inference server, validated once at start (pydantic)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from carlink.validation import StrictModel

TASK_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ServerConfig(StrictModel):
    """Everything ``carlink cloud serve`` can be told. Invalid combinations fail at start."""

    models: tuple[str, ...] = Field(min_length=1, description="zoo names of the models to serve")
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535, description="0 picks a free port")
    # Security: TLS unless insecure is asked for explicitly.
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None  # set: clients must present a certificate signed by it (mTLS)
    token_file: Path | None = None  # set: every call needs "authorization: Bearer <token>"
    # A token over plaintext can be read on the wire: refused unless this says so as well.
    allow_plaintext_token: bool = False
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", min_length=1, description="/metrics listens here (loopback by default)")
    # Models.
    allow_untrained: bool = False
    device: str = "auto"
    weights: dict[str, Path] = Field(default_factory=dict, description="model name -> weights file")
    # Darknet models: "torch" (GPU when present, batched), "opencv" (CPU) or "auto" (torch on CUDA, else opencv).
    backend: Literal["auto", "opencv", "torch"] = "torch"
    models_dir: Path | None = Field(None, description="Darknet models directory (else CARLINK_MODELS_DIR, else the user cache)")
    workers_per_model: int = Field(1, ge=1, le=64, description="model instances for unbatched models")
    # Admission and batching.
    max_concurrency: int = Field(32, ge=1, le=4096, description="Infer calls in progress at once")
    max_batch: int = Field(1, ge=1, le=256)
    batch_wait_ms: float = Field(2.0, ge=0.0, le=1000.0)
    # Input limits, checked before decoding.
    max_payload_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(50_000_000, ge=1)
    max_side: int = Field(16384, ge=1)
    # All concurrent requests together: decoded images never exceed 3 bytes x this (cloud/budget.py).
    max_pixels_in_flight: int = Field(100_000_000, ge=1, description="decoded pixels held by all calls at once")
    budget_wait_ms: float = Field(1000.0, ge=0.0, le=60_000.0,
                                  description="longest a call waits for pixel budget (never past its deadline)")
    tasks: tuple[str, ...] = Field(default=(), description="accepted task names; empty: any well-formed name")
    # Time.
    deadline_skew_ms: float = Field(
        0.0, ge=0.0, description="allowance for car/server wall-clock offset when checking deadline_unix_us")
    grace_s: float = Field(10.0, ge=0.0, description="time in-flight calls get to finish on SIGTERM")
    drain_delay_s: float = Field(
        0.0, ge=0.0, description="time between reporting NOT_SERVING and refusing new calls on SIGTERM")

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        for t in tasks:
            if not TASK_NAME.match(t):
                raise ValueError(f"task name {t!r} must match {TASK_NAME.pattern}")
        return tasks

    @model_validator(mode="after")
    def _budget(self) -> "ServerConfig":
        if self.max_pixels > self.max_pixels_in_flight:
            raise ValueError(f"--max-pixels {self.max_pixels} exceeds --max-pixels-in-flight {self.max_pixels_in_flight}: "
                             "an image of the largest size allowed could never be decoded")
        return self

    @model_validator(mode="after")
    def _security(self) -> "ServerConfig":
        if self.insecure:
            if self.tls_cert or self.tls_key or self.client_ca:
                raise ValueError("--insecure cannot be combined with --tls-cert/--tls-key/--client-ca")
            if self.token_file is not None and not self.allow_plaintext_token:
                raise ValueError("--token-file with --insecure: every car's bearer token would cross the network "
                                 "in cleartext; serve TLS, or add --allow-plaintext-token (trusted networks only)")
        elif self.tls_cert is None or self.tls_key is None:
            raise ValueError("TLS needs both --tls-cert and --tls-key (or pass --insecure explicitly "
                             "to serve plaintext, e.g. on loopback)")
        for name in ("tls_cert", "tls_key", "client_ca", "token_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name.replace('_', '-')} file not found: {path}")
        return self

    def task_allowed(self, task: str) -> bool:
        return task in self.tasks if self.tasks else bool(TASK_NAME.match(task))
