"""The Swish paper's search space (Ramachandran, Zoph & Le 2017, "Searching for Activation Functions").

An activation function is a chain of *core units* ``b(u1(x1), u2(x2))`` (a binary function of two
unary functions).  Following the paper's Figure 1, the first unit reads the input on both sides and
every later unit combines the previous unit's output with the input again:

    y_1 = b_1(u_11(x),       u_12(x))
    y_k = b_k(u_k1(y_{k-1}), u_k2(x))      k = 2 .. n,   f(x) = y_n

with n between ``min_units`` (default 1) and ``units`` (default 2) core units.

Genome: a list of units, each ``[binary, unary1, unary2]`` with registry primitive names, e.g.
``[["sigmoid_mul", "scale", "identity"]]`` is ``sigmoid_mul(scale(x, beta), x)`` = x*sigmoid(beta*x).

Vocabulary (the paper's, spelled with the registry's primitives; ``actsearch primitives``):

  unary (25): identity x, neg -x, abs |x|, square x^2, cube x^3, sqrt, scale beta*x, shift x+beta,
      log (guarded log(|x|+eps)), exp, sin, cos, sinh, cosh, tanh, asinh (sinh^-1), atan (tan^-1),
      sinc, relu max(x,0), min0 min(x,0), sigmoid, softplus log(1+e^x), gaussian exp(-x^2), erf,
      const (the constant beta)
  binary (10): add, mul, sub, div (guarded x1/(x2+eps)), max, min, sigmoid_mul sigmoid(x1)*x2,
      gauss_dist exp(-beta(x1-x2)^2), laplace_dist exp(-beta|x1-x2|), mix beta*x1+(1-beta)*x2

Every parametric primitive occurrence gets its own learnable parameter, named after the primitive's
parameter (``beta``) when the genome has one, ``beta1``, ``beta2``, ... (in unit order: unary1, unary2,
binary) when it has several.  Initial values are the registry's defaults: 1 for scale, const,
gauss_dist and laplace_dist, 0 for shift (x+beta starts as x), 0.5 for mix (starts as the mean).

Size before deduplication: (10 * 25 * 25)^1 + (10 * 25 * 25)^2 = 6,250 + 39,062,500 = 39,068,750 for
the default ``units=2``.  The one-unit part (``units=1``) enumerates in 16 s (2 CPU cores) to 3,968
distinct ids, none invalid, 3,410 distinct ids passing screening; the two-unit part is too large to
enumerate (~39M parses, about half a day), sample it.  The eight functions the paper reports all lie inside it (see the tests).
"""
from __future__ import annotations

import copy
import itertools
import random
from collections import Counter
from typing import Callable, Iterable, Iterator, Optional, Sequence

from actsearch.primitives import Primitive, get_primitive

from .base import Genome, SearchSpace

PAPER_UNARY = ("identity", "neg", "abs", "square", "cube", "sqrt", "scale", "shift", "log", "exp", "sin", "cos",
               "sinh", "cosh", "tanh", "asinh", "atan", "sinc", "relu", "min0", "sigmoid", "softplus",
               "gaussian", "erf", "const")
PAPER_BINARY = ("add", "mul", "sub", "div", "max", "min", "sigmoid_mul", "gauss_dist", "laplace_dist", "mix")

UNARY_KINDS = ("unary", "nullary")   # nullary `const` is a unary that ignores its input
BINARY_KINDS = ("binary", "nary")    # n-ary max/min used with two inputs


# ---- helpers shared by the spaces ---------------------------------------------------------------------
def resolve_primitives(names: Iterable[str], kinds: Sequence[str], what: str,
                       extra: Sequence[str] = (), allow_empty: bool = False) -> tuple[str, ...]:
    """Canonical registry names (aliases resolved, duplicates dropped, order kept); ValueError for an
    unknown name or one of the wrong kind.  Names in `extra` are space-specific pseudo-primitives."""
    if isinstance(names, str):
        raise ValueError(f"{what} primitives must be a list of names, not the string {names!r}")
    out: list[str] = []
    for n in names:
        if n in extra:
            canonical = n
        else:
            try:
                prim = get_primitive(n)
            except (KeyError, TypeError):
                raise ValueError(f"unknown {what} primitive {n!r} (see `actsearch primitives`)") from None
            if prim.kind not in kinds:
                raise ValueError(f"{n!r} is a {prim.kind} primitive, not {what}")
            canonical = prim.name
        if canonical not in out:
            out.append(canonical)
    if not out and not allow_empty:
        raise ValueError(f"at least one {what} primitive is needed")
    return tuple(out)


