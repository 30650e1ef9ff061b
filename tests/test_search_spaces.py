"""Search spaces: the Swish paper's core units, PANGAEA/AQuaSurF's binary(unary, unary), free trees."""
import copy
import json
import random

import pytest

from actsearch.formula import FormulaError, parse_formula
from actsearch.search_spaces import (SPACES, PangaeaSpace, SearchSpace, SwishSpace, TreeSpace, dedup_report,
                                     get_space)
from actsearch.search_spaces.tree import tree_depth, tree_size

SEED = 20240517

# every space as the tests exercise it (defaults, plus the non-default variants worth covering)
SPACE_FACTORIES = {
    "swish": lambda: SwishSpace(),
    "swish-3units": lambda: SwishSpace(units=3),
    "pangaea": lambda: PangaeaSpace(),
    "pangaea-registry": lambda: PangaeaSpace(preset="pangaea"),
    "tree": lambda: TreeSpace(),
    "tree-parametric": lambda: TreeSpace(vocabulary="swish", parametric=True, max_size=9, max_depth=3),
    "evonorm": lambda: get_space("evonorm"),  # also its own tests: tests/test_space_evonorm.py
    "families": lambda: get_space("families"),  # also tests/test_space_families.py
}


@pytest.fixture(params=sorted(SPACE_FACTORIES))
def space(request) -> SearchSpace:
    return SPACE_FACTORIES[request.param]()


def scribble(genome):
    """Modify a genome in place at every level (to show it shares no list with another genome)."""
    for item in genome:
        if isinstance(item, list):
            scribble(item)
    genome.append("!")


def samples(space, n, seed=SEED):
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


# ---- the Swish paper's discoveries -------------------------------------------------------------------
# (the paper's formula, its parameters, a genome of the default SwishSpace that spells it)
DISCOVERIES = [
    ("x*sigmoid(beta*x)", {"beta": 1.0}, [["sigmoid_mul", "scale", "identity"]]),
    ("max(x, sigmoid(x))", {}, [["max", "identity", "sigmoid"]]),
    ("cos(x) - x", {}, [["sub", "cos", "identity"]]),
    ("min(x, sin(x))", {}, [["min", "identity", "sin"]]),
    ("atan(x)**2 - x", {}, [["mul", "atan", "atan"], ["sub", "identity", "identity"]]),
    ("max(x, tanh(x))", {}, [["max", "identity", "tanh"]]),
    ("sinc(x) + x", {}, [["add", "sinc", "identity"]]),
    ("x*asinh(x)**2", {}, [["mul", "asinh", "asinh"], ["mul", "identity", "identity"]]),
]


@pytest.mark.parametrize("text, params, genome", DISCOVERIES, ids=[d[0] for d in DISCOVERIES])
def test_the_papers_discoveries_lie_in_the_swish_space(text, params, genome):
    space = SwishSpace()
    space.validate(genome)  # a genome of the default space
    assert space.params(genome) == params
    assert space.candidate(genome).id == parse_formula(text, params=params or None).id


def test_single_unit_discoveries_are_found_by_enumeration():
    # the one-unit discoveries, found (not just checked) in a one-unit space over their primitives
    space = SwishSpace(units=1, unary=["identity", "scale", "sigmoid", "cos", "sin", "tanh", "sinc"],
                       binary=["add", "sub", "max", "min", "sigmoid_mul"])
    by_id = {}
    for g in space.enumerate():
        by_id.setdefault(space.candidate(g).id, g)
    for text, params, genome in DISCOVERIES:
        if len(genome) == 1:
            found = by_id.get(parse_formula(text, params=params or None).id)
            assert found is not None, text
            assert space.params(found) == params


def test_swish_formula_and_parameter_naming():
    space = SwishSpace()
    g = [["mix", "const", "shift"], ["gauss_dist", "scale", "identity"]]
    assert space.formula(g) == ("gauss_dist(scale(mix(const(beta1), shift(x, beta2), beta3), beta4), x, beta5)")
    # registry defaults: const/scale/gauss_dist 1, shift 0 (starts as x), mix 0.5
    assert space.params(g) == {"beta1": 1.0, "beta2": 0.0, "beta3": 0.5, "beta4": 1.0, "beta5": 1.0}
    assert set(space.candidate(g).params) == {"beta1", "beta2", "beta3", "beta4", "beta5"}
    assert space.formula([["add", "identity", "neg"]]) == "add(x, neg(x))"
    assert space.params([["add", "identity", "neg"]]) == {}


def test_swish_vocabulary_and_size_follow_the_paper():
    space = SwishSpace()
    assert len(space.unary) == 25 and len(space.binary) == 10
    assert space.size() == 6250 + 6250 ** 2 == 39_068_750
    assert SwishSpace(units=1).size() == 6250
    assert SwishSpace(units=2, min_units=2).size() == 6250 ** 2


