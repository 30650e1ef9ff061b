"""One definition per primitive (issue 19): the registry's spellings are what the printers print.

* every atom (a primitive that is one sympy function) prints, in every target, exactly as its registry
  spelling applied to a symbol (and its protected form as the primitive's spelling);
* every primitive's registry spelling and the printed form of its protected expression agree numerically
  with the numpy reference (actsearch.numeric), in torch and in Triton (here through a numpy stand-in for
  `tl`/`libdevice`; under Triton's CPU interpreter too where triton is installed, as tests/test_triton.py);
* a new atom needs no printer code: registered at run time it parses, prints in every target, compiles
  and evaluates, and is gone again once unregistered.
"""
import math
import types

import numpy as np
import pytest
import scipy.special as sps
import sympy
import torch

from actsearch import formula as formula_mod
from actsearch.numeric import _eval, evaluate
from actsearch.primitives import EPS, GUARD_EPS, PRIMITIVES, protect, registry
from actsearch.primitives import functions as F
from actsearch.kernels.printers import LatexFormulaPrinter, TorchCodePrinter, TritonCodePrinter, latex_code

PRINTERS = {"torch": TorchCodePrinter, "triton": TritonCodePrinter}
ATOMS = sorted(p.name for p in registry.atoms())
ELEMENTWISE = sorted(n for n, p in PRIMITIVES.items() if p.kind not in ("moment", "nullary"))


def _symbols(prim):
    n_in = prim.n_inputs if prim.n_inputs is not None else 2
    return ([sympy.Symbol(f"a{i}", real=True) for i in range(n_in)],
            [sympy.Symbol(f"p{i}", real=True) for i in range(len(prim.params))])


def test_the_atoms_are_the_primitives_that_are_one_function():
    assert {"exp", "log", "sigmoid", "softplus", "sinc", "erf", "abs", "heaviside", "bessel_i0e"} <= set(ATOMS)
    assert set(F.MOMENT_FUNCTIONS) <= set(ATOMS)
    for name in ("relu", "gelu", "mish", "sqrt", "max", "add"):  # macros: printed through their atoms
        assert not PRIMITIVES[name].is_atom
    for name in ATOMS:
        prim = PRIMITIVES[name]
        ins, ps = _symbols(prim)
        assert isinstance(prim(*ins, *ps), prim.func), name


@pytest.mark.parametrize("target", sorted(PRINTERS))
@pytest.mark.parametrize("name", ATOMS)
def test_each_atom_prints_exactly_its_registry_spelling(name, target):
    prim = PRIMITIVES[name]
    ins, ps = _symbols(prim)
    names = [s.name for s in ins + ps]
    expr = prim(*ins, *ps)
    printer = PRINTERS[target]()
    if prim.template(target) is None:  # moments in Triton: no elementwise spelling, refused by name
        with pytest.raises(ValueError, match=f"no Triton spelling for {prim.func.__name__}"):
            printer.doprint(expr)
        return
    assert printer.doprint(expr) == prim.spell_node(target, *names)
    # and the protected primitive (log's guard printed around the atom) as the primitive's spelling
    assert printer.doprint(protect(expr)) == prim.spell(target, *names)


@pytest.mark.parametrize("name", sorted(p.name for p in registry.atoms() if p.latex))
def test_latex_atoms_print_their_registry_operator(name):
    prim = PRIMITIVES[name]
    (a,), _ = _symbols(prim)
    assert latex_code(prim(a)) == rf"{prim.latex}\left(a_{{0}}\right)"
    assert latex_code(prim(a) ** 2) == rf"{prim.latex}\left(a_{{0}}\right)^{{2}}"


