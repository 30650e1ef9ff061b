"""One printer per target, each built on sympy's own: torch, Triton, LaTeX.

The torch printer extends `sympy.printing.pytorch.TorchPrinter` (which prints Max(1, x) as
`torch.max(1, x)`, a type error, and knows nothing of sigmoid/softplus/sinc/expm1 ...); the Triton
printer extends sympy's `PythonCodePrinter`; the LaTeX printer extends `LatexPrinter`.

All printers print the *protected* expression they are given; guards are never added here.
sympy's sinc is sin(x)/x; torch.sinc is sin(pi x)/(pi x), so sinc prints as torch.sinc(u / pi).
"""
from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.latex import LatexPrinter
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.pytorch import TorchPrinter

from actsearch.primitives import EPS, GUARD_EPS, get_primitive
from actsearch.primitives import functions as F


def _float(v) -> str:
    return repr(float(v))


def _constant(printer, expr):
    """Constant subexpressions print as one float (torch.sqrt(2.0) is a type error; constants are
    bounded by the parser, so float() is safe).  The guard epsilon counts as a number here: d/dv of
    (|u| + eps)**v where u folds to 0 (pow(x - x, x)) has log(eps), which printed as torch.log(1e-06),
    a TypeError (torch functions take tensors; only the operators take Python floats)."""
    if not isinstance(expr, sympy.Expr) or expr.is_Atom:
        return None
    if expr.is_number:
        return _constant_value(expr)
    if expr.free_symbols == {GUARD_EPS}:
        return _constant_value(expr.xreplace({GUARD_EPS: sympy.Float(EPS)}))
    return None


def _constant_value(expr) -> str:
    return _float(_number(expr))


def _number(expr, prec: int = 15) -> float:
    """float value of a constant: sympy's evalf, dropping the round-off imaginary part evalf can leave
    (sigmoid(cos(1))**2 -> -0.0111 + 9e-44*I: float() of that raised; not evalf's chop=True, which also
    zeroes a real result that cancels, 0.7310585786300049 - sigmoid(1) = 1.7e-17: a step's two sides
    at a near-tie then disagreed); what evalf cannot reduce to one real number (dsinc,
    bessel_i1e_over_x have no evalf) comes from our float64 evaluator."""
    value = expr.evalf(prec)
    if value.is_Number:
        return float(value)
    real, imag = value.as_real_imag()
    if real.is_Number and imag.is_Number and abs(imag) <= 1e-12 * max(1.0, abs(real)):
        return float(real)
    import numpy as np

    from actsearch.numeric import evaluate

    return float(evaluate(expr, np.zeros(1))[0])


