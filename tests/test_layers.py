"""Normalization-activation layers (actsearch/layers.py): EvoNorm-B0/S0 written as formulas against timm's
modules, gradients, running statistics, state_dict; and the compiled moment-op crash of ActivationModule."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from actsearch.formula import parse_formula
from actsearch.kernels import fused as fused_module
from actsearch.kernels.fused import ActivationModule
from actsearch.layers import LayerModule, create_layer
from actsearch.numeric import evaluate
from timm_reference import evo_norm_module

S0 = "x*sigmoid(v*x)/group_std(x)"
B0 = "x/max(batch_std(x), v*x + instance_std(x))"
C = 16


def evo_pair(kind: str, compiled: bool):
    """(timm module, our layer) with the same random parameters, loaded through timm's state_dict."""
    evo = evo_norm_module()
    if kind == "S0":  # timm: groups=32 or group_size; eps 1e-5 inside group_std
        ref = evo.EvoNorm2dS0(C, groups=8)
        ours = create_layer(S0, C, params={"v": 1.0}, groups=8, compiled=compiled)
    else:  # timm: eps=1e-3 for the batch and the instance std, momentum 0.1, running_var (unbiased)
        ref = evo.EvoNorm2dB0(C)
        ours = create_layer(B0, C, params={"v": 1.0}, eps=1e-3, momentum=0.1, compiled=compiled)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    assert ours.load_state_dict(ref.state_dict())  # same names: v, weight, bias (, running_var)
    return ref, ours


def run(module, x, g):
    module.zero_grad()
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(g)
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in module.named_parameters()}


def assert_same(a, b, tol=2e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("kind", ["S0", "B0"])
def test_evonorm_formulas_match_timm_outputs_and_gradients(kind, compiled):
    ref, ours = evo_pair(kind, compiled)
    gen = torch.Generator().manual_seed(2)
    for mode in ["train"] * 3 + ["eval"] * 2:  # eval after train steps: B0's running_var matters
        ref.train(mode == "train")
        ours.train(mode == "train")
        x = torch.randn(4, C, 5, 6, generator=gen) * 2 + 0.3
        g = torch.randn(x.shape, generator=gen)
        (y1, gx1, gp1), (y2, gx2, gp2) = run(ref, x, g), run(ours, x, g)
        assert_same(y2, y1)
        assert_same(gx2, gx1)
        assert gp1.keys() == gp2.keys()
        for name in gp1:
            assert_same(gp2[name], gp1[name])
    if kind == "B0":
        torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(ours.running_var, torch.ones(C))
    if compiled:
        kernel = ours.kernel()
        assert kernel.compile_error is None and {"forward", "backward"} <= set(kernel.compile_seconds)


def params_as_inputs(layer):
    names = [n for n, _ in layer.named_parameters()]
    values = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]
    return values, lambda x, *ps: torch.func.functional_call(layer, dict(zip(names, ps)), (x,))


@pytest.mark.parametrize("formula", [S0, B0, "x/instance_std(x*sigmoid(x)) + v*layer_mean(x)",
                                     "(x - batch_mean(x))/batch_std(x)*tanh(v*x)"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_gradcheck_float64_input_and_parameters(formula, train):
    layer = create_layer(formula, 4, params={"v": 0.75}, groups=2, compiled=False).double().train(train)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.rand(p.shape, dtype=torch.float64))
    x = torch.randn(3, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    values, fn = params_as_inputs(layer)
    assert torch.autograd.gradcheck(fn, (x, *values))


@pytest.mark.parametrize("formula", [S0, B0, "x/instance_std(x*sigmoid(x)) + layer_mean(x)",
                                     "x*sigmoid(v*x)/group_std(x - group_mean(v*x))", "tanh(x)*batch_var(x**2)",
                                     "log(x)/layer_std(v*x)", "x - batch_mean(x) + instance_mean(x)"])
def test_layer_equals_the_formula_evaluated_numerically(formula):
    """Train mode, scalar initial parameters, no affine, groups 4, eps 1e-5: the numeric evaluator's
    semantics of moments (actsearch.numeric), nested moments included."""
    c = parse_formula(formula, params={"v": 0.75} if "v" in formula else None)
    layer = create_layer(c, 8, groups=4, affine=False, compiled=False).double()
    x = torch.randn(3, 8, 2, 3, dtype=torch.float64)
    expect = evaluate(c.safe_expr, x.numpy(), c.params)
    np.testing.assert_allclose(layer(x).detach().numpy(), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, C, 5, 5), (6, C, 7), (6, C)], ids=["2d", "1d", "features"])
