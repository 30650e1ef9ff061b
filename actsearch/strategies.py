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
  (n_objectives = m > 1): a tuple of m floats; objective 0 (the score) is maximised, objectives
  1..m-1 (costs) are minimised.  None means the candidate was rejected (invalid formula, NaN during
  training, screening failure...); a value containing NaN is treated as None.
* Updates.  With staged evaluation a told genome may later get a better estimate of its value (more
  seeds and tasks at a higher rung): `update(genome, value)`.  Evolution replaces the value of the
  member if it is still in the population; random, exhaustive and Optuna ignore updates.
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
"""
from __future__ import annotations

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


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting: rank 0 for the Pareto front, 1 for the front of the rest, and so on."""
    ranks = [-1] * len(points)
    remaining = list(range(len(points)))
    rank = 0
    while remaining:
        front = [remaining[i] for i in pareto_front([points[j] for j in remaining])]
        for i in front:
            ranks[i] = rank
        in_front = set(front)
        remaining = [i for i in remaining if i not in in_front]
        rank += 1
    return ranks


def crowding_distances(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point within `points` (one front); boundary points get inf."""
    n = len(points)
    if n == 0:
        return []
    dist = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for k in range(1, n - 1):
            dist[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (hi - lo)
    return dist


# ----------------------------------------------------------------------------- base class

class Strategy(ABC):
    """Proposes genomes of `space` (ask) and learns from their values (tell).

    Subclasses implement `_ask()` (a genome, or None when exhausted) and optionally `_tell()`; the
    base class validates values and keeps the book of outstanding asks (see the module docstring).
    """

    name: str = ""

    def __init__(self, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, **options: Any):
        if options:
            raise TypeError(f"strategy {self.name!r} got unknown options: {', '.join(sorted(options))}")
        if n_objectives < 1:
            raise ValueError(f"n_objectives must be >= 1, got {n_objectives}")
        self.space = space
        self.seed = seed
        self.n_objectives = n_objectives
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
        keep values use it (evolution updates the member if it is still in the population); the others
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
      largest crowding distance within its front, then highest objective 0; rejected members last.
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

    def _fitness(self) -> list[tuple]:
        """Sort key per population member; larger is better.  Rejected members get (-inf,)."""
        if self._fitness_cache is None:
            members = list(self.population)
            if self.n_objectives == 1:
                fit = [(m.value,) if m.value is not None else (-math.inf,) for m in members]
            else:
                valid = [i for i, m in enumerate(members) if m.value is not None]
                points = [members[i].value for i in valid]
                ranks = pareto_ranks(points)
                crowd = [0.0] * len(points)
                for r in set(ranks):
                    idx = [k for k in range(len(points)) if ranks[k] == r]
                    for k, d in zip(idx, crowding_distances([points[k] for k in idx])):
                        crowd[k] = d
                fit = [(-math.inf,)] * len(members)
                for k, i in enumerate(valid):
                    fit[i] = (-ranks[k], crowd[k], points[k][0])
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
        directions = ["maximize"] + ["minimize"] * (n_objectives - 1)
        self.study = optuna.create_study(sampler=sampler, directions=directions)
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


# ----------------------------------------------------------------------------- registry

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (ExhaustiveStrategy, RandomStrategy, EvolutionStrategy, OptunaStrategy)
}


def make_strategy(name: str, space: "SearchSpace", seed: int = 0, n_objectives: int = 1, **options: Any) -> Strategy:
    """The strategy registered under `name` (ValueError listing the valid names if there is none)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; valid names: {', '.join(sorted(STRATEGIES))}") from None
    return cls(space, seed=seed, n_objectives=n_objectives, **options)
