"""Parametric families from the literature as a search space: which family, which member, which start.

Genome: ``[family, structure, init]``, e.g. ``["rational", "5/4", "paper"]`` is PAU(5, 4) initialised, as
the paper does, by a least-squares fit to leaky ReLU, and ``["xgate", "gelu", "tanh"]`` is xGELU with its
alpha fitted so that it starts as close to tanh as the family allows.  The families, their members and
their published initialisations are `actsearch.families.FAMILY_TABLE`:

  rational    safe rational P/(1 + |Q|) of degree 3/2, 4/3, 5/4, 6/5 (Molina et al., PAU, 2020)
  apa         adaptive parametric activation, kappa = lambda = 1 is SiLU (Alexandridis et al. 2024)
  xgate       expanded gating of GELU, SiLU, ArcTan (xGELU, xSiLU, xATLU; Huang 2024), alpha = 0
  polyrelu    sum_i a_i relu(x)^i of degree 2, 3, 4, a_i = 1/degree (PolyCom, Zhuo et al. 2024)
  relu_power  relu(x)^2, relu(x)^3, and relu(x)^p with p learnable from 2 (Primer; "ReLU^2 wins")
  polynorm    sum_i a_i x^i / rms(x^i), degree 2 or 3, rms over the layer / instance / group axes
              (PolyCom's PolyNorm; a layer: only in the space of kind "layer", registered as `polynorm`)

`init` is ``"paper"`` or a catalog activation the member's initial parameters are fitted to by least
squares on [-3, 3] (`actsearch.families.fit_family`: PAU's own procedure for the rational, generalised
to the other families within their safe bounds): relu, leaky_relu, gelu, silu, tanh, elu.  A member
without initial parameters (relu(x)^2) or a layer has only ``"paper"``.  The learnable parameters then
train with the network; what they learned is kept with every result (`actsearch top`, `report`, and
`export --params trained`).

Size: 82 activation genomes (rational 4 x 6 (its paper start is the leaky_relu fit), apa 7, xgate 3 x 7, polyrelu 3 x 7, relu_power 2 + 7) and
6 PolyNorm layers: small enough to enumerate (``--strategy exhaustive``) or to search with a budget.

Operators: mutation changes one gene (the family, keeping the init where it applies; the structure; or
the init); crossover swaps the init between two genomes, or the structure within one family, and falls
back to re-drawing the init when the two share it (a small space has few other ways to mix).
Continuous initial values are tuned, beyond these named starts, with Optuna's samplers by
`actsearch tune` (actsearch.tuning).
"""
from __future__ import annotations

import random
from typing import Iterator, Optional

from actsearch.families import FAMILY_TABLE, FIT_TARGETS, PAPER, family_params, get_family

from .base import Genome, SearchSpace

INITS = (PAPER,) + FIT_TARGETS


