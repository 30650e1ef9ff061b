"""Canonical form, numeric fingerprint and candidate id.

Identity is numeric, not symbolic: deciding symbolic equality is undecidable in general and sympy's
`simplify` can take seconds.  The canonical *form* is sympy's automatic normal form plus a few cheap
rewrites (sigmoid, softplus, sinc recognised in their exp/sin spellings) and a time-bounded tidy-up; it
is for display.  The *id* hashes the function's values on a fixed probe set (see PROBES), evaluated on
the exact form (undefined points marked), at the initial parameters and at two perturbed parameter
settings, so a candidate with a learnable β is never merged with its β=1 instance.
"""
from __future__ import annotations

import hashlib
import signal
import threading
from contextlib import contextmanager

import numpy as np
import sympy
from sympy import exp, sin

from actsearch.numeric import evaluate
from actsearch.primitives import sigmoid, sinc, softplus
from actsearch.primitives.registry import COMPLEX_PARTS, real_abs

# ---- probe sets -----------------------------------------------------------------------------------
PROBE_SEED = 20240517
_rng = np.random.default_rng(PROBE_SEED)
PROBE_NORMAL = np.clip(_rng.standard_normal(1000), -5.0, 5.0)   # where pre-activations live
PROBE_GRID = np.linspace(-10.0, 10.0, 201)                       # behaviour away from 0, incl. x = 0
PROBES = np.concatenate([PROBE_NORMAL, PROBE_GRID])
# (N, C, L) probe for normalization-activation candidates: per-channel offsets and scales so that
# batch, instance, group and layer moments all differ.
PROBE_TENSOR = (np.random.default_rng(PROBE_SEED + 1).standard_normal((8, 8, 16))
                * np.linspace(0.5, 2.0, 8)[None, :, None] + np.linspace(-1.0, 1.0, 8)[None, :, None])
# A strictly positive companion: a moment of an input undefined at one element of PROBE_TENSOR
# (sqrt(x), log(x)) is undefined on its whole reduction, so every such layer would fingerprint as
# all-NaN and share one id; those layers are also fingerprinted here, where they are defined.
PROBE_TENSOR_POSITIVE = np.abs(PROBE_TENSOR) + 0.1

FINGERPRINT_BITS = 20  # mantissa bits kept (relative rounding ~1e-6)
# Values below this magnitude are rounded absolutely: equivalent spellings can differ by ~1e-15
# absolute where one of them cancels (1 + erf(-6/sqrt(2)) vs erfc(6/sqrt(2)) ~ 5e-10), which relative
# rounding alone would split into two ids.
FINGERPRINT_ATOL = 1e-8
# Parameter settings for the fingerprint: initial, then two perturbations (p -> a*p + b).
_PERTURB = ((1.0, 0.0), (1.37, 0.23), (0.71, -0.17))


def probe_input(candidate) -> np.ndarray:
    return PROBE_TENSOR if candidate.is_tensor_op else PROBES


def param_settings(params):
    names = sorted(params)
    out = []
    for k, (a, b) in enumerate(_PERTURB):
        if k and not names:
            break
        out.append({n: a * params[n] + b * (1 + i) for i, n in enumerate(names)})
    return out


def fingerprint(candidate) -> np.ndarray:
    """Rounded values of the candidate's exact form on the probe input, one row per parameter setting.

    The exact form, not the protected one: where a guard acts depends on how sympy happened to
    structure the expression (1/(2*(u+eps)) vs 1/(2*u+eps)), and identity must not.  Points where the
    exact form is undefined (log of a negative, 0/0, overflow) are all recorded as one NaN marker."""
    x = probe_input(candidate)
    settings = param_settings(candidate.params)
    rows = [evaluate(candidate.expr, x, p).ravel() for p in settings]
    if candidate.is_tensor_op and not all(np.isfinite(r).all() for r in rows):
        # (only then, so that the ids of layers defined everywhere do not change)
        rows += [evaluate(candidate.expr, PROBE_TENSOR_POSITIVE, p).ravel() for p in settings]
    return quantize(np.stack(rows))