class _ElementwisePrinting:
    """What the torch and Triton printers share, written once over their namespace (`torch` or `tl`):
    constants as floats, guard epsilon, steps, piecewise/relational via `where`, and dsinc."""

    _ns = ""  # "torch" or "tl"

    def _print(self, expr, **kwargs):
        return _constant(self, expr) or super()._print(expr, **kwargs)

    def _print_Mul(self, expr):
        return self._fold_numbers(expr, sympy.Mul, 1) or super()._print_Mul(expr)

    def _print_Add(self, expr, order=None):
        return self._fold_numbers(expr, sympy.Add, 0) or super()._print_Add(expr, order=order)

    def _fold_numbers(self, expr, op, unit):
        """A product (sum) with several constant factors (terms) prints them as one float, rounded once:
        sqrt(2)*x/(2*sqrt(pi)) is 0.3989...*x, one multiplication instead of three in the kernel.
        (Compile time: no change measurable; GELU-like pairs were faster in 5, 7, 8 of 16.)"""
        numbers = [a for a in expr.args if a.is_number]
        if len(numbers) < 2:
            return None
        value = _number(op(*numbers), 30)
        rest = op(*(a for a in expr.args if not a.is_number))
        return self._print(rest if value == unit else op(sympy.Float(value), rest))

    def _print_Heaviside(self, expr):
        u = self._print(expr.args[0])
        h0 = _float(expr.args[1]) if len(expr.args) > 1 else "0.5"
        return f"{self._ns}.where({u} > 0.0, 1.0, {self._ns}.where({u} < 0.0, 0.0, {h0}))"

    def _print_dsinc(self, expr):
        ns, u = self._ns, self._print(expr.args[0])
        small = f"({ns}.abs({u}) < {F.DSINC_SERIES_BELOW!r})"
        safe = f"{ns}.where({small}, 1.0, {u})"
        return (f"{ns}.where({small}, ({u})*(-1.0/3 + ({u})*({u})*(1.0/30 - ({u})*({u})/840)), "
                f"(({safe})*{ns}.cos({safe}) - {ns}.sin({safe}))/(({safe})*({safe})))")

    def _print_Piecewise(self, expr):
        *pieces, (last_val, last_cond) = expr.args
        if last_cond is not sympy.true:
            raise ValueError("Piecewise without a default branch cannot be printed")
        out = self._print(last_val)
        for val, cond in reversed(pieces):
            out = f"{self._ns}.where({self._print(cond)}, {self._print(val)}, {out})"
        return out

    def _print_Relational(self, expr):
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    _print_Equality = _print_Unequality = _print_StrictLessThan = _print_LessThan = _print_Relational
    _print_StrictGreaterThan = _print_GreaterThan = _print_Relational

    def _print_Float(self, expr):
        return _float(expr)

    _print_Rational = _print_Integer = _print_Float

    def _print_NumberSymbol(self, expr):
        return _float(expr)

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Symbol(self, expr):
        return repr(EPS) if expr == GUARD_EPS else expr.name


