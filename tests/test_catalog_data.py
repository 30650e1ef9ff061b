"""The known-activation catalog data: every entry parses, is finite and non-linear, and the entries that
name a torch.nn.functional counterpart match it numerically."""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy
import torch

from actsearch.catalog_data import CATALOG_ENTRIES, FAMILIES, PAU_COEFFICIENTS
from actsearch.formula import X, parse_formula
from actsearch.numeric import evaluate

REQUIRED_KEYS = {"name", "title", "formula", "params", "reference", "year", "family", "torch"}
NAMES = [e["name"] for e in CATALOG_ENTRIES]
BY_NAME = {e["name"]: e for e in CATALOG_ENTRIES}
TORCH_ENTRIES = [e for e in CATALOG_ENTRIES if e["torch"] is not None]

GRID = np.linspace(-10.0, 10.0, 2001)
NORMAL = np.random.default_rng(0).standard_normal(4000)
# Random points (never exactly a kink such as 0 or +-lambda) over the range where torch is compared.
TORCH_POINTS = np.random.default_rng(1).normal(0.0, 3.0, 4000)

_candidates: dict = {}


def candidate(name):
    if name not in _candidates:
        e = BY_NAME[name]
        _candidates[name] = parse_formula(e["formula"], params=e["params"])
    return _candidates[name]


def values(name, xs):
    c = candidate(name)
    return evaluate(c.safe_expr, xs, c.params)


def parse_torch_spec(spec: str):
    """'gelu:approximate=tanh,foo=1' -> (torch.nn.functional.gelu, {'approximate': 'tanh', 'foo': 1.0})."""
    fname, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, _, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        try:
            val = float(raw)
        except ValueError:
            val = raw
        if key == "weight":  # prelu takes its slope as a tensor
            val = torch.tensor([val], dtype=torch.float64)
        kwargs[key] = val
    return getattr(torch.nn.functional, fname.strip()), kwargs


# ---- structure ------------------------------------------------------------------------------------
def test_size_names_and_keys():
    assert len(CATALOG_ENTRIES) >= 100
    assert len(NAMES) == len(set(NAMES)), sorted({n for n in NAMES if NAMES.count(n) > 1})
    for e in CATALOG_ENTRIES:
        assert isinstance(e, dict)
        assert REQUIRED_KEYS <= set(e), (e.get("name"), REQUIRED_KEYS - set(e))
        assert re.fullmatch(r"[a-z][a-z0-9_]*", e["name"]), e["name"]
        assert isinstance(e["title"], str) and e["title"]
        assert isinstance(e["formula"], str) and e["formula"]
        assert isinstance(e["reference"], str) and len(e["reference"]) > 10, e["name"]
        assert isinstance(e["year"], int) and 1940 <= e["year"] <= 2026, e["name"]
        assert e["family"] in FAMILIES, (e["name"], e["family"])
        assert e["torch"] is None or isinstance(e["torch"], str)
        assert isinstance(e["params"], dict)
        for k, v in e["params"].items():
            assert isinstance(k, str) and isinstance(v, float), (e["name"], k, v)


@pytest.mark.parametrize("name", NAMES)
def test_entry_parses_and_uses_every_declared_param(name):
    c = candidate(name)
    assert set(c.params) == set(BY_NAME[name]["params"]), "a declared parameter is unused (typo?)"
    assert not c.is_tensor_op


def test_required_activations_present():
    required = {"relu", "leaky_relu", "relu6", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "gelu_tanh",
                "silu", "swish_beta", "mish", "softplus", "softsign", "sigmoid", "tanh", "hardswish",
                "hardsigmoid", "hardtanh", "logsigmoid", "tanhshrink", "softshrink", "smelu", "squared_relu",
                "xsilu", "xgelu", "elish", "hard_elish", "lisht", "serf", "gcu", "phish", "logish", "tanhexp",
                "smish", "pserf", "isru", "isrlu", "bent_identity", "soft_exponential", "sqnl", "gaussian",
                "arctan", "soft_clipping", "e_swish", "flatten_t_swish", "pflu", "acon_c", "snake", "siren",
                "pau_leaky_relu"}
    assert required <= set(NAMES), sorted(required - set(NAMES))
    assert sum(e["family"] == "swish_search" for e in CATALOG_ENTRIES) >= 7