def test_batch_moments_give_batchnorm(shape):
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(C, eps=1e-5, momentum=0.1)
    layer = create_layer("(x - batch_mean(x))/batch_std(x)", C, eps=1e-5, momentum=0.1, compiled=False)
    assert set(layer.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    gen = torch.Generator().manual_seed(3)
    for mode in ["train", "train", "eval"]:
        bn.train(mode == "train")
        layer.train(mode == "train")
        x = torch.randn(shape, generator=gen) * 3 + 1
        g = torch.randn(shape, generator=gen)
        (y1, gx1, gp1), (y2, gx2, gp2) = run(bn, x, g), run(layer, x, g)
        assert_same(y2, y1)
        assert_same(gx2, gx1)
        for name in gp1:
            assert_same(gp2[name], gp1[name])
        assert_same(layer.running_mean, bn.running_mean, 1e-6)
        assert_same(layer.running_var, bn.running_var, 1e-6)


def test_running_statistics_update_in_train_only():
    layer = create_layer(B0, C, params={"v": 1.0}, eps=1e-3, momentum=0.25, compiled=False)
    assert dict(layer.named_buffers()).keys() == {"running_var"}
    x = torch.randn(4, C, 3, 3) * 2
    n = x.numel() / C
    layer(x)
    expect = 0.75 * torch.ones(C) + x.var(dim=(0, 2, 3), unbiased=False) * 0.25 * (n / (n - 1))
    torch.testing.assert_close(layer.running_var, expect)
    layer.eval()
    before = layer.running_var.clone()
    y = layer(x * 5)  # with grad
    y.sum().backward()
    with torch.no_grad():
        y = layer(x * 5)
    assert torch.equal(layer.running_var, before)
    # eval uses the running value: batch_std(x) is sqrt(running_var + eps)
    std = torch.sqrt(before + 1e-3).view(1, C, 1, 1)
    right = layer.v.view(1, C, 1, 1) * x * 5 + torch.sqrt(x.mul(5).var(dim=(2, 3), keepdim=True, unbiased=False) + 1e-3)
    torch.testing.assert_close(y, x * 5 / torch.maximum(std, right))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer.train()(torch.randn(1, C))


def test_running_statistics_of_an_expression():
    layer = create_layer("x/batch_std(x*sigmoid(x))", C, momentum=0.5, affine=False, compiled=False)
    x = torch.randn(4, C, 3, 3)
    u = x * torch.sigmoid(x)
    torch.testing.assert_close(layer(x), x / torch.sqrt(u.var(dim=(0, 2, 3), keepdim=True, unbiased=False) + 1e-5))
    torch.testing.assert_close(layer.running_var, 0.5 + 0.5 * u.var(dim=(0, 2, 3)))
    expect = x / torch.sqrt(layer.running_var + 1e-5).view(1, C, 1, 1)
    torch.testing.assert_close(layer.eval()(x), expect)  # the argument is not evaluated in eval mode


def test_without_running_statistics_eval_uses_the_batch():
    layer = create_layer(B0, C, params={"v": 1.0}, track_running_stats=False, compiled=False)
    assert not dict(layer.named_buffers())
    x = torch.randn(4, C, 3, 3)
    torch.testing.assert_close(layer.eval()(x), layer.train()(x))


def test_state_dict_round_trip_and_deepcopy():
    layer = create_layer(B0, C, params={"v": 1.0}, eps=1e-3, compiled=False)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.rand_like(p))
    for _ in range(2):
        layer(torch.randn(4, C, 3, 3) + 1)
    state = layer.state_dict()
    assert set(state) == {"v", "weight", "bias", "running_var"} and state["v"].shape == (C,)
    fresh = create_layer(B0, C, params={"v": 1.0}, eps=1e-3, compiled=False)
    fresh.load_state_dict(state)
    x = torch.randn(4, C, 3, 3)
    torch.testing.assert_close(fresh.eval()(x), layer.eval()(x), rtol=0, atol=0)
    clone = copy.deepcopy(layer)
    torch.testing.assert_close(clone(x), layer(x), rtol=0, atol=0)