class TorchCodePrinter(_ElementwisePrinting, TorchPrinter):
    """sympy -> torch expression source. Every operand is a tensor or a Python float."""

    _ns = "torch"
    # inductor=True: spellings for code that torch.compile will fuse (see _print_tanh); False: eager ATen
    # exp_shared (Inductor only): arguments u whose softplus(u) the code computes; sigmoid(u) then reuses
    # its exp(u) (see _print_sigmoid)
    _default_settings = dict(TorchPrinter._default_settings, strict=True, inductor=False, exp_shared=frozenset())

    _fn = {
        F.sigmoid: "torch.sigmoid", F.softplus: "torch.nn.functional.softplus", F.bessel_i0e: "torch.special.i0e",
        F.bessel_i1e: "torch.special.i1e", sympy.erfc: "torch.erfc", expm1: "torch.expm1", log1p: "torch.log1p",
        sympy.erf: "torch.erf", sympy.exp: "torch.exp", sympy.log: "torch.log", sympy.sin: "torch.sin",
        sympy.cos: "torch.cos", sympy.tan: "torch.tan", sympy.sinh: "torch.sinh", sympy.cosh: "torch.cosh",
        sympy.tanh: "torch.tanh", sympy.asinh: "torch.asinh", sympy.atan: "torch.atan", sympy.Abs: "torch.abs",
        sympy.sign: "torch.sign",
    }

    def _print_Function(self, expr):
        for cls, name in self._fn.items():
            if isinstance(expr, cls):
                return f"{name}({self._print(expr.args[0])})"
        return super()._print_Function(expr)

    # sympy dispatches on the class MRO; route every unary function through the table above (sigmoid,
    # softplus and tanh have their own methods below, for their Inductor spellings)
    _print_log1p = _print_erf = _print_exp = _print_log = _print_Function
    _print_sin = _print_cos = _print_tan = _print_sinh = _print_cosh = _print_Function
    _print_asinh = _print_atan = _print_Abs = _print_sign = _print_Function

    def _print_Heaviside(self, expr):
        # In the argument's dtype: torch.where(c, 1.0, 0.5) has the default dtype (float32), so a float64
        # kernel computed a step times a constant in float32 (hard_sigmoid's slope 1/6 off by 1e-8, 1e-6
        # relative in f').  torch.sign is 0 at NaN, as the where spelling was 0.5 there.
        u = self._print(expr.args[0])
        h0 = float(expr.args[1]) if len(expr.args) > 1 else 0.5
        if h0 == 0.5:
            return f"(0.5 + 0.5*torch.sign({u}))"
        return f"torch.where({u} > 0.0, 1.0, torch.where({u} < 0.0, 0.0, {h0!r})).to(({u}).dtype)"

    def _print_sinc(self, expr):
        return f"torch.sinc(({self._print(expr.args[0])}) / math.pi)"

    def _print_tanh(self, expr):
        if not self._settings.get("inductor"):
            return f"torch.tanh({self._print(expr.args[0])})"  # eager ATen: its own tanh is fastest
        # Inductor's vectorized tanh (Sleef) is several times slower on CPU than its exp, so tanh is
        # spelled e/(e + 2), e = exp(2u) - 1, with a Taylor branch near 0 where that cancels
        # (kernels/fast_math.py, embedded by codegen).
        arg = expr.args[0]
        if isinstance(arg, F.softplus):
            # tanh(softplus(u)) = n/(n + 2), n = e(e + 2), e = exp(u): one exp instead of exp, log1p and
            # tanh (mish); no cancellation for u -> -inf (n/(n+2) ~ e), and the clamp keeps n finite.
            n = self._softplus_n(arg.args[0])
            return f"({n}/({n} + 2.0))"
        return f"tanh({self._print(arg)})"  # fast_math.tanh: e/(e + 2) and a Taylor branch near 0

    def _print_SechSqSoftplus(self, expr):
        # 1 - tanh(softplus(u))^2 without cancellation (codegen.SechSqSoftplus), from the exp that
        # tanh(softplus(u)) computes; u > 40: n = 5.5e34, (n + 2)^2 overflows to inf in float32 and the
        # ratio is 0, as it should be (the true value is below 1e-34 there).
        n = self._softplus_n(expr.args[0])
        return f"(4.0*({n} + 1.0)/(({n} + 2.0)*({n} + 2.0)))"

    def _softplus_n(self, u) -> str:
        # n = e(e + 2), e = exp(min(u, 40)): tanh(softplus(u)) = n/(n + 2) and its sech^2 = 4(n+1)/(n+2)^2
        e = self._clamped_exp(u)
        return f"({e}*({e} + 2.0))"

    def _clamped_exp(self, u) -> str:
        # exp(min(u, 40)): the one exp that Inductor spellings of sigmoid, softplus and tanh(softplus)
        # of the same u share (Inductor's kernel CSE merges identical expressions).  40 keeps e(e + 2)
        # finite in float32 (5.5e34) and is past where sigmoid rounds to 1 even in float64 (1 - 4e-18).
        return f"torch.exp(torch.clamp({self._print(u)}, max=40.0))"

    def _print_sigmoid(self, expr):
        if not self._settings.get("inductor") or expr.args[0] not in self._settings["exp_shared"]:
            return self._print_Function(expr)
        # e/(e + 1), e = exp(u): the exp that softplus(u) or mish of the same u computes anyway (f' of
        # softplus is sigmoid, so every softplus candidate has both), where torch.sigmoid's decomposition
        # computes exp(-u) as well.  u -> -inf: e/(e + 1) ~ e, no cancellation; u > 40: 1.  Measured
        # side by side, fwd+bwd on 4M floats: softplus 7-9% faster, mish 7%, erf(softplus) 9%; but
        # without a softplus to share with, SiLU was 18-22% slower than with torch.sigmoid.
        e = self._clamped_exp(expr.args[0])
        return f"({e}/({e} + 1.0))"

    def _print_softplus(self, expr):
        if not self._settings.get("inductor"):
            return self._print_Function(expr)
        # torch's softplus (threshold 20: u itself above), over the shared clamped exp
        u = self._print(expr.args[0])
        return f"torch.where({u} > 20.0, {u}, torch.log1p({self._clamped_exp(expr.args[0])}))"

    def _print_ErfExp(self, expr):
        # codegen.ErfExp(u, exp(-u^2)): erf from the exp the derivative computes (fast_math.erf_exp)
        u, e = (self._print(a) for a in expr.args)
        return f"erf_exp({u}, {e})" if self._settings.get("inductor") else f"torch.erf({u})"

    def _print_bessel_i1e_over_x(self, expr):
        u = self._print(expr.args[0])
        if self._settings.get("inductor"):
            return f"bessel_i1e_over_x({u})"
        return f"torch.where({u} == 0, 0.5, torch.special.i1e({u}) / torch.where({u} == 0, 1.0, {u}))"

    def _print_fast_math(self, expr):
        # Inductor compiles torch.special.i0e/i1e and torch.erfc to scalar loops (25-50 ms and 6 ms per
        # 4M floats), and torch.expm1 to exp(u) - 1, which cancels near 0; kernels/fast_math.py spells
        # them as fusible arithmetic that stays accurate (codegen embeds it)
        if self._settings.get("inductor"):
            return f"{type(expr).__name__}({self._print(expr.args[0])})"
        return self._print_Function(expr)

    _print_bessel_i0e = _print_bessel_i1e = _print_erfc = _print_expm1 = _print_fast_math

    def _minmax(self, expr, fn, clamp):
        # constants (numbers and the guard epsilon) clamp; torch.maximum needs two tensors
        numbers = [a for a in expr.args if not (a.free_symbols - {GUARD_EPS})]
        tensors = [a for a in expr.args if a.free_symbols - {GUARD_EPS}]
        out = self._print(tensors[0])
        for a in tensors[1:]:
            out = f"{fn}({out}, {self._print(a)})"
        for n in numbers:
            out = f"{clamp}({out}, {self._print(n)})"
        return out

    def _print_Max(self, expr):
        return self._minmax(expr, "torch.maximum", "torch.clamp_min")

    def _print_Min(self, expr):
        return self._minmax(expr, "torch.minimum", "torch.clamp_max")

    def _print_Pow(self, expr, rational=False):
        base, ex = expr.args
        b = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Pow"])
        if ex.is_Integer:
            e = int(ex)
            if e == 1:
                return self._print(base)
            if e == 2:
                # parenthesized: the parent printer treats this as a Pow (binds tighter than / )
                return f"({b}*{b})" if base.is_Symbol else f"torch.square({self._print(base)})"
            if e == -1:
                return f"(1.0/{b})"
            if e < 0:
                return f"(1.0/{b}**{-e})"
            return f"{b}**{e}"
        if ex == sympy.S.Half:
            return f"torch.sqrt({self._print(base)})"
        if ex == -sympy.S.Half:
            return f"torch.rsqrt({self._print(base)})"
        if ex.is_number:
            return f"{b}**{_float(ex)}"
        return f"torch.pow({self._print(base)}, {self._print(ex)})"

    def _print_Moment(self, expr):
        # the registry's torch spelling of each moment op, the one definition
        return get_primitive(type(expr).__name__).spell("torch", self._print(expr.args[0]))




