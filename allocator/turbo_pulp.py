"""TURBO's reference solver path: the same problem built with PuLP and solved by CBC.

This is how the TURBO prototype solves each allocation (a fresh PuLP model per solve, CBC as a
subprocess). carlink keeps it as the benchmark baseline and as an independent cross-check; it is
far too slow to run every frame.
"""

from __future__ import annotations

import warnings

import numpy as np

from carlink.extras import import_extra

pulp = import_extra("pulp", "baselines", "the PuLP/CBC baseline solver (solver 'pulp')")


def solve(bc: np.ndarray, value: np.ndarray, budget: float, time_limit_s: float | None = None) -> np.ndarray:
    """Chosen column per row; RuntimeError when CBC reports no optimal solution."""
    with warnings.catch_warnings():  # PuLP 3 flags the prototype-style API as deprecated for 4.0
        warnings.simplefilter("ignore", DeprecationWarning)
        return _solve(bc, value, budget, time_limit_s)


def _solve(bc: np.ndarray, value: np.ndarray, budget: float, time_limit_s: float | None) -> np.ndarray:
    n_tasks, n_options = bc.shape
    prob = pulp.LpProblem("carlink_allocation", pulp.LpMaximize)
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    for i in range(n_tasks):
        for j in range(n_options):
            if bc[i, j] <= budget:  # inf and over-budget options are left out, as TURBO does
                x[i, j] = pulp.LpVariable(f"x_{i}_{j}", cat=pulp.LpBinary)
    prob += pulp.lpSum(float(value[i, j]) * v for (i, j), v in x.items())
    for i in range(n_tasks):
        prob += pulp.lpSum(v for (r, _), v in x.items() if r == i) == 1, f"one_option_{i}"
    scale = budget if budget > 0 else 1.0  # coefficients in [0, 1], as in the CVXPY model
    prob += pulp.lpSum(float(bc[i, j] / scale) * v for (i, j), v in x.items()) <= (budget / scale), "bandwidth"
    status = prob.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=0.0, gapAbs=0.0, timeLimit=time_limit_s))
    if pulp.LpStatus[status] != "Optimal":
        raise RuntimeError(f"PuLP/CBC found no optimal allocation (status {pulp.LpStatus[status]})")
    choice = np.zeros(n_tasks, dtype=np.int64)
    for (i, j), v in x.items():
        if (v.value() or 0.0) > 0.5:
            choice[i] = j
    return choice
