"""EvoNorm's space: normalization-activation layers as small tensor-to-tensor graphs.

Liu, Brock, Simonyan & Le (2020), "Evolving Normalization-Activation Layers", search computation
graphs whose initial nodes are the input tensor, constants and two learnable per-channel vectors, and
whose intermediate nodes each apply one element-wise or one aggregation (moment) op to earlier nodes;
the layer's output is the last node.  EvoNorm-B0 and EvoNorm-S0 lie inside this space (`B0_GENOME`,
`S0_GENOME`).

Genome: the intermediate nodes in order, each ``[op, input]`` (unary and moment ops) or
``[op, input1, input2]`` (binary ops).  An input is the name of an initial node, ``"x"``, ``"v0"``,
``"v1"``, ``"zero"`` or ``"one"``, or the integer position (0-based) of an *earlier* intermediate node.
The last node is the output.  EvoNorm-B0 = x / max(batch_std(x), v1*x + instance_std(x)) is

    [["batch_std", "x"], ["mul", "v1", "x"], ["instance_std", "x"], ["add", 1, 2], ["max", 0, 3],
     ["div", "x", 4]]

Initial nodes: ``x`` (the (N, C, *spatial) input), ``v0`` and ``v1`` (learnable per-channel vectors,
initialised to 0 and to 1 as in the paper; in the formula they are the scalar parameters ``v0`` and
``v1`` with those initial values, and the layer module gives each channel its own copy), and the
constants ``zero`` and ``one`` (spelled 0 and 1; `constants=` restricts them).

Vocabulary (registry primitives, parameterless; `unary=`, `binary=`, `moments=` replace the lists):
  binary (4):   add, mul, div (guarded u/(v+eps)), max
  unary (8):    neg, sigmoid, tanh, exp, log (guarded log(|u|+eps)), abs, sqrt (sqrt(|u|)), square
  moment (12):  {batch, group, instance, layer}_{mean, var, std}: every primitive of the registry's
                "moment" set (std is sqrt(var + 1e-5); group moments use the layer's `groups`)
The element-wise ops are the paper's Table 1; its aggregation ops are the batch, instance and group
means and standard deviations, to which the registry adds variances and layer moments.

Validity rules (`validate`; every genome the operators return satisfies them):
  1. 1 to `max_nodes` (default 8, at least 2) nodes; ops of this space with their arity; each input
     an initial node or an earlier node.
  2. A moment's input depends on x (a moment of v0, v1 or a constant is that constant: the parser
     refuses it) and is not already constant over the axes the moment reduces (instance_mean of
     batch_std(x) is batch_std(x), batch_var(batch_var(x)) is 0).  Each node's axes of constancy
     follow from its inputs' (`EvoNormSpace.facts`): x varies on every axis, v0 and v1 only over
     channels, an element-wise op is constant where all its inputs are, a moment adds its axes.
  3. No constant nodes: every node has an input that is not ``zero``/``one``.  ``zero``/``one`` are
     inputs only where they are neither undefined nor a no-op nor make the node constant (derived with
     sympy from the ops themselves: 0 only in max; 1 in add, max and as div's numerator for the
     default ops); a binary op takes the same node twice only where that is not degenerate
     (add(u, u) = 2u and mul(u, u) = u^2 are fine, div(u, u) = 1 and max(u, u) = u are not); a unary
     op is not applied to a unary op it undoes or repeats (neg(neg(u)), abs(abs(u)), log(exp(u)),
     abs(exp(u)) ...), and a binary op does not combine u with f(u) where that is degenerate
     (add(u, neg(u)) = 0, div(u, neg(u)) = -1).
  4. No dead nodes: every node but the last is an input of a later node (the operators prune what
     they disconnect).
  5. A layer must normalize: at least one moment op.  The output varies on every axis: it depends on
     x along a path that avoids moments (a layer made of statistics alone is constant over the axes
     they reduce; every moment reduces the spatial axes).
  6. The formula, the graph expanded into a tree (shared nodes repeated), has at most
     `max_formula_size` (default 64) calls and leaves, far within the parser's 400 syntax nodes.
These rules are structural and cheap (no parsing).  A genome can still cancel symbolically through
more than one node (div(neg(div(x, v0)), x) = -1/v0 makes a moment of it fail to parse), reach a
complex constant (sqrt(neg(batch_std(x)))) or a power past the parser's exponent bound of 16 (square
chains): the parser reports those as FormulaError (0.2% of samples).  Whether the canonical form
still contains a moment is `Candidate.is_tensor_op` (99.9% of the samples that parse; a moment can
cancel through two nodes: div(layer_mean(x), mul(layer_mean(x), x)) = 1/x).

Operators (all randomness from the `rng` given):
  sample     nodes drawn one at a time (a moment with probability `moment_prob`, else an element-wise op;
             an input is the previous node with probability `chain_prob`, else any earlier node or
             initial node, x weighted `x_weight` against 1 for each other initial node), dead nodes pruned,
             redrawn until the rules hold
  mutate     change an op (to another op, the arity may change: an added input is drawn, a dropped one
             may leave a node dead), change an input, insert a node on an edge (or a new output node),
             delete a node (its users read one of its inputs instead); retried until the child is
             valid and spells a different formula
  crossover  one-point: a prefix of one parent's nodes followed by a suffix of the other's, references
             into the other's prefix shifted to keep their distance (clamped into the new prefix, so a
             whole parent followed by the other's tail grafts that tail onto its output); retried until
             both children are valid and differ from both parents; failing that, each child is a graft
             (an input edge of one parent rerouted to a copy of a subgraph of the other), else a copy
  suggest    Optuna define-by-run: the layer as an expression tree of depth <= 5, one categorical choice per
             position (root: a binary op; inner positions: ops and initial nodes; leaves: initial nodes),
             at most `max_nodes` ops, equal subtrees merged into one node; rules repaired (see
             `EvoNormSpace.suggest`); a suggestion that still breaks one (~6% with random choices)
             becomes a sample drawn with a seed derived from it (deterministic: Optuna replays it)

Size: unbounded for this interface (`size()` is None, no enumerate).

Measured on 1000 samples (seed 12345; seeds 1 and 2 within 3%; 3 s on 2 cores with parsing and
screening): all structurally valid, 998 parse, 997 are layers (`is_tensor_op`), 808 distinct ids,
78 of them screened out (output_too_large 48, constant 17, non_finite 13).  46 of the 998 have a
fingerprint that is NaN everywhere (a moment of sqrt(x) or log(x): the exact form is undefined for
x < 0 on one element, so on every element after the reduction) and share 2 ids: a
defect of identity for layers (actsearch/identity.py), not of this space.
"""
from __future__ import annotations

