"""Layer tasks (issue 17): population-batched normalization-activation layers (actsearch.pop_layers), the
three layer tasks, their baselines, and `actsearch eval LAYER` / `actsearch baselines`.

The central claims: a layer slot's batch, group, instance and layer moments are per member, so a member
trained in a population equals it trained alone, and nothing one member does reaches another."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.evaluation import BaselineCache, baseline_table, evaluate
from actsearch.formula import parse_formula
from actsearch.layers import create_layer
from actsearch.pop_layers import (BUILTIN_LAYERS, EVONORM_B0, EVONORM_S0, LayerSettings, PopNormAct, make_layer)
from actsearch.population import Member, PopulationContext, make_activation
from actsearch.tasks import LAYER_TASKS, TASKS, get_task, resolve_tasks
from actsearch.training import _accuracy_and_loss, train_population

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
runner = CliRunner()

B0 = make_layer("evonorm-b0")
S0 = make_layer("evonorm-s0")
BN_RELU, GN_RELU, BN_SILU = make_layer("bn-relu"), make_layer("gn-relu"), make_layer("bn-silu")
# a candidate with layer moments (over each member's own channels) and a learnable parameter
LAYER_CAND = make_layer(parse_formula("(x - layer_mean(x))/layer_std(x)*sigmoid(v*x)", params={"v": 1.0}))
SETTINGS = LayerSettings(groups=2, compiled=False)


def members_mix():
    """B0 and S0 members mixed with one another and with the other layers, runs of several sizes."""
    return [Member(BN_RELU, 0), Member(B0, 0), Member(B0, 1), Member(S0, 2), Member(GN_RELU, 1),
            Member(LAYER_CAND, 0), Member(S0, 0), Member(BN_SILU, 3)]


def slot(members, channels=4, settings=SETTINGS):
    return PopNormAct(PopulationContext(members), channels, settings)


def alone_layer(layer, channels=4, settings=SETTINGS):
    """The same layer as an ordinary single-network module (LayerModule, or torch's BN/GN + act)."""
    if layer.candidate is not None:
        return create_layer(layer.candidate, channels, groups=settings.groups, eps=settings.eps,
                            momentum=settings.momentum, compiled=False)
    norm = (nn.BatchNorm1d(channels, eps=settings.eps, momentum=settings.momentum) if layer.norm == "batch"
            else nn.GroupNorm(settings.groups, channels, eps=settings.eps))
    return nn.Sequential(norm, nn.ReLU() if layer.act == "relu" else nn.SiLU())


def randomize(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)


# ------------------------------------------------------------------------------------ the layer slot

def test_slot_applies_each_members_layer_to_its_slice_train_and_eval():
    """Member k's slice of the slot's output, input gradient and running statistics equal member k's layer
    applied alone to x[k] (one LayerModule, or BatchNorm1d/GroupNorm + act), through two training steps
    and then in eval mode, where batch moments are the running averages."""
    members = members_mix()
    pop = slot(members)
    alone = [alone_layer(m.activation) for m in members]
    gen = torch.Generator().manual_seed(0)
    for mode in ["train", "train", "eval"]:
        pop.train(mode == "train")
        x = (torch.randn(len(members), 6, 4, 5, generator=gen) * 2 + 0.5).requires_grad_()
        g = torch.randn(x.shape, generator=gen)
        y = pop(x)
        y.backward(g)
        for k, (m, layer) in enumerate(zip(members, alone)):
            layer.train(mode == "train")
            xk = x.detach()[k].clone().requires_grad_()
            yk = layer(xk)
            yk.backward(g[k])
            torch.testing.assert_close(y[k].detach(), yk.detach(), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(x.grad[k], xk.grad, rtol=1e-5, atol=1e-5)
    # running averages: the run's (m*C,) buffers are the members' (C,) buffers end to end
    for (layer, a, b), unit in zip(pop.runs, pop.units):
        for name, buf in unit.named_buffers():
            for j, k in enumerate(range(a, b)):
                ref = dict(alone[k].named_buffers())
                ref = ref.get(name, ref.get("0." + name))
                torch.testing.assert_close(buf.view(b - a, -1)[j], ref, rtol=1e-6, atol=1e-7)
                assert not torch.equal(ref, torch.ones_like(ref)) and not torch.equal(ref, torch.zeros_like(ref))


def test_nothing_one_member_does_reaches_another():
    """Perturbing member j's input (scaled and shifted: its batch, group and layer moments all change) or
    its parameters changes member j's output and no other's, bit for bit, in train mode."""
    members = members_mix()
    pop = slot(members)
    randomize(pop, 1)
    x = torch.randn(len(members), 6, 4, 5)
    y0 = pop(x).detach()
    for j in range(len(members)):
        x2 = x.clone()
        x2[j] = x2[j] * 3 + 1
        y = pop(x2).detach()
        assert not torch.allclose(y[j], y0[j])
        others = [k for k in range(len(members)) if k != j]
        assert torch.equal(y[others], y0[others])
    # a member's parameters: member 2 is the second of B0's run (channels 4..7 of that unit's vectors)
    (unit,) = [u for (layer, a, b), u in zip(pop.runs, pop.units) if layer.key == B0.key]
    with torch.no_grad():
        unit.weight[4:] += 1.0
        unit.v[4:] *= 0.5
    y = pop(x).detach()
    assert not torch.allclose(y[2], y0[2])
    assert torch.equal(y[[0, 1, 3, 4, 5, 6, 7]], y0[[0, 1, 3, 4, 5, 6, 7]])


def test_keep_drops_members_and_the_survivors_continue_exactly():
    members = members_mix()
    pop = slot(members)
    randomize(pop, 2)
    x = torch.randn(len(members), 6, 4, 5)
    pop(x)  # running statistics move away from their initial values
    pop.eval()
    before = pop(x).detach()
    params = {id(p) for p in pop.parameters()}
    keep = torch.tensor([0, 2, 3, 5, 7])  # the first B0 member, GN-ReLU and the second S0 member dropped
    moved = pop.keep(keep)
    assert [(layer.key, a, b) for layer, a, b in pop.runs] == [
        ("bn-relu", 0, 1), ("evonorm-b0", 1, 2), ("evonorm-s0", 2, 3), (LAYER_CAND.key, 3, 4), ("bn-silu", 4, 5)]
    assert all(id(old) in params and new.shape == (len(rows),) for old, new, rows in moved)
    torch.testing.assert_close(pop(x[keep]).detach(), before[keep], rtol=0, atol=0)


def test_layer_settings_reach_every_unit():
    pop = slot(members_mix(), channels=8, settings=LayerSettings(groups=4, eps=1e-3, momentum=0.25))
    for unit in pop.units:
        assert unit.groups == 4 and unit.eps == 1e-3 and unit.momentum == 0.25
    with pytest.raises(ValueError, match="divisible|split"):
        slot([Member(S0, 0)], channels=6, settings=LayerSettings(groups=4))
    with pytest.raises(ValueError, match="needs layers"):
        slot([Member(make_activation("relu"), 0)])


def test_make_layer():
    assert set(BUILTIN_LAYERS) == {"bn-relu", "gn-relu", "bn-silu", "evonorm-b0", "evonorm-s0"}
    assert B0.candidate.formula == parse_formula(EVONORM_B0, params={"v": 1.0}).formula and B0.params == (("v", 1.0),)
    assert S0.candidate.id == parse_formula(EVONORM_S0, params={"v": 1.0}).id
    with pytest.raises(ValueError, match="unknown built-in layer 'relu'"):
        make_layer("relu")
    with pytest.raises(ValueError, match="scalar activation"):
        make_layer(parse_formula("x*sigmoid(x)"))
    with pytest.raises(ValueError, match="cannot be trained as a layer.*clashes"):
        make_layer(parse_formula("x*sigmoid(weight*x)/group_std(x)", params={"weight": 1.0}))
    with pytest.raises(ValueError, match="normalization-activation layer"):
        make_activation(parse_formula(EVONORM_S0, params={"v": 1.0}))


# ------------------------------------------------------------------------------------ the tasks

@pytest.fixture
def eager_tasks(monkeypatch):
    """The layer tasks with their kernels uncompiled (what a short run does anyway)."""
    for name in LAYER_TASKS:
        monkeypatch.setattr(TASKS[name], "settings", dataclasses.replace(TASKS[name].settings, compiled=False))


def test_layer_tasks_are_registered():
    assert len(LAYER_TASKS) == 3 and resolve_tasks(["layers"]) == [TASKS[n] for n in LAYER_TASKS]
    for name in LAYER_TASKS:
        t = get_task(name)
        assert t.kind == "layer" and t.reference == "bn-relu" and t.baselines[0] == "bn-relu"
        assert set(t.baselines) == set(BUILTIN_LAYERS)
        assert 0 < t.budget.check_step < t.budget.steps
    assert all(TASKS[n].kind == "activation" for n in ("mnist1d-mlp", "digits-cnn", "tiny-lm"))


@pytest.mark.parametrize("name", LAYER_TASKS)
def test_population_equals_members_trained_alone(name, eager_tasks):
    """B0 and S0 members mixed with the built-ins and with each other: each result equals the member trained
    alone (same seed), to float tolerance."""
    task = get_task(name)
    members = [Member(B0, 0), Member(BN_RELU, 0), Member(S0, 1), Member(B0, 1), Member(GN_RELU, 0), Member(S0, 0)]
    steps = 12
    batched = train_population(task, members, steps=steps)
    for m, r in zip(members, batched):
        alone = train_population(task, [m], steps=steps)[0]
        assert (r.activation, r.seed, r.steps, r.rejected) == (alone.activation, alone.seed, steps, None)
        assert r.accuracy == pytest.approx(alone.accuracy, abs=1e-6)
        assert r.test_loss == pytest.approx(alone.test_loss, rel=1e-4)
        assert r.train_loss == pytest.approx(alone.train_loss, rel=1e-4)
    assert len({r.train_loss for r in batched}) == len(batched)  # the members really differ
    assert all(0.0 <= r.accuracy <= 1.0 for r in batched)


def test_rejected_member_is_dropped_and_the_others_continue_exactly(eager_tasks):
    """A layer that leaves the network at chance is dropped at the check step (its slices of the slots'
    parameters, running averages and Adam state removed); the survivors' results equal theirs alone."""
    task = get_task("digits-cnn-layer")
    dead = make_layer(parse_formula("1e-30*x/batch_std(x)"))
    members = [Member(B0, 0), Member(dead, 0), Member(dead, 1), Member(S0, 0), Member(B0, 1)]
    batched = train_population(task, members, steps=16, check_step=8)
    assert [r.rejected is not None for r in batched] == [False, True, True, False, False]
    assert all(r.steps == 8 and "accuracy" in r.rejected for r in batched[1:3])
    for m, r in zip(members, batched):
        if r.rejected is None:
            alone = train_population(task, [m], steps=16, check_step=8)[0]
            assert r.accuracy == pytest.approx(alone.accuracy, abs=1e-6)
            assert r.train_loss == pytest.approx(alone.train_loss, rel=1e-4)


def test_model_keep_slices_a_shrunken_runs_adam_state(eager_tasks):
    """Dropping one member of a run (B0 seeds 0 and 1 -> seed 0) mid-training: the run's module is rebuilt
    with the survivor's channels, and its Adam state is sliced the same way, so the survivors train on as
    in the model that never dropped anyone."""
    task = get_task("mnist1d-resnet-layer")
    d = task.data()
    members = [Member(B0, 0), Member(B0, 1), Member(S0, 0), Member(BN_RELU, 0)]
    models = [task.build(members) for _ in range(2)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2, foreach=True) for m in models]
    keep = torch.tensor([0, 2, 3])
    for step in range(6):
        if step == 3:
            models[1].keep(keep, opts[1])
        for model, opt in zip(models, opts):
            K = len(model.members)
            xb, yb = d.x_train[step * 32:(step + 1) * 32], d.y_train[step * 32:(step + 1) * 32]
            loss = torch.nn.functional.cross_entropy(model(xb.expand(K, 32, 40)).flatten(0, 1), yb.repeat(K),
                                                     reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert [m.activation.key for m in models[1].members] == ["evonorm-b0", "evonorm-s0", "bn-relu"]
    for model in models:
        model.eval()
    with torch.no_grad():
        full, kept = models[0](d.x_test[:50].expand(4, 50, 40)), models[1](d.x_test[:50].expand(3, 50, 40))
    torch.testing.assert_close(kept, full[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LAYER_TASKS)
def test_each_layer_task_trains(name, eager_tasks):
    task = get_task(name)
    rs = train_population(task, [Member(BN_RELU, 0), Member(S0, 0)], steps=25)
    for r in rs:
        assert r.rejected is None and r.steps == 25 and r.accuracy > task.chance + 0.1, (name, r)


def test_eval_mode_uses_running_statistics(eager_tasks):
    """After training, evaluation normalizes with the running averages: each example's logits do not
    depend on the rest of its batch, and evaluating leaves the running averages as they were."""
    task = get_task("digits-cnn-layer")
    members = [Member(BN_RELU, 0), Member(B0, 0), Member(S0, 0)]
    model = task.build(members)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    d = task.data()
    for i in range(5):
        xb = d.x_train[i * 32:(i + 1) * 32].expand(3, 32, 8, 8)
        loss = model(xb).logsumexp(-1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    stats = {n: b.clone() for n, b in model.named_buffers()}
    assert stats and not any(torch.equal(b, torch.ones_like(b)) or torch.equal(b, torch.zeros_like(b))
                             for b in stats.values())
    acc, loss = _accuracy_and_loss(task, model, d.x_test[:100], d.y_test[:100])
    assert model.training and acc.shape == (3,)
    assert all(torch.equal(b, stats[n]) for n, b in model.named_buffers())
    model.eval()
    with torch.no_grad():
        full = model(d.x_test[:16].expand(3, 16, 8, 8))
        one = model(d.x_test[:1].expand(3, 1, 8, 8))
    torch.testing.assert_close(one[:, 0], full[:, 0], rtol=1e-5, atol=1e-5)
    model.train()
    with torch.no_grad():  # in train mode the batch moments make example 0 depend on the others
        assert not torch.allclose(model(d.x_test[:1].expand(3, 2, 8, 8))[:, 0], model(d.x_test[:16].expand(3, 16, 8, 8))[:, 0])


def test_kinds_do_not_mix():
    scalar = parse_formula("x*sigmoid(x)")
    layer = parse_formula(EVONORM_S0, params={"v": 1.0})
    with pytest.raises(ValueError, match="scalar activation"):
        evaluate(scalar, "digits-cnn-layer", seeds=1, cache=False)
    with pytest.raises(ValueError, match="normalization-activation layer"):
        evaluate(layer, "digits-cnn", seeds=1, cache=False)
    with pytest.raises(ValueError, match="mix kinds"):
        evaluate(layer, ["digits-cnn-layer", "digits-cnn"], seeds=1, cache=False)
    with pytest.raises(ValueError, match="unknown built-in activation 'bn-relu'"):
        evaluate(scalar, "digits-cnn", baselines=["relu", "bn-relu"], cache=False)
    with pytest.raises(ValueError, match="unknown built-in layer 'gelu'"):
        evaluate(layer, "digits-cnn-layer", baselines=["gelu"], cache=False)
    with pytest.raises(ValueError, match="layer task and 'relu' is a scalar activation"):
        train_population(get_task("digits-cnn-layer"), [Member(make_activation("relu"), 0)], steps=1)
    with pytest.raises(ValueError, match="activation task and 'EvoNorm-S0' is a normalization-activation layer"):
        train_population(get_task("digits-cnn"), [Member(S0, 0)], steps=1)


# ------------------------------------------------------------------------------------ evaluation and CLI

def test_cli_eval_layer_json(tmp_path):
    """The S0 formula on a layer task against the five layer baselines; the formula trains exactly like the
    EvoNorm-S0 baseline (the same LayerModule, seeds paired)."""
    r = runner.invoke(app, ["eval", EVONORM_S0, "-p", "v=1", "--tasks", "digits-cnn-layer", "--seeds", "2",
                            "--steps", "20", "--threads", "1", "--json"], env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["baselines"] == list(get_task("digits-cnn-layer").baselines) and d["seeds"] == [0, 1]
    t = d["tasks"]["digits-cnn-layer"]
    assert t["kind"] == "layer" and t["reference"] == "bn-relu" and t["steps"] == 20
    assert set(t["baselines"]) == set(t["vs"]) == set(BUILTIN_LAYERS)
    assert t["candidate"]["per_seed"] == pytest.approx(t["baselines"]["evonorm-s0"]["per_seed"], abs=1e-6)
    assert t["vs"]["evonorm-s0"]["diff"] == pytest.approx(0.0, abs=1e-6)
    relu = t["baselines"]["bn-relu"]["mean"]
    assert t["score"] == pytest.approx((t["candidate"]["mean"] - relu) / (relu - t["chance"]))
    assert all(0.2 < a <= 1 for s in t["baselines"].values() for a in s["per_seed"])
    assert len(list((tmp_path / "baselines").glob("digits-cnn-layer-*.json"))) == 5 * 2


@pytest.mark.parametrize("args, fragment", [
    (["x*sigmoid(x)", "--tasks", "digits-cnn-layer"], "is a scalar activation"),
    ([EVONORM_B0, "-p", "v=1", "--task", "digits-cnn"], "is a normalization-activation layer"),
    ([EVONORM_B0, "-p", "v=1", "--tasks", "layers,digits-cnn"], "mix kinds"),
    ([EVONORM_B0, "-p", "v=1", "--tasks", "layers", "--baselines", "bn-relu,relu"], "unknown built-in layer 'relu'"),
    ([EVONORM_B0, "-p", "v=1", "--tasks", "layers", "--baselines", ","], "--baselines is empty"),
])
def test_cli_eval_refuses_the_other_kind_before_training(args, fragment, tmp_path):
    r = runner.invoke(app, ["eval", *args, "--threads", "1"], env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert r.exit_code == 2, r.output
    assert fragment in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "baselines").exists()


def test_baseline_table_and_cli(tmp_path):
    r = runner.invoke(app, ["baselines", "--tasks", "mnist1d-resnet-layer", "--seeds", "2", "--steps", "10",
                            "--baselines", "gn-relu,evonorm-b0", "--threads", "1", "--json"],
                      env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    t = d["tasks"]["mnist1d-resnet-layer"]
    assert list(t["rows"]) == ["bn-relu", "gn-relu", "evonorm-b0"] and t["trained"] == 6 and t["cached"] == 0
    for row in t["rows"].values():
        assert len(row["per_seed"]) == 2 and row["ci"][0] <= row["mean"] <= row["ci"][1]
        assert row["rejected"] is None
    assert t["rows"]["bn-relu"]["vs_reference"]["diff"] == 0.0
    # the second table reads the cache: the same numbers, nothing trained
    again = baseline_table("mnist1d-resnet-layer", seeds=2, steps=10, baselines=["gn-relu", "evonorm-b0"],
                           cache=BaselineCache(tmp_path))
    t2 = again["tasks"]["mnist1d-resnet-layer"]
    assert t2["cached"] == 6 and t2["trained"] == 0
    assert {b: r["per_seed"] for b, r in t2["rows"].items()} == {b: r["per_seed"] for b, r in t["rows"].items()}
    human = runner.invoke(app, ["baselines", "--tasks", "mnist1d-resnet-layer", "--seeds", "2", "--steps", "10",
                                "--baselines", "gn-relu,evonorm-b0", "--threads", "1"],
                          env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert human.exit_code == 0 and "mnist1d-resnet-layer: test accuracy" in human.stdout
    assert "0 trained, 6 cached" in " ".join(human.stdout.split())


def test_cli_tasks_lists_kinds():
    r = runner.invoke(app, ["tasks", "--json"])
    assert r.exit_code == 0
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert {n for n, row in rows.items() if row["kind"] == "layer"} == set(LAYER_TASKS)
    assert rows["digits-cnn-layer"]["reference"] == "bn-relu" and rows["digits-cnn"]["reference"] == "relu"