def test_no_printer_keeps_a_table_of_its_own():
    # the atoms' methods are generated from the registry; what is written by hand is no atom's registry
    # spelling, or an Inductor spelling that falls back to it (docs/primitives.md)
    for cls in (TorchCodePrinter, TritonCodePrinter):
        assert not hasattr(cls, "_fn")
    generated = {n for n, v in vars(TritonCodePrinter).items() if getattr(v, "_from_registry", False)}
    assert {f"_print_{p.func.__name__}" for p in registry.atoms()} - {"_print_Heaviside"} <= generated
    assert getattr(LatexFormulaPrinter, "_print_sigmoid")._from_registry


# ---- numeric agreement: registry spelling, printed form, numpy reference --------------------------
def _grid(prim, rng):
    a0 = np.concatenate([np.linspace(-8, 8, 161), [0.0, 1e-3, -1e-3, 25.0, -25.0, 60.0, -60.0]])
    a0 = a0 + rng.normal(0, 1e-9, a0.shape) * (a0 != 0)
    arrays = [a0]
    if prim.n_inputs != 1:
        arrays.append(rng.uniform(-2, 2, a0.shape) if prim.name == "pow" else rng.normal(0, 2, a0.shape))
    return arrays


def _reference(expr, ins, arrays, env):
    e = {s.name: a for s, a in zip(ins, arrays)}
    e.update(env)
    e[GUARD_EPS.name] = EPS
    with np.errstate(all="ignore"):
        return np.broadcast_to(_eval(expr, e, {}), arrays[0].shape).astype(float)


def _numpy_triton():
    """`tl` and `libdevice` over numpy (float64), enough for every spelling the printers write."""
    tl = types.SimpleNamespace(where=np.where, exp=np.exp, log=np.log, abs=np.abs, sin=np.sin, cos=np.cos,
                               sqrt=np.sqrt, rsqrt=lambda v: 1 / np.sqrt(v), maximum=np.maximum,
                               minimum=np.minimum, sigmoid=sps.expit, erf=sps.erf)
    libdevice = types.SimpleNamespace(
        tanh=np.tanh, sinh=np.sinh, cosh=np.cosh, tan=np.tan, asinh=np.arcsinh, atan=np.arctan, erfc=sps.erfc,
        expm1=np.expm1, log1p=np.log1p, pow=np.power, cyl_bessel_i0=sps.i0, cyl_bessel_i1=sps.i1)
    return {"tl": tl, "libdevice": libdevice}


def _run(code, ns, arrays, params, target, tensor_params=False):
    """Registry spellings take parameters as Python floats (torch.nn.functional.elu(x, alpha)); printed
    code as generated kernels pass them, 0-d tensors (torch.maximum(x, -lambd))."""
    ns = dict(ns)
    if target == "torch":
        ns.update({f"a{i}": torch.tensor(a, dtype=torch.float64) for i, a in enumerate(arrays)})
    else:
        ns.update({f"a{i}": np.asarray(a, dtype=float) for i, a in enumerate(arrays)})
    if tensor_params and target == "torch":
        ns.update({f"p{i}": torch.tensor(float(v), dtype=torch.float64) for i, v in enumerate(params)})
    else:
        ns.update({f"p{i}": float(v) for i, v in enumerate(params)})
    with np.errstate(all="ignore"):
        out = eval(compile(code, "<spelling>", "eval"), ns)  # our own printed spellings, never user text
    out = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out, dtype=float)
    return np.broadcast_to(out, arrays[0].shape)


@pytest.mark.parametrize("target", sorted(PRINTERS))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_spelling_and_printed_form_agree_with_the_numpy_reference(name, target):
    prim = PRIMITIVES[name]
    rng = np.random.default_rng(0)
    ins, ps = _symbols(prim)
    params = [d + 0.3 for _, d in prim.params]
    arrays = _grid(prim, rng)
    expr = protect(prim(*ins, *ps))
    expect = _reference(expr, ins, arrays, {f"p{i}": v for i, v in enumerate(params)})
    ns = {"torch": torch, "math": math} if target == "torch" else _numpy_triton()
    names = [s.name for s in ins + ps]
    printed = PRINTERS[target]().doprint(expr)
    for what, code in (("registry", prim.spell(target, *names)), ("printed", printed)):
        got = _run(code, ns, arrays, params, target, tensor_params=what == "printed")
        # rtol 1e-6: torch built-ins round some scalar arguments to float32 (celu)
        np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-9, err_msg=f"{name} {what}: {code}")