import copy
import json
import random
from typing import Iterable, Optional, Sequence

import sympy

from actsearch.primitives import get_primitive, vocabulary

from .base import Genome, SearchSpace
from .swish import resolve_primitives

DEFAULT_UNARY = ("neg", "sigmoid", "tanh", "exp", "log", "abs", "sqrt", "square")
DEFAULT_BINARY = ("add", "mul", "div", "max")
DEFAULT_MOMENTS = tuple(p.name for p in vocabulary("moment"))
VECTORS = {"v0": 0.0, "v1": 1.0}          # learnable per-channel vectors: initial values (the paper's)
CONSTANTS = {"zero": "0", "one": "1"}     # constant initial nodes and their spelling
# the axes each initial node is constant over, and those each moment reduces (see EvoNormSpace.facts)
ALL_AXES = frozenset("NCGS")
INITIAL_FACTS = {"x": (True, frozenset()), "v0": (False, frozenset("NS")), "v1": (False, frozenset("NS")),
                 "zero": (False, ALL_AXES), "one": (False, ALL_AXES)}
MOMENT_AXES = {"batch": frozenset("NS"), "instance": frozenset("S"), "group": frozenset("GS"),
               "layer": frozenset("CGS")}
DEFAULT_MAX_NODES = 8
SUGGEST_DEPTH = 5  # suggest: depth of the leaves of the expression tree (B0 and S0 have depth 4)
DEFAULT_MAX_FORMULA_SIZE = 64