for _cls in F.MOMENT_FUNCTIONS.values():
    setattr(TorchCodePrinter, f"_print_{_cls.__name__}", TorchCodePrinter._print_Moment)


class TritonCodePrinter(_ElementwisePrinting, PythonCodePrinter):
    """sympy -> Triton (`tl`, `libdevice`) expression source for elementwise kernels."""

    _ns = "tl"

    _default_settings = dict(PythonCodePrinter._default_settings, strict=True)
    _fn = {
        sympy.exp: "tl.exp", sympy.log: "tl.log", sympy.sin: "tl.sin", sympy.cos: "tl.cos", sympy.Abs: "tl.abs",
        sympy.erf: "tl.erf", F.sigmoid: "tl.sigmoid", sympy.tan: "libdevice.tan", sympy.sinh: "libdevice.sinh",
        sympy.cosh: "libdevice.cosh", sympy.tanh: "libdevice.tanh", sympy.asinh: "libdevice.asinh",
        sympy.atan: "libdevice.atan", sympy.erfc: "libdevice.erfc", expm1: "libdevice.expm1",
        log1p: "libdevice.log1p",
    }

    def _print_Function(self, expr):
        for cls, name in self._fn.items():
            if isinstance(expr, cls):
                return f"{name}({self._print(expr.args[0])})"
        raise ValueError(f"no Triton spelling for {type(expr).__name__} (moment ops need a reduction kernel; "
                         f"Triton export covers elementwise activations)")

    _print_sigmoid = _print_erfc = _print_expm1 = _print_log1p = _print_erf = _print_exp = _print_Function
    _print_log = _print_sin = _print_cos = _print_tan = _print_sinh = _print_cosh = _print_Function
    _print_tanh = _print_asinh = _print_atan = _print_Abs = _print_Function

    def _print_softplus(self, expr):
        u = self._print(expr.args[0])
        return f"tl.where({u} > 20.0, {u}, libdevice.log1p(tl.exp(tl.minimum({u}, 20.0))))"

    def _print_sinc(self, expr):
        u = self._print(expr.args[0])
        return f"tl.where({u} == 0.0, 1.0, tl.sin({u}) / tl.where({u} == 0.0, 1.0, {u}))"

    def _print_bessel_i0e(self, expr):
        u = self._print(expr.args[0])
        return f"(libdevice.cyl_bessel_i0({u}) * tl.exp(-tl.abs({u})))"

    def _print_bessel_i1e(self, expr):
        u = self._print(expr.args[0])
        return f"(libdevice.cyl_bessel_i1({u}) * tl.exp(-tl.abs({u})))"

    def _print_bessel_i1e_over_x(self, expr):
        u = self._print(expr.args[0])
        return (f"tl.where({u} == 0.0, 0.5, libdevice.cyl_bessel_i1({u}) * tl.exp(-tl.abs({u})) "
                f"/ tl.where({u} == 0.0, 1.0, {u}))")

    def _print_sign(self, expr):
        u = self._print(expr.args[0])
        return f"tl.where({u} > 0.0, 1.0, tl.where({u} < 0.0, -1.0, 0.0))"

    def _print_Max(self, expr):
        out = self._print(expr.args[0])
        for a in expr.args[1:]:
            out = f"tl.maximum({out}, {self._print(a)})"
        return out

    def _print_Min(self, expr):
        out = self._print(expr.args[0])
        for a in expr.args[1:]:
            out = f"tl.minimum({out}, {self._print(a)})"
        return out

    def _print_Pow(self, expr, rational=False):
        base, ex = expr.args
        b = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Pow"])
        if ex.is_Integer and abs(int(ex)) <= 4:
            e = int(ex)
            prod = "*".join([b] * abs(e)) if e else "1.0"
            return f"({prod})" if e > 0 else f"(1.0/({prod}))"
        if ex == sympy.S.Half:
            return f"tl.sqrt({self._print(base)})"
        if ex == -sympy.S.Half:
            return f"tl.rsqrt({self._print(base)})"
        return f"libdevice.pow({self._print(base)}, {self._print(ex)})"


