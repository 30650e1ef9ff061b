"""sympy function classes for primitives that sympy does not have (or has with the wrong derivative).

Each class carries its exact derivative (``fdiff``) so that kernels can derive backward passes
symbolically, a rewrite into ``exp`` for sympy's own algebra, and a ``numpy`` implementation used by
the numeric evaluator (``actsearch.numeric``).  Moment functions (``batch_std`` ...) are the tensor
operations of normalization-activation layers: they reduce over axes and broadcast back.
"""
from __future__ import annotations

import numpy as np
import scipy.special as sps
import sympy
from sympy import Abs, Piecewise, S, cos, exp, log, sign, sin


class _RealFunction(sympy.Function):
    """A real-valued function of real arguments."""

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None

    def _eval_is_finite(self):
        return all(a.is_finite for a in self.args) or None


class sigmoid(_RealFunction):
    """Logistic sigmoid 1/(1+exp(-x))."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Half

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + exp(-arg))

    def _eval_is_positive(self):
        return self.args[0].is_real or None

    def _eval_evalf(self, prec):
        return self.rewrite(exp)._eval_evalf(prec)

    @staticmethod
    def numpy(x):
        return sps.expit(x)


class softplus(_RealFunction):
    """log(1+exp(x)), evaluated without overflow."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return log(2)

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return log(1 + exp(arg))

    def _eval_is_positive(self):
        return self.args[0].is_real or None

    def _eval_evalf(self, prec):
        return self.rewrite(exp)._eval_evalf(prec)

    @staticmethod
    def numpy(x):
        return np.logaddexp(0.0, x)


class bessel_i0e(_RealFunction):
    """Exponentially scaled modified Bessel function of order 0: exp(-|x|)·I0(x)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.One

    def fdiff(self, argindex=1):
        u = self.args[0]
        return bessel_i1e(u) - sign(u) * bessel_i0e(u)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return exp(-Abs(arg)) * sympy.besseli(0, arg)

    def _eval_is_positive(self):
        return self.args[0].is_real or None

    def _eval_evalf(self, prec):
        return self.rewrite(exp)._eval_evalf(prec)

    @staticmethod
    def numpy(x):
        return sps.i0e(x)


class bessel_i1e(_RealFunction):
    """Exponentially scaled modified Bessel function of order 1: exp(-|x|)·I1(x)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Zero

    def fdiff(self, argindex=1):
        # d/dx [e^{-|x|} I1(x)] = i0e(x) - i1e(x)·(sign(x) + 1/x); the 1/x term is written through
        # bessel_i1e_over_x so that it stays finite at x = 0, where it tends to 1/2.
        u = self.args[0]
        return bessel_i0e(u) - sign(u) * bessel_i1e(u) - bessel_i1e_over_x(u)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return exp(-Abs(arg)) * sympy.besseli(1, arg)

    def _eval_evalf(self, prec):
        return self.rewrite(exp)._eval_evalf(prec)

    @staticmethod
    def numpy(x):
        return sps.i1e(x)


