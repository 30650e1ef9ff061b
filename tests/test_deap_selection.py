"""Multi-objective selection on DEAP's NSGA-II tools (actsearch.strategies: deap.tools.sortNondominated,
deap.tools.emo.assignCrowdingDist): ranks equal a brute-force dominance count, the crowding distance is
Deb et al.'s with ties kept in the points' order, the evolution strategy's selections are those of the
hand-written code DEAP replaced (pinned below), NaN values count as rejected, and deap.creator is untouched."""
from __future__ import annotations

import hashlib
import json
import math
import random

import pytest

from actsearch.strategies import (EvolutionStrategy, crowding_distances, dominates, nsga2_keys, pareto_front,
                                  pareto_ranks)
from test_strategies import GridSpace


def brute_ranks(points):
    """Peel fronts by counting, for each remaining point, the remaining points that dominate it."""
    ranks, remaining, rank = [None] * len(points), set(range(len(points))), 0
    while remaining:
        front = {i for i in remaining if sum(dominates(points[j], points[i]) for j in remaining) == 0}
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


def random_points(rng, m, n, kind):
    if kind == "continuous":
        return [tuple(rng.gauss(0, 1) for _ in range(m)) for _ in range(n)]
    if kind == "discrete":  # many ties, partial and whole
        return [tuple(float(rng.randrange(4)) for _ in range(m)) for _ in range(n)]
    base = [tuple(rng.gauss(0, 1) for _ in range(m)) for _ in range(max(1, n // 3))]
    return [rng.choice(base) for _ in range(n)]  # duplicates


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_ranks_match_a_brute_force_dominance_count(m):
    rng = random.Random(m)
    for kind in ("continuous", "discrete", "duplicates"):
        for _ in range(40):
            points = random_points(rng, m, rng.randrange(1, 30), kind)
            ranks = pareto_ranks(points)
            assert ranks == brute_ranks(points), (kind, points)
            assert [i for i, r in enumerate(ranks) if r == 0] == pareto_front(points)
            assert [r for r, _ in nsga2_keys(points)] == ranks
    assert pareto_ranks([]) == [] and nsga2_keys([]) == []


def test_the_store_wide_front_is_deaps_first_front():
    """pareto_front keeps its sort-and-sweep (whole stores); it finds what DEAP's first front holds."""
    from deap import base, tools

    class Fit(base.Fitness):
        weights = (1.0, -1.0, -1.0)

    class Ind:
        def __init__(self, values, i):
            self.fitness, self.i = Fit(values), i

    rng = random.Random(7)
    for _ in range(30):
        points = random_points(rng, 3, rng.randrange(1, 60), rng.choice(["continuous", "discrete"]))
        first = tools.sortNondominated([Ind(p, i) for i, p in enumerate(points)], len(points), first_front_only=True)[0]
        assert sorted(ind.i for ind in first) == pareto_front(points)


def test_crowding_distance_by_hand_and_ties_in_point_order():
    points = [(0.0, 4.0), (1.0, 3.0), (2.0, 1.0), (4.0, 0.0)]
    assert crowding_distances(points) == pytest.approx([math.inf, 2 / 4 + 3 / 4, 3 / 4 + 3 / 4, math.inf])
    assert crowding_distances([(1.0, 1.0)]) == [math.inf] and crowding_distances([]) == []
    # duplicates at the extremes: in each objective, ascending, the first of the lowest and the last of
    # the highest (in the points' order) are its boundaries
    d = crowding_distances([(0.0, 2.0), (0.0, 2.0), (1.0, 1.0), (2.0, 0.0), (2.0, 0.0)])
    assert d == [math.inf, math.inf, pytest.approx(2 / 2 + 2 / 2), math.inf, math.inf]
    # a tie in objective 1 between points that differ in objective 0 (three objectives): the first in the
    # points' order is the boundary, whatever objective 0 says (DEAP alone would order it by objective 0)
    d = crowding_distances([(2.0, 0.0, 1.0), (1.0, 0.0, 2.0), (0.0, 1.0, 0.0)])
    assert d == [math.inf, math.inf, math.inf]
    d = crowding_distances([(3.0, 0.0, 5.0), (1.0, 0.0, 4.0), (2.0, 1.0, 2.0), (0.0, 2.0, 0.0)])
    assert d[1] == pytest.approx((2 - 0) / 3 + (1 - 0) / 2 + (5 - 2) / 5)  # DEAP alone: inf (objective 1's boundary)


def _asks(m, seed, directions=None, n=200):
    """An evolution run on tied, rejected and NaN values; the sha256 of its asks."""
    s = EvolutionStrategy(GridSpace(20), seed=seed, n_objectives=m, population=12, tournament=4, directions=directions)
    rng, asked = random.Random(seed), []
    for _ in range(n):
        g = s.ask()
        asked.append(g)
        u = rng.random()
        value = None if u < 0.1 else (math.nan,) * m if u < 0.15 else tuple(float(rng.randrange(4)) for _ in range(m))
        s.tell(g, value)
    return hashlib.sha256(json.dumps(asked).encode()).hexdigest()[:16]


def test_selections_are_those_of_the_code_deap_replaced():
    """Pinned from the hand-written non-dominated sorting and crowding distance before DEAP replaced them
    (same seed, same asks); ties, rejected and NaN values included."""
    assert _asks(2, 0) == "e3cf578c5c14e1e7"
    assert _asks(3, 1) == "cbbc1ffe7fdb2dfd"
    assert _asks(3, 2, ("maximize",) * 3) == "04c062f7ba05464e"
    assert _asks(3, 1) == _asks(3, 1)  # and deterministic


def test_nan_and_rejected_members_lose_to_every_valid_one():
    s = EvolutionStrategy(GridSpace(20), seed=0, n_objectives=2, population=4, tournament=4)
    values = [(math.nan, 1.0), None, (0.1, 9.0), (-5.0, 0.0)]
    for v in values:
        s.tell(s.ask(), v)
    fit = s._fitness()
    assert fit[0] == fit[1] == (-math.inf,)
    assert fit[2][0] == fit[3][0] == 0  # both on the front
    assert s._tournament().value in (values[2], values[3])


def test_deap_creator_is_left_alone():
    import deap.creator

    before = set(vars(deap.creator))
    _asks(3, 5, n=40)
    pareto_ranks([(1.0, 2.0), (2.0, 1.0)])
    assert set(vars(deap.creator)) == before