class FamiliesSpace(SearchSpace):
    name = "families"
    description = "parametric families from the literature (rational, APA, xGELU, PolyReLU, ReLU^p) x initialisation"

    def __init__(self, families: Optional[list] = None, inits: Optional[list] = None, kind: str = "activation"):
        if kind not in ("activation", "layer"):
            raise ValueError(f"kind must be 'activation' or 'layer', got {kind!r}")
        self.kind = kind
        names = [f.name for f in FAMILY_TABLE.values() if f.kind == kind] if families is None else list(families)
        for n in names:
            fam = get_family(n)
            if fam.kind != kind:
                raise ValueError(f"family {n!r} is a {fam.kind} family, not of this space's kind {kind!r}")
        if not names:
            raise ValueError("at least one family is needed")
        self.families = tuple(dict.fromkeys(names))
        inits = INITS if inits is None else tuple(dict.fromkeys(inits))
        unknown = [i for i in inits if i not in INITS]
        if unknown or not inits:
            raise ValueError(f"unknown init(s) {', '.join(map(str, unknown)) or '(none given)'}; valid: {', '.join(INITS)}")
        if PAPER not in inits:  # members without fittable parameters need it
            inits = (PAPER,) + inits
        self.inits = inits

    def __repr__(self):
        return f"FamiliesSpace(families={list(self.families)}, inits={list(self.inits)}, kind={self.kind!r})"

    # ---- structure -----------------------------------------------------------------------------------
    def inits_of(self, family: str, structure: str) -> tuple:
        """The starts of a member: "paper" and the fit targets, less the target the paper's start already
        is (PAU's leaky ReLU fit); "paper" alone for a member without fittable parameters."""
        fam = get_family(family)
        if not fam.fittable(structure):
            return (PAPER,)
        return tuple(i for i in self.inits if i != fam.paper_target)

    def problem(self, genome) -> Optional[str]:
        if not isinstance(genome, list) or len(genome) != 3 or not all(isinstance(g, str) for g in genome):
            return f"a families genome is [family, structure, init] (three strings), got {genome!r}"
        family, structure, init = genome
        if family not in self.families:
            return f"unknown family {family!r}; this space's: {', '.join(self.families)}"
        try:
            get_family(family, structure)
        except ValueError as exc:
            return str(exc)
        if init not in self.inits_of(family, structure):
            return f"init {init!r} is not one of {family} {structure}'s: {', '.join(self.inits_of(family, structure))}"
        return None

    def validate(self, genome: Genome) -> None:
        why = self.problem(genome)
        if why:
            raise ValueError(why)

    def formula(self, genome: Genome) -> str:
        self.validate(genome)
        return get_family(genome[0]).formula(genome[1])

    def params(self, genome: Genome) -> dict[str, float]:
        self.validate(genome)
        return family_params(*genome)

    def enumerate(self) -> Iterator[Genome]:
        for family in self.families:
            for structure in get_family(family).structures:
                for init in self.inits_of(family, structure):
                    yield [family, structure, init]

    def size(self) -> Optional[int]:
        return sum(len(self.inits_of(f, s)) for f in self.families for s in get_family(f).structures)

    # ---- operators -----------------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Genome:
        family = rng.choice(self.families)
        structure = rng.choice(get_family(family).structures)
        return [family, structure, rng.choice(self.inits_of(family, structure))]

    def _with(self, family: str, structure: str, init: str) -> Genome:
        """[family, structure, init], the init replaced by "paper" where the member has no other."""
        return [family, structure, init if init in self.inits_of(family, structure) else PAPER]

    def mutate(self, genome: Genome, rng: random.Random) -> Genome:
        self.validate(genome)
        family, structure, init = genome
        for _ in range(32):
            gene = rng.randrange(3)
            if gene == 0 and len(self.families) > 1:
                f = rng.choice([f for f in self.families if f != family])
                child = self._with(f, rng.choice(get_family(f).structures), init)
            elif gene == 1 and len(get_family(family).structures) > 1:
                s = rng.choice([s for s in get_family(family).structures if s != structure])
                child = self._with(family, s, init)
            else:
                child = [family, structure, rng.choice(self.inits_of(family, structure))]
            if child != genome:
                return child
        return self.sample(rng)

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, Genome]:
        self.validate(a)
        self.validate(b)
        if a[0] == b[0] and a[1] != b[1]:           # one family: swap the member, keep each start
            return self._with(a[0], b[1], a[2]), self._with(b[0], a[1], b[2])
        ca, cb = self._with(a[0], a[1], b[2]), self._with(b[0], b[1], a[2])   # swap the starts
        # the same start (or none to swap): a child equal to its parent is mutated instead
        return (self.mutate(a, rng) if ca == a else ca), (self.mutate(b, rng) if cb == b else cb)

    def suggest(self, trial) -> Genome:
        """Optuna define-by-run: `family`, then `<family>_structure`, then `<family>_init` where it applies
        (one name per family: Optuna's categorical choices must not change between trials)."""
        family = trial.suggest_categorical("family", list(self.families))
        structure = trial.suggest_categorical(f"{family}_structure", list(get_family(family).structures))
        inits = self.inits_of(family, structure)
        init = trial.suggest_categorical(f"{family}_init", list(inits)) if len(inits) > 1 else PAPER
        return [family, structure, init]


class PolyNormSpace(FamiliesSpace):
    """The layer families (PolyNorm) as a space of normalization-activation layers (`--tasks layers`)."""
    name = "polynorm"
    description = "PolyNorm layers: degree x normalisation axes (PolyCom), trained in place of BN-ReLU"

    def __init__(self, families: Optional[list] = None):
        super().__init__(families=families, inits=[PAPER], kind="layer")


__all__ = ["FamiliesSpace", "PolyNormSpace", "INITS"]
