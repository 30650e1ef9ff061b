"""Candidates that passed screening and then crashed their kernels (issue 21): each formula is checked
against autograd of a plain torch expression written by hand, value and gradients, in float64 and float32,
through the fused op, each generated eager and Inductor-spelled function, the compiled op (two of them)
and the Triton source.

Root causes: (1) an output or parameter gradient that folds to a constant only after CSE (sympy.cse
rebuilds Min(0, exp(u)) as 0) printed as the float 0.0 with `.to(x.dtype)`; (2) a constant containing
the guard epsilon (log(eps) from d/dv (|u| + eps)**v with u = 0) printed as torch.log(1e-06), a float
argument; (3) parameter gradients kept sympy's DiracDelta from steps and signs, which no printer knows.
The convention now (formula.kernel_derivative): a step's derivative is 0 in every derivative the kernels
use, as torch's sign backward and autograd through torch.where are.
"""
import math

import pytest
import sympy
import torch

from actsearch.formula import kernel_derivative, parse_formula
from actsearch.kernels import fused_activation, generate_source, get_kernel
from actsearch.kernels.triton_gen import generate_triton_source
from actsearch.screening import screen_candidate

torch.set_num_threads(2)


def _silu(v: float) -> float:
    return v / (1.0 + math.exp(-v))


def _step(u):  # heaviside(u) with value 1/2 at 0: no gradient, as the convention says
    return torch.where(u > 0, 1.0, torch.where(u < 0, 0.0, 0.5)).to(u.dtype)


def _leaky(u, slope):
    return torch.clamp_min(u, 0.0) + slope * torch.clamp_max(u, 0.0)


CASES = {
    # the parameter gradient is 0 everywhere (min(0, exp(...)) = 0): it printed as 0.0.to(x.dtype)
    "leaky_relu(gaussian(silu(2.0) - x), slope)":
        ({"slope": 0.01}, lambda x, slope: _leaky(torch.exp(-(_silu(2.0) - x) ** 2), slope)),
    "leaky_relu(exp(-(1.76-x)**2), slope)":
        ({"slope": 0.01}, lambda x, slope: _leaky(torch.exp(-(1.76 - x) ** 2), slope)),
    # pow(0, x) is protected to (|0| + eps)**x: its derivative has log(eps), printed as torch.log(1e-06).
    # Screening refuses it (f' overflows float32 below x = -3.3: 1e-6**x squared), the kernels serve it
    "bessel_i1e(min(silu(2.0), silu(pow(sub(x, x), max(x, x)))))":
        ({}, lambda x: torch.special.i1e(torch.clamp_max(torch.nn.functional.silu(
            torch.pow(torch.tensor(1e-6, dtype=x.dtype), x)), _silu(2.0)))),
    # parameter gradients of steps and signs had DiracDelta, which no printer spells
    "x*heaviside(x - beta)": ({"beta": 0.5}, lambda x, beta: x * _step(x - beta)),
    "x*sign(beta*x)": ({"beta": 0.5}, lambda x, beta: x * torch.sign(beta * x)),
    "x*sigmoid(x)*heaviside(beta)": ({"beta": 0.5}, lambda x, beta: x * torch.sigmoid(x) * _step(beta)),
    # sympy's evalf of the constant factor -sigmoid(cos(1))**2/36 leaves a 1e-44 imaginary part: float()
    # of it raised while the printer folded the product's constants (found by the drill)
    "x*sigmoid(cos(1))**2/36 + tanh(x)":
        ({}, lambda x: x * (1 / (1 + math.exp(-math.cos(1)))) ** 2 / 36 + torch.tanh(x)),
}
IDS = list(CASES)
SCREENED_OUT = {"bessel_i1e(min(silu(2.0), silu(pow(sub(x, x), max(x, x)))))": "non_finite_gradient"}