def test_prelu_default_slope():
    assert BY_NAME["prelu"]["params"] == {"a": 0.25}


# ---- numerics -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_finite_and_nonlinear(name):
    for xs in (GRID, NORMAL):
        f = values(name, xs)
        assert np.all(np.isfinite(f)), f"non-finite at x={xs[~np.isfinite(f)][:5]}"
    f = values(name, NORMAL)
    A = np.stack([NORMAL, np.ones_like(NORMAL)], axis=1)
    coef, *_ = np.linalg.lstsq(A, f, rcond=None)
    resid = np.sqrt(np.mean((A @ coef - f) ** 2))
    assert resid > 1e-3 * (1.0 + f.std()), "affine on N(0,1) inputs"


@pytest.mark.parametrize("name", NAMES)
def test_derivative_finite_and_not_mostly_zero(name):
    c = candidate(name)
    d = sympy.diff(c.safe_expr, X)
    g = evaluate(d, NORMAL, c.params)
    assert np.all(np.isfinite(g)), f"non-finite derivative at x={NORMAL[~np.isfinite(g)][:5]}"
    assert np.mean(np.abs(g) > 1e-7) >= 0.3, "zero gradient on most N(0,1) inputs"


# ---- torch counterparts ---------------------------------------------------------------------------
def test_torch_coverage():
    covered = {e["torch"].partition(":")[0] for e in TORCH_ENTRIES}
    must = {"relu", "gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "softsign", "sigmoid", "tanh",
            "hardswish", "hardsigmoid", "logsigmoid", "leaky_relu", "relu6", "hardtanh", "tanhshrink",
            "softshrink"}
    assert must <= covered, sorted(must - covered)
    assert BY_NAME["gelu_tanh"]["torch"] == "gelu:approximate=tanh"


def test_torch_spec_parser():
    fn, kw = parse_torch_spec("gelu:approximate=tanh")
    assert fn is torch.nn.functional.gelu and kw == {"approximate": "tanh"}
    fn, kw = parse_torch_spec("leaky_relu:negative_slope=0.2")
    assert fn is torch.nn.functional.leaky_relu and kw == {"negative_slope": 0.2}
    fn, kw = parse_torch_spec("relu")
    assert fn is torch.nn.functional.relu and kw == {}


@pytest.mark.parametrize("name", [e["name"] for e in TORCH_ENTRIES])
def test_matches_torch(name):
    fn, kwargs = parse_torch_spec(BY_NAME[name]["torch"])
    ours = values(name, TORCH_POINTS)
    ref = fn(torch.tensor(TORCH_POINTS, dtype=torch.float64), **kwargs).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


# ---- identity -------------------------------------------------------------------------------------
def test_entries_are_distinct_functions():
    """No two entries are the same candidate (same values at the defaults and under parameter changes);
    an alias belongs in the title, not in a second entry."""
    seen = {}
    dups = []
    for name in NAMES:
        cid = candidate(name).id
        if cid in seen:
            dups.append((seen[cid], name))
        seen[cid] = name
    assert not dups


# ---- published formulas of specific entries (issue 18) --------------------------------------------
# Tolerance 1e-5 as for torch: the safe form guards divisions by parameters with a small eps.
SPOT = np.array([-3.0, -1.3, -0.4, 0.25, 0.9, 2.2, 5.0])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def values_at(name, xs, **params):
    c = candidate(name)
    p = dict(c.params)
    p.update(params)
    return evaluate(c.safe_expr, xs, p)


def test_catalog_reaches_issue_size():
    assert len(CATALOG_ENTRIES) >= 200


def test_apa_is_silu_at_kappa_lambda_one_and_matches_published_form():
    np.testing.assert_allclose(values_at("apa", NORMAL), NORMAL * _sigmoid(NORMAL), rtol=0, atol=1e-5)
    k, lam = 0.7, 2.5
    ref = SPOT * (lam * np.exp(-k * SPOT) + 1.0) ** (1.0 / -lam)
    np.testing.assert_allclose(values_at("apa", SPOT, kappa=k, lam=lam), ref, rtol=1e-5, atol=1e-5)


