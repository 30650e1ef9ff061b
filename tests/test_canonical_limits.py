"""The canonical-form invariant (issue 22 item 11; issue 21's atan2 candidate).

Every Candidate that exists satisfies ``parse_formula(format_formula(c), params=c.params).id == c.id``:
`check_canonical` (called by ``Candidate.from_expr``, so by ``parse_formula`` and every search space)
enforces all of ``Limits`` on the final canonical form, and admits only the functions the primitives
build.  Over-limit forms raise FormulaError naming the limit.

The randomized round trip is seeded (reproducible); set ``ACTSEARCH_FUZZ_RANDOM=1`` for a fresh seed
and ``ACTSEARCH_FUZZ_EXAMPLES=N`` for more genomes per space.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import sympy

from actsearch.formula import (X, Candidate, FormulaError, Limits, check_canonical, format_formula, parse_formula,
                               supported_functions)
from actsearch.numeric import evaluate
from actsearch.primitives.registry import COMPLEX_PARTS
from actsearch.search_spaces import SPACES, get_space

_FUZZ_RANDOM = os.environ.get("ACTSEARCH_FUZZ_RANDOM", "") not in ("", "0")
_EXAMPLES = int(os.environ.get("ACTSEARCH_FUZZ_EXAMPLES", "0") or 0) or 60
_SEED = random.SystemRandom().randrange(2**32) if _FUZZ_RANDOM else 20240522


def assert_round_trips(c: Candidate) -> None:
    printed = format_formula(c)
    again = parse_formula(printed, params=c.params)
    assert again.id == c.id, (printed, format_formula(again))


def functions_of(expr) -> set:
    return {type(n) for n in sympy.preorder_traversal(expr) if isinstance(n, sympy.Function)}


# ---- (a) issue 22 item 11: limits on the canonical form -------------------------------------------------
def test_product_of_24_x_is_refused_naming_max_exponent():
    with pytest.raises(FormulaError, match="max_exponent") as info:
        parse_formula("*".join(["x"] * 24))  # each node is within every limit; sympy folds it to x**24
    assert "16" in str(info.value)
    c = parse_formula("*".join(["x"] * 16))  # at the limit: accepted, and prints as parseable x**16
    assert c.formula == "x**16"
    assert_round_trips(c)


@pytest.mark.parametrize("text", ["x*1e100*E", "1e100*x*pi", "x/1e-100*E"])
def test_folded_constant_coefficient_is_refused_naming_max_constant(text):
    # x*1e100*E canonicalizes to 1e+100*E*x, which reparses with the constant node 1e+100*E = 2.7e100
    with pytest.raises(FormulaError, match="max_constant"):
        parse_formula(text)


def test_constant_coefficient_within_the_bound_round_trips():
    c = parse_formula("x*1e99*E")
    assert_round_trips(c)


@pytest.mark.parametrize("limits, name", [
    (Limits(max_length=30), "max_length"),  # gelu_tanh(x) prints as 52 characters
    (Limits(max_nodes=20), "max_nodes"),
    (Limits(max_depth=3), "max_depth"),
])
def test_every_limit_applies_to_the_printed_canonical_form(limits, name):
    """A macro is short to type but its canonical form is its expansion: that is what must reparse."""
    with pytest.raises(FormulaError, match=name):
        parse_formula("gelu_tanh(x)", limits=limits)
    assert parse_formula("gelu_tanh(x)").formula  # within the default limits


def test_from_expr_enforces_the_invariant():
    """from_expr is the one place: it refuses what sympy built, not only what the parser built."""
    with pytest.raises(FormulaError, match="max_exponent"):
        Candidate.from_expr(X**24)
    with pytest.raises(FormulaError, match="max_constant"):
        Candidate.from_expr(sympy.Float(1e100) * sympy.E * X)
    with pytest.raises(FormulaError, match="atan2"):
        Candidate.from_expr(X + sympy.cos(sympy.atan2(0, X) / 2))
    with pytest.raises(FormulaError, match="Piecewise"):
        Candidate.from_expr(sympy.Piecewise((X, X > 0), (2 * X, True)))
    with pytest.raises(FormulaError, match="undeclared symbol 'y'"):
        Candidate.from_expr(X * sympy.Symbol("y", real=True))
    beta = sympy.Symbol("beta", real=True)
    c = Candidate.from_expr(X * beta, {"beta": 1.5})
    check_canonical(c.expr, c.params)
    assert_round_trips(c)


def test_supported_functions_are_what_the_primitives_build():
    names = {f.__name__ for f in supported_functions()}
    assert {"exp", "log", "Abs", "sigmoid", "softplus", "Heaviside", "batch_std"} <= names
    assert not names & {"re", "im", "arg", "atan2", "conjugate", "Piecewise"}


def test_search_space_candidates_get_the_check(monkeypatch):
    import actsearch.formula as formula

    seen = []
    real = formula.check_canonical
    monkeypatch.setattr(formula, "check_canonical", lambda expr, *a, **k: (seen.append(expr), real(expr, *a, **k)))
    for name in SPACES:
        space = get_space(name)
        space.candidate(space.sample(random.Random(3)))
    assert len(seen) == len(SPACES)
    # an over-limit genome is a FormulaError naming the limit (the search records a rejection)
    with pytest.raises(FormulaError, match="max_exponent"):
        get_space("swish").candidate([["mul", "cube", "square"], ["mul", "cube", "square"]])  # x**17


# ---- (b) issue 21: sympy's complex Abs (atan2) ------------------------------------------------------------
ISSUE_21_GENOME = [["gauss_dist", "sin", "sqrt"], ["laplace_dist", "abs", "neg"]]


def test_issue_21_swish_genome_has_no_atan2_and_round_trips():
    c = get_space("swish").candidate(ISSUE_21_GENOME)
    assert "atan2" not in c.formula and not c.expr.has(*COMPLEX_PARTS), c.formula
    assert functions_of(c.expr) <= supported_functions()
    assert c.fingerprint.shape[0] == 3 and c.id.startswith("act_")  # evaluates (was EvaluationError)
    assert_round_trips(c)
    # the same function: |u| of laplace_dist's argument is kept, |exp(.)| of gauss_dist is exp(.)
    x = np.linspace(-3, 3, 61)
    with np.errstate(all="ignore"):
        g = np.exp(-(np.sin(x) - np.sqrt(x)) ** 2)
        want = np.exp(-np.abs(np.abs(g) - (-x)))
    np.testing.assert_allclose(evaluate(c.expr, x, c.params), want, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("text, numpy_fn", [
    ("abs(exp(sqrt(x)))", lambda x: np.abs(np.exp(np.sqrt(x)))),
    ("abs(x*exp(sqrt(x)))", lambda x: np.abs(x * np.exp(np.sqrt(x)))),
    ("abs(exp(x)**sqrt(x))", lambda x: np.abs(np.exp(x) ** np.sqrt(x))),
    ("abs(pow(abs(x), sqrt(x)))", lambda x: np.abs(np.abs(x) ** np.sqrt(x))),
    ("abs(pow(abs(x), sqrt(x))/(1 + exp(-x)))", lambda x: np.abs(np.abs(x) ** np.sqrt(x) / (1 + np.exp(-x)))),
    ("softsign(exp(sqrt(x)))", lambda x: np.exp(np.sqrt(x)) / (1 + np.abs(np.exp(np.sqrt(x))))),
    ("laplace_dist(exp(log(x)*x), 0)", lambda x: np.exp(-np.abs(np.exp(np.log(x) * x)))),
    ("abs(log(x)**2) + abs(sqrt(x))", lambda x: np.abs(np.log(x) ** 2) + np.abs(np.sqrt(x))),
    ("abs(x**beta)", lambda x: np.abs(x**0.75)),
])
def test_abs_of_possibly_complex_subexpressions_stays_real(text, numpy_fn):
    """sympy's Abs rewrote |exp(z)| as exp(re(z)) when it could not prove z real (z = sqrt(x) is
    complex for x < 0 to sympy), spelling re(sqrt(x)) with atan2.  real_abs evaluates |u| with the
    non-real-provable parts standing for real symbols: no atan2, the same real function."""
    c = parse_formula(text, params={"beta": 0.75})
    assert not c.expr.has(*COMPLEX_PARTS), c.formula
    x = np.linspace(-4, 4, 81)
    with np.errstate(all="ignore"):
        want = numpy_fn(x)
    np.testing.assert_allclose(evaluate(c.expr, x, c.params), want, rtol=1e-12, equal_nan=True)
    assert c.id.startswith("act_")
    assert_round_trips(c)


# ---- randomized round trip over every search space -----------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPACES))
def test_random_candidates_of_every_space_round_trip(name):
    """Every candidate a space builds without FormulaError contains only supported functions, has an id
    and round-trips to the same id (genomes: samples and one mutation of each)."""
    space = get_space(name)
    rng = random.Random(f"{_SEED}-{name}")
    built = 0
    for _ in range(_EXAMPLES):
        genome = space.sample(rng)
        for g in (genome, space.mutate(genome, rng)):
            try:
                c = space.candidate(g)
            except FormulaError as exc:
                assert str(exc), g
                continue
            built += 1
            assert functions_of(c.expr) <= supported_functions(), (g, c.formula)
            assert c.id.startswith("act_"), g
            printed = format_formula(c)
            again = parse_formula(printed, params=c.params)
            assert again.id == c.id, (f"seed {_SEED}", g, printed, format_formula(again))
    assert built >= _EXAMPLES  # most genomes build