def _inputs(dtype, params, seed=0):
    x = torch.randn(4096, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x, [torch.tensor(v, dtype=dtype) for v in params.values()]


def _value_and_grads(fn, x, ps, w):
    x = x.clone().requires_grad_()
    ps = [p.clone().requires_grad_() for p in ps]
    y = fn(x, *ps)
    grads = torch.autograd.grad((y * w).sum(), (x, *ps), allow_unused=True)
    return y.detach(), [torch.zeros_like(t) if g is None else g for g, t in zip(grads, (x, *ps))]


def _assert_matches(fn, ref, x, ps, rtol, atol):
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    y, grads = _value_and_grads(fn, x, ps, w)
    ry, rgrads = _value_and_grads(ref, x, ps, w)
    torch.testing.assert_close(y, ry, rtol=rtol, atol=atol)
    for g, r in zip(grads, rgrads):
        # parameter gradients are sums over 4096 points
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol * (1 if g.dim() else 100))


@pytest.mark.parametrize("formula", IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_op_matches_autograd_of_a_plain_torch_expression(formula, dtype):
    params, ref = CASES[formula]
    c = parse_formula(formula, params=params)
    result = screen_candidate(c)
    assert result.codes == ([SCREENED_OUT[formula]] if formula in SCREENED_OUT else []), result.reasons
    k = get_kernel(c)
    x, ps = _inputs(dtype, c.params)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for save in ("auto", "input"):  # with parameters, "auto" saves x; "input" recomputes f'
        _assert_matches(lambda x, *p: fused_activation(k, x, *p, compiled=False, save=save), ref, x, ps, **tol)
    # parameters frozen: the op saves f'(x) from forward_with_derivative
    w = torch.ones_like(x)
    xg = x.clone().requires_grad_()
    fused_activation(k, xg, *ps, compiled=False).backward(w)
    _, (rx, *_) = _value_and_grads(ref, x, ps, w)
    torch.testing.assert_close(xg.grad, rx, **tol)


@pytest.mark.parametrize("formula", IDS)
def test_every_generated_function_returns_tensors_of_x_shape_and_dtype(formula):
    params, ref = CASES[formula]
    c = parse_formula(formula, params=params)
    src = generate_source(c)
    for inductor in (False, True):  # the Inductor spelling too (fast_math functions), run eagerly here
        ns = src.namespace(inductor=inductor)
        for dtype in (torch.float64, torch.float32):
            x, ps = _inputs(dtype, c.params)
            grad = torch.ones_like(x)
            outs = [ns["forward"](x, *ps), ns["backward_x"](x, grad, *ps), *ns["backward"](x, grad, *ps),
                    *ns["forward_with_derivative"](x, *ps)]
            for t in outs:
                assert isinstance(t, torch.Tensor) and t.dtype == dtype, (inductor, t)
                assert torch.isfinite(t).all()
            for t in (outs[0], outs[1], outs[2], *outs[-2:]):
                assert t.shape == x.shape
            y, grads = _value_and_grads(ref, x, ps, grad)
            tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-7, atol=1e-9)
            torch.testing.assert_close(outs[0], y, **tol)
            torch.testing.assert_close(outs[1], grads[0], **tol)


@pytest.mark.parametrize("formula", ["leaky_relu(exp(-(1.76-x)**2), slope)",
                                     "bessel_i1e(min(silu(2.0), silu(pow(sub(x, x), max(x, x)))))"])
def test_compiled_op_matches_autograd_of_a_plain_torch_expression(formula):
    params, ref = CASES[formula]
    c = parse_formula(formula, params=params)
    k = get_kernel(c)
    x, ps = _inputs(torch.float32, c.params)
    _assert_matches(lambda x, *p: fused_activation(k, x, *p, compiled=True), ref, x, ps, rtol=1e-4, atol=1e-5)
    assert k.compile_error is None


