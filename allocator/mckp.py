"""The exact fast solver: multiple-choice knapsack by Lagrangian reduction and a Pareto DP.

Two implementations of the same algorithm and rules, chosen by size:

- car scale (up to ``SMALL_TASKS`` tasks, :func:`_solve_small`): plain Python lists. At 5 tasks x
  45 options the staircases hold ~11 options each and the DP ~100 states, so numpy's per-call
  overhead (~1-3 us per call, ~100 calls a solve) would cost more than the arithmetic; measured
  ~3x faster than the numpy version at 5x45 (tests/benchmarks/allocator.py).
- beyond (the numpy stages below): vectorised over states and options.

Problem: pick one column per row of ``(bc, value)`` (T x K; ``bc = inf`` marks an option that
cannot be picked) to maximise the sum of values subject to ``sum(bc) <= budget``.

How, in four vectorised stages:

1. Staircase: drop options dominated within their task (no less bandwidth, no more value).
2. Lagrangian bound: for any ``lam >= 0``, ``OPT <= lam * budget + sum_i max_j(v_ij - lam * b_ij)``
   (weak duality). ``lam`` is found by bisection on the subgradient; at the optimal ``lam`` the
   bound equals the LP relaxation. The choice at the feasible end of the bisection is a feasible
   incumbent.
3. Reduction: forcing option j of task i costs its reduced cost
   ``r_ij = max_j'(v_ij' - lam b_ij') - (v_ij - lam b_ij)``, so the option is dropped when
   ``bound - r_ij`` is below the incumbent. Most tasks keep one option.
4. Pareto DP over tasks in the given order on the remaining options: states (bandwidth, value)
   that are dominated, over budget, or whose Lagrangian bound is below the incumbent are dropped.

Exactness in floating point: states accumulate bandwidth and value by adding task by task in row
order, which is exactly how :func:`brute_force` (and :func:`objective`) sum, and rounding is
monotone, so dominance and budget tests are exact. Bounds prune only with a margin of
``1e-9 * (1 + |bound|)``, far above their rounding error, so they never drop an optimum.

Tie-breaking (deterministic): among allocations with the maximal value sum, the smallest bandwidth
sum wins; among those, the lexicographically smallest vector of option columns (row order).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from .utility import staircase_mask

_BISECTION_STEPS = 30
_SMALL_STATES = 1e7  # up to this many combinations of staircase options: plain DP, no bounds (measured faster)
_MARGIN = 1e-9
_GREEDY_STEPS = 32
_FLOOR_STEPS = (0.125, 0.5, 1.0)  # fractions of the bound-incumbent gap to try as floors
SMALL_TASKS = 12  # up to this many tasks: the plain-Python solver (measured: 2.5x faster at 10x45, slower at 20x45)


@dataclass(frozen=True)
class MCKPSolution:
    choice: np.ndarray  # (T,) chosen column per row
    value: float  # canonical sum of the chosen values (row order)
    bandwidth: float  # canonical sum of the chosen bandwidths (row order)
    bound: float  # Lagrangian upper bound used (>= value)


def objective(bc: np.ndarray, value: np.ndarray, choice: np.ndarray) -> tuple[float, float]:
    """(value sum, bandwidth sum) of a choice, added in row order (the canonical sums)."""
    rows = np.arange(len(choice))
    v = 0.0
    b = 0.0
    for x in value[rows, choice].tolist():
        v += x
    for x in bc[rows, choice].tolist():
        b += x
    return v, b


def objective_sum(xs: np.ndarray) -> float:
    """Sum in order (left to right), as the solvers accumulate."""
    total = 0.0
    for x in xs.tolist():
        total += x
    return total


def brute_force(bc: np.ndarray, value: np.ndarray, budget: float) -> MCKPSolution:
    """Enumerate every combination (small instances only): the reference for the tests."""
    n_tasks = bc.shape[0]
    cols = [[j for j in range(bc.shape[1]) if np.isfinite(bc[i, j])] for i in range(n_tasks)]
    best: tuple[float, float, tuple[int, ...]] | None = None
    for combo in itertools.product(*cols):  # lexicographic order: first found wins ties
        v = 0.0
        b = 0.0
        for i, j in enumerate(combo):
            v += float(value[i, j])
            b += float(bc[i, j])
        if b > budget:
            continue
        if best is None or v > best[0] or (v == best[0] and b < best[1]):
            best = (v, b, combo)
    if best is None:
        raise ValueError("no feasible allocation: some task has no option within the budget")
    return MCKPSolution(np.array(best[2], dtype=np.int64), best[0], best[1], best[0])


def _lagrangian(bc: np.ndarray, value: np.ndarray, budget: float) -> tuple[float, np.ndarray]:
    """Bisect for ``lam`` minimising the Lagrangian bound; return (lam, feasible argmax choice).

    ``bc`` and ``value`` hold only finite staircase options (others: bc inf, value -inf).
    """
    rows = np.arange(bc.shape[0])
    bc0 = np.where(np.isfinite(bc), bc, 0.0)

    def pick(lam: float) -> np.ndarray:
        return np.argmax(value - lam * bc0, axis=1)

    choice = pick(0.0)
    if bc0[rows, choice].sum() <= budget:
        return 0.0, choice
    # Upper end: a lam at which every task prefers its cheapest option (the staircase's first
    # step): twice the steepest value-per-bit gain over that step.
    first = np.argmin(np.where(np.isfinite(bc), bc, np.inf), axis=1)
    b_first = bc0[rows, first][:, None]
    v_first = value[rows, first][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = (value - v_first) / (bc0 - b_first)
    gain = gain[np.isfinite(bc) & (bc0 > b_first) & np.isfinite(gain)]
    hi = float(gain.max()) * 2.0 if gain.size else 1.0
    lo = 0.0
    best_feasible = pick(hi)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        c = pick(mid)
        if bc0[rows, c].sum() <= budget:
            hi, best_feasible = mid, c
        else:
            lo = mid
    return hi, best_feasible


def _greedy_fill(bc: np.ndarray, value: np.ndarray, budget: float, choice: np.ndarray) -> np.ndarray:
    """Improve a feasible choice: repeatedly make the single upgrade of largest value gain that
    fits in the bandwidth left. A better incumbent lets the bounds prune more."""
    rows = np.arange(bc.shape[0])
    choice = choice.copy()
    for _ in range(_GREEDY_STEPS):
        cur_b = bc[rows, choice]
        left = budget - objective_sum(cur_b)
        with np.errstate(invalid="ignore"):
            fits = bc - cur_b[:, None] <= left
        gain = np.where(fits, value - value[rows, choice][:, None], 0.0)
        flat = int(np.argmax(gain))
        if gain.flat[flat] <= 0:
            break
        i, j = divmod(flat, bc.shape[1])
        old = choice[i]
        choice[i] = j
        if objective_sum(bc[rows, choice]) > budget:  # rounding at the edge: keep what fits
            choice[i] = old
            break
    return choice


def solve(bc: np.ndarray, value: np.ndarray, budget: float) -> MCKPSolution:
    """Exact optimum of the multiple-choice knapsack (see the module docstring for the rules)."""
    bc = np.asarray(bc, dtype=float)
    value = np.asarray(value, dtype=float)
    if bc.shape != value.shape or bc.ndim != 2:
        raise ValueError(f"bc {bc.shape} and value {value.shape} must be equal 2-D shapes")
    if not (budget >= 0):  # also rejects NaN
        raise ValueError(f"budget must be >= 0, got {budget!r}")
    n_tasks = bc.shape[0]
    if n_tasks == 0:
        return MCKPSolution(np.zeros(0, dtype=np.int64), 0.0, 0.0, 0.0)
    if n_tasks <= SMALL_TASKS:
        return _solve_small(bc.tolist(), value.tolist(), float(budget))
    return _solve_numpy(bc, value, budget)


def _solve_numpy(bc: np.ndarray, value: np.ndarray, budget: float) -> MCKPSolution:
    """The vectorised stages (for many tasks); same answers as :func:`_solve_small`."""
    n_tasks = bc.shape[0]
    bc = np.where(bc <= budget, bc, np.inf)  # options over budget alone can never be picked
    live = staircase_mask(bc, value)
    if not live.any(axis=1).all():
        bad = int(np.flatnonzero(~live.any(axis=1))[0])
        raise ValueError(f"no feasible option for row {bad}: every option needs more than the budget")
    cheapest = np.where(live, bc, np.inf).min(axis=1)
    if objective_sum(cheapest) > budget:
        raise ValueError(
            f"no feasible allocation: the cheapest options need {objective_sum(cheapest)} > budget {budget}"
        )
    n_live = live.sum(axis=1)
    if float(np.prod(n_live, dtype=float)) <= _SMALL_STATES:
        # Small: the Pareto DP alone is cheaper than computing bounds for it.
        no_bound = np.zeros(n_tasks)
        return _pareto_dp(bc, value, live, budget, 0.0, no_bound, -np.inf, np.inf)
    v_live = np.where(live, value, -np.inf)
    b_live = np.where(live, bc, np.inf)

    lam, incumbent_choice = _lagrangian(b_live, v_live, budget)
    incumbent_choice = _greedy_fill(b_live, v_live, budget, incumbent_choice)
    incumbent, _ = objective(bc, value, incumbent_choice)
    b0 = np.where(live, bc, 0.0)
    reduced = np.where(live, v_live - lam * b0, -np.inf)
    row_best = reduced.max(axis=1)
    bound = lam * budget + float(row_best.sum())
    margin = _MARGIN * (1.0 + abs(bound))
    # suffix[i] = sum of row_best over rows after i: the bound's share of the tasks still to come
    suffix = np.concatenate([np.cumsum(row_best[::-1])[::-1][1:], [0.0]])
    # Stages 3 and 4 with a floor: states and options whose bound is below it are dropped. Any
    # allocation worth at least the floor survives, so a result at or above the floor is the
    # optimum. Start just below the bound (the optimum is usually close to it) and lower the
    # floor towards the incumbent, which always survives, until that happens.
    gap = bound - incumbent
    for fraction in _FLOOR_STEPS:
        floor = (incumbent if fraction >= 1.0 else bound - fraction * gap) - margin
        # Stage 3: an option stays only if forcing it can still reach the floor.
        kept = live & (bound - (row_best[:, None] - reduced) >= floor)
        if not kept.any(axis=1).all():
            continue
        found = _pareto_dp(bc, value, kept, budget, lam, suffix, floor, bound)
        if found is not None and found.value >= floor:
            return found
    raise AssertionError("the incumbent did not survive the last round")  # pragma: no cover


def _pareto_dp(
    bc: np.ndarray,
    value: np.ndarray,
    live: np.ndarray,
    budget: float,
    lam: float,
    suffix: np.ndarray,
    floor: float,
    bound: float,
) -> MCKPSolution | None:
    n_tasks = bc.shape[0]
    live_cols = [np.flatnonzero(live[i]) for i in range(n_tasks)]
    single = np.array([len(c) == 1 for c in live_cols])
    # States in lexicographic order of their partial choice vectors.
    s_bw = np.zeros(1)
    s_val = np.zeros(1)
    trail: list[tuple[int, int, np.ndarray | None, np.ndarray | None]] = []  # (first, last, parent, col)
    i = 0
    while i < n_tasks:
        if len(s_val) == 0:
            return None
        if single[i]:
            j = i
            while j < n_tasks and single[j]:
                j += 1
            cols = np.array([c[0] for c in live_cols[i:j]])
            rows = np.arange(i, j)
            # add task by task (np.add.accumulate is sequential): exact canonical sums
            s_val = np.add.accumulate(np.column_stack([s_val, np.broadcast_to(value[rows, cols], (len(s_val), j - i))]), axis=1)[:, -1]
            s_bw = np.add.accumulate(np.column_stack([s_bw, np.broadcast_to(bc[rows, cols], (len(s_bw), j - i))]), axis=1)[:, -1]
            ok = s_bw <= budget
            if not ok.all():
                keep = np.flatnonzero(ok)
                trail.append((i, j, keep, None))
                s_bw, s_val = s_bw[keep], s_val[keep]
            else:
                trail.append((i, j, None, None))
            i = j
            continue
        cols = live_cols[i]
        c_bw = (s_bw[:, None] + bc[i, cols][None, :]).ravel()
        c_val = (s_val[:, None] + value[i, cols][None, :]).ravel()
        ok = (c_bw <= budget) & (c_val + lam * (budget - c_bw) + suffix[i] >= floor)
        gen = np.flatnonzero(ok)
        c_bw, c_val = c_bw[gen], c_val[gen]
        order = np.lexsort((gen, -c_val, c_bw))
        v_sorted = c_val[order]
        before = np.maximum.accumulate(v_sorted)
        keep_sorted = np.empty(len(order), dtype=bool)
        if len(order):
            keep_sorted[0] = True
            keep_sorted[1:] = v_sorted[1:] > before[:-1]
        kept = np.sort(order[keep_sorted])  # back to lexicographic order
        g = gen[kept]
        trail.append((i, i + 1, g // len(cols), cols[g % len(cols)]))
        s_bw, s_val = c_bw[kept], c_val[kept]
        i += 1
    if len(s_val) == 0:  # every state fell below the floor
        return None
    best_v = s_val.max()
    tied = np.flatnonzero(s_val == best_v)
    state = int(tied[np.argmin(s_bw[tied])])
    final_bw, final_val = float(s_bw[state]), float(best_v)
    choice = np.empty(n_tasks, dtype=np.int64)
    for first, last, parent, col in reversed(trail):
        if col is None:
            choice[first:last] = [live_cols[r][0] for r in range(first, last)]
            if parent is not None:
                state = int(parent[state])
        else:
            choice[first] = col[state]
            state = int(parent[state])
    return MCKPSolution(choice, final_val, final_bw, final_val if bound == np.inf else max(bound, final_val))


# --- car scale: the same stages on Python lists -------------------------------------------------

Step = tuple[float, float, int]  # (bandwidth, value, column)


def _staircases(bc_rows: list[list[float]], v_rows: list[list[float]], budget: float) -> list[list[Step]]:
    """Per row the staircase options by rising bandwidth (and strictly rising value): the rule of
    :func:`staircase_mask` (sort by bandwidth, value descending, column; keep strict records)."""
    stairs = []
    for i, (brow, vrow) in enumerate(zip(bc_rows, v_rows)):
        items = sorted((b, -v, j) for j, (b, v) in enumerate(zip(brow, vrow)) if b <= budget and b != math.inf)
        steps: list[Step] = []
        best = -math.inf
        for b, neg_v, j in items:
            if -neg_v > best:
                best = -neg_v
                steps.append((b, best, j))
        if not steps:
            raise ValueError(f"no feasible option for row {i}: every option needs more than the budget")
        stairs.append(steps)
    return stairs


def _lp_relaxation(stairs: list[list[Step]], budget: float) -> tuple[float, list[Step]]:
    """The LP relaxation solved greedily (Sinha-Zoltners): take the upper-hull increments of all
    rows by falling slope while they fit. Returns the critical slope ``lam`` (the optimal
    Lagrange multiplier) and the integral part of the LP solution (one step per row)."""
    increments: list[tuple[float, float, int, Step]] = []
    left = budget
    for i, steps in enumerate(stairs):
        hull = [steps[0]]
        for s in steps[1:]:
            while len(hull) >= 2:  # drop the last point when on or below the segment to s
                a, b = hull[-2], hull[-1]
                if (b[0] - a[0]) * (s[1] - a[1]) - (b[1] - a[1]) * (s[0] - a[0]) >= 0:
                    hull.pop()
                else:
                    break
            hull.append(s)
        left -= steps[0][0]
        for k in range(1, len(hull)):
            db = hull[k][0] - hull[k - 1][0]
            increments.append(((hull[k][1] - hull[k - 1][1]) / db, db, i, hull[k]))
    increments.sort(key=lambda t: -t[0])  # slopes fall along each row's hull: row order is kept
    pick = [steps[0] for steps in stairs]
    for slope, db, i, step in increments:
        if db > left:
            return slope, pick
        left -= db
        pick[i] = step
    return 0.0, pick


def _incumbent(stairs: list[list[Step]], pick: list[Step], budget: float) -> float:
    """Value of a feasible allocation (canonical sums): the LP's integral part, each row then
    upgraded in turn to its best step that still fits."""
    pick = list(pick)
    used = sum(s[0] for s in pick)
    for i, steps in enumerate(stairs):
        room = budget - used + pick[i][0]
        for s in reversed(steps):
            if s[0] <= room:
                if s[1] > pick[i][1]:
                    used += s[0] - pick[i][0]
                    pick[i] = s
                break
    v = b = 0.0
    for s in pick:
        v += s[1]
        b += s[0]
    if b <= budget:
        return v
    v = 0.0  # rounding pushed it over the edge: the cheapest allocation (checked feasible)
    for steps in stairs:
        v += steps[0][1]
    return v


def _solve_small(bc_rows: list[list[float]], v_rows: list[list[float]], budget: float) -> MCKPSolution:
    """Stages 1-4 on lists: staircases, the LP bound and an incumbent, then a Pareto DP whose
    states (bandwidth, value, columns so far) are pruned by dominance, the budget and the
    Lagrangian bound; the last row is not expanded: each state takes its best step that fits
    (the staircase's value rises with bandwidth, so that is the last step within the budget)."""
    stairs = _staircases(bc_rows, v_rows, budget)
    cheapest = 0.0
    for steps in stairs:
        cheapest += steps[0][0]
    if cheapest > budget:
        raise ValueError(f"no feasible allocation: the cheapest options need {cheapest} > budget {budget}")
    lam, pick = _lp_relaxation(stairs, budget)
    incumbent = _incumbent(stairs, pick, budget)
    n = len(stairs)
    suffix = [0.0] * (n + 1)  # suffix[i]: the Lagrangian bound's share of rows i..n-1
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + max(v - lam * b for b, v, _ in stairs[i])
    bound = lam * budget + suffix[0] if lam else suffix[0]  # lam 0: also right for an infinite budget
    floor = incumbent - _MARGIN * (1.0 + abs(bound))
    states: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for i in range(n - 1):
        rest = suffix[i + 1]
        cands = []
        for sb, sv, cols in states:
            for b, v, j in stairs[i]:
                nb = sb + b
                if nb > budget:
                    break  # steps rise in bandwidth
                nv = sv + v
                if nv + (lam * (budget - nb) if lam else 0.0) + rest >= floor:
                    cands.append((nb, -nv, cols + (j,)))
        # by bandwidth, value descending, then columns: keep strict value records (Pareto front);
        # of equal states the lexicographically smallest columns come first and stay
        cands.sort()
        states = []
        best = -math.inf
        for nb, neg_v, cols in cands:
            if -neg_v > best:
                best = -neg_v
                states.append((nb, best, cols))
    last = stairs[-1]
    last_b = [s[0] for s in last]
    winner: tuple[tuple[float, float, tuple[int, ...]], int] | None = None
    for sb, sv, cols in states:
        k = bisect_right(last_b, budget - sb) - 1  # then settle it with the canonical sum
        while k + 1 < len(last) and sb + last_b[k + 1] <= budget:
            k += 1
        while k >= 0 and sb + last_b[k] > budget:
            k -= 1
        if k < 0:
            continue
        key = (-(sv + last[k][1]), sb + last_b[k], cols)  # the tie rule as one sort key
        if winner is None or key < winner[0]:
            winner = (key, last[k][2])
    assert winner is not None  # the incumbent's prefixes survive every pruning test
    (neg_v, total_b, cols), j = winner
    return MCKPSolution(np.array(cols + (j,), dtype=np.int64), -neg_v, total_b, max(bound, -neg_v))