def test_expanded_gating():
    np.testing.assert_allclose(values_at("xsilu", NORMAL), NORMAL * _sigmoid(NORMAL), rtol=0, atol=1e-5)
    np.testing.assert_allclose(values_at("xsilu", SPOT, alpha=0.5), SPOT * (2 * _sigmoid(SPOT) - 0.5),
                               rtol=1e-5, atol=1e-5)
    from scipy.special import erf
    a = 0.3
    gelu_gate = 0.5 * (1 + erf(SPOT / np.sqrt(2)))
    np.testing.assert_allclose(values_at("xgelu", SPOT, alpha=a), SPOT * (gelu_gate * (1 + 2 * a) - a),
                               rtol=1e-5, atol=1e-5)
    atan_gate = np.arctan(SPOT) / np.pi + 0.5
    np.testing.assert_allclose(values_at("xatlu", SPOT, alpha=a), SPOT * (atan_gate * (1 + 2 * a) - a),
                               rtol=1e-5, atol=1e-5)


def test_polyrelu():
    assert BY_NAME["polyrelu"]["params"] == {"a1": 1 / 3, "a2": 1 / 3, "a3": 1 / 3}
    r = np.maximum(SPOT, 0.0)
    np.testing.assert_allclose(values_at("polyrelu", SPOT), (r + r**2 + r**3) / 3, rtol=1e-5, atol=1e-5)
    a1, a2, a3 = 0.5, -0.2, 1.5
    np.testing.assert_allclose(values_at("polyrelu", SPOT, a1=a1, a2=a2, a3=a3), a1 * r + a2 * r**2 + a3 * r**3,
                               rtol=1e-5, atol=1e-5)


def test_snake():
    for a in (1.0, 0.5, 3.0):
        np.testing.assert_allclose(values_at("snake", SPOT, a=a), SPOT + np.sin(a * SPOT) ** 2 / a,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, ref", [
    ("leaky_relu_01", lambda x: np.where(x > 0, x, 0.1 * x)),
    ("tlu", lambda x: np.maximum(x, 0.0)),
    ("arelu", lambda x: np.where(x >= 0, (1 + _sigmoid(2.0)) * x, 0.9 * x)),
    ("elliott_sigmoid", lambda x: 0.5 * x / (1 + np.abs(x)) + 0.5),
    ("bipolar_sigmoid", lambda x: (1 - np.exp(-x)) / (1 + np.exp(-x))),
    ("rootsig", lambda x: x / (1 + np.sqrt(1 + x**2))),
    ("hard_sigmoid_quarter", lambda x: np.clip(0.25 * x + 0.5, 0, 1)),
    ("hard_sigmoid_keras", lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
    ("finer", lambda x: np.sin(30 * (np.abs(x) + 1) * x)),
    ("gaussian_sigma", lambda x: np.exp(-x**2 / 2)),
    ("laplacian", lambda x: np.exp(-np.abs(x))),
    ("inverse_quadratic", lambda x: 1 / (1 + x**2)),
    ("inverse_multiquadric", lambda x: 1 / np.sqrt(1 + x**2)),
    ("expsin", lambda x: np.exp(-np.sin(x))),
    ("sinc", lambda x: np.sin(x) / x),
    ("arsinh", np.arcsinh),
    ("gudermannian", lambda x: np.arcsin(np.tanh(x))),   # gd(x) = 2 atan(tanh(x/2)) = asin(tanh(x))
    ("sech", lambda x: 2 / (np.exp(x) + np.exp(-x))),
    ("exponential", np.exp),
])
def test_published_formula_spot_check(name, ref):
    np.testing.assert_allclose(values(name, SPOT), ref(SPOT), rtol=1e-5, atol=1e-5)



# ---- second batch (issue 18, item 4): every entry against its published formula ------------------
# Each reference below is written from the paper's (or the survey's) piecewise definition, with numpy,
# not from the catalog text; entries with parameters are also checked away from their defaults.
def _erf(x):
    from scipy.special import erf
    return erf(x)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _softsign(x):
    return x / (1 + np.abs(x))