@pytest.mark.parametrize("formula", IDS)
def test_triton_source_spells_constants_as_numbers(formula):
    src = generate_triton_source(parse_formula(formula, params=CASES[formula][0]))
    assert "DiracDelta" not in src and "tl.log(1e-06)" not in src
    compile(src, "<triton>", "exec")


def test_step_derivatives_are_zero_by_convention():
    beta = sympy.Symbol("beta", real=True)
    x = sympy.Symbol("x", real=True)
    assert kernel_derivative(x * sympy.Heaviside(x - beta), beta) == 0
    assert kernel_derivative(x * sympy.sign(beta * x), beta) == 0
    c = parse_formula("x*heaviside(x - beta) + beta*sign(x)", params={"beta": 0.5})
    assert not c.safe_derivative.has(sympy.DiracDelta)
    assert not any(d.has(sympy.DiracDelta) for d in c.param_derivatives.values())
    assert c.param_derivatives["beta"] == sympy.sign(x)


@pytest.mark.parametrize("formula, params", [
    # |u| with u not provably real to sympy (1/(alpha + eps) may be complex infinity): its derivative went
    # through re(u) and im(u), printed as torch.imag, which raised for real tensors (found by the drill)
    ("min(cos(pow(celu(laplace_dist(x, x, beta), alpha), max(max(x, -1.0), sin(x)))), x)", {"beta": 1.0, "alpha": 1.0}),
    # ... and re(1/sqrt(1 + u**2)) expanded into atan2 terms: screening could not evaluate f'
    ("exp(-beta*abs(x**3 - asinh(sinc(x)/tanh(x))))", {"beta": 1.0}),
    # d/dx sign(u) stayed an unevaluated Derivative when u was not provably real
    ("x + exp(-beta2*(1.0 - sign(1/x))**2)", {"beta2": 1.0}),
])
def test_derivatives_are_real_whatever_sympy_can_prove(formula, params):
    c = parse_formula(formula, params=params)
    complex_parts = (sympy.re, sympy.im, sympy.atan2, sympy.conjugate, sympy.arg, sympy.Derivative, sympy.DiracDelta)
    for d in (c.safe_derivative, *c.param_derivatives.values()):
        assert not d.has(*complex_parts), d
    assert "not_evaluable" not in screen_candidate(c).codes
    k = get_kernel(c)
    x, ps = _inputs(torch.float64, c.params, seed=3)
    # symbolic backward == autograd through the generated eager forward, up to the guards: the backward
    # has log(|u| + eps) where autograd of torch.pow(|u|, v) has log(|u|) (here |u| = 1: 1e-6 apart)
    _assert_matches(lambda x, *p: fused_activation(k, x, *p, compiled=False), k.eager_forward, x, ps,
                    rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("formula", ["max(0.7310585786300049*x, x*sigmoid(1))",
                                     "slope*min(0, 0.7310585786300049*x, x*sigmoid(1)) + max(0, min(0.7310585786300049*x, x*sigmoid(1)))"])
def test_a_step_at_a_near_tie_is_consistent(formula):
    # 0.7310585786300049 - sigmoid(1) = 1.7e-17: the printer folded it to 1.7e-17 on one side of the
    # derivative's step and (evalf's chop) to 0.0 on the other, so f' of max(a, b) came out as a'/2 + b'
    # (found by the drill: the float64 kernel disagreed with the evaluator)
    import numpy as np

    from actsearch.numeric import evaluate

    c = parse_formula(formula, params={"slope": 0.01} if "slope" in formula else None)
    k = get_kernel(c)
    x, ps = _inputs(torch.float64, c.params, seed=4)
    y, d = k.eager_forward_with_derivative(x, *ps)
    np.testing.assert_allclose(d.numpy(), evaluate(c.safe_derivative, x.numpy(), c.params), rtol=1e-12)
    np.testing.assert_allclose(d.numpy()[x.numpy() > 0], 0.7310585786300049, rtol=1e-12)
