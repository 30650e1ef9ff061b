"""The search-space interface: genomes, formulas, sampling, enumeration, mutation, crossover.

A *genome* is a small JSON-serialisable structure (nested lists of strings and numbers) that a space
knows how to turn into formula text; the formula core parses that text (`parse_formula`, the same
safe parser users get) into a Candidate.  Genomes, not sympy objects, are what strategies manipulate
and what the result store logs, so a run can be replayed and resumed exactly.

Spaces know nothing about training, Ray or the store; strategies (actsearch.strategies) know nothing
about formulas beyond this interface.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Iterator, Optional

from actsearch.formula import Candidate, parse_formula

Genome = list  # nested lists of str / int / float; JSON round-trips it unchanged


class SearchSpace(ABC):
    name: str = ""
    description: str = ""

    @abstractmethod
    def sample(self, rng: random.Random) -> Genome:
        """A random genome."""

    @abstractmethod
    def formula(self, genome: Genome) -> str:
        """Formula text of a genome (in the formula language of `actsearch check`)."""

    def params(self, genome: Genome) -> dict[str, float]:
        """Initial values of the learnable parameters the formula uses (default: none)."""
        return {}

    def candidate(self, genome: Genome) -> Candidate:
        """Parse the genome's formula with the formula core (raises FormulaError if it is invalid)."""
        return parse_formula(self.formula(genome), params=self.params(genome) or None)

    def enumerate(self) -> Iterator[Genome]:
        """Every genome, in a fixed order (finite spaces only)."""
        raise NotImplementedError(f"space {self.name!r} is not enumerable")

    def size(self) -> Optional[int]:
        """Number of genomes before deduplication, or None if the space is unbounded."""
        return None

    @abstractmethod
    def mutate(self, genome: Genome, rng: random.Random) -> Genome:
        """A new genome one small change away (never modifies its argument)."""

    @abstractmethod
    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, Genome]:
        """Two children mixing a and b (never modifies its arguments)."""

    # Optuna's define-by-run: choose the genome's structure with trial.suggest_* calls
    def suggest(self, trial) -> Genome:
        raise NotImplementedError(f"space {self.name!r} does not support define-by-run suggestion")
