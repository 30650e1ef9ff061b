"""Population kernels (kernels/population.py): several candidates' fused ops as one compiled graph.

They must compute exactly what each candidate's own fused op computes on its rows (values, input
gradients, per-member parameter gradients), survive dropped members without a recompile, and train a
population to the same results as the unfused path up to float rounding.
"""
from __future__ import annotations

import pytest

from actsearch.kernels import torch_compat
import torch

from actsearch.formula import parse_formula
from actsearch.kernels.fused import fused_activation, get_kernel
from actsearch.kernels.population import PopulationKernel, population_activation
from actsearch.population import Member, make_activation
from actsearch.tasks import get_task
from actsearch.training import train_population

FORMULAS = [("x*sigmoid(x)", {}), ("x*sigmoid(beta*x)", {"beta": 1.3}), ("max(x, tanh(x))", {}),
            ("x*erf(softplus(x))", {}), ("x + sin(a*x)**2/a", {"a": 0.7})]


@pytest.fixture(scope="module")
def setup():
    cands = [parse_formula(f, params=p) for f, p in FORMULAS]
    kernels = [get_kernel(c) for c in cands]
    sizes = [2, 3, 1, 2, 2]
    bounds, a = [], 0
    for s in sizes:
        bounds.append((a, a + s))
        a += s
    return cands, kernels, bounds


def _params(cands, bounds, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, (a, b) in zip(cands, bounds):
        for v in c.params.values():
            out.append((v + 0.2 * torch.rand(b - a, generator=g)).to(dtype).requires_grad_())
    return out


@pytest.mark.parametrize("compiled", [False, True])
def test_population_kernel_equals_each_candidates_fused_op(setup, compiled):
    cands, kernels, bounds = setup
    pk = PopulationKernel(kernels, bounds)
    rows = bounds[-1][1]
    x = torch.randn(rows, 7, 5, requires_grad=True)
    params = _params(cands, bounds, torch.float32)
    y = population_activation(pk, x, params, compiled=compiled)
    grad = torch.randn_like(y)
    y.backward(grad)
    i = 0
    for c, k, (a, b) in zip(cands, kernels, bounds):
        xs = x.detach()[a:b].clone().requires_grad_()
        ps = [p.detach().clone().view(-1, 1, 1).requires_grad_() for p in params[i:i + len(c.params)]]
        ys = fused_activation(k, xs, *ps, compiled=False)
        ys.backward(grad[a:b])
        torch.testing.assert_close(y[a:b], ys, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x.grad[a:b], xs.grad, rtol=1e-5, atol=1e-6)
        for p, q in zip(params[i:i + len(c.params)], ps):
            torch.testing.assert_close(p.grad, q.grad.view(-1), rtol=1e-4, atol=1e-5)
        i += len(c.params)
    assert pk.compile_error is None
    if compiled and torch_compat.active("traced_graphs"):  # a static traced graph, not torch.compile
        from actsearch.kernels.inductor import PopulationGraph, TracedGraph

        graph = pk._fns[True]
        assert isinstance(graph, PopulationGraph) and graph.trace_error is None
        assert [type(g) for g in graph.graphs.values()] == [TracedGraph]


@pytest.mark.private_torch
def test_population_graph_falls_back_to_torch_compile_when_tracing_fails(setup, monkeypatch):
    from actsearch.kernels import inductor

    def broken(*a, **kw):
        raise RuntimeError("simulated trace failure")

    monkeypatch.setattr(inductor, "compile_graph", broken)
    cands, kernels, bounds = setup
    pk = PopulationKernel(kernels, bounds)
    x = torch.randn(bounds[-1][1], 6)
    params = [p.detach().view(-1, 1) for p in _params(cands, bounds, torch.float32)]
    y, d = pk.forward_with_derivative(x, *params)
    y0, d0 = pk.forward_with_derivative(x, *params, compiled=False)
    torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d, d0, rtol=1e-5, atol=1e-6)
    graph = pk._fns[True]
    assert "simulated trace failure" in graph.trace_error and pk.compile_error is None
    assert list(graph.graphs.values()) == [graph._compiled]  # torch.compile served the layout


def test_population_kernel_gradcheck_float64(setup):
    cands, kernels, bounds = setup
    pk = PopulationKernel(kernels, bounds)
    x = torch.randn(bounds[-1][1], 4, dtype=torch.float64, requires_grad=True)
    params = _params(cands, bounds, torch.float64)
    assert torch.autograd.gradcheck(lambda x, *p: population_activation(pk, x, p, compiled=False),
                                    (x, *params), eps=1e-6, atol=1e-5)


