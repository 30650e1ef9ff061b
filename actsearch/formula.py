"""Safe formula parsing, printing and the Candidate type.

User text is parsed with Python's ``ast`` (which only builds a tree, it never runs anything) and
walked with a whitelist; sympy objects are built directly from the whitelisted nodes.  ``eval``,
``sympify`` and ``parse_expr`` are never called on user text: sympify runs arbitrary code, and even a
restricted namespace can be escaped through ``().__class__.__base__.__subclasses__()`` chains.
"""
from __future__ import annotations

import ast
import keyword
import math
import numbers
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Optional

import numpy as np
import sympy
from sympy.printing.str import StrPrinter

from actsearch.primitives import MOMENT_FUNCTIONS, PRIMITIVES, get_primitive, primitive_names
from actsearch.primitives import registry as _registry

X = sympy.Symbol("x", real=True)
_ZERO = np.zeros(1)
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}
RESERVED = {"x"} | set(CONSTANTS)


@dataclass(frozen=True)
class Limits:
    """Hard bounds that make every parse end quickly, whatever the input."""

    max_length: int = 2000          # characters, checked before anything else
    max_nodes: int = 400            # AST nodes
    max_depth: int = 40             # AST nesting
    max_constant: float = 1e100     # |value| of every literal and every constant subexpression
    max_exponent: float = 16        # |constant exponent| of ** and pow(), also after sympy folds them
    max_params: int = 16

    @property
    def max_literal(self) -> float:
        # Equal to max_constant so that every constant format_formula prints parses again.
        return self.max_constant


DEFAULT_LIMITS = Limits()


class FormulaError(ValueError):
    """A formula that cannot be turned into a candidate; names the position and offending token."""

    def __init__(self, message: str, text: str = "", col: Optional[int] = None, token: Optional[str] = None):
        self.reason = message
        self.text = text
        self.col = col
        self.token = token
        where = ""
        if col is not None:
            where = f" at column {col + 1}"
            if token is not None:
                shown = token if len(token) <= 40 else token[:37] + "..."
                where += f" ({shown!r})"
        super().__init__(f"{message}{where}")


def _param_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


def validate_param_name(name: str) -> None:
    if (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", name) or name.startswith("__")
            or keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in ("True", "False", "None")):
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise FormulaError(f"invalid parameter name {shown!r} (use a short identifier such as beta)")
    if name in RESERVED or name in PRIMITIVES or name in primitive_names():
        raise FormulaError(f"parameter name {name!r} is reserved (it names the input, a constant or a primitive)")


