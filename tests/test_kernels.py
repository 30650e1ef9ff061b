import json
import os
import warnings

import pytest
import torch
from torch import nn

from actsearch.bench_formula import random_screened_candidates
from actsearch.catalog import load_catalog
from actsearch.formula import parse_formula
from actsearch.kernels import fused as fused_module
from actsearch.kernels import (ActivationModule, CompiledKernel, CompilePolicy, KernelCache, fused_activation,
                               generate_source, get_kernel, swap_activations)

torch.set_num_threads(2)


CATALOG = [k.candidate for k in load_catalog().values()]
RANDOM = random_screened_candidates(200, seed=7)


def _check_gradients(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, dtype=torch.float64, generator=g).requires_grad_()
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in c.params.values()]
    k = get_kernel(c)
    fn = lambda x, *p: fused_activation(k, x, *p, compiled=False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4)
    # symbolic backward == autograd through the eager forward (no finite differences involved).
    # rtol 1e-5: the backward guards denominators it cannot prove nonzero (d/du log1p(b*u) =
    # b/(1 + b*u + eps)) where torch's own backward does not; eps = 1e-6 bounds the difference.
    y = fn(x, *params)
    w = torch.randn_like(y)
    ours = torch.autograd.grad((y * w).sum(), (x, *params))
    ref_y = k.eager_forward(x, *params)
    ref = torch.autograd.grad((ref_y * w).sum(), (x, *params), allow_unused=True)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b if b is not None else torch.zeros_like(a), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("c", CATALOG, ids=[k for k in load_catalog()])
def test_gradcheck_catalog(c):
    _check_gradients(c)


@pytest.mark.parametrize("c", RANDOM, ids=[c.formula[:40] for c in RANDOM])
def test_gradcheck_random_candidates(c):
    _check_gradients(c, seed=1)


def test_forward_matches_the_numeric_evaluator_for_the_catalog():
    import numpy as np

    from actsearch.identity import PROBES
    from actsearch.numeric import evaluate

    x = torch.tensor(PROBES, dtype=torch.float64)
    for c in CATALOG:
        k = get_kernel(c)
        params = [torch.tensor(v, dtype=torch.float64) for v in c.params.values()]
        got = k.forward(x, *params, compiled=False).numpy()
        np.testing.assert_allclose(got, evaluate(c.safe_expr, PROBES, c.params), rtol=1e-9, atol=1e-12,
                                   err_msg=c.formula)


def test_one_input_sized_tensor_is_saved():
    c = parse_formula("x*tanh(softplus(x))*sigmoid(beta*x)", params={"beta": 1.0})
    m = ActivationModule(c, compiled=False)
    x = torch.randn(1000, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        m(x).sum().backward()
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1 and big[0] is x  # learnable beta: the input, nothing else input-sized
    eager_saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: eager_saved.append(t) or t, lambda t: t):
        m.kernel.eager_forward(x, m.beta).sum().backward()
    assert len([t for t in eager_saved if t.numel() == x.numel()]) >= 4


def test_per_channel_parameters_get_reduced_gradients():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    m = ActivationModule(c, channels=3, compiled=False).double()
    with torch.no_grad():
        m.beta.copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    m(x).pow(2).sum().backward()
    beta = m.beta.detach().clone().requires_grad_()
    ref = (x.detach() * torch.sigmoid(beta.view(1, 3, 1) * x.detach())).pow(2).sum()
    ref.backward()
    torch.testing.assert_close(m.beta.grad, beta.grad)
    # channel-last layout, e.g. transformer features
    m2 = ActivationModule(c, channels=5, channel_dim=-1, compiled=False)
    y = m2(torch.randn(2, 7, 5, requires_grad=True))
    y.sum().backward()
    assert m2.beta.grad.shape == (5,)


def test_frozen_parameters_skip_parameter_gradients():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    m = ActivationModule(c, learnable=False, compiled=False)
    assert not list(m.parameters())
    x = torch.randn(10, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None


def test_swap_activations_replaces_by_type():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.GELU()), nn.Tanh(),
                          nn.Linear(8, 2))
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    n = swap_activations(model, lambda old: ActivationModule(c), types=(nn.ReLU, nn.GELU))
    assert n == 2
    assert isinstance(model[1], ActivationModule) and isinstance(model[2][1], ActivationModule)
    assert isinstance(model[3], nn.Tanh)
    assert sum(p.numel() for p in model.parameters() if p.dim() == 0) == 2  # one beta per swapped layer
    model(torch.randn(3, 4)).sum().backward()