# EvoNorm-B0: x / max(batch_std(x), v1*x + instance_std(x))
B0_GENOME = [["batch_std", "x"], ["mul", "v1", "x"], ["instance_std", "x"], ["add", 1, 2], ["max", 0, 3],
             ["div", "x", 4]]
# EvoNorm-S0: x * sigmoid(v1*x) / group_std(x)
S0_GENOME = [["mul", "v1", "x"], ["sigmoid", 0], ["mul", "x", 1], ["group_std", "x"], ["div", 2, 3]]
B0_FORMULA = "x/max(batch_std(x), v1*x + instance_std(x))"
S0_FORMULA = "x*sigmoid(v1*x)/group_std(x)"


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _degenerate(expr: sympy.Expr, *same: sympy.Expr) -> bool:
    """Undefined, constant, or equal to one of `same` (a no-op)."""
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return True
    return bool(expr.is_number) or any(expr == s for s in same)


def prune(nodes: list) -> list:
    """The nodes the output (the last node) depends on, renumbered, as a new list."""
    if not nodes:
        return []
    live = {len(nodes) - 1}
    for k in range(len(nodes) - 1, -1, -1):
        if k in live:
            live.update(i for i in nodes[k][1:] if _is_index(i))
    order = sorted(live)
    new_index = {old: new for new, old in enumerate(order)}
    return [[nodes[k][0]] + [new_index[i] if _is_index(i) else i for i in nodes[k][1:]] for k in order]


