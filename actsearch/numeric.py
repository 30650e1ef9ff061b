"""Evaluate sympy expressions on numpy arrays by walking the tree (no code generation, no exec).

Faster than ``lambdify`` for one-off evaluations (no source to build and compile per candidate),
which is what fingerprinting thousands of candidates needs.  float64 throughout; numpy warnings are
silenced because non-finite values are data here (screening reports them).
"""
from __future__ import annotations

from functools import reduce
from typing import Mapping

import numpy as np
import scipy.special as sps
import sympy
from sympy.codegen.cfunctions import expm1, log1p

from actsearch.primitives import CUSTOM_FUNCTIONS, EPS, GUARD_EPS, Moment
from actsearch.primitives.registry import atom_of, is_integer_exponent

_UNARY = {
    sympy.exp: np.exp, sympy.log: np.log, sympy.sin: np.sin, sympy.cos: np.cos, sympy.tan: np.tan,
    sympy.sinh: np.sinh, sympy.cosh: np.cosh, sympy.tanh: np.tanh, sympy.asinh: np.arcsinh,
    sympy.atan: np.arctan, sympy.erf: sps.erf, sympy.erfc: sps.erfc, sympy.Abs: np.abs,
    sympy.sign: np.sign, expm1: np.expm1, log1p: np.log1p, sympy.sinc: lambda v: np.sinc(v / np.pi),
    sympy.asin: np.arcsin, sympy.acos: np.arccos,
    sympy.atanh: np.arctanh, sympy.acosh: np.arccosh, sympy.DiracDelta: lambda v: np.where(v == 0, np.inf, 0.0),
}
_UNARY.update({cls: cls.numpy for cls in CUSTOM_FUNCTIONS})
_RELATIONAL = {sympy.Eq: np.equal, sympy.Ne: np.not_equal, sympy.Lt: np.less, sympy.Le: np.less_equal,
               sympy.Gt: np.greater, sympy.Ge: np.greater_equal}


class EvaluationError(ValueError):
    pass


_DTYPE = "__dtype__"  # env key of a narrower working precision (parameter names never start with __)


def evaluate(expr: sympy.Expr, x: np.ndarray, params: Mapping[str, float] | None = None,
             dtype=np.float64) -> np.ndarray:
    """Value of `expr` at input array `x` (any shape), with parameter values by symbol name.

    dtype=np.float32 computes as a float32 kernel does: the input, the parameters, the constants and
    every intermediate are rounded to float32, so what overflows there (exp(89), 1e-6**-7) is inf here
    too, where float64 is finite.  The result is returned as float64 either way."""
    dtype = np.dtype(dtype)
    x = np.asarray(x, dtype=dtype)
    env = {"x": x, GUARD_EPS.name: EPS}
    env.update({k: float(v) for k, v in (params or {}).items()})
    cache: dict = {}
    with np.errstate(all="ignore"):
        if dtype != np.float64:  # (a parameter beyond float32's range is inf, silently, as in a kernel)
            env = {k: dtype.type(v) if isinstance(v, float) else v for k, v in env.items()}
            env[_DTYPE] = dtype
        out = _eval(expr, env, cache)
    return np.broadcast_to(np.asarray(out, dtype=np.float64), x.shape).copy()


def _eval(node, env, cache):
    hit = cache.get(node)
    if hit is not None:
        return hit
    val = _eval_uncached(node, env, cache)
    dtype = env.get(_DTYPE)
    if dtype is not None:  # float32: a constant or a float64 result (scipy, numpy scalars) is rounded
        if isinstance(val, np.ndarray):
            if val.dtype != dtype and val.dtype.kind == "f":
                val = val.astype(dtype)
        elif isinstance(val, (float, np.floating)):
            val = dtype.type(val)
    cache[node] = val
    return val


def _eval_uncached(node, env, cache):
    if node.is_Symbol:
        try:
            return env[node.name]
        except KeyError:
            raise EvaluationError(f"no value for symbol {node.name!r}") from None
    if node.is_Number or node.is_NumberSymbol:
        return float(node)
    func = node.func
    if func is sympy.Add:
        return reduce(np.add, (_eval(a, env, cache) for a in node.args))
    if func is sympy.Mul:
        return reduce(np.multiply, (_eval(a, env, cache) for a in node.args))
    if func is sympy.Pow:
        base, ex = node.args
        b = _eval(base, env, cache)
        if is_integer_exponent(ex):
            e = int(ex)
            if e == -1:  # np.divide, not `/`: a parameter is a Python float, and 1.0 / 0.0 raises
                return np.divide(1.0, b)
            if e < 0:
                return np.divide(1.0, np.power(b, -e))
            return np.power(b, e)
        if ex == sympy.S.Half:
            return np.sqrt(b)
        return np.power(b, _eval(ex, env, cache))
    if func is sympy.Max:
        return reduce(np.maximum, (_eval(a, env, cache) for a in node.args))
    if func is sympy.Min:
        return reduce(np.minimum, (_eval(a, env, cache) for a in node.args))
    if func is sympy.Piecewise:
        conds, vals = [], []
        for value, cond in node.args:
            vals.append(_eval(value, env, cache))
            conds.append(_cond(cond, env, cache))
        shape = np.broadcast_shapes(*(np.shape(v) for v in vals + conds))
        return np.select([np.broadcast_to(c, shape) for c in conds],
                         [np.broadcast_to(v, shape) for v in vals], default=np.nan)
    if func is sympy.Heaviside:  # Heaviside(u) or Heaviside(u, H0): sympy's default H0 is 1/2
        h0 = float(node.args[1]) if len(node.args) > 1 else 0.5
        return np.heaviside(_eval(node.args[0], env, cache), h0)
    fn = _UNARY.get(func)
    if fn is None:  # an atom registered with its numpy function (primitives.registry.register(numpy=...))
        prim = atom_of(node)
        fn = prim.numpy if prim is not None and prim.func is func else None
    if fn is not None and len(node.args) == 1:
        arg = _eval(node.args[0], env, cache)
        if isinstance(func, type) and issubclass(func, Moment):
            # a moment reduces over the input's tensor axes, also when its argument folded to a constant
            # (batch_var(1)): broadcast it to the input's shape first
            arg = np.broadcast_to(arg, np.shape(env["x"]))
        return fn(arg)
    raise EvaluationError(f"cannot evaluate {func.__name__} numerically")


def _cond(cond, env, cache):
    if cond is sympy.true:
        return True
    if cond is sympy.false:
        return False
    rel = _RELATIONAL.get(type(cond))
    if rel is not None:
        return rel(_eval(cond.lhs, env, cache), _eval(cond.rhs, env, cache))
    if isinstance(cond, sympy.And):
        return reduce(np.logical_and, (_cond(c, env, cache) for c in cond.args))
    if isinstance(cond, sympy.Or):
        return reduce(np.logical_or, (_cond(c, env, cache) for c in cond.args))
    raise EvaluationError(f"cannot evaluate condition {cond}")
