"""carlink.allocator: utility curves and solvers for the per-frame bandwidth allocation.

Pure computation: no I/O, no torch, no networking. The front is :class:`Allocator`
(allocator/solve.py); see DESIGN.md, "The allocation".
"""

from .solve import Allocator, AllocatorConfig, Headroom, allocate
from .utility import OptionTable, Step, critical_bandwidth, service_level, staircase

__all__ = [
    "Allocator",
    "AllocatorConfig",
    "Headroom",
    "OptionTable",
    "Step",
    "allocate",
    "critical_bandwidth",
    "service_level",
    "staircase",
]
