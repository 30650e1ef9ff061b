"""Shape properties of a scalar activation, estimated numerically (documented heuristics).

- monotonic: sign of f' on a dense grid of [-10, 10] (4001 points), tolerance 1e-9.
- non_monotone_regions: maximal intervals of that grid where f' opposes its dominant sign.
- bounded_above / bounded_below: f is evaluated on tails ±10^k, k = 1..8 (step 0.5).  Bounded if every
  tail value stays within the range seen on [-10, 10] (covers oscillating functions), or if the tail
  keeps converging (successive decade differences shrink by 4x or more, e.g. softsign, sigmoid).
  Unbounded if a tail value is infinite or the differences do not shrink (x, log|x|, x·sigmoid(x)).
- smooth: no non-smooth head (abs, max, min, heaviside, sign, piecewise) in the protected form.
- zero_centred: |mean f(z)| <= 0.1·std f(z) for the 1000 N(0,1) probes (the output statistic that
  matters for the next layer); mean and std are reported too.
- parity: "odd" / "even" / "none" on the grid.

Normalization-activation candidates (moment ops) get layer properties instead (`analyze_layer`), computed
with the numeric evaluator on the (8, 8, 16) probe tensor PROBE_TENSOR (its positive companion where the
formula is undefined there; groups = 4 of the 8 channels, eps = 1e-5 inside every std, parameters at
their initial values):

- moments / scopes: the moment ops the formula uses (exact form) and their scopes.
- needs_running_statistics: it has batch moments, so a layer keeps running averages for inference.
- batch_dependent: a sample's output changes when the other samples of the batch change.
- channel_independent / group_independent: changing one channel's input changes no other channel's
  output / no output outside that channel's group.
- scale_invariant: f(a*x) == f(x) for a = 2, 10 and 0.5 (positive scales), within LAYER_TOL of
  f's RMS (the eps inside a std makes it inexact: f(0.5*x) vs f(x) differs by ~eps/var);
  scale_deviation is the largest difference / RMS.
- shift_invariant / shift_deviation: the same for f(x + b), b = 0.5, 2 and -1 (-1 left out on the
  positive probe).
"""
from __future__ import annotations

import numpy as np
import sympy

from actsearch.formula import Candidate
from actsearch.identity import PROBE_NORMAL, PROBE_TENSOR, PROBE_TENSOR_POSITIVE
from actsearch.numeric import evaluate

GRID = np.linspace(-10.0, 10.0, 4001)
_TAIL_EXP = np.arange(1.0, 8.01, 0.5)
NON_SMOOTH = (sympy.Abs, sympy.Max, sympy.Min, sympy.Heaviside, sympy.sign, sympy.Piecewise)


def _regions(mask: np.ndarray, x: np.ndarray) -> list[list[float]]:
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if (not m or i == len(mask) - 1) and start is not None:
            end = i if m else i - 1
            out.append([round(float(x[start]), 3), round(float(x[end]), 3)])
            start = None
    return out


def _bounded(tail: np.ndarray, lo: float, hi: float, upper: bool) -> bool:
    """tail: values at increasing |x| (one side).  See module docstring."""
    if not np.all(np.isfinite(tail)):
        return not np.any(tail == (np.inf if upper else -np.inf)) and not np.any(np.isnan(tail))
    vals = tail if upper else -tail
    ref = hi if upper else -lo
    scale = 1e-6 * (1 + abs(ref))
    if np.all(vals <= ref + scale):
        return True
    d = np.abs(np.diff(tail[::2]))  # differences between whole decades
    d = d[-4:]
    if d[-1] <= 1e-9 * (1 + np.max(np.abs(tail))):
        return True
    return bool(np.all(d[1:] <= d[:-1] / 4.0))


def analyze(candidate: Candidate) -> dict:
    if candidate.is_tensor_op:
        return analyze_layer(candidate)
    p = candidate.params
    f = evaluate(candidate.safe_expr, GRID, p)
    g = evaluate(candidate.safe_derivative, GRID, p)
    tol = 1e-9
    finite = np.isfinite(g)
    neg, pos = (g < -tol) & finite, (g > tol) & finite
    if not neg.any() and not pos.any():
        mono, regions = "constant", []
    elif not neg.any() and pos.any():
        mono, regions = "increasing", []
    elif not pos.any() and neg.any():
        mono, regions = "decreasing", []
    else:
        mono = False
        regions = _regions(neg if pos.sum() >= neg.sum() else pos, GRID)
    ff = f[np.isfinite(f)]
    lo, hi = (float(ff.min()), float(ff.max())) if ff.size else (np.nan, np.nan)
    right = evaluate(candidate.safe_expr, 10.0 ** _TAIL_EXP, p)
    left = evaluate(candidate.safe_expr, -(10.0 ** _TAIL_EXP), p)
    bounded_above = _bounded(right, lo, hi, True) and _bounded(left, lo, hi, True)
    bounded_below = _bounded(right, lo, hi, False) and _bounded(left, lo, hi, False)
    z = evaluate(candidate.safe_expr, PROBE_NORMAL, p)
    if np.all(np.isfinite(z)):
        mean, std = float(np.mean(z)), float(np.std(z))
        zero_centred = bool(abs(mean) <= 0.1 * std) if std > 0 else bool(abs(mean) < 1e-12)
    else:
        mean = std = float("nan")
        zero_centred = None
    f_neg = evaluate(candidate.safe_expr, -GRID, p)
    both = np.isfinite(f) & np.isfinite(f_neg)
    if both.any():
        scale = 1e-9 * (1 + np.max(np.abs(f[both])))
        odd = bool(np.all(np.abs(f + f_neg)[both] <= scale)) and both.all()
        even = bool(np.all(np.abs(f - f_neg)[both] <= scale)) and both.all()
    else:
        odd = even = False
    at0 = evaluate(candidate.safe_expr, np.zeros(1), p)[0]
    d0 = evaluate(candidate.safe_derivative, np.zeros(1), p)[0]
    return {
        "kind": "scalar",
        "monotonic": mono,
        "non_monotone_regions": regions,
        "bounded_above": bool(bounded_above),
        "bounded_below": bool(bounded_below),
        "smooth": not any(candidate.safe_expr.has(h) for h in NON_SMOOTH),
        "zero_centred": zero_centred,
        "mean_output_normal": mean,
        "std_output_normal": std,
        "parity": "odd" if odd else "even" if even else "none",
        "f(0)": float(at0),
        "f'(0)": float(d0),
        "range_on_grid": [lo, hi],
    }


