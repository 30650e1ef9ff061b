"""The stability rejection protocol of normalization-activation layers (EvoNorm, Liu et al. 2020).

A layer can train on its probe inputs and still blow up when the statistics of its input move during
training: a normalizer whose denominator can reach zero (x/instance_std(x) on a channel that has become
constant), an exp of an unnormalized input.  EvoNorm rejects such layers before training by a worst
case over perturbed inputs of the gradient norm; this module does the same, without training:

  g(x) = || d<f(x), r> / dx ||_2 / ||r||_2        (r: a fixed random projection of the output)

is the layer's input-gradient norm at x (f is the candidate's formula with its parameters at their
initial values, moments over an (N, C, H, W) tensor, `groups` for group moments).  Starting at a
standard normal x0, `steps` steps of signed gradient ascent on g move x within the box
|x - x0| <= eps (elementwise), and the largest g seen is the worst case.  The same search is run for
the reference layer BN-ReLU (relu((x - batch_mean(x)) / batch_std(x))), and the candidate is
rejected as unstable when its worst case is non-finite or exceeds RATIO_THRESHOLD times BN-ReLU's.

Why relative: the absolute gradient norm of any layer depends on the input size and on the
normalisation convention; BN-ReLU's, measured the same way, is the scale a network is known to
train with.  Why 1e3: B0 and S0 are within a small factor of BN-ReLU (their worst cases are measured
in tests/test_layer_stability.py), while layers with an unguarded zero denominator reach 1e4 and more
within the box; the threshold sits between.  The ascent uses double backward through the generated
torch forward of the candidate (plain autograd: moment candidates have no fused backward).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch

RATIO_THRESHOLD = 1e3
REFERENCE_FORMULA = "relu((x - batch_mean(x))/batch_std(x))"


@dataclass
class StabilityResult:
    """The worst-case input-gradient norms of a layer and of BN-ReLU, and the verdict."""
    passed: bool
    worst: float             # the candidate's largest g over the ascent (inf / nan when it diverged)
    at_start: float          # g(x0)
    reference_worst: float   # BN-ReLU's largest g over the same ascent
    ratio: float             # worst / reference_worst
    threshold: float
    reason: Optional[str]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def worst_gradient_norm(candidate, shape=(8, 16, 6, 6), groups: int = 4, steps: int = 8, eps: float = 0.5,
                        seed: int = 0) -> tuple[float, float]:
    """(g at the start, the largest g over `steps` signed-gradient ascent steps in the eps-box), float64."""
    from actsearch.kernels.fused import fused_activation

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    r = torch.randn(shape, generator=gen, dtype=torch.float64)
    r = r / r.norm()
    params = [torch.tensor(float(v), dtype=torch.float64) for v in candidate.params.values()]
    step = 2.5 * eps / max(steps, 1)

    def g_of(x: torch.Tensor, create_graph: bool) -> torch.Tensor:
        y = fused_activation(candidate, x, *params, compiled=False, groups=groups)
        (gx,) = torch.autograd.grad((y * r).sum(), x, create_graph=create_graph)
        return gx.norm()

    delta = torch.zeros_like(x0)
    worst = start = math.nan
    for k in range(steps + 1):
        x = (x0 + delta).requires_grad_(True)
        try:
            g = g_of(x, create_graph=k < steps)
        except (RuntimeError, ValueError, ZeroDivisionError):
            return (start, math.inf)
        value = float(g.detach())
        if k == 0:
            start = value
        if not math.isfinite(value):
            return (start, math.inf)
        worst = value if not worst >= value else worst
        if k == steps or not g.requires_grad:  # (a layer linear in x: g does not depend on x)
            break
        (d,) = torch.autograd.grad(g, x, allow_unused=True)
        if d is None:
            break
        with torch.no_grad():
            delta = (delta + step * torch.sign(d)).clamp_(-eps, eps)
    return (start, worst)


_REFERENCE: dict = {}


def check_stability(candidate, shape=(8, 16, 6, 6), groups: int = 4, steps: int = 8, eps: float = 0.5,
                    seed: int = 0, threshold: float = RATIO_THRESHOLD) -> StabilityResult:
    """The stability protocol (module docstring) for one layer candidate."""
    from actsearch.formula import parse_formula

    t0 = time.perf_counter()
    key = (tuple(shape), groups, steps, eps, seed)
    if key not in _REFERENCE:
        _REFERENCE[key] = worst_gradient_norm(parse_formula(REFERENCE_FORMULA), shape, groups, steps, eps, seed)[1]
    ref = _REFERENCE[key]
    start, worst = worst_gradient_norm(candidate, shape, groups, steps, eps, seed)
    ratio = worst / ref if ref > 0 else math.inf
    reason = None
    if not math.isfinite(worst):
        reason = f"unstable: the input gradient diverges under an adversarial input perturbation (|dx| <= {eps})"
    elif ratio > threshold:
        reason = (f"unstable: worst-case input-gradient norm {worst:.3g} is {ratio:.3g}x BN-ReLU's ({ref:.3g}) "
                  f"under an adversarial input perturbation (|dx| <= {eps}); threshold {threshold:g}x")
    return StabilityResult(reason is None, worst, start, ref, ratio, threshold, reason, time.perf_counter() - t0)
