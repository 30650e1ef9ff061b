"""The grammar's vocabulary: every primitive defined exactly once.

A primitive has inputs (tensors) and optional named parameters with defaults.  ``build`` maps sympy
arguments (inputs first, then parameters) to the *exact* sympy form; the numerically protected form
that is actually evaluated and compiled is derived from it by :func:`protect` (the Swish paper's
guards: ``log(|u|+eps)``, ``u/(v+eps)``, ``sqrt(|u|)``), so identity is decided on the exact form and
training always sees the safe one.

Spellings are ``str.format`` templates: ``{0}``, ``{1}`` ... are inputs then parameters, ``{eps}`` the
guard epsilon.  Templates may repeat an argument, and printers fill them with printed *expressions*
(``a + b``), so a template parenthesizes an argument wherever precedence could bind it wrongly
(``torch.sinc(({0}) / math.pi)``).

Atoms and macros.  A primitive whose ``build`` is one sympy function class (exp, sigmoid, softplus,
sinc, the moments ...; ``func``) is an *atom*: its expressions contain that function node, and the
printers of kernels/printers.py print every such node with this entry's spellings, through methods
they generate from the registry (sympy's ``_print_<Func>`` style; see ``subscribe``).  This is the one
table of each target's spelling of an atom: adding an atom is an entry here (and, for a function sympy
lacks, its class in functions.py).  Where the guard of ``protect`` wraps the atom (log), ``node`` gives
the spelling of the bare function node, and the entry's ``torch``/``triton`` spell the protected
primitive (what the printer prints for ``protect(log(u))``).  Every other primitive is a *macro*
(relu is Max(u, 0), gelu is written with erf): its expressions are its atoms and operators, which the
printers print; its spellings here are the fused built-in equivalents (``torch.nn.functional.gelu``),
for reference and listing (``actsearch primitives``), checked numerically against the printed form
(tests/test_primitive_spellings.py).  See docs/primitives.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import sympy
from sympy import Abs, Max, Min, Rational, exp, log, sqrt
from sympy.codegen.cfunctions import expm1, log1p

from . import functions as F

EPS = 1e-6  # guard epsilon of protected log/div (float32-safe, the Swish paper uses a small eps too)
# Guards use this opaque positive symbol instead of the number, so a guard stays recognizable (a number
# would merge into x + 1 -> x + 1.000001) and protect() is idempotent: differentiating 1/(u + eps)
# gives (u + eps)**-2, which must not be guarded twice.  Evaluators and printers substitute EPS.
GUARD_EPS = sympy.Symbol("__guard_eps__", positive=True)


@dataclass(frozen=True)
class Cost:
    """Rough per-element cost: arithmetic/compare ops and transcendental calls (exp, log, erf ...)."""

    elementwise: int
    transcendental: int = 0

    @property
    def weighted(self) -> float:
        # A transcendental costs roughly 10 simple ops in a vectorized CPU/GPU kernel.
        return self.elementwise + 10.0 * self.transcendental


@dataclass(frozen=True)
class Primitive:
    name: str
    kind: str  # "nullary" | "unary" | "binary" | "nary" | "moment"
    n_inputs: Optional[int]  # None: variadic, at least 2
    build: Callable[..., sympy.Expr] = field(repr=False)
    torch: str
    triton: Optional[str]
    cost: Cost
    params: tuple[tuple[str, float], ...] = ()
    safe: Optional[str] = None  # the guard applied by `protect`, in words, where one is needed
    doc: str = ""
    aliases: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()  # vocabularies it belongs to: "swish", "pangaea", "modern", "moment"
    # the sympy function class of an atom (the node its spellings print), None for a macro
    func: Optional[type] = field(default=None, repr=False)
    # (target, template) of the bare function node where the protected primitive differs (log's guard)
    node: tuple[tuple[str, str], ...] = ()
    latex: Optional[str] = None  # LaTeX operator of an atom (`\sigma`); None: sympy's own
    # numpy function of an atom sympy provides (a custom function class carries its own `.numpy`); read by
    # actsearch.numeric where its table has none, so a new atom needs no third file
    numpy: Optional[Callable] = field(default=None, repr=False)

    @property
    def is_atom(self) -> bool:
        return self.func is not None

    @property
    def min_args(self) -> int:
        return 2 if self.n_inputs is None else self.n_inputs

    @property
    def max_args(self) -> Optional[int]:
        return None if self.n_inputs is None else self.n_inputs + len(self.params)

    def __call__(self, *args: sympy.Expr) -> sympy.Expr:
        """Build the exact sympy form; missing trailing parameters take their defaults."""
        if self.n_inputs is None:
            return self.build(*args)
        full = list(args) + [sympy.Float(d) if d != int(d) else sympy.Integer(int(d))
                             for _, d in self.params[len(args) - self.n_inputs:]]
        return self.build(*full)

    def template(self, target: str) -> Optional[str]:
        """The spelling template of one target ("torch" or "triton"); None where the target has none."""
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
        return getattr(self, target)

    def spell(self, target: str, *args: str) -> str:
        """The protected primitive applied to argument sources (inputs, then parameters)."""
        return self._fill(target, self.template(target), args)

    def spell_node(self, target: str, *args: str) -> str:
        """An atom's function node func(args) in one target: what the printers print for it."""
        return self._fill(target, dict(self.node).get(target) or self.template(target), args)

    def _fill(self, target: str, template: Optional[str], args) -> str:
        if template is None:
            raise ValueError(f"primitive {self.name!r} has no {target} spelling")
        if self.n_inputs is None:  # variadic: fold the binary template
            out = args[0]
            for a in args[1:]:
                out = template.format(out, a, eps=EPS)
            return out
        return template.format(*args, eps=EPS)