def test_compiled_matches_eager_without_recompiling_for_new_sizes(tmp_path):
    from torch._dynamo.utils import counters

    c = parse_formula("max(x, tanh(x)) + x*sigmoid(beta*x)", params={"beta": 1.25})
    k = get_kernel(c, KernelCache(tmp_path), CompilePolicy(min_numel=0))
    beta = torch.tensor(1.25, requires_grad=True)
    frames_before = None
    # Inductor may specialise the parameter-gradient reduction once (small vs large n, e.g. n <= 4096);
    # after both regimes have been seen, no new batch size may compile anything.
    for i, n in enumerate((1000, 50_000, 4096, 777, 123_457, 2**20)):
        x = torch.randn(n, requires_grad=True)
        y = fused_activation(k, x, beta, compiled=True)
        gx, gb = torch.autograd.grad(y.square().sum(), (x, beta))
        y2 = fused_activation(k, x, beta, compiled=False)
        gx2, gb2 = torch.autograd.grad(y2.square().sum(), (x, beta))
        torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gx, gx2, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gb, gb2, rtol=1e-4, atol=1e-3)
        if i == 1:
            frames_before = counters["stats"]["unique_graphs"]
    assert k.compile_error is None and set(k.compile_seconds) == {"forward", "backward"}
    assert counters["stats"]["unique_graphs"] == frames_before  # no recompiles for new batch sizes


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    c = parse_formula("x*sigmoid(x) + 0.125*x")
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))

    def broken_compile(fn, **kw):
        def run(*a):
            raise RuntimeError("simulated inductor failure")
        return run

    def broken_trace(fn, args, elementwise=True):
        raise RuntimeError("simulated trace failure")

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(fused_module, "compile_graph", broken_trace)  # the traced path fails first
    x = torch.randn(100, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = fused_activation(k, x, compiled=True)
        y.sum().backward()
    assert "simulated inductor failure" in k.compile_error
    assert any("falls back" in str(w.message) or "uncompiled" in str(w.message) for w in caught)
    torch.testing.assert_close(y, x * torch.sigmoid(x) + 0.125 * x)


def test_policy_skips_compilation_for_small_tensors_and_few_calls():
    p = CompilePolicy(min_numel=1000, min_calls=50)
    assert not p.should_compile(999)
    assert p.should_compile(1000)
    assert not p.should_compile(10**6, expected_calls=10)
    assert not CompilePolicy(enabled=False).should_compile(10**9)


def test_kernel_cache_round_trip_and_corruption(tmp_path):
    cache = KernelCache(tmp_path)
    c = parse_formula("mish(x) + sinc(x)")
    src = generate_source(c)
    cache.store(src)
    assert cache.load(c.id) == src and len(cache) == 1
    (tmp_path / "kernels" / f"{c.id}.json").write_text("{not json")
    assert cache.load(c.id) is None  # a corrupt entry is regenerated, never trusted
    assert cache.inductor_dir.exists()


def test_tensor_candidate_module_uses_autograd_through_moments():
    c = parse_formula("x*sigmoid(v*x)/group_std(x)", params={"v": 1.0})
    m = ActivationModule(c, channels=8, compiled=False).double()
    x = torch.randn(4, 8, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: m(x), (x,))
    y = m(x)
    assert y.shape == x.shape


def test_printed_powers_keep_precedence_in_denominators():
    import sympy

    from actsearch.kernels.printers import torch_code

    a, b = sympy.symbols("a b", positive=True)
    src = torch_code(a / b**2 + a / b**3 + 1 / (a * b) ** 2)
    ns = {"torch": torch, "a": torch.tensor(3.0, dtype=torch.float64), "b": torch.tensor(2.0, dtype=torch.float64)}
    assert float(eval(src, ns)) == pytest.approx(3 / 4 + 3 / 8 + 1 / 36)  # our generated code, not user text


def test_printed_constant_factors_and_terms_are_one_float():
    import math

    import sympy

    from actsearch.kernels.printers import torch_code

    x, y = sympy.symbols("x y")
    src = torch_code(sympy.sqrt(2) * x * sympy.exp(y) / (2 * sympy.sqrt(sympy.pi)))
    assert src.count("*") == 2 and repr(1 / math.sqrt(2 * math.pi)) in src  # c*x*exp(y): one constant
    src = torch_code(x + 1 + sympy.sqrt(3) - sympy.pi)
    assert src.count("+") + src.count("-") == 1 and repr(abs(1 + math.sqrt(3) - math.pi)) in src
    src = torch_code(sympy.sqrt(2) * x / sympy.sqrt(2) + 0 * y)  # folds to x: no factor of 1.0 printed
    assert src == "x"
    ns = {"torch": torch, "x": torch.tensor(0.7, dtype=torch.float64), "y": torch.tensor(-0.3, dtype=torch.float64)}
    expr = -sympy.sqrt(2) * x * sympy.exp(y) / (3 * sympy.pi) + sympy.E + sympy.sqrt(5) + y
    expect = -math.sqrt(2) * 0.7 * math.exp(-0.3) / (3 * math.pi) + math.e + math.sqrt(5) - 0.3
    assert float(eval(torch_code(expr), ns)) == pytest.approx(expect, rel=1e-15)  # our generated code


def test_bench_suite_and_saved_bytes_helpers():
    from actsearch.kernels.bench import _saved_bytes, suite_candidates

    cands = suite_candidates(6)
    assert len(cands) >= 20 and len({c.id for c in cands}) == len(cands)
    c = parse_formula("x*tanh(softplus(x))")
    k = get_kernel(c)
    x = torch.randn(4096, requires_grad=True)

    def eager():
        k.eager_forward(x).sum().backward()

    def fused():
        fused_activation(k, x, compiled=False).sum().backward()

    assert _saved_bytes(fused) == 4096 * 4          # one input-sized fp32 tensor
    assert _saved_bytes(eager) >= 2 * 4096 * 4      # x and intermediates


@pytest.mark.slow
def test_bench_kernels_quick_json():
    import json as _json

    from typer.testing import CliRunner

    from actsearch.cli import app

    r = CliRunner().invoke(app, ["bench", "kernels", "--quick", "--json"])
    assert r.exit_code == 0, r.output
    d = _json.loads(r.stdout)
    assert len(d["suite"]) >= 20 and d["median_speedup"] > 0
    assert {"formula", "eager_ms", "fused_ms", "speedup", "saved_bytes_eager", "saved_bytes_fused"} <= set(d["suite"][0])
    assert {b["name"] for b in d["builtins"]} == {"silu", "gelu", "mish"}
    assert "error" not in d["compile"]["warm_cache"]
    assert d["compile"]["median_after_first_without_params_s"] > 0 and d["compile"]["linker"]
    assert d["bound_cold_ms"] >= d["bound_ms"] * 0.8 > 0  # DRAM is not faster than cache


def test_inductor_tanh_spelling_is_accurate_and_eager_keeps_torch_tanh():
    import sympy

    from actsearch.kernels.printers import TorchCodePrinter

    x = sympy.Symbol("x", real=True)
    assert TorchCodePrinter().doprint(sympy.tanh(x)) == "torch.tanh(x)"
    from actsearch.kernels import fast_math

    src = TorchCodePrinter({"inductor": True}).doprint(sympy.tanh(x))
    assert src == "tanh(x)"  # fast_math.tanh, embedded in the generated module
    for dtype, tol in ((torch.float32, 3e-7), (torch.float64, 1e-15)):
        v = torch.cat([torch.linspace(-40, 40, 100_001, dtype=dtype), torch.tensor([0.0, 1e-30, -1e-8, 3e-4], dtype=dtype)])
        got = eval(src, {"torch": torch, "x": v, "tanh": fast_math.tanh})  # our generated code, not user text
        ref = torch.tanh(v.double())
        assert float(((got.double() - ref).abs() / ref.abs().clamp_min(1e-300)).max()) < tol
    from actsearch.primitives import softplus

    mish_src = TorchCodePrinter({"inductor": True}).doprint(sympy.tanh(softplus(x)))
    assert "log1p" not in mish_src and "expm1" not in mish_src
    for dtype, tol in ((torch.float32, 5e-7), (torch.float64, 1e-14)):
        v = torch.linspace(-80, 80, 100_001, dtype=dtype)
        got = eval(mish_src, {"torch": torch, "x": v})
        ref = torch.tanh(torch.nn.functional.softplus(v.double()))
        assert float(((got.double() - ref).abs() / ref.abs()).max()) < tol


def test_kernel_cache_ignores_older_format_entries(tmp_path):
    import json as _json

    cache = KernelCache(tmp_path)
    c = parse_formula("x*tanh(x)")
    (tmp_path / "kernels" / f"{c.id}.json").write_text(_json.dumps(
        {"torch": torch.__version__, "source": {"candidate_id": c.id, "formula": "x", "params": [], "module": "",
                                                "has_backward": True}}))
    assert cache.load(c.id) is None


def test_compiled_mish_spelling_matches_eager(tmp_path):
    c = parse_formula("mish(x)")
    k = get_kernel(c, KernelCache(tmp_path), CompilePolicy(min_numel=0))
    x = (torch.randn(100_000) * 6).requires_grad_()
    y = fused_activation(k, x, compiled=True)
    (gx,) = torch.autograd.grad(y.sum(), x)
    ref = torch.nn.functional.mish(x)
    (gref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(y, ref, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(gx, gref, rtol=2e-5, atol=2e-6)
    assert k.compile_error is None


def test_compiled_mish_derivative_does_not_cancel_where_tanh_rounds_to_one():
    # 1 - tanh(softplus(x))^2 is written 4(n + 1)/(n + 2)^2 (codegen.SechSqSoftplus): the compiled f'
    # was 2.3x less accurate than eager's (1.3e-6 vs 5.7e-7 absolute on [-30, 30]), now 1.6e-7
    c = parse_formula(f"x*tanh(softplus(1.{torch.randint(10**6, (1,)).item():06d}*x))")
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    assert "SechSqSoftplus" not in k.source.inductor_module and "4.0*(" in k.source.inductor_module
    x = torch.linspace(-30, 30, 200_001, requires_grad=True)
    (g,) = torch.autograd.grad(fused_activation(k, x, compiled=True).sum(), x)
    assert k.compile_error is None
    xd = x.detach().double().requires_grad_()
    (gd,) = torch.autograd.grad(k.eager_forward(xd).sum(), xd)
    xe = x.detach().clone().requires_grad_()
    (ge,) = torch.autograd.grad(k.eager_forward(xe).sum(), xe)
    err, eager_err = (g.double() - gd).abs().max().item(), (ge.double() - gd).abs().max().item()
    assert err < 4e-7 and err < eager_err, (err, eager_err)
    assert torch.isfinite(g).all()


PRECOMPILED_RUNNER = """
import json, sys, torch
from actsearch.formula import parse_formula
from actsearch.kernels import CompilePolicy, KernelCache, fused_activation, get_kernel
torch.manual_seed(0)
cache = KernelCache(sys.argv[1])
loaded, stored = [], []  # which functions came from disk and which were compiled and saved, in this process
read, store = cache.traced_graphs, cache.store_traced_graphs
def traced_graphs(cid, name, pattern):
    graphs = read(cid, name, pattern)
    if graphs:
        loaded.append((cid, name))
    return graphs
def store_traced_graphs(cid, name, pattern, graphs):
    stored.append((cid, name))
    return store(cid, name, pattern, graphs)
cache.traced_graphs, cache.store_traced_graphs = traced_graphs, store_traced_graphs
# a warm-up candidate first: the checked one is not the first compile of its process
warm = get_kernel(parse_formula("x*cos(x)"), cache, CompilePolicy(min_numel=0))
fused_activation(warm, torch.randn(64, requires_grad=True), compiled=True).sum().backward()
c = parse_formula("x*sigmoid(beta*x) + max(x, tanh(x))", params={"beta": 1.5})
k = get_kernel(c, cache, CompilePolicy(min_numel=0))
x = torch.randn(5000, requires_grad=True)
beta = torch.tensor(1.5, requires_grad=True)
y = fused_activation(k, x, beta, compiled=True)
gx, gb = torch.autograd.grad(y.square().sum(), (x, beta))
print(json.dumps({"y": y.sum().item(), "gx": gx.sum().item(), "gb": gb.item(), "error": k.compile_error,
                  "loaded": sorted(n for cid, n in loaded if cid == k.source.candidate_id),
                  "stored": sorted(n for cid, n in stored if cid == k.source.candidate_id)}))
"""


@pytest.mark.private_torch
def test_precompiled_functions_are_saved_and_reused_across_processes(tmp_path):
    import json as _json
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(PRECOMPILED_RUNNER)
    cache_dir = tmp_path / "cache"

    import os

    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir / "inductor"))  # cold for the first run

    def run():
        r = subprocess.run([sys.executable, str(script), str(cache_dir)], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        return _json.loads(r.stdout.strip().splitlines()[-1])

    first = run()
    artifacts = sorted(p.name.rsplit("-", 1)[0] for p in (cache_dir / "compiled").rglob("*.graphs.json"))
    # warm-up candidate (no parameters): one fused forward+derivative; measured one: forward and backward,
    # saved as traced graphs (no torch.compile AOT artifact needed)
    assert artifacts == ["backward", "forward", "forward_with_derivative"]
    assert not list((cache_dir / "compiled").rglob("*.aot"))
    second = run()
    assert first["error"] is None and second["error"] is None
    for key in ("y", "gx", "gb"):
        assert second[key] == pytest.approx(first[key], rel=1e-6)
    # the first process compiles and saves forward and backward; the second loads both and compiles nothing
    # (no Dynamo tracing: bench kernels measures what that saves, ~0.9 s per function)
    assert first["stored"] == ["backward", "forward"] and first["loaded"] == []
    assert second["loaded"] == ["backward", "forward"] and second["stored"] == []
    for p in (cache_dir / "compiled").rglob("*.graphs.json"):
        p.write_bytes(b"corrupt")
    third = run()  # corrupt artifacts are rebuilt, results unchanged
    assert third["error"] is None and third["gx"] == pytest.approx(first["gx"], rel=1e-6)
    assert third["loaded"] == [] and third["stored"] == ["backward", "forward"]


def test_parameter_free_candidates_save_the_derivative_and_compile_once(tmp_path):
    c = parse_formula("gelu(x) + sinc(x)")
    k = get_kernel(c, KernelCache(tmp_path), CompilePolicy(min_numel=0))
    x = torch.randn(3000, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fused_activation(k, x, compiled=True)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert len(saved) == 1 and saved[0] is not x and saved[0].shape == x.shape  # f'(x), one tensor
    xd = x.detach().double().requires_grad_()
    ref = torch.nn.functional.gelu(xd) + torch.where(xd == 0, 1.0, torch.sin(xd) / xd)
    (gref,) = torch.autograd.grad(ref.sum(), xd)
    torch.testing.assert_close(y.double(), ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx.double(), gref, rtol=1e-4, atol=1e-5)
    assert set(k.compile_seconds) == {"forward_with_derivative"}  # a single compiled graph
    with torch.no_grad():  # inference uses the plain forward
        torch.testing.assert_close(fused_activation(k, x, compiled=True), y.detach())


def test_a_failing_precompiled_function_falls_back(tmp_path, monkeypatch):
    c = parse_formula("x*sigmoid(x) + 0.5*cos(x)")
    cache = KernelCache(tmp_path)

    def broken(*args, **kwargs):
        def run(*a):
            raise RuntimeError("simulated failure inside a loaded artifact")
        return run

    monkeypatch.setattr(cache, "precompiled", broken)
    k = get_kernel(c, cache, CompilePolicy(min_numel=0))
    x = torch.randn(2000, requires_grad=True)
    y = fused_activation(k, x, compiled=True)
    y.sum().backward()
    ref = x.detach() * torch.sigmoid(x.detach()) + 0.5 * torch.cos(x.detach())
    torch.testing.assert_close(y.detach(), ref, rtol=1e-5, atol=1e-6)
    assert k.compile_error is None  # the plain torch.compile path took over


def _saved_storages(run):
    """data_ptrs of the storages autograd saves while `run()` builds the graph."""
    ptrs = []

    def pack(t):
        ptrs.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return out, ptrs


@pytest.mark.private_torch
def test_backward_writes_the_gradient_into_the_saved_derivative():
    k = get_kernel(parse_formula("x*sigmoid(x)"))
    x = torch.randn(1000, requires_grad=True)
    g = torch.randn(1000)
    y, ptrs = _saved_storages(lambda: fused_activation(k, x, compiled=False))
    y_before = y.detach().clone()
    y.backward(g)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, g * s * (1 + x.detach() * (1 - s)))
    assert ptrs == [x.grad.untyped_storage().data_ptr()]  # f''s buffer became x.grad: no new buffer
    torch.testing.assert_close(y.detach(), y_before)  # the output is untouched


@pytest.mark.parametrize("formula", ["exp(x)", "x**2/2", "x"])
def test_in_place_backward_never_writes_into_the_input_or_output(formula):
    # exp: f' is f (CSE returns one tensor twice); x**2/2: f' is x itself; x: f' is a constant fill
    k = get_kernel(parse_formula(formula))
    for compiled in (False, True):
        x = torch.randn(64, requires_grad=True)
        x0 = x.detach().clone()
        y = fused_activation(k, x, compiled=compiled)
        y0 = y.detach().clone()
        g = torch.randn(64)
        y.backward(g)
        torch.testing.assert_close(x.detach(), x0)
        torch.testing.assert_close(y.detach(), y0)
        xe = x0.clone().requires_grad_()
        k.eager_forward(xe).backward(g)
        torch.testing.assert_close(x.grad, xe.grad)


def test_retain_graph_backward_twice_matches_eager():
    k = get_kernel(parse_formula("x*tanh(softplus(x))"))
    x = torch.randn(500, requires_grad=True)
    xe = x.detach().clone().requires_grad_()
    g = torch.randn(500)
    y, ye = fused_activation(k, x, compiled=False), k.eager_forward(xe)
    for _ in range(3):  # f' must survive each backward while the graph is kept
        y.backward(g, retain_graph=True)
        ye.backward(g, retain_graph=True)
    torch.testing.assert_close(x.grad, xe.grad, rtol=1e-5, atol=1e-6)


def test_double_backward_raises_for_saved_derivative_and_works_with_saved_input():
    k = get_kernel(parse_formula("x*sigmoid(x)"))
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(fused_activation(k, x, compiled=False).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="no second derivative.*save='input'"):
        gx.sum().backward()
    fn = lambda x: fused_activation(k, x, compiled=False, save="input")  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x,))
    m = ActivationModule(parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0}), compiled=False).double()
    assert torch.autograd.gradgradcheck(m, (x,))  # learnable parameters: x is saved, twice differentiable
    with pytest.raises(ValueError, match="save must be one of"):
        fused_activation(k, x, save="everything")