def test_layer_settings_are_checked():
    with pytest.raises(ValueError, match="divisible by groups"):
        create_layer(S0, 12, params={"v": 1.0}, groups=8)
    layer = create_layer(S0, 12, params={"v": 1.0}, group_size=3)
    assert isinstance(layer, LayerModule) and layer.groups == 4 and "groups=4" in repr(layer)
    with pytest.raises(ValueError, match="clashes"):
        create_layer("x*sigmoid(weight*x)/group_std(x)", 8, params={"weight": 1.0}, groups=4)
    layer = create_layer(S0, 8, params={"v": 1.0}, groups=4)
    with pytest.raises(ValueError, match="expected an"):
        layer(torch.randn(2, 4, 3, 3))
    plain = create_layer("x*sigmoid(x)", 8, compiled=False)  # no moments: activation + affine
    x = torch.randn(2, 8, 3)
    torch.testing.assert_close(plain(x), x * torch.sigmoid(x))


def test_memory_saved_for_backward_is_one_input_sized_tensor():
    from actsearch.kernels.bench import _saved_bytes

    x = torch.randn(4, C, 16, 16, requires_grad=True)
    layer = create_layer(S0, C, params={"v": 1.0}, groups=8, compiled=False)
    ref = evo_norm_module().EvoNorm2dS0(C, groups=8)
    ours, theirs = (_saved_bytes(lambda m=m: m(x).sum().backward()) for m in (layer, ref))
    assert x.numel() * 4 <= ours < 1.1 * x.numel() * 4  # x, plus (N, C, 1, 1) moments and (C,) vectors
    assert theirs >= 4 * x.numel() * 4


# ---- the crash: ActivationModule of a group-moment candidate with `groups`, on the compiled path -------
def test_compiled_moment_candidate_accepts_groups(monkeypatch):
    """Regression: `ActivationModule(S0, groups=8)` raised "_SafeCompiled.__call__() got an unexpected keyword
    argument 'groups'" once an input was large enough to be compiled (>= 64K elements).  torch.compile is
    replaced by a pass-through recording its keyword arguments (the real compile: the slow test below)."""
    calls = []

    def fake_compile(fn, elementwise=False):
        def compiled(*args, **kwargs):
            calls.append(kwargs)
            return fn(*args, **kwargs)
        return compiled

    monkeypatch.setattr(fused_module, "compile_fused", fake_compile)
    monkeypatch.setattr(fused_module, "_KERNELS", {})  # no fake-compiled kernel outlives the test
    c = parse_formula(S0, params={"v": 1.0})
    x = torch.randn(4, 16, 32, 32)  # 65536 elements: the policy compiles
    y = ActivationModule(c, channels=16, groups=8)(x)
    assert calls == [{"groups": 8}]
    torch.testing.assert_close(y, ActivationModule(c, channels=16, groups=8, compiled=False)(x))
    assert not torch.allclose(y, ActivationModule(c, channels=16, groups=4, compiled=False)(x))


@pytest.mark.slow
def test_compiled_moment_candidate_accepts_groups_inductor():
    c = parse_formula(S0, params={"v": 1.0})
    x = torch.randn(4, 16, 32, 32, requires_grad=True)
    m = ActivationModule(c, channels=16, groups=8)
    y = m(x)
    assert m.kernel.compile_error is None and "forward" in m.kernel.compile_seconds
    torch.testing.assert_close(y, ActivationModule(c, channels=16, groups=8, compiled=False)(x))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
