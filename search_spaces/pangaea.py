"""The PANGAEA / AQuaSurF space: ``binary(unary(x), unary(x))``, small enough to enumerate.

Bingham & Miikkulainen's AQuaSurF ("Efficient Activation Function Optimization through Surrogate
Modeling", 2023) builds its benchmark datasets from the schema ``binary(unary(x),unary(x))`` over the
operator set of their code (cognizant-ai-labs/aquasurf, ``aquasurf/activation.py``), itself the
PANGAEA operator set (Bingham & Miikkulainen 2022, "Discovering Parametric Activation Functions")
without its n-ary operators.  The default preset ``"aquasurf"`` is that set, spelled with registry
names (AQuaSurF's name in brackets where it differs):

  unary (27): zero, one, identity, neg [negative], abs, reciprocal, square, exp, erf, erfc, sinh,
      cosh, tanh, expm1, sigmoid, log_sigmoid, asinh [arcsinh], atan [arctan], bessel_i0e,
      bessel_i1e, relu, elu, selu, swish, softplus, softsign, hard_sigmoid
  binary (7): add, sub, mul, div, pow, max, min

``zero`` and ``one`` are this space's pseudo-primitives (AQuaSurF's zeros_like/ones_like), spelled as
the literals 0 and 1.  Operators are parameterless, as in AQuaSurF (elu with alpha=1, swish with
beta=1 = SiLU); ``hard_sigmoid`` is the registry's (torch's x/6 + 1/2, clipped), not Keras's
0.2x + 1/2.  div and pow are the registry's guarded forms (u/(v+eps), (|u|+eps)**v).

Size before deduplication: 7 * 27 * 27 = 5,103 (the number AQuaSurF reports for this schema).
The preset ``"pangaea"`` uses every registry primitive tagged with the "pangaea" vocabulary instead
(33 unary + zero, one; the same 7 binary; the n-ary sum/prod are left out as copies of add/mul):
7 * 35 * 35 = 8,575 genomes.

Measured with `dedup_report` (2 CPU cores):

  preset      size   invalid  distinct ids  screened out  distinct passing  time
  aquasurf    5,103    29        2,823          1,020          2,267          10 s
  pangaea     8,575    37        5,016          2,607          3,410          17 s

(AQuaSurF reports 2,913 unique functions for its 5,103: it compares TensorFlow outputs on 1,000
points exactly, with Keras's hard_sigmoid and unguarded div/pow; our ids are rounded fingerprints of
the exact forms.)  The invalid genomes are u/0, 0**negative and the like.

Genome: ``[binary, unary1, unary2]``, e.g. ``["max", "identity", "tanh"]`` = max(x, tanh(x)).

`dedup_report` enumerates a space and counts what survives parsing, deduplication and screening.
"""
from __future__ import annotations

import itertools
import random
import time
from typing import Iterable, Iterator, Optional

from actsearch.formula import FormulaError
from actsearch.primitives import get_primitive, vocabulary
from actsearch.screening import ScreeningConfig, screen_candidate

from .base import Genome, SearchSpace
from .swish import crossover_positions, resolve_primitives, spell_call

AQUASURF_UNARY = ("zero", "one", "identity", "neg", "abs", "reciprocal", "square", "exp", "erf", "erfc",
                  "sinh", "cosh", "tanh", "expm1", "sigmoid", "log_sigmoid", "asinh", "atan", "bessel_i0e",
                  "bessel_i1e", "relu", "elu", "selu", "swish", "softplus", "softsign", "hard_sigmoid")
AQUASURF_BINARY = ("add", "sub", "mul", "div", "pow", "max", "min")
CONSTANT_UNARY = {"zero": "0", "one": "1"}   # pseudo-primitives: constant functions

PRESETS = {
    "aquasurf": (AQUASURF_UNARY, AQUASURF_BINARY),
    "pangaea": (("zero", "one") + tuple(p.name for p in vocabulary("pangaea") if p.kind == "unary"),
                tuple(p.name for p in vocabulary("pangaea")
                      if p.kind == "binary" or (p.kind == "nary" and p.name not in ("sum", "prod")))),
}


