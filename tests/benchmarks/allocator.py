"""Per-frame allocation solve time: CVXPY (each installed MIP solver), the exact fast path, and
TURBO's PuLP/CBC path, on the same random plausible instances (allocator/synthetic.py).

    python tests/benchmarks/allocator.py [--instances 200] [--turbo-instances 200,200,50,20,10]
                                         [--cell-seconds 90] [--sizes 5x12,5x45,20x45,50x45,200x45]

Each cell times the solver call only (the frame's bc/value arrays are built beforehand, as the
Allocator does from its prepared OptionTable); the CVXPY path is allocator.cvx.CvxSolver, what the
Allocator uses (staircase pruning, one compiled model per width bucket), and its one-off
compilation of every bucket is reported separately. Methods are interleaved per instance (in a
rotating order), so load from other processes hits them alike. A method stops early once it has
spent --cell-seconds at a size and the table says how many instances it ran (n).

On a shared machine a p99 mostly measures preemption by other processes; --repeat R times every
solve R times (interleaved the same way) and keeps each instance's fastest time, which removes
that noise but not the instance-to-instance spread (state which was used when quoting numbers).
Every answer is checked against the fast path's optimum (column "bad": > 1e-6 relative off, or
over budget). Ratios are TURBO's time over the method's (medians and p99s).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from carlink.allocator import cvx, mckp, synthetic, turbo_pulp
from carlink.allocator.solve import DEFAULT_CVXPY_MAX_TASKS, DEFAULT_MIP_SOLVER
from carlink.allocator.utility import OptionTable


def instances(n_tasks: int, n_options: int, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        table = OptionTable.from_tasks(synthetic.random_tasks(rng, n_tasks, n_options))
        cond = synthetic.random_conditions(rng, n_tasks)
        bc, value = table.frame(cond.rtt_ms)
        out.append((bc, value, cond.bandwidth_bps))
    return out


def run_size(methods: dict, insts, refs, limits: dict[str, int], cell_seconds: float, repeat: int = 1) -> dict[str, dict]:
    """Time every method on every instance, interleaved (rotating order); check each answer."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    bad = {m: 0 for m in methods}
    names = list(methods)
    for idx, ((bc, value, budget), ref) in enumerate(zip(insts, refs)):
        k = idx % len(names)
        for name in names[k:] + names[:k]:
            if len(times[name]) >= limits.get(name, len(insts)) or repeat * sum(times[name]) > cell_seconds:
                continue
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                choice = methods[name](bc, value, budget)
                best = min(best, time.perf_counter() - t0)
            times[name].append(best)
            v, b = mckp.objective(bc, value, choice)
            if b > budget or abs(v - ref) > 1e-6 * max(1.0, abs(ref)):
                bad[name] += 1
    out = {}
    for name in names:
        t = np.array(times[name]) * 1e3
        out[name] = {"n": len(t), "median": float(np.median(t)), "p99": float(np.percentile(t, 99)), "bad": bad[name]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--turbo-instances", default="200,200,60,30,10",
                    help="instances for the PuLP/CBC path per size (it takes seconds at 200x45)")
    ap.add_argument("--sizes", default="5x12,5x45,20x45,50x45,200x45")
    ap.add_argument("--solvers", default=",".join(cvx.installed_mip_solvers()))
    ap.add_argument("--cell-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--repeat", type=int, default=1, help="time each solve this many times, keep the fastest")
    args = ap.parse_args()

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    turbo_n = [int(v) for v in args.turbo_instances.split(",")]
    mip = [s for s in args.solvers.split(",") if s]
    rows = []
    summary = {}
    print(f"{'size':>7} {'method':<14} {'n':>4} {'median ms':>10} {'p99 ms':>9} {'x TURBO med':>11} "
          f"{'x TURBO p99':>11} {'bad':>4} {'compile ms':>10}")
    for k, (n_tasks, n_options) in enumerate(sizes):
        insts = instances(n_tasks, n_options, args.instances, args.seed + k)
        refs = [mckp.solve(*inst).value for inst in insts]
        methods = {"mckp": lambda bc, v, b: mckp.solve(bc, v, b).choice, "turbo pulp/CBC": turbo_pulp.solve}
        compile_ms = {}
        for solver in mip:
            model = cvx.CvxSolver(n_tasks, n_options + 1, solver=solver)
            compile_ms[f"cvxpy/{solver}"] = model.prepare()
            methods[f"cvxpy/{solver}"] = lambda bc, v, b, model=model: model.solve(bc, v, b).choice
        n_turbo = turbo_n[min(k, len(turbo_n) - 1)]
        cells = run_size(methods, insts, refs, {"turbo pulp/CBC": n_turbo}, args.cell_seconds, args.repeat)
        for name, ms in compile_ms.items():
            cells[name]["compile"] = ms
        turbo = cells["turbo pulp/CBC"]
        default = f"cvxpy/{DEFAULT_MIP_SOLVER}" if n_tasks <= DEFAULT_CVXPY_MAX_TASKS else "mckp"
        for name, c in cells.items():
            label = name + (" *" if name == default else "")
            comp = f"{c['compile']:10.0f}" if "compile" in c else f"{'':>10}"
            print(f"{n_tasks:>3}x{n_options:<3} {label:<14} {c['n']:>4} {c['median']:10.3f} {c['p99']:9.3f} "
                  f"{turbo['median'] / c['median']:11.1f} {turbo['p99'] / c['p99']:11.1f} {c['bad']:>4} {comp}",
                  flush=True)
        summary[(n_tasks, n_options)] = (cells, default)
        rows.append(cells)
    print("* = default path of solver='auto' at that size")
    parts = []
    if (5, 45) in summary:
        cells, _ = summary[(5, 45)]
        parts.append(f"5x45 cvxpy/{DEFAULT_MIP_SOLVER} p99 {cells[f'cvxpy/{DEFAULT_MIP_SOLVER}']['p99']:.2f} ms"
                     if f"cvxpy/{DEFAULT_MIP_SOLVER}" in cells else "5x45 cvxpy n/a")
        parts.append(f"5x45 mckp p99 {cells['mckp']['p99']:.2f} ms")
    if (200, 45) in summary:
        parts.append(f"200x45 mckp p99 {summary[(200, 45)][0]['mckp']['p99']:.2f} ms")
    speedups = [c["turbo pulp/CBC"]["median"] / c[d]["median"] for c, d in summary.values() if d in c]
    if speedups:
        parts.append(f"default path min speedup vs TURBO {min(speedups):.0f}x (medians)")
    bad = sum(c["bad"] for cells, _ in summary.values() for c in cells.values())
    parts.append(f"mismatches {bad}")
    print("SUMMARY: " + "; ".join(parts))


if __name__ == "__main__":
    main()
