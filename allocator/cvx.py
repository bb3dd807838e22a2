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

Three ways to re-solve, fastest first (``fast=True``, the default, picks the first that applies):

- GLPK_MI, compiled data refreshed in place (:class:`_GlpkData`): CVXPY compiles the problem once
  (``problem.get_problem_data``); its parametrised cone program holds the affine map from the
  Parameter vector to the solver's numbers (``ParamConeProg.q`` and ``reduced_A``, with a fixed
  sparsity pattern). Each frame we build the Parameter vector, apply those two matrices (two
  sparse mat-vecs) and scatter the results into the fixed cvxopt structures that CVXPY's GLPK_MI
  interface would build (equalities ``-A[:zero]``, ``b[:zero]``; inequalities ``-A[zero:]``,
  ``b[zero:]``), then call ``cvxopt.glpk.ilp`` as that interface does. The problem is still
  defined by the CVXPY model and every number comes from its compiled form (a test checks that
  the refreshed data equals ``get_problem_data``'s); what is skipped is CVXPY's generic per-call
  rebuilding of scipy matrices (~1 ms at 5x45 on this machine, more than GLPK's own solve).
- Any other solver: ``get_problem_data`` (a cache hit that re-applies the Parameters),
  ``solver.solve_via_data`` and ``chain.invert`` (CVXPY's documented compile-once pattern).
- ``fast=False``: ``problem.solve(...)``, the public API (for cross-checks).

:class:`CvxSolver` shrinks what the MIP solver sees: options dominated within their task (no
less bandwidth, no more value) can never be needed for an optimum, so each frame keeps only the
staircase options, packed left into a width bucket (powers of two up to the profile's width);
one model is compiled per bucket, so compilation is still reused frame after frame.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterator

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.solvers import defines as _cvx_defines

from carlink.extras import missing_extra

from .utility import staircase_mask

# Solver options for an exact optimum per CVXPY solver name: relative and absolute MIP gap 0, and
# feasibility tolerances tightened from ~1e-6 to 1e-9 (the budget row has coefficients in [0, 1]
# and right-hand side 1, so a 1e-6 tolerance would let a choice exceed the budget by 1e-6 of it).
# HiGHS's log is switched off (it otherwise prints to stdout/stderr during some solves).
EXACT_OPTIONS: dict[str, dict[str, object]] = {
    "HIGHS": {
        "mip_rel_gap": 0.0,
        "mip_abs_gap": 0.0,
        "mip_feasibility_tolerance": 1e-9,
        "primal_feasibility_tolerance": 1e-9,
        "output_flag": False,
        "log_to_console": False,
    },
    "SCIP": {
        "scip_params": {"limits/gap": 0.0, "limits/absgap": 0.0, "numerics/feastol": 1e-9, "display/verblevel": 0}
    },
    "GLPK_MI": {"mip_gap": 0.0, "tol_int": 1e-9},
    "SCIPY": {"scipy_options": {"mip_rel_gap": 0.0}},  # scipy.optimize.milp takes no tolerance options
    "CBC": {"allowableGap": 0.0, "allowableFractionGap": 0.0},
}

# HiGHS (through highspy and through scipy) prints a debug line ("HighsMipSolverData::
# transformNewIntegerFeasibleSolution tmpSolver.run();") with printf during some MIP solves, which
# no option switches off; its solves run with file descriptors 1 and 2 pointed at /dev/null.
_PRINTS_DESPITE_OPTIONS = frozenset({"HIGHS", "SCIPY"})


@contextlib.contextmanager
def _silenced_stdout() -> Iterator[None]:
    """Point file descriptors 1 and 2 at /dev/null for the duration (C-level prints included)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


MIP_SOLVERS = ("HIGHS", "SCIP", "GLPK_MI", "SCIPY", "CBC", "GUROBI", "CPLEX", "MOSEK", "XPRESS")
# Open-source MIP solvers that an extra of carlink brings (GLPK_MI's cvxopt and HiGHS's highspy are
# runtime dependencies: the default path needs GLPK_MI, see allocator/solve.py).
SOLVER_EXTRAS = {"SCIP": ("pyscipopt", "solvers")}


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
            if solver in SOLVER_EXTRAS:
                package, extra = SOLVER_EXTRAS[solver]
                raise missing_extra(f"MIP solver {solver!r}", package, extra)
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
        self._glpk: _GlpkData | None = None

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
        if self.solver == "GLPK_MI":
            if self._glpk is None:
                self._glpk = _GlpkData(self)
            return self._glpk.solve()
        return self._solve_via_chain()

    def _solve_via_chain(self) -> tuple[np.ndarray | None, str]:
        """CVXPY's compile-once pattern: get_problem_data (a cache hit after the first frame, which
        only applies the new Parameter values), the solver interface, then the chain's inversion."""
        data, chain, inverse = self.problem.get_problem_data(self.solver, solver_opts=self.options)
        quiet = _silenced_stdout() if self.solver in _PRINTS_DESPITE_OPTIONS else contextlib.nullcontext()
        with quiet:
            raw = chain.solver.solve_via_data(data, False, False, self.options)
        solution = chain.invert(raw, inverse)
        if solution.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return None, str(solution.status)
        return solution.primal_vars[self.x.id], str(solution.status)



def width_buckets(n_options: int) -> list[int]:
    """The packed widths models are compiled for: powers of two below ``n_options``, and it."""
    widths = []
    w = 4
    while w < n_options:
        widths.append(w)
        w *= 2
    return widths + [n_options]


class CvxSolver:
    """The CVXPY path for a (tasks x options) problem: staircase pruning, then the CVXPY model
    compiled for the smallest width bucket that holds every task's staircase (see the module
    docstring). ``prune=False`` solves the full problem with one model (for comparisons)."""

    def __init__(self, n_tasks: int, n_options: int, solver: str = "GLPK_MI", prune: bool = True) -> None:
        if n_tasks < 1 or n_options < 1:
            raise ValueError(f"a CVXPY model needs >= 1 task and option, got {n_tasks}x{n_options}")
        self.shape = (n_tasks, n_options)
        self.solver = solver
        self.widths = width_buckets(n_options) if prune else [n_options]
        self._models: dict[int, CvxModel] = {}

    def model(self, width: int) -> CvxModel:
        if width not in self._models:
            self._models[width] = CvxModel(self.shape[0], width, solver=self.solver)
        return self._models[width]

    def prepare(self) -> float:
        """Compile every bucket's model now (a trivial solve each); returns the milliseconds taken."""
        import time

        start = time.perf_counter()
        for width in self.widths:
            bc = np.zeros((self.shape[0], width))
            self.model(width).solve(bc, np.zeros_like(bc), 1.0)
        return (time.perf_counter() - start) * 1000.0

    def solve(self, bc: np.ndarray, value: np.ndarray, budget: float) -> CvxSolution:
        bc = np.asarray(bc, dtype=float)
        value = np.asarray(value, dtype=float)
        if bc.shape != self.shape or value.shape != self.shape:
            raise ValueError(f"solver built for shape {self.shape}, got bc {bc.shape} value {value.shape}")
        if len(self.widths) == 1:
            return self.model(self.widths[0]).solve(bc, value, budget)
        bc = np.where(bc <= budget, bc, np.inf)
        live = staircase_mask(bc, value)
        n_live = live.sum(axis=1)
        if not n_live.all():
            raise ValueError(f"no feasible option for row {int(np.argmin(n_live))}: every option needs more than the budget")
        width = next(w for w in self.widths if w >= n_live.max())
        # each row's staircase columns first, in column order; the rest of the bucket is padding
        order = np.argsort(~live, axis=1, kind="stable")[:, :width]
        kept = np.take_along_axis(live, order, axis=1)
        packed_bc = np.where(kept, np.take_along_axis(bc, order, axis=1), np.inf)
        packed_value = np.where(kept, np.take_along_axis(value, order, axis=1), 0.0)
        sol = self.model(width).solve(packed_bc, packed_value, budget)
        return CvxSolution(order[np.arange(self.shape[0]), sol.choice], sol.status)

class _GlpkData:
    """GLPK_MI's problem data for one compiled :class:`CvxModel`, refreshed from the Parameters.

    Built from ``get_problem_data``'s parametrised cone program (see the module docstring). The
    model's variable must be the program's whole variable vector (true for this model: checked).
    """

    def __init__(self, model: CvxModel) -> None:
        import cvxopt

        self._cvxopt = cvxopt
        data, _, _ = model.problem.get_problem_data("GLPK_MI", solver_opts=model.options)
        prog = data[_cvx_defines.PARAM_PROB] if hasattr(_cvx_defines, "PARAM_PROB") else data["param_prob"]
        n = model.x.size
        if prog.x.size != n or prog.var_id_to_col.get(model.x.id) != 0:
            raise RuntimeError("compiled program's variables are not the model's x: cannot refresh in place")
        dims = prog.cone_dims
        if dims.soc or dims.psd or dims.exp or getattr(dims, "p3d", None):
            raise RuntimeError("compiled program has non-linear cones: cannot refresh in place")
        self.model = model
        self.n = n
        self.n_eq = dims.zero
        prog.reduced_A.cache()
        self.q = sp.csr_matrix(prog.q)  # (n + 1, P + 1): objective and its offset
        self.a_map = sp.csr_matrix(prog.reduced_A.reduced_mat)  # (nnz, P + 1): A and b values
        indices, indptr, (n_rows, n_cols) = prog.reduced_A.problem_data_index
        assert n_cols == n + 1
        rows = np.asarray(indices, dtype=np.int64)
        cols = np.repeat(np.arange(n_cols), np.diff(indptr))
        in_a, eq = cols < n, rows < self.n_eq
        self.n_ineq = n_rows - self.n_eq
        # conic form A x + b in K; cvxopt wants A_eq x = b_eq (A_eq = -A[:zero]) and G x <= h
        self.sel_aeq, self.sel_g = np.flatnonzero(in_a & eq), np.flatnonzero(in_a & ~eq)
        self.sel_beq, self.sel_h = np.flatnonzero(~in_a & eq), np.flatnonzero(~in_a & ~eq)
        self.aeq_ij = (cvxopt.matrix(rows[self.sel_aeq].tolist(), tc="i"), cvxopt.matrix(cols[self.sel_aeq].tolist(), tc="i"))
        self.g_ij = (cvxopt.matrix((rows[self.sel_g] - self.n_eq).tolist(), tc="i"), cvxopt.matrix(cols[self.sel_g].tolist(), tc="i"))
        self.beq_rows = rows[self.sel_beq]
        self.h_rows = rows[self.sel_h] - self.n_eq
        self.params = [(p, prog.param_id_to_col[p.id]) for p in model.problem.parameters()]
        self.const_col = prog.param_id_to_col[-1]  # CVXPY's constant-offset column
        self.bools = set(range(n))  # every entry of x is boolean
        self.options = {"msg_lev": "GLP_MSG_OFF", **model.options}
        self.p_size = prog.total_param_size

    def data(self) -> dict[str, object]:
        """This frame's (c, G, h, A, b) as numpy/scipy arrays, for comparison with CVXPY's own."""
        c, g, h, a, b = self._arrays()
        shape_a, shape_g = (self.n_eq, self.n), (self.n_ineq, self.n)
        a_m = sp.csc_matrix((a, (np.array(self.aeq_ij[0]).ravel(), np.array(self.aeq_ij[1]).ravel())), shape=shape_a)
        g_m = sp.csc_matrix((g, (np.array(self.g_ij[0]).ravel(), np.array(self.g_ij[1]).ravel())), shape=shape_g)
        return {"c": c, "G": g_m, "h": h, "A": a_m, "b": b}

    def _arrays(self) -> tuple[np.ndarray, ...]:
        pvec = np.zeros(self.p_size + 1)
        for param, col in self.params:
            pvec[col : col + param.size] = param.value
        pvec[self.const_col] = 1.0
        c = self.q @ pvec
        vals = self.a_map @ pvec
        b = np.zeros(self.n_eq)
        b[self.beq_rows] = vals[self.sel_beq]
        h = np.zeros(self.n_ineq)
        h[self.h_rows] = vals[self.sel_h]
        return c[: self.n], -vals[self.sel_g], h, -vals[self.sel_aeq], b

    def solve(self) -> tuple[np.ndarray | None, str]:
        cvxopt = self._cvxopt
        c, g, h, a, b = self._arrays()
        g_sp = cvxopt.spmatrix(cvxopt.matrix(g), *self.g_ij, (self.n_ineq, self.n))
        a_sp = cvxopt.spmatrix(cvxopt.matrix(a), *self.aeq_ij, (self.n_eq, self.n))
        saved = dict(cvxopt.glpk.options)
        cvxopt.glpk.options.update(self.options)
        try:
            status, x = cvxopt.glpk.ilp(cvxopt.matrix(c), g_sp, cvxopt.matrix(h), a_sp, cvxopt.matrix(b), set(), self.bools)
        except ValueError as exc:  # cvxopt's way of reporting a malformed problem
            return None, f"error: {exc}"
        finally:
            cvxopt.glpk.options.clear()
            cvxopt.glpk.options.update(saved)
        if status != "optimal" or x is None:
            return None, str(status)
        return np.array(x).ravel(), cp.OPTIMAL
