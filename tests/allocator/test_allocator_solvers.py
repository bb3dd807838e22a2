"""Every solver against brute force (exact), and the fast path against CVXPY at 200x45."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carlink.allocator import cvx, mckp, synthetic, turbo_pulp
from carlink.allocator.utility import OptionTable


@st.composite
def exact_instances(draw, max_tasks: int = 5, max_options: int = 8):
    """Integral bandwidths and dyadic values: every sum is exact, so optima compare with ==."""
    n_tasks = draw(st.integers(1, max_tasks))
    n_opts = draw(st.integers(1, max_options))
    bc = np.array(
        draw(st.lists(st.lists(st.one_of(st.integers(0, 40), st.just(10**9)), min_size=n_opts, max_size=n_opts),
                      min_size=n_tasks, max_size=n_tasks)),
        dtype=float,
    )
    bc[bc >= 10**9] = np.inf  # infeasible options
    on_car = draw(st.lists(st.integers(0, n_opts - 1), min_size=n_tasks, max_size=n_tasks))
    bc[np.arange(n_tasks), on_car] = 0.0
    value = np.array(
        draw(st.lists(st.lists(st.integers(0, 16), min_size=n_opts, max_size=n_opts),
                      min_size=n_tasks, max_size=n_tasks)),
        dtype=float,
    ) / 16.0
    budget = float(draw(st.integers(0, 40 * n_tasks)))
    return bc, value, budget


@settings(max_examples=300, deadline=None)
@given(exact_instances())
def test_fast_path_equals_brute_force_exactly(inst):
    bc, value, budget = inst
    fast = mckp.solve(bc, value, budget)
    ref = mckp.brute_force(bc, value, budget)
    # same value, same bandwidth, and the same allocation: the documented tie-break rule
    assert fast.value == ref.value
    assert fast.bandwidth == ref.bandwidth
    assert fast.choice.tolist() == ref.choice.tolist()


_MODELS: dict[tuple[int, int, str], cvx.CvxModel] = {}


def _cvx(shape: tuple[int, int], solver: str) -> cvx.CvxModel:
    key = (*shape, solver)
    if key not in _MODELS:
        _MODELS[key] = cvx.CvxModel(*shape, solver=solver)
    return _MODELS[key]


@pytest.mark.parametrize("solver", ["HIGHS", "GLPK_MI"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inst=exact_instances(max_tasks=4, max_options=5))
def test_cvxpy_equals_brute_force(solver, inst):
    if solver not in cvx.installed_mip_solvers():
        pytest.skip(f"{solver} not installed")
    bc, value, budget = inst
    choice = _cvx(bc.shape, solver).solve(bc, value, budget).choice
    got_value, got_bw = mckp.objective(bc, value, choice)
    ref = mckp.brute_force(bc, value, budget)
    assert got_bw <= budget
    assert got_value == ref.value


@settings(max_examples=15, deadline=None)
@given(exact_instances(max_tasks=3, max_options=4))
def test_turbo_pulp_equals_brute_force(inst):
    bc, value, budget = inst
    choice = turbo_pulp.solve(bc, value, budget)
    got_value, got_bw = mckp.objective(bc, value, choice)
    assert got_bw <= budget
    assert got_value == mckp.brute_force(bc, value, budget).value


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 8))
def test_fast_path_equals_brute_force_on_float_profiles(seed, n_tasks, n_options):
    """Plausible float data (not exactly representable sums): still the identical optimum."""
    rng = np.random.default_rng(seed)
    table = OptionTable.from_tasks(synthetic.random_tasks(rng, n_tasks, n_options))
    cond = synthetic.random_conditions(rng, n_tasks)
    bc, value = table.frame(cond.rtt_ms)
    fast = mckp.solve(bc, value, cond.bandwidth_bps)
    ref = mckp.brute_force(bc, value, cond.bandwidth_bps)
    assert (fast.value, fast.bandwidth, fast.choice.tolist()) == (ref.value, ref.bandwidth, ref.choice.tolist())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_matches_cvxpy_at_200x45(seed):
    rng = np.random.default_rng(seed)
    table = OptionTable.from_tasks(synthetic.random_tasks(rng, 200, 45))
    cond = synthetic.random_conditions(rng, 200)
    bc, value = table.frame(cond.rtt_ms)
    fast = mckp.solve(bc, value, cond.bandwidth_bps)
    model = cvx.CvxModel(*bc.shape, solver="HIGHS")  # MIP gap 0 (cvx.EXACT_OPTIONS)
    ref_value, ref_bw = mckp.objective(bc, value, model.solve(bc, value, cond.bandwidth_bps).choice)
    assert ref_bw <= cond.bandwidth_bps * (1 + 1e-9)
    assert fast.bandwidth <= cond.bandwidth_bps
    assert fast.value == pytest.approx(ref_value, rel=1e-6)
    assert fast.value >= ref_value - 1e-9  # the exact path is never worse
    assert fast.bound >= fast.value


def test_ties_are_broken_by_the_documented_rule():
    # Two tasks, identical options: value 1 costs 5 either way; budget for one upgrade only.
    bc = np.array([[0.0, 5.0, 5.0], [0.0, 5.0, 5.0]])
    value = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    sol = mckp.solve(bc, value, 5.0)
    # equal value and bandwidth everywhere: lexicographically smallest columns -> (0, 1)
    assert sol.choice.tolist() == [0, 1]
    # equal value, different bandwidth: the cheaper wins even if listed later
    bc2 = np.array([[0.0, 4.0, 3.0]])
    assert mckp.solve(bc2, np.array([[0.0, 1.0, 1.0]]), 10.0).choice.tolist() == [2]
    # repeated solves give the same answer
    assert all(mckp.solve(bc, value, 5.0).choice.tolist() == [0, 1] for _ in range(5))


def test_infeasible_budget_for_a_row_without_zero_option_is_an_error():
    with pytest.raises(ValueError, match="row 0"):
        mckp.solve(np.array([[3.0, 4.0]]), np.array([[1.0, 2.0]]), 2.0)


@pytest.mark.parametrize("seed", range(6))
def test_list_and_numpy_fast_paths_give_identical_answers(seed):
    """The car-scale (Python lists) and the vectorised implementation follow the same rules."""
    rng = np.random.default_rng(seed)
    n_tasks = int(rng.integers(1, mckp.SMALL_TASKS + 1))
    for _ in range(10):
        table = OptionTable.from_tasks(synthetic.random_tasks(rng, n_tasks, 45))
        cond = synthetic.random_conditions(rng, n_tasks)
        bc, value = table.frame(cond.rtt_ms)
        small = mckp._solve_small(bc.tolist(), value.tolist(), cond.bandwidth_bps)
        big = mckp._solve_numpy(bc, value, cond.bandwidth_bps)
        assert (small.value, small.bandwidth, small.choice.tolist()) == (big.value, big.bandwidth, big.choice.tolist())
        assert small.bound >= small.value


def test_fast_path_with_an_unlimited_budget_takes_every_best_option():
    bc = np.array([[0.0, 3.0, np.inf], [0.0, 1e12, 2.0]])
    value = np.array([[0.1, 0.5, 0.9], [0.2, 0.8, 0.3]])
    sol = mckp.solve(bc, value, np.inf)
    assert sol.choice.tolist() == [1, 1]
    assert sol.value == 0.5 + 0.8


@pytest.mark.parametrize("solver", ["HIGHS", "GLPK_MI", "SCIP", "SCIPY"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inst=exact_instances(max_tasks=4, max_options=8))
def test_pruned_cvxpy_path_equals_brute_force(solver, inst):
    """What the Allocator runs: staircase pruning, a width bucket's model, columns mapped back."""
    if solver not in cvx.installed_mip_solvers():
        pytest.skip(f"{solver} not installed")
    bc, value, budget = inst
    key = (*bc.shape, solver, "pruned")
    if key not in _MODELS:
        _MODELS[key] = cvx.CvxSolver(*bc.shape, solver=solver)
    choice = _MODELS[key].solve(bc, value, budget).choice
    got_value, got_bw = mckp.objective(bc, value, choice)
    assert got_bw <= budget
    assert got_value == mckp.brute_force(bc, value, budget).value


