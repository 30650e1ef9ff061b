"""Search strategies: what to evaluate next, given what has been evaluated so far.

In the style of Optuna's samplers, a strategy proposes genomes of a SearchSpace and learns from their
values through an ask/tell interface, so that it knows nothing about who evaluates (a Ray executor,
a test loop), about training or about the result store:

    strategy = make_strategy("evolution", space, seed=0)
    genome = strategy.ask()          # None once the strategy has nothing more to propose
    ...                              # evaluate it, possibly in parallel with other asked genomes
    strategy.tell(genome, value)     # value: float, tuple (multi-objective) or None (rejected)

Contract (what a driver must know):

* Values.  Single objective: a float, maximised (a 1-tuple is accepted).  Multi-objective
  (n_objectives = m > 1): a tuple of m floats; by default objective 0 (the score) is maximised and
  objectives 1..m-1 (costs) are minimised; `directions` ("maximize" / "minimize" per objective)
  says otherwise, e.g. one maximised score per task (a layer's score on each architecture, EvoNorm).  None means the candidate was rejected (invalid formula, NaN during
  training, screening failure...); a value containing NaN is treated as None.
* Updates.  With staged evaluation a told genome may later get a better estimate of its value (more
  seeds and tasks at a higher rung): `update(genome, value)`.  Evolution replaces the value of the
  member if it is still in the population, surrogate replaces the value it learns from; random,
  exhaustive and Optuna ignore updates.
* Asynchronous use.  ask() may be called any number of times before the matching tell()s, and tells
  may come in any order.  Every tell must match an outstanding ask of an equal genome (compared by
  its canonical JSON); telling a genome with no outstanding ask raises KeyError.  A genome may be
  asked several times (strategies may propose duplicates; deduplicating evaluations, e.g. by
  formula identity, is the driver's job): each ask must be told once, and when several asks of the
  same genome are outstanding a tell settles the oldest of them (FIFO).
* Deterministic replay.  All randomness comes from the strategy's own seeded generators and the
  rng it hands to the space, and no decision depends on hashing or wall-clock time, so a fresh
  strategy with the same space, seed and options, fed the same sequence of ask()/tell() calls (same
  order, same values), returns the same genomes.  To resume a killed run, log every ask (when it is
  made) and every tell (in the order it is given to the strategy), replay the log into a fresh
  strategy, then evaluate the asked-but-never-told genomes (they are still outstanding, see
  `pending()`) and continue.  Spaces must draw randomness only from the rng they are given.

Strategies:

* `ExhaustiveStrategy` ("exhaustive"): space.enumerate() in order, then None.
* `RandomStrategy` ("random"): space.sample(rng), independently, forever.
* `EvolutionStrategy` ("evolution"): regularized (aging) evolution, Real et al. 2019.
* `OptunaStrategy` ("optuna"): Optuna's TPE sampler (NSGA-II for multi-objective) over the space's
  define-by-run `suggest(trial)`, through study.ask()/study.tell().
* `SurrogateStrategy` ("surrogate"): a regressor (random forest by default) on training-free
  features of the candidates (AQuaSurF-style, `actsearch.surrogate_features`) with an upper
  confidence bound acquisition over a pool (the whole space when small and finite); objective 0 only.
"""
from __future__ import annotations

import functools
import json
import math
import random
import warnings
from abc import ABC, abstractmethod
from collections import deque
from numbers import Real
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

if TYPE_CHECKING:  # only for annotations: strategies need nothing from the spaces package at run time
    from actsearch.search_spaces.base import SearchSpace

Genome = list  # as in search_spaces.base: nested lists of str / int / float
Value = Union[float, tuple[float, ...]]


def genome_key(genome: Genome) -> str:
    """Canonical text of a genome; genomes with equal keys are the same genome (JSON round-trip safe)."""
    return json.dumps(genome, separators=(",", ":"), allow_nan=True)


# ----------------------------------------------------------------------------- Pareto utilities

def dominates(p: Sequence[float], q: Sequence[float]) -> bool:
    """Whether p Pareto-dominates q (objective 0 maximised, the others minimised)."""
    if p[0] < q[0] or any(pi > qi for pi, qi in zip(p[1:], q[1:])):
        return False
    return p[0] > q[0] or any(pi < qi for pi, qi in zip(p[1:], q[1:]))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the non-dominated points; objective 0 is maximised, the others minimised.

    Equal points do not dominate each other, so duplicates of a front point are all on the front.
    Runs in O(n log n + n * |front|): points are visited in lexicographic order of
    (-obj0, obj1, ...), in which a dominating point always comes before the points it dominates, so
    each point need only be compared with the front found so far.
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], *points[i][1:]))
    front: list[int] = []
    for i in order:
        if not any(dominates(points[j], points[i]) for j in front):
            front.append(i)
    return sorted(front)