class _Builder:
    def __init__(self, text: str, params: Mapping[str, float], limits: Limits, lead: int = 0,
                 original: Optional[str] = None):
        self.text = text            # the stripped text that ast parsed
        self.original = original if original is not None else text
        self.lead = lead            # leading whitespace removed before parsing
        self.params = params
        self.limits = limits
        self.used: set[str] = set()

    def fail(self, message: str, node: Optional[ast.AST] = None) -> FormulaError:
        if node is None or not hasattr(node, "col_offset"):
            return FormulaError(message, self.original)
        token = ast.get_source_segment(self.text, node) or type(node).__name__
        return FormulaError(message, self.original, self.lead + node.col_offset, token)

    def build(self, node: ast.AST, depth: int = 0) -> sympy.Expr:
        if depth > self.limits.max_depth:
            raise self.fail(f"formula nested deeper than {self.limits.max_depth} levels", node)
        expr = self._build(node, depth)
        if expr.is_number:
            self.check_constant(expr, node)
        return expr

    def check_constant(self, expr: sympy.Expr, node: ast.AST) -> None:
        """Invariant: every constant subexpression is real and of magnitude <= max_constant, and every
        rational has numerator and denominator within it.  Checked right after each node is built, in
        float64 by our own evaluator (never mpmath, which can hang on exp(exp(exp(100)))), so sympy
        only ever folds bounded numbers (<= 100 digits, exponent <= 16): construction stays cheap."""
        bound = self.limits.max_constant
        undefined = _undefined_reason(expr)
        if undefined:
            raise self.fail(f"formula contains {undefined}", node)
        if expr.is_Float and expr != 0 and not (1 / bound <= abs(expr) <= bound):
            # sympy Floats have unbounded exponents; exp(-999.5) folds to 8e-435, which prints as 0.0
            raise self.fail(f"constant outside the representable range [{1 / bound:g}, {bound:g}]", node)
        if expr.is_Rational:
            if abs(expr.p) > bound or expr.q > bound:  # exact int-vs-float comparison
                raise self.fail(f"constant larger than {bound:g} (or a fraction with such a numerator or "
                                f"denominator)", node)
            return
        value = _constant_value(expr)
        if math.isnan(value):
            raise self.fail("constant is not a real number (complex or undefined)", node)
        if not abs(value) <= bound:
            raise self.fail(f"constant larger than {bound:g}", node)

    def _build(self, node: ast.AST, depth: int) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.build(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self.binop(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        what = {ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda",
                ast.ListComp: "comprehension", ast.GeneratorExp: "comprehension", ast.SetComp: "comprehension",
                ast.DictComp: "comprehension", ast.Compare: "comparison", ast.BoolOp: "boolean operator",
                ast.IfExp: "conditional expression", ast.Starred: "starred argument",
                ast.NamedExpr: "assignment expression", ast.JoinedStr: "string"}.get(type(node))
        raise self.fail(f"{what or type(node).__name__ + ' expression'} is not allowed in a formula", node)

    def constant(self, node: ast.Constant) -> sympy.Expr:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail("only numeric literals are allowed", node)
        if isinstance(v, int):
            if abs(v) > self.limits.max_literal:
                raise self.fail(f"numeric literal larger than {self.limits.max_literal:g}", node)
            return sympy.Integer(v)
        if not math.isfinite(v) or abs(v) > self.limits.max_literal:
            raise self.fail(f"numeric literal must be finite and at most {self.limits.max_literal:g}", node)
        # Floats stay Floats even when integral: 1.0**(beta*x) must not collapse to 1 on reparse.
        return sympy.Float(repr(v))

    def name(self, node: ast.Name) -> sympy.Expr:
        n = node.id
        if n == "x":
            return X
        if n in self.params:
            self.used.add(n)
            return _param_symbol(n)
        if n in CONSTANTS:
            return CONSTANTS[n]
        if n in PRIMITIVES or n in primitive_names():
            raise self.fail(f"primitive {n!r} must be called, e.g. {n}(x)", node)
        shown = n if len(n) <= 40 else n[:37] + "..."
        raise self.fail(f"unknown name {shown!r}: use x, pi, E, a primitive call, or declare a parameter "
                        f"(--param {shown}=VALUE)", node)

    def binop(self, node: ast.BinOp, depth: int) -> sympy.Expr:
        ops = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
        if type(node.op) not in ops:
            raise self.fail(f"operator {type(node.op).__name__} is not allowed (use + - * / **)", node)
        left = self.build(node.left, depth + 1)
        right = self.build(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return self.power(left, right, node)
        return {ast.Add: lambda: left + right, ast.Sub: lambda: left - right,
                ast.Mult: lambda: left * right, ast.Div: lambda: left / right}[type(node.op)]()

    def power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """base**exponent for `**` and pow(): the exponent bound is checked before sympy folds anything
        (9**9**9**9 is refused, never computed), and again on what sympy made of it ((x**16)**16 folds
        to x**256)."""
        self.check_exponent(exponent, node)
        out = base ** exponent
        for p in (out.atoms(sympy.Pow) if out.has(sympy.Pow) else ()):
            self.check_exponent(p.exp, node)
        return out

    def check_exponent(self, exponent: sympy.Expr, node: ast.AST) -> None:
        if exponent.is_number and not abs(_constant_value(exponent)) <= self.limits.max_exponent:
            raise self.fail(f"exponent must be a real constant of magnitude at most "
                            f"{self.limits.max_exponent:g} (Limits.max_exponent)", node)

    def call(self, node: ast.Call, depth: int) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail("only calls of primitives by name are allowed", node.func)
        fname = node.func.id
        try:
            prim = get_primitive(fname)
        except KeyError:
            shown = fname if len(fname) <= 40 else fname[:37] + "..."
            raise self.fail(f"unknown function {shown!r} (see `actsearch primitives` for the list)",
                            node.func) from None
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed in {fname}()", node.keywords[0].value)
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail("starred argument is not allowed in a formula", a)
        n = len(node.args)
        lo, hi = prim.min_args, prim.max_args
        if n < lo or (hi is not None and n > hi):
            if hi is None:
                want = f"at least {lo}"
            elif lo == hi:
                want = f"exactly {lo}"
            else:
                want = f"{lo} to {hi} (inputs, then {', '.join(p for p, _ in prim.params)})"
            raise self.fail(f"{fname}() takes {want} argument{'s' if want != 'exactly 1' else ''}, got {n}", node)
        args = [self.build(a, depth + 1) for a in node.args]
        if prim.name == "pow":
            return self.power(args[0], args[1], node)
        if prim.kind == "moment" and not args[0].has(X):
            raise self.fail(f"{fname}() reduces a tensor over its axes; its argument must depend on x", node)
        if prim.name in ("max", "min") and sum(a.is_number for a in args) > 1:
            # keep only the dominant constant, chosen in float64 by our evaluator: sympy compares every
            # pair with evalf at escalating precision, ~0.3 s per constant such as
            # gelu_tanh(-softplus(1e100))**(2/3) (a tie within float64 keeps the first)
            consts = [a for a in args if a.is_number]
            pick = (max if prim.name == "max" else min)(consts, key=_constant_value)
            args = [a for a in args if not a.is_number] + [pick]
        out = prim(*args)
        if out.has(sympy.Pow):  # macros can fold powers too (square(x**16))
            for p in out.atoms(sympy.Pow):
                self.check_exponent(p.exp, node)
        return out


def _constant_value(expr: sympy.Expr) -> float:
    """float64 value of a constant expression by the tree-walking evaluator: inf/nan instead of hangs."""
    from actsearch.numeric import EvaluationError, evaluate

    if expr.is_Integer or expr.is_Float or expr.is_Rational:
        try:
            return float(expr)
        except OverflowError:
            return math.inf
    try:
        return float(evaluate(expr, _ZERO)[0])
    except (EvaluationError, OverflowError, TypeError, ValueError):
        return math.nan


def _node_count(tree: ast.AST) -> int:
    return sum(1 for _ in ast.walk(tree))


_UNDEFINED = {sympy.zoo: "division by zero", sympy.nan: "an undefined value (nan)",
              sympy.oo: "an infinite constant", sympy.I: "a complex number"}


def _undefined_reason(expr: sympy.Expr) -> Optional[str]:
    for atom, why in _UNDEFINED.items():
        if expr.has(atom) or (atom is sympy.oo and expr.has(-sympy.oo)):
            return why
    return None


def _check_result(expr: sympy.Expr, text: str) -> None:
    """Whole-expression check (sympy can produce zoo/I when combining non-constant parts)."""
    why = _undefined_reason(expr)
    if why:
        raise FormulaError(f"formula contains {why}", text)


def _validate_params(params, limits: Limits) -> dict[str, float]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise FormulaError(f"params must be a mapping of name to value, got {type(params).__name__}")
    if len(params) > limits.max_params:
        raise FormulaError(f"{len(params)} parameters declared; the limit is {limits.max_params}")
    out = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise FormulaError(f"parameter names must be strings, got {name!r}")
        validate_param_name(name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numbers.Real: numpy scalars too
            raise FormulaError(f"parameter {name!r} needs a finite numeric value, got {value!r}"[:200])
        if isinstance(value, numbers.Integral) and abs(int(value)) > limits.max_constant:
            raise FormulaError(f"parameter {name!r} must be a finite number of magnitude at most {limits.max_constant:g}")
        value = float(value)
        if not math.isfinite(value) or abs(value) > limits.max_constant:
            raise FormulaError(f"parameter {name!r} must be a finite number of magnitude at most {limits.max_constant:g}")
        out[name] = value
    return out


def parse_formula(text: str, params: Optional[Mapping[str, float]] = None,
                  limits: Limits = DEFAULT_LIMITS) -> "Candidate":
    """Parse user text into a Candidate.  Raises FormulaError for anything not in the whitelist."""
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, got {type(text).__name__}")
    if len(text) > limits.max_length:
        raise FormulaError(f"formula is {len(text)} characters long; the limit is {limits.max_length}")
    params = _validate_params(params, limits)
    # ASCII only: Python NFKC-normalizes identifiers, so lookalikes ('ｘ', '𝑥') would silently mean x,
    # and ast column offsets are UTF-8 byte offsets.
    for i, ch in enumerate(text):
        if not (" " <= ch <= "~" or ch == "\t"):
            what = "line break" if ch in "\r\n" else "non-ASCII or control character"
            raise FormulaError(f"{what} {ch!r} is not allowed (a formula is a single line of ASCII)", text, i, ch)
    stripped = text.strip()
    if not stripped:
        raise FormulaError("formula is empty")
    lead = len(text) - len(text.lstrip())  # columns are reported in the original text
    try:
        with warnings.catch_warnings():  # SyntaxWarning/DeprecationWarning for odd literals stay inside
            warnings.simplefilter("ignore")
            tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        if not exc.offset:  # CPython reports offset 0 when the input ends too early
            raise FormulaError("syntax error: formula ends unexpectedly", text, lead + len(stripped), "<end>") from None
        col = min(exc.offset - 1, len(stripped))
        tok = stripped[col:col + 10] if col < len(stripped) else "<end>"
        raise FormulaError(f"syntax error: {exc.msg}", text, lead + col, tok) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise FormulaError(f"formula cannot be parsed ({type(exc).__name__})", text) from None
    if _node_count(tree) > limits.max_nodes:
        raise FormulaError(f"formula has more than {limits.max_nodes} syntax nodes", text)
    builder = _Builder(stripped, params, limits, lead, text)
    try:
        expr = builder.build(tree.body)
    except FormulaError:
        raise
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise FormulaError(f"formula cannot be built ({type(exc).__name__}: {str(exc)[:80]})", text) from None
    _check_result(expr, text)
    # early refusal (canonicalize never sees a folded 4e298); the limits are enforced on the canonical
    # form, by check_canonical in Candidate.from_expr
    _check_folded_constants(expr, text, limits)
    used = {n: float(params[n]) for n in sorted(builder.used)}
    return Candidate.from_expr(expr, used, source=stripped, limits=limits)


def _check_folded_constants(expr: sympy.Expr, text: str, limits: Limits) -> None:
    """sympy folds coefficients while combining non-constant terms (2*(x + 1e100) -> 2*x + 2e100), which
    the per-node check cannot see; every number of the final expression must print as a valid literal."""
    bound = limits.max_constant
    for n in expr.atoms(sympy.Number):
        if n.is_Rational:
            ok = abs(n.p) <= bound and n.q <= bound
        else:
            ok = n == 0 or 1 / bound <= abs(n) <= bound
        if not ok:
            raise FormulaError(f"formula folds to the constant {float(n):.3g}, outside [{1 / bound:g}, {bound:g}] "
                               f"(Limits.max_constant)", text)


# ---- the canonical-form invariant ----------------------------------------------------------------
_STRUCTURAL = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Max, sympy.Min)
_SUPPORTED: Optional[frozenset] = None


def _forget_supported(prim, added) -> None:  # an atom registered or removed at run time
    global _SUPPORTED
    _SUPPORTED = None


_registry.subscribe(_forget_supported)


def supported_functions() -> frozenset:
    """The sympy function classes a canonical form may contain: exactly those the primitives build, so
    the printer spells each as a primitive call, the parser reads it back, and the evaluator, `protect`
    and the kernels know it (sympy's own re, atan2, Piecewise ... are none of these)."""
    global _SUPPORTED
    if _SUPPORTED is None:
        args = [sympy.Symbol(f"_a{i}", real=True) for i in range(2)]
        found = set()
        for prim in PRIMITIVES.values():
            built = prim(*args[:2 if prim.n_inputs is None else prim.n_inputs])
            found.update(type(f) for f in sympy.preorder_traversal(built) if isinstance(f, sympy.Function))
        _SUPPORTED = frozenset(found)
    return _SUPPORTED


def check_canonical(expr: sympy.Expr, params: Mapping[str, float], limits: Limits = DEFAULT_LIMITS,
                    text: str = "") -> None:
    """The invariant of every Candidate, checked on its final (canonical) form: it contains only
    primitives' functions, x and its parameters, and it satisfies `limits` as printed, so that
    parse_formula(format_formula(c), params=c.params) reads it back (and gives the same id).

    The parser bounds each AST node it builds, but sympy folds while it builds and canonicalize rewrites
    afterwards: x*x*...*x (24 factors) becomes x**24, x*1e100*E the coefficient 1e100*E, which a
    reparse of the printed text refuses.  FormulaError names the limit (the search records a rejection)."""
    why = _undefined_reason(expr)
    if why:
        raise FormulaError(f"formula contains {why}", text)
    allowed, symbols = supported_functions(), {X} | {_param_symbol(n) for n in params}
    moments = tuple(MOMENT_FUNCTIONS.values())
    for node in sympy.preorder_traversal(expr):
        if node.is_Symbol:
            if node not in symbols:
                raise FormulaError(f"canonical form contains the undeclared symbol {node.name!r}", text)
        elif node.is_Number or node is sympy.pi or node is sympy.E or isinstance(node, _STRUCTURAL):
            continue
        elif type(node) not in allowed:
            raise FormulaError(f"canonical form contains {type(node).__name__}(), which is not a primitive "
                               f"(sympy introduced it; the evaluator, printer and parser know primitives only)",
                               text)
        elif isinstance(node, moments) and not node.args[0].has(X):
            raise FormulaError(f"canonical form takes {type(node).__name__}() of a constant; its argument "
                               f"must depend on x", text)
    _check_folded_constants(expr, text, limits)
    for p in expr.atoms(sympy.Pow):
        if p.exp.is_number and not abs(_constant_value(p.exp)) <= limits.max_exponent:
            raise FormulaError(f"formula folds to a power with exponent {p.exp}: exponent must be a real "
                               f"constant of magnitude at most {limits.max_exponent:g} (Limits.max_exponent)",
                               text)
    _check_printed(expr, limits, text)


def _check_printed(expr: sympy.Expr, limits: Limits, text: str) -> None:
    """Length, syntax nodes and nesting of the printed canonical form, and every constant subexpression
    it prints as one AST node (1e+100*E in 1e+100*E*x) built and bounded as a reparse would."""
    try:
        printed = format_formula(expr)
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, FormulaError):
            raise FormulaError(exc.reason, text) from None
        raise FormulaError(f"canonical form cannot be printed ({type(exc).__name__})", text) from None
    if len(printed) > limits.max_length:
        raise FormulaError(f"canonical form is {len(printed)} characters long; the limit is {limits.max_length} "
                           f"(Limits.max_length)", text)
    try:
        tree = ast.parse(printed, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise FormulaError("canonical form prints as text that does not parse", text) from None
    if _node_count(tree) > limits.max_nodes:
        raise FormulaError(f"canonical form has more than {limits.max_nodes} syntax nodes (Limits.max_nodes)", text)
    depth, stack = 0, [(tree.body, 0)]
    while stack:  # nesting as _Builder.build counts it
        node, d = stack.pop()
        depth = max(depth, d)
        stack.extend((k, d + 1) for k in _ast_operands(node))
    if depth > limits.max_depth:
        raise FormulaError(f"canonical form is nested deeper than {limits.max_depth} levels (Limits.max_depth)", text)
    constants: list[ast.AST] = []
    if _collect_constant_nodes(tree.body, constants):
        constants.append(tree.body)
    builder = _Builder(printed, {}, limits)
    for node in constants:
        if isinstance(node, (ast.Constant, ast.Name)) or (isinstance(node, ast.UnaryOp)
                                                          and isinstance(node.operand, ast.Constant)):
            continue  # a literal: its number was bounded above
        try:
            builder.build(node)
        except FormulaError as exc:
            bound = " (Limits.max_constant)" if "larger than" in exc.reason or "range" in exc.reason else ""
            raise FormulaError(f"canonical form {printed[:60] + ('...' if len(printed) > 60 else '')!r} has "
                               f"the constant subexpression {exc.token!r}: {exc.reason}{bound}", text) from None


def _ast_operands(node: ast.AST) -> list:
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.Call):
        return list(node.args)
    return []


def _collect_constant_nodes(node: ast.AST, out: list) -> bool:
    """True if `node` is constant (no x, no parameter); appends the maximal constant proper subtrees."""
    if isinstance(node, ast.Name):
        return node.id in CONSTANTS
    if isinstance(node, ast.Constant):
        return True
    kids = _ast_operands(node)
    flags = [_collect_constant_nodes(k, out) for k in kids]
    if kids and all(flags):
        return True
    out.extend(k for k, f in zip(kids, flags) if f)
    return False


# ---- printing --------------------------------------------------------------------------------------
class FormulaPrinter(StrPrinter):
    """Prints sympy in the formula language, so parse_formula(format_formula(c)) is the same function."""

    _names = {"Max": "max", "Min": "min", "Abs": "abs", "Heaviside": "heaviside"}

    def _print_Function(self, expr):
        name = self._names.get(type(expr).__name__, type(expr).__name__)
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    _print_Max = _print_Min = _print_Abs = _print_Function

    def _print_Heaviside(self, expr):
        return f"heaviside({self._print(expr.args[0])})"

    def _print_Exp1(self, expr):
        return "E"

    def _print_Pi(self, expr):
        return "pi"

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Piecewise(self, expr):
        raise FormulaError("piecewise expressions have no formula spelling")


def format_formula(obj) -> str:
    """Print a Candidate or sympy expression in the formula language (round-trips through parse_formula)."""
    expr = obj.expr if isinstance(obj, Candidate) else obj
    return FormulaPrinter({"order": "none"}).doprint(expr)


# ---- the candidate -------------------------------------------------------------------------------
class _RealAbs(sympy.Function):
    """|u| of a real u while kernel_derivative differentiates: d|u| = sign(u) du.  sympy's Abs
    differentiates through re(u) and im(u) when it cannot prove u real (1/(alpha + eps) may be complex
    infinity to it), and re(1/sqrt(1 + u**2)) expands into atan2 terms nothing evaluates or prints."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sympy.sign(self.args[0])


class _RealSign(sympy.Function):
    """sign(u) of a real u while kernel_derivative differentiates: derivative 0 (the step convention).
    sympy leaves d/dx sign(u) an unevaluated Derivative when it cannot prove u real."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sympy.S.Zero


def kernel_derivative(expr: sympy.Expr, wrt: sympy.Symbol) -> sympy.Expr:
    """d(expr)/d(wrt) as every derivative the kernels use (x and parameter gradients) computes it.

    Convention for steps: heaviside(u) and sign(u) are differentiated as 0 everywhere, i.e. each
    DiracDelta that sympy produces (d/du Heaviside(u) = DiracDelta(u), d/du sign(u) = 2 DiracDelta(u))
    is replaced by 0.  The true derivative is 0 almost everywhere and undefined (a delta) on the step;
    this is what torch does (sign's backward is 0; relu's derivative at 0 is taken as 0), what autograd
    through the generated eager forward gives (a step prints as 0.5 + 0.5*sign(u)), and the only
    finite choice.  So d/dβ of x·heaviside(x - β) is 0: a threshold parameter gets no gradient.
    Every quantity is real: |u| differentiates to sign(u)·u' and sign(u) to 0 whether or not sympy can
    prove u real (`_RealAbs`, `_RealSign`), and any re(u) -> u, im(u) -> 0 left over.
    The result is protected like the expression itself (d/dx sqrt(|x|) has |x|**(-1/2) at 0)."""
    from actsearch.primitives import protect

    real = expr
    if real.has(sympy.Abs, sympy.sign):
        real = real.replace(sympy.Abs, _RealAbs).replace(sympy.sign, _RealSign)
    d = sympy.diff(real, wrt)
    if d.has(_RealAbs, _RealSign):
        d = d.replace(_RealAbs, sympy.Abs).replace(_RealSign, sympy.sign)
    if d.has(sympy.DiracDelta):
        d = d.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)
    if d.has(sympy.re, sympy.im, sympy.conjugate):
        d = d.replace(lambda e: isinstance(e, sympy.im), lambda e: sympy.S.Zero)
        d = d.replace(lambda e: isinstance(e, (sympy.re, sympy.conjugate)), lambda e: e.args[0])
    return protect(d)


@dataclass(frozen=True, eq=False)
class Candidate:
    """One point of the search space: an expression in `x` (scalar or (N, C, ...) tensor) with named
    learnable parameters and their initial values.

    `expr` is the canonical exact form; the protected form that is evaluated and compiled is
    `safe_expr`.  Identity (`id`) comes from the numeric fingerprint of the safe form, so
    `x*sigmoid(x)`, `x/(1+exp(-x))` and `silu(x)` are one candidate.
    """

    expr: sympy.Expr
    params: Mapping[str, float] = field(default_factory=dict)
    source: Optional[str] = None

    @classmethod
    def from_expr(cls, expr: sympy.Expr, params: Optional[Mapping[str, float]] = None,
                  source: Optional[str] = None, limits: Limits = DEFAULT_LIMITS) -> "Candidate":
        """The candidate of `expr`'s canonical form; FormulaError unless that form satisfies the
        invariant of `check_canonical` (primitives only, within `limits` as printed)."""
        from actsearch.identity import canonicalize

        expr = canonicalize(expr)
        # keep only parameters that survive canonicalization (x*beta - beta*x has none)
        kept = {n: v for n, v in (params or {}).items() if _param_symbol(n) in expr.free_symbols}
        check_canonical(expr, kept, limits, source or "")
        return cls(expr, kept, source)

    @property
    def param_symbols(self) -> dict[str, sympy.Symbol]:
        return {n: _param_symbol(n) for n in self.params}

    @cached_property
    def is_tensor_op(self) -> bool:
        """True for normalization-activation candidates (contain moment ops over tensor axes)."""
        return any(self.expr.has(f) for f in MOMENT_FUNCTIONS.values())

    @cached_property
    def safe_expr(self) -> sympy.Expr:
        from actsearch.primitives import protect

        return protect(self.expr)

    @cached_property
    def derivative(self) -> sympy.Expr:
        """Exact df/dx (for display and export)."""
        return sympy.diff(self.expr, X)

    @cached_property
    def safe_derivative(self) -> sympy.Expr:
        """df/dx of the protected form, itself protected (d/dx sqrt(|x|) has |x|**(-1/2) at 0).
        This is what screening evaluates and what a backward kernel computes.  Steps and signs
        differentiate by the convention of `kernel_derivative`: their derivative is 0 (DiracDelta -> 0)."""
        return kernel_derivative(self.safe_expr, X)

    @cached_property
    def param_derivatives(self) -> dict[str, sympy.Expr]:
        """d(safe form)/d(parameter) for each parameter: the parameter gradients a backward computes,
        by the same convention as `safe_derivative` (`kernel_derivative`)."""
        return {n: kernel_derivative(self.safe_expr, s) for n, s in self.param_symbols.items()}

    @cached_property
    def fingerprint(self):
        from actsearch.identity import fingerprint

        return fingerprint(self)

    @cached_property
    def id(self) -> str:
        from actsearch.identity import candidate_id

        return candidate_id(self.fingerprint)

    @property
    def formula(self) -> str:
        return format_formula(self.expr)

    def __eq__(self, other):
        return isinstance(other, Candidate) and self.id == other.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        ps = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"Candidate({self.formula!r}{', ' + ps if ps else ''}, id={self.id})"
