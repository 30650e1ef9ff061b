"""Parametric families (actsearch.families): the safe rational (PAU) and its least-squares initialisation."""
from __future__ import annotations

import numpy as np
import pytest

from actsearch.families import fit_rational, rational_candidate, rational_formula, rational_values
from actsearch.formula import parse_formula
from actsearch.numeric import evaluate


def test_formula_text():
    assert rational_formula(2, 1) == "(a0 + a1*x + a2*x**2)/(1 + abs(b1*x))"
    with pytest.raises(ValueError, match=r"\(m, n\)"):
        rational_formula(3, 0)


@pytest.mark.parametrize("target,m,n,max_error", [("leaky_relu", 5, 4, 0.04), ("relu", 5, 4, 0.04),
                                                  ("tanh", 3, 2, 0.005), ("gelu", 5, 4, 0.002), ("silu", 4, 4, 0.001)])
def test_fits_to_named_activations(target, m, n, max_error):
    fit = fit_rational(target, m, n)
    x = np.linspace(-3, 3, 2001)
    from actsearch.catalog import load_catalog

    c = load_catalog()[target].candidate
    err = rational_values(fit.a, fit.b, x) - evaluate(c.expr, x, c.params)
    assert np.max(np.abs(err)) == pytest.approx(fit.max_error) and fit.max_error < max_error
    assert fit.rms_error <= fit.max_error
    # the refinement never loses to the linearised Padé solution it starts from (in least squares)
    assert fit.rms_error <= np.sqrt(np.mean((rational_values(*_linear(x, target, m, n), x)
                                             - evaluate(c.expr, x, c.params)) ** 2)) + 1e-12


def _linear(x, target, m, n):
    from actsearch.catalog import load_catalog

    c = load_catalog()[target].candidate
    y = evaluate(c.expr, x, c.params)
    A = np.concatenate([np.vander(x, m + 1, increasing=True), -y[:, None] * np.vander(x, n + 1, increasing=True)[:, 1:]],
                       axis=1)
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return coef[:m + 1], coef[m + 1:]


def test_a_numpy_target_and_its_exact_recovery():
    """A target that is itself a safe rational is recovered to rounding."""
    a, b = [0.1, 1.0, 0.5], [0.3]
    fit = fit_rational(lambda x: rational_values(a, b, x), 2, 1)
    assert fit.max_error < 1e-8


def test_pau_candidate_starts_at_the_fit():
    c = rational_candidate(5, 4, "leaky_relu")
    assert set(c.params) == {f"a{j}" for j in range(6)} | {f"b{k}" for k in range(1, 5)}
    x = np.linspace(-3, 3, 61)
    fit = fit_rational("leaky_relu", 5, 4)
    np.testing.assert_allclose(evaluate(c.expr, x, c.params), rational_values(fit.a, fit.b, x), rtol=1e-9, atol=1e-12)
    # its denominator is >= 1 everywhere: no pole, whatever the coefficients learn
    d = parse_formula("1 + abs(b1*x + b2*x**2)", params={"b1": -3.0, "b2": 7.0})
    assert np.all(evaluate(d.expr, np.linspace(-50, 50, 1001), d.params) >= 1)
    with pytest.raises(ValueError, match="unknown target"):
        fit_rational("no_such_activation")


def test_bench_families_runs_every_family(tmp_path):
    """benchmarks/bench_families.py in small: every family trains with its learnable parameters next to
    the baselines, with paired comparisons per baseline."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_families.py"
    spec = importlib.util.spec_from_file_location("bench_families", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "fam.json"
    result = mod.main(["--tasks", "mnist1d-mlp", "--seeds", "2", "--steps", "5", "--out", str(out)])
    assert set(result["candidates"]) == {"pau_5_4_leaky_relu", "apa", "xgelu", "polyrelu", "squared_relu"}
    for d in result["candidates"].values():
        rep = d["report"]["tasks"]["mnist1d-mlp"]
        assert len(rep["candidate"]["per_seed"]) == 2 and set(rep["vs"]) == {"relu", "gelu", "silu"}
    assert len(result["candidates"]["pau_5_4_leaky_relu"]["params"]) == 10
    assert out.stat().st_size > 0
