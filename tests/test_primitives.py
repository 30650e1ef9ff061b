import ast
import math

import numpy as np
import pytest
import sympy
import torch

from actsearch.formula import X
from actsearch.numeric import evaluate
from actsearch.primitives import EPS, GUARD_EPS, PRIMITIVES, get_primitive, protect, sigmoid, sinc, softplus, vocabulary
from actsearch.primitives import functions as F
from actsearch.primitives.torch_ops import _axis_moment, _group_moment

SWISH_UNARY = ["identity", "neg", "abs", "square", "cube", "sqrt", "scale", "shift", "log", "exp", "sin", "cos",
               "sinh", "cosh", "tanh", "asinh", "atan", "sinc", "relu", "min0", "sigmoid", "softplus", "gaussian",
               "erf", "const"]
SWISH_BINARY = ["add", "mul", "sub", "div", "max", "min", "sigmoid_mul", "gauss_dist", "laplace_dist", "mix"]
PANGAEA = ["erfc", "expm1", "log_sigmoid", "bessel_i0e", "bessel_i1e", "relu", "elu", "selu", "swish", "softsign",
           "hard_sigmoid", "reciprocal", "pow", "sum", "prod", "max", "min"]
MODERN = ["gelu", "gelu_tanh", "silu", "mish", "hardswish", "leaky_relu"]


def test_vocabulary_is_a_superset_of_the_published_sets():
    for name in SWISH_UNARY + SWISH_BINARY + PANGAEA + MODERN:
        assert get_primitive(name).name in PRIMITIVES
    assert {p.name for p in vocabulary("swish")} >= set(SWISH_UNARY + SWISH_BINARY)
    assert {p.name for p in vocabulary("pangaea")} >= set(PANGAEA) - {"relu"} | {"relu"}


def test_every_primitive_is_complete():
    for p in PRIMITIVES.values():
        assert p.torch and p.cost.elementwise >= 0 and p.cost.transcendental >= 0, p.name
        assert p.kind in {"nullary", "unary", "binary", "nary", "moment"}
        if p.kind != "moment":
            assert p.triton, p.name


def _torch_eval(prim, arrays, params):
    names = [f"a{i}" for i in range(len(arrays))] + [f"p{i}" for i in range(len(params))]
    code = prim.spell("torch", *names)
    ns = {"torch": torch, "math": math, "_group_moment": _group_moment, "_axis_moment": _axis_moment,
          "groups": F.MOMENT_GROUPS}
    ns.update({f"a{i}": torch.tensor(a, dtype=torch.float64) for i, a in enumerate(arrays)})
    ns.update({f"p{i}": float(v) for i, v in enumerate(params)})
    out = eval(compile(code, "<spelling>", "eval"), ns)  # our own templates, never user text
    return torch.as_tensor(out, dtype=torch.float64).expand(np.broadcast_shapes(*[np.shape(a) for a in arrays] or [()])).numpy()


@pytest.mark.parametrize("name", sorted(n for n, p in PRIMITIVES.items() if p.kind != "moment"))
def test_torch_spelling_matches_the_protected_sympy_form(name):
    prim = PRIMITIVES[name]
    rng = np.random.default_rng(0)
    n_in = prim.n_inputs if prim.n_inputs is not None else 3
    arrays = [rng.normal(0, 2, 500) for _ in range(n_in)]
    if name in ("pow",):
        arrays[1] = rng.uniform(-2, 2, 500)
    params = [d + 0.3 for _, d in prim.params]  # non-default values exercise the parameter slots
    syms = [sympy.Symbol(f"a{i}", real=True) for i in range(n_in)]
    psyms = [sympy.Symbol(f"p{i}", real=True) for i in range(len(params))]
    expr = protect(prim(*syms, *psyms)) if prim.n_inputs is not None else protect(prim(*syms))
    env = {f"p{i}": v for i, v in enumerate(params)}
    if prim.n_inputs == 0:
        got, expect = np.array([_torch_eval(prim, [], params)]).ravel(), np.array([params[0]])
    else:
        got, expect = _torch_eval(prim, arrays, params), _eval_multi(expr, syms, arrays, env)
    # rtol 1e-6: some torch built-ins (celu) round their scalar arguments to float32 internally.
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-9, err_msg=f"{name}: {prim.torch}")


def _eval_multi(expr, syms, arrays, params):
    """Evaluate an expression of several input symbols via the numeric evaluator's env."""
    from actsearch.numeric import _eval

    env = {s.name: np.asarray(a, dtype=float) for s, a in zip(syms, arrays)}
    env.update(params)
    env[GUARD_EPS.name] = EPS
    with np.errstate(all="ignore"):
        out = _eval(expr, env, {})
    return np.broadcast_to(out, np.broadcast_shapes(*[np.shape(a) for a in arrays] or [()])).astype(float)


