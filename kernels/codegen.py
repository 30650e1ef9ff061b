"""Candidate -> Python/torch source of a forward and a symbolic backward.

The generated module defines
    forward(x, p1, ...)        -> f(x)
    backward_x(x, grad, p1...) -> grad * f'(x)                       (parameters frozen)
    backward(x, grad, p1, ...) -> (grad * f'(x), dL/dp1, ...)        (parameter grads reduced to p.shape)
    forward_with_derivative(x, p1, ...) -> (f(x), f'(x))             (one pass, shared subexpressions)
from the protected expression and its sympy derivatives, with common subexpressions eliminated
(`sympy.cse`).  Backward recomputes from x and the parameters only, so nothing else is saved for it.
Normalization-activation candidates (moment ops) have no elementwise derivative; they get a forward
only and are differentiated by autograd (see fused.py).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import sympy

from actsearch.formula import X, Candidate
from actsearch.primitives import GUARD_EPS, softplus
from actsearch.kernels import fast_math
from actsearch.kernels.printers import TorchCodePrinter

def _moment_source() -> str:
    """The torch helpers of moments, embedded in generated modules from their one definition."""
    import inspect

    from actsearch.primitives import torch_ops

    return (f"\nMOMENT_EPS = {torch_ops.MOMENT_EPS!r}\n\n\n" + inspect.getsource(torch_ops._group_moment) + "\n\n"
            + inspect.getsource(torch_ops._axis_moment))


@dataclass(frozen=True)
class KernelSource:
    """Generated source of one candidate, kept for inspection, caching and export.

    Two spellings of the same functions: `module` for eager ATen (baseline, small tensors, export) and
    `inductor_module` for torch.compile, where some functions have faster fusible spellings (tanh)."""

    candidate_id: str
    formula: str
    params: tuple[str, ...]
    module: str               # the whole generated module (imports + functions), eager spellings
    inductor_module: str      # the same functions spelled for Inductor
    has_backward: bool        # False for moment (tensor) candidates: autograd differentiates them

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = list(self.params)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KernelSource":
        return cls(d["candidate_id"], d["formula"], tuple(d["params"]), d["module"], d["inductor_module"],
                   bool(d["has_backward"]))

    def namespace(self, inductor: bool = False) -> dict:
        """Execute the generated module (our own generated code, never user text) and return its names."""
        import math

        import torch

        import sys
        import types

        # A registered module, not a bare dict: Dynamo resolves a function's globals through
        # sys.modules[__name__] when it inlines the function into a larger graph (PopulationKernel).
        name = f"actsearch_kernel_{self.candidate_id}{'_inductor' if inductor else ''}"
        module = types.ModuleType(name)
        ns: dict = module.__dict__
        ns.update({"torch": torch, "math": math})
        src = self.inductor_module if inductor else self.module
        exec(compile(src, f"<actsearch kernel {self.candidate_id}{' inductor' if inductor else ''}>", "exec"), ns)
        sys.modules.setdefault(name, module)
        return ns


def _reuse_powers(exprs: list[sympy.Expr]) -> tuple[list, list[sympy.Expr]]:
    """b**(k*e) as (b**e)**k where b**e is needed anyway (k a small integer, e not a number).

    sympy merges (b**e)**k into b**(k*e) for a positive base, so a derivative such as
    d/dx erfc(b**x) = ... exp(-b**(2x)) asks for a second tensor-exponent pow, the dearest elementwise
    op there is (Sleef powf: ~5 ns per element).  Returns (definitions, rewritten expressions): each
    reused power becomes a symbol that `cse` defines first."""
    pows = sorted({p for e in exprs for p in sympy.preorder_traversal(e)
                   if isinstance(p, sympy.Pow) and not p.exp.is_number}, key=sympy.default_sort_key)
    defs, repl = [], {}
    for p in pows:  # sorted: the same source in every process, whatever the hash seed
        for q in pows:
            if q is p or q.base != p.base or q in repl:
                continue
            k = q.exp / p.exp  # sympy's automatic evaluation: 2*x/x is 2
            if k.is_Integer and 2 <= abs(int(k)) <= 4:
                if p not in repl:
                    sym = sympy.Symbol(f"_pw{len(defs)}", real=True)
                    defs.append((sym, p))
                    repl[p] = sym
                repl[q] = repl[p] ** int(k)
    if not repl:
        return [], exprs
    return defs, [e.xreplace(repl) for e in exprs]  # whole subtrees: b**(2x) becomes _pw0**2 at once


def cse(exprs: list[sympy.Expr], prefix: str):
    """Common subexpressions of a block of expressions (computed once, printed by any printer).

    Constants stay inline: a temporary holding a number (`_b2 = 0.71`, or one built from the guard
    epsilon) would look like a tensor to the printers, which spell min/max against a constant as a
    clamp and against a tensor as torch.minimum - torch.minimum(t, 0.71) is a TypeError."""
    powers, exprs = _reuse_powers(exprs)
    subs, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols(prefix), optimizations="basic")
    subs = powers + subs
    constants: dict = {}
    kept = []
    for sym, expr in subs:
        expr = expr.xreplace(constants)
        if expr.free_symbols <= {GUARD_EPS}:
            constants[sym] = expr
        else:
            kept.append((sym, expr))
    return kept, [r.xreplace(constants) for r in reduced]


def print_cse(block, printer) -> tuple[list[str], list[str]]:
    """(assignment lines, output expressions) of a `cse` block in one printer's language."""
    subs, reduced = block
    return [f"{s} = {printer.doprint(e)}" for s, e in subs], [printer.doprint(e) for e in reduced]