def test_pangaea_vocabulary_and_size_follow_aquasurf():
    space = PangaeaSpace()
    assert len(space.unary) == 27 and len(space.binary) == 7
    assert space.size() == 5103  # AQuaSurF's binary(unary(x),unary(x)); full dedup: see dedup_report
    assert space.formula(["max", "identity", "tanh"]) == "max(x, tanh(x))"
    assert space.formula(["pow", "one", "swish"]) == "pow(1, swish(x))"
    assert space.params(["mul", "elu", "swish"]) == {}  # parameterless operators
    assert PangaeaSpace(preset="pangaea").size() == 7 * 35 * 35


# ---- every space --------------------------------------------------------------------------------------
def test_sampled_genomes_parse(space):
    genomes = samples(space, 200)
    ok = 0
    for g in genomes:
        space.validate(g)
        try:
            space.candidate(g)
            ok += 1
        except FormulaError:  # the only way a valid genome may fail
            pass
    assert ok >= 0.8 * len(genomes), f"{ok}/200 samples parse"


def test_genomes_survive_a_json_round_trip(space):
    rng = random.Random(SEED)
    for g in samples(space, 50):
        back = json.loads(json.dumps(g))
        assert back == g
        assert space.formula(back) == space.formula(g)
        assert space.params(back) == space.params(g)
        m = space.mutate(g, rng)
        assert json.loads(json.dumps(m)) == m


def test_mutate_returns_a_valid_different_genome_and_leaves_its_argument_alone(space):
    rng = random.Random(SEED + 1)
    genomes = samples(space, 100)
    changed = parsed = 0
    for g in genomes:
        before = copy.deepcopy(g)
        child = space.mutate(g, rng)
        assert g == before
        space.validate(child)
        changed += child != g
        try:
            space.candidate(child)
            parsed += 1
        except FormulaError:
            pass
        scribble(child)
        assert g == before
    assert changed >= 95, changed
    assert parsed >= 80, parsed


def test_crossover_returns_valid_children_and_leaves_its_arguments_alone(space):
    rng = random.Random(SEED + 2)
    genomes = samples(space, 200)
    new = 0
    for a, b in zip(genomes[::2], genomes[1::2]):
        ba, bb = copy.deepcopy(a), copy.deepcopy(b)
        ca, cb = space.crossover(a, b, rng)
        assert a == ba and b == bb
        space.validate(ca)
        space.validate(cb)
        new += ca not in (a, b) and cb not in (a, b)
        scribble(ca)
        scribble(cb)
        assert a == ba and b == bb  # the children share no list with the parents
    assert new >= 80, new


def test_same_seed_same_genomes(space):
    def run(seed):
        rng = random.Random(seed)
        gs = [space.sample(rng) for _ in range(20)]
        ms = [space.mutate(g, rng) for g in gs]
        xs = [space.crossover(a, b, rng) for a, b in zip(gs, ms)]
        return json.dumps([gs, ms, xs])

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_suggest_with_optuna(space):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=SEED))
    seen = []
    for _ in range(15):
        trial = study.ask()
        g = space.suggest(trial)
        space.validate(g)
        assert json.loads(json.dumps(g)) == g
        seen.append(json.dumps(g))
        study.tell(trial, 0.0)
    assert len(set(seen)) > 10
    # the same trial parameters give the same genome (replayable from Optuna's storage)
    best = study.trials[0]
    assert space.suggest(optuna.trial.FixedTrial(best.params)) == json.loads(seen[0])


def test_malformed_genomes_are_refused(space):
    for bad in (None, "x", [], [["nope", "x", "x"]], ["nope", "identity", "identity"], [["add"]]):
        with pytest.raises(ValueError):
            space.validate(bad)
        with pytest.raises(ValueError):
            space.formula(bad)


# ---- finite spaces: size and enumerate --------------------------------------------------------------
@pytest.mark.parametrize("make, expected", [
    (lambda: SwishSpace(units=2, unary=["identity", "sin", "scale"], binary=["add", "mul"]), 2 * 9 + 18 ** 2),
    (lambda: SwishSpace(units=1, unary=["identity", "const"], binary=["max"]), 4),
    (lambda: PangaeaSpace(unary=["zero", "identity", "tanh", "erfc"], binary=["add", "pow"]), 2 * 4 * 4),
])
def test_size_matches_enumerate(make, expected):
    space = make()
    genomes = list(space.enumerate())
    assert space.size() == len(genomes) == expected
    keys = {json.dumps(g) for g in genomes}
    assert len(keys) == len(genomes)  # no repeats
    for g in genomes:
        space.validate(g)
    rng = random.Random(SEED)
    for _ in range(50):  # sampling, mutation and crossover stay inside the enumerated set
        a, b = space.sample(rng), space.sample(rng)
        assert json.dumps(a) in keys
        assert json.dumps(space.mutate(a, rng)) in keys
        assert all(json.dumps(c) in keys for c in space.crossover(a, b, rng))


