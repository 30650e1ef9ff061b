"""Population-batched training (actsearch.population / actsearch.training) and the proxy tasks.

The central claim of population.py: member k's outputs, losses and gradients depend only on its own
slice of every parameter, so a member trained inside a population equals the same member trained alone,
whatever the population around it, and dropping (rejecting) members leaves the survivors untouched.
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from actsearch.formula import parse_formula
from actsearch.population import BUILTIN_ACTIVATIONS, Member, PopActivation, make_activation
from actsearch.tasks import (DEFAULT_TASKS, TASKS, digits_data, get_task, markov_language_data, mnist1d_data,
                             resolve_tasks)
from actsearch.training import MemberResult, train_population


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is much faster (and unaffected by other processes' load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


RELU = make_activation("relu")
SILU = make_activation("silu")
SIGMOID = make_activation("sigmoid")


@pytest.fixture(scope="module")
def swish_beta():
    return make_activation(parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0}))


def core(r: MemberResult) -> MemberResult:
    """The result without its timing fields (wall_s, saved_s), which are measurements, not results."""
    return dataclasses.replace(r, wall_s=0.0, saved_s=0.0)


def assert_same_training(batched: MemberResult, alone: MemberResult):
    assert (batched.activation, batched.seed, batched.steps) == (alone.activation, alone.seed, alone.steps)
    assert batched.rejected is None and alone.rejected is None
    assert batched.accuracy == pytest.approx(alone.accuracy, abs=1e-6)
    assert batched.test_loss == pytest.approx(alone.test_loss, rel=1e-5)
    assert batched.train_loss == pytest.approx(alone.train_loss, rel=1e-5)
    assert len(batched.curve) == len(alone.curve)
    for (s1, l1), (s2, l2) in zip(batched.curve, alone.curve):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5)


# ------------------------------------------------------------------------------------- batched == alone

def test_mnist1d_mlp_population_equals_members_trained_alone(swish_beta):
    task = get_task("mnist1d-mlp")
    members = [Member(RELU, 0), Member(RELU, 1), Member(SIGMOID, 0), Member(swish_beta, 0), Member(swish_beta, 1)]
    batched = train_population(task, members, steps=40)
    assert len(batched) == len(members)
    for m, r in zip(members, batched):
        assert_same_training(r, train_population(task, [m], steps=40)[0])
    # the members really differ (an equivalence between identical networks would prove nothing)
    assert len({r.train_loss for r in batched}) == len(batched)


@pytest.mark.parametrize("name, steps", [("digits-cnn", 30), ("tiny-lm", 15)])
def test_conv_and_transformer_populations_equal_members_trained_alone(name, steps, swish_beta):
    """digits-cnn covers the grouped convolution, tiny-lm embeddings, layer norm and batched attention."""
    task = get_task(name)
    members = [Member(RELU, 0), Member(swish_beta, 1), Member(SILU, 0)]
    batched = train_population(task, members, steps=steps)
    for m, r in zip(members, batched):
        assert_same_training(r, train_population(task, [m], steps=steps)[0])
    assert len({r.train_loss for r in batched}) == len(batched)


def test_results_come_back_in_the_given_order():
    task = get_task("mnist1d-mlp")
    members = [Member(RELU, 0), Member(SILU, 0), Member(RELU, 1)]  # relu is split by silu: training regroups
    results = train_population(task, members, steps=20)
    assert [(r.activation, r.seed) for r in results] == [("relu", 0), ("silu", 0), ("relu", 1)]
    # and each result is that member's, not just labelled so
    assert core(results[1]) == core(train_population(task, [Member(SILU, 0)], steps=20)[0])
    assert core(results[2]) == core(train_population(task, [Member(RELU, 1)], steps=20)[0])


def test_same_call_twice_is_identical(swish_beta):
    task = get_task("mnist1d-mlp")
    members = [Member(RELU, 0), Member(swish_beta, 1), Member(SIGMOID, 2)]
    first = train_population(task, members, steps=30)
    second = train_population(task, members, steps=30)
    assert [core(r) for r in first] == [core(r) for r in second]
    assert all(r.steps == 30 and r.rejected is None and r.wall_s > 0 for r in first)


def test_a_member_is_the_same_in_any_population_and_seeds_matter():
    task = get_task("mnist1d-mlp")
    a = train_population(task, [Member(RELU, 0), Member(make_activation("gelu"), 1)], steps=30)
    b = train_population(task, [Member(make_activation("tanh"), 2), Member(RELU, 1), Member(RELU, 0)], steps=30)
    assert core(a[0]) == core(b[2])
    # a different seed means different initial weights and data order
    assert b[1].train_loss != b[2].train_loss and b[1].curve != b[2].curve
    assert (b[1].accuracy, b[1].test_loss) != (b[2].accuracy, b[2].test_loss)


# ------------------------------------------------------------------------------------- rejection

def test_rejected_members_stop_and_the_others_are_untouched():
    task = get_task("digits-cnn")
    check = task.budget.check_step
    steps = check + 5
    blowup = make_activation(parse_formula("exp(exp(x))"))  # screening would refuse both; training must too
    constant = make_activation(parse_formula("0*x+1"))
    members = [Member(RELU, 0), Member(blowup, 0), Member(SILU, 1), Member(constant, 0), Member(RELU, 1)]
    results = train_population(task, members, steps=steps)

    nan_r, const_r = results[1], results[3]
    assert nan_r.activation == blowup.key and "non-finite" in nan_r.rejected
    assert 1 <= nan_r.steps <= 5
    assert const_r.activation == constant.key and "chance" in const_r.rejected
    assert const_r.steps == check and f"after {check} steps" in const_r.rejected
    for r in (nan_r, const_r):
        assert r.accuracy == task.chance
        assert math.isnan(r.test_loss) and math.isnan(r.train_loss)
        assert r.saved_s > 0 and r.wall_s >= 0

    survivors = [results[0], results[2], results[4]]
    assert all(r.rejected is None and r.steps == steps and r.accuracy > 0.5 for r in survivors)
    # keep() sliced weights and Adam state: the survivors continue exactly as without the rejected ones
    alone = train_population(task, [members[0], members[2], members[4]], steps=steps)
    assert [core(r) for r in survivors] == [core(r) for r in alone]


def test_chance_check_only_runs_when_the_run_is_longer_than_the_check_step():
    task = get_task("digits-cnn")
    constant = make_activation(parse_formula("0*x+1"))
    r = train_population(task, [Member(constant, 0)], steps=task.budget.check_step)[0]
    assert r.rejected is None and r.steps == task.budget.check_step
    assert r.accuracy < task.chance_threshold  # it is at chance, but was never checked
    # an explicit check step earlier than the run rejects it there
    r = train_population(task, [Member(constant, 0)], steps=20, check_step=10)[0]
    assert r.steps == 10 and "chance" in r.rejected


def test_all_members_rejected():
    task = get_task("mnist1d-mlp")
    blowup = make_activation(parse_formula("exp(exp(x))"))
    results = train_population(task, [Member(blowup, 0), Member(blowup, 1)], steps=10)
    assert [r.seed for r in results] == [0, 1]
    assert all("non-finite" in r.rejected and r.steps < 10 and r.accuracy == task.chance for r in results)


# ------------------------------------------------------------------------------------- PopulationModel.keep

def test_keep_slices_members_activation_parameters_and_adam_state(swish_beta):
    task = get_task("mnist1d-mlp")
    members = [Member(RELU, 0), Member(swish_beta, 0), Member(swish_beta, 1)]
    model = task.build(members)
    acts = [m for m in model.modules() if isinstance(m, PopActivation)]
    assert acts and all(len(a.runs) == 2 for a in acts)
    with torch.no_grad():  # distinct per-member beta, so slicing the wrong row would show
        for a in acts:
            a.run_params[1][0].copy_(torch.tensor([0.5, 2.0]))
    x = torch.randn(3, 7, 40, generator=torch.Generator().manual_seed(0))

    # one optimizer step so Adam has per-parameter state to slice
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(x).square().mean().backward()
    opt.step()
    old_params = {name: p.detach().clone() for name, p in model.named_parameters()}
    old_state = {name: {k: v.clone() for k, v in opt.state[p].items()} for name, p in model.named_parameters()}
    betas = [a.run_params[1][0].detach().clone() for a in acts]
    with torch.no_grad():
        before = model(x)

    model.keep(torch.tensor([0, 2]), opt)
    assert model.members == [members[0], members[2]] and model.ctx.K == 2
    for a, beta in zip(acts, betas):  # member 2 is row 1 of the beta run
        assert [(act.key, lo, hi) for act, lo, hi in a.runs] == [("relu", 0, 1), (members[1].activation.key, 1, 2)]
        assert a.run_params[1][0].tolist() == [float(beta[1])] and abs(float(beta[1]) - 2.0) < 0.01
    with torch.no_grad():
        after = model(x[[0, 2]])
    torch.testing.assert_close(after, before[[0, 2]], rtol=1e-6, atol=1e-6)

    params = dict(model.named_parameters())
    assert list(opt.param_groups[0]["params"]) == list(model.parameters())
    for name, p in params.items():
        assert p.shape[0] in (1, 2)  # the member axis (a run of one beta has length 1)
        state = opt.state[p]
        assert state["exp_avg"].shape == p.shape and state["exp_avg_sq"].shape == p.shape
        if p.shape[0] == 2:  # weights: rows 0 and 2 of the old tensors
            torch.testing.assert_close(p.detach(), old_params[name][[0, 2]], rtol=0, atol=0)
            torch.testing.assert_close(state["exp_avg"], old_state[name]["exp_avg"][[0, 2]], rtol=0, atol=0)
        assert int(state["step"]) == 1

    # dropping a whole activation run works too
    model.keep(torch.tensor([1]), opt)
    assert model.members == [members[2]] and all(len(a.runs) == 1 for a in acts)
    with torch.no_grad():
        torch.testing.assert_close(model(x[[2]]), before[[2]], rtol=1e-6, atol=1e-6)


def test_keep_on_conv_and_transformer_models():
    for name, x in [("digits-cnn", torch.randn(3, 5, 8, 8)), ("tiny-lm-glu", torch.randint(32, (3, 5, 23)))]:
        task = get_task(name)
        model = task.build([Member(RELU, 0), Member(SILU, 1), Member(RELU, 2)])
        with torch.no_grad():
            before = model(x)
            model.keep(torch.tensor([0, 2]))
            torch.testing.assert_close(model(x[[0, 2]]), before[[0, 2]], rtol=1e-5, atol=1e-6)


def test_same_seed_gives_same_initial_weights_whatever_the_population():
    task = get_task("tiny-lm")
    a = task.build([Member(RELU, 3)])
    b = task.build([Member(SILU, 5), Member(RELU, 3)])
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        torch.testing.assert_close(pa[0], pb[1], rtol=0, atol=0)
    assert not torch.equal(b.tok.weight[0], b.tok.weight[1])


# ------------------------------------------------------------------------------------- errors

def test_unknown_builtin_activation_lists_the_known_names():
    with pytest.raises(ValueError) as exc:
        make_activation("nope")
    assert "'nope'" in str(exc.value)
    assert all(name in str(exc.value) for name in BUILTIN_ACTIVATIONS)


@pytest.mark.parametrize("formula", ["x - layer_mean(x)", "x / batch_std(x)"])
def test_moment_candidates_are_refused(formula):
    c = parse_formula(formula)
    assert c.is_tensor_op
    with pytest.raises(ValueError, match="normalization"):
        make_activation(c)


def test_negative_steps_raise():
    with pytest.raises(ValueError, match="steps must be positive"):
        train_population(get_task("digits-cnn"), [Member(RELU, 0)], steps=-3)


def test_zero_steps_raise():
    with pytest.raises(ValueError, match="steps must be positive"):
        train_population(get_task("digits-cnn"), [Member(RELU, 0)], steps=0)


def test_no_members_is_no_work():
    assert train_population(get_task("tiny-lm"), [], steps=5) == []


# ------------------------------------------------------------------------------------- tasks

FRESH = {  # the uncached generator behind each task's data()
    "mnist1d-mlp": "mnist1d", "mnist1d-cnn": "mnist1d", "digits-cnn": "digits", "tiny-lm": "markov",
    "tiny-lm-glu": "markov", "mnist1d-mlp-deep": "mnist1d",
    "mnist1d-resnet-layer": "mnist1d", "digits-mobilenet-layer": "digits", "digits-cnn-layer": "digits",
}
SHAPES = {  # x_train, x_test shapes
    "mnist1d-mlp": ((4000, 40), (1000, 40)),
    "mnist1d-cnn": ((4000, 40), (1000, 40)),
    "digits-cnn": ((1258, 8, 8), (539, 8, 8)),
    "tiny-lm": ((4096, 23), (512, 23)),
    "tiny-lm-glu": ((4096, 23), (512, 23)),
    "mnist1d-mlp-deep": ((4000, 40), (1000, 40)),
    "mnist1d-resnet-layer": ((4000, 40), (1000, 40)),
    "digits-mobilenet-layer": ((1258, 8, 8), (539, 8, 8)),
    "digits-cnn-layer": ((1258, 8, 8), (539, 8, 8)),
}


def test_fresh_covers_every_task():
    assert set(FRESH) == set(TASKS) == set(SHAPES)


@pytest.fixture(scope="module")
def fresh_data():
    """Each data generator run once more, bypassing its lru_cache (mnist1d's takes a second or two)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    fresh = {"mnist1d": mnist1d_data.__wrapped__(), "digits": digits_data.__wrapped__(),
             "markov": markov_language_data.__wrapped__(vocab=32)}
    # mnist1d's make_dataset seeds numpy's and random's global generators: they must be restored
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    return {name: fresh[kind] for name, kind in FRESH.items()}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_data_is_deterministic_and_shaped_for_its_model(name, fresh_data):
    task = TASKS[name]
    d = task.data()
    assert task.data() is d  # cached
    fresh = fresh_data[name]
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(d, field), getattr(fresh, field)), field
    xtr, xte = SHAPES[name]
    assert tuple(d.x_train.shape) == xtr and tuple(d.x_test.shape) == xte
    lm = name.startswith("tiny-lm")  # one target per position, else one per example
    assert tuple(d.y_train.shape) == (xtr if lm else xtr[:1]) and tuple(d.y_test.shape) == (xte if lm else xte[:1])
    assert d.y_train.dtype == torch.long
    valid = d.y_train[d.y_train != task.ignore_index]
    assert int(valid.min()) == 0 and int(valid.max()) == task.n_classes - 1
    assert task.chance == pytest.approx(1 / task.n_classes) and task.chance < task.chance_threshold < 1

    units = (RELU, SILU) if task.kind == "activation" else (task.make_unit("bn-relu"), task.make_unit("evonorm-s0"))
    model = task.build([Member(units[0], 0), Member(units[1], 1)])
    out = model(d.x_train[:6].expand(2, *d.x_train[:6].shape))
    assert tuple(out.shape) == ((2, 6, 23, task.n_classes) if lm else (2, 6, task.n_classes))
    assert torch.isfinite(out).all()


