"""Cheap numeric health checks run before a candidate costs any training.

Each failure is a reason string "code: detail" with a stable code:
  non_finite           NaN/Inf (or float32 overflow) of f on the probe set (N(0,1) samples + grid [-10, 10])
  non_finite_gradient  NaN/Inf of f' on the probe set
  constant             f does not vary on the probes
  linear               f is affine on the probes (no nonlinearity to learn with)
  zero_gradient        |f'| ~ 0 on more than `max_zero_gradient_fraction` of the N(0,1) probes
  output_too_large     max |f| on the N(0,1) probes above `max_abs_output`
  gradient_too_large   max |f'| on the N(0,1) probes above `max_abs_gradient`
  duplicate            the candidate's id is already in `seen`
  not_evaluable        the expression contains something the evaluator cannot compute
Magnitude thresholds use the N(0,1) probes because that is where pre-activations live; the grid only
has to be finite.  Finiteness is also checked in float32 (`check_float32`), the dtype kernels train in,
on the probes and a dense grid of [-10, 10] (step 1e-3): an intermediate that overflows float32 makes
f or f' NaN/Inf there (inf*0 in a derivative) although float64 is finite (non_finite /
non_finite_gradient, "in float32"); the dense grid also finds narrow poles the probes step over
(exp(-tan(x)) just past pi/2).  Tensor (normalization-activation) candidates are checked on the (N, C, L) probe
tensor for finiteness, constancy and magnitude; their gradient checks need the kernels (issue #3).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Collection, Optional

import numpy as np

from actsearch.formula import Candidate
from actsearch.identity import PROBE_NORMAL, PROBES, PROBE_TENSOR
from actsearch.numeric import EvaluationError, evaluate

FLOAT32_MAX = float(np.finfo(np.float32).max)
# float32 finiteness probes: the probe set and a dense grid of [-10, 10] (step 1e-3)
FLOAT32_PROBES = np.concatenate([PROBES, np.linspace(-10.0, 10.0, 20001)])


@dataclass(frozen=True)
class ScreeningConfig:
    max_abs_output: float = 1e4
    max_abs_gradient: float = 1e4
    zero_gradient_atol: float = 1e-7
    max_zero_gradient_fraction: float = 0.75
    linear_rtol: float = 1e-6      # residual RMS of the best affine fit, relative to std(f)
    constant_rtol: float = 1e-9    # std(f) relative to 1 + |mean(f)|
    check_float32: bool = True     # f and f' finite in float32 on FLOAT32_PROBES too


@dataclass
class ScreeningResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [r.split(":", 1)[0] for r in self.reasons]

    def to_dict(self) -> dict:
        return asdict(self)


def screen_candidate(candidate: Candidate, config: Optional[ScreeningConfig] = None,
                     seen: Optional[Collection[str]] = None) -> ScreeningResult:
    """Run all checks and return every failing reason (not just the first)."""
    cfg = config or ScreeningConfig()
    reasons: list[str] = []
    if seen is not None and candidate.id in seen:
        reasons.append(f"duplicate: same function as already-seen candidate {candidate.id}")
    try:
        if candidate.is_tensor_op:
            _screen_tensor(candidate, cfg, reasons)
        else:
            _screen_scalar(candidate, cfg, reasons)
    except EvaluationError as exc:
        reasons.append(f"not_evaluable: {exc}")
    return ScreeningResult(passed=not reasons, reasons=reasons)


def _nonfinite(v: np.ndarray) -> np.ndarray:
    return ~np.isfinite(v) | (np.abs(v) > FLOAT32_MAX)


def _screen_values(f: np.ndarray, x: np.ndarray, cfg: ScreeningConfig, reasons: list[str], *, affine_in_x: bool):
    bad = _nonfinite(f)
    if bad.any():
        where = x.ravel()[np.argmax(bad.ravel())] if x.ndim == 1 else "probe tensor"
        reasons.append(f"non_finite: f is NaN/Inf on {int(bad.sum())} of {bad.size} probes (e.g. at x={where})")
        return False
    mean, std = float(f.mean()), float(f.std())
    if std <= cfg.constant_rtol * (1 + abs(mean)):
        reasons.append(f"constant: f = {mean:.6g} on every probe")
        return False
    if affine_in_x:
        A = np.stack([x, np.ones_like(x)], axis=1)
        coef, *_ = np.linalg.lstsq(A, f, rcond=None)
        resid = float(np.sqrt(np.mean((A @ coef - f) ** 2)))
        if resid <= cfg.linear_rtol * std:
            reasons.append(f"linear: f = {coef[0]:.6g}*x + {coef[1]:.6g} on every probe")
            return False
    return True


def _screen_scalar(c: Candidate, cfg: ScreeningConfig, reasons: list[str]) -> None:
    f = evaluate(c.safe_expr, PROBES, c.params)
    if not _screen_values(f, PROBES, cfg, reasons, affine_in_x=True):
        return
    n = PROBE_NORMAL.size
    peak = float(np.max(np.abs(f[:n])))
    if peak > cfg.max_abs_output:
        reasons.append(f"output_too_large: max |f| = {peak:.3g} on N(0,1) probes (limit {cfg.max_abs_output:g})")
    g = evaluate(c.safe_derivative, PROBES, c.params)
    bad = _nonfinite(g)
    if bad.any():
        reasons.append(f"non_finite_gradient: f' is NaN/Inf on {int(bad.sum())} of {bad.size} probes "
                       f"(e.g. at x={PROBES[np.argmax(bad)]:.4g})")
        return
    gn = np.abs(g[:n])
    zero_frac = float(np.mean(gn <= cfg.zero_gradient_atol))
    if zero_frac > cfg.max_zero_gradient_fraction:
        reasons.append(f"zero_gradient: f' = 0 on {zero_frac:.0%} of N(0,1) probes "
                       f"(limit {cfg.max_zero_gradient_fraction:.0%})")
    gpeak = float(gn.max())
    if gpeak > cfg.max_abs_gradient:
        reasons.append(f"gradient_too_large: max |f'| = {gpeak:.3g} on N(0,1) probes (limit {cfg.max_abs_gradient:g})")
    if cfg.check_float32:
        _screen_float32(c, reasons)


def _screen_float32(c: Candidate, reasons: list[str]) -> None:
    """f and f' finite in float32 (as the kernels compute them) on FLOAT32_PROBES."""
    for code, what, expr in (("non_finite", "f", c.safe_expr), ("non_finite_gradient", "f'", c.safe_derivative)):
        v = evaluate(expr, FLOAT32_PROBES, c.params, dtype=np.float32)
        bad = ~np.isfinite(v)
        if bad.any():
            reasons.append(f"{code}: {what} is NaN/Inf in float32 on {int(bad.sum())} of {bad.size} probes "
                           f"(e.g. at x={FLOAT32_PROBES[np.argmax(bad)]:.4g})")
            return


def _screen_tensor(c: Candidate, cfg: ScreeningConfig, reasons: list[str]) -> None:
    f = evaluate(c.safe_expr, PROBE_TENSOR, c.params)
    if not _screen_values(f, PROBE_TENSOR, cfg, reasons, affine_in_x=False):
        return
    peak = float(np.max(np.abs(f)))
    if peak > cfg.max_abs_output:
        reasons.append(f"output_too_large: max |f| = {peak:.3g} on the probe tensor (limit {cfg.max_abs_output:g})")