# Multi-objective selection (EvolutionStrategy's crowded comparison) uses DEAP's NSGA-II tools: the
# non-dominated sorting of Deb et al. 2002 (deap.tools.sortNondominated) and the crowding distance
# (deap.tools.emo.assignCrowdingDist), on points wrapped in minimal DEAP fitnesses (weights +1 for the
# maximised objective 0, -1 for the minimised others; classes made here, deap.creator is left alone).
# pareto_front stays a sort-and-sweep (O(n log n + n |front|)): it runs on every evaluated candidate of
# a store (reports, `top`, the search's summary), where DEAP's O(m n^2) first-front pass is ~300x slower
# at 2,000 points; tests check that both give the same front.

@functools.lru_cache(maxsize=None)
def _fitness_class(weights: tuple[float, ...]) -> type:
    from deap import base

    return type("ParetoFitness", (base.Fitness,), {"weights": weights})


class _Individual:
    """What DEAP's selection tools need of an individual: a `fitness`; `index` is the point's position."""

    __slots__ = ("fitness", "index")

    def __init__(self, fitness, index: int):
        self.fitness, self.index = fitness, index


def _individuals(points: Sequence[Sequence[float]]) -> list[_Individual]:
    cls = _fitness_class((1.0,) + (-1.0,) * (len(points[0]) - 1))
    return [_Individual(cls(tuple(float(v) for v in p)), i) for i, p in enumerate(points)]


def _fronts(individuals: list[_Individual]) -> list[list[_Individual]]:
    """DEAP's non-dominated sorting; each front in the points' order (so ties are broken by position)."""
    from deap import tools

    return [sorted(front, key=lambda ind: ind.index)
            for front in tools.sortNondominated(individuals, len(individuals))]


