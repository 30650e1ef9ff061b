"""The parametric families (actsearch.families) and their search spaces `families` and `polynorm`: every
member parses with its paper's initialisation, the shipped fits reproduce and beat the paper start on
their target, PolyNorm equals its published formula, and a families search resumes exactly."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch

from actsearch.catalog import load_catalog
from actsearch.families import (FAMILY_TABLE, FIT_RANGE, FIT_TARGETS, PAPER, family_candidate, family_params,
                                fit_family, fit_table, polynorm_formula, polyrelu_formula)
from actsearch.numeric import evaluate
from actsearch.search import SearchConfig, SearchDriver
from actsearch.search_spaces import FamiliesSpace, PolyNormSpace, get_space
from actsearch.store import ResultStore
from fake_training import PlanExecutor, hashed_quality, wait_for_results

X = np.linspace(-3.0, 3.0, 601)


def values(candidate, x=X):
    return evaluate(candidate.safe_expr, x, candidate.params)


def catalog_values(name, x=X):
    k = load_catalog()[name]
    return evaluate(k.candidate.safe_expr, x, k.params)


def test_space_sizes_and_every_genome_parses_to_its_kind():
    space, layers = get_space("families"), get_space("polynorm")
    genomes = list(space.enumerate())
    assert space.size() == len(genomes) == 82
    assert layers.size() == 6 and space.kind == "activation" and layers.kind == "layer"
    ids = Counter()
    for g in genomes:
        c = space.candidate(g)
        assert not c.is_tensor_op and np.all(np.isfinite(values(c))), g
        ids[c.id] += 1
    # a fit can land on another start (APA fitted to SiLU is APA's paper start; PolyReLU, which cannot go
    # negative, fitted to leaky ReLU or ELU is its ReLU fit): 82 genomes, 73 distinct functions; the
    # search dedups by id
    assert len(ids) == 73
    assert space.candidate(["apa", "apa", "silu"]).id == space.candidate(["apa", "apa", "paper"]).id
    for g in layers.enumerate():
        assert layers.candidate(g).is_tensor_op


@pytest.mark.parametrize("family, structure, catalog", [
    ("apa", "apa", "silu"), ("xgate", "gelu", "gelu"), ("xgate", "silu", "silu"),
    ("polyrelu", "3", "polyrelu"), ("relu_power", "2", "squared_relu"), ("relu_power", "p", "squared_relu"),
])
def test_paper_starts_are_the_published_functions(family, structure, catalog):
    np.testing.assert_allclose(values(family_candidate(family, structure)), catalog_values(catalog), atol=2e-5)


def test_pau_paper_start_is_the_leaky_relu_fit():
    c = family_candidate("rational", "5/4")
    assert set(c.params) == {"a0", "a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "b4"}
    assert np.max(np.abs(values(c) - catalog_values("leaky_relu"))) < 0.035   # PAU's own fit quality
    assert family_params("rational", "5/4") == family_params("rational", "5/4", "leaky_relu")


def test_polyrelu_and_polynorm_formulas():
    assert polyrelu_formula(2) == "a1*relu(x) + a2*relu(x)**2"
    assert polynorm_formula(2, "instance") == ("a1*x/sqrt(instance_mean(x**2) + 1e-06) + "
                                               "a2*x**2/sqrt(instance_mean(x**4) + 1e-06)")
    with pytest.raises(ValueError, match="scope"):
        polynorm_formula(3, "batch")


@pytest.mark.parametrize("scope, axes", [("layer", (1, 2)), ("instance", (2,))])
def test_polynorm_equals_the_published_formula(scope, axes):
    """PolyNorm(x) = sum_i a_i x^i / sqrt(mean(x^{2i}) + eps) (PolyCom), mean over the scope's axes."""
    x = np.random.default_rng(0).normal(0.5, 1.5, (4, 6, 5))
    a = {"a1": 0.4, "a2": -0.3, "a3": 0.7}
    c = family_candidate("polynorm", f"3/{scope}")
    ref = sum(a[f"a{i}"] * x**i / np.sqrt(np.mean(x**(2 * i), axis=axes, keepdims=True) + 1e-6)
              for i in (1, 2, 3))
    np.testing.assert_allclose(evaluate(c.safe_expr, x, a), ref, rtol=1e-9, atol=1e-9)
    assert c.params == {"a1": 1 / 3, "a2": 1 / 3, "a3": 1 / 3}     # the paper's uniform start


