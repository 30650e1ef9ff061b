"""Parametric activation families from the literature, as candidates of the formula language.

Rational (Padé activation units, Molina, Schramowski & Kersting, ICLR 2020):

    R(x) = P(x) / Q(x),   P(x) = a0 + a1 x + ... + am x^m,   Q(x) = 1 + |b1 x + ... + bn x^n|

(the "safe" denominator of the issue: Q >= 1, so R has no pole), with learnable a_j, b_k initialised,
as PAU does, by a least-squares fit to a named activation on [-3, 3] (`fit_rational`).  The fit is what
no library does for this exact form: numpy's least squares solves the linearised problem
P(x) - y (b1 x + ... + bn x^n) = y (Q without the absolute value, the classical Padé fit; a
rational-function fit in the literal sense), and scipy.optimize.least_squares then refines the
coefficients on the safe form itself, whose residual is what the network starts from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

FIT_RANGE = (-3.0, 3.0)   # PAU's initialisation range
FIT_POINTS = 2001


def rational_names(m: int, n: int) -> tuple[list[str], list[str]]:
    """Parameter names: a0..am (numerator), b1..bn (denominator)."""
    if m < 0 or n < 1:
        raise ValueError(f"a rational (m, n) needs m >= 0 and n >= 1, got ({m}, {n})")
    return [f"a{j}" for j in range(m + 1)], [f"b{k}" for k in range(1, n + 1)]


def rational_formula(m: int, n: int) -> str:
    """The formula text of the safe rational of degree (m, n) in its learnable coefficients."""
    a, b = rational_names(m, n)
    num = " + ".join([a[0]] + [f"{a[j]}*x" if j == 1 else f"{a[j]}*x**{j}" for j in range(1, m + 1)])
    den = " + ".join(f"{b[k - 1]}*x" if k == 1 else f"{b[k - 1]}*x**{k}" for k in range(1, n + 1))
    return f"({num})/(1 + abs({den}))"


def rational_values(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The safe rational at x, in numpy (a: m+1 coefficients, b: n)."""
    p = np.polyval(np.asarray(a, dtype=float)[::-1], x)
    q = 1.0 + np.abs(np.polyval(np.concatenate([np.asarray(b, dtype=float)[::-1], [0.0]]), x))
    return p / q


@dataclass
class RationalFit:
    """The coefficients of a safe rational fitted to a target, and how well they fit."""
    m: int
    n: int
    target: str
    a: list
    b: list
    max_error: float          # on the fit range, of the safe form
    rms_error: float
    linear_max_error: float   # of the linearised (Padé) solution before refinement, on the safe form
    params: dict = field(default_factory=dict)


def _target_function(target: Union[str, Callable]) -> tuple[str, Callable]:
    if callable(target):
        return getattr(target, "__name__", "target"), target
    from actsearch.catalog import load_catalog
    from actsearch.numeric import evaluate

    catalog = load_catalog()
    if target not in catalog:
        raise ValueError(f"unknown target activation {target!r}; see `actsearch known`")
    c = catalog[target].candidate
    return target, lambda x: evaluate(c.expr, x, c.params)