class ParamNamer:
    """Names the learnable parameter of each parametric primitive occurrence: the primitive's own
    parameter name when it occurs once in the formula, numbered (beta1, beta2, ...) otherwise."""

    def __init__(self, counts: Optional[Counter] = None):
        self.counts = counts
        self.seen: Counter = Counter()
        self.params: dict[str, float] = {}

    def __call__(self, base: str, default: float) -> str:
        self.seen[base] += 1
        if self.counts is None or self.counts[base] == 1:
            name = base
        else:
            name = f"{base}{self.seen[base]}"
        self.params[name] = float(default)
        return name


def spell_with_params(build: Callable[[ParamNamer], str]) -> tuple[str, dict[str, float]]:
    """Run `build` twice: once to count parameter occurrences, once to name them."""
    first = ParamNamer()
    build(first)
    second = ParamNamer(Counter(first.seen))
    return build(second), second.params


def spell_call(prim: Primitive, args: Sequence[str], namer: Optional[ParamNamer]) -> str:
    """Formula text of one primitive applied to argument texts; a parametric primitive gets a learnable
    parameter from `namer` (or its fixed default when namer is None)."""
    if prim.name == "identity":
        return args[0]
    if prim.kind == "nullary":
        args = []
    args = list(args)
    if prim.params and namer is not None:
        args += [namer(pname, default) for pname, default in prim.params]
    return f"{prim.name}({', '.join(args)})"


def crossover_positions(a: list, b: list, positions: Sequence[tuple[int, int]], rng: random.Random
                        ) -> tuple[list, list]:
    """Uniform crossover over aligned (row, column) positions of two list-of-lists genomes: swap a random
    non-empty proper subset of the positions where the parents differ (all of them when only one
    differs), so the children differ from both parents whenever the parents differ in two places."""
    ca, cb = copy.deepcopy(a), copy.deepcopy(b)
    diff = [(i, j) for i, j in positions if a[i][j] != b[i][j]]
    if not diff:
        return ca, cb
    k = 1 if len(diff) == 1 else rng.randint(1, len(diff) - 1)
    for i, j in rng.sample(diff, k):
        ca[i][j], cb[i][j] = cb[i][j], ca[i][j]
    return ca, cb


