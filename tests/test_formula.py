import numpy as np
import pytest
import sympy

from actsearch.formula import Candidate, FormulaError, format_formula, parse_formula
from actsearch.identity import PROBES, canonicalize, candidate_id, fingerprint, quantize
from actsearch.numeric import evaluate

SAME = [
    ["x*sigmoid(x)", "x/(1+exp(-x))", "silu(x)", "swish(x)", "x*exp(x)/(exp(x)+1)", "sigmoid_mul(x, x)"],
    ["relu(x)", "max(x, 0)", "max(0, x)", "(x + abs(x))/2", "max(x, max(x, 0))"],
    ["softplus(x)", "log(1+exp(x))", "-log_sigmoid(-x)"],
    ["sinc(x)", "sin(x)/x"],
    ["tanh(x)", "2*sigmoid(2*x) - 1", "(exp(x)-exp(-x))/(exp(x)+exp(-x))"],
    ["gelu(x)", "x*(1+erf(x/sqrt(2)))/2", "0.5*x*erfc(-x/sqrt(2))"],
    ["max(x, tanh(x))", "max(tanh(x), x)"],
    ["elu(x)", "relu(x) + min(0, exp(x) - 1)", "max(x, 0) + min(0, expm1(x))"],
]


@pytest.mark.parametrize("group", SAME, ids=lambda g: g[0])
def test_equivalent_spellings_get_one_id(group):
    ids = {parse_formula(f).id for f in group}
    assert len(ids) == 1, {f: parse_formula(f).id for f in group}


DIFFERENT = ["x", "x*sigmoid(x)", "x*sigmoid(1.001*x)", "relu(x)", "leaky_relu(x)", "gelu(x)", "gelu_tanh(x)",
             "tanh(x)", "sigmoid(x)", "softsign(x)", "mish(x)", "max(x, sigmoid(x))"]


def test_different_functions_get_different_ids():
    ids = [parse_formula(f).id for f in DIFFERENT]
    assert len(set(ids)) == len(ids)


def test_learnable_parameter_is_part_of_identity():
    fixed = parse_formula("x*sigmoid(x)")
    learnable = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    other_init = parse_formula("x*sigmoid(beta*x)", params={"beta": 2.0})
    same = parse_formula("swish(x, beta)", params={"beta": 1.0})
    assert learnable.id != fixed.id  # a learnable beta is a different search candidate
    assert learnable.id == same.id
    assert other_init.id != learnable.id
    assert learnable.params == {"beta": 1.0}
    # at its initial value the learnable candidate computes the same function
    np.testing.assert_allclose(evaluate(learnable.safe_expr, PROBES, learnable.params),
                               evaluate(fixed.safe_expr, PROBES), rtol=1e-12)


def test_unused_declared_parameters_are_dropped():
    c = parse_formula("tanh(x)", params={"beta": 3.0})
    assert c.params == {}


ROUND_TRIP = ["x*sigmoid(beta*x)", "max(x, tanh(x))", "cos(x) - x", "min(x, sin(x))", "atan(x)**2 - x",
              "sinc(x) + x", "x*asinh(x)**2", "max(x, sigmoid(x))", "selu(x)", "gelu_tanh(x)", "mish(x)",
              "hardswish(x)", "leaky_relu(x, 0.2)", "bessel_i0e(x) * x", "pow(x, 1.5)", "x**(-2) + 1",
              "exp(-beta*(x - tanh(x))**2)", "E**x - pi", "log(x)", "sqrt(x) * sign(x)", "heaviside(x)*x",
              "x / group_std(x)", "x*sigmoid(beta*x) / batch_std(x)", "max(x, 0, -x, 1)", "3.25e-3*x + x**3",
              "softshrink(x)", "celu(x, beta)", "prod(x, x, sigmoid(x))", "sum(x, sin(x), cos(x))"]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_format_round_trips_to_the_same_identity(text):
    c = parse_formula(text, params={"beta": 0.75})
    again = parse_formula(format_formula(c), params=c.params)
    assert again.id == c.id
    assert format_formula(again) == format_formula(c)  # the canonical spelling is a fixed point


def test_canonical_form_uses_named_functions():
    assert parse_formula("x/(1+exp(-x))").formula == "x*sigmoid(x)"
    assert parse_formula("log(1+exp(x))").formula == "softplus(x)"
    assert parse_formula("sin(x)/x").formula == "sinc(x)"
    assert parse_formula("max(tanh(x), x)").formula == "max(x, tanh(x))"


