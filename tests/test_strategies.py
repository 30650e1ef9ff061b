"""Search strategies (actsearch.strategies) on a tiny synthetic search space defined here.

The space is a grid of genomes [a, b] with a, b in range(n); its formula strings are never parsed.
The objective -((a - A)**2 + (b - B)**2) peaks at 0 on the genome [A, B].
"""
from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from actsearch.strategies import (STRATEGIES, EvolutionStrategy, Strategy, crowding_distances, dominates,
                                  genome_key, make_strategy, pareto_front, pareto_ranks)


class GridSpace:
    """Genomes [a, b], 0 <= a, b < n.  Duck-types search_spaces.base.SearchSpace."""

    name = "grid"

    def __init__(self, n: int = 20):
        self.n = n

    def sample(self, rng: random.Random) -> list:
        return [rng.randrange(self.n), rng.randrange(self.n)]

    def formula(self, genome: list) -> str:
        return f"{genome[0]}*x + {genome[1]}"

    def mutate(self, genome: list, rng: random.Random) -> list:
        child = list(genome)
        i = rng.randrange(2)
        step = rng.choice((-1, 1))
        if not 0 <= child[i] + step < self.n:
            step = -step
        child[i] += step
        return child

    def crossover(self, a: list, b: list, rng: random.Random) -> tuple[list, list]:
        return [a[0], b[1]], [b[0], a[1]]

    def enumerate(self):
        for a in range(self.n):
            for b in range(self.n):
                yield [a, b]

    def size(self) -> int:
        return self.n * self.n

    def suggest(self, trial) -> list:
        return [trial.suggest_int("a", 0, self.n - 1), trial.suggest_int("b", 0, self.n - 1)]


def objective(genome, target=(13, 7)) -> float:
    return -float((genome[0] - target[0]) ** 2 + (genome[1] - target[1]) ** 2)


def two_objectives(genome) -> tuple[float, float]:
    """Score (maximised) peaks at [13, 7]; cost (minimised) grows with a + b."""
    return objective(genome), float(genome[0] + genome[1])


def run_sequential(strategy: Strategy, n: int, fn=objective) -> list[tuple[list, object]]:
    history = []
    for _ in range(n):
        genome = strategy.ask()
        if genome is None:
            break
        value = fn(genome)
        strategy.tell(genome, value)
        history.append((genome, value))
    return history


# ----------------------------------------------------------------------------- registry

def test_registry_and_unknown_name():
    assert set(STRATEGIES) == {"exhaustive", "random", "evolution", "optuna", "surrogate"}
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        assert isinstance(make_strategy(name, GridSpace()), cls)
    with pytest.raises(ValueError) as err:
        make_strategy("annealing", GridSpace())
    for name in STRATEGIES:
        assert name in str(err.value)
    with pytest.raises(TypeError, match="populaton"):  # a misspelt option is an error, not ignored
        make_strategy("evolution", GridSpace(), populaton=10)
    with pytest.raises(TypeError):
        make_strategy("random", GridSpace(), population=10)


# ----------------------------------------------------------------------------- exhaustive / random

def test_exhaustive_covers_the_space_once_then_none():
    space = GridSpace(20)
    strategy = make_strategy("exhaustive", space)
    asked = []
    while (genome := strategy.ask()) is not None:
        asked.append(genome)
        if len(asked) % 3 == 0:  # tells are accepted (and ignored), in any order
            strategy.tell(asked[-2], objective(asked[-2]))
    assert asked == list(space.enumerate())
    assert len({genome_key(g) for g in asked}) == space.size() == 400
    assert strategy.ask() is None and strategy.ask() is None
    assert strategy.exhausted


def test_exhaustive_on_a_space_without_enumerate_fails_on_ask():
    class Unbounded(GridSpace):
        def enumerate(self):
            raise NotImplementedError("not enumerable")

    strategy = make_strategy("exhaustive", Unbounded())
    with pytest.raises(NotImplementedError):
        strategy.ask()