class bessel_i1e_over_x(_RealFunction):
    """i1e(x)/x with its limit 1/2 at x = 0 (appears only in derivatives of bessel_i1e)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Half

    def fdiff(self, argindex=1):
        # Not differentiable at 0 (exp(-|x|) has a kink); use the mean of the one-sided slopes, 0.
        u = self.args[0]
        return Piecewise((S.Zero, sympy.Eq(u, 0)), ((bessel_i1e(u).fdiff() - bessel_i1e_over_x(u)) / u, True))

    @staticmethod
    def numpy(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x == 0, 0.5, sps.i1e(x) / np.where(x == 0, 1.0, x))


class sinc(sympy.sinc):
    """sin(x)/x (sympy's convention, NOT torch.sinc's normalized sin(πx)/(πx)).

    sympy >= 1.13 differentiates sinc to cos(x)/x - sin(x)/x**2: 0/0 at x = 0, and catastrophic
    cancellation near it (guarding the denominators would make that worse).  The derivative is its
    own function, dsinc, evaluated by a series near 0.
    """

    def fdiff(self, argindex=1):
        return dsinc(self.args[0])

    @staticmethod
    def numpy(x):
        return np.sinc(x / np.pi)


DSINC_SERIES_BELOW = 0.1  # |u| below which dsinc uses -u/3 + u^3/30 - u^5/840 (error < 1e-10 relative)


class dsinc(_RealFunction):
    """d/du sin(u)/u = (u cos u - sin u)/u**2, with its removable singularity (0 at u = 0)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Zero

    def fdiff(self, argindex=1):
        u = self.args[0]  # d/du dsinc = -sinc(u) - 2 dsinc(u)/u, -1/3 at 0
        return Piecewise((-S.One / 3, sympy.Eq(u, 0)), (-sinc(u) - 2 * dsinc(u) / u, True))

    def _eval_rewrite_as_sin(self, arg, **kwargs):
        return (arg * cos(arg) - sin(arg)) / arg**2

    @staticmethod
    def numpy(x):
        x = np.asarray(x, dtype=float)
        small = np.abs(x) < DSINC_SERIES_BELOW
        u = np.where(small, 1.0, x)
        x2 = x * x
        return np.where(small, x * (-1.0 / 3 + x2 * (1.0 / 30 - x2 / 840)), (u * np.cos(u) - np.sin(u)) / (u * u))


# --- moment functions: tensor operations of normalization-activation layers -------------------------
# Layout is (N, C, *spatial).  Each moment reduces over its axes and broadcasts back (keepdim), so a
# normalization-activation layer is an ordinary expression tree in `x` (EvoNorm-S0 is
# x*sigmoid(v*x)/group_std(x)).  Group moments use the layer's `groups` setting (a layer hyper-parameter,
# not part of the formula); the numeric evaluator uses MOMENT_GROUPS.

MOMENT_EPS = 1e-5
MOMENT_GROUPS = 4


def _axes(x, scope):
    nd = x.ndim
    if nd < 2:
        raise ValueError(f"moment ops need an (N, C, ...) tensor, got {nd} dims")
    spatial = tuple(range(2, nd))
    return {"batch": (0,) + spatial, "instance": spatial, "layer": (1,) + spatial}[scope]


def _moment_numpy(scope, stat):
    def fn(x):
        x = np.asarray(x, dtype=float)
        if scope == "group":
            n, c = x.shape[:2]
            g = MOMENT_GROUPS if c % MOMENT_GROUPS == 0 else 1
            xg = x.reshape(n, g, c // g, *x.shape[2:])
            axes = tuple(range(2, xg.ndim))
            out = _stat(xg, axes, stat)
            return np.broadcast_to(out, xg.shape).reshape(x.shape)
        axes = _axes(x, scope)
        return np.broadcast_to(_stat(x, axes, stat), x.shape) if axes else _stat(x, axes, stat)

    return fn


def _stat(x, axes, stat):
    if stat == "mean":
        return x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return var if stat == "var" else np.sqrt(var + MOMENT_EPS)


class Moment(sympy.Function):
    """Base class of moment functions; `scope` and `stat` are set on each subclass."""

    nargs = 1
    scope: str = ""
    stat: str = ""

    def _eval_is_real(self):
        return self.args[0].is_real or None

    def _eval_is_positive(self):
        if self.stat == "std" and self.args[0].is_real:
            return True
        return None

    def _eval_is_nonnegative(self):
        if self.stat in ("std", "var") and self.args[0].is_real:
            return True
        return None


MOMENT_FUNCTIONS: dict[str, type[Moment]] = {}
for _scope in ("batch", "group", "instance", "layer"):
    for _stat_name in ("mean", "var", "std"):
        _name = f"{_scope}_{_stat_name}"
        _cls = type(_name, (Moment,), {"scope": _scope, "stat": _stat_name,
                                        "numpy": staticmethod(_moment_numpy(_scope, _stat_name)),
                                        "__doc__": f"{_stat_name} over the {_scope} axes, broadcast back."})
        MOMENT_FUNCTIONS[_name] = _cls
        globals()[_name] = _cls

CUSTOM_FUNCTIONS = (sigmoid, softplus, bessel_i0e, bessel_i1e, bessel_i1e_over_x, sinc, dsinc,
                    *MOMENT_FUNCTIONS.values())