def test_digits_split_is_standardised_and_disjoint():
    d = digits_data()
    assert len(d.y_train) + len(d.y_test) == 1797
    assert float(d.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(d.x_train.std()) == pytest.approx(1.0, abs=1e-5)
    train_rows = {tuple(r.tolist()) for r in d.x_train.flatten(1)}
    dupes = sum(tuple(r.tolist()) in train_rows for r in d.x_test.flatten(1))
    assert dupes < 5  # the bundled set has almost no duplicate images: the split does not leak


def test_markov_language_follows_its_table():
    d = markov_language_data(vocab=32)
    x, y = d.x_train, d.y_train
    assert bool((y[:, 0] == -100).all())  # one token of context is not enough to score
    assert torch.equal(x[:, 2:], y[:, 1:-1])  # targets are the inputs shifted by one
    assert bool((d.y_test[:, 0] == -100).all()) and bool((d.y_test[:, 1:] >= 0).all())
    # best predictor from the two previous tokens, estimated on the training set
    prev2, prev1, nxt = x[:, :-1].reshape(-1), x[:, 1:].reshape(-1), y[:, 1:].reshape(-1)
    counts = Counter(zip((prev2 * 32 + prev1).tolist(), nxt.tolist()))
    best = {}
    for (pair, tok), c in counts.items():
        if c > best.get(pair, (None, -1))[1]:
            best[pair] = (tok, c)
    hits = sum(c for _, c in best.values())
    frac = hits / len(nxt)
    assert 0.75 < frac < 0.86, frac  # 1 - noise + noise/vocab = 0.806
    # the test set follows the same table
    tp2, tp1, tn = d.x_test[:, :-1].reshape(-1), d.x_test[:, 1:].reshape(-1), d.y_test[:, 1:].reshape(-1)
    pred = torch.tensor([best.get(p, (-1, 0))[0] for p in (tp2 * 32 + tp1).tolist()])
    assert 0.75 < float((pred == tn).double().mean()) < 0.86


def test_get_task_and_resolve_tasks():
    assert get_task("digits-cnn") is TASKS["digits-cnn"]
    with pytest.raises(ValueError) as exc:
        get_task("bogus")
    msg = str(exc.value)
    assert "'bogus'" in msg and all(name in msg for name in TASKS)
    assert [t.name for t in resolve_tasks(["all"])] == list(DEFAULT_TASKS)
    assert len(DEFAULT_TASKS) == 4
    assert [t.name for t in resolve_tasks(None)] == ["mnist1d-mlp"]
    assert [t.name for t in resolve_tasks(["tiny-lm", "all", "tiny-lm-glu"])] == [
        "tiny-lm", "mnist1d-mlp", "mnist1d-cnn", "digits-cnn", "tiny-lm-glu"]
    with pytest.raises(ValueError, match="valid tasks"):
        resolve_tasks(["all", "bogus"])