def test_random_is_seeded():
    def draws(seed):
        strategy = make_strategy("random", GridSpace(), seed=seed)
        return [strategy.ask() for _ in range(50)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    # values do not influence random sampling
    a = make_strategy("random", GridSpace(), seed=5)
    b = make_strategy("random", GridSpace(), seed=5)
    for _ in range(30):
        ga, gb = a.ask(), b.ask()
        assert ga == gb
        a.tell(ga, objective(ga))
        b.tell(gb, None)


# ----------------------------------------------------------------------------- evolution

def test_evolution_population_ages_and_starts_random():
    space = GridSpace(20)
    strategy = EvolutionStrategy(space, seed=1, population=8, tournament=3)
    reference = random.Random(1)
    # the first `population` asks (before any tell) are the space's random samples
    first = [strategy.ask() for _ in range(8)]
    assert first == [space.sample(reference) for _ in range(8)]
    for g in first:
        strategy.tell(g, objective(g))
    told = list(first)
    for _ in range(40):
        g = strategy.ask()
        strategy.tell(g, objective(g))
        told.append(g)
        assert len(strategy.population) == 8
        # aging: the population is exactly the last 8 told genomes, oldest first
        assert [m.genome for m in strategy.population] == told[-8:]


def test_evolution_beats_random():
    """Median (over 5 seeds) best value after 150 evaluations on a 50x50 grid: evolution reaches the
    optimum (0) for every seed tried; random search needs luck (1/2500 per draw) to reach it."""
    space = GridSpace(50)
    fn = lambda g: objective(g, target=(37, 11))

    def median_best(name, **options):
        bests = []
        for seed in range(5):
            history = run_sequential(make_strategy(name, space, seed=seed, **options), 150, fn)
            assert len(history) == 150
            bests.append(max(v for _, v in history))
        return statistics.median(bests)

    evolution = median_best("evolution")
    assert evolution > median_best("random")
    assert evolution >= -1.0
    assert median_best("evolution", crossover_prob=0.3) >= -1.0


def test_evolution_rejected_members_are_worst():
    space = GridSpace(20)
    strategy = EvolutionStrategy(space, seed=0, population=4, tournament=4)
    initial = [strategy.ask() for _ in range(4)]
    good = initial[2]
    for g in initial:
        strategy.tell(g, -1.0 if g == good else None)
    # the tournament covers the whole population, so the one valid member always wins: its mutant
    child = strategy.ask()
    assert abs(child[0] - good[0]) + abs(child[1] - good[1]) == 1


def test_evolution_all_rejected_falls_back_to_random():
    strategy = EvolutionStrategy(GridSpace(20), seed=0, population=5, tournament=2)
    for _ in range(60):
        g = strategy.ask()
        assert g is not None
        strategy.tell(g, None)
    assert len(strategy.population) == 5


def test_evolution_multi_objective_runs_and_finds_a_front():
    space = GridSpace(20)
    strategy = make_strategy("evolution", space, seed=0, n_objectives=2, population=20, tournament=5)
    history = run_sequential(strategy, 300, two_objectives)
    points = [v for _, v in history]
    front = [points[i] for i in pareto_front(points)]
    # the front spans from the cheapest genome towards the score optimum
    assert max(p[0] for p in front) >= -2.0
    assert min(p[1] for p in front) <= 3.0


# ----------------------------------------------------------------------------- optuna

def test_optuna_tpe_finds_a_near_optimum():
    for seed in range(3):
        strategy = make_strategy("optuna", GridSpace(20), seed=seed)
        history = run_sequential(strategy, 100)
        assert max(v for _, v in history) >= -2.0, seed


def test_optuna_uses_tpe_and_nsga2():
    import optuna

    single = make_strategy("optuna", GridSpace(), seed=0)
    assert isinstance(single.study.sampler, optuna.samplers.TPESampler)
    assert single.study.directions == [optuna.study.StudyDirection.MAXIMIZE]
    multi = make_strategy("optuna", GridSpace(), seed=0, n_objectives=3)
    assert isinstance(multi.study.sampler, optuna.samplers.NSGAIISampler)
    assert multi.study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                      optuna.study.StudyDirection.MINIMIZE,
                                      optuna.study.StudyDirection.MINIMIZE]