TARGETS = ("torch", "triton")  # code targets with a template per primitive (LaTeX: `latex`, atoms only)


PRIMITIVES: dict[str, Primitive] = {}
_ALIASES: dict[str, str] = {}
_ATOMS: dict[str, Primitive] = {}  # atoms by their function class's name (how sympy's printers dispatch)
_LISTENERS: list = []


def register(name, kind, n_inputs, build, torch, triton, elementwise, transcendental=0, params=(),
             safe=None, doc="", aliases=(), sets=(), func=None, node=None, latex=None, numpy=None) -> Primitive:
    """Add a primitive to the vocabulary (the entries below; also at run time, e.g. in a test).

    `func`: the sympy function class of an atom, by default `build` itself when that is one.  `node`:
    {target: template} of the bare function node where the protected primitive's spelling differs
    (a guard wraps the atom).  `latex`: the LaTeX operator of an atom.  `numpy`: its numpy function
    where actsearch.numeric does not know the sympy function.  Subscribers (the printers)
    are told, so the new atom parses, prints in every target and evaluates with no other change."""
    if func is None and isinstance(build, type) and issubclass(build, sympy.Function):
        func = build
    prim = Primitive(name=name, kind=kind, n_inputs=n_inputs, build=build, torch=torch, triton=triton,
                     cost=Cost(elementwise, transcendental), params=tuple(params), safe=safe, doc=doc,
                     aliases=tuple(aliases), sets=tuple(sets), func=func,
                     node=tuple(sorted((node or {}).items())), latex=latex, numpy=numpy)
    for n in (name, *aliases):
        if n in PRIMITIVES or n in _ALIASES:
            raise ValueError(f"primitive name {n!r} is taken")
    if func is not None and func.__name__ in _ATOMS:
        raise ValueError(f"{func.__name__} is already the atom of {_ATOMS[func.__name__].name!r}")
    PRIMITIVES[name] = prim
    for a in aliases:
        _ALIASES[a] = name
    if func is not None:
        _ATOMS[func.__name__] = prim
        for fn in _LISTENERS:
            fn(prim, True)
    return prim


def unregister(name: str) -> Primitive:
    """Remove a primitive added by `register` (its aliases, its atom, the printers' methods)."""
    prim = PRIMITIVES.pop(name)
    for a in prim.aliases:
        _ALIASES.pop(a, None)
    if prim.func is not None and _ATOMS.get(prim.func.__name__) is prim:
        del _ATOMS[prim.func.__name__]
        for fn in _LISTENERS:
            fn(prim, False)
    return prim