def _crowding(front: list[_Individual]) -> list[float]:
    """DEAP's crowding distance (assignCrowdingDist) of each member of one front, summed over the
    objectives one at a time: DEAP sorts a front in place objective after objective, so a tie in one
    objective would be broken by the order of the previous one; per objective, ties keep the points'
    order, so selections do not depend on the order of the objectives (and equal those of the Pareto
    code this replaced).  Deb et al.'s scale (no division by the number of objectives)."""
    from deap.tools.emo import assignCrowdingDist

    total = [0.0] * len(front)
    one = _fitness_class((1.0,))
    for j in range(len(front[0].fitness.values) if front else 0):
        view = [_Individual(one((ind.fitness.values[j],)), ind.index) for ind in front]
        assignCrowdingDist(view)
        total = [t + v.fitness.crowding_dist for t, v in zip(total, view)]
    return total


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting (DEAP's): rank 0 for the Pareto front, 1 for the front of the rest, and so
    on; objective 0 maximised, the others minimised.  Points must not contain NaN (a rejected value is
    the caller's to leave out)."""
    if not points:
        return []
    ranks = [0] * len(points)
    for rank, front in enumerate(_fronts(_individuals(points))):
        for ind in front:
            ranks[ind.index] = rank
    return ranks


def crowding_distances(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point within `points` (one front; DEAP's); boundary points get inf."""
    if not points:
        return []
    return _crowding(_individuals(points))


def nsga2_keys(points: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
    """(Pareto rank, crowding distance within its front) of each point: NSGA-II's crowded comparison
    prefers the lower rank, then the larger distance.  Objective 0 maximised, the others minimised."""
    if not points:
        return []
    keys: list[tuple[int, float]] = [(0, 0.0)] * len(points)
    for rank, front in enumerate(_fronts(_individuals(points))):
        for ind, dist in zip(front, _crowding(front)):
            keys[ind.index] = (rank, dist)
    return keys


# ----------------------------------------------------------------------------- base class

class Strategy(ABC):
    """Proposes genomes of `space` (ask) and learns from their values (tell).

    Subclasses implement `_ask()` (a genome, or None when exhausted) and optionally `_tell()`; the
    base class validates values and keeps the book of outstanding asks (see the module docstring).
    """

    name: str = ""

    def __init__(self, space: "SearchSpace", seed: int = 0, n_objectives: int = 1,
                 directions: Optional[Sequence[str]] = None, **options: Any):
        if options:
            raise TypeError(f"strategy {self.name!r} got unknown options: {', '.join(sorted(options))}")
        if n_objectives < 1:
            raise ValueError(f"n_objectives must be >= 1, got {n_objectives}")
        if directions is None:
            directions = ("maximize",) + ("minimize",) * (n_objectives - 1)
        directions = tuple(directions)
        if len(directions) != n_objectives or any(d not in ("maximize", "minimize") for d in directions):
            raise ValueError(f"directions must be {n_objectives} of 'maximize' / 'minimize', got {directions!r}")
        self.space = space
        self.seed = seed
        self.n_objectives = n_objectives
        self.directions = directions
        self.rng = random.Random(seed)
        self._pending: dict[str, int] = {}          # genome key -> outstanding asks (insertion-ordered)
        self._pending_genomes: dict[str, Genome] = {}
        self.n_asked = 0
        self.n_told = 0
        self.exhausted = False

    # --- public interface
    def ask(self) -> Optional[Genome]:
        """The next genome to evaluate, or None when nothing more can be proposed."""
        if self.exhausted:
            return None
        genome = self._ask()
        if genome is None:
            self.exhausted = True
            return None
        key = genome_key(genome)
        self._pending[key] = self._pending.get(key, 0) + 1
        self._pending_genomes.setdefault(key, genome)
        self.n_asked += 1
        return genome

    def tell(self, genome: Genome, value: Optional[Union[float, Sequence[float]]]) -> None:
        """Report the value of an asked genome (None: rejected).  See the module docstring."""
        key = genome_key(genome)
        if not self._pending.get(key):
            raise KeyError(f"tell() for a genome with no outstanding ask: {key}")
        normalised = self._normalise(value)  # validate before changing any state
        self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
            del self._pending_genomes[key]
        self.n_told += 1
        self._tell(key, genome, normalised)

    def update(self, genome: Genome, value: Optional[Union[float, Sequence[float]]]) -> None:
        """A better estimate of the value of a genome already told (staged evaluation: the value at the
        candidate's highest rung, on more tasks and seeds, replaces its rung-0 value).  Strategies that
        keep values use it (evolution updates the member if it is still in the population, surrogate the
        value its model learns from); the others
        ignore it (random, exhaustive; Optuna, whose finished trials cannot be told again, keeps the
        rung-0 value).  Deterministic, and logged by the driver like tells, so replay stays exact."""
        self._update(genome_key(genome), genome, self._normalise(value))

    def pending(self) -> list[Genome]:
        """Genomes asked but not yet told, one entry per outstanding ask (order of first ask)."""
        return [g for k, g in self._pending_genomes.items() for _ in range(self._pending[k])]

    @property
    def n_pending(self) -> int:
        return self.n_asked - self.n_told

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(space={getattr(self.space, 'name', '?')!r}, seed={self.seed}, "
                f"n_objectives={self.n_objectives}, asked={self.n_asked}, told={self.n_told})")

    # --- for subclasses
    @abstractmethod
    def _ask(self) -> Optional[Genome]:
        ...

    def _tell(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        """Learn from a value (already normalised: float, m-tuple of floats, or None)."""

    def _update(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        """Replace the value of a told genome (already normalised); default: ignored."""

    def _normalise(self, value: Any) -> Optional[Value]:
        if value is None:
            return None
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError
            if isinstance(value, Real):
                values = (float(value),)
            elif hasattr(value, "__iter__") and getattr(value, "ndim", 1) != 0:
                values = tuple(float(v) for v in value)
            else:  # 0-d arrays / tensors and other float-convertible scalars
                values = (float(value),)
        except (TypeError, ValueError):
            raise TypeError(f"value must be a number, a sequence of numbers or None, got {value!r}") from None
        if len(values) != self.n_objectives:
            raise ValueError(f"expected {self.n_objectives} objective value(s), got {len(values)}: {value!r}")
        if any(math.isnan(v) for v in values):
            return None
        return values[0] if self.n_objectives == 1 else values


# ----------------------------------------------------------------------------- implementations

class ExhaustiveStrategy(Strategy):
    """Every genome of space.enumerate(), in its order, then None.  Values are ignored."""

    name = "exhaustive"

    def __init__(self, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, **options: Any):
        super().__init__(space, seed, n_objectives, **options)
        self._iterator = None

    def _ask(self) -> Optional[Genome]:
        if self._iterator is None:  # created lazily: a non-enumerable space fails on first ask
            self._iterator = iter(self.space.enumerate())
        return next(self._iterator, None)


class RandomStrategy(Strategy):
    """Independent space.sample(rng) draws; values are ignored.  Never exhausted."""

    name = "random"

    def _ask(self) -> Optional[Genome]:
        return self.space.sample(self.rng)


class _Member:
    __slots__ = ("genome", "value")

    def __init__(self, genome: Genome, value: Optional[Value]):
        self.genome = genome
        self.value = value


class EvolutionStrategy(Strategy):
    """Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image Classifier
    Architecture Search"), asynchronous as in the paper.

    Options: population (P, default 20), tournament (S, default 5), crossover_prob (default 0.0).

    * The population is the last P told genomes (rejected ones included), in tell order; a tell
      appends the genome and, once the population exceeds P, removes the oldest (aging), whatever
      its value.
    * While fewer than P genomes have been told, ask() returns random samples (so with many parallel
      workers more than P random genomes may be asked before the population is full, as in the
      paper's asynchronous algorithm).
    * Afterwards ask() samples a tournament of S distinct members uniformly from the population and
      returns space.mutate(winner).  With probability crossover_prob it instead runs a second
      tournament and returns the first child of space.crossover(winner1, winner2), mutated if it
      equals one of its parents.  If the winner is a rejected genome (the whole tournament was
      rejected) ask() returns a fresh random sample instead.
    * Winner.  Single objective: the highest value; rejected members are worse than every valid one;
      ties go to the first member drawn.  Multi-objective: NSGA-II's crowded comparison -- lowest
      Pareto rank (non-dominated sorting of the valid members of the whole current population), then
      largest crowding distance within its front, then highest objective 0; rejected members last
      (ranks and distances: DEAP's sortNondominated and assignCrowdingDist, `nsga2_keys`).
    """

    name = "evolution"

    def __init__(self, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, *,
                 population: int = 20, tournament: int = 5, crossover_prob: float = 0.0, **options: Any):
        super().__init__(space, seed, n_objectives, **options)
        if population < 1 or tournament < 1:
            raise ValueError("population and tournament must be >= 1")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
        self.population_size = population
        self.tournament_size = tournament
        self.crossover_prob = crossover_prob
        self.population: deque[_Member] = deque()
        self._fitness_cache: Optional[list[tuple]] = None

    def _tell(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        self.population.append(_Member(genome, value))
        if len(self.population) > self.population_size:
            self.population.popleft()
        self._fitness_cache = None

    def _update(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        # every member of that genome still in the population (aged-out members are gone, as in the paper)
        for m in self.population:
            if genome_key(m.genome) == key:
                m.value = value
        self._fitness_cache = None

    def _oriented(self, value: tuple) -> tuple:
        """A value in the Pareto utilities' orientation (objective 0 maximised, the others minimised)."""
        want = ("maximize",) + ("minimize",) * (len(value) - 1)
        return tuple(v if d == w else -v for v, d, w in zip(value, self.directions, want))

    def _fitness(self) -> list[tuple]:
        """Sort key per population member; larger is better.  Rejected members get (-inf,)."""
        if self._fitness_cache is None:
            members = list(self.population)
            if self.n_objectives == 1:
                fit = [(m.value,) if m.value is not None else (-math.inf,) for m in members]
            else:
                valid = [i for i, m in enumerate(members) if m.value is not None]
                points = [self._oriented(members[i].value) for i in valid]
                fit = [(-math.inf,)] * len(members)
                for k, (i, (rank, crowd)) in enumerate(zip(valid, nsga2_keys(points))):
                    fit[i] = (-rank, crowd, points[k][0])
            self._fitness_cache = fit
        return self._fitness_cache

    def _tournament(self) -> _Member:
        fit = self._fitness()
        drawn = self.rng.sample(range(len(self.population)), min(self.tournament_size, len(self.population)))
        best = max(drawn, key=lambda i: fit[i])  # max returns the first maximal element: ties -> first drawn
        return self.population[best]

    def _ask(self) -> Optional[Genome]:
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        if self.crossover_prob > 0 and self.rng.random() < self.crossover_prob:
            a, b = self._tournament(), self._tournament()
            if a.value is None or b.value is None:
                return self.space.sample(self.rng)
            child = self.space.crossover(a.genome, b.genome, self.rng)[0]
            if genome_key(child) in (genome_key(a.genome), genome_key(b.genome)):
                child = self.space.mutate(child, self.rng)
            return child
        parent = self._tournament()
        if parent.value is None:
            return self.space.sample(self.rng)
        return self.space.mutate(parent.genome, self.rng)


class OptunaStrategy(Strategy):
    """Optuna over the space's define-by-run `suggest(trial)`, through study.ask()/study.tell().

    Single objective: TPESampler(seed=seed) (constant_liar=True, so parallel asks see each other's
    running trials), direction "maximize".  Multi-objective: NSGAIISampler(seed=seed), directions
    ("maximize", "minimize", ...).  Rejected candidates (None / NaN) are told as TrialState.FAIL, which
    the samplers ignore.  Each ask creates one trial; a tell settles the oldest outstanding trial of
    an equal genome.  Optuna is never exhausted (in a finite space it proposes duplicates).

    Options: n_startup_trials (TPE, default 10), multivariate (TPE, default False), constant_liar
    (TPE, default True), population (NSGA-II population_size, default 50), sampler (an Optuna sampler
    instance replacing the default; it must be seeded for deterministic replay), rejected_value
    (default None: rejected trials are FAIL; a value -- float, or tuple for multi-objective -- tells
    them COMPLETE with that value instead, so that the sampler learns to avoid them; samplers ignore
    FAIL trials and may keep proposing a rejected genome in a space where many genomes are invalid).
    Optuna's logging is silenced (set to WARNING) when the strategy is created.
    """

    name = "optuna"

    def __init__(self, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, *,
                 n_startup_trials: int = 10, multivariate: bool = False, constant_liar: bool = True,
                 population: int = 50, sampler: Any = None, rejected_value: Any = None, **options: Any):
        super().__init__(space, seed, n_objectives, **options)
        self.rejected_value = self._normalise(rejected_value)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        if sampler is None:
            with warnings.catch_warnings():  # some sampler options are flagged experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if n_objectives == 1:
                    sampler = optuna.samplers.TPESampler(
                        seed=seed, n_startup_trials=n_startup_trials, multivariate=multivariate,
                        constant_liar=constant_liar)
                else:
                    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
        self.study = optuna.create_study(sampler=sampler, directions=list(self.directions))
        self._trials: dict[str, deque] = {}  # genome key -> outstanding trials, oldest first

    def _ask(self) -> Optional[Genome]:
        trial = self.study.ask()
        try:
            genome = self.space.suggest(trial)
        except BaseException:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            raise
        self._trials.setdefault(genome_key(genome), deque()).append(trial)
        return genome

    def _tell(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        trials = self._trials[key]
        trial = trials.popleft()
        if not trials:
            del self._trials[key]
        if value is None:
            value = self.rejected_value
        if value is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)


class SurrogateStrategy(Strategy):
    """Surrogate-model search in the spirit of AQuaSurF (Bingham & Miikkulainen 2023, "Efficient
    Activation Function Optimization through Surrogate Modeling"): a regressor on training-free
    features of each candidate (its outputs and slopes on N(0,1) quantiles and a few far points, and
    statistics of a tiny random MLP at initialisation: `actsearch.surrogate_features`) predicts the
    value of candidates not yet evaluated, and an acquisition picks the next one.

    Options: n_startup (default 10), pool (500), pool_refresh (50), mutants (50), parents (5),
    regressor ("forest", "gp" or "knn"; default "forest"), kappa (UCB weight, default 1.0),
    epsilon (0.05), enumerate_limit (20000), max_features (the forest's fraction of features tried
    at each split, default 1/3: Breiman's choice for regression).

    * Startup.  Until n_startup told genomes have features, ask() returns random samples
      (space.sample), each redrawn (up to 50 times) while it repeats an asked genome or candidate
      (in a finite space, when all 50 repeat, the first remaining pool member instead).
    * Pool.  A finite space of at most enumerate_limit genomes (space.size()) is enumerated and
      featurised once, at the first model ask (first genome of each candidate id, in enumeration
      order; about 13 s for PANGAEA's 5,103 genomes on 2 loaded cores, features are cached for the
      process, and on disk per space and code version: surrogate_features.save_space_features).  Otherwise the pool starts as `pool` random samples; each later ask adds
      `pool_refresh` fresh samples and `mutants` mutations of the `parents` best told genomes (in
      turn), and forgets the oldest entries beyond pool + mutants.  A genome whose genome or
      candidate id (identical function) was already asked is never proposed again, nor is one whose
      candidate cannot be built or evaluated (features None: unknown; in a finite space such genomes
      are returned, once each, after every other one, and then ask() returns None).
    * Acquisition.  With probability epsilon a uniformly random pool member; otherwise the pool
      member of highest upper confidence bound mu + kappa * sigma (first in pool order on ties):
      "forest": RandomForestRegressor (N_TREES = 50), mean and standard deviation over the trees;
      "gp": GaussianProcessRegressor, kernel C * RBF (one length scale, >= 0.02 sqrt(d), see
      _LS_LOW) + White, normalize_y, hyperparameters by L-BFGS from a fixed start, mean and std;
      "knn": KNeighborsRegressor(5, distance weights), sigma = std(y) * (distance to the nearest
      training point / its mean over the pool).
      Features are standardised per feature with statistics frozen at the first model ask (over the
      training rows and that pool), so a fitted model stays valid; it is refitted only when values
      arrived (tell or update) since the last fit.  BLAS/OpenMP run on one thread while fitting and
      predicting (the matrices are small; on a loaded machine two threads were 200x slower).
    * Values.  Objective 0 only: with n_objectives > 1 the first objective (the score) is learned
      and the costs are ignored; when every objective is maximised (one score per task) their mean
      is learned.  A genome's value is its latest tell or update (update replaces the
      value of a told genome; an update of a genome never told is ignored).  The regressor learns a
      Gaussian copula of the values (ranks, ties averaged, mapped to N(0,1) quantiles), so that one
      outlier (-228,870 for 0**erf(x) on the synthetic objective) does not flatten the rest; rejected
      values (None, NaN, +-inf) are tied below every valid one, so that the model steers away from
      similar candidates.
    * Asynchronous batches (kriging believer).  Outstanding asks with features are added to the
      training set at the value the model of the told values predicts for them (the GP keeps its
      fitted hyperparameters), so that the next ask of a batch goes elsewhere.
    * Deterministic replay.  Randomness comes from the strategy's rng (pool draws, epsilon) and
      scikit-learn's random_state = seed; features are rounded (see surrogate_features) and every
      order is insertion order, so replays give the same genomes.

    Measurements (2 loaded CPU cores), on the PANGAEA/AQuaSurF space (5,103 genomes; 2,267 distinct
    candidates pass screening) with two synthetic objectives: A = -RMS(f - x*sigmoid(x)) on the N(0,1)
    probes (screening failures rejected), and B = -RMS of the residual of the best affine fit
    a*tanh + b on the same probes (not a function of the raw features).

    Held-out split (regressor fitted on n random distinct candidates, copula values; Spearman rank
    correlation with the true values on all the others; mean of 6 splits):

        objective  n     forest  gp     knn     forest (100 trees) without the MLP statistics
        A          10    0.77    0.71   0.67    0.38
        A          30    0.86    0.85   0.79    0.66
        A          100   0.95    0.93   0.91    0.93
        B          10    0.52    0.44   0.40    0.31
        B          30    0.85    0.56   0.60    0.67
        B          100   0.92    0.87   0.81    0.88

    (100 trees: the same to +-0.03.  A GP length scale allowed down to 1e-2 collapses to white
    noise on some splits, correlation undefined; bounded below by sqrt(d)/4 it ranks better on B at
    n = 30 (0.72) but searches worse, 35 evaluations below.)

    Search loop (objective A): evaluations until a genome of the top 1% (52 genomes) is told, median
    over seeds 0-15, budget 400; asks one at a time unless "batch of 4" (4 asks, then their 4 tells):

        random 52.5 (seeds 0-7: 75)    evolution (population 20) 46; batch of 4: 38.5
        surrogate forest (default) 21; batch of 4: 20; sampled pool (enumerate_limit=0): 18.5
        surrogate forest, 100 trees 17.5; batch of 4: 20
        surrogate gp 16.5 (length scale >= sqrt(d)/4: 35, seeds 0-7)
        surrogate knn: kappa 1: 300 (the distance bonus explores blindly); kappa 0: 18

    max_features.  The measurements above used every feature at each split (1.0).  A third of them
    (Breiman's default for regression forests) fits 3x faster and finds as well: on objective A,
    median 20 evaluations (seeds 0-7) against 18 with every feature, 13.9 s against 38.4 s for the 8
    searches; on a partial PANGAEA table (1,216 of 2,267 candidates trained, true score = 5-seed
    multi-task score), evaluations to its top 1% 70, 112, 91, 83 (seeds 0-3) against 101, 161 (seeds
    0-1).  The full-table comparison is in benchmarks/README.md.

    The forest is the default: it ranks best on every held-out split, most clearly on B, whose
    relation to the features is indirect (as a trained network's accuracy will be), and in the loop
    it is within the seed-to-seed spread of the GP (16 seeds; its worst seed 35 evaluations, the GP's
    49).  The first 10 evaluations are the random startup, shared by every strategy (seeds 4, 5, 6
    and 14 hit the top 1% there).
    """

    name = "surrogate"
    REGRESSORS = ("gp", "knn", "forest")
    STARTUP_TRIES = 50
    N_TREES = 50     # forest size: as good as 100 trees on the held-out splits below, half the fitting time
    _LS_LOW = 0.02   # GP length scale >= 0.02 sqrt(d): ~ the median distance between nearest distinct candidates

    def __init__(self, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, *, n_startup: int = 10,
                 pool: int = 500, pool_refresh: int = 50, mutants: int = 50, parents: int = 5,
                 regressor: str = "forest", kappa: float = 1.0, epsilon: float = 0.05,
                 enumerate_limit: int = 20000, max_features: float = 1 / 3, **options: Any):
        super().__init__(space, seed, n_objectives, **options)
        if regressor not in self.REGRESSORS:
            raise ValueError(f"regressor must be one of {', '.join(self.REGRESSORS)}, got {regressor!r}")
        if n_startup < 1 or pool < 1 or pool_refresh < 0 or mutants < 0 or parents < 1:
            raise ValueError("n_startup, pool and parents must be >= 1, pool_refresh and mutants >= 0")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if not kappa >= 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        if not 0.0 < max_features <= 1.0:
            raise ValueError(f"max_features must be in (0, 1], got {max_features}")
        self.max_features = float(max_features)
        self.n_startup, self.pool_size, self.pool_refresh = n_startup, pool, pool_refresh
        self.mutants, self.parents = mutants, parents
        self.regressor, self.kappa, self.epsilon = regressor, float(kappa), float(epsilon)
        self.enumerate_limit = enumerate_limit
        self._random_state = seed % (2 ** 32)
        self._told: dict[str, tuple[Genome, Optional[float]]] = {}   # key -> (genome, objective 0), tell order
        self._info: dict[str, tuple[Optional[str], Any]] = {}        # key -> (candidate id, features)
        self._asked_keys: set[str] = set()
        self._asked_cids: set[str] = set()
        self._finite: Optional[list[tuple[str, Genome]]] = None      # the enumerated space, one genome per id
        self._unknown: Optional[list[tuple[str, Genome]]] = None     # ... and the genomes without features
        self._pool: dict[str, Genome] = {}                           # the sampled pool (unbounded spaces)
        self._not_enumerable = False
        self._scale: Optional[tuple] = None                          # frozen (mean, std) of the features
        self._version = 0                                            # bumped by tell/update
        self._fitted: Optional[tuple[int, Any, Any, Any]] = None     # (version, model, X, y) of the told values

    # --- features and bookkeeping
    def _features(self, key: str, genome: Genome) -> tuple[Optional[str], Any]:
        info = self._info.get(key)
        if info is None:
            from actsearch.surrogate_features import genome_features

            info = self._info[key] = genome_features(self.space, genome)
        return info

    def _fresh(self, key: str, genome: Genome) -> bool:
        if key in self._asked_keys:
            return False
        cid = self._features(key, genome)[0]
        return cid is None or cid not in self._asked_cids

    def ask(self) -> Optional[Genome]:
        genome = super().ask()
        if genome is not None:
            key = genome_key(genome)
            self._asked_keys.add(key)
            cid = self._features(key, genome)[0]
            if cid is not None:
                self._asked_cids.add(cid)
        return genome

    def _tell(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        self._told.pop(key, None)  # a re-told genome moves to the end (its latest value)
        self._told[key] = (genome, self._objective(value))
        self._version += 1

    def _update(self, key: str, genome: Genome, value: Optional[Value]) -> None:
        if key in self._told:
            self._told[key] = (self._told[key][0], self._objective(value))
            self._version += 1

    def _objective(self, value: Optional[Value]) -> Optional[float]:
        """The value learned: objective 0 (the score; costs ignored), or, when every objective is
        maximised (one score per task), their mean."""
        if value is None:
            return None
        if self.n_objectives == 1:
            v = value
        elif all(d == "maximize" for d in self.directions):
            v = sum(value) / len(value)
        else:
            v = value[0]
        return v if math.isfinite(v) else None

    def _training_keys(self) -> list[str]:
        return [k for k, (g, _) in self._told.items() if self._features(k, g)[1] is not None]

    # --- asking
    def _ask(self) -> Optional[Genome]:
        startup = len(self._training_keys()) < self.n_startup
        if startup:
            genome = self._random_genome()
            if self._fresh(genome_key(genome), genome) or not self._pool_is_finite():
                return genome
            # a finite space whose random draws only repeat asked genomes: its remaining ones, in order
        keys, genomes, feats = self._candidates()
        if not keys:
            if self._finite is not None:
                rest = [g for k, g in self._unknown if self._fresh(k, g)]
                return rest[0] if rest else None
            return self._random_genome()
        if startup:
            return genomes[0]
        if self.rng.random() < self.epsilon:
            return genomes[self.rng.randrange(len(genomes))]
        import numpy as np

        return genomes[int(np.argmax(self._acquisition(feats)))]

    def _random_genome(self) -> Genome:
        genome = self.space.sample(self.rng)
        for _ in range(self.STARTUP_TRIES - 1):
            if self._fresh(genome_key(genome), genome):
                break
            genome = self.space.sample(self.rng)
        return genome

    def _candidates(self) -> tuple[list[str], list[Genome], list]:
        """The pool members that may be proposed: not asked (genome or candidate), with features,
        one per candidate id, in pool order."""
        if self._finite is None and self._pool_is_finite():
            try:
                self._enumerate()
            except NotImplementedError:  # a size() but no enumerate(): sample a pool instead
                self._not_enumerable = True
                self._finite = self._unknown = None
        if self._finite is not None:
            entries = self._finite
        else:
            self._grow_pool()
            entries = list(self._pool.items())
        keys, genomes, feats, seen = [], [], [], set()
        for key, genome in entries:
            if key in self._asked_keys:
                continue
            cid, f = self._features(key, genome)
            if f is None or cid in self._asked_cids or cid in seen:
                continue
            seen.add(cid)
            keys.append(key)
            genomes.append(genome)
            feats.append(f)
        if self._scale is None and feats:
            self._freeze_scale(feats)
        return keys, genomes, feats

    def _pool_is_finite(self) -> bool:
        try:
            size = self.space.size()
        except (AttributeError, NotImplementedError):
            return False
        return not self._not_enumerable and size is not None and size <= self.enumerate_limit

    def _enumerate(self) -> None:
        from actsearch.surrogate_features import load_space_features, save_space_features, space_feature_file

        self._finite, self._unknown, seen = [], [], set()
        genomes = list(self.space.enumerate())
        path, keys = space_feature_file(self.space, genomes)
        loaded = load_space_features(path)  # the space's feature file, if any
        for genome in genomes:
            key = genome_key(genome)
            cid, f = self._features(key, genome)
            if f is None:
                if cid is None or cid not in seen:
                    self._unknown.append((key, genome))
            elif cid not in seen:
                self._finite.append((key, genome))
            if cid is not None:
                seen.add(cid)
        if not loaded:
            save_space_features(path, keys)

    def _grow_pool(self) -> None:
        def add(genome: Genome) -> None:
            key = genome_key(genome)
            if key not in self._asked_keys and key not in self._pool:
                self._pool[key] = genome

        for _ in range(self.pool_size if not self._pool else self.pool_refresh):
            add(self.space.sample(self.rng))
        valid = [(i, g, v) for i, (g, v) in enumerate(self._told.values()) if v is not None]
        best = [g for _, g, _ in sorted(valid, key=lambda t: (-t[2], t[0]))[:self.parents]]
        for i in range(self.mutants if best else 0):
            add(self.space.mutate(best[i % len(best)], self.rng))
        while len(self._pool) > self.pool_size + self.mutants:
            key = next(iter(self._pool))
            del self._pool[key]
            if key not in self._told and key not in self._pending_genomes:
                self._info.pop(key, None)  # (features stay in the module's cache)

    def _freeze_scale(self, pool_feats: list) -> None:
        import numpy as np

        rows = [self._info[k][1] for k in self._training_keys()] + list(pool_feats)
        m = np.stack(rows)
        std = m.std(axis=0)
        self._scale = (m.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    # --- the model
    def _scaled(self, rows) -> Any:
        import numpy as np

        mean, std = self._scale
        return (np.stack(rows) - mean) / std

    def _told_data(self) -> tuple[Any, Any]:
        """Standardised features and Gaussian-copula values of the told genomes: the values' ranks (ties
        averaged, rejected ones tied below every valid one) mapped to N(0,1) quantiles."""
        import numpy as np
        from scipy.special import ndtri
        from scipy.stats import rankdata

        keys = self._training_keys()
        values = [self._told[k][1] for k in keys]
        X = self._scaled([self._info[k][1] for k in keys])
        ranks = rankdata([-math.inf if v is None else v for v in values], method="average")
        return X, ndtri((ranks - 0.5) / len(values))

    def _new_model(self, X, y, kernel=None) -> Any:
        if self.regressor == "gp":
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

            if kernel is None:
                root = math.sqrt(X.shape[1])  # (see _LS_LOW)
                kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(root, (root * self._LS_LOW, root * 100))
                          + WhiteKernel(1e-2, (1e-6, 1e1)))
                model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0,
                                                 random_state=self._random_state)
            else:
                model = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None,
                                                 random_state=self._random_state)
        elif self.regressor == "forest":
            from sklearn.ensemble import RandomForestRegressor

            model = RandomForestRegressor(n_estimators=self.N_TREES, max_features=self.max_features,
                                          random_state=self._random_state)
        else:
            from sklearn.neighbors import KNeighborsRegressor

            model = KNeighborsRegressor(n_neighbors=min(5, len(y)), weights="distance")
        with warnings.catch_warnings(), _one_thread():  # GP hyperparameters at their bounds, and the like
            warnings.simplefilter("ignore")
            return model.fit(X, y)

    def _model(self) -> tuple[Any, Any, Any]:
        """The model of the told values (refitted when values changed), then, when asks with features are
        outstanding, that model's training set plus the outstanding candidates at its predicted mean."""
        import numpy as np

        if self._fitted is None or self._fitted[0] != self._version:
            X, y = self._told_data()
            self._fitted = (self._version, self._new_model(X, y), X, y)
        _, model, X, y = self._fitted
        pending = [self._features(k, g)[1] for k, g in self._pending_genomes.items()]
        pending = [f for f in pending if f is not None]
        if not pending:
            return model, X, y
        Xp = self._scaled(pending)
        with _one_thread():
            believed = model.predict(Xp)
        X2, y2 = np.concatenate([X, Xp]), np.concatenate([y, believed])
        kernel = model.kernel_ if self.regressor == "gp" else None
        return self._new_model(X2, y2, kernel), X2, y2

    def _acquisition(self, feats) -> Any:
        model, X, y = self._model()
        Z = self._scaled(feats)
        with _one_thread():
            mu, sd = self._predict(model, X, y, Z)
        return mu + self.kappa * sd

    def _predict(self, model, X, y, Z) -> tuple[Any, Any]:
        import numpy as np

        if self.regressor == "gp":
            mu, sd = model.predict(Z, return_std=True)
        elif self.regressor == "forest":
            # the trees' own input check (float32 conversion) done once, not once per tree: same numbers
            Z32 = np.ascontiguousarray(Z, dtype=np.float32)
            per_tree = np.stack([t.predict(Z32, check_input=False) for t in model.estimators_])
            mu, sd = per_tree.mean(axis=0), per_tree.std(axis=0)
        else:
            from sklearn.neighbors import NearestNeighbors

            mu = model.predict(Z)
            dist = NearestNeighbors(n_neighbors=1).fit(X).kneighbors(Z)[0][:, 0]
            sd = float(np.std(y)) * dist / max(float(dist.mean()), 1e-12)
        return mu, sd


def _one_thread():
    """BLAS and OpenMP limited to one thread: the matrices are small, and on a loaded machine two
    threads make a 40x40 solve 200 times slower (and one thread makes sums independent of threading)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


# ----------------------------------------------------------------------------- registry

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (ExhaustiveStrategy, RandomStrategy, EvolutionStrategy, OptunaStrategy,
                               SurrogateStrategy)
}


def make_strategy(name: str, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, **options: Any) -> Strategy:
    """The strategy registered under `name` (ValueError listing the valid names if there is none)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; valid names: {', '.join(sorted(STRATEGIES))}") from None
    return cls(space, seed=seed, n_objectives=n_objectives, **options)