def fit_rational(target: Union[str, Callable] = "leaky_relu", m: int = 5, n: int = 4,
                 fit_range: tuple = FIT_RANGE, points: int = FIT_POINTS) -> RationalFit:
    """Least-squares coefficients of the safe rational (m, n) for `target` (a catalog name, or a numpy
    function) on `fit_range` (see the module docstring)."""
    from scipy.optimize import least_squares

    a_names, b_names = rational_names(m, n)
    name, fn = _target_function(target)
    x = np.linspace(*fit_range, points)
    y = np.asarray(fn(x), dtype=float)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"target {name!r} is not finite on {fit_range}")
    # linearised Padé fit: [x^0..x^m, -y x^1..-y x^n] [a; b] = y
    A = np.concatenate([np.vander(x, m + 1, increasing=True),
                        -y[:, None] * np.vander(x, n + 1, increasing=True)[:, 1:]], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    a0, b0 = coef[:m + 1], coef[m + 1:]
    linear_max = float(np.max(np.abs(rational_values(a0, b0, x) - y)))

    def residual(c):
        return rational_values(c[:m + 1], c[m + 1:], x) - y

    refined = least_squares(residual, coef, method="trf", x_scale="jac", max_nfev=2000)
    # keep the refinement unless it made the least-squares objective worse (it starts from the linear fit)
    c = refined.x if np.sum(residual(refined.x) ** 2) <= np.sum(residual(coef) ** 2) else coef
    err = residual(c)
    a, b = [float(v) for v in c[:m + 1]], [float(v) for v in c[m + 1:]]
    return RationalFit(m, n, name, a, b, float(np.max(np.abs(err))), float(np.sqrt(np.mean(err ** 2))),
                       linear_max, dict(zip(a_names + b_names, a + b)))


def rational_candidate(m: int = 5, n: int = 4, target: Union[str, Callable] = "leaky_relu"):
    """The safe rational (m, n) as a Candidate whose learnable coefficients start at the fit to `target`
    (PAU(5, 4) initialised to leaky ReLU by default)."""
    from actsearch.formula import parse_formula

    fit = fit_rational(target, m, n)
    return parse_formula(rational_formula(m, n), params=fit.params)


# ---- the families as data: formula and paper initialisation per structure ----------------------------
# Every family below is a formula of the formula language with learnable parameters (one scalar per
# activation layer on activation tasks; per channel in a layer module), the paper's initialisation, and
# an optional fit of that initialisation to a named activation (`family_params`).
FIT_TARGETS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "elu")   # catalog names a family can start as
PAPER = "paper"                                                       # the family's published initialisation
SIGNIFICANT = 6   # fitted initial values are rounded to 6 significant digits: the same ids on every machine


@dataclass(frozen=True)
class Family:
    """A parametric family: `structures` name its members (a degree, a gate, ...); `formula(s)` and
    `paper(s)` give a member's formula text and its published initial parameters; `bounds` keep a fit
    of the initial parameters inside the family's safe region (e.g. APA's lambda > 0)."""
    name: str
    title: str
    reference: str
    year: int
    structures: tuple
    formula: Callable[[str], str]
    paper: Callable[[str], dict]
    kind: str = "activation"          # "layer": a tensor-to-tensor layer (moments); trained on layer tasks
    bounds: tuple = ()                # ((parameter, low, high), ...)
    fixed: tuple = ()                 # structures without learnable parameters
    paper_target: str = ""            # the fit target the paper's initialisation is (PAU: leaky_relu)

    def fittable(self, structure: str) -> bool:
        """Whether the member has initial parameters a fit to a target can set (layers: never)."""
        return self.kind == "activation" and structure not in self.fixed


def _rational_degrees(structure: str) -> tuple[int, int]:
    m, _, n = structure.partition("/")
    return int(m), int(n)


def _catalog_formula(name: str) -> str:
    from actsearch.catalog import load_catalog

    return load_catalog()[name].formula


def _catalog_params(name: str) -> dict:
    from actsearch.catalog import load_catalog

    return dict(load_catalog()[name].params)


def polyrelu_formula(degree: int) -> str:
    """PolyReLU of `degree` (PolyCom, Zhuo et al. 2024): sum_i a_i relu(x)^i."""
    return " + ".join("a1*relu(x)" if i == 1 else f"a{i}*relu(x)**{i}" for i in range(1, degree + 1))


POLYNORM_EPS = 1e-6
POLYNORM_SCOPES = ("layer", "instance", "group")


def polynorm_formula(degree: int, scope: str = "layer") -> str:
    """PolyNorm of `degree` (PolyCom, Zhuo et al. 2024): sum_i a_i x^i / rms(x^i), where rms(u) =
    sqrt(mean(u^2) + eps) is taken with the moment primitive `<scope>_mean` (layer: over channels and
    positions per sample, the RMSNorm of a token's hidden vector; instance: per sample and channel; group:
    per sample and channel group).  The layer module's per-channel affine plays the paper's bias."""
    if scope not in POLYNORM_SCOPES:
        raise ValueError(f"unknown PolyNorm scope {scope!r}; valid: {', '.join(POLYNORM_SCOPES)}")
    terms = []
    for i in range(1, degree + 1):
        power = "x" if i == 1 else f"x**{i}"
        terms.append(f"a{i}*{power}/sqrt({scope}_mean(x**{2 * i}) + {POLYNORM_EPS:g})")
    return " + ".join(terms)