class PangaeaSpace(SearchSpace):
    """binary(unary1(x), unary2(x)); `unary`/`binary` restrict or replace the preset's operator lists."""

    name = "pangaea"
    description = "binary(unary(x), unary(x)) over the PANGAEA/AQuaSurF operators (exhaustively enumerable)"

    def __init__(self, unary: Optional[Iterable[str]] = None, binary: Optional[Iterable[str]] = None,
                 preset: str = "aquasurf"):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(sorted(PRESETS))}")
        self.preset = preset
        default_unary, default_binary = PRESETS[preset]
        self.unary = resolve_primitives(default_unary if unary is None else unary, ("unary",), "unary",
                                        extra=tuple(CONSTANT_UNARY))
        self.binary = resolve_primitives(default_binary if binary is None else binary, ("binary", "nary"),
                                         "binary")

    def __repr__(self):
        return f"PangaeaSpace({len(self.unary)} unary, {len(self.binary)} binary, preset={self.preset!r})"

    def _slot_choices(self, slot: int) -> tuple[str, ...]:
        return self.binary if slot == 0 else self.unary

    def validate(self, genome: Genome) -> None:
        """ValueError unless `genome` is a genome of this space."""
        if not isinstance(genome, list) or len(genome) != 3:
            raise ValueError(f"pangaea genome must be [binary, unary1, unary2], got {genome!r}")
        for slot, name in enumerate(genome):
            if name not in self._slot_choices(slot):
                raise ValueError(f"{name!r} is not a {'binary' if slot == 0 else 'unary'} operator of this space")

    @staticmethod
    def _unary_text(name: str) -> str:
        if name in CONSTANT_UNARY:
            return CONSTANT_UNARY[name]
        return spell_call(get_primitive(name), ["x"], None)  # parameterless: defaults are fixed

    def formula(self, genome: Genome) -> str:
        self.validate(genome)
        b, u1, u2 = genome
        return spell_call(get_primitive(b), [self._unary_text(u1), self._unary_text(u2)], None)

    def size(self) -> int:
        return len(self.binary) * len(self.unary) ** 2

    def enumerate(self) -> Iterator[Genome]:
        for b, u1, u2 in itertools.product(self.binary, self.unary, self.unary):
            yield [b, u1, u2]

    def sample(self, rng: random.Random) -> Genome:
        return [rng.choice(self.binary), rng.choice(self.unary), rng.choice(self.unary)]

    def mutate(self, genome: Genome, rng: random.Random) -> Genome:
        """Swap one operator for another of the same arity."""
        self.validate(genome)
        g = list(genome)
        slots = [s for s in range(3) if len(self._slot_choices(s)) > 1]
        if slots:
            s = rng.choice(slots)
            g[s] = rng.choice([c for c in self._slot_choices(s) if c != g[s]])
        return g

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, Genome]:
        """Uniform crossover of the three operator slots (a proper subset of the differing ones)."""
        self.validate(a)
        self.validate(b)
        ca, cb = crossover_positions([list(a)], [list(b)], [(0, 0), (0, 1), (0, 2)], rng)
        return ca[0], cb[0]

    def suggest(self, trial) -> Genome:
        return [trial.suggest_categorical("binary", list(self.binary)),
                trial.suggest_categorical("unary1", list(self.unary)),
                trial.suggest_categorical("unary2", list(self.unary))]


def dedup_report(space: SearchSpace, limit: Optional[int] = None,
                 config: Optional[ScreeningConfig] = None) -> dict:
    """Enumerate `space` (its first `limit` genomes) and count:

    size          genomes examined (before deduplication; the whole space when limit is None)
    invalid       genomes whose formula fails to parse (FormulaError)
    distinct      distinct canonical ids (Candidate.id) among those that parse
    screened_out  genomes that parse but fail screen_candidate (duplicates are not a failure here)
    distinct_passed  distinct ids among the genomes that pass screening
    seconds       wall time

    Screening results are cached by canonical form and parameters (equal exact forms have equal safe
    forms, so the cache changes no result)."""
    t0 = time.perf_counter()
    size = invalid = screened_out = 0
    ids: set[str] = set()
    passed_ids: set[str] = set()
    verdicts: dict[tuple, bool] = {}
    for genome in (space.enumerate() if limit is None else itertools.islice(space.enumerate(), limit)):
        size += 1
        try:
            cand = space.candidate(genome)
            cid = cand.id
        except FormulaError:
            invalid += 1
            continue
        ids.add(cid)
        key = (cand.formula, tuple(sorted(cand.params.items())))
        if key not in verdicts:
            verdicts[key] = screen_candidate(cand, config).passed
        if verdicts[key]:
            passed_ids.add(cid)
        else:
            screened_out += 1
    return {"size": size, "distinct": len(ids), "invalid": invalid, "screened_out": screened_out,
            "distinct_passed": len(passed_ids), "seconds": round(time.perf_counter() - t0, 3)}


__all__ = ["PangaeaSpace", "dedup_report", "AQUASURF_UNARY", "AQUASURF_BINARY", "PRESETS"]