def test_polynorm_trains_as_a_layer_module():
    from actsearch.layers import create_layer

    c = family_candidate("polynorm", "2/group")
    layer = create_layer(c, 8, groups=4, compiled=False)
    x = torch.randn(3, 8, 5, dtype=torch.float64, requires_grad=True)
    layer = layer.double()
    y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    grads = [p.grad for p in layer.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_shipped_fits_reproduce_and_start_closer_to_their_target_than_the_paper():
    table = fit_table()
    fittable = [(f.name, s) for f in FAMILY_TABLE.values() for s in f.structures if f.fittable(s)]
    assert len(table) == len(fittable) * len(FIT_TARGETS)
    # refit a few now (the full table: python -m actsearch.families --write-fits, minutes)
    for family, structure, target in (("polyrelu", "3", "gelu"), ("xgate", "silu", "tanh"),
                                      ("rational", "4/3", "silu"), ("relu_power", "p", "leaky_relu")):
        fit = fit_family(family, structure, target)
        shipped = table[f"{family}|{structure}|{target}"]
        for k, v in fit.params.items():
            assert v == pytest.approx(shipped["params"][k], rel=1e-4, abs=1e-6), (family, structure, target, k)
    for key, entry in table.items():
        family, structure, target = key.split("|")
        fitted = values(family_candidate(family, structure, target))
        paper = values(family_candidate(family, structure, PAPER))
        t = catalog_values(target)
        assert np.sqrt(np.mean((fitted - t) ** 2)) <= np.sqrt(np.mean((paper - t) ** 2)) + 1e-6, key
        assert entry["max_error"] == pytest.approx(np.max(np.abs(fitted - t)), abs=0.01 + 0.05 * entry["max_error"])


def test_bounds_keep_fits_safe():
    for target in FIT_TARGETS:
        p = family_params("apa", "apa", target)
        assert 0.05 <= p["lam"] <= 10 and 0.01 <= p["kappa"] <= 10
        assert family_params("xgate", "gelu", target)["alpha"] >= -0.49
        assert 0.5 <= family_params("relu_power", "p", target)["p"] <= 4
    assert FIT_RANGE == (-3.0, 3.0)


def test_space_options_and_errors():
    s = FamiliesSpace(families=["rational", "apa"], inits=["gelu"])
    assert s.inits == ("paper", "gelu") and s.size() == 4 * 2 + 2
    with pytest.raises(ValueError, match="layer family"):
        FamiliesSpace(families=["polynorm"])
    with pytest.raises(ValueError, match="unknown init"):
        FamiliesSpace(inits=["softsign"])
    with pytest.raises(ValueError, match="unknown family"):
        FamiliesSpace(families=["nope"])
    with pytest.raises(ValueError, match="init 'gelu' is not one of relu_power 2"):
        get_space("families").validate(["relu_power", "2", "gelu"])
    with pytest.raises(ValueError, match="is not one of rational 5/4"):
        get_space("families").validate(["rational", "5/4", "leaky_relu"])  # that start is "paper"
    assert PolyNormSpace().formula(["polynorm", "2/layer", "paper"]).startswith("a1*x/sqrt(layer_mean")


def test_operators_stay_inside_the_enumeration():
    space = get_space("families")
    keys = {str(g) for g in space.enumerate()}
    rng = random.Random(5)
    for _ in range(300):
        a, b = space.sample(rng), space.sample(rng)
        assert str(space.mutate(a, rng)) in keys
        assert all(str(c) in keys for c in space.crossover(a, b, rng))


def _config(**kw):
    base = dict(space="families", strategy="evolution", tasks=["mnist1d-mlp"], seeds=2, budget=20, batch=4,
                rungs="flat", strategy_options={"population": 8, "tournament": 3})
    base.update(kw)
    cfg = SearchConfig(**base)
    cfg.validate()
    return cfg


def test_a_killed_families_search_resumes_exactly(tmp_path):
    """Killed after 2 batches, resumed: the same events and ranking as an uninterrupted run, and no
    (candidate, task, seed) trained twice."""
    SearchDriver(_config(), tmp_path / "ref", executor=PlanExecutor(quality=hashed_quality, capacity=2)).run()
    ledger: Counter = Counter()
    with pytest.raises(KeyboardInterrupt):
        SearchDriver(_config(), tmp_path / "run", executor=PlanExecutor(quality=hashed_quality, capacity=2, crash_after=2, ledger=ledger)).run()
    SearchDriver(_config(), tmp_path / "run", resume=True, executor=PlanExecutor(quality=hashed_quality, capacity=2, ledger=ledger)).run()
    assert ledger and max(ledger.values()) == 1
    with ResultStore(tmp_path / "ref", mode="read") as a, ResultStore(tmp_path / "run", mode="read") as b:
        assert a.n_results() == b.n_results() == 20
        assert list(a.events()) == list(b.events())
        assert [(r["id"], r["score"]) for r in a.ranked()] == [(r["id"], r["score"]) for r in b.ranked()]


@pytest.mark.slow
def test_a_families_search_on_ray_killed_with_sigkill_resumes(tmp_path):
    """The acceptance run, really trained on embedded Ray: kill -9 of the driver after 3 results, then
    --resume: every candidate once, numbered in arrival order, asks and tells paired."""
    import json
    import os
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "actsearch.cli", "search", "--space", "families", "--strategy", "evolution",
           "--tasks", "mnist1d-mlp", "--seeds", "2", "--steps", "60", "--batch", "2", "--budget", "10",
           "--rungs", "flat", "--validate-top", "0", "--run-dir", str(run), "--json"]
    env = dict(os.environ, ACTSEARCH_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_results(run / "results.db", 3, proc, timeout_s=600)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
    proc.wait()
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["evaluated"] == 10
    with ResultStore(run, mode="read") as store:
        assert store.n_results() == 10
        assert [r[0] for r in store.history()] == list(range(1, 11))
        kinds = [k for k, _, _ in store.events()]
        assert kinds.count("ask") == kinds.count("tell")
        assert all(r["report"]["tasks"]["mnist1d-mlp"].get("params") for r in store.ranked()
                   if r["rejected"] is None and r["params"])   # trained values kept for every family