def _uniform(degree: int) -> dict:
    return {f"a{i}": 1.0 / degree for i in range(1, degree + 1)}


_PAU = "Molina, Schramowski & Kersting, Padé activation units: End-to-end learning of flexible activation functions in deep networks, ICLR"
_POLYCOM = "Zhuo, Zhao, Chen, Wang, Ma, Yang & Zhou, Polynomial composition activations: Unleashing the dynamics of large language models, arXiv:2411.03884"
_APA = "Alexandridis, Deng, Zafeiriou & Kotsia, Adaptive parametric activation, ECCV"
_XGATE = "Huang, Expanded gating ranges improve activation functions, arXiv:2405.20768"
_RELU2 = "So, Mańke, Liu, Dai, Shazeer & Le, Primer: Searching for efficient transformers for language modeling, NeurIPS"

FAMILY_TABLE: dict[str, Family] = {f.name: f for f in (
    Family("rational", "Safe rational P(x)/(1 + |Q(x)|) (PAU)", _PAU, 2020, ("3/2", "4/3", "5/4", "6/5"),
           lambda s: rational_formula(*_rational_degrees(s)),
           # PAU initialises to leaky ReLU (slope 0.01) by least squares
           lambda s: family_params("rational", s, "leaky_relu"), paper_target="leaky_relu"),
    Family("apa", "Adaptive parametric activation x (lambda e^{-kappa x} + 1)^{-1/lambda}", _APA, 2024, ("apa",),
           lambda s: _catalog_formula("apa"), lambda s: _catalog_params("apa"),
           bounds=(("lam", 0.05, 10.0), ("kappa", 0.01, 10.0))),
    Family("xgate", "Expanded gating x ((1 + 2 alpha) gate(x) - alpha)", _XGATE, 2024, ("gelu", "silu", "atlu"),
           lambda s: _catalog_formula("x" + s), lambda s: _catalog_params("x" + s),
           bounds=(("alpha", -0.49, 5.0),)),
    Family("polyrelu", "PolyReLU sum_i a_i relu(x)^i", _POLYCOM, 2024, ("2", "3", "4"),
           lambda s: polyrelu_formula(int(s)), lambda s: _uniform(int(s))),
    Family("relu_power", "ReLU^p (p = 2: squared ReLU; p: learnable)", _RELU2, 2021, ("2", "3", "p"),
           lambda s: "relu(x)**p" if s == "p" else f"relu(x)**{s}",
           lambda s: {"p": 2.0} if s == "p" else {}, bounds=(("p", 0.5, 4.0),), fixed=("2", "3")),
    Family("polynorm", "PolyNorm sum_i a_i x^i / rms(x^i)", _POLYCOM, 2024,
           tuple(f"{d}/{s}" for d in (2, 3) for s in POLYNORM_SCOPES),
           lambda s: polynorm_formula(int(s.partition("/")[0]), s.partition("/")[2]),
           lambda s: _uniform(int(s.partition("/")[0])), kind="layer"),
)}


def _rounded(params: dict) -> dict:
    return {k: float(f"{v:.{SIGNIFICANT}g}") for k, v in params.items()}


def get_family(name: str, structure: Optional[str] = None) -> Family:
    """The family `name`; with `structure`, also checked to be one of its members (ValueError if not)."""
    try:
        fam = FAMILY_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; valid: {', '.join(FAMILY_TABLE)}") from None
    if structure is not None and structure not in fam.structures:
        raise ValueError(f"unknown structure {structure!r} of family {name!r}; valid: {', '.join(fam.structures)}")
    return fam


@dataclass
class FamilyFit:
    """A family member's initial parameters fitted to a target activation (least squares on FIT_RANGE)."""
    family: str
    structure: str
    target: str
    params: dict
    max_error: float
    rms_error: float