# ---- the space -------------------------------------------------------------------------------------------
class SwishSpace(SearchSpace):
    """Chains of 1..`units` core units b(u1(x1), u2(x2)) over the Swish paper's unary and binary sets."""

    name = "swish"
    description = "Swish paper core units b(u1(x1), u2(x2)), 1..units of them chained"

    def __init__(self, units: int = 2, min_units: int = 1, unary: Optional[Iterable[str]] = None,
                 binary: Optional[Iterable[str]] = None):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be an integer >= 1, got {units!r}")
        if isinstance(min_units, bool) or not isinstance(min_units, int) or not 1 <= min_units <= units:
            raise ValueError(f"min_units must be an integer in 1..units ({units}), got {min_units!r}")
        self.units = units
        self.min_units = min_units
        self.unary = resolve_primitives(PAPER_UNARY if unary is None else unary, UNARY_KINDS, "unary")
        self.binary = resolve_primitives(PAPER_BINARY if binary is None else binary, BINARY_KINDS, "binary")

    def __repr__(self):
        return (f"SwishSpace(units={self.units}, min_units={self.min_units}, {len(self.unary)} unary, "
                f"{len(self.binary)} binary)")

    # -- genome checks ------------------------------------------------------------------------------
    def _slot_choices(self, slot: int) -> tuple[str, ...]:
        return self.binary if slot == 0 else self.unary

    def validate(self, genome: Genome) -> None:
        """ValueError unless `genome` is a genome of this space."""
        if not isinstance(genome, list) or not self.min_units <= len(genome) <= self.units:
            raise ValueError(f"swish genome must be a list of {self.min_units}..{self.units} units, got {genome!r}")
        for unit in genome:
            if not isinstance(unit, list) or len(unit) != 3:
                raise ValueError(f"swish unit must be [binary, unary1, unary2], got {unit!r}")
            for slot, name in enumerate(unit):
                if name not in self._slot_choices(slot):
                    what = "binary" if slot == 0 else "unary"
                    raise ValueError(f"{name!r} is not a {what} primitive of this space")

    # -- genome -> formula ---------------------------------------------------------------------------
    def _build(self, genome: Genome, namer: ParamNamer) -> str:
        y = "x"
        for b, u1, u2 in genome:
            left = spell_call(get_primitive(u1), [y], namer)
            right = spell_call(get_primitive(u2), ["x"], namer)
            y = spell_call(get_primitive(b), [left, right], namer)
        return y

    def _spell(self, genome: Genome) -> tuple[str, dict[str, float]]:
        self.validate(genome)
        return spell_with_params(lambda namer: self._build(genome, namer))

    def formula(self, genome: Genome) -> str:
        return self._spell(genome)[0]

    def params(self, genome: Genome) -> dict[str, float]:
        return self._spell(genome)[1]

    # -- finite space ----------------------------------------------------------------------------------
    def _unit_count(self) -> int:
        return len(self.binary) * len(self.unary) ** 2

    def size(self) -> int:
        per_unit = self._unit_count()
        return sum(per_unit ** n for n in range(self.min_units, self.units + 1))

    def enumerate(self) -> Iterator[Genome]:
        """Fewer units first; within a unit count, units vary fastest at the end (itertools.product)."""
        one_unit = [list(u) for u in itertools.product(self.binary, self.unary, self.unary)]
        for n in range(self.min_units, self.units + 1):
            for units in itertools.product(one_unit, repeat=n):
                yield [list(u) for u in units]

    # -- random genomes and variation ------------------------------------------------------------------
    def _random_unit(self, rng: random.Random) -> list:
        return [rng.choice(self.binary), rng.choice(self.unary), rng.choice(self.unary)]

    def sample(self, rng: random.Random) -> Genome:
        """The number of units is uniform over min_units..units (not weighted by how many genomes have
        it, which would make 1-unit genomes 1 in 6,000), then every choice is uniform."""
        n = rng.randint(self.min_units, self.units)
        return [self._random_unit(rng) for _ in range(n)]

    def mutate(self, genome: Genome, rng: random.Random) -> Genome:
        """Point mutation (one primitive swapped for another of the same arity; weight 4), or, when
        the number of units may vary, grow (insert a random unit; weight 1) or shrink (drop one; weight 1)."""
        self.validate(genome)
        g = copy.deepcopy(genome)
        points = [(i, s) for i in range(len(g)) for s in range(3) if len(self._slot_choices(s)) > 1]
        ops, weights = [], []
        if points:
            ops.append("point"); weights.append(4)
        if len(g) < self.units:
            ops.append("grow"); weights.append(1)
        if len(g) > self.min_units:
            ops.append("shrink"); weights.append(1)
        if not ops:
            return g
        op = rng.choices(ops, weights)[0]
        if op == "point":
            i, s = rng.choice(points)
            g[i][s] = rng.choice([c for c in self._slot_choices(s) if c != g[i][s]])
        elif op == "grow":
            g.insert(rng.randint(0, len(g)), self._random_unit(rng))
        else:
            del g[rng.randrange(len(g))]
        return g

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, Genome]:
        """Uniform crossover of the aligned units' parts (binary, unary1, unary2 of unit i of each parent);
        when the parents have different numbers of units, their extra tails are exchanged with
        probability 1/2 as well (one-point crossover at the shorter length)."""
        self.validate(a)
        self.validate(b)
        m = min(len(a), len(b))
        ca, cb = crossover_positions(a, b, [(i, s) for i in range(m) for s in range(3)], rng)
        if len(a) != len(b) and rng.random() < 0.5:
            ca, cb = ca[:m] + cb[m:], cb[:m] + ca[m:]
        return ca, cb

    def suggest(self, trial) -> Genome:
        """Optuna define-by-run: `units` (when it varies), then unit{k}_binary/_unary1/_unary2."""
        if self.min_units < self.units:
            n = trial.suggest_categorical("units", list(range(self.min_units, self.units + 1)))
        else:
            n = self.units
        genome = []
        for k in range(1, n + 1):
            genome.append([trial.suggest_categorical(f"unit{k}_binary", list(self.binary)),
                           trial.suggest_categorical(f"unit{k}_unary1", list(self.unary)),
                           trial.suggest_categorical(f"unit{k}_unary2", list(self.unary))])
        return genome


__all__ = ["SwishSpace", "PAPER_UNARY", "PAPER_BINARY"]
