"""The per-frame problem as a CVXPY model: boolean choices, Parameters, compiled once per shape.

    maximise    value @ x
    subject to  A @ x == 1          (one option per task; A is a constant sparse matrix)
                cost @ x <= 1       (cost = critical bandwidth / planned bandwidth)
                x <= avail          (0 for infeasible options and padding)
                x boolean

``value``, ``cost`` and ``avail`` are Parameters, so the problem is DPP: CVXPY canonicalises it
once per shape (tasks x options) and every frame only writes new numbers into the Parameters.
Bandwidth is folded into ``cost`` (``bc / B``) rather than kept as a separate Parameter ``B``:
all constraint coefficients then lie in [0, 1], which keeps MIP solvers' absolute feasibility
tolerances meaningful whatever the units. Options needing more than ``B`` are made unavailable.

Two ways to re-solve (``fast=True`` is the default):

- ``problem.solve(...)``: the public API. Each call still re-runs CVXPY's parameter application
  and solution retrieval in Python (about 1-3 ms at 5x45 on this machine, measured in
  tests/benchmarks/allocator.py), more than the MIP itself.
- CVXPY's documented compile-once pattern: ``problem.get_problem_data(solver)`` returns the
  solver's data and the solving chain; each frame we refresh the data from the new Parameter
  values through the cached parametrised program (``param_prog.apply_parameters``, as
  ``get_problem_data`` does on a cache hit) and call ``chain.solve_via_data``; the solution is
  read from the primal vector, whose layout is given by the inverse data. This skips the
  per-call problem-level bookkeeping, not the canonicalisation semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

# Solver options for an exact optimum (relative and absolute MIP gap 0) per CVXPY solver name.
EXACT_OPTIONS: dict[str, dict[str, object]] = {
    "HIGHS": {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0},
    "SCIP": {"scip_params": {"limits/gap": 0.0, "limits/absgap": 0.0}},
    "GLPK_MI": {},  # GLPK's own default mip_gap is already 0
    "SCIPY": {"scipy_options": {"mip_rel_gap": 0.0}},
    "CBC": {"allowableGap": 0.0, "allowableFractionGap": 0.0},
}

MIP_SOLVERS = ("HIGHS", "SCIP", "GLPK_MI", "SCIPY", "CBC", "GUROBI", "CPLEX", "MOSEK", "XPRESS")


def installed_mip_solvers() -> list[str]:
    """The MIP-capable CVXPY solvers installed here, in a fixed order (HIGHS first)."""
    have = set(cp.installed_solvers())
    return [s for s in MIP_SOLVERS if s in have]


@dataclass(frozen=True)
class CvxSolution:
    choice: np.ndarray  # (T,) chosen column per row
    status: str


class CvxModel:
    """One compiled problem for one (tasks, options) shape and one MIP solver."""

    def __init__(self, n_tasks: int, n_options: int, solver: str = "HIGHS", fast: bool = True) -> None:
        if n_tasks < 1 or n_options < 1:
            raise ValueError(f"a CVXPY model needs >= 1 task and option, got {n_tasks}x{n_options}")
        if solver not in installed_mip_solvers():
            raise ValueError(f"MIP solver {solver!r} is not installed; installed: {installed_mip_solvers()}")
        self.shape = (n_tasks, n_options)
        self.solver = solver
        self.fast = fast
        n = n_tasks * n_options
        self.x = cp.Variable(n, boolean=True, name="x")
        self.value = cp.Parameter(n, name="value")
        self.cost = cp.Parameter(n, nonneg=True, name="cost")
        self.avail = cp.Parameter(n, nonneg=True, name="avail")
        one_per_task = sp.kron(sp.eye(n_tasks), np.ones((1, n_options)), format="csr")
        self.problem = cp.Problem(
            cp.Maximize(self.value @ self.x),
            [one_per_task @ self.x == 1, self.cost @ self.x <= 1, self.x <= self.avail],
        )
        assert self.problem.is_dpp()
        self.options = dict(EXACT_OPTIONS.get(solver, {}))

    def _set(self, bc: np.ndarray, value: np.ndarray, budget: float) -> None:
        if bc.shape != self.shape or value.shape != self.shape:
            raise ValueError(f"model compiled for shape {self.shape}, got bc {bc.shape} value {value.shape}")
        ok = bc <= budget  # inf and over-budget options are unavailable
        with np.errstate(divide="ignore", invalid="ignore"):
            cost = np.where(ok, bc / budget if budget > 0 else 0.0, 0.0)
        self.cost.value = cost.ravel()
        self.value.value = np.where(ok, value, 0.0).ravel()
        self.avail.value = ok.astype(float).ravel()

    def solve(self, bc: np.ndarray, value: np.ndarray, budget: float) -> CvxSolution:
        self._set(np.asarray(bc, dtype=float), np.asarray(value, dtype=float), budget)
        if self.fast:
            x, status = self._solve_direct()
        else:
            self.problem.solve(solver=self.solver, **self.options)
            x, status = self.x.value, self.problem.status
        if x is None or status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE, "optimal"):
            raise RuntimeError(f"CVXPY/{self.solver} found no solution (status {status})")
        return CvxSolution(np.argmax(np.asarray(x).reshape(self.shape), axis=1), str(status))

    def _solve_direct(self) -> tuple[np.ndarray | None, str]:
        """CVXPY's compile-once pattern: get_problem_data (a cache hit after the first frame, which
        only applies the new Parameter values), the solver interface, then the chain's inversion."""
        data, chain, inverse = self.problem.get_problem_data(self.solver, solver_opts=self.options)
        raw = chain.solver.solve_via_data(data, False, False, self.options)
        solution = chain.invert(raw, inverse)
        if solution.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return None, str(solution.status)
        return solution.primal_vars[self.x.id], str(solution.status)