def test_constants_are_never_cse_temporaries():
    # CSE used to bind the constant log1p(2 - tanh(2)) to a temporary; min against it then printed as
    # torch.minimum(tensor, float), a TypeError in forward_with_derivative
    c = parse_formula("min(expm1(x**2), log1p(2 - tanh(2)))")
    k = get_kernel(c)
    x = torch.linspace(-1.5, 1.5, 101, dtype=torch.float64)
    y, d = k.eager_forward_with_derivative(x)
    ref = torch.clamp_max(torch.expm1(x * x), float(torch.log1p(2 - torch.tanh(torch.tensor(2.0, dtype=torch.float64)))))
    torch.testing.assert_close(y, ref)
    _check_gradients(c)


def test_every_generated_function_runs_for_random_candidates():
    # a broader net than gradcheck's 200: each generated function of 150 other candidates executes
    for c in random_screened_candidates(150, seed=11):
        k = get_kernel(c)
        x = torch.randn(3, 7, dtype=torch.float64)
        ps = [torch.full((3, 1), float(v), dtype=torch.float64) for v in c.params.values()]
        y = k.eager_forward(x, *ps)
        y2, d = k.eager_forward_with_derivative(x, *ps)
        gx = k.eager_backward_x(x, torch.ones_like(x), *ps)
        gx2, *gps = k.eager_backward(x, torch.ones_like(x), *ps)
        assert y.shape == y2.shape == d.shape == gx.shape == gx2.shape == x.shape, c.formula
        torch.testing.assert_close(y, y2, equal_nan=True, msg=c.formula)
        torch.testing.assert_close(gx, d, equal_nan=True, msg=c.formula)
        assert [g.shape for g in gps] == [p.shape for p in ps], c.formula


