"""Free expression trees over the registry's unary and binary primitives (genetic-programming style).

Genome: a nested list, the tree in prefix form.  A node is ``[primitive, child, ...]`` (one child for a
unary primitive, two for a binary one); a leaf is ``"x"`` or a number (a constant).  The root is always
a primitive call (a bare x is linear and a bare constant is constant: neither is an activation), e.g.
``["mul", "x", ["square", ["asinh", "x"]]]`` is x*asinh(x)**2.

Limits: ``max_size`` nodes (primitives and leaves) and ``max_depth`` levels below the root (the tree's
height: ``["sin", "x"]`` has depth 1).  Every genome the operators return has at least one x leaf.

Vocabulary: by default every parameterless unary and binary registry primitive (n-ary max/min used
with two inputs; identity, the n-ary sum/prod and the moment primitives are left out), optionally
restricted to one vocabulary (``vocabulary="swish"``) or given explicitly (``unary=[...]``,
``binary=[...]``).  ``parametric=True`` adds the parametric primitives; each occurrence then gets its
own learnable parameter (named as in the Swish space: ``beta``, or ``beta1``, ``beta2``, ... when
repeated) initialised to the registry default.

Operators (all take the `rng` they are given; nothing touches the global random state):
  sample     grow method: each node below the root is a leaf with probability `leaf_prob` (always at
             the depth or size limit), otherwise a binary primitive with probability `binary_prob`,
             else a unary one; leaves are x with probability `x_prob`, else one of `constants`
  mutate     one of: point mutation (a primitive for another of the same arity, a leaf for another
             leaf), subtree replacement (a random subtree regrown within the limits), shrink (a node
             replaced by one of its children), constant perturbation (c + N(0, 0.5), rounded)
  crossover  one-point subtree swap below the roots, retried until both children respect the limits
             (else the parents are returned unchanged, as DEAP's staticLimit would)

DEAP's gp module (genGrow, mutUniform, mutNodeReplacement, mutShrink, cxOnePoint, staticLimit) was the
model, but its operators draw from the global `random` module, not from the `random.Random` this
interface passes (reproducibility would need reseeding global state), and its PrimitiveTree needs a
conversion to and from the nested-list genome both ways; these small functions do the same on the
nested lists directly.
"""
from __future__ import annotations

import copy
import math
import random
from typing import Iterable, Iterator, Optional, Sequence

from actsearch.primitives import PRIMITIVES, get_primitive

from .base import Genome, SearchSpace
from .swish import ParamNamer, resolve_primitives, spell_call, spell_with_params

DEFAULT_CONSTANTS = (-1.0, 0.5, 1.0, 2.0)
CONSTANT_BOUND = 10.0
EXCLUDED = ("identity", "sum", "prod")

Path = tuple[int, ...]


def default_primitives(arity: int, vocabulary: Optional[str] = None, parametric: bool = False) -> tuple[str, ...]:
    kinds = ("unary",) if arity == 1 else ("binary", "nary")
    return tuple(p.name for p in PRIMITIVES.values()
                 if p.kind in kinds and p.name not in EXCLUDED and (parametric or not p.params)
                 and (vocabulary is None or vocabulary in p.sets))


# ---- nested-list tree helpers -------------------------------------------------------------------------
def is_leaf(node) -> bool:
    return not isinstance(node, list)


def tree_size(node) -> int:
    return 1 if is_leaf(node) else 1 + sum(tree_size(c) for c in node[1:])


def tree_depth(node) -> int:
    return 0 if is_leaf(node) else 1 + max(tree_depth(c) for c in node[1:])


def iter_nodes(node, path: Path = ()) -> Iterator[tuple[Path, object]]:
    """(path, node) in prefix order; a path is the child indices (1-based list positions) from the root."""
    yield path, node
    if not is_leaf(node):
        for i, child in enumerate(node[1:], 1):
            yield from iter_nodes(child, path + (i,))