def _sqlu(x):
    return np.where(x > 0, x, np.where(x >= -2, x + x**2 / 4, -1.0))


def _sq_rbf(x):
    a = np.abs(x)
    return np.where(a <= 1, 1 - x**2 / 2, np.where(a < 2, (2 - a) ** 2 / 2, 0.0))


def _smooth_step(x, a):
    mid = -2 * x**3 / a**3 + 3 * x / (2 * a) + 0.5
    return np.where(x >= a / 2, 1.0, np.where(x <= -a / 2, 0.0, mid))


SECOND_BATCH = [
    # (name, parameters (None: the defaults), reference f(x, **parameters))
    ("leaky_relu_03", None, lambda x: np.where(x >= 0, x, 0.3 * x)),
    ("repu_p", None, lambda x, p=2.0: np.where(x > 0, np.abs(x) ** p, 0.0)),
    ("repu_p", {"p": 3.0}, lambda x, p: np.where(x > 0, np.abs(x) ** p, 0.0)),
    ("plu", None, lambda x, a=0.1, c=1.0: np.where(x > c, a * (x - c) + c, np.where(x < -c, a * (x + c) - c, x))),
    ("plu", {"a": 0.3, "c": 2.0},
     lambda x, a, c: np.where(x > c, a * (x - c) + c, np.where(x < -c, a * (x + c) - c, x))),
    ("blrelu", None, lambda x, a=0.01, b=1.0: np.where(x <= 0, a * x, np.where(x < b, x, a * x + (1 - a) * b))),
    ("blrelu", {"a": 0.2, "b": 2.0},
     lambda x, a, b: np.where(x <= 0, a * x, np.where(x < b, x, a * x + (1 - a) * b))),
    ("lelelu", None, lambda x: np.where(x >= 0, x, 0.01 * x)),
    ("lelelu", {"a": 2.5}, lambda x, a: np.where(x >= 0, a * x, 0.01 * a * x)),
    ("soft_modulus_q", None, lambda x: np.where(np.abs(x) <= 1, x**2 * (2 - np.abs(x)), np.abs(x))),
    ("soft_modulus_t", None, lambda x: x * np.tanh(x / 0.01)),
    ("soft_modulus_t", {"beta": 0.5}, lambda x, beta: x * np.tanh(x / beta)),
    ("mrelu", None, lambda x: np.maximum(1 - np.abs(x), 0.0)),
    ("resp", None, lambda x: np.where(x >= 0, 1.5 * x + np.log(2), np.log1p(np.exp(x)))),
    ("resp", {"a": 0.5}, lambda x, a: np.where(x >= 0, a * x + np.log(2), np.log1p(np.exp(x)))),
    ("oaf", None, lambda x: np.maximum(x, 0) + x * _sigmoid(x)),
    ("polu", None, lambda x: np.where(x >= 0, x, 1 / (1 - x) - 1)),
    ("polu", {"a": 2.0}, lambda x, a: np.where(x >= 0, x, (1 - x) ** (-a) - 1)),
    ("fpflu", None, lambda x: np.where(x >= 0, x, x + x**2 / np.sqrt(1 + x**2))),
    ("sqlu", None, _sqlu),
    ("thlu", None, lambda x: np.where(x >= 0, x, np.tanh(x / 2))),
    ("sara", None, lambda x: np.where(x >= 0, x, x / (1 + 0.5 * np.exp(-0.7 * x)))),
    ("sara", {"a": 1.5, "b": 0.3}, lambda x, a, b: np.where(x >= 0, x, x / (1 + a * np.exp(-b * x)))),
    ("lselu", None, lambda x: np.where(x >= 0, 1.05078 * x,
                                       1.05078 * 1.6733 * (np.exp(x) - 1) + 1.05078 * 0.1 * x)),
    ("lselu", {"lam": 2.0, "alpha": 0.5, "beta": 0.3},
     lambda x, lam, alpha, beta: np.where(x >= 0, lam * x, lam * alpha * (np.exp(x) - 1) + lam * beta * x)),
    ("symexp", None, lambda x: np.sign(x) * (np.exp(np.abs(x)) - 1)),
    ("tanhsoft1", None, lambda x: np.tanh(0.87 * x) * np.log(1 + np.exp(x))),
    ("tanhsoft1", {"alpha": 2.0}, lambda x, alpha: np.tanh(alpha * x) * np.log(1 + np.exp(x))),
    ("tanhsoft2", None, lambda x: x * np.tanh(0.6 * np.exp(x))),
    ("tanhsoft2", {"beta": 1.2, "gamma": 0.5}, lambda x, beta, gamma: x * np.tanh(beta * np.exp(gamma * x))),
    ("eis", None, lambda x: x * np.log(1 + np.exp(x)) / np.sqrt(1 + x**2)),
    ("self_arctan", None, lambda x: x * np.arctan(x)),
    ("parametric_logish", None, lambda x: x * np.log(1 + _sigmoid(10 * x))),
    ("parametric_logish", {"a": 2.0, "b": 1.0}, lambda x, a, b: a * x * np.log(1 + _sigmoid(b * x))),
    ("sgelu", None, lambda x: x * _erf(x / np.sqrt(2))),
    ("sgelu", {"a": 0.5}, lambda x, a: a * x * _erf(x / np.sqrt(2))),
    ("loglogish", None, lambda x: x * (1 - np.exp(-np.exp(x)))),
    ("lalu", None, lambda x: x * np.where(x >= 0, 1 - 0.5 * np.exp(-x), 0.5 * np.exp(x))),
    ("double_silu", None, lambda x: x / (1 + np.exp(-x / (1 + np.exp(-x))))),
    ("msilu", None, lambda x: x * _sigmoid(x) + np.exp(-x**2 - 1) / 4),
    ("tsilu", None, lambda x: np.tanh(x / (1 + np.exp(-x)))),
    ("asilu", None, lambda x: np.arctan(x / (1 + np.exp(-x)))),
    ("swat", None, lambda x: x / (1 + np.exp(-np.arctan(x)))),
    ("tsrelu", None, lambda x: x * np.tanh(_sigmoid(x))),
    ("tbsrelu", None, lambda x: x * np.tanh((1 - np.exp(-x)) / (1 + np.exp(-x)))),
    ("resech", None, lambda x: 2 * x / (np.exp(x) + np.exp(-x))),
    ("eanaf", None, lambda x: x * np.exp(x) / (np.exp(x) + 2)),
    ("sinsig", None, lambda x: x * np.sin(np.pi / 2 * _sigmoid(x))),
    ("tanh_sig", None, lambda x: (x + np.tanh(x)) * _sigmoid(x)),
    ("sech_sig", None, lambda x: (x + 1 / np.cosh(x)) * _sigmoid(x)),
    ("generalized_swish", None, lambda x: x * _sigmoid(np.exp(-x))),
    ("sigmoid_derivative", None, lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    ("sigmoid_gumbel", None, lambda x: _sigmoid(x) * np.exp(-np.exp(-x))),
    ("aranda_ordaz", None, lambda x: 1 - (1 + 2 * np.exp(x)) ** (-1 / 2)),
    ("aranda_ordaz", {"lam": 1.0}, lambda x, lam: 1 - (1 + lam * np.exp(x)) ** (-1 / lam)),
    ("new_sigmoid", None, lambda x: (np.exp(x) - np.exp(-x)) / np.sqrt(2 * (np.exp(2 * x) + np.exp(-2 * x)))),
    ("mishra", None, lambda x: 0.5 * _softsign(x) ** 2 + 0.5 * _softsign(x)),
    ("smooth_step", None, lambda x: _smooth_step(x, 2.0)),
    ("smooth_step", {"a": 5.0}, lambda x, a: _smooth_step(x, a)),
    ("tanh_linear", None, lambda x: np.tanh(x) + 0.1 * x),
    ("soft_plus_plus", None, lambda x: np.log(1 + np.exp(x)) + x / 2 - np.log(2)),
    ("soft_plus_plus", {"k": 2.0, "c": 4.0}, lambda x, k, c: np.log(1 + np.exp(k * x)) + x / c - np.log(2)),
    ("comb_hsine", None, lambda x: np.sinh(x) + np.arcsinh(x)),
    ("comb_hsine", {"a": 0.5}, lambda x, a: np.sinh(a * x) + np.arcsinh(a * x)),
    ("hypersinh", None, lambda x: np.where(x > 0, np.sinh(x) / 3, x**3 / 4)),
    ("etanh", None, lambda x: np.exp(x) * np.tanh(x)),
    ("etanh", {"a": 0.3}, lambda x, a: a * np.exp(x) * np.tanh(x)),
    ("bifiring", None, lambda x: np.where(np.abs(x) <= 1, x**2 / 2, np.abs(x) - 0.5)),
    ("bifiring", {"a": 2.0}, lambda x, a: np.where(np.abs(x) <= a, x**2 / (2 * a), np.abs(x) - a / 2)),
    ("sq_rbf", None, _sq_rbf),
    ("polyexp", None, lambda x: (x**2 + x + 1) * np.exp(-x**2)),
    ("polyexp", {"a": 0.5, "b": -1.0, "c": 2.0, "d": 0.25},
     lambda x, a, b, c, d: (a * x**2 + b * x + c) * np.exp(-d * x**2)),
    ("wave", None, lambda x: (1 - x**2) * np.exp(-x**2)),
    ("asu", None, lambda x: x * np.sin(x)),
]
SECOND_BATCH_POINTS = np.concatenate([SPOT, np.array([-7.5, -1.9, -0.99, -0.05, 0.05, 0.6, 1.01, 1.7, 3.3])])


@pytest.mark.parametrize("name, params, ref", SECOND_BATCH,
                         ids=[f"{n}-{'default' if p is None else 'moved'}" for n, p, _ in SECOND_BATCH])
def test_second_batch_published_formula(name, params, ref):
    xs = SECOND_BATCH_POINTS
    got = values_at(name, xs, **(params or {}))
    np.testing.assert_allclose(got, ref(xs, **(params or {})), rtol=1e-5, atol=1e-5)


def test_second_batch_covers_every_new_entry():
    pau = {f"pau_{v.lower()}_{t}" for v, t in PAU_COEFFICIENTS}
    covered = {n for n, _, _ in SECOND_BATCH} | pau
    new = NAMES[NAMES.index("pau_a_relu"):]
    assert set(new) <= covered, sorted(set(new) - covered)
    assert len(new) >= 62


def _pau_target(t, x):
    return {"relu": np.maximum(x, 0.0), "leaky_relu": np.where(x >= 0, x, 0.01 * x), "tanh": np.tanh(x),
            "sigmoid": _sigmoid(x), "gelu": x * (1 + _erf(x / np.sqrt(2))) / 2, "swish": x * _sigmoid(x)}[t]


@pytest.mark.parametrize("version, target", sorted(PAU_COEFFICIENTS))
def test_pau_variants(version, target):
    """PAU: P(x)/Q(x) with P = sum_{k<=5} a_k x^k and, version A (safe PAU), Q = 1 + sum_{k<=4} |b_k x^k|,
    version B, Q = 1 + |sum_{k<=4} b_k x^k| (Molina et al.).  The published initialisation approximates its
    target on [-3, 3], which also checks the coefficient table."""
    num, den = PAU_COEFFICIENTS[(version, target)]
    xs = np.concatenate([SPOT, np.linspace(-3.0, 3.0, 61)])
    p = np.polynomial.polynomial.polyval(xs, num)
    terms = np.stack([b * xs ** (k + 1) for k, b in enumerate(den)])
    q = 1 + (np.abs(terms).sum(axis=0) if version == "A" else np.abs(terms.sum(axis=0)))
    name = f"pau_{version.lower()}_{target}"
    np.testing.assert_allclose(values(name, xs), p / q, rtol=1e-5, atol=1e-5)
    grid = np.linspace(-3.0, 3.0, 601)
    assert np.max(np.abs(values(name, grid) - _pau_target(target, grid))) < 0.05