@pytest.mark.parametrize("target", sorted(PRINTERS))
def test_atoms_of_compound_arguments(target):
    """Printers fill templates with printed expressions: a template must bind its argument whole
    (torch.sinc(a0 + a1 / math.pi) was the registry's sinc spelling of a sum)."""
    a, b = sympy.symbols("a0 a1", real=True)
    rng = np.random.default_rng(1)
    arrays = [rng.normal(0, 2, 200), rng.normal(0, 2, 200)]
    ns = {"torch": torch, "math": math} if target == "torch" else _numpy_triton()
    for prim in registry.atoms():
        if prim.kind == "moment":
            continue
        expr = protect(prim(a - b))
        spelled = prim.spell(target, PRINTERS[target]().doprint(a - b))
        got = _run(spelled, ns, arrays, [], target)
        np.testing.assert_allclose(got, _reference(expr, [a, b], arrays, {}), rtol=1e-6, atol=1e-9,
                                   err_msg=f"{prim.name}: {spelled}")


def test_triton_softplus_and_sinc_compute_no_overflow_or_zero_division():
    """The drift the issue found: the registry's Triton softplus was log1p(exp(u)) unclamped (inf in the
    branch tl.where discards) and its sinc divided by u at 0 (0/0); both are now the printers' forms."""
    ns = _numpy_triton()
    u = np.array([-1000.0, -30.0, -1.0, 0.0, 1e-4, 1.0, 19.9, 20.1, 30.0, 1000.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        sp = eval(PRIMITIVES["softplus"].spell("triton", "u"), {**ns, "u": u})  # our own spelling
        sc = eval(PRIMITIVES["sinc"].spell("triton", "u"), {**ns, "u": u})
    np.testing.assert_allclose(sp, np.logaddexp(0.0, u), rtol=1e-9, atol=1e-300)  # u itself above 20
    np.testing.assert_allclose(sc, F.sinc.numpy(u), rtol=1e-12, atol=1e-15)
    assert sc[3] == 1.0


def test_triton_printed_atoms_under_the_interpreter(tmp_path):
    """Every elementwise primitive's generated Triton kernel (printed from the registry's spellings)
    against torch eager, under TRITON_INTERPRET=1 (tests/test_triton.py's runner)."""
    pytest.importorskip("triton")
    from test_triton import run_under_interpreter

    cases = []
    for name in ELEMENTWISE:
        prim = PRIMITIVES[name]
        args = ["abs(x)" if name == "log1p" else "x"] if prim.n_inputs == 1 else ["x", "sin(x)"]
        cases.append((f"{name}({', '.join(args)}) + 0.25*x", {}))
    for row in run_under_interpreter(tmp_path, cases, timeout=600):
        assert row["err_y"] < 1e-5, row


# ---- a new atom: one registry entry, no printer code --------------------------------------------
@pytest.fixture
def asin_atom(monkeypatch):
    """arcsin as a new atom (sympy has the function and actsearch.numeric its numpy), registered for one
    test.  formula.supported_functions caches the primitives' functions at first use: reset around it."""
    monkeypatch.setattr(formula_mod, "_SUPPORTED", None)
    prim = registry.register("asin", "unary", 1, sympy.asin, "torch.asin({0})", "libdevice.asin({0})", 0, 1,
                             latex=r"\operatorname{arcsin}", doc="arcsin(x) (test atom)")
    try:
        yield prim
    finally:
        registry.unregister("asin")
        formula_mod._SUPPORTED = None


def test_a_new_atom_parses_prints_and_evaluates_without_printer_code(asin_atom):
    from actsearch.formula import X, format_formula, parse_formula
    from actsearch.kernels.codegen import generate_source
    from actsearch.kernels.triton_gen import generate_triton_source

    c = parse_formula("asin(x/4) + x")
    assert c.expr.has(sympy.asin) and format_formula(c) == c.formula and "asin(" in c.formula
    assert TorchCodePrinter().doprint(sympy.asin(X)) == "torch.asin(x)"
    assert TritonCodePrinter().doprint(sympy.asin(X)) == "libdevice.asin(x)"
    assert latex_code(sympy.asin(X) ** 2) == r"\operatorname{arcsin}\left(x\right)^{2}"
    src = generate_source(c)
    assert "torch.asin(" in src.module and "torch.asin(" in src.inductor_module
    assert "libdevice.asin(" in generate_triton_source(c)
    x = np.linspace(-3.5, 3.5, 57)
    expect = np.arcsin(x / 4) + x
    np.testing.assert_allclose(evaluate(c.expr, x), expect, rtol=1e-12)
    y, d = src.namespace()["forward_with_derivative"](torch.tensor(x))
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(d.numpy(), 1 / np.sqrt(16 - x**2) + 1, rtol=1e-9)


def test_a_new_atom_sympy_has_but_numeric_does_not_touches_only_the_registry():
    """acot: sympy has it, actsearch.numeric's table does not; registered with its numpy function (one
    entry, nothing else), it parses, evaluates, compiles and differentiates; the parser's cache of
    supported functions follows the registration (no reset by hand)."""
    from actsearch.formula import parse_formula
    from actsearch.kernels.codegen import generate_source

    registry.register("acot", "unary", 1, sympy.acot, "torch.atan(1.0 / ({0}))", "libdevice.atan(1.0 / ({0}))",
                      0, 1, numpy=lambda v: np.arctan(1.0 / v), doc="arccot(x) (test atom)")
    try:
        c = parse_formula("acot(x + 5)*x")
        x = np.linspace(-3.0, 3.0, 61)
        expect = np.arctan(1.0 / (x + 5)) * x
        np.testing.assert_allclose(evaluate(c.expr, x), expect, rtol=1e-12)
        y, d = generate_source(c).namespace()["forward_with_derivative"](torch.tensor(x))
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12)
        np.testing.assert_allclose(d.numpy(), np.arctan(1.0 / (x + 5)) - x / (1 + (x + 5) ** 2), rtol=1e-9)
    finally:
        registry.unregister("acot")
    with pytest.raises(Exception, match="acot"):
        parse_formula("acot(x + 5)*x")


def test_an_unregistered_atom_is_gone(asin_atom):
    registry.unregister("asin")
    try:
        assert "asin" not in PRIMITIVES and registry.atom_of(sympy.asin(sympy.Symbol("x"))) is None
        for cls in (TorchCodePrinter, TritonCodePrinter, LatexFormulaPrinter):
            assert "_print_asin" not in vars(cls)
        # sympy's own printing again (PythonCodePrinter: math.asin), no longer the registry's
        assert TorchCodePrinter().doprint(sympy.asin(sympy.Symbol("x"))) == "torch.asin(x)"
        assert "libdevice" not in TritonCodePrinter().doprint(sympy.asin(sympy.Symbol("x")))
        assert "arcsin" not in latex_code(sympy.asin(sympy.Symbol("x")))
    finally:  # the fixture unregisters once more
        registry.register("asin", "unary", 1, sympy.asin, "torch.asin({0})", "libdevice.asin({0})", 0, 1)


def test_register_refuses_a_taken_name_or_atom():
    with pytest.raises(ValueError, match="taken"):
        registry.register("exp", "unary", 1, sympy.exp, "torch.exp({0})", "tl.exp({0})", 0, 1)
    with pytest.raises(ValueError, match="already the atom"):
        registry.register("exp2", "unary", 1, sympy.exp, "torch.exp({0})", "tl.exp({0})", 0, 1)
    assert "exp2" not in PRIMITIVES