def get_node(tree, path: Path):
    for i in path:
        tree = tree[i]
    return tree


def replace_node(tree, path: Path, new):
    """A copy of `tree` with the node at `path` replaced by (a copy of) `new`."""
    if not path:
        return copy.deepcopy(new)
    out = copy.deepcopy(tree)
    parent = get_node(out, path[:-1])
    parent[path[-1]] = copy.deepcopy(new)
    return out


def has_x(node) -> bool:
    return node == "x" if is_leaf(node) else any(has_x(c) for c in node[1:])


def _is_constant(node) -> bool:
    return isinstance(node, (int, float)) and not isinstance(node, bool)


# ---- the space -------------------------------------------------------------------------------------------
class TreeSpace(SearchSpace):
    """Expression trees with at most `max_size` nodes and depth `max_depth` (unbounded count: no enumerate)."""

    name = "tree"
    description = "free expression trees over unary/binary primitives, x and small constants"

    def __init__(self, max_size: int = 15, max_depth: int = 5, unary: Optional[Iterable[str]] = None,
                 binary: Optional[Iterable[str]] = None, vocabulary: Optional[str] = None,
                 parametric: bool = False, constants: Sequence[float] = DEFAULT_CONSTANTS,
                 leaf_prob: float = 0.3, binary_prob: float = 0.4, x_prob: float = 0.75):
        for name, v, lo in (("max_size", max_size, 2), ("max_depth", max_depth, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name, v in (("leaf_prob", leaf_prob), ("binary_prob", binary_prob), ("x_prob", x_prob)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability, got {v!r}")
        self.max_size, self.max_depth = max_size, max_depth
        self.parametric = bool(parametric)
        self.vocabulary = vocabulary
        self.unary = resolve_primitives(default_primitives(1, vocabulary, parametric) if unary is None else unary,
                                        ("unary",), "unary", allow_empty=True)
        self.binary = resolve_primitives(default_primitives(2, vocabulary, parametric) if binary is None
                                         else binary, ("binary", "nary"), "binary", allow_empty=True)
        if not self.unary and not self.binary:
            raise ValueError(f"no unary or binary primitives (vocabulary={vocabulary!r})")
        if not self.unary and max_size < 3:
            raise ValueError("with binary primitives only, max_size must be at least 3")
        consts = []
        for c in constants:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
                raise ValueError(f"constants must be finite numbers, got {c!r}")
            if float(c) not in consts:
                consts.append(float(c))
        self.constants = tuple(consts)
        self.leaf_prob, self.binary_prob = leaf_prob, binary_prob
        self.x_prob = x_prob if self.constants else 1.0
        self._arity = {n: 1 for n in self.unary} | {n: 2 for n in self.binary}

    def __repr__(self):
        return (f"TreeSpace(max_size={self.max_size}, max_depth={self.max_depth}, {len(self.unary)} unary, "
                f"{len(self.binary)} binary, constants={list(self.constants)})")

    # -- genome checks ------------------------------------------------------------------------------
    def _check_node(self, node, root: bool = False) -> None:
        if is_leaf(node):
            if root:
                raise ValueError(f"the root of a tree genome must be a primitive call, got {node!r}")
            if node == "x":
                return
            if not _is_constant(node) or not math.isfinite(node):
                raise ValueError(f"a leaf must be 'x' or a finite number, got {node!r}")
            return
        if not node or not isinstance(node[0], str) or node[0] not in self._arity:
            raise ValueError(f"{node[0] if node else node!r} is not a primitive of this space")
        if len(node) - 1 != self._arity[node[0]]:
            raise ValueError(f"{node[0]} takes {self._arity[node[0]]} argument(s), got {len(node) - 1}")
        for child in node[1:]:
            self._check_node(child)

    def validate(self, genome: Genome) -> None:
        """ValueError unless `genome` is a well-formed tree of this space within its limits."""
        if not isinstance(genome, list):
            raise ValueError(f"tree genome must be a list, got {genome!r}")
        self._check_node(genome, root=True)
        if tree_size(genome) > self.max_size or tree_depth(genome) > self.max_depth:
            raise ValueError(f"tree of size {tree_size(genome)} and depth {tree_depth(genome)} exceeds the "
                             f"limits (size {self.max_size}, depth {self.max_depth})")

    def within_limits(self, genome: Genome) -> bool:
        return tree_size(genome) <= self.max_size and tree_depth(genome) <= self.max_depth

    # -- genome -> formula ---------------------------------------------------------------------------
    def _text(self, node, namer: Optional[ParamNamer]) -> str:
        if node == "x":
            return "x"
        if is_leaf(node):
            return repr(float(node))
        args = [self._text(c, namer) for c in node[1:]]
        return spell_call(get_primitive(node[0]), args, namer)

    def _spell(self, genome: Genome) -> tuple[str, dict[str, float]]:
        if not isinstance(genome, list):
            raise ValueError(f"tree genome must be a list, got {genome!r}")
        self._check_node(genome, root=True)
        if not self.parametric:
            return self._text(genome, None), {}
        return spell_with_params(lambda namer: self._text(genome, namer))

    def formula(self, genome: Genome) -> str:
        return self._spell(genome)[0]

    def params(self, genome: Genome) -> dict[str, float]:
        return self._spell(genome)[1]

    # -- random trees ------------------------------------------------------------------------------------
    def _leaf(self, rng: random.Random):
        if rng.random() < self.x_prob:
            return "x"
        return rng.choice(self.constants)

    def _grow(self, rng: random.Random, depth_left: int, budget: int, force_primitive: bool = False):
        """A random tree of depth <= depth_left and size <= budget (a primitive call if force_primitive
        and the limits allow one)."""
        can_unary = depth_left >= 1 and budget >= 2
        can_binary = depth_left >= 1 and budget >= 3 and self.binary
        if not can_unary or (not force_primitive and rng.random() < self.leaf_prob):
            return self._leaf(rng)
        if can_binary and (rng.random() < self.binary_prob or not self.unary):
            name = rng.choice(self.binary)
        elif self.unary:
            name = rng.choice(self.unary)
        else:
            return self._leaf(rng)
        arity = self._arity[name]
        remaining = budget - 1
        node = [name]
        for i in range(arity):
            later = arity - i - 1  # leave at least one node for each later sibling
            child = self._grow(rng, depth_left - 1, remaining - later)
            remaining -= tree_size(child)
            node.append(child)
        return node

    def _ensure_x(self, tree, rng: random.Random):
        """Put x on a random leaf if the tree has none (a tree without x is a constant function)."""
        if has_x(tree):
            return tree
        leaves = [p for p, n in iter_nodes(tree) if is_leaf(n)]
        return replace_node(tree, rng.choice(leaves), "x")

    def sample(self, rng: random.Random) -> Genome:
        tree = self._grow(rng, self.max_depth, self.max_size, force_primitive=True)
        return self._ensure_x(tree, rng)

    # -- mutation ----------------------------------------------------------------------------------------
    def _point(self, tree, rng: random.Random):
        path, node = rng.choice(list(iter_nodes(tree)))
        if is_leaf(node):
            options = [leaf for leaf in ("x",) + self.constants if leaf != node]
            return replace_node(tree, path, rng.choice(options)) if options else None
        same = self.unary if self._arity[node[0]] == 1 else self.binary
        options = [n for n in same if n != node[0]]
        if not options:
            return None
        return replace_node(tree, path, [rng.choice(options)] + node[1:])

    def _subtree(self, tree, rng: random.Random):
        path, node = rng.choice(list(iter_nodes(tree)))
        budget = self.max_size - (tree_size(tree) - tree_size(node))
        new = self._grow(rng, self.max_depth - len(path), budget, force_primitive=not path)
        return replace_node(tree, path, new)

    def _shrink(self, tree, rng: random.Random):
        # a primitive node replaced by one of its children; the root only by a primitive child
        options = [(path, i) for path, node in iter_nodes(tree) if not is_leaf(node)
                   for i in range(1, len(node)) if path or not is_leaf(node[i])]
        if not options:
            return None
        path, i = rng.choice(options)
        return replace_node(tree, path, get_node(tree, path)[i])

    def _perturb(self, tree, rng: random.Random):
        consts = [(p, n) for p, n in iter_nodes(tree) if _is_constant(n)]
        if not consts:
            return None
        path, c = rng.choice(consts)
        for _ in range(10):
            new = round(min(max(c + rng.gauss(0.0, 0.5), -CONSTANT_BOUND), CONSTANT_BOUND), 2)
            if new != c and new != 0:
                return replace_node(tree, path, new)
        return None

    def mutate(self, genome: Genome, rng: random.Random) -> Genome:
        """One operator chosen uniformly among those that apply; retried (up to 20 times) until the
        child differs from the parent."""
        self.validate(genome)
        ops = [self._point, self._subtree, self._shrink, self._perturb]
        child = None
        for _ in range(20):
            child = rng.choice(ops)(genome, rng)
            if child is None:
                continue
            child = self._ensure_x(child, rng)
            if child != genome and self.within_limits(child):
                return child
        return copy.deepcopy(genome)

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, Genome]:
        """Swap a random subtree of a (below its root) with one of b; up to 20 tries for a pair of
        different subtrees whose swap keeps both children within the limits, else copies of the parents."""
        self.validate(a)
        self.validate(b)
        pa = [p for p, _ in iter_nodes(a) if p]
        pb = [p for p, _ in iter_nodes(b) if p]
        for _ in range(20):
            path_a, path_b = rng.choice(pa), rng.choice(pb)
            sa, sb = get_node(a, path_a), get_node(b, path_b)
            if sa == sb:
                continue
            ca, cb = replace_node(a, path_a, sb), replace_node(b, path_b, sa)
            if self.within_limits(ca) and self.within_limits(cb):
                return self._ensure_x(ca, rng), self._ensure_x(cb, rng)
        return copy.deepcopy(a), copy.deepcopy(b)

    # -- Optuna define-by-run --------------------------------------------------------------------------
    def suggest(self, trial) -> Genome:
        """One categorical choice per tree position, named by its path ("node", "node.1", "node.1.2", ...):
        leaves and primitives above the depth limit, leaves only at it, primitives only at the root
        (so each name always has the same choices).  A primitive that no longer fits the size budget
        becomes x."""
        leaves = ["x"] + list(self.constants)
        prims = list(self.unary) + list(self.binary)

        def build(path: Path, budget: int):
            depth = len(path)
            name = "node" + "".join(f".{i}" for i in path)
            if depth == 0:
                choice = trial.suggest_categorical(name, prims)
            elif depth >= self.max_depth:
                choice = trial.suggest_categorical(name, leaves)
            else:
                choice = trial.suggest_categorical(name, leaves + prims)
            if choice not in self._arity:
                return choice
            arity = self._arity[choice]
            if 1 + arity > budget:
                return "x"
            node, remaining = [choice], budget - 1
            for i in range(1, arity + 1):
                child = build(path + (i,), remaining - (arity - i))
                remaining -= tree_size(child)
                node.append(child)
            return node

        tree = build((), self.max_size)
        if is_leaf(tree):  # a binary root with max_size 2
            tree = [self.unary[0], "x"]
        if not has_x(tree):
            leaves_at = [p for p, n in iter_nodes(tree) if is_leaf(n)]
            tree = replace_node(tree, leaves_at[0], "x")
        return tree


__all__ = ["TreeSpace", "DEFAULT_CONSTANTS", "default_primitives", "tree_size", "tree_depth", "iter_nodes"]
