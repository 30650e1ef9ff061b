"""Vectorizable torch spellings of functions Inductor compiles to slow or inaccurate code on CPU.

expm1 and tanh: Inductor lowers torch.expm1 to exp(u) - 1, which cancels near 0, and its Sleef tanh is
several times slower than its exp; both get a Taylor branch near 0 (see their comments).
Inductor lowers torch.special.i0e / i1e and torch.erfc to scalar (per-element) C++ calls: measured on
4M fp32 elements, 2 threads, i0e 52 ms, i1e 26 ms, erfc 6.0 ms, against 0.7 ms for a copy and 0.8 ms
for exp.  Spelled here as arithmetic on tensors, Inductor fuses and vectorizes them (i0e/i1e ~2 ms,
erfc 2.6 ms).  Only the Inductor spelling uses them (TorchCodePrinter(inductor=True)); eager code,
exports and float64 tests keep torch's functions, and tests/test_fast_math.py bounds the error of
every function here against scipy in float32 and float64.

Bessel, Cephes' split at |x| = 8: below, the power series of I0(x) and I1(x)/x times e^-|x| (positive
terms, no cancellation); above, Chebyshev series in s = 16/|x| - 1 of sqrt|x| i0e(x) and sqrt|x| i1e(|x|),
interpolated from scipy by `fit_coefficients` (a test checks the literals against a fresh fit) and
evaluated in the power basis (`chebyshev_to_power`) by Horner's rule.
Compiling them costs time (a candidate with i1e, whose derivative needs i0e too, compiles in ~4 s
instead of ~1 s) but each call is ~6x faster, so the fused op repays it within ~40 calls.
"""
from __future__ import annotations

import math

import torch

# `fit_coefficients()` output: Chebyshev coefficients (numpy's convention: f = sum c_k T_k).
I0E_OUTER = (
    0.40224520550705467, 0.0033691164782559957, 6.88975834673311e-05, 2.891370517044134e-06,
    2.0489186851047058e-07, 2.266673142760833e-08, 3.3962168022316774e-09, 4.936749509187877e-10,
    1.1171441549606697e-11, -2.9704960713416995e-11,
)
I1E_OUTER = (
    0.38928811750913983, -0.009761097491361781, -0.00011058893876074727, -3.88256480507998e-06,
    -2.5122363421781203e-07, -2.6314731210296676e-08, -3.835359180248688e-09, -5.585660045603902e-10,
    -1.8254769917902536e-11, 3.0490410196648555e-11,
)

def fit_coefficients(degree: int = 9) -> dict[str, tuple[float, ...]]:
    """Chebyshev interpolants of sqrt(x) i0e(x) and sqrt(x) i1e(x) in s = 16/x - 1, x > 8 (needs numpy
    and scipy; not called at run time: a test checks the literals above against a fresh fit)."""
    import numpy as np
    import scipy.special as sps
    from numpy.polynomial import chebyshev as C

    def outer(fn):
        def g(s):  # s -> -1 is x -> inf, where both tend to 1/sqrt(2 pi)
            s = np.asarray(s, float)
            x = 16.0 / np.maximum(s + 1.0, 1e-300)
            return np.where(s <= -1.0, 1.0 / np.sqrt(2 * np.pi), fn(x) * np.sqrt(x))
        return g

    fits = {"I0E_OUTER": C.chebinterpolate(outer(sps.i0e), degree),
            "I1E_OUTER": C.chebinterpolate(outer(sps.i1e), degree)}
    return {k: tuple(float(c) for c in v) for k, v in fits.items()}


# Power series for x <= 8: I0(x) = sum y^k/(k!)^2, I1(x)/x = 1/2 sum y^k/(k!(k+1)!), y = x^2/4.  All
# terms are positive (no cancellation); 16 terms leave a truncation error of 1e-10 at x = 8.
I0_SERIES = tuple(1.0 / math.factorial(k) ** 2 for k in range(16))
I1_SERIES = tuple(0.5 / (math.factorial(k) * math.factorial(k + 1)) for k in range(16))


def _is_low_precision(u: torch.Tensor) -> bool:
    return u.dtype in (torch.float32, torch.float16, torch.bfloat16)


def chebyshev_to_power(coeffs: tuple) -> tuple:
    """sum_k c_k T_k(t) as sum_k a_k t^k (T_{k+1} = 2t T_k - T_{k-1}), evaluated by Horner at run time.

    Clenshaw's recurrence reads each b_k twice (in b_{k-1} and b_{k-2}), and Inductor inlines a
    pointwise value into every reader, so compiling it cost Fibonacci-many re-expansions: the suite's
    bessel_i1e candidate took 17-19 s to compile, 15 s of it Inductor's Python, against a few seconds
    with Horner, which reads each partial sum once.  The power form loses nothing here: the
    coefficients decay fast (|c_9| ~ 3e-11), so sum |a_k| is within 1.1x of the value on [-1, 1]."""
    a = [0.0] * len(coeffs)
    t_prev, t_k = [], [1.0]  # T_{k-1}, T_k as power coefficients
    for k, c in enumerate(coeffs):
        if k == 1:
            t_prev, t_k = t_k, [0.0, 1.0]
        elif k >= 2:
            nxt = [0.0] + [2.0 * v for v in t_k]
            for i, v in enumerate(t_prev):
                nxt[i] -= v
            t_prev, t_k = t_k, nxt
        for i, v in enumerate(t_k):
            a[i] += c * v
    return tuple(a)


