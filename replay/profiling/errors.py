"""The profiler's two exceptions."""

from __future__ import annotations


class ProfilerError(ValueError):
    """Bad profiler input: an option spec, a task name, a runtime table, a checkpoint."""


class ProfilingStopped(RuntimeError):
    """Raised after ``stop_after`` new measurements (to test and demonstrate resuming)."""