class LatexFormulaPrinter(LatexPrinter):
    """LaTeX with the activation atoms named as in papers."""

    def _print_sigmoid(self, expr, exp=None):
        s = rf"\sigma\left({self._print(expr.args[0])}\right)"
        return rf"{s}^{{{exp}}}" if exp else s

    def _named(self, name, expr, exp=None):
        s = rf"\operatorname{{{name}}}\left({self._print(expr.args[0])}\right)"
        return rf"{s}^{{{exp}}}" if exp else s

    def _print_softplus(self, expr, exp=None):
        return self._named("softplus", expr, exp)

    def _print_bessel_i0e(self, expr, exp=None):
        return self._named("i_{0}e", expr, exp)

    def _print_bessel_i1e(self, expr, exp=None):
        return self._named("i_{1}e", expr, exp)

    def _print_sinc(self, expr, exp=None):
        return self._named("sinc", expr, exp)

    def _print_Moment(self, expr, exp=None):
        return self._named(type(expr).__name__.replace("_", r"\_"), expr, exp)


for _cls in F.MOMENT_FUNCTIONS.values():
    setattr(LatexFormulaPrinter, f"_print_{_cls.__name__}", LatexFormulaPrinter._print_Moment)


def torch_code(expr) -> str:
    return TorchCodePrinter().doprint(expr)


def triton_code(expr) -> str:
    return TritonCodePrinter().doprint(expr)


def latex_code(expr) -> str:
    return LatexFormulaPrinter().doprint(expr)