def subscribe(fn) -> None:
    """fn(prim, added) for every atom registered so far (added=True) and on every later register /
    unregister: how printers keep one method per atom (`_print_<Func>`) generated from this table."""
    _LISTENERS.append(fn)
    for prim in list(_ATOMS.values()):
        fn(prim, True)


def atoms() -> list[Primitive]:
    return list(_ATOMS.values())


def atom_of(expr) -> Optional[Primitive]:
    """The atom whose function node `expr` is (by class name through the MRO, as sympy's printers
    dispatch: functions.sinc and sympy.sinc are both `sinc`), or None."""
    for cls in type(expr).__mro__:
        prim = _ATOMS.get(cls.__name__)
        if prim is not None:
            return prim
    return None


_p = register


def get_primitive(name: str) -> Primitive:
    """Look a primitive up by name or alias; KeyError if unknown."""
    return PRIMITIVES[_ALIASES.get(name, name)]


def primitive_names() -> list[str]:
    return sorted(set(PRIMITIVES) | set(_ALIASES))


def _as_expr(v):
    """Internal numbers -> sympy (never used on user text, which the parser converts itself)."""
    if isinstance(v, sympy.Basic):
        return v
    if isinstance(v, int):
        return sympy.Integer(v)
    if isinstance(v, float):
        return sympy.Float(v)
    raise TypeError(f"not a sympy expression: {v!r}")


def _extremum(cls):
    """Max/Min without sympy's ordering proofs: evaluating Max(a, b) asks the assumption system whether
    a >= b, which costs milliseconds per call (most of a parse).  Constants are folded, nested calls
    flattened, duplicates dropped and arguments sorted, which is canonical enough: identity is
    numeric (see actsearch.identity)."""
    def build(*args):
        flat = []
        for a in map(_as_expr, args):
            flat.extend(a.args if isinstance(a, cls) else (a,))
        numbers = [a for a in flat if a.is_number and a.is_comparable]
        rest = sorted(set(a for a in flat if not (a.is_number and a.is_comparable)), key=sympy.default_sort_key)
        if numbers:
            rest.append(cls(*numbers))  # numeric arguments evaluate instantly
            rest = sorted(set(rest), key=sympy.default_sort_key)
        if len(rest) == 1:
            return rest[0]
        return cls(*rest, evaluate=False)
    return build


Max, Min = _extremum(sympy.Max), _extremum(sympy.Min)  # noqa: F811 (shadow sympy's evaluating forms)

# What sympy's complex-valued algebra spells with functions no primitive has.
COMPLEX_PARTS = (sympy.re, sympy.im, sympy.arg, sympy.atan2, sympy.conjugate)


def real_abs(u) -> sympy.Expr:
    """|u| under the exact form's real semantics.

    An exact form is a real function of real x and real parameters, undefined (NaN, as actsearch.numeric
    evaluates it) wherever a subexpression is not real: sqrt(x) for x < 0, log(x) for x <= 0, x**beta.
    sympy cannot prove such a subexpression real, so its Abs treats it as complex and rewrites
    |exp(z)| to exp(re(z)) and |b**z| to b**re(z), with re(sqrt(x)) spelled cos(atan2(0, x)/2)*sqrt(|x|):
    functions that no primitive has and that nothing downstream evaluates, prints or parses.  Here each
    innermost subexpression sympy cannot prove real stands in for a real Dummy while Abs evaluates (so
    |exp(z)| is exp(z), as it is wherever the exact form is defined), then is put back.  Should putting
    it back make sympy rewrite again, |u| stays unevaluated."""
    u = _as_expr(u)
    back: dict = {}
    out = Abs(_hide_non_real(u, back, {}))
    if back:
        out = out.xreplace(back)
    if out.has(*COMPLEX_PARTS) and not u.has(*COMPLEX_PARTS):
        return Abs(u, evaluate=False)
    return out


