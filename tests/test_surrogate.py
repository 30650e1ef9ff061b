"""The surrogate strategy (actsearch.strategies.SurrogateStrategy) and its features (actsearch.surrogate_features).

The benchmark objective is synthetic and free: minus the RMS distance, on the N(0,1) probes the catalog
uses, between a candidate and x*sigmoid(x); candidates that cannot be built, or that are non-finite or
constant on the probe set, are rejected (None).  It depends smoothly on the function's shape, as a
trained network's accuracy is hoped to.  The space is PANGAEA restricted to 14 unary operators
(7 * 14 * 14 = 1,372 genomes), so that featurising all of it takes about 3 s.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from actsearch import surrogate_features as sf
from actsearch.identity import PROBE_NORMAL, PROBES
from actsearch.numeric import evaluate
from actsearch.search_spaces import PangaeaSpace, SwishSpace, TreeSpace
from actsearch.search_spaces.evonorm import B0_GENOME, S0_GENOME, EvoNormSpace
from actsearch.strategies import STRATEGIES, SurrogateStrategy, genome_key, make_strategy

UNARY = ("zero", "one", "identity", "neg", "abs", "square", "exp", "tanh", "sigmoid", "relu", "elu", "softplus",
         "softsign", "erf")
TARGET = PROBE_NORMAL / (1.0 + np.exp(-PROBE_NORMAL))   # x * sigmoid(x)
N_PROBE_NORMAL = PROBE_NORMAL.size


def small_space(unary=UNARY) -> PangaeaSpace:
    return PangaeaSpace(unary=unary)


def synthetic_value(space, genome):
    try:
        c = space.candidate(genome)
        f = evaluate(c.safe_expr, PROBES, c.params)
    except Exception:
        return None
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(f)) or not np.std(f) >= 1e-9:
            return None
        return -float(np.sqrt(np.mean((f[:N_PROBE_NORMAL] - TARGET) ** 2)))


@pytest.fixture(scope="module")
def table():
    """genome key -> synthetic value over the whole small space, and the top-1% threshold."""
    space = small_space()
    values = {genome_key(g): synthetic_value(space, g) for g in space.enumerate()}
    ranked = sorted((v for v in values.values() if v is not None), reverse=True)
    threshold = ranked[math.ceil(0.01 * len(values)) - 1]
    return space, values, threshold


def evaluations_to_top(strategy, values, threshold, budget):
    """Synchronous loop: number of evaluations until a genome in the top 1% is told (budget if none)."""
    for n in range(1, budget + 1):
        g = strategy.ask()
        v = values[genome_key(g)]
        strategy.tell(g, v)
        if v is not None and v >= threshold:
            return n
    return budget


def drive(strategy, value_of, steps, batch=1, updates=()):
    """Asks in batches of `batch`, tells in reverse order (asynchronous); rejected and updated values
    included.  Returns every asked genome."""
    asked = []
    for step in range(steps):
        gs = [strategy.ask() for _ in range(batch)]
        asked += gs
        for g in reversed(gs):
            strategy.tell(g, value_of(g))
        if step in updates:
            strategy.update(gs[0], 10.0)
    return asked


# ----------------------------------------------------------------------------- features

def test_features_shape_cache_and_dedup():
    space = small_space()
    cid, f = sf.genome_features(space, ["mul", "identity", "sigmoid"])
    cid2, f2 = sf.genome_features(space, ["mul", "sigmoid", "identity"])  # same function, same features
    assert f.shape == (sf.FEATURE_DIM,) and np.all(np.isfinite(f)) and np.abs(f).max() <= sf.CLIP
    assert cid == cid2 and f2 is f
    c = space.candidate(["mul", "identity", "sigmoid"])
    np.testing.assert_allclose(f[:sf.PROBE_POINTS.size], evaluate(c.safe_expr, sf.PROBE_POINTS, {}), rtol=1e-5)
    exact = evaluate(c.safe_derivative, sf.PROBE_POINTS, {})  # the central difference matches f'
    np.testing.assert_allclose(f[sf.PROBE_POINTS.size:2 * sf.PROBE_POINTS.size], exact, rtol=1e-5, atol=1e-6)
    assert sf.genome_features(space, ["div", "one", "zero"]) == (None, None)   # 1/0: cannot be built
    assert sf.genome_features(space, ["nope", "x", "x"]) == (None, None)       # not a genome of the space
    big = sf.genome_features(space, ["mul", "exp", "exp"])[1]                  # exp(2x): clipped at the far probes
    assert big is not None and big.max() == sf.CLIP


# ----------------------------------------------------------------------------- contract

def test_registered_and_validates_options():
    assert STRATEGIES["surrogate"] is SurrogateStrategy
    with pytest.raises(ValueError):
        make_strategy("surrogate", small_space(), regressor="svm")
    with pytest.raises(TypeError):
        make_strategy("surrogate", small_space(), population=10)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="max_features"):
            make_strategy("surrogate", small_space(), max_features=bad)


@pytest.mark.parametrize("pool", ["enumerated", "sampled"])
def test_deterministic_replay(table, pool, monkeypatch):
    """Two strategies fed the same calls (asynchronous batches with tells out of order, rejections,
    updates) ask the same genomes; with the sampled pool the second one computes its features afresh."""
    space, values, _ = table
    options = {"enumerated": {}, "sampled": {"enumerate_limit": 0, "pool": 60, "pool_refresh": 10, "mutants": 10}}[pool]

    def value(g):
        return values[genome_key(g)]

    runs = []
    for fresh in (False, True):
        if fresh and pool == "sampled":
            monkeypatch.setattr(sf, "_ID_BY_FORMULA", {})
            monkeypatch.setattr(sf, "_FEATURES_BY_ID", {})
        strategy = make_strategy("surrogate", space, seed=3, n_startup=6, **options)
        runs.append(drive(strategy, value, steps=6, batch=3, updates=(3, 4)))
    assert runs[0] == runs[1]
    assert len({genome_key(g) for g in runs[0]}) == len(runs[0])


def test_batch_asks_are_distinct(table):
    space, values, _ = table
    strategy = make_strategy("surrogate", space, seed=1, n_startup=5)
    drive(strategy, lambda g: values[genome_key(g)], steps=5)
    batch = [strategy.ask() for _ in range(12)]
    assert len({genome_key(g) for g in batch}) == 12
    ids = {sf.genome_features(space, g)[0] for g in batch}
    assert len(ids) == 12  # distinct functions, too
    assert len(strategy.pending()) == 12


def test_beats_random_on_synthetic_objective(table):
    """Evaluations until a top-1% genome is told, median over 8 seeds: the surrogate's is at most half of
    random's.  Random's median is taken over 64 seeds (it costs nothing), because over 8 it is noisy: its
    number of evaluations is geometric (p ~ 1%, median ~ 69), and seeds 0-7 happen to give a median of 34."""
    space, values, threshold = table
    surrogate = [evaluations_to_top(make_strategy("surrogate", space, seed=s), values, threshold, 400)
                 for s in range(8)]
    rand = [evaluations_to_top(make_strategy("random", space, seed=s), values, threshold, 2000) for s in range(64)]
    print(f"\nsurrogate median {statistics.median(surrogate)} {surrogate}; random median {statistics.median(rand)} "
          f"(seeds 0-7: {statistics.median(rand[:8])})")
    assert statistics.median(surrogate) <= 0.5 * statistics.median(rand)


def test_update_steers_the_model(table):
    """A told genome whose value is updated to a very high value draws the next proposal to its
    neighbours (pure exploitation, kappa = epsilon = 0, so that only the model decides)."""
    space, values, _ = table

    def first_proposal(seed, update):
        strategy = make_strategy("surrogate", space, seed=seed, n_startup=10, epsilon=0.0, kappa=0.0)
        told = drive(strategy, lambda g: values[genome_key(g)], steps=10)
        valid = sorted((g for g in told if values[genome_key(g)] is not None), key=lambda g: values[genome_key(g)])
        target = valid[len(valid) // 2]  # a middling genome becomes the best
        if update:
            strategy.update(target, 100.0)
        proposal = strategy.ask()
        # rank of the proposal among the pool by distance to the target, in the strategy's feature scaling
        feats = strategy._candidates()[2]
        ref = strategy._scaled([sf.genome_features(space, target)[1]])[0]
        dist = np.linalg.norm(strategy._scaled(feats) - ref, axis=1)
        d = np.linalg.norm(strategy._scaled([sf.genome_features(space, proposal)[1]])[0] - ref)
        return float(np.mean(dist < d))  # fraction of the pool nearer to the target than the proposal

    with_update = [first_proposal(seed, True) for seed in range(4)]
    without = [first_proposal(seed, False) for seed in range(4)]
    assert statistics.median(with_update) <= 0.05, with_update
    assert statistics.median(with_update) < statistics.median(without) / 3, (with_update, without)


# ----------------------------------------------------------------------------- other spaces

@pytest.mark.parametrize("space", [SwishSpace(), TreeSpace(max_size=9, max_depth=4), EvoNormSpace(max_nodes=6)],
                         ids=["swish", "tree", "evonorm"])
def test_other_spaces(space):
    """30 asks on unbounded spaces (a sampled pool), rejections included.  (Synchronous and not
    replayed: both are exercised on pangaea above, where the features cost less.)"""
    options = dict(n_startup=8, pool=30, pool_refresh=5, mutants=5)
    swish_like = sf.PROBE_QUANTILES / (1 + np.exp(-sf.PROBE_QUANTILES))

    def value(g):
        f = sf.genome_features(space, g)[1]
        return None if f is None else -float(np.sqrt(np.mean((f[:64] - swish_like) ** 2)))

    strategy = make_strategy("surrogate", space, seed=2, **options)
    asked = drive(strategy, value, steps=30)
    assert strategy.n_asked == strategy.n_told == 30 and strategy.n_pending == 0
    assert len({genome_key(g) for g in asked}) == 30
    assert strategy._fitted is not None  # the model phase was reached


def test_finite_space_is_exhausted_once_per_function():
    """In a finite space each distinct function is proposed once (add(x, tanh(x)) and add(tanh(x), x)
    are one), then ask() returns None."""
    space = PangaeaSpace(unary=["identity", "tanh"], binary=["add"])
    strategy = make_strategy("surrogate", space, seed=0, n_startup=1)
    asked = []
    while (g := strategy.ask()) is not None:
        asked.append(g)
        strategy.tell(g, float(len(asked)))
    assert len(asked) == 3 and len({sf.genome_features(space, g)[0] for g in asked}) == 3
    assert strategy.ask() is None
    # also while still in the random startup (fewer told genomes than n_startup), asynchronously
    strategy = make_strategy("surrogate", space, seed=0, n_startup=10)
    batch = [strategy.ask() for _ in range(4)]
    assert batch[3] is None and len({sf.genome_features(space, g)[0] for g in batch[:3]}) == 3


def test_multi_objective_uses_objective_zero(table):
    space, values, _ = table
    strategy = make_strategy("surrogate", space, seed=0, n_objectives=2, n_startup=4)
    for _ in range(8):
        g = strategy.ask()
        v = values[genome_key(g)]
        strategy.tell(g, None if v is None else (v, 1.0))
    assert strategy.ask() is not None


def test_layers_have_features():
    """Layers (evonorm) are featurised on the probe points as an (N, C, L) tensor: B0 and S0 differ, and
    most sampled layers have features."""
    import random

    space = EvoNormSpace()
    b0, s0 = sf.genome_features(space, B0_GENOME), sf.genome_features(space, S0_GENOME)
    assert b0[1] is not None and s0[1] is not None and b0[1].shape == s0[1].shape == (sf.FEATURE_DIM,)
    assert not np.allclose(b0[1], s0[1])
    rng = random.Random(0)
    feats = [sf.genome_features(space, space.sample(rng))[1] for _ in range(40)]
    assert sum(f is not None for f in feats) >= 30


def test_features_of_a_finite_space_persist_on_disk(tmp_path, monkeypatch):
    """The first enumeration writes the space's feature file; a fresh process (caches cleared) reads the
    same ids and features from it; a damaged file is ignored; other spaces get other files."""
    monkeypatch.setenv("ACTSEARCH_CACHE_DIR", str(tmp_path))
    space = small_space(unary=UNARY[:8])
    genomes = list(space.enumerate())
    monkeypatch.setattr(sf, "_ID_BY_FORMULA", {})  # as in a fresh process
    monkeypatch.setattr(sf, "_FEATURES_BY_ID", {})
    strategy = make_strategy("surrogate", space, seed=0)
    strategy._enumerate()
    want = {genome_key(g): sf.genome_features(space, g) for g in genomes}
    files = list((tmp_path / "surrogate").glob("pangaea-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(sf, "_ID_BY_FORMULA", {})
    monkeypatch.setattr(sf, "_FEATURES_BY_ID", {})
    assert sf.load_space_features(sf.space_feature_file(space, genomes)[0]) == len(genomes)
    for g in genomes:
        cid, f = sf.genome_features(space, g)
        assert cid == want[genome_key(g)][0]
        assert (f is None) == (want[genome_key(g)][1] is None)
        if f is not None:
            np.testing.assert_array_equal(f, want[genome_key(g)][1])
    other = small_space(unary=UNARY[:6])
    assert sf.space_feature_file(other, list(other.enumerate()))[0] != files[0]
    files[0].write_bytes(b"not an npz")
    assert sf.load_space_features(sf.space_feature_file(space, genomes)[0]) == 0