def test_moment_candidates_are_refused():
    k = get_kernel(parse_formula("x - layer_mean(x)"))
    with pytest.raises(ValueError, match="moment"):
        PopulationKernel([k], [(0, 1)])


def test_fused_training_matches_unfused_and_survives_rejections(one_thread):
    """fuse=True (one compiled graph) vs fuse=False (each candidate's own op): same training up to
    float rounding; members rejected mid-run (exp(exp(x)) at step 1, 0*x+1 at the chance check) are
    dropped without disturbing the survivors, which keep using the same compiled kernel."""
    task = get_task("digits-cnn")
    acts = [make_activation(parse_formula(f, params=p)) for f, p in
            [("x*sigmoid(x)", {}), ("exp(exp(x))", {}), ("x*sigmoid(beta*x)", {"beta": 1.0}), ("0*x + 1", {})]]
    members = [Member(make_activation("relu"), 0)] + [Member(a, s) for a in acts for s in (0, 1)]
    steps = task.budget.check_step + 10
    fused = train_population(task, members, steps=steps, fuse=True)
    plain = train_population(task, members, steps=steps, fuse=False)
    for m, f, p in zip(members, fused, plain):
        assert (f.rejected is None) == (p.rejected is None), m
        if f.rejected:
            assert f.steps == p.steps and f.accuracy == task.chance
            continue
        assert f.steps == steps
        assert f.accuracy == pytest.approx(p.accuracy, abs=0.01)
        assert f.train_loss == pytest.approx(p.train_loss, rel=2e-3)
    reasons = {m.activation.label: f.rejected for m, f in zip(members, fused)}
    assert "non-finite" in reasons["exp(exp(x))"] and "chance" in reasons["1"]
    # the survivors of the fused run match a fused run without the rejected members
    survivors = [m for m, f in zip(members, fused) if not f.rejected]
    again = train_population(task, survivors, steps=steps, fuse=True)
    for a, b in zip(again, [f for f in fused if not f.rejected]):
        assert a.accuracy == pytest.approx(b.accuracy, abs=0.01)
        assert a.train_loss == pytest.approx(b.train_loss, rel=2e-3)


@pytest.mark.parametrize("formula,params", [("mix(const(beta1), abs(x), beta2)", {"beta1": 1.0, "beta2": 0.5}),
                                            ("x + beta", {"beta": 0.3}), ("beta*beta2 + x*sigmoid(x)", {"beta": 1.0, "beta2": 2.0})])
def test_parameter_derivatives_free_of_x_broadcast(formula, params):
    """d f / d beta that depends on parameters only (not on x) must still broadcast to x's shape:
    codegen once printed torch.full_like(x, beta2), a TypeError for a tensor parameter."""
    c = parse_formula(formula, params=params)
    k = get_kernel(c)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    ps = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in c.params.values()]
    assert torch.autograd.gradcheck(lambda x, *p: fused_activation(k, x, *p, compiled=False), (x, *ps))
    pk = PopulationKernel([k], [(0, 3)])
    rows = [torch.full((3,), float(v), dtype=torch.float64, requires_grad=True) for v in c.params.values()]
    assert torch.autograd.gradcheck(lambda x, *p: population_activation(pk, x, p, compiled=False), (x, *rows))


def test_many_populations_each_compile_without_hitting_dynamos_recompile_limit():
    """Dynamo allows 8 compiles per code object; a search makes a new population kernel per batch.
    Each population has its own generated function, so the 10th population still compiles."""
    cands = [parse_formula(f) for f in ("x*sigmoid(x)", "x*tanh(x)", "max(x, sin(x))", "x*erf(x)", "x + sin(x)",
                                        "x*cos(x)", "x*atan(x)", "max(x, tanh(x))", "x*sigmoid(2*x)", "min(x, cos(x))",
                                        "x*softplus(x)")]
    kernels = [get_kernel(c) for c in cands]
    x = torch.randn(2, 64)
    for i in range(10):
        pk = PopulationKernel([kernels[i], kernels[i + 1]], [(0, 1), (1, 2)])
        population_activation(pk, x, [], compiled=True)
        assert pk.compile_error is None, (i, pk.compile_error)