class EvoNormSpace(SearchSpace):
    """Normalization-activation graphs over x, v0, v1, 0, 1 with up to `max_nodes` op nodes."""

    name = "evonorm"
    description = "EvoNorm-style normalization-activation graphs: element-wise and moment ops over x, v0, v1, 0, 1"

    def __init__(self, max_nodes: int = DEFAULT_MAX_NODES, unary: Optional[Iterable[str]] = None,
                 binary: Optional[Iterable[str]] = None, moments: Optional[Iterable[str]] = None,
                 constants: Sequence[str] = tuple(CONSTANTS), max_formula_size: int = DEFAULT_MAX_FORMULA_SIZE,
                 moment_prob: float = 0.3, chain_prob: float = 0.5, x_weight: float = 3.0):
        for name, v, lo in (("max_nodes", max_nodes, 2), ("max_formula_size", max_formula_size, 4)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name, v in (("moment_prob", moment_prob), ("chain_prob", chain_prob)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise ValueError(f"{name} must be a probability strictly between 0 and 1, got {v!r}")
        if isinstance(x_weight, bool) or not isinstance(x_weight, (int, float)) or not x_weight > 0:
            raise ValueError(f"x_weight must be a positive number, got {x_weight!r}")
        self.max_nodes, self.max_formula_size = max_nodes, max_formula_size
        self.moment_prob, self.chain_prob, self.x_weight = float(moment_prob), float(chain_prob), float(x_weight)
        self.unary = resolve_primitives(DEFAULT_UNARY if unary is None else unary, ("unary",), "unary",
                                        allow_empty=True)
        self.binary = resolve_primitives(DEFAULT_BINARY if binary is None else binary, ("binary", "nary"),
                                         "binary", allow_empty=True)
        self.moments = resolve_primitives(DEFAULT_MOMENTS if moments is None else moments, ("moment",), "moment")
        for n in self.unary + self.binary:
            if get_primitive(n).params:
                raise ValueError(f"{n!r} has parameters; this space's learnable parameters are v0 and v1 only")
        if isinstance(constants, str) or any(c not in CONSTANTS for c in constants):
            raise ValueError(f"constants must be a list of {', '.join(CONSTANTS)}, got {constants!r}")
        self.constants = tuple(c for c in CONSTANTS if c in constants)
        self.initial = ("x",) + tuple(VECTORS) + self.constants
        self.elementwise = self.unary + self.binary
        if not self.binary:
            raise ValueError("at least one binary op is needed (a layer reads x twice: under a moment and not)")
        self.ops = self.elementwise + self.moments
        self._arity = {n: 1 for n in self.unary + self.moments} | {n: 2 for n in self.binary}
        self._derive_local_rules()

    def __repr__(self):
        return (f"EvoNormSpace(max_nodes={self.max_nodes}, {len(self.unary)} unary, {len(self.binary)} binary, "
                f"{len(self.moments)} moments, constants={list(self.constants)})")

    # -- the local rules, derived from the ops' exact forms ---------------------------------------------
    def _derive_local_rules(self) -> None:
        u, w = sympy.Symbol("u", real=True), sympy.Symbol("w", real=True)
        values = {"zero": sympy.Integer(0), "one": sympy.Integer(1)}
        # (op, position, constant) where the constant may stand
        self._const_ok: set[tuple[str, int, str]] = set()
        self._same_ok: set[str] = set()
        for op in self.binary:
            prim = get_primitive(op)
            for c in self.constants:
                for pos in (0, 1):
                    args = [u, u]
                    args[pos] = values[c]
                    if not _degenerate(prim(*args), u):
                        self._const_ok.add((op, pos, c))
            if not _degenerate(prim(u, u), u):
                self._same_ok.add(op)
        # binary b of u and f(u) (f unary, at position pos): forbidden where degenerate (div(u, neg(u)) = -1)
        self._bad_binary_unary: set[tuple[str, int, str]] = set()
        for op in self.binary:
            for f in self.unary:
                for pos in (0, 1):
                    args = [u, u]
                    args[pos] = get_primitive(f)(u)
                    if _degenerate(get_primitive(op)(*args), u, args[pos]):
                        self._bad_binary_unary.add((op, pos, f))
        # unary f applied directly to unary g: forbidden where f(g(w)) is w or g(w)
        self._bad_unary_pairs: set[tuple[str, str]] = set()
        for f in self.unary:
            for g in self.unary:
                inner = get_primitive(g)(w)
                if _degenerate(get_primitive(f)(inner), w, inner):
                    self._bad_unary_pairs.add((f, g))

    # -- checks ----------------------------------------------------------------------------------------
    def _source_facts(self, src, facts: list) -> tuple[bool, frozenset]:
        """(depends on x, axes it is constant over) of an input."""
        return facts[src] if _is_index(src) else INITIAL_FACTS[src]

    def _facts_of(self, node: list, facts: list) -> tuple[bool, frozenset]:
        """Facts of a node from its inputs' (see `constant_axes`)."""
        ins = [self._source_facts(i, facts) for i in node[1:]]
        xdep = any(d for d, _ in ins)
        axes = frozenset.intersection(*(a for _, a in ins))
        if node[0] in self.moments:
            axes = axes | MOMENT_AXES[get_primitive(node[0]).build.scope]
        return xdep, axes

    def facts(self, nodes: list) -> list[tuple[bool, frozenset]]:
        """Per node: whether it depends on x, and the axes it is constant over (a subset of "N" batch,
        "C" channel, "G" channel within a group, "S" spatial): x varies on all, v0/v1 are constant over
        N and S, the constants over all; an element-wise op is constant where all its inputs are, a
        moment adds the axes it reduces."""
        out: list = []
        for node in nodes:
            out.append(self._facts_of(node, out))
        return out

    def _node_problem(self, nodes: list, k: int, facts: list) -> Optional[str]:
        """Why node k breaks rules 1-3 (None if it does not); facts: those of nodes 0..k-1."""
        node = nodes[k]
        if not isinstance(node, list) or not node or not isinstance(node[0], str):
            return f"node {k} must be [op, input, ...], got {node!r}"
        op = node[0]
        if op not in self._arity:
            return f"node {k}: {op!r} is not an op of this space"
        ins = node[1:]
        if len(ins) != self._arity[op]:
            return f"node {k}: {op} takes {self._arity[op]} input(s), got {len(ins)}"
        for i in ins:
            if _is_index(i):
                if not 0 <= i < k:
                    return f"node {k}: input {i} is not an earlier node"
            elif not isinstance(i, str) or i not in self.initial:
                return f"node {k}: input {i!r} is neither an initial node ({', '.join(self.initial)}) nor an index"
        if all(isinstance(i, str) and i in CONSTANTS for i in ins):
            return f"node {k}: {op} of constants only"
        if op in self.moments:
            xdep, axes = self._source_facts(ins[0], facts)
            if not xdep:
                return f"node {k}: the input of {op} must depend on x"
            if MOMENT_AXES[get_primitive(op).build.scope] <= axes:
                return f"node {k}: the input of {op} is already constant over the axes it reduces"
        elif len(ins) == 1:
            src = ins[0]
            if _is_index(src) and (op, nodes[src][0]) in self._bad_unary_pairs:
                return f"node {k}: {op}({nodes[src][0]}(u)) undoes or repeats {nodes[src][0]}"
        else:
            for pos, i in enumerate(ins):
                if isinstance(i, str) and i in CONSTANTS and (op, pos, i) not in self._const_ok:
                    return f"node {k}: {CONSTANTS[i]} as input {pos + 1} of {op} is undefined, constant or a no-op"
            if ins[0] == ins[1] and op not in self._same_ok:
                return f"node {k}: {op}(u, u) is constant or u"
            for pos, i in enumerate(ins):
                if (_is_index(i) and nodes[i][1:] == [ins[1 - pos]]
                        and (op, pos, nodes[i][0]) in self._bad_binary_unary):
                    return f"node {k}: {op} of u and {nodes[i][0]}(u) is constant, u or {nodes[i][0]}(u)"
        return None

    def problem(self, genome) -> Optional[str]:
        """Why `genome` is not a valid genome of this space (None when it is)."""
        if not isinstance(genome, list) or not genome:
            return f"an evonorm genome is a non-empty list of nodes, got {genome!r}"
        if len(genome) > self.max_nodes:
            return f"{len(genome)} nodes; the limit is {self.max_nodes}"
        facts: list = []
        size: list[int] = []          # expanded tree size
        used: set[int] = set()
        for k in range(len(genome)):
            why = self._node_problem(genome, k, facts)
            if why:
                return why
            ins = genome[k][1:]
            used.update(i for i in ins if _is_index(i))
            facts.append(self._facts_of(genome[k], facts))
            size.append(1 + sum(size[i] if _is_index(i) else 1 for i in ins))
        dead = sorted(set(range(len(genome) - 1)) - used)
        if dead:
            return f"node(s) {', '.join(map(str, dead))} feed no later node (dead)"
        if not any(node[0] in self.moments for node in genome):
            return "no moment op: a layer must normalize"
        if facts[-1][1]:
            return (f"the output is constant over axes {''.join(sorted(facts[-1][1]))} (it depends on x only "
                    f"through moments)")
        if size[-1] > self.max_formula_size:
            return f"the formula has {size[-1]} calls and leaves; the limit is {self.max_formula_size}"
        return None

    def is_valid(self, genome) -> bool:
        return self.problem(genome) is None

    def validate(self, genome: Genome) -> None:
        """ValueError unless `genome` is a valid genome of this space (see the module's rules)."""
        why = self.problem(genome)
        if why:
            raise ValueError(f"invalid evonorm genome: {why}")

    # -- genome -> formula -----------------------------------------------------------------------------
    def formula(self, genome: Genome) -> str:
        self.validate(genome)
        texts: list[str] = []
        for op, *ins in genome:
            args = [texts[i] if _is_index(i) else CONSTANTS.get(i, i) for i in ins]
            texts.append(f"{op}({', '.join(args)})")
        return texts[-1]

    def params(self, genome: Genome) -> dict[str, float]:
        self.validate(genome)
        used = {i for node in genome for i in node[1:] if isinstance(i, str)}
        return {name: value for name, value in VECTORS.items() if name in used}

    # -- random graphs -------------------------------------------------------------------------------------
    def _sources(self, k: int) -> list:
        return list(self.initial) + list(range(k))

    def _random_source(self, rng: random.Random, k: int, facts: Optional[list] = None):
        """An input for node k: the previous node with probability chain_prob, else any initial node
        (x weighted x_weight) or earlier node; only sources that depend on x when `facts` is given."""
        ok = (lambda s: True) if facts is None else (lambda s: self._source_facts(s, facts)[0])
        if k and rng.random() < self.chain_prob and ok(k - 1):
            return k - 1
        pool = [s for s in self._sources(k) if ok(s)]
        return rng.choices(pool, weights=[self.x_weight if s == "x" else 1.0 for s in pool])[0]

    def _random_op(self, rng: random.Random) -> str:
        if rng.random() < self.moment_prob:
            return rng.choice(self.moments)
        return rng.choice(self.elementwise)

    def _random_node(self, rng: random.Random, nodes: list, facts: list) -> list:
        """A node k = len(nodes) that satisfies the local rules (up to 50 draws; else a moment of x)."""
        k = len(nodes)
        for _ in range(50):
            name = self._random_op(rng)
            if name in self.moments:
                node = [name, self._random_source(rng, k, facts)]
            else:
                node = [name] + [self._random_source(rng, k) for _ in range(self._arity[name])]
                if len(node) == 3 and rng.random() < 0.5:
                    node[1], node[2] = node[2], node[1]
            if self._node_problem(nodes + [node], k, facts) is None:
                return node
        return [rng.choice(self.moments), "x"]

    def sample(self, rng: random.Random) -> Genome:
        for _ in range(1000):
            n = rng.randint(2, self.max_nodes)  # one node cannot normalize (rule 5)
            nodes: list = []
            facts: list = []
            for _k in range(n):
                node = self._random_node(rng, nodes, facts)
                nodes.append(node)
                facts.append(self._facts_of(node, facts))
            g = prune(nodes)
            if self.is_valid(g):
                return g
        raise RuntimeError("evonorm: no valid genome in 1000 draws (is the vocabulary too small?)")

    # -- mutation ---------------------------------------------------------------------------------------
    def _change_op(self, g: list, rng: random.Random) -> Optional[list]:
        k = rng.randrange(len(g))
        old = g[k]
        new_op = rng.choice([o for o in self.ops if o != old[0]])
        ins = old[1:]
        arity = self._arity[new_op]
        if arity < len(ins):
            ins = [rng.choice(ins)]
        while len(ins) < arity:
            extra = self._random_source(rng, k)
            ins = ins + [extra] if rng.random() < 0.5 else [extra] + ins
        g[k] = [new_op] + ins
        return g

    def _change_input(self, g: list, rng: random.Random) -> Optional[list]:
        k = rng.randrange(len(g))
        slot = rng.randrange(1, len(g[k]))
        choices = [s for s in self._sources(k) if s != g[k][slot]]
        g[k][slot] = self._random_source(rng, k) if rng.random() < 0.5 else rng.choice(choices)
        return g

    def _insert(self, g: list, rng: random.Random) -> Optional[list]:
        """A new node on an edge into node k (or a new output node taking the old output, k = len)."""
        if len(g) >= self.max_nodes:
            return None
        k = rng.randrange(len(g) + 1)
        if k == len(g):
            feed = k - 1  # the old output
        else:
            slot = rng.randrange(1, len(g[k]))
            feed = g[k][slot]
        prefix = g[:k]
        facts = self.facts(prefix)
        for _ in range(20):
            node = self._random_node(rng, prefix, facts)
            node[rng.randrange(1, len(node))] = feed  # the new node reads what the edge carried
            if self._node_problem(prefix + [node], k, facts) is None:
                break
        else:
            return None
        shift = lambda i: i + 1 if _is_index(i) and i >= k else i  # noqa: E731
        rest = [[n[0]] + [shift(i) for i in n[1:]] for n in g[k:]]
        if k < len(g):
            rest[0][slot] = k
        return prefix + [node] + rest

    def _delete(self, g: list, rng: random.Random) -> Optional[list]:
        """Node k removed; its users read one of its inputs instead (the output: one of its node inputs)."""
        if len(g) < 2:
            return None
        k = rng.randrange(len(g))
        if k == len(g) - 1:
            node_inputs = [i for i in g[k][1:] if _is_index(i)]
            if not node_inputs:
                return None
            return g[:rng.choice(node_inputs) + 1]
        bypass = rng.choice(g[k][1:])

        def remap(i):
            if not _is_index(i):
                return i
            if i == k:
                return bypass
            return i - 1 if i > k else i

        return g[:k] + [[n[0]] + [remap(i) for i in n[1:]] for n in g[k + 1:]]

    def mutate(self, genome: Genome, rng: random.Random) -> Genome:
        """One of: change an op, change an input, insert a node, delete a node (uniformly among those that
        apply); dead nodes pruned; retried (up to 50 times) until the child is valid and spells a
        different formula, else a copy of the parent."""
        self.validate(genome)
        before = self.formula(genome)
        ops = [self._change_op, self._change_input, self._insert, self._delete]
        for _ in range(50):
            child = rng.choice(ops)(copy.deepcopy(genome), rng)
            if child is None:
                continue
            child = prune(child)
            if self.is_valid(child) and self.formula(child) != before:
                return child
        return copy.deepcopy(genome)

    # -- crossover --------------------------------------------------------------------------------------------
    @staticmethod
    def _splice(head: list, tail: list, i: int, j: int) -> list:
        """head[:i] followed by tail[j:]; a tail reference r keeps its distance (r + i - j), clamped into
        the new prefix (x when the prefix is empty)."""
        out = copy.deepcopy(head[:i])

        def remap(r):
            if not _is_index(r):
                return r
            if r >= j:
                return r + i - j
            if i == 0:
                return "x"
            return min(max(r + i - j, 0), i - 1)

        return out + [[n[0]] + [remap(r) for r in n[1:]] for n in tail[j:]]

    def _graft(self, host: list, donor: list, rng: random.Random) -> list:
        """`host` with one input edge (node k, slot) rerouted to a copy of the subgraph computing one of
        `donor`'s nodes, inserted before k (the subtree crossover of expression trees)."""
        j = rng.randrange(len(donor))
        sub = prune(donor[:j + 1])
        k = rng.randrange(len(host))
        slot = rng.randrange(1, len(host[k]))
        shift = lambda i, by: i + by if _is_index(i) else i  # noqa: E731
        moved = [[n[0]] + [shift(i, k) for i in n[1:]] for n in sub]
        rest = [[n[0]] + [shift(i, len(sub)) if _is_index(i) and i >= k else i for i in n[1:]] for n in host[k:]]
        rest[0][slot] = k + len(sub) - 1
        return prune(copy.deepcopy(host[:k]) + moved + rest)

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, Genome]:
        """One-point crossover at cut points i of a and j of b (0 <= i <= len(a), 0 <= j <= len(b)):
        a[:i] + b[j:] and b[:j] + a[i:] (see `_splice`; a cut at the end grafts the other parent's tail
        onto this parent's output), pruned; up to 30 tries for two valid children that differ from both
        parents.  Failing that, each child is a graft (`_graft`: a subgraph of the other parent on an
        edge of this one), up to 30 tries each, else a copy of its parent."""
        self.validate(a)
        self.validate(b)
        parents = (a, b)
        for _ in range(30):
            i, j = rng.randint(0, len(a)), rng.randint(0, len(b))
            ca = prune(self._splice(a, b, i, j))
            cb = prune(self._splice(b, a, j, i))
            if ca not in parents and cb not in parents and self.is_valid(ca) and self.is_valid(cb):
                return ca, cb
        children = []
        for host, donor in ((a, b), (b, a)):
            for _ in range(30):
                child = self._graft(host, donor, rng)
                if child not in parents and self.is_valid(child):
                    break
            else:
                child = copy.deepcopy(host)
            children.append(child)
        return children[0], children[1]

    # -- Optuna define-by-run ------------------------------------------------------------------------------
    def _repair_node(self, nodes: list, k: int, facts: list) -> None:
        """Make node k satisfy the local rules by reading x in its slots, one after the other (in place)."""
        node = nodes[k]
        for slot in range(1, len(node)):
            if self._node_problem(nodes, k, facts) is None:
                return
            node[slot] = "x"

    def _repair_constant_output(self, g: list) -> list:
        """If the output is constant over some axes (no moment-free path from x), the first initial node
        other than x on a moment-free path from the output reads x instead (else the output's last input)."""
        facts = self.facts(g)
        if not facts[-1][1]:
            return g
        stack = [len(g) - 1]
        while stack:
            k = stack.pop()
            for slot in range(len(g[k]) - 1, 0, -1):
                src = g[k][slot]
                if _is_index(src):
                    if g[src][0] not in self.moments:
                        stack.append(src)
                elif src != "x":
                    g[k][slot] = "x"
                    return g
        g[-1][-1] = "x"
        return prune(g)

    def _repair_no_moment(self, g: list, moment: str) -> list:
        """If no node is a moment, `moment`(x) becomes node 0 and is read instead of the first initial node
        other than x (else instead of the first x, when there are several)."""
        if any(n[0] in self.moments for n in g) or len(g) >= self.max_nodes:
            return g
        slots = [(k, s) for k, n in enumerate(g) for s in range(1, len(n)) if isinstance(n[s], str)]
        others = [(k, s) for k, s in slots if g[k][s] != "x"]
        xs = [(k, s) for k, s in slots if g[k][s] == "x"]
        target = others[0] if others else (xs[0] if len(xs) > 1 else None)
        if target is None:
            return g
        out = [[moment, "x"]] + [[n[0]] + [i + 1 if _is_index(i) else i for i in n[1:]] for n in g]
        out[target[0] + 1][target[1]] = 0
        return out

    def suggest(self, trial) -> Genome:
        """The layer as an expression tree, one categorical choice per position, named by its path from the
        root with the kind of each parent ("node", "node.b1", "node.b2.m1", ...: b binary, u unary, m
        moment) so that each name always has the same choices: the root a binary op (a valid layer needs
        two uses of x, one under a moment and one not; with a unary root, random choices are mostly
        one-leaf chains that cannot normalize), other positions an op or an initial node (x only under
        a moment, x, v0 or v1 under a unary op), initial nodes only at depth SUGGEST_DEPTH; an op beyond
        the `max_nodes` budget becomes x.  Equal subtrees become one node.  Repairs, in order: local
        rules (offending inputs read x), a graph without moments gets the moment chosen as "moment"
        (`_repair_no_moment`), an output constant over some axes reads x (`_repair_constant_output`),
        local rules again; dead nodes are pruned after each.  A graph that still breaks a rule (about
        6% with Optuna's RandomSampler) becomes a sample drawn with a seed derived from the choices
        (deterministic, so Optuna's stored parameters replay it).  Layers with a unary output node are
        reachable by sample and mutate, not by suggest."""
        moment = trial.suggest_categorical("moment", list(self.moments))
        budget = [self.max_nodes]
        nodes: list = []
        index: dict[str, int] = {}

        def build(path: tuple):
            depth = len(path)
            name = "node" + "".join(f".{step}" for step in path)
            parent = path[-1][0] if path else None  # "m" moment, "u" unary, "b" binary
            if depth == 0:
                choices = list(self.binary)
            else:
                leaves = {"m": ["x"], "u": ["x", *VECTORS]}.get(parent, list(self.initial))
                choices = leaves if depth >= SUGGEST_DEPTH else leaves + list(self.ops)
            choice = trial.suggest_categorical(name, choices)
            if choice in self.initial:
                return choice
            if budget[0] <= 0:
                return "x"
            budget[0] -= 1
            kind = "m" if choice in self.moments else ("u" if self._arity[choice] == 1 else "b")
            node = [choice] + [build(path + (f"{kind}{i}",)) for i in range(1, self._arity[choice] + 1)]
            key = json.dumps(node)
            if key not in index:  # equal subtrees share one node
                index[key] = len(nodes)
                nodes.append(node)
            return index[key]

        build(())
        raw = json.dumps([moment, nodes])
        g = prune(nodes)
        for step in ("local", "moment", "output", "local"):
            if step == "local":
                facts: list = []
                for k in range(len(g)):
                    self._repair_node(g, k, facts)
                    facts.append(self._facts_of(g[k], facts))
                g = prune(g)
            elif step == "moment":
                g = self._repair_no_moment(g, moment)
            else:
                g = self._repair_constant_output(g)
        if self.is_valid(g):
            return g
        return self.sample(random.Random(raw))


__all__ = ["EvoNormSpace", "B0_GENOME", "S0_GENOME", "B0_FORMULA", "S0_FORMULA", "DEFAULT_UNARY",
           "DEFAULT_BINARY", "DEFAULT_MOMENTS", "VECTORS", "prune"]