def _hide_non_real(node, back: dict, seen: dict):
    """`node` with every subexpression that sympy cannot prove real, once its own arguments are (after
    this same replacement), replaced by a real Dummy; `back` maps each Dummy to what it replaced."""
    if not node.args or node.is_extended_real:
        return node
    if node in seen:
        return seen[node]
    args = tuple(_hide_non_real(a, back, seen) for a in node.args)
    if args == node.args:
        new = node
    elif isinstance(node, (sympy.Max, sympy.Min)):
        new = node.func(*args, evaluate=False)
    else:
        new = node.func(*args)
    if not new.is_extended_real:
        # b**e is >= 0 wherever it is real when b >= 0, or when e is a non-integer constant (evaluated,
        # a negative base gives NaN there: sqrt(x), x**(1/3)); so |sqrt(x)| is sqrt(x).
        nonneg = isinstance(new, sympy.Pow) and bool(
            new.base.is_extended_nonnegative or (new.exp.is_number and not is_integer_exponent(new.exp)))
        new = sympy.Dummy(nonnegative=True) if nonneg else sympy.Dummy(real=True)
        back[new] = node
    seen[node] = new
    return new

SW, PG, MO = "swish", "pangaea", "modern"
half = Rational(1, 2)
TORCH_SOFTPLUS = "torch.nn.functional.softplus({0})"
# torch's softplus (u itself above the threshold 20); the exp is clamped so that the branch tl.where
# discards never overflows to inf
TRITON_SOFTPLUS = "tl.where({0} > 20.0, {0}, libdevice.log1p(tl.exp(tl.minimum({0}, 20.0))))"


def _of(template: str, arg: str) -> str:
    """`template` applied to the template expression `arg` (macros spelled with an atom's spelling)."""
    return template.replace("{0}", arg)


# ---- nullary: a learnable constant ----------------------------------------------------------------
_p("const", "nullary", 0, lambda b: b, "{0}", "{0}", 0, params=[("beta", 1.0)],
   doc="the constant β (learnable)", sets=(SW,))

# ---- unary ----------------------------------------------------------------------------------------
_p("identity", "unary", 1, lambda u: u, "{0}", "{0}", 0, doc="x", sets=(SW, PG))
_p("neg", "unary", 1, lambda u: -u, "(-{0})", "(-{0})", 1, doc="-x", sets=(SW, PG))
_p("abs", "unary", 1, real_abs, "torch.abs({0})", "tl.abs({0})", 1, sets=(SW, PG), func=Abs)
_p("square", "unary", 1, lambda u: u**2, "torch.square({0})", "({0} * {0})", 1, sets=(SW, PG))
_p("cube", "unary", 1, lambda u: u**3, "torch.pow({0}, 3)", "({0} * {0} * {0})", 2, sets=(SW, PG))
_p("sqrt", "unary", 1, sqrt, "torch.sqrt(torch.abs({0}))", "tl.sqrt(tl.abs({0}))", 2,
   safe="sqrt(|u|)", sets=(SW, PG))
_p("scale", "unary", 1, lambda u, b: b * u, "({1} * {0})", "({1} * {0})", 1, params=[("beta", 1.0)],
   doc="βx", sets=(SW,))
_p("shift", "unary", 1, lambda u, b: u + b, "({0} + {1})", "({0} + {1})", 1, params=[("beta", 0.0)],
   doc="x+β", sets=(SW,))
# the guarded spelling as the printers print protect(log(u)) (sympy orders eps first; a + b is b + a)
_p("log", "unary", 1, log, "torch.log({eps} + torch.abs({0}))", "tl.log({eps} + tl.abs({0}))", 2, 1,
   safe="log(|u| + eps)", sets=(SW, PG), node={"torch": "torch.log({0})", "triton": "tl.log({0})"})