def test_optuna_multi_objective_nsga2_runs():
    import optuna

    strategy = make_strategy("optuna", GridSpace(20), seed=0, n_objectives=2, population=20)
    history = run_sequential(strategy, 120, two_objectives)
    assert len(history) == 120
    trials = strategy.study.trials
    assert len(trials) == 120 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [tuple(t.values) for t in trials] == [v for _, v in history]
    points = [v for _, v in history]
    front = pareto_front(points)
    assert {trial.number for trial in strategy.study.best_trials} == set(front)
    assert max(points[i][0] for i in front) >= -5.0


def test_optuna_duplicates_are_settled_oldest_first():
    """On a 2x2 grid the sampler must repeat genomes; outstanding duplicates are told FIFO."""
    import optuna

    strategy = make_strategy("optuna", GridSpace(2), seed=0)
    asked = [strategy.ask() for _ in range(12)]
    assert len({genome_key(g) for g in asked}) < len(asked)
    values = {}
    for i in reversed(range(12)):  # tell in reverse order; a distinct value per ask
        strategy.tell(asked[i], float(i))
        values.setdefault(genome_key(asked[i]), []).append(float(i))
    trials = strategy.study.trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # the k-th tell of a genome went to the k-th trial (in ask order) that proposed it
    for key, told in values.items():
        numbers = [i for i, g in enumerate(asked) if genome_key(g) == key]
        assert [trials[n].value for n in numbers] == told


# ----------------------------------------------------------------------------- rejected values

@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("n_objectives", [1, 2])
def test_rejected_values_are_handled(name, n_objectives):
    fn = objective if n_objectives == 1 else two_objectives
    options = {"population": 6} if name in ("evolution", "optuna") else {}
    strategy = make_strategy(name, GridSpace(20), seed=0, n_objectives=n_objectives, **options)
    for i in range(40):
        g = strategy.ask()
        value = fn(g)
        if i % 3 == 0:
            value = None  # rejected
        elif i % 7 == 0:
            value = (math.nan,) * n_objectives if n_objectives > 1 else math.nan  # NaN = rejected
        strategy.tell(g, value)
    assert strategy.n_asked == strategy.n_told == 40 and strategy.n_pending == 0
    if name == "optuna":
        import optuna

        states = [t.state for t in strategy.study.trials]
        assert states.count(optuna.trial.TrialState.FAIL) == len([i for i in range(40) if i % 3 == 0 or i % 7 == 0])
        assert states.count(optuna.trial.TrialState.COMPLETE) + states.count(optuna.trial.TrialState.FAIL) == 40


def test_optuna_rejected_value_option():
    import optuna

    strategy = make_strategy("optuna", GridSpace(20), seed=0, n_objectives=2, rejected_value=(-1e3, 1e3))
    g = strategy.ask()
    strategy.tell(g, None)
    trial = strategy.study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values == [-1e3, 1e3]
    with pytest.raises(ValueError):
        make_strategy("optuna", GridSpace(20), n_objectives=2, rejected_value=-1e3)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_all_rejected(name):
    strategy = make_strategy(name, GridSpace(20), seed=0)
    for _ in range(30):
        g = strategy.ask()
        assert g is not None
        strategy.tell(g, None)


# ----------------------------------------------------------------------------- tell validation