I0E_OUTER_POWER = chebyshev_to_power(I0E_OUTER)
I1E_OUTER_POWER = chebyshev_to_power(I1E_OUTER)


def _outer(z: torch.Tensor):
    zs = torch.clamp_min(z, 8.0)
    return 16.0 / zs - 1.0, zs


def _horner(y: torch.Tensor, coeffs: tuple) -> torch.Tensor:
    out = y * coeffs[-1] + coeffs[-2]
    for c in reversed(coeffs[:-2]):
        out = out * y + c
    return out


def _inner(z: torch.Tensor, series: tuple) -> torch.Tensor:
    """e^-z times a power series in y = z^2/4, for 0 <= z <= 8 (clamped: the branch torch.where
    discards must stay finite, a NaN there would poison autograd)."""
    z = torch.clamp_max(z, 8.0)
    return _horner(0.25 * z * z, series) * torch.exp(-z)


def bessel_i0e(u: torch.Tensor) -> torch.Tensor:
    if not _is_low_precision(u):
        return torch.special.i0e(u)
    z = torch.abs(u)
    s, zs = _outer(z)
    return torch.where(z <= 8.0, _inner(z, I0_SERIES), _horner(s, I0E_OUTER_POWER) * torch.rsqrt(zs))


def bessel_i1e_over_x(u: torch.Tensor) -> torch.Tensor:
    """i1e(x)/x, 1/2 at 0 (even)."""
    if not _is_low_precision(u):
        return torch.where(u == 0, 0.5, torch.special.i1e(u) / torch.where(u == 0, 1.0, u))
    z = torch.abs(u)
    s, zs = _outer(z)
    return torch.where(z <= 8.0, _inner(z, I1_SERIES), _horner(s, I1E_OUTER_POWER) * torch.rsqrt(zs) / zs)


def bessel_i1e(u: torch.Tensor) -> torch.Tensor:
    if not _is_low_precision(u):
        return torch.special.i1e(u)
    z = torch.abs(u)
    s, zs = _outer(z)
    # the outer branch is not u * (i1e(x)/x): at u = inf that is inf * 0
    return torch.where(z <= 8.0, u * _inner(z, I1_SERIES), _horner(s, I1E_OUTER_POWER) * torch.rsqrt(zs) * torch.sign(u))


# Numerical Recipes' erfcc (Chebyshev fit, fractional error < 1.2e-7 in exact arithmetic)
ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
               1.48851587, -0.82215223, 0.17087277)


def erfc(u: torch.Tensor) -> torch.Tensor:
    """erfc for float32 (and lower) as exp(-z^2 + P(t)) t, t = 1/(1 + z/2); float64 keeps torch.erfc,
    whose accuracy the fit (1.2e-7) does not reach."""
    if not _is_low_precision(u):
        return torch.special.erfc(u)
    z = torch.clamp_max(torch.abs(u), 16.0)  # erfc(10.1) underflows already; keeps the split below finite
    t = 1.0 / (1.0 + 0.5 * z)
    p = ERFC_COEFFS[-1]
    for c in reversed(ERFC_COEFFS[:-1]):
        p = t * p + c
    # exp(-z^2) with z^2 rounded once would be off by up to z^2 * 6e-8 relative (7e-6 at z = 8): split
    # z = zh + (z - zh) with zh on a 1/256 grid, so zh^2 is exact in float32 (z < 16; beyond ~10 erfc
    # underflows anyway) and the small cross term carries the rest.
    zh = torch.round(z * 256.0) * (1.0 / 256.0)
    e = t * torch.exp(-zh * zh) * torch.exp((zh - z) * (z + zh) + p)
    return torch.where(u >= 0.0, e, 2.0 - e)


# erf for float32 from the exp(-u^2) its caller computes anyway (codegen passes the derivative's
# exp(-u^2), which every f' of an erf candidate contains): Abramowitz & Stegun 7.1.26 (the algorithm of
# Inductor's own vectorized erf, 1.5e-7 absolute in exact arithmetic) for |u| >= 0.5, and below it
# erf's Taylor series (6 terms: truncation 0.5^13/9360 ~ 1.3e-8 relative), which keeps the relative
# accuracy near 0 that A&S (and Inductor's erf) lose: 3.0e-7 absolute and 5.7e-7 relative error in
# float32 over [-6, 6] plus tiny arguments, against 4.9e-7 and 1.0 for A&S alone.
ERF_AS = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
ERF_SERIES = tuple((-1) ** k * 2.0 / math.sqrt(math.pi) / (math.factorial(k) * (2 * k + 1)) for k in range(6))