@pytest.mark.parametrize("formula", ["x*tanh(softplus(x))", "x*(1 + erf(x*sqrt(2)/2))/2", "x*bessel_i1e(x)"])
def test_compiled_loop_tail_matches_eager_at_every_length(formula):
    # kernels/inductor.py compiles with a scalar tail after the 16-wide vector loop: lengths around the
    # vector width exercise tail-only, vector-only and mixed loops of the same compiled kernel
    from actsearch.kernels.inductor import INDUCTOR_OPTIONS

    assert INDUCTOR_OPTIONS == {"cpp.enable_loop_tail_vec": False}
    k = get_kernel(parse_formula(formula), policy=CompilePolicy(min_numel=0))
    for n in (1, 15, 16, 17, 31, 4099):
        x = torch.linspace(-6, 6, n, dtype=torch.float32, requires_grad=True)
        y = fused_activation(k, x, compiled=True)
        (gx,) = torch.autograd.grad(y.sum(), x)
        xe = x.detach().double().requires_grad_()
        ye = k.eager_forward(xe)
        (ge,) = torch.autograd.grad(ye.sum(), xe)
        torch.testing.assert_close(y.double(), ye, rtol=2e-6, atol=2e-6)
        torch.testing.assert_close(gx.double(), ge, rtol=2e-5, atol=2e-5)
    assert k.compile_error is None