_p("exp", "unary", 1, exp, "torch.exp({0})", "tl.exp({0})", 0, 1, sets=(SW, PG))
_p("sin", "unary", 1, sympy.sin, "torch.sin({0})", "tl.sin({0})", 0, 1, sets=(SW, PG))
_p("cos", "unary", 1, sympy.cos, "torch.cos({0})", "tl.cos({0})", 0, 1, sets=(SW, PG))
_p("tan", "unary", 1, sympy.tan, "torch.tan({0})", "libdevice.tan({0})", 0, 1, sets=(PG,))
_p("sinh", "unary", 1, sympy.sinh, "torch.sinh({0})", "libdevice.sinh({0})", 0, 1, sets=(SW, PG))
_p("cosh", "unary", 1, sympy.cosh, "torch.cosh({0})", "libdevice.cosh({0})", 0, 1, sets=(SW, PG))
_p("tanh", "unary", 1, sympy.tanh, "torch.tanh({0})", "libdevice.tanh({0})", 0, 1, sets=(SW, PG))
_p("asinh", "unary", 1, sympy.asinh, "torch.asinh({0})", "libdevice.asinh({0})", 0, 1, sets=(SW, PG))
_p("atan", "unary", 1, sympy.atan, "torch.atan({0})", "libdevice.atan({0})", 0, 1, sets=(SW, PG),
   aliases=("arctan",))
# sympy's sinc is sin(x)/x; torch.sinc is sin(pi x)/(pi x), hence the division by pi in the spelling.
# Triton: 1 at 0, and the discarded branch divides by 1 there (no 0/0 computed, as torch.sinc).
_p("sinc", "unary", 1, F.sinc, "torch.sinc(({0}) / math.pi)",
   "tl.where({0} == 0.0, 1.0, tl.sin({0}) / tl.where({0} == 0.0, 1.0, {0}))", 2, 1,
   doc="sin(x)/x (un-normalized)", sets=(SW, PG), latex=r"\operatorname{sinc}")
_p("relu", "unary", 1, lambda u: Max(u, 0), "torch.relu({0})", "tl.maximum({0}, 0.0)", 1,
   doc="max(x, 0)", sets=(SW, PG, MO))
_p("min0", "unary", 1, lambda u: Min(u, 0), "torch.clamp_max({0}, 0.0)", "tl.minimum({0}, 0.0)", 1,
   doc="min(x, 0)", sets=(SW,))
_p("sigmoid", "unary", 1, F.sigmoid, "torch.sigmoid({0})", "tl.sigmoid({0})", 0, 1, sets=(SW, PG),
   latex=r"\sigma")
_p("softplus", "unary", 1, F.softplus, TORCH_SOFTPLUS, TRITON_SOFTPLUS, 2, 2, sets=(SW, PG),
   latex=r"\operatorname{softplus}")
_p("gaussian", "unary", 1, lambda u: exp(-u**2), "torch.exp(-torch.square({0}))",
   "tl.exp(-({0} * {0}))", 2, 1, doc="exp(-x²)", sets=(SW,))
_p("erf", "unary", 1, sympy.erf, "torch.erf({0})", "tl.erf({0})", 0, 1, sets=(SW, PG))
_p("erfc", "unary", 1, sympy.erfc, "torch.erfc({0})", "libdevice.erfc({0})", 0, 1, sets=(PG,))
_p("expm1", "unary", 1, expm1, "torch.expm1({0})", "libdevice.expm1({0})", 0, 1, sets=(PG,))
_p("log1p", "unary", 1, log1p, "torch.log1p({0})", "libdevice.log1p({0})", 0, 1, sets=(PG,))
_p("log_sigmoid", "unary", 1, lambda u: -F.softplus(-u), "torch.nn.functional.logsigmoid({0})",
   f"(-{_of(TRITON_SOFTPLUS, '(-{0})')})", 3, 2, sets=(PG,),
   aliases=("logsigmoid",))
_p("bessel_i0e", "unary", 1, F.bessel_i0e, "torch.special.i0e({0})",
   "(libdevice.cyl_bessel_i0({0}) * tl.exp(-tl.abs({0})))", 2, 2, sets=(PG,), aliases=("i0e",),
   latex=r"\operatorname{i_{0}e}")
_p("bessel_i1e", "unary", 1, F.bessel_i1e, "torch.special.i1e({0})",
   "(libdevice.cyl_bessel_i1({0}) * tl.exp(-tl.abs({0})))", 2, 2, sets=(PG,), aliases=("i1e",),
   latex=r"\operatorname{i_{1}e}")
_p("reciprocal", "unary", 1, lambda u: 1 / u, "(1.0 / ({0} + {eps}))", "(1.0 / ({0} + {eps}))", 2,
   safe="1/(u + eps)", sets=(PG,))