@pytest.mark.parametrize("shape", [(4, 8, 5), (4, 8), (3, 8, 2, 3)])
@pytest.mark.parametrize("name", sorted(F.MOMENT_FUNCTIONS))
def test_moment_spellings_match_numpy(name, shape):
    """On (N, C, L), (N, C) (an instance moment reduces over no axis there: mean x, var 0) and 4-D."""
    prim = PRIMITIVES[name]
    x = np.random.default_rng(1).normal(1.0, 2.0, shape)
    got = _torch_eval(prim, [x], [])
    expect = evaluate(prim(X), x)
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(F.MOMENT_FUNCTIONS))
def test_moment_of_a_compound_argument(name):
    """The spelling takes the argument whole: moment(x*sigmoid(x)), not x*moment(sigmoid(x))."""
    prim = PRIMITIVES[name]
    code = prim.spell("torch", "a0 * torch.sigmoid(a0)")
    x = np.random.default_rng(2).normal(0.0, 1.5, (4, 8, 5))
    ns = {"torch": torch, "_group_moment": _group_moment, "_axis_moment": _axis_moment, "groups": F.MOMENT_GROUPS,
          "a0": torch.tensor(x)}
    got = eval(compile(code, "<spelling>", "eval"), ns).expand(x.shape).numpy()  # our templates, never user text
    np.testing.assert_allclose(got, evaluate(prim(X / (1 + sympy.exp(-X))), x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", [sigmoid, softplus, F.bessel_i0e, F.bessel_i1e, F.bessel_i1e_over_x, sinc, F.dsinc])
def test_custom_derivatives_match_finite_differences(cls):
    x = np.concatenate([np.linspace(-6, 6, 241) + 1e-3, [0.0]])
    d = sympy.diff(cls(X), X)
    h = 1e-6
    fd = (cls.numpy(x + h) - cls.numpy(x - h)) / (2 * h)
    np.testing.assert_allclose(evaluate(d, x), fd, rtol=1e-5, atol=1e-6)


def test_sinc_is_unnormalized_everywhere():
    x = np.array([0.0, 1.0, math.pi, 2.5])
    np.testing.assert_allclose(evaluate(sinc(X), x), [1.0, math.sin(1.0), 0.0, math.sin(2.5) / 2.5], atol=1e-15)
    got = _torch_eval(get_primitive("sinc"), [x], [])
    np.testing.assert_allclose(got, [1.0, math.sin(1.0), 0.0, math.sin(2.5) / 2.5], atol=1e-12)
    assert evaluate(sympy.diff(sinc(X), X), np.array([0.0]))[0] == 0.0
    u = np.array([1e-8, 1e-3, 0.0999, 0.1001, 2.0])  # series/closed-form branches agree with the exact value
    exact = (u * np.cos(u) - np.sin(u)) / u**2
    np.testing.assert_allclose(F.dsinc.numpy(u), [-u[0] / 3, *exact[1:]], rtol=1e-9)


def test_guards_apply_only_where_needed():
    e = GUARD_EPS
    assert protect(sympy.log(X)) == sympy.log(sympy.Abs(X) + e)
    assert protect(sympy.log(1 + sympy.exp(X))) == sympy.log(1 + sympy.exp(X))
    assert protect(1 / X) == 1 / (X + e)
    assert protect(1 / (1 + X**2)) == 1 / (1 + X**2)
    assert protect(sympy.sqrt(X)) == sympy.sqrt(sympy.Abs(X))
    assert protect(sympy.sqrt(X**2 + 1)) == sympy.sqrt(X**2 + 1)
    # negative fractional powers clamp (exact wherever |x| >= eps)
    assert protect(X ** sympy.Rational(-1, 2)) == sympy.Max(sympy.Abs(X), e) ** sympy.Rational(-1, 2)
    # guards compose bottom-up
    assert protect(sympy.log(sympy.sqrt(X))).has(sympy.Abs)
    v = evaluate(protect(sympy.log(X) + 1 / X + sympy.sqrt(X)), np.linspace(-3, 3, 61))
    assert np.all(np.isfinite(v))


def test_protect_is_idempotent_and_derivatives_are_not_guarded_twice():
    beta = sympy.Symbol("beta", real=True)
    for e in [1 / (4 * beta) * X**2, 1 / (X + 1), sympy.log(X), X**beta, sympy.sqrt(X) / (X - 2)]:
        once = protect(e)
        assert protect(once) == once
        d = protect(sympy.diff(once, X))  # a derivative may add singular powers (|x|**-1/2): guarded
        assert protect(d) == d, e
    d = sympy.diff(protect(1 / (X + 1)), X)
    assert protect(d) == d  # (x + 1 + eps)**-2, not (x + 1 + 2 eps)**-2


def test_triton_spellings_are_python_expressions_over_tl_and_libdevice():
    allowed = {"tl", "libdevice"}
    for p in PRIMITIVES.values():
        if p.triton is None:
            continue
        n = (p.n_inputs if p.n_inputs is not None else 2) + len(p.params)
        code = p.spell("triton", *[f"a{i}" for i in range(n)])
        tree = ast.parse(code, mode="eval")
        roots = {node.value.id for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
        assert roots <= allowed, (p.name, roots)


def test_parametric_primitives_take_defaults_and_explicit_values():
    leaky = get_primitive("leaky_relu")
    v = evaluate(leaky(X), np.array([-2.0, 3.0]))
    np.testing.assert_allclose(v, [-0.02, 3.0])
    v = evaluate(leaky(X, sympy.Float(0.2)), np.array([-2.0, 3.0]))
    np.testing.assert_allclose(v, [-0.4, 3.0])


def test_aliases_resolve():
    assert get_primitive("logsigmoid") is get_primitive("log_sigmoid")
    assert get_primitive("hardsigmoid") is get_primitive("hard_sigmoid")
    with pytest.raises(KeyError):
        get_primitive("nope")