def fit_family(family: str, structure: str, target: str) -> FamilyFit:
    """Initial parameters of `family`/`structure` that make it closest to the catalog activation `target`
    on FIT_RANGE: the rational by `fit_rational` (PAU's procedure), the others by
    scipy.optimize.least_squares from the paper's initialisation within the family's bounds."""
    from scipy.optimize import least_squares

    from actsearch.formula import parse_formula
    from actsearch.numeric import evaluate

    fam = get_family(family, structure)
    if not fam.fittable(structure):
        raise ValueError(f"{family} {structure} has no initial parameters to fit")
    _, fn = _target_function(target)
    x = np.linspace(*FIT_RANGE, FIT_POINTS)
    y = np.asarray(fn(x), dtype=float)
    if fam.name == "rational":
        fit = fit_rational(target, *_rational_degrees(structure))
        params = _rounded(fit.params)
    else:
        start = fam.paper(structure)
        names = list(start)
        cand = parse_formula(fam.formula(structure), params=start)
        bounds = {p: (lo, hi) for p, lo, hi in fam.bounds}
        lo = [bounds.get(n, (-np.inf, np.inf))[0] for n in names]
        hi = [bounds.get(n, (-np.inf, np.inf))[1] for n in names]

        def residual(v):
            r = evaluate(cand.safe_expr, x, dict(zip(names, v))) - y
            return np.where(np.isfinite(r), r, 1e6)

        res = least_squares(residual, [start[n] for n in names], bounds=(lo, hi), method="trf", max_nfev=2000)
        params = _rounded(dict(zip(names, (float(v) for v in res.x))))
    # the error of the rounded values the member starts from
    err = evaluate(parse_formula(fam.formula(structure), params=params).safe_expr, x, params) - y
    return FamilyFit(family, structure, target, params, float(np.max(np.abs(err))), float(np.sqrt(np.mean(err ** 2))))


FIT_TABLE_PATH = Path(__file__).with_name("family_fits.json")


@lru_cache(maxsize=1)
def fit_table() -> dict:
    """The shipped fits (`compute_fit_table`, tested to reproduce): a search space's genomes get the same
    initial values, hence the same ids, on every machine, without minutes of least squares per process."""
    import json

    return json.loads(FIT_TABLE_PATH.read_text()) if FIT_TABLE_PATH.exists() else {}


@lru_cache(maxsize=None)
def _family_params_cached(family: str, structure: str, init: str) -> tuple:
    fam = get_family(family)
    if init == PAPER or not fam.fittable(structure):
        return tuple(fam.paper(structure).items())
    shipped = fit_table().get(f"{family}|{structure}|{init}")
    if shipped is not None:
        return tuple(shipped["params"].items())
    return tuple(fit_family(family, structure, init).params.items())


def family_params(family: str, structure: str, init: str = PAPER) -> dict:
    """Initial parameters of a family member: the paper's (`init="paper"`) or fitted to a target (cached)."""
    if init != PAPER and init not in FIT_TARGETS:
        raise ValueError(f"unknown initialisation {init!r}; valid: {', '.join((PAPER,) + FIT_TARGETS)}")
    return dict(_family_params_cached(family, structure, init))


def family_candidate(family: str, structure: str, init: str = PAPER):
    """A family member as a Candidate, its learnable parameters at their initial values."""
    from actsearch.formula import parse_formula

    fam = get_family(family, structure)
    return parse_formula(fam.formula(structure), params=family_params(family, structure, init) or None)


def compute_fit_table() -> dict:
    """Every fittable (family, structure, target) of FAMILY_TABLE x FIT_TARGETS, fitted now (minutes):
    what `actsearch/family_fits.json` holds (`python -m actsearch.families --write-fits`)."""
    table = {}
    for fam in FAMILY_TABLE.values():
        for s in fam.structures:
            if not fam.fittable(s):
                continue
            for target in FIT_TARGETS:
                fit = fit_family(fam.name, s, target)
                table[f"{fam.name}|{s}|{target}"] = {"params": fit.params, "max_error": round(fit.max_error, 6),
                                                     "rms_error": round(fit.rms_error, 6)}
    return table


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    import json
    import sys

    if sys.argv[1:] != ["--write-fits"]:
        raise SystemExit("usage: python -m actsearch.families --write-fits")
    FIT_TABLE_PATH.write_text(json.dumps(compute_fit_table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIT_TABLE_PATH}")