# Bump when generated code changes meaning: it keys the on-disk kernel cache (kernels/cache.py).
# 2: parameter-only derivatives broadcast instead of torch.full_like(x, <tensor>) (a TypeError).
# 3: constants are never CSE temporaries (min/max against one printed as torch.minimum: a TypeError);
#    outputs have x's dtype (torch.where of constants has the default dtype).
# 4: the Inductor module spells i0e, i1e and erfc with kernels/fast_math.py (float32).
# 5: ... and expm1 (Inductor lowers torch.expm1 to exp(u) - 1, which cancels near 0; tanh uses it), with
#    fast_math's constants inlined (a guard on a tuple global made AOT artifacts unloadable).
# 6: b**(k*e) reuses b**e (one tensor-exponent pow, not two).
# 7: tanh for Inductor is fast_math.tanh (exp - 1 with a Taylor branch near 0; was expm1-based).
# 8: compiled with a scalar loop tail (kernels/inductor.py): AOT artifacts of 7 are rebuilt.
# 9: fast_math evaluates the Bessel outer series by Horner in the power basis (was Clenshaw, whose
#    double reads Inductor re-inlined: 17-19 s to compile a bessel candidate, now ~4 s).
# 10: for Inductor, sigmoid(u) shares softplus(u)'s exp(min(u, 40)) where both appear.
# 11: ... and erf(u) the derivative's exp(-u^2) (fast_math.erf_exp).
# 12: constant factors (terms) of a product (sum) print as one float: sqrt(2)/(2*sqrt(pi)) is 0.3989...
# 13: 1 - tanh(softplus(u))^2 is 4(n + 1)/(n + 2)^2, n = e(e + 2) (codegen.SechSqSoftplus).
# 14: outputs filled/cast by what CSE printed (a gradient folded to 0 printed as `0.0.to(...)`); constants
#    of the guard epsilon print as floats (torch.log(1e-06) was a TypeError); parameter gradients drop
#    DiracDelta (formula.kernel_derivative) and are protected; a step is 0.5 + 0.5*sign(u), in u's dtype.
CODEGEN_VERSION = 14