def test_tell_validation_and_pending():
    strategy = make_strategy("evolution", GridSpace(20), seed=0, population=4)
    g = strategy.ask()
    with pytest.raises(KeyError):
        strategy.tell([99, 99], 1.0)  # never asked
    with pytest.raises(ValueError):
        strategy.tell(g, (1.0, 2.0))  # wrong number of objectives
    with pytest.raises(TypeError):
        strategy.tell(g, "1.0")
    assert strategy.pending() == [g]  # the failed tells changed nothing
    strategy.tell(g, (1.0,))  # a 1-tuple is accepted for a single objective
    with pytest.raises(KeyError):
        strategy.tell(g, 1.0)  # already told
    assert strategy.pending() == [] and strategy.n_pending == 0
    # JSON round-trip of a genome (as a driver logging genomes does) still matches
    h = strategy.ask()
    strategy.tell(json.loads(json.dumps(h)), 0.5)

    multi = make_strategy("random", GridSpace(), n_objectives=2)
    g = multi.ask()
    with pytest.raises(ValueError):
        multi.tell(g, 1.0)
    multi.tell(g, [1.0, 2.0])


def test_duplicate_asks_must_each_be_told():
    strategy = make_strategy("random", GridSpace(1), seed=0)  # a single genome: every ask duplicates
    asked = [strategy.ask() for _ in range(3)]
    assert asked == [[0, 0]] * 3 and strategy.pending() == asked
    for _ in range(3):
        strategy.tell([0, 0], 0.0)
    with pytest.raises(KeyError):
        strategy.tell([0, 0], 0.0)


# ----------------------------------------------------------------------------- deterministic replay

REPLAY_CASES = {
    "exhaustive": ("exhaustive", 1, {}),
    "random": ("random", 1, {}),
    "evolution": ("evolution", 1, {"population": 10, "tournament": 3}),
    "evolution-crossover": ("evolution", 1, {"population": 10, "tournament": 3, "crossover_prob": 0.4}),
    "evolution-2obj": ("evolution", 2, {"population": 10, "tournament": 4}),
    "optuna": ("optuna", 1, {"n_startup_trials": 5}),
    "optuna-2obj": ("optuna", 2, {"population": 8}),
}


def async_session(case: str, seed: int, n_events: int = 140) -> list:
    """Drive a strategy like parallel workers would: an irregular but fixed pattern of asks and tells
    (tells out of order, some rejected).  Returns the log of events."""
    name, n_objectives, options = REPLAY_CASES[case]
    space = GridSpace(6)  # small: duplicates are frequent
    strategy = make_strategy(name, space, seed=seed, n_objectives=n_objectives, **options)
    fn = objective if n_objectives == 1 else two_objectives
    driver = random.Random(1000 + seed)  # the "workers'" timing, independent of the strategy
    outstanding: list = []
    log: list = []
    for _ in range(n_events):
        if outstanding and (len(outstanding) >= 6 or driver.random() < 0.45):
            genome = outstanding.pop(driver.randrange(len(outstanding)))
            value = None if driver.random() < 0.15 else fn(genome)
            strategy.tell(genome, value)
            log.append(("tell", genome, value))
        else:
            genome = strategy.ask()
            log.append(("ask", genome, None))
            if genome is not None:
                outstanding.append(genome)
    return log


def replay(case: str, seed: int, log: list) -> list:
    """Feed a logged ask/tell sequence into a fresh strategy (JSON round-tripped, as from a log file)."""
    name, n_objectives, options = REPLAY_CASES[case]
    strategy = make_strategy(name, GridSpace(6), seed=seed, n_objectives=n_objectives, **options)
    log = json.loads(json.dumps(log))
    asked = []
    for kind, genome, value in log:
        if kind == "ask":
            asked.append(strategy.ask())
        else:
            strategy.tell(genome, value)
    return asked


@pytest.mark.parametrize("case", sorted(REPLAY_CASES))
def test_deterministic_replay_with_async_interleaving(case):
    log = async_session(case, seed=7)
    kinds = [k for k, _, _ in log]
    assert kinds.count("tell") > 30 and "ask" in kinds
    logged_asks = [g for k, g, _ in log if k == "ask"]
    assert replay(case, 7, log) == logged_asks
    # the same session run again from scratch also matches; another seed differs
    assert async_session(case, seed=7) == log
    if case != "exhaustive":
        assert [g for k, g, _ in async_session(case, seed=8) if k == "ask"] != logged_asks