# torch: in u's dtype (torch.where(c, 1.0, 0.5) has the default dtype, float32 in a float64 kernel);
# sympy's Heaviside(u) is Heaviside(u, 1/2): another value at 0 (none of the grammar's) is the printers' own
_p("heaviside", "unary", 1, sympy.Heaviside, "(0.5 + 0.5*torch.sign({0}))",
   "tl.where({0} > 0.0, 1.0, tl.where({0} < 0.0, 0.0, 0.5))", 2, doc="step, 1/2 at 0",
   aliases=("step",))
_p("sign", "unary", 1, sympy.sign, "torch.sign({0})", "tl.where({0} > 0.0, 1.0, tl.where({0} < 0.0, -1.0, 0.0))", 2)

# Named activations (macros: their exact form is written in the atoms above, so `silu(x)` and
# `x*sigmoid(x)` are the same expression; torch spellings use the fused built-ins).
_p("elu", "unary", 1, lambda u, a: Max(u, 0) + Min(0, a * expm1(u)), "torch.nn.functional.elu({0}, {1})",
   "tl.where({0} > 0.0, {0}, {1} * libdevice.expm1({0}))", 3, 1, params=[("alpha", 1.0)], sets=(PG, MO))
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_p("selu", "unary", 1,
   lambda u: sympy.Float(_SELU_SCALE) * (Max(u, 0) + Min(0, sympy.Float(_SELU_ALPHA) * expm1(u))),
   "torch.selu({0})", f"({_SELU_SCALE!r} * tl.where({{0}} > 0.0, {{0}}, {_SELU_ALPHA!r} * libdevice.expm1({{0}})))",
   4, 1, sets=(PG, MO))
_p("celu", "unary", 1, lambda u, a: Max(u, 0) + Min(0, a * expm1(u / a)), "torch.celu({0}, {1})",
   "tl.where({0} > 0.0, {0}, {1} * libdevice.expm1({0} / {1}))", 4, 1, params=[("alpha", 1.0)], sets=(MO,))
_p("swish", "unary", 1, lambda u, b: u * F.sigmoid(b * u), "({0} * torch.sigmoid({1} * {0}))",
   "({0} * tl.sigmoid({1} * {0}))", 2, 1, params=[("beta", 1.0)], doc="x·σ(βx)", sets=(PG, MO))
_p("silu", "unary", 1, lambda u: u * F.sigmoid(u), "torch.nn.functional.silu({0})",
   "({0} * tl.sigmoid({0}))", 1, 1, sets=(MO,))
_p("softsign", "unary", 1, lambda u: u / (1 + real_abs(u)), "torch.nn.functional.softsign({0})",
   "({0} / (1.0 + tl.abs({0})))", 3, sets=(PG, MO))
_p("hard_sigmoid", "unary", 1, lambda u: Min(Max(u / 6 + half, 0), 1), "torch.nn.functional.hardsigmoid({0})",
   "tl.minimum(tl.maximum({0} / 6.0 + 0.5, 0.0), 1.0)", 4, sets=(PG, MO), aliases=("hardsigmoid",))
_p("hard_tanh", "unary", 1, lambda u: Max(Min(u, 1), -1), "torch.nn.functional.hardtanh({0})",
   "tl.maximum(tl.minimum({0}, 1.0), -1.0)", 2, sets=(MO,), aliases=("hardtanh",))
_p("hardswish", "unary", 1, lambda u: u * Min(Max(u + 3, 0), 6) / 6, "torch.nn.functional.hardswish({0})",
   "({0} * tl.minimum(tl.maximum({0} + 3.0, 0.0), 6.0) / 6.0)", 5, sets=(MO,), aliases=("hard_swish",))
_p("relu6", "unary", 1, lambda u: Min(Max(u, 0), 6), "torch.nn.functional.relu6({0})",
   "tl.minimum(tl.maximum({0}, 0.0), 6.0)", 2, sets=(MO,))
