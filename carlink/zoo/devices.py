"""Which torch device a model runs on: "auto", "cpu" or "cuda[:N]"."""

from __future__ import annotations


class DeviceUnavailableError(RuntimeError):
    """A device was asked for explicitly (e.g. "cuda") but this machine does not have it."""


def resolve_device(requested: str = "auto") -> str:
    """Turn a device request into a concrete torch device string.

    "auto" picks CUDA when torch sees a GPU and the CPU otherwise; "cpu" and "cuda[:N]" are
    taken as given, and "cuda" without a GPU is an error rather than a silent fallback, so a
    misconfigured server fails at start instead of serving slowly.
    """
    import torch  # imported here: HOG-only users never pay for importing torch

    req = requested.strip().lower()
    if req == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if req == "cpu":
        return "cpu"
    if req == "cuda" or req.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {requested!r} requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use device 'auto' or 'cpu'"
            )
        if ":" in req:
            index_text = req.split(":", 1)[1]
            if not index_text.isdigit() or int(index_text) >= torch.cuda.device_count():
                raise DeviceUnavailableError(
                    f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA "
                    "device(s), numbered from 0"
                )
        return req
    raise ValueError(f"unknown device {requested!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