def test_canonicalize_is_time_bounded_and_idempotent():
    x = sympy.Symbol("x", real=True)
    e = parse_formula("x*sigmoid(x) + x*sigmoid(x)*tanh(x)").expr
    assert canonicalize(canonicalize(e)) == canonicalize(e)
    big = sum(sympy.sin(k * x) ** 3 * sympy.cos(x + k) for k in range(1, 40))
    import time
    t = time.perf_counter()
    canonicalize(big)
    assert time.perf_counter() - t < 1.0


def test_fingerprint_shape_and_quantization():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    assert c.fingerprint.shape == (3, PROBES.size)  # initial + two perturbed parameter settings
    assert parse_formula("tanh(x)").fingerprint.shape == (1, PROBES.size)
    v = np.array([1.0, 1.0 + 1e-12, np.nan, np.inf, -np.inf, -0.0, 1e-15, 4.97205e-10, 4.97206e-10, 1.0 + 1e-5])
    q = quantize(v)
    assert q[0] == q[1] and np.isnan(q[2]) and np.isnan(q[3]) and np.isnan(q[4]) and q[5] == 0 and q[6] == 0
    assert q[7] == q[8] == 0.0 and q[9] != q[0]
    assert candidate_id(fingerprint(c)) == c.id and c.id.startswith("act_")


def test_tensor_candidates_share_the_representation():
    s0 = parse_formula("x*sigmoid(v*x)/group_std(x)", params={"v": 1.0})  # EvoNorm-S0 (before affine)
    b0 = parse_formula("x/max(batch_std(x), v*x + instance_std(x))", params={"v": 1.0})  # EvoNorm-B0
    assert s0.is_tensor_op and b0.is_tensor_op and not parse_formula("x").is_tensor_op
    assert s0.id != b0.id
    assert parse_formula(format_formula(b0), params=b0.params).id == b0.id
    assert s0.fingerprint.shape[1] == 8 * 8 * 16


@pytest.mark.parametrize("text, col, token", [
    ("exp(x) + foo(x)", 9, "foo"),
    ("x + y", 4, "y"),
    ("exp(x, x)", 0, "exp(x, x)"),
    ("x.real", 0, "x.real"),
    ("tanh", 0, "tanh"),
    ("exp(x) +", 8, "<end>"),
    ("x +* 2", 3, "* 2"),
])
def test_errors_name_position_and_token(text, col, token):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    err = info.value
    assert err.col == col
    if token is not None:
        assert err.token == token and repr(token) in str(err)
    assert f"column {col + 1}" in str(err)


@pytest.mark.parametrize("text, fragment", [
    ("x + y", "--param y=VALUE"),
    ("exp(x, x)", "exactly 1 argument"),
    ("max(x)", "at least 2"),
    ("leaky_relu(x, 1, 2)", "1 to 2"),
    ("1/0", "division by zero"),
    ("sqrt(-1)", "complex"),
    ("x**17", "exponent"),
    ("", "empty"),
    ("x\nx", "single line"),
    ("'x'", "numeric literals"),
])
def test_error_messages_are_specific(text, fragment):
    with pytest.raises(FormulaError, match=None) as info:
        parse_formula(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("params, fragment", [
    ({"x": 1.0}, "reserved"), ({"tanh": 1.0}, "reserved"), ({"__class__": 1.0}, "invalid parameter name"),
    ({"beta": float("nan")}, "finite"), ({"beta": "1"}, "numeric"),
])
def test_bad_parameter_declarations(params, fragment):
    with pytest.raises(FormulaError) as info:
        parse_formula("x", params=params)
    assert fragment in str(info.value)


def test_candidate_equality_and_hash_follow_identity():
    a, b = parse_formula("silu(x)"), parse_formula("x*sigmoid(x)")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert isinstance(a, Candidate) and "x*sigmoid(x)" in repr(a)


def test_parameter_edge_cases():
    import numpy as np

    assert parse_formula("x*b", params={"b": np.int64(2)}).params == {"b": 2.0}
    assert parse_formula("x*b", params={"b": np.float32(0.5)}).params == {"b": 0.5}
    for bad in ("lambda", "None", "match"):
        with pytest.raises(FormulaError, match="invalid parameter name"):
            parse_formula("x", params={bad: 1.0})
    with pytest.raises(FormulaError) as info:
        parse_formula("a" * 1990)
    assert len(str(info.value)) < 300  # long names are shortened, not echoed twice