# ---- normalization-activation layers ---------------------------------------------------------------
LAYER_SCALES = (2.0, 10.0, 0.5)
LAYER_SHIFTS = (0.5, 2.0, -1.0)
LAYER_TOL = 1e-3      # invariance: max |f(t(x)) - f(x)| <= LAYER_TOL * RMS(f(x))
INDEPENDENCE_TOL = 1e-9  # independence: other outputs change by at most this * RMS(f(x)) (round-off)


def _moments_of(expr: sympy.Expr) -> list:
    from actsearch.primitives import Moment

    return sorted({n for n in sympy.preorder_traversal(expr) if isinstance(n, Moment)}, key=sympy.default_sort_key)


def analyze_layer(candidate: Candidate) -> dict:
    """Layer properties of a moment candidate, numerically (see the module docstring)."""
    from actsearch.primitives.functions import MOMENT_GROUPS

    p, expr = candidate.params, candidate.safe_expr
    moments = _moments_of(candidate.expr)
    scopes = sorted({m.scope for m in moments})
    out = {"kind": "normalization-activation",
           "moments": [sympy.sstr(m) for m in moments],
           "scopes": scopes,
           "needs_running_statistics": "batch" in scopes,
           "inference": ("needs running statistics at inference (batch moments: running averages replace "
                         "them in eval mode)" if "batch" in scopes else
                         "no running statistics: the same computation in training and at inference")}
    x, probe = PROBE_TENSOR, "signed"
    f = evaluate(expr, x, p)
    if not np.isfinite(f).all():
        x, probe = PROBE_TENSOR_POSITIVE, "positive"
        f = evaluate(expr, x, p)
    if not np.isfinite(f).all():
        out.update(probe="none: not finite on the probe tensors", batch_dependent=None, channel_independent=None,
                   group_independent=None, scale_invariant=None, scale_deviation=None, shift_invariant=None,
                   shift_deviation=None)
        return out
    rms = max(float(np.sqrt(np.mean(f ** 2))), 1e-12)

    def deviation(inputs) -> float:
        worst = 0.0
        for xi in inputs:
            d = np.abs(evaluate(expr, xi, p) - f)
            worst = max(worst, float(np.max(d)) if np.isfinite(d).all() else float("inf"))
        return worst / rms

    rng = np.random.default_rng(0)

    def changes(index, outside) -> bool:
        """Does replacing x[index] by other values change f outside `outside` (a boolean mask)?"""
        xp = x.copy()
        xp[index] = np.abs(rng.standard_normal(xp[index].shape) * 1.7 + 0.3) + (0.1 if probe == "positive" else -0.5)
        d = np.abs(evaluate(expr, xp, p) - f)[outside]
        return not (np.isfinite(d).all() and float(np.max(d, initial=0.0)) <= INDEPENDENCE_TOL * rms)

    n, c = x.shape[:2]
    channels = np.arange(c)[None, :, None]
    group_size = c // MOMENT_GROUPS if c % MOMENT_GROUPS == 0 else c
    scale_dev = deviation(a * x for a in LAYER_SCALES)
    shift_dev = deviation(x + b for b in LAYER_SHIFTS if probe == "signed" or b > 0)
    out.update(
        probe=f"{probe} {tuple(x.shape)}, groups {MOMENT_GROUPS}",
        batch_dependent=changes((slice(0, 1),), np.broadcast_to(np.arange(n)[:, None, None] != 0, x.shape)),
        channel_independent=not changes((slice(None), slice(0, 1)), np.broadcast_to(channels != 0, x.shape)),
        group_independent=not changes((slice(None), slice(0, 1)),
                                      np.broadcast_to(channels >= group_size, x.shape)),
        scale_invariant=scale_dev <= LAYER_TOL, scale_deviation=scale_dev,
        shift_invariant=shift_dev <= LAYER_TOL, shift_deviation=shift_dev)
    return out
