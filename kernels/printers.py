"""One printer per target, each built on sympy's own: torch, Triton, LaTeX.

The torch printer extends `sympy.printing.pytorch.TorchPrinter` (which prints Max(1, x) as
`torch.max(1, x)`, a type error, and knows nothing of sigmoid/softplus/sinc/expm1 ...); the Triton
printer extends sympy's `PythonCodePrinter`; the LaTeX printer extends `LatexPrinter`.

All printers print the *protected* expression they are given; guards are never added here.

The spelling of every atom (a primitive that is one sympy function: exp, sigmoid, softplus, sinc, the
moments ...) is the registry's (actsearch.primitives.registry), the one table per target: the
`_print_<Func>` method of each atom is generated from it, in the style of sympy's printers
(`_known_functions` -> methods), also for atoms registered later (registry.subscribe).  Written here by
hand, and only here: what is no primitive's spelling - operators and powers, Max/Min (constants clamp),
Piecewise and relations, the derivative-only functions (dsinc, bessel_i1e_over_x), codegen's fused
nodes (ErfExp, SechSqSoftplus) - and the Inductor spellings of some atoms (TorchCodePrinter with
inductor=True), which fall back to the registry's for eager code.  See docs/primitives.md.
"""
from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.latex import LatexPrinter
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.pytorch import TorchPrinter

from actsearch.primitives import EPS, GUARD_EPS
from actsearch.primitives import functions as F
from actsearch.primitives import registry


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
    _target = ""  # the registry's target: "torch" or "triton"

    @staticmethod
    def _generates(prim) -> bool:  # every atom's method is generated from the registry
        return True

    def _print(self, expr, **kwargs):
        return _constant(self, expr) or super()._print(expr, **kwargs)

    def _print_atom(self, expr, **kwargs):
        """An atom's function node in the registry's spelling (the generated `_print_<Func>` methods)."""
        prim = registry.atom_of(expr)
        n = len(expr.args) if prim.max_args is None else prim.max_args
        if prim.template(self._target) is None:
            raise ValueError(self._no_spelling(expr))
        return prim.spell_node(self._target, *(self._print(a) for a in expr.args[:n]))

    def _no_spelling(self, expr):
        return f"no {self._target} spelling for {type(expr).__name__}"

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
        # the registry's step (1/2 at 0); another value at 0 (a Heaviside(u, h0) from sympy) by hand
        if len(expr.args) < 2 or expr.args[1] == sympy.S.Half:
            return self._print_atom(expr)
        return self._heaviside(self._print(expr.args[0]), float(expr.args[1]))

    def _heaviside(self, u: str, h0: float) -> str:
        return f"{self._ns}.where({u} > 0.0, 1.0, {self._ns}.where({u} < 0.0, 0.0, {h0!r}))"

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

    _target = "torch"

    def _heaviside(self, u: str, h0: float) -> str:
        # In the argument's dtype: torch.where(c, 1.0, 0.5) has the default dtype (float32), so a float64
        # kernel computed a step times a constant in float32 (hard_sigmoid's slope 1/6 off by 1e-8, 1e-6
        # relative in f').  The registry's h0 = 1/2 step is 0.5 + 0.5*sign(u) (0.5 at NaN, as the where).
        return f"torch.where({u} > 0.0, 1.0, torch.where({u} < 0.0, 0.0, {h0!r})).to(({u}).dtype)"

    # ---- Inductor spellings (inductor=True) of some atoms; eager code prints the registry's --------
    def _print_tanh(self, expr):
        if not self._settings.get("inductor"):
            return self._print_atom(expr)  # eager ATen: its own tanh is fastest
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
            return self._print_atom(expr)
        # e/(e + 1), e = exp(u): the exp that softplus(u) or mish of the same u computes anyway (f' of
        # softplus is sigmoid, so every softplus candidate has both), where torch.sigmoid's decomposition
        # computes exp(-u) as well.  u -> -inf: e/(e + 1) ~ e, no cancellation; u > 40: 1.  Measured
        # side by side, fwd+bwd on 4M floats: softplus 7-9% faster, mish 7%, erf(softplus) 9%; but
        # without a softplus to share with, SiLU was 18-22% slower than with torch.sigmoid.
        e = self._clamped_exp(expr.args[0])
        return f"({e}/({e} + 1.0))"

    def _print_softplus(self, expr):
        if not self._settings.get("inductor"):
            return self._print_atom(expr)
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
        return self._print_atom(expr)

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



class TritonCodePrinter(_ElementwisePrinting, PythonCodePrinter):
    """sympy -> Triton (`tl`, `libdevice`) expression source for elementwise kernels."""

    _ns = "tl"

    _target = "triton"
    _default_settings = dict(PythonCodePrinter._default_settings, strict=True)

    def _no_spelling(self, expr):
        return (f"no Triton spelling for {type(expr).__name__} (moment ops need a reduction kernel; "
                f"Triton export covers elementwise activations)")

    def _print_Function(self, expr):
        raise ValueError(self._no_spelling(expr))

    def _print_bessel_i1e_over_x(self, expr):
        u = self._print(expr.args[0])
        return (f"tl.where({u} == 0.0, 0.5, libdevice.cyl_bessel_i1({u}) * tl.exp(-tl.abs({u})) "
                f"/ tl.where({u} == 0.0, 1.0, {u}))")

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
    """LaTeX with the activation atoms named as in papers (the registry's `latex`; sympy's LaTeX for the
    atoms without one)."""

    @staticmethod
    def _generates(prim) -> bool:
        return prim.latex is not None

    def _print_atom(self, expr, exp=None):
        """An atom with a LaTeX operator in the registry (sigma, softplus ...); others are sympy's."""
        prim = registry.atom_of(expr)
        if prim is None or prim.latex is None:
            return super()._print_Function(expr, exp=exp)
        s = rf"{prim.latex}\left({', '.join(self._print(a) for a in expr.args)}\right)"
        return rf"{s}^{{{exp}}}" if exp else s


# ---- methods generated from the registry: one `_print_<Func>` per atom and printer ----------------
_PRINTERS = (TorchCodePrinter, TritonCodePrinter, LatexFormulaPrinter)


def _hand_written(cls, name: str) -> bool:
    """Whether this module writes `name` for printer `cls` by hand (not generated from the registry)."""
    for k in cls.__mro__:
        if k.__module__ == __name__ and name in vars(k):
            return not getattr(vars(k)[name], "_from_registry", False)
    return False


def _install(prim, added: bool) -> None:
    """registry.subscribe's callback: (un)install the generated method of one atom in every printer."""
    name = f"_print_{prim.func.__name__}"
    for cls in _PRINTERS:
        if _hand_written(cls, name) or not cls._generates(prim):
            continue
        if added:
            def method(self, expr, **kwargs):
                return self._print_atom(expr, **kwargs)

            method.__name__, method._from_registry = name, True
            setattr(cls, name, method)
        elif name in vars(cls):
            delattr(cls, name)


registry.subscribe(_install)


def torch_code(expr) -> str:
    return TorchCodePrinter().doprint(expr)


def triton_code(expr) -> str:
    return TritonCodePrinter().doprint(expr)


def latex_code(expr) -> str:
    return LatexFormulaPrinter().doprint(expr)