def test_resume_after_replay_continues_identically():
    """A run killed mid-way and resumed by replay proposes what the uninterrupted run proposed."""
    for case in ("evolution", "optuna"):
        full = async_session(case, seed=3, n_events=120)
        cut = 70
        name, n_objectives, options = REPLAY_CASES[case]
        strategy = make_strategy(name, GridSpace(6), seed=3, n_objectives=n_objectives, **options)
        for kind, genome, value in full[:cut]:
            strategy.ask() if kind == "ask" else strategy.tell(genome, value)
        # the asked-but-untold genomes are exactly those the log has not told yet
        told_later = [g for k, g, _ in full[:cut] if k == "ask"]
        for k, g, _ in full[:cut]:
            if k == "tell":
                told_later.remove(g)
        assert sorted(strategy.pending()) == sorted(told_later)
        for kind, genome, value in full[cut:]:
            if kind == "ask":
                assert strategy.ask() == genome
            else:
                strategy.tell(genome, value)


def test_replay_is_independent_of_the_process_hash_seed():
    """Replay in a fresh interpreter with another PYTHONHASHSEED (as a resumed driver would be)."""
    cases = ["evolution-2obj", "optuna", "optuna-2obj"]
    logs = {case: async_session(case, seed=11, n_events=80) for case in cases}
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('t', {str(Path(__file__))!r})\n"
        "t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)\n"
        "logs = json.load(sys.stdin)\n"
        "print(json.dumps({c: t.replay(c, 11, log) for c, log in logs.items()}))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(logs), env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    replayed = json.loads(out.stdout.strip().splitlines()[-1])
    for case in cases:
        assert replayed[case] == [g for k, g, _ in logs[case] if k == "ask"], case


# ----------------------------------------------------------------------------- Pareto utilities

def test_pareto_front_on_hand_made_points():
    # (score maximised, cost minimised)
    points = [
        (0.9, 10.0),  # 0: best score               -> front
        (0.8, 5.0),   # 1: trade-off                -> front
        (0.8, 6.0),   # 2: dominated by 1
        (0.5, 1.0),   # 3: cheapest                 -> front
        (0.4, 1.0),   # 4: dominated by 3
        (0.9, 12.0),  # 5: dominated by 0 (same score, dearer)
        (0.8, 5.0),   # 6: equal to 1: not dominated -> front
        (0.1, 20.0),  # 7: dominated by everything
    ]
    assert pareto_front(points) == [0, 1, 3, 6]
    assert pareto_ranks(points) == [0, 0, 1, 0, 1, 1, 0, 2]
    assert pareto_front([]) == []
    assert pareto_front([(1.0,)]) == [0]
    assert pareto_front([(1.0,), (3.0,), (2.0,), (3.0,)]) == [1, 3]  # single objective: the maxima
    # three objectives: 0 maximised, 1 and 2 minimised
    assert pareto_front([(1, 1, 1), (1, 0, 2), (1, 1, 2), (2, 5, 5), (0, 0, 0)]) == [0, 1, 3, 4]
    assert dominates((1, 1), (1, 2)) and not dominates((1, 2), (1, 2)) and not dominates((2, 2), (1, 1))


def test_pareto_front_matches_brute_force():
    rng = random.Random(0)
    for m in (2, 3):
        for _ in range(30):
            points = [tuple(float(rng.randrange(6)) for _ in range(m)) for _ in range(rng.randrange(1, 40))]
            brute = [i for i, p in enumerate(points)
                     if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
            assert pareto_front(points) == brute


def test_crowding_distances():
    points = [(0.0, 4.0), (1.0, 3.0), (2.0, 1.0), (4.0, 0.0)]
    d = crowding_distances(points)
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(2 / 4 + 3 / 4) and d[2] == pytest.approx(3 / 4 + 3 / 4)
    assert crowding_distances([]) == []