_p("leaky_relu", "unary", 1, lambda u, a: Max(u, 0) + Min(u, 0) * a,
   "torch.nn.functional.leaky_relu({0}, {1})", "tl.where({0} > 0.0, {0}, {1} * {0})", 3,
   params=[("slope", 0.01)], sets=(MO,))
_p("gelu", "unary", 1, lambda u: u * (1 + sympy.erf(u / sqrt(2))) / 2, "torch.nn.functional.gelu({0})",
   "(0.5 * {0} * (1.0 + tl.erf({0} * 0.7071067811865476)))", 4, 1, doc="x·Φ(x), erf form", sets=(MO,))
_p("gelu_tanh", "unary", 1,
   lambda u: u * (1 + sympy.tanh(sqrt(2 / sympy.pi) * (u + sympy.Float("0.044715") * u**3))) / 2,
   "torch.nn.functional.gelu({0}, approximate='tanh')",
   "(0.5 * {0} * (1.0 + libdevice.tanh(0.7978845608028654 * ({0} + 0.044715 * {0} * {0} * {0}))))",
   7, 1, doc="tanh approximation of GELU", sets=(MO,))
_p("mish", "unary", 1, lambda u: u * sympy.tanh(F.softplus(u)), "torch.nn.functional.mish({0})",
   f"({{0}} * libdevice.tanh({TRITON_SOFTPLUS}))", 3, 3, sets=(MO,))
_p("tanhshrink", "unary", 1, lambda u: u - sympy.tanh(u), "torch.nn.functional.tanhshrink({0})",
   "({0} - libdevice.tanh({0}))", 1, 1, sets=(MO,))
_p("softshrink", "unary", 1, lambda u, l: u - Min(Max(u, -l), l), "torch.nn.functional.softshrink({0}, {1})",
   "({0} - tl.minimum(tl.maximum({0}, -{1}), {1}))", 3, params=[("lambd", 0.5)], sets=(MO,))

# ---- binary ---------------------------------------------------------------------------------------
_p("add", "binary", 2, lambda a, b: a + b, "({0} + {1})", "({0} + {1})", 1, sets=(SW, PG))
_p("sub", "binary", 2, lambda a, b: a - b, "({0} - {1})", "({0} - {1})", 1, sets=(SW, PG))
_p("mul", "binary", 2, lambda a, b: a * b, "({0} * {1})", "({0} * {1})", 1, sets=(SW, PG))
_p("div", "binary", 2, lambda a, b: a / b, "({0} / ({1} + {eps}))", "({0} / ({1} + {eps}))", 2,
   safe="u/(v + eps)", sets=(SW, PG))
_p("pow", "binary", 2, lambda a, b: a**b, "torch.pow(torch.abs({0}) + {eps}, {1})",
   "libdevice.pow(tl.abs({0}) + {eps}, {1})", 1, 2, safe="(|u| + eps)**v", sets=(PG,))
_p("sigmoid_mul", "binary", 2, lambda a, b: F.sigmoid(a) * b, "(torch.sigmoid({0}) * {1})",
   "(tl.sigmoid({0}) * {1})", 1, 1, doc="σ(x1)·x2", sets=(SW,))
_p("gauss_dist", "binary", 2, lambda a, b, be: exp(-be * (a - b)**2),
   "torch.exp(-{2} * torch.square({0} - {1}))", "tl.exp(-{2} * ({0} - {1}) * ({0} - {1}))", 4, 1,
   params=[("beta", 1.0)], doc="exp(-β(x1-x2)²)", sets=(SW,))
_p("laplace_dist", "binary", 2, lambda a, b, be: exp(-be * real_abs(a - b)),
   "torch.exp(-{2} * torch.abs({0} - {1}))", "tl.exp(-{2} * tl.abs({0} - {1}))", 3, 1,
   params=[("beta", 1.0)], doc="exp(-β|x1-x2|)", sets=(SW,))
_p("mix", "binary", 2, lambda a, b, be: be * a + (1 - be) * b, "({2} * {0} + (1.0 - {2}) * {1})",
   "({2} * {0} + (1.0 - {2}) * {1})", 4, params=[("beta", 0.5)], doc="βx1+(1-β)x2", sets=(SW,))