def _full(expr_src: str, expr: sympy.Expr, block) -> str:
    """An output of a generated function as a tensor of x's shape, dtype and device.

    `expr` is the output as printed: the CSE-reduced expression of `block` (`cse`'s result), not the
    expression before CSE, which may differ - sympy.cse rebuilds nodes, and Min(0, exp(u)) then folds to
    0, so a parameter gradient that visibly contains x before CSE prints as the float 0.0, which has no
    `.to`.  A constant (the guard epsilon counting as one; the printers spell every constant as one
    Python float) fills x's shape; an expression of x, directly or through a temporary that depends on
    x, is a tensor of x's shape; anything else (parameters only) broadcasts.  And x's dtype:
    torch.where(c, 1.0, 0.5) (a Piecewise of constants) is of the default dtype, so an expression made
    of such terms only is cast (`.to` returns the tensor itself when it matches)."""
    if not (expr.free_symbols - {GUARD_EPS}):
        return f"torch.full_like(x, {expr_src})"
    if expr.has(X) or expr.free_symbols & _x_temporaries(block):
        return f"({expr_src}).to(x.dtype)"
    return f"(torch.zeros_like(x) + ({expr_src})).to(x.dtype)"


def _x_temporaries(block) -> set:
    """The temporaries of a `cse` block that depend on x (directly or through earlier ones)."""
    subs, _ = block
    found: set = set()
    for sym, e in subs:
        if e.has(X) or e.free_symbols & found:
            found.add(sym)
    return found


class ErfExp(sympy.Function):
    """erf(u) with e = exp(-u^2) as a second argument, so that sympy's CSE shares e with the derivative's
    exp(-u^2) (d/du erf(u) = 2 exp(-u^2)/sqrt(pi)) and the Inductor spelling (fast_math.erf_exp) reads
    it instead of calling exp again.  Only the Inductor module is written with it."""
    nargs = 2


def _share_erf_exp(exprs: list) -> list:
    """erf(u) -> ErfExp(u, exp(-u^2)) wherever the block computes exp(-u^2) anyway."""
    exps = set().union(*(e.atoms(sympy.exp) for e in exprs))
    erfs = set().union(*(e.atoms(sympy.erf) for e in exprs))
    repl = {}
    for f in erfs:
        e = sympy.exp(-f.args[0] ** 2)
        if e in exps:
            repl[f] = ErfExp(f.args[0], e)
    return [e.xreplace(repl) for e in exprs] if repl else exprs


class SechSqSoftplus(sympy.Function):
    """sech^2(softplus(u)) = 1 - tanh(softplus(u))^2, the factor that differentiating mish-like
    tanh(softplus(u)) brings.  With n = e(e + 2), e = exp(u), tanh(softplus(u)) = n/(n + 2) (how the
    Inductor spelling computes it) and 1 - tanh^2 = 4(n + 1)/(n + 2)^2 exactly: no cancellation where
    tanh -> 1 (1 - t^2 computed from t loses everything there; mish's compiled f' had 2.3x eager's
    error).  Only the Inductor module is written with it (TorchCodePrinter._print_SechSqSoftplus)."""
    nargs = 1


def _sech_sq_of_tanh_softplus(exprs: list) -> list:
    """1 - tanh(softplus(u))**2 -> SechSqSoftplus(u)."""
    tanhs = [t for t in set().union(*(e.atoms(sympy.tanh) for e in exprs)) if isinstance(t.args[0], softplus)]
    repl = {1 - t ** 2: SechSqSoftplus(t.args[0].args[0]) for t in tanhs}
    return [e.xreplace(repl) for e in exprs] if repl else exprs


def _softplus_args(blocks: dict) -> frozenset:
    """Arguments u of every softplus(u) in the blocks: there the Inductor spelling of sigmoid(u) shares
    softplus's exp(u) (TorchCodePrinter._print_sigmoid).  CSE symbols are per block, so a block's u
    matches only its own sigmoids."""
    found = set()
    for subs, reduced in blocks.values():
        for e in [e for _, e in subs] + list(reduced):
            found.update(a.args[0] for a in e.atoms(softplus))
    return frozenset(found)