# the fast linker, the ld shim and the scoped dtype rules: tests/test_torch_compat.py


def test_fast_linker_respects_the_users_choice(monkeypatch):
    from actsearch.kernels import inductor

    monkeypatch.setattr(inductor, "_linker_done", False)
    monkeypatch.setattr(inductor, "_linker", None)
    monkeypatch.setenv("ACTSEARCH_LINKER", "default")
    monkeypatch.delenv("COMPILER_PATH", raising=False)
    assert inductor.use_fast_linker() is None
    assert "COMPILER_PATH" not in os.environ
    monkeypatch.setattr(inductor, "_linker_done", False)
    monkeypatch.delenv("ACTSEARCH_LINKER")
    monkeypatch.setenv("COMPILER_PATH", "/somewhere/of/theirs")
    assert inductor.use_fast_linker() is None
    assert os.environ["COMPILER_PATH"] == "/somewhere/of/theirs"
    monkeypatch.setattr(inductor, "_linker_done", False)
    monkeypatch.delenv("COMPILER_PATH")
    monkeypatch.setenv("ACTSEARCH_LINKER", "no-such-linker-anywhere")
    assert inductor.use_fast_linker() is None
    assert "COMPILER_PATH" not in os.environ


def test_fast_linker_reports_the_linker_a_parent_process_chose(monkeypatch, tmp_path):
    # Ray workers inherit the COMPILER_PATH their driver set: they report its linker, not "default"
    from actsearch.kernels import inductor

    link_dir = tmp_path / inductor._link_root().name / "ld.gold"
    link_dir.mkdir(parents=True)
    (link_dir / "ld").write_text("#!/bin/sh\n")  # the shim; `linker` is what it runs
    (link_dir / "linker").symlink_to("/usr/bin/ld.gold")
    monkeypatch.setattr(inductor, "_linker_done", False)
    monkeypatch.setattr(inductor, "_linker", None)
    monkeypatch.delenv("ACTSEARCH_LINKER", raising=False)
    monkeypatch.setenv("COMPILER_PATH", str(link_dir))
    assert inductor.use_fast_linker() == "/usr/bin/ld.gold"
    assert os.environ["COMPILER_PATH"] == str(link_dir)