# ---- n-ary (also binary): fold over 2+ inputs -------------------------------------------------------
_p("max", "nary", None, Max, "torch.maximum({0}, {1})", "tl.maximum({0}, {1})", 1, sets=(SW, PG),
   aliases=("maximum",))
_p("min", "nary", None, Min, "torch.minimum({0}, {1})", "tl.minimum({0}, {1})", 1, sets=(SW, PG),
   aliases=("minimum",))
_p("sum", "nary", None, lambda *a: sympy.Add(*a), "({0} + {1})", "({0} + {1})", 1, sets=(PG,))
_p("prod", "nary", None, lambda *a: sympy.Mul(*a), "({0} * {1})", "({0} * {1})", 1, sets=(PG,))

# ---- moments (normalization-activation layers; (N, C, *spatial) tensors) ---------------------------
# spelled as calls of the torch_ops helpers (embedded in generated modules), so that a compound
# argument is one function argument
for _name, _cls in F.MOMENT_FUNCTIONS.items():
    if _cls.scope == "group":
        _torch = f"_group_moment({{0}}, {_cls.stat!r}, groups)"
    else:
        _torch = f"_axis_moment({{0}}, {_cls.scope!r}, {_cls.stat!r})"
    _p(_name, "moment", 1, _cls, _torch, None, 4, 1 if _cls.stat == "std" else 0,
       doc=_cls.__doc__, sets=("moment",), latex=rf"\operatorname{{{_name.replace('_', chr(92) + '_')}}}")


def vocabulary(name: str) -> list[Primitive]:
    """Primitives of one vocabulary ("swish", "pangaea", "modern", "moment")."""
    return [p for p in PRIMITIVES.values() if name in p.sets]


# ---- guards: exact form -> the protected form that is evaluated and compiled ------------------------
def is_integer_exponent(ex: sympy.Expr) -> bool:
    """sympy folds (x**1.5)**2 to x**3.0: an integral Float exponent is an integer power (no guard, and
    evaluated as one), so x**3.0 is the same function as x**3."""
    return bool(ex.is_Integer or (ex.is_Float and float(ex).is_integer()))



def protect(expr: sympy.Expr) -> sympy.Expr:
    """Apply the safe-domain guards wherever sympy cannot prove the unguarded form is safe.

    log(u) -> log(|u|+eps) unless u > 0;  u**-n -> (u+eps)**-n unless u != 0 is provable;
    u**(p/q) -> |u|**(p/q) unless u >= 0, and max(|u|, eps)**(-p/q) for negative fractional powers;
    u**v (symbolic v) -> (|u|+eps)**v.
    Applied bottom-up, so guards compose (`log(sqrt(x))` -> `log(sqrt(|x|)+eps)`).
    """
    e = GUARD_EPS

    def guard(node):
        if isinstance(node, sympy.log):
            (u,) = node.args
            return node if u.is_positive else log(Abs(u) + e)
        if isinstance(node, sympy.Pow):
            base, ex = node.args
            if is_integer_exponent(ex):
                if ex.is_negative and not base.is_nonzero and not base.has(e):
                    return (base + e) ** ex
                return node
            safe_base = base if base.is_nonnegative else Abs(base)
            if not ex.is_nonnegative and not safe_base.is_positive and not safe_base.has(e):
                # |u|**(-1/2) (from d/dx sqrt): clamp rather than shift, exact wherever |u| >= eps;
                # a symbolic exponent keeps the paper-style (|u| + eps)**v of the pow primitive.
                safe_base = Max(safe_base, e) if ex.is_number else safe_base + e
            return node if safe_base is base else safe_base ** ex
        return node

    return _bottom_up(expr, guard)


def _bottom_up(expr, fn):
    if not expr.args:
        return fn(expr)
    new_args = tuple(_bottom_up(a, fn) for a in expr.args)
    node = expr.func(*new_args) if new_args != expr.args else expr
    return fn(node)


__all__ = ["Cost", "Primitive", "PRIMITIVES", "TARGETS", "EPS", "GUARD_EPS", "is_integer_exponent", "get_primitive",
           "primitive_names", "vocabulary", "protect", "register", "unregister", "subscribe", "atoms", "atom_of"]