def test_glpk_refreshed_data_equals_cvxpys_own_problem_data():
    """The in-place refresh feeds GLPK exactly the numbers CVXPY's get_problem_data builds."""
    rng = np.random.default_rng(7)
    table = OptionTable.from_tasks(synthetic.random_tasks(rng, 3, 6))
    model = cvx.CvxModel(*table.shape, solver="GLPK_MI")
    for _ in range(3):
        cond = synthetic.random_conditions(rng, 3)
        bc, value = table.frame(cond.rtt_ms)
        model.solve(bc, value, cond.bandwidth_bps)  # sets the Parameters, builds the refresher once
        mine = model._glpk.data()
        ref, _, _ = model.problem.get_problem_data("GLPK_MI")
        for key in ("c", "G", "h", "A", "b"):
            want = ref[key].toarray() if hasattr(ref[key], "toarray") else np.asarray(ref[key])
            got = mine[key].toarray() if hasattr(mine[key], "toarray") else mine[key]
            assert np.array_equal(want.ravel(), np.asarray(got).ravel()), key


def test_highs_prints_are_silenced_but_only_during_the_solve(capfd):
    with cvx._silenced_stdout():
        os.write(1, b"from C, on stdout\n")
        os.write(2, b"from C, on stderr\n")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == ""