def test_dedup_report_on_a_small_pangaea_space():
    # 3 binary x 4 x 4 unary = 48 genomes, counted by hand:
    #   invalid: u/0 for the 4 numerators (0/0 is nan, the rest division by zero)
    #   distinct functions: add gives 0, x, -x, t, 2x, x+t, -2x, t-x, 2t (9); max adds relu(x),
    #   relu(-x), relu(t), |x|, max(x,t), max(-x,t) (6); div adds 1, -1, x/t, -x/t, t/x, -t/x (6): 21
    #   screened out (constant or linear): add 0+0, x-x twice, x+0/0+x, -x+0/0-x, 2x, -2x (9); max 0, x, -x
    #   (3); div 0/u three times, u/u three times, x/-x twice (8): 20
    space = PangaeaSpace(unary=["zero", "identity", "neg", "tanh"], binary=["add", "max", "div"])
    report = dedup_report(space)
    assert {k: report[k] for k in ("size", "distinct", "invalid", "screened_out")} == {
        "size": 48, "distinct": 21, "invalid": 4, "screened_out": 20}
    assert report["distinct_passed"] == 21 - 3 - 4  # minus constants 0, 1, -1 and linear x, -x, 2x, -2x
    assert dedup_report(space, limit=10)["size"] == 10


# ---- tree specifics ------------------------------------------------------------------------------------
def test_tree_operators_respect_the_limits():
    space = TreeSpace(max_size=9, max_depth=3)
    rng = random.Random(SEED)
    genomes = samples(space, 100)
    for g in genomes:
        assert isinstance(g, list) and "x" in json.dumps(g)
        assert tree_size(g) <= 9 and tree_depth(g) <= 3
    for a, b in zip(genomes, genomes[1:]):
        for child in (space.mutate(a, rng), *space.crossover(a, b, rng)):
            space.validate(child)
            assert tree_size(child) <= 9 and tree_depth(child) <= 3


def test_tree_mutation_kinds_all_occur():
    space = TreeSpace(max_size=9, max_depth=3, x_prob=0.5)
    g = ["add", ["sin", "x"], 0.5]
    rng = random.Random(SEED)
    children = [space.mutate(g, rng) for _ in range(300)]
    assert ["add", ["sin", "x"], 0.5] == g
    assert any(c[0] != "add" and c[1:] == g[1:] for c in children)                  # point mutation
    assert any(c[:2] == g[:2] and isinstance(c[2], float) and c[2] not in space.constants
               for c in children)                                                     # constant perturbed
    assert ["sin", "x"] in children                                                   # shrink to a subtree
    assert any(tree_depth(c) > 2 for c in children)                                   # subtree regrown


def test_tree_formula_text():
    space = TreeSpace()
    assert space.formula(["mul", "x", ["square", ["asinh", "x"]]]) == "mul(x, square(asinh(x)))"
    assert space.formula(["add", ["sin", "x"], -1.0]) == "add(sin(x), -1.0)"
    assert space.candidate(["mul", "x", ["square", ["asinh", "x"]]]).id == parse_formula("x*asinh(x)**2").id
    p = TreeSpace(vocabulary="swish", parametric=True)
    g = ["mix", ["scale", "x"], ["sin", "x"]]
    assert p.formula(g) == "mix(scale(x, beta1), sin(x), beta2)"
    assert p.params(g) == {"beta1": 1.0, "beta2": 0.5}


# ---- the registry -----------------------------------------------------------------------------------------
def test_get_space():
    assert set(SPACES) == {"swish", "pangaea", "tree", "evonorm", "families", "polynorm"}
    for name, cls in SPACES.items():
        s = get_space(name)
        assert isinstance(s, cls) and s.name == name
    assert get_space("swish", units=1).size() == 6250
    assert get_space("pangaea", unary=["identity", "tanh"], binary=["max"]).size() == 4
    with pytest.raises(ValueError, match="evonorm, families, pangaea, polynorm, swish, tree"):
        get_space("nope")
    with pytest.raises(ValueError):
        get_space("swish", units=0)
    with pytest.raises(ValueError, match="unknown option.*colour.*valid options: units, min_units"):
        get_space("swish", colour="red")
    with pytest.raises(ValueError, match="unknown unary"):
        get_space("pangaea", unary=["nope"])
    with pytest.raises(ValueError, match="not binary"):
        get_space("swish", binary=["tanh"])
    with pytest.raises(NotImplementedError):
        get_space("tree").enumerate()
    assert get_space("tree").size() is None