def quantize(values: np.ndarray, bits: int = FINGERPRINT_BITS) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    finite = np.isfinite(v)
    m, e = np.frexp(np.where(finite, v, 0.0))
    q = np.ldexp(np.round(m * (1 << bits)) / (1 << bits), e)
    small = np.abs(v) < FINGERPRINT_ATOL
    q[small] = np.round(v[small] / FINGERPRINT_ATOL) * FINGERPRINT_ATOL
    q[q == 0] = 0.0  # -0.0 -> 0.0
    return np.where(finite, q, np.nan)  # every undefined point is the same marker


def candidate_id(fp: np.ndarray) -> str:
    data = np.ascontiguousarray(fp, dtype=np.float64)
    h = hashlib.blake2b(data.tobytes() + str(data.shape).encode(), digest_size=8).hexdigest()
    return "act_" + h


# ---- canonical form ------------------------------------------------------------------------------
def _named(node: sympy.Expr) -> sympy.Expr:
    """One node: recognise sigmoid, softplus and sinc in their elementary spellings."""
    if isinstance(node, sympy.Pow) and node.exp == -1:            # 1/(1 + exp(a)) -> sigmoid(-a)
        a = _one_plus_exp(node.base)
        if a is not None:
            return sigmoid(-a)
    elif isinstance(node, sympy.log):                             # log(1 + exp(a)) -> softplus(a)
        a = _one_plus_exp(node.args[0])
        if a is not None:
            return softplus(a)
    elif type(node) is sympy.sinc:                                # sympy's sinc -> ours (finite f' at 0)
        return sinc(node.args[0])
    elif isinstance(node, sympy.Mul):                             # sin(a) * a**-1 -> sinc(a)
        args = list(node.args)
        for s_ in args:
            if isinstance(s_, sin):
                inv = s_.args[0] ** -1
                if inv in args:
                    rest = [t for t in args if t is not s_ and t != inv]
                    return sympy.Mul(sinc(s_.args[0]), *rest)
    return node


def _one_plus_exp(e):
    if isinstance(e, sympy.Add) and len(e.args) == 2 and e.args[0] == 1 and isinstance(e.args[1], exp):
        return e.args[1].args[0]
    return None


def _rewrite_named(expr: sympy.Expr) -> sympy.Expr:
    if not expr.args:
        return expr
    new = tuple(_rewrite_named(a) for a in expr.args)
    if new == expr.args:
        node = expr
    elif isinstance(expr, (sympy.Max, sympy.Min)):
        node = expr.func(*new, evaluate=False)
    elif isinstance(expr, sympy.Abs):
        node = real_abs(*new)  # sympy's Abs would rewrite |exp(sqrt(x))| with re/atan2
    else:
        node = expr.func(*new)
    return _named(node)


class _Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Hard time bound via SIGALRM in the main thread; elsewhere a no-op (callers also keep steps cheap)."""
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):  # never cancel a caller's own timer
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


CANONICAL_TIME_LIMIT = 0.05   # seconds, hard bound of the optional tidy-up
TIDY_MAX_OPS = 12             # only small expressions are worth (and cheap enough) tidying


def canonicalize(expr: sympy.Expr, time_limit_s: float = CANONICAL_TIME_LIMIT) -> sympy.Expr:
    """Canonical exact form: sympy's automatic normal form, named-function rewrites (a linear tree walk),
    then `factor_terms` on small expressions under a hard time bound, kept only if it makes the
    expression smaller.  Never calls `simplify` (seconds on some inputs)."""
    expr = _rewrite_named(expr)
    if time_limit_s <= 0:
        return expr
    ops = sympy.count_ops(expr)
    if ops > TIDY_MAX_OPS or not isinstance(expr, (sympy.Add, sympy.Mul)):
        return expr
    try:
        with time_limit(time_limit_s):
            tidy = _rewrite_named(sympy.factor_terms(expr))
    except _Timeout:
        return expr
    if tidy.has(*COMPLEX_PARTS) and not expr.has(*COMPLEX_PARTS):
        return expr  # factor_terms rebuilt an Abs that sympy then rewrote with re/atan2 (see real_abs)
    return tidy if sympy.count_ops(tidy) < ops else expr
