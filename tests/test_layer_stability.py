"""EvoNorm's stability protocol (actsearch.layer_stability) and its place in a search: an unstable layer
is rejected before training, with its reason, and the search goes on."""
from __future__ import annotations

import math

import pytest
import torch

from actsearch.formula import parse_formula
from actsearch.layer_stability import RATIO_THRESHOLD, check_stability, worst_gradient_norm
from actsearch.search import SearchConfig, SearchDriver
from actsearch.search_spaces.base import SearchSpace
from actsearch.store import ResultStore
from fake_training import PlanExecutor

B0 = ("x/max(batch_std(x), v*x + instance_std(x))", {"v": 1.0})
S0 = ("x*sigmoid(v*x)/group_std(x)", {"v": 1.0})


@pytest.mark.parametrize("formula,params", [B0, S0, ("relu((x - batch_mean(x))/batch_std(x))", None),
                                            ("(x - instance_mean(x))/instance_std(x)", None)])
def test_known_layers_are_stable(formula, params):
    r = check_stability(parse_formula(formula, params=params))
    assert r.passed and r.reason is None
    assert 0 < r.at_start <= r.worst < 3 * r.reference_worst  # within a small factor of BN-ReLU's
    assert r.ratio == pytest.approx(r.worst / r.reference_worst)


@pytest.mark.parametrize("formula", ["x/instance_mean(x)", "exp(exp(x))/batch_std(x)", "x/(x - batch_mean(x))"])
def test_layers_with_exploding_gradients_are_rejected(formula):
    r = check_stability(parse_formula(formula))
    assert not r.passed and r.ratio > RATIO_THRESHOLD
    assert r.reason.startswith("unstable:") and "BN-ReLU" in r.reason


def test_the_gradient_norm_is_the_analytic_one_for_a_linear_layer():
    """f(x) = 3x + batch_mean(x): d<f, r>/dx_i = 3 r_i + mean of r over x_i's channel (batch and space);
    the norm does not depend on x, so the ascent cannot raise it."""
    shape = (4, 3, 2, 2)
    gen = torch.Generator().manual_seed(7)
    torch.randn(shape, generator=gen, dtype=torch.float64)  # x0, drawn first by worst_gradient_norm
    r = torch.randn(shape, generator=gen, dtype=torch.float64)
    r = r / r.norm()
    expect = (3 * r + r.mean(dim=(0, 2, 3), keepdim=True)).norm().item()
    start, worst = worst_gradient_norm(parse_formula("3*x + batch_mean(x)"), shape=shape, groups=1, seed=7)
    assert start == pytest.approx(expect, rel=1e-12)
    assert worst == pytest.approx(expect, rel=1e-9)


def test_the_ascent_finds_a_worse_input_than_the_start():
    r = check_stability(parse_formula(*S0))
    assert r.worst > 1.2 * r.at_start


class LayerListSpace(SearchSpace):
    """A fixed list of layer formulas (genome = index)."""
    name = "layer-list-test"
    FORMULAS = ["(x - instance_mean(x))/instance_std(x)", "x/instance_mean(x)", "x*sigmoid(x)/group_std(x)",
                "x/(x - batch_mean(x))", "relu((x - batch_mean(x))/batch_std(x))"]

    def sample(self, rng):
        return [rng.randrange(len(self.FORMULAS))]

    def formula(self, g):
        return self.FORMULAS[g[0]]

    def enumerate(self):
        return ([i] for i in range(len(self.FORMULAS)))

    def size(self):
        return len(self.FORMULAS)

    def mutate(self, g, rng):
        return [(g[0] + 1) % len(self.FORMULAS)]

    def crossover(self, a, b, rng):
        return list(b), list(a)


def test_a_search_rejects_unstable_layers_before_training(tmp_path, monkeypatch):
    import actsearch.search_spaces as spaces_mod

    monkeypatch.setitem(spaces_mod.SPACES, "layer-list-test", LayerListSpace)
    ex = PlanExecutor(quality=lambda formula: 0.0)
    cfg = SearchConfig(space="layer-list-test", strategy="exhaustive", tasks=["digits-cnn"], budget=5, seeds=2,
                       batch=5, executor="local", rungs="flat", validate_top=0)
    summary = SearchDriver(cfg, tmp_path / "run", executor=ex).run()
    assert summary["rejections"].get("unstable") == 2
    assert summary["rejection_savings"]["unstable"]["count"] == 2
    trained = {cid for cid, _, _ in ex.ledger}
    with ResultStore(tmp_path / "run", mode="read") as store:
        rows = {LayerListSpace.FORMULAS.index(c["formula"]): c for c in
                (store.candidate(parse_formula(f).id) for f in LayerListSpace.FORMULAS)}
    for i in (1, 3):  # the unstable ones: recorded with the reason, never trained
        assert not rows[i]["screening_passed"] and rows[i]["screening_reason"].startswith("unstable:")
        assert rows[i]["id"] not in trained
    for i in (0, 2, 4):
        assert rows[i]["screening_passed"] and rows[i]["id"] in trained
    assert math.isfinite(summary["rejection_savings"]["unstable"]["est_saved_s"])