def erf_exp(u: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """erf(u) given e = exp(-u^2).  Inductor's erf calls Sleef's exp itself, so GELU's f and f' called it
    twice for the same exp(-x^2/2); sharing it made GELU's fused fwd+bwd ~20% faster (see README)."""
    if not _is_low_precision(u):
        return torch.erf(u)
    a = torch.abs(u)
    t = 1.0 / (1.0 + 0.3275911 * a)
    r = 1.0 - _horner(t, ERF_AS) * t * e
    us = torch.clamp(u, -0.5, 0.5)
    return torch.where(a < 0.5, us * _horner(us * us, ERF_SERIES), torch.where(u < 0.0, -r, r))


# expm1's Taylor series below a threshold, where exp(u) - 1 cancels: truncation error relative to u is
# about |u|^n/(n+1)! (float32: 0.7^9/10! = 1.1e-8; float64: 0.5^17/18! = 1.2e-21).  Above it exp(u) - 1
# loses at most e^|u|/|e^u - 1| ulp of exp (float32 at 0.7: 2x; float64 at 0.5: 2.6x).
EXPM1_SERIES_32 = tuple(1.0 / math.factorial(k) for k in range(1, 10))
EXPM1_SERIES_64 = tuple(1.0 / math.factorial(k) for k in range(1, 18))


def expm1(u: torch.Tensor) -> torch.Tensor:
    """expm1 that stays accurate under Inductor, which lowers torch.expm1 to exp(u) - 1 on CPU (relative
    error 0.57 at u = 7.6e-8 in float32, and tanh spelled through it 0.21): the Taylor series near 0."""
    low = _is_low_precision(u)
    series, below = (EXPM1_SERIES_32, 0.7) if low else (EXPM1_SERIES_64, 0.5)
    small = torch.clamp(u, -below, below)  # the discarded branch must stay finite (double backward)
    return torch.where(torch.abs(u) < below, small * _horner(small, series), torch.exp(u) - 1.0)


# tanh's Taylor series below |u| = 0.35 (6 terms: truncation ~1.5e-8 relative), where e/(e + 2) with
# e = exp(2u) - 1 loses ~6e-8/(2|u|); cheaper than e = expm1(2u) with expm1's own branch (measured on
# 4M floats, x*tanh(exp(x)) forward with f': 7.1-7.6 ms against 8.9; the cancelling exp - 1 alone 5.5).
TANH_SERIES = (1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835, -1382.0 / 155925)


def tanh(u: torch.Tensor) -> torch.Tensor:
    """tanh as e/(e + 2), e = exp(2u) - 1, for Inductor, whose own (Sleef) tanh is several times slower
    than its exp; the clamp keeps e finite (tanh(20) = 1 - 8.5e-18: exact even in float64)."""
    v = torch.clamp(u, -20.0, 20.0)
    if not _is_low_precision(u):
        e = expm1(2.0 * v)
        return e / (e + 2.0)
    e = torch.exp(2.0 * v) - 1.0
    vs = torch.clamp(u, -0.35, 0.35)
    return torch.where(torch.abs(u) < 0.35, vs * _horner(vs * vs, TANH_SERIES), e / (e + 2.0))


# what a generated Inductor module may call (printers.py), and what codegen embeds for them, in order
CALLABLE = ("bessel_i0e", "bessel_i1e", "bessel_i1e_over_x", "erfc", "erf_exp", "expm1", "tanh")
_CONSTANTS = ("I0E_OUTER_POWER", "I1E_OUTER_POWER", "ERF_AS", "ERF_SERIES", "I0_SERIES", "I1_SERIES", "ERFC_COEFFS", "EXPM1_SERIES_32", "EXPM1_SERIES_64",
              "TANH_SERIES")
_FUNCTIONS = (_is_low_precision, _outer, _horner, _inner, bessel_i0e, bessel_i1e_over_x, bessel_i1e,
              erfc, erf_exp, expm1, tanh)


def embedded_source() -> str:
    """This module's run-time part as source, for a generated module that must stand alone."""
    import inspect
    import re

    # Constants are written into the functions as literals, not left as module globals: Dynamo guards
    # on the globals a compiled function reads, and a guard on a tuple global fails in every new process,
    # which made AOT-compiled artifacts (KernelCache.precompiled) unloadable.
    constants = re.compile(rf"\b({'|'.join(_CONSTANTS)})\b")
    src = "\n\n".join(inspect.getsource(f) for f in _FUNCTIONS)
    return constants.sub(lambda m: repr(globals()[m.group(1)]), src)
