"""Parametric activation families from the literature, as candidates of the formula language.

Rational (Padé activation units, Molina, Schramowski & Kersting, ICLR 2020):

    R(x) = P(x) / Q(x),   P(x) = a0 + a1 x + ... + am x^m,   Q(x) = 1 + |b1 x + ... + bn x^n|

(the "safe" denominator of the issue: Q >= 1, so R has no pole), with learnable a_j, b_k initialised,
as PAU does, by a least-squares fit to a named activation on [-3, 3] (`fit_rational`).  The fit is what
no library does for this exact form: numpy's least squares solves the linearised problem
P(x) - y (b1 x + ... + bn x^n) = y (Q without the absolute value, the classical Padé fit; a
rational-function fit in the literal sense), and scipy.optimize.least_squares then refines the
coefficients on the safe form itself, whose residual is what the network starts from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

FIT_RANGE = (-3.0, 3.0)   # PAU's initialisation range
FIT_POINTS = 2001


def rational_names(m: int, n: int) -> tuple[list[str], list[str]]:
    """Parameter names: a0..am (numerator), b1..bn (denominator)."""
    if m < 0 or n < 1:
        raise ValueError(f"a rational (m, n) needs m >= 0 and n >= 1, got ({m}, {n})")
    return [f"a{j}" for j in range(m + 1)], [f"b{k}" for k in range(1, n + 1)]


def rational_formula(m: int, n: int) -> str:
    """The formula text of the safe rational of degree (m, n) in its learnable coefficients."""
    a, b = rational_names(m, n)
    num = " + ".join([a[0]] + [f"{a[j]}*x" if j == 1 else f"{a[j]}*x**{j}" for j in range(1, m + 1)])
    den = " + ".join(f"{b[k - 1]}*x" if k == 1 else f"{b[k - 1]}*x**{k}" for k in range(1, n + 1))
    return f"({num})/(1 + abs({den}))"


def rational_values(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The safe rational at x, in numpy (a: m+1 coefficients, b: n)."""
    p = np.polyval(np.asarray(a, dtype=float)[::-1], x)
    q = 1.0 + np.abs(np.polyval(np.concatenate([np.asarray(b, dtype=float)[::-1], [0.0]]), x))
    return p / q


@dataclass
class RationalFit:
    """The coefficients of a safe rational fitted to a target, and how well they fit."""
    m: int
    n: int
    target: str
    a: list
    b: list
    max_error: float          # on the fit range, of the safe form
    rms_error: float
    linear_max_error: float   # of the linearised (Padé) solution before refinement, on the safe form
    params: dict = field(default_factory=dict)


def _target_function(target: Union[str, Callable]) -> tuple[str, Callable]:
    if callable(target):
        return getattr(target, "__name__", "target"), target
    from actsearch.catalog import load_catalog
    from actsearch.numeric import evaluate

    catalog = load_catalog()
    if target not in catalog:
        raise ValueError(f"unknown target activation {target!r}; see `actsearch known`")
    c = catalog[target].candidate
    return target, lambda x: evaluate(c.expr, x, c.params)


def fit_rational(target: Union[str, Callable] = "leaky_relu", m: int = 5, n: int = 4,
                 fit_range: tuple = FIT_RANGE, points: int = FIT_POINTS) -> RationalFit:
    """Least-squares coefficients of the safe rational (m, n) for `target` (a catalog name, or a numpy
    function) on `fit_range` (see the module docstring)."""
    from scipy.optimize import least_squares

    a_names, b_names = rational_names(m, n)
    name, fn = _target_function(target)
    x = np.linspace(*fit_range, points)
    y = np.asarray(fn(x), dtype=float)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"target {name!r} is not finite on {fit_range}")
    # linearised Padé fit: [x^0..x^m, -y x^1..-y x^n] [a; b] = y
    A = np.concatenate([np.vander(x, m + 1, increasing=True),
                        -y[:, None] * np.vander(x, n + 1, increasing=True)[:, 1:]], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    a0, b0 = coef[:m + 1], coef[m + 1:]
    linear_max = float(np.max(np.abs(rational_values(a0, b0, x) - y)))

    def residual(c):
        return rational_values(c[:m + 1], c[m + 1:], x) - y

    refined = least_squares(residual, coef, method="trf", x_scale="jac", max_nfev=2000)
    # keep the refinement unless it made the least-squares objective worse (it starts from the linear fit)
    c = refined.x if np.sum(residual(refined.x) ** 2) <= np.sum(residual(coef) ** 2) else coef
    err = residual(c)
    a, b = [float(v) for v in c[:m + 1]], [float(v) for v in c[m + 1:]]
    return RationalFit(m, n, name, a, b, float(np.max(np.abs(err))), float(np.sqrt(np.mean(err ** 2))),
                       linear_max, dict(zip(a_names + b_names, a + b)))


def rational_candidate(m: int = 5, n: int = 4, target: Union[str, Callable] = "leaky_relu"):
    """The safe rational (m, n) as a Candidate whose learnable coefficients start at the fit to `target`
    (PAU(5, 4) initialised to leaky ReLU by default)."""
    from actsearch.formula import parse_formula

    fit = fit_rational(target, m, n)
    return parse_formula(rational_formula(m, n), params=fit.params)