def test_elementwise_graphs_store_shared_values_and_compile_correctly():
    # ELEMENTWISE_OPTIONS store every value read twice (tanh-GELU: f and f' share tanh and its argument)
    # instead of re-inlining it; the kernel must still compute f and f' exactly as before.
    from actsearch.kernels.inductor import ELEMENTWISE_OPTIONS, INDUCTOR_OPTIONS

    assert ELEMENTWISE_OPTIONS["realize_reads_threshold"] == 1
    assert all(ELEMENTWISE_OPTIONS[k] == v for k, v in INDUCTOR_OPTIONS.items())
    c = parse_formula(f"x*(1 + tanh(0.79788456*(x + 0.0447{torch.randint(10**6, (1,)).item():06d}*x**3)))/2")
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    x = torch.linspace(-12, 12, 10007, requires_grad=True)
    y = fused_activation(k, x, compiled=True)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert k.compile_error is None
    xe = x.detach().double().requires_grad_()
    ye = k.eager_forward(xe)
    (ge,) = torch.autograd.grad(ye.sum(), xe)
    torch.testing.assert_close(y.double(), ye, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(g.double(), ge, rtol=2e-5, atol=2e-5)


def test_paired_compile_seconds_alternates_sides_and_compiles_each_candidate_per_side(capsys):
    # kernels.bench.paired_compile_seconds via report_paired_compile (benchmarks/compile_*.py): one
    # compile per side and candidate, each pair printed, then the medians
    from actsearch.kernels.bench import report_paired_compile

    tag = torch.randint(10**8, (1,)).item()
    cands = [parse_formula(f"x*sigmoid(1.{tag:08d}*x)"), parse_formula(f"x*tanh(1.{tag:08d}*x)"),
             parse_formula(f"x*cos(1.{tag:08d}*x) + beta*x", params={"beta": 0.5})]
    calls, restored = [], []
    out = report_paired_compile(cands, {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                {"a": "side A", "b": "side B"}, 2, as_json=False,
                                restore=lambda: restored.append(True), note="x")
    assert restored == [True] and out["note"] == "x"
    assert out["ratio_a_over_b"] == pytest.approx(out["median_a_s"] / out["median_b_s"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and printed[0].startswith("side A") and "side B faster in" in printed[-1]
    assert not torch._inductor.config.force_disable_caches  # restored
    assert calls == ["a", "b", "a", "a", "b"]  # warm-up on the first side, then b-a, a-b
    assert [r["formula"] for r in out["rows"]] == [c.formula for c in cands[1:]] and out["pairs"] == 2
    assert all(r["a_s"] > 0 and r["b_s"] > 0 and r["compile_error"] is None for r in out["rows"])
    assert out["rows"][1]["params"] == 1 and 0 <= out["b_faster_pairs"] <= 2


@pytest.mark.private_torch
def test_compiled_op_serves_every_rank_with_one_graph():
    # CompiledKernel flattens contiguous inputs with scalar parameters: one compiled graph for 1-D,
    # 2-D and 4-D tensors; per-channel parameters and non-contiguous inputs keep their shapes.
    # Contiguous inputs get traced graphs (kernels.inductor.TracedGraph), so Dynamo compiles nothing.
    from torch._dynamo.utils import counters

    def traced_graphs():
        return sum(len(gs or []) for f in k._compiled.values() for gs in f.traced.values())

    c = parse_formula(f"x*sigmoid(1.{torch.randint(10**8, (1,)).item():08d}*x) + beta*x", params={"beta": 0.25})
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    beta = torch.tensor(0.25, requires_grad=True)
    before = counters["stats"]["unique_graphs"]
    for shape in [(40,), (5, 8), (2, 2, 5, 2), (2, 4, 5)]:
        for save in ("derivative", "input"):
            x = torch.randn(shape, requires_grad=True)
            p = (beta,) if save == "input" else (beta.detach(),)
            y = fused_activation(k, x, *p, compiled=True, save=save)
            assert y.shape == x.shape
            grads = torch.autograd.grad(y.square().sum(), (x, *[q for q in p if q.requires_grad]))
            xe = x.detach().double().requires_grad_()
            pe = [q.detach().double().requires_grad_(q.requires_grad) for q in p]
            ye = k.eager_forward(xe, *pe)
            ref = torch.autograd.grad(ye.square().sum(), (xe, *[q for q in pe if q.requires_grad]))
            torch.testing.assert_close(y.double(), ye, rtol=1e-5, atol=1e-6)
            for a, b in zip(grads, ref):
                assert a.shape == b.shape
                torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)
    # forward_with_derivative (save="derivative"), forward and backward (save="input"): one graph each
    assert traced_graphs() == 3 and counters["stats"]["unique_graphs"] == before
    assert all(f.trace_error is None for f in k._compiled.values())
    # per channel: (1, C, 1, 1) parameters broadcast, so the 4-D shape is kept (and is right)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    pc = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).requires_grad_()
    y = fused_activation(k, x, pc, compiled=True)
    gx, gp = torch.autograd.grad(y.sum(), (x, pc))
    ye = k.eager_forward(x, pc)
    gxe, gpe = torch.autograd.grad(ye.sum(), (x, pc))
    torch.testing.assert_close(y, ye, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gp, gpe, rtol=1e-4, atol=1e-5)
    # non-contiguous input: not flattened, still right
    xt = torch.randn(6, 5).t().requires_grad_()
    yt = fused_activation(k, xt, beta.detach(), compiled=True)
    torch.testing.assert_close(yt, k.eager_forward(xt, beta.detach()), rtol=1e-5, atol=1e-6)
    assert k.compile_error is None
    assert counters["stats"]["unique_graphs"] > before  # the non-contiguous call went to torch.compile


@pytest.mark.private_torch
def test_traced_graph_guards_shapes_and_round_trip():
    from actsearch.kernels.inductor import TracedGraph, compile_graph, shape_pattern

    c = parse_formula(f"x*sigmoid(beta*x) + {torch.randint(10**6, (1,)).item()}e-9*x", params={"beta": 1.0})
    ns = generate_source(c).namespace(inductor=True)
    b = torch.tensor(1.3)
    x, g = torch.randn(3000), torch.randn(3000)
    graph = compile_graph(ns["backward"], (x, g, b))
    # Inductor specialised the parameter-gradient reduction on the traced size: a guard, checked here
    assert graph.guards and graph.holds((x, g, b))
    big = (torch.randn(100_003), torch.randn(100_003), b)
    assert not graph.holds(big)
    for n in (2, 17, 3000, 4096):
        args = (x[:n], g[:n], b)
        assert graph.holds(args)
        for a, r in zip(graph(*args), ns["backward"](*args)):
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    big_graph = compile_graph(ns["backward"], big)
    assert big_graph.holds(big) and not big_graph.holds((x, g, b))
    loaded = TracedGraph.from_dict(json.loads(json.dumps(big_graph.to_dict())))
    for a, r in zip(loaded(*big), ns["backward"](*big)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-3)
    fwd = compile_graph(ns["forward"], (x, b))  # elementwise only: no guard, every size >= 2
    assert not fwd.guards and fwd.single
    torch.testing.assert_close(fwd(big[0], b), ns["forward"](big[0], b))
    # the pattern: dtypes, ranks, 0/1 sizes and which sizes are equal; None for unsuitable inputs
    p = shape_pattern((torch.zeros(4, 3, 3), torch.zeros(1, 3, 1), torch.zeros(())))
    assert p == (("torch.float32", "cpu", (-1, -2, -2)), ("torch.float32", "cpu", (1, -2, 1)),
                 ("torch.float32", "cpu", ()))
    assert shape_pattern((torch.zeros(4, 5, 3),))[0][2] == (-1, -2, -3)
    assert shape_pattern((torch.zeros(6, 5).t(),)) is None and shape_pattern((torch.zeros(3), 1.0)) is None


def test_guard_encoding_evaluates_integer_sympy_expressions():
    import sympy
    from torch.utils._sympy.functions import FloorDiv

    from actsearch.kernels.inductor import encode_guard, evaluate_guard

    s0, s1 = sympy.symbols("s0 s1", integer=True, positive=True)
    cases = [sympy.Le(s0, 4096), sympy.Gt(FloorDiv(s0, 16) * s1, 100), sympy.Eq(s0 + 2 * s1, 11),
             sympy.And(sympy.Ge(s0, 2), sympy.Ne(s1, 3)), sympy.Lt(sympy.Max(s0, s1), 9)]
    for expr in cases:
        tree = json.loads(json.dumps(encode_guard(expr)))
        for v0, v1 in [(3, 4), (4096, 2), (5000, 3), (7, 2)]:
            assert bool(evaluate_guard(tree, {"s0": v0, "s1": v1})) == bool(expr.subs({s0: v0, s1: v1}))
    with pytest.raises(ValueError, match="unsupported guard"):
        encode_guard(sympy.Le(sympy.sin(s0), 1))


@pytest.mark.private_torch
def test_traced_graphs_cover_edge_shapes_and_fail_per_pattern(monkeypatch):
    # size 1 (a constant in the traced graph), an offset view, float64: each right; a pattern whose
    # trace fails goes to torch.compile alone, the others stay traced
    c = parse_formula(f"x*tanh(softplus(x)) + {torch.randint(10**6, (1,)).item()}e-9*x")
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    real_compile_graph = fused_module.compile_graph

    def no_float64(fn, args, elementwise=True):
        if args[0].dtype == torch.float64:
            raise RuntimeError("simulated trace failure for float64")
        return real_compile_graph(fn, args, elementwise)

    monkeypatch.setattr(fused_module, "compile_graph", no_float64)
    base = torch.randn(1000)
    for x in (torch.randn(1), base[7:507], torch.randn(4, 64), torch.randn(300, dtype=torch.float64)):
        x = x.detach().requires_grad_()
        y = fused_activation(k, x, compiled=True)
        (gx,) = torch.autograd.grad(y.square().sum(), x)
        ye = k.eager_forward(x)
        (gxe,) = torch.autograd.grad(ye.square().sum(), x)
        torch.testing.assert_close(y, ye, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gx, gxe, rtol=1e-4, atol=1e-5)
    f = k._compiled["forward_with_derivative"]
    graphs = {p[0][0]: v for p, v in f.traced.items()}
    assert graphs["torch.float64"] is None and "float64" in f.trace_error
    assert sum(len(v) for v in f.traced.values() if v) == 2  # size 1, and every other float32 size
    assert k.compile_error is None


@pytest.mark.private_torch
def test_traced_graph_keeps_a_size_specialisation_as_a_guard():
    # a branch on a size specialises the trace to it (the shape environment replaces the size by a
    # constant): the graph must then refuse other sizes, never silently compute the branch it took
    from actsearch.kernels.inductor import compile_graph

    def branchy(x):
        return x * 2.0 if x.shape[0] == 4096 else x * 3.0

    graph = compile_graph(branchy, (torch.randn(4096),))
    assert graph.holds((torch.randn(4096),)) and not graph.holds((torch.randn(100),))
    torch.testing.assert_close(graph(torch.ones(4096)), torch.full((4096,), 2.0))
    other = compile_graph(branchy, (torch.randn(100),))
    assert other.holds((torch.randn(5000),)) and not other.holds((torch.randn(4096),))


@pytest.mark.private_torch
def test_a_traced_compile_does_not_break_compiled_calls_in_other_threads():
    # make_fx raises FX's process-wide tracing flag: without a compile session around the trace, a
    # torch.compile'd function called in another thread meanwhile raises ("FX to symbolically trace a
    # dynamo-optimized function").  The traced function here blocks mid-trace until that call is made.
    import threading

    from actsearch.kernels.inductor import compile_graph

    compiled_elsewhere = torch.compile(lambda t: t + 1.0, backend="eager", dynamic=False)
    compiled_elsewhere(torch.ones(3))  # compiled before: calling it later needs no compile lock
    in_trace, release, errors = threading.Event(), threading.Event(), []

    def blocking(x):
        in_trace.set()
        release.wait(30)
        return x * 2.0

    def trace():
        try:
            graph = compile_graph(blocking, (torch.randn(64),))
            torch.testing.assert_close(graph(torch.ones(8)), torch.full((8,), 2.0))
        except Exception as exc:  # noqa: BLE001 - reported from the main thread
            errors.append(repr(exc))

    tracer = threading.Thread(target=trace)
    tracer.start()
    try:
        assert in_trace.wait(30)
        out = compiled_elsewhere(torch.ones(3))  # while the other thread is inside make_fx
    finally:
        release.set()
        tracer.join(60)
    torch.testing.assert_close(out, torch.full((3,), 2.0))
    assert errors == []


def _counting_compile_graph(monkeypatch):
    from actsearch.kernels import inductor

    calls = []
    original = inductor.compile_graph

    def counting(fn, args, *a, **kw):
        calls.append(len(args))
        return original(fn, args, *a, **kw)

    monkeypatch.setattr(fused_module, "compile_graph", counting)
    return calls


@pytest.mark.private_torch
def test_parametric_forward_builds_its_backward_graph_too(monkeypatch):
    # With learnable parameters a candidate has two graphs; the forward of a training step builds the
    # backward graph with it (kernels.fused._build_with_backward), so backward compiles nothing, and
    # every value and gradient matches autograd of the eager formula.
    calls = _counting_compile_graph(monkeypatch)
    c = parse_formula("x*sigmoid(beta*x) + 0.123456789*x", params={"beta": 1.3})
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    x = torch.randn(6, 50, requires_grad=True)
    beta = torch.tensor(1.3, requires_grad=True)
    y = fused_activation(k, x, beta, compiled=True)
    assert calls == [2, 3]  # forward (x, beta), then backward (x, grad, beta): both at forward time
    assert {"forward", "backward"} <= set(k.compile_seconds)
    g = torch.randn_like(y)
    y.backward(g)
    assert calls == [2, 3] and k.compile_error is None
    xe, be = x.detach().clone().requires_grad_(), beta.detach().clone().requires_grad_()
    ye = k.eager_forward(xe, be)
    ye.backward(g)
    torch.testing.assert_close(y, ye)
    torch.testing.assert_close(x.grad, xe.grad)
    torch.testing.assert_close(beta.grad, be.grad)
    assert k._compiled["backward"].trace_error is None


@pytest.mark.private_torch
def test_parametric_forward_without_grad_builds_no_backward(monkeypatch):
    calls = _counting_compile_graph(monkeypatch)
    c = parse_formula("x*sigmoid(beta*x) + 0.234567891*x", params={"beta": 0.7})
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    with torch.no_grad():
        fused_activation(k, torch.randn(300), torch.tensor(0.7), compiled=True)
    assert calls == [2] and "backward" not in k._compiled


@pytest.mark.private_torch
def test_a_failed_deferred_build_falls_back_and_stays_correct(monkeypatch):
    # A graph whose C++ build fails when its deferred wait is finished goes to torch.compile for that
    # pattern, as a failed trace does: recorded in trace_error, results unchanged.
    from actsearch.kernels import inductor

    def failing(pending):
        pending.clear()
        raise RuntimeError("C++ compile error (simulated)")

    monkeypatch.setattr(inductor, "finish_builds", failing)
    c = parse_formula("x*sigmoid(beta*x) + 0.345678912*x", params={"beta": 1.1})
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    x = torch.randn(257, requires_grad=True)
    beta = torch.tensor(1.1, requires_grad=True)
    y = fused_activation(k, x, beta, compiled=True)
    y.sum().backward()
    assert "simulated" in (k._compiled["forward"].trace_error or "")
    assert "simulated" in (k._compiled["backward"].trace_error or "")
    xe, be = x.detach().clone().requires_grad_(), beta.detach().clone().requires_grad_()
    k.eager_forward(xe, be).sum().backward()
    torch.testing.assert_close(x.grad, xe.grad)
    torch.testing.assert_close(beta.grad, be.grad)


def test_deferred_builds_return_before_the_build_and_finish_later():
    from torch._inductor.async_compile import get_compile_threads

    from actsearch.kernels import inductor

    if not inductor.defer_builds_possible() or get_compile_threads() <= 1:
        pytest.skip("one compile thread: Inductor builds inside the module load")
    c = parse_formula("x*tanh(x) + 0.456789123*x")
    k = CompiledKernel(generate_source(c))
    fn = k._inductor_ns["forward_with_derivative"]
    x = torch.randn(100)
    with inductor.deferred_builds() as pending:
        graph = inductor.compile_graph(fn, [x])
    assert pending  # the module's AsyncCompile.wait was deferred
    inductor.finish_builds(pending)
    assert not pending
    y, d = graph(x)
    ye, de = k.eager_forward_with_derivative(x)
    torch.testing.assert_close(y, ye)
    torch.testing.assert_close(d, de)