def generate_source(candidate: Candidate, groups: int = 32) -> KernelSource:
    f = candidate.safe_expr
    exprs = {"forward": ([f], "_t")}
    has_backward = not candidate.is_tensor_op
    if has_backward:
        dx = candidate.safe_derivative
        exprs["backward_x"] = ([dx], "_d")
        exprs["backward"] = ([dx, *candidate.param_derivatives.values()], "_d")
        exprs["forward_with_derivative"] = ([f, dx], "_b")
    blocks = {name: cse(es, prefix) for name, (es, prefix) in exprs.items()}
    # Two spellings: eager ATen, and Inductor (see TorchCodePrinter's `inductor` and `exp_shared`),
    # whose blocks differ only where erf shares its exp with the derivative (ErfExp)
    inductor_blocks = {}
    for name, (es, prefix) in exprs.items():
        shared = _sech_sq_of_tanh_softplus(_share_erf_exp(es))
        inductor_blocks[name] = blocks[name] if shared is es else cse(shared, prefix)
    module = _module(candidate, groups, blocks, TorchCodePrinter())
    inductor_module = _module(candidate, groups, inductor_blocks,
                              TorchCodePrinter({"inductor": True, "exp_shared": _softplus_args(inductor_blocks)}))
    return KernelSource(candidate.id, candidate.formula, tuple(candidate.params), module, inductor_module,
                        has_backward)


def function_source(name: str, args, expr: sympy.Expr, printer: TorchCodePrinter | None = None,
                    prefix: str = "_t") -> str:
    """Source of ``def name(x, *args): ... return expr`` for one elementwise expression in x and `args`
    (symbol names), common subexpressions eliminated, printed by `printer` (eager torch by default); the
    result is a tensor of x's shape and dtype, as `forward` of a generated module returns.  Used by
    export.py for the elementwise pieces of a layer (actsearch.layers.plan_layer); embed
    `fast_math.embedded_source()` if an Inductor printer's spelling calls one of fast_math.CALLABLE."""
    printer = printer or TorchCodePrinter()
    block = cse([expr], prefix)
    body, (out,) = print_cse(block, printer)
    return "\n".join([f"def {name}({', '.join(['x', *args])}):", *[f"    {b}" for b in body],
                      f"    return {_full(out, block[1][0], block)}", ""])


def _module(candidate: Candidate, groups: int, blocks: dict, printer: TorchCodePrinter) -> str:
    names = list(candidate.params)
    sig = ", ".join(["x", *names])
    lines = ["import math", "import torch", ""]
    if candidate.is_tensor_op:
        # group moments read `groups`, a layer setting (not part of the formula), passed by keyword
        lines.append(_moment_source())
        sig += f", groups={int(groups)}"
    body, (out,) = print_cse(blocks["forward"], printer)
    lines += ["", f"def forward({sig}):", *[f"    {b}" for b in body],
              f"    return {_full(out, blocks['forward'][1][0], blocks['forward'])}", ""]
    if "backward" in blocks:
        body, (gx,) = print_cse(blocks["backward_x"], printer)
        lines += [f"def backward_x(x, grad{', ' if names else ''}{', '.join(names)}):",
                  *[f"    {b}" for b in body], f"    return grad * ({gx})", ""]
        body, outs = print_cse(blocks["backward"], printer)
        rets = [f"grad * ({outs[0]})"]
        for n, src, e in zip(names, outs[1:], blocks["backward"][1][1:]):
            rets.append(f"(grad * ({_full(src, e, blocks['backward'])})).sum_to_size({n}.shape)")
        lines += [f"def backward(x, grad{', ' if names else ''}{', '.join(names)}):",
                  *[f"    {b}" for b in body], f"    return ({', '.join(rets)},)", ""]
        # f and f' in one pass, sharing subexpressions (erf(x/sqrt(2)) of GELU once, not twice): the
        # fused op saves f'(x) instead of x when there are no parameters, so backward is grad * f'.
        block = blocks["forward_with_derivative"]
        body, (y, d) = print_cse(block, printer)
        lines += [f"def forward_with_derivative({sig}):", *[f"    {b}" for b in body],
                  f"    return {_full(y, block[1][0], block)}, {_full(d, block[1][1], block)}", ""]
    src = "\n".join(lines)
    if re.search(rf"(?<![\w.])({'|'.join(fast_math.CALLABLE)})\(", src):
        head, sep, rest = src.partition("import torch\n")
        src = (head + sep + "\n# kernels/fast_math.py: fusible spellings of functions Inductor compiles to scalar"
               " code\n" + fast_math.embedded_source() + "\n" + rest)
    return src
