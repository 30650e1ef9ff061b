"""Reliability drill: random candidates from every search space, taken through every stage a search uses.

For `n_per_space` random genomes of each registered space (`actsearch.search_spaces.SPACES`, each with
its default options, plus a `name[parametric]` variant for spaces that take `parametric=`), each
candidate goes genome -> `space.candidate` (parse, canonicalize) -> fingerprint/id -> screening ->
codegen (`get_kernel`) -> the generated eager functions and the fused op, forward and backward on
N(0,1) float32 inputs with parameters requiring grad; a random sample of those also runs compiled
(`compiled=True`: traced Inductor graphs).

Expected failures are rejections with a reason code (`actsearch.rejection.RejectionReason`): a
FormulaError while the genome becomes a candidate is `invalid_formula`, an EvaluationError while it is
fingerprinted or screened `not_evaluable`, a failed screening check `screened_out` (its screening code
is counted too).  Everything else is a finding:
  unexplained       any other exception, anywhere (formula, stage and a traceback summary)
  non_finite        NaN/Inf in the output or a gradient of a candidate that passed screening
  compile_fallback  a compiled kernel that fell back to the uncompiled functions (kernel.compile_error)
  mismatch          the eager kernel (float64) disagrees with the numeric evaluator on f or f', or the
                    compiled kernel (float32) is off where the eager one (float32) is not; reported,
                    not failing: an ill-conditioned f' (i0e(u) - i1e(u) for u ~ 1e13) differs by the
                    Bessel implementations' last bits, amplified
`DrillReport.ok` is True when there are no unexplained exceptions and no NaN/Inf.

    python benchmarks/drill.py --total 10000 --json   # 4 space variants x 2500 candidates
"""
from __future__ import annotations

import inspect
import json
import random
import time
import traceback
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
import torch

from actsearch.rejection import Rejection, RejectionReason

N_INPUTS = 4096          # N(0,1) float32 inputs per candidate
TENSOR_SHAPE = (8, 32, 16)  # (N, C, L) inputs of normalization-activation candidates (moment ops)
# eager kernel (float64) vs the numeric evaluator: both compute the same protected expression in
# float64, so they agree to rounding, except where one spelling cancels (1 - tanh^2 ...)
EVALUATOR_RTOL, EVALUATOR_ATOL = 1e-6, 1e-9
# compiled (Inductor, fast_math spellings) vs eager, float32, both against float64: a mismatch is off by
# more than the tolerance and an order of magnitude more than eager float32 is
COMPILED_RTOL, COMPILED_ATOL, COMPILED_WORSE = 1e-3, 1e-5, 10.0
OUTCOMES = ("passed", "duplicate", *(r.value for r in RejectionReason), "kernel_non_finite")


@dataclass
class Finding:
    """One candidate that did something the drill does not expect."""

    kind: str                  # unexplained | non_finite | compile_fallback | mismatch
    space: str
    stage: str                 # prepare, fingerprint, screen, codegen, eager, compiled
    formula: str
    params: dict = field(default_factory=dict)
    detail: str = ""
    error_type: Optional[str] = None
    traceback: Optional[str] = None  # the innermost frames, one line each
    genome: Any = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DrillReport:
    n_per_space: int
    seed: int
    compiled_sample: int
    spaces: dict[str, dict[str, int]]           # space -> outcome -> count
    reasons: dict[str, int]                     # RejectionReason value -> count (all spaces)
    screening_codes: dict[str, int]             # screening code -> count (a screened_out may have several)
    unexplained: list[Finding]
    non_finite: list[Finding]
    compile_fallbacks: list[Finding]
    mismatches: list[Finding]
    timings: dict[str, float]                   # stage -> seconds (all candidates), "total"
    slowest: list[dict]                         # the slowest candidates: formula, seconds
    candidates: int = 0
    distinct: int = 0
    eager_checked: int = 0
    compiled_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.unexplained and not self.non_finite

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["unexplained_count"] = len(self.unexplained)
        d["non_finite_count"] = len(self.non_finite)
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def summary(self) -> str:
        lines = [f"drill: {self.candidates} candidates ({self.distinct} distinct), {self.n_per_space} per space, "
                 f"seed {self.seed}; eager checks {self.eager_checked}, compiled {self.compiled_checked}; "
                 f"{self.timings.get('total', 0.0):.1f} s"]
        for name, counts in self.spaces.items():
            lines.append(f"  {name:18s} " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
        lines.append("  reasons: " + (", ".join(f"{k} {v}" for k, v in self.reasons.items()) or "none"))
        lines.append("  screening codes: " + (", ".join(f"{k} {v}" for k, v in self.screening_codes.items()) or "none"))
        lines.append("  timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items()))
        lines.append(f"  unexplained {len(self.unexplained)}, NaN/Inf {len(self.non_finite)}, compile fallbacks "
                     f"{len(self.compile_fallbacks)}, mismatches {len(self.mismatches)}")
        for f in [*self.unexplained, *self.non_finite, *self.compile_fallbacks, *self.mismatches][:40]:
            lines.append(f"    [{f.kind}] {f.space} {f.stage}: {f.formula} {f.params or ''}: "
                         f"{f.error_type + ': ' if f.error_type else ''}{f.detail}")
        return "\n".join(lines)


def space_variants(spaces: Optional[Iterable[str]] = None) -> dict[str, Any]:
    """name -> SearchSpace instance: every registered space with its default options, and
    `name[parametric]` for each one whose constructor takes `parametric` (parametric primitives)."""
    from actsearch.search_spaces import SPACES, get_space

    names = list(SPACES) if spaces is None else list(spaces)
    out = {}
    for name in names:
        base, _, variant = name.partition("[")
        if variant:
            out[name] = get_space(base, **{variant.rstrip("]"): True})
            continue
        out[name] = get_space(name)
        if spaces is None and "parametric" in inspect.signature(SPACES[name]).parameters:
            out[f"{name}[parametric]"] = get_space(name, parametric=True)
    return out


def _expected(stage: str, exc: BaseException) -> bool:
    """A rejection, not a defect: the genome is not a valid formula, or the formula cannot be evaluated."""
    from actsearch.formula import FormulaError
    from actsearch.numeric import EvaluationError

    return ((stage == "prepare" and isinstance(exc, FormulaError))
            or (stage in ("fingerprint", "screen") and isinstance(exc, EvaluationError)))


def _trace_summary(exc: BaseException, frames: int = 6) -> str:
    tb = traceback.extract_tb(exc.__traceback__)[-frames:]
    return " | ".join(f"{fr.filename.rsplit('/', 1)[-1]}:{fr.lineno} {fr.name}" for fr in tb)


def _finite(t: Optional[torch.Tensor]) -> bool:
    return t is None or bool(torch.isfinite(t).all())


class _Drill:
    def __init__(self, seed: int):
        self.seed = seed
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        self.timings: Counter = Counter()
        self.per_candidate: list[tuple[float, str, str]] = []
        self.screening_codes: Counter = Counter()
        self.reasons: Counter = Counter()
        self.eager_checked = 0
        self.compiled_checked = 0

    def finding(self, kind, space, stage, c, genome, detail="", exc=None, formula=None):
        f = Finding(kind, space, stage, formula if formula is not None else _formula(c, genome),
                    dict(c.params) if c is not None else {}, detail[:500],
                    type(exc).__name__ if exc is not None else None,
                    _trace_summary(exc) if exc is not None else None, genome)
        self.findings[kind].append(f)

    def timed(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[stage] += time.perf_counter() - t0

    # ---- one candidate ---------------------------------------------------------------------------------
    def candidate(self, space_name: str, space, genome, seen: set, index: int) -> tuple[str, Any]:
        """The candidate's outcome (see OUTCOMES) and, when it passed, (candidate, kernel)."""
        from actsearch.kernels.fused import get_kernel
        from actsearch.screening import screen_candidate

        stage, c = "prepare", None
        t0 = time.perf_counter()
        try:
            c = self.timed("prepare", space.candidate, genome)
            stage = "fingerprint"
            cid = self.timed("fingerprint", lambda: c.id)
            if cid in seen:
                return "duplicate", None
            seen.add(cid)
            stage = "screen"
            result = self.timed("screen", screen_candidate, c)
            if not result.passed:
                self.screening_codes.update(set(result.codes))
                self.reasons[RejectionReason.SCREENED_OUT.value] += 1
                return RejectionReason.SCREENED_OUT.value, None
            stage = "codegen"
            kernel = self.timed("codegen", get_kernel, c)
            stage = "eager"
            ok, _ = self.timed("eager", self.check_kernel, space_name, c, genome, kernel, index)
            self.eager_checked += 1
            return ("passed" if ok else "kernel_non_finite"), (c, kernel)
        except Exception as exc:  # noqa: BLE001 - the drill's job: every exception is recorded
            code = Rejection.from_exception(exc, {"eager": "evaluate"}.get(stage, stage)).code
            self.reasons[code.value] += 1
            if not _expected(stage, exc):
                self.finding("unexplained", space_name, stage, c, genome, str(exc).strip().split("\n")[0], exc)
            return code.value, None
        finally:
            dt = time.perf_counter() - t0
            self.per_candidate.append((dt, space_name, _formula(c, genome)))

    def inputs(self, c, index: int, dtype=torch.float32) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        shape = TENSOR_SHAPE if c.is_tensor_op else (N_INPUTS,)
        return torch.randn(shape, generator=g).to(dtype)

    def check_kernel(self, space_name, c, genome, kernel, index, compiled: bool = False) -> bool:
        """Forward and backward through the fused op (parameters requiring grad, then frozen) and each
        generated function: (finite, {frozen: outputs}); finite is False after recording NaN/Inf."""
        from actsearch.kernels.fused import fused_activation

        stage = "compiled" if compiled else "eager"
        x0 = self.inputs(c, index)
        finite = True
        results = {}
        for frozen in ((False, True) if c.params and kernel.source.has_backward else (False,)):
            x = x0.clone().requires_grad_()
            ps = [torch.tensor(float(v), requires_grad=not frozen) for v in c.params.values()]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a compile fallback: recorded below
                y = fused_activation(kernel, x, *ps, compiled=compiled)
                y.sum().backward()
            outs = {"f": y, "df/dx": x.grad, **({} if frozen else {f"df/d{n}": p.grad for n, p in zip(c.params, ps)})}
            tag = " (parameters frozen)" if frozen else ""
            for what, t in outs.items():
                if not _finite(t):
                    bad = int((~torch.isfinite(t)).sum())
                    at = x0.ravel()[(~torch.isfinite(t)).ravel().nonzero()[0, 0]].item() if t.numel() == x0.numel() else None
                    self.finding("non_finite", space_name, stage, c, genome,
                                 f"{what}{tag} is NaN/Inf at {bad} of {t.numel()} points"
                                 + (f" (e.g. x={at:.4g})" if at is not None else ""))
                    finite = False
            results[frozen] = {k: (v.detach() if v is not None else None) for k, v in outs.items()}
        if not compiled and kernel.source.has_backward:
            finite &= self.check_generated_functions(space_name, c, genome, kernel, x0)
            self.check_against_evaluator(space_name, c, genome, kernel, x0)
        if compiled and kernel.compile_error is not None:
            self.finding("compile_fallback", space_name, stage, c, genome, kernel.compile_error)
        return finite, results

    def check_generated_functions(self, space_name, c, genome, kernel, x) -> bool:
        """Each generated eager function (forward, backward_x, backward, forward_with_derivative) runs and is
        finite in float32, whichever of them the fused op happened to use."""
        ps = [torch.tensor(float(v)) for v in c.params.values()]
        grad = torch.ones_like(x)
        outs = {"forward": [kernel.eager_forward(x, *ps)],
                "backward_x": [kernel.eager_backward_x(x, grad, *ps)],
                "backward": list(kernel.eager_backward(x, grad, *ps)),
                "forward_with_derivative": list(kernel.eager_forward_with_derivative(x, *ps))}
        ok = True
        for name, ts in outs.items():
            for t in ts:
                if not isinstance(t, torch.Tensor) or t.dtype != x.dtype:
                    self.finding("unexplained", space_name, "eager", c, genome,
                                 f"generated {name} returned {type(t).__name__} "
                                 f"{getattr(t, 'dtype', '')}, not a {x.dtype} tensor")
                    ok = False
                elif not _finite(t):
                    self.finding("non_finite", space_name, "eager", c, genome,
                                 f"generated {name} is NaN/Inf at {int((~torch.isfinite(t)).sum())} points")
                    ok = False
        return ok

    def check_against_evaluator(self, space_name, c, genome, kernel, x) -> None:
        from actsearch.numeric import evaluate

        x64 = x.double()
        ps = [torch.tensor(float(v), dtype=torch.float64) for v in c.params.values()]
        y, d = kernel.eager_forward_with_derivative(x64, *ps)
        for what, got, expr in (("f", y, c.safe_expr), ("f'", d, c.safe_derivative)):
            ref = evaluate(expr, x64.numpy(), c.params)
            got = got.numpy()
            both = np.isfinite(ref) & np.isfinite(got)
            err = np.abs(got - ref) > EVALUATOR_ATOL + EVALUATOR_RTOL * np.abs(ref)
            if (np.isfinite(ref) != np.isfinite(got)).any() or (err & both).any():
                i = int(np.argmax(err | (np.isfinite(ref) != np.isfinite(got))))
                self.finding("mismatch", space_name, "eager", c, genome,
                             f"{what} float64 kernel {got.ravel()[i]!r} vs evaluator {ref.ravel()[i]!r} "
                             f"at x={x64.numpy().ravel()[i]:.6g}")

    def check_compiled(self, space_name, c, genome, kernel, index) -> None:
        """The compiled kernel, finite, and no less accurate than the eager one: both are compared with
        the eager kernel in float64, and a compiled value is a mismatch where it is off by more than the
        tolerance and by more than COMPILED_WORSE times the eager float32 error (where a derivative
        cancels in float32, d/du i0e(u) = i1e(u) - i0e(u) for large u, eager is wrong too, and
        fast_math's few-ulp Bessel functions a few times more)."""
        from actsearch.kernels.fused import fused_activation

        finite, compiled = self.check_kernel(space_name, c, genome, kernel, index, compiled=True)
        self.compiled_checked += 1
        if not finite:
            return
        x0 = self.inputs(c, index)
        for frozen, outs in compiled.items():
            ref = {}
            for dtype in (torch.float32, torch.float64):
                x = x0.to(dtype).clone().requires_grad_()
                ps = [torch.tensor(float(v), dtype=dtype, requires_grad=not frozen) for v in c.params.values()]
                y = fused_activation(kernel, x, *ps, compiled=False)
                y.sum().backward()
                ref[dtype] = {"f": y, "df/dx": x.grad,
                              **({} if frozen else {f"df/d{n}": p.grad for n, p in zip(c.params, ps)})}
            for what, got in outs.items():
                eager, exact = ref[torch.float32][what], ref[torch.float64][what]
                if got is None or eager is None or exact is None:
                    continue
                got, eager, exact = got.double(), eager.detach().double(), exact.detach()
                # parameter gradients are sums over N_INPUTS points: an absolute tolerance per point
                atol = COMPILED_ATOL * (1.0 if got.numel() > 1 else float(N_INPUTS))
                err = (got - exact).abs()
                bad = (err > atol + COMPILED_RTOL * exact.abs()) & (err > COMPILED_WORSE * (eager - exact).abs() + atol)
                if bool(bad.any()):
                    i = int(bad.ravel().nonzero()[0, 0])
                    self.finding("mismatch", space_name, "compiled", c, genome,
                                 f"compiled {what}{' (parameters frozen)' if frozen else ''} is "
                                 f"{got.ravel()[i].item():.6g} where float64 gives {exact.ravel()[i].item():.6g} "
                                 f"and eager float32 {eager.ravel()[i].item():.6g}"
                                 + (f" (x={x0.ravel()[i].item():.6g})" if got.numel() > 1 else ""))


def _formula(c, genome) -> str:
    if c is not None:
        try:
            return c.formula
        except Exception:  # noqa: BLE001 - a formula that cannot be printed still needs a label
            pass
    return json.dumps(genome, default=str)[:300]


def run_drill(n_per_space: int, spaces: Optional[Iterable[str]] = None, compiled_sample: int = 2,
              seed: int = 0, progress=None) -> DrillReport:
    """Take `n_per_space` random candidates of every space variant (`space_variants(spaces)`) through
    every stage; `compiled_sample` passing candidates in all (chosen at random, from the spaces in turn)
    also run compiled.  `progress(space, i, n)`, if given, is called after each candidate."""
    t_start = time.perf_counter()
    drill = _Drill(seed)
    variants = space_variants(spaces)
    per_space: dict[str, dict[str, int]] = {}
    passed_by_space: dict[str, list] = {}
    seen: set = set()
    index = 0
    candidates = 0
    for name, space in variants.items():
        rng = random.Random(f"{seed}:{name}")
        counts = Counter()
        passed = []
        for i in range(n_per_space):
            index += 1
            stage = "sample"
            try:
                genome = space.sample(rng)
            except Exception as exc:  # noqa: BLE001 - a space that cannot sample is a defect too
                drill.finding("unexplained", name, stage, None, None, str(exc), exc, formula="<sample>")
                counts[RejectionReason.INTERNAL_ERROR.value] += 1
                drill.reasons[RejectionReason.INTERNAL_ERROR.value] += 1
                continue
            outcome, ck = drill.candidate(name, space, genome, seen, index)
            counts[outcome] += 1
            candidates += 1
            if ck is not None:
                passed.append((ck, genome, index))
            if progress is not None:
                progress(name, i + 1, n_per_space)
        random.Random(f"{seed}:{name}:compiled").shuffle(passed)
        passed_by_space[name] = passed
        per_space[name] = {k: counts[k] for k in OUTCOMES if counts[k]}
    # the compiled sample: drawn from the spaces in turn (each space's passing candidates shuffled)
    queues = [[(name, item) for item in items] for name, items in passed_by_space.items()]
    sample = [q.pop() for _ in range(max(len(q) for q in queues) if queues else 0) for q in queues if q]
    for name, ((c, kernel), genome, idx) in sample[:compiled_sample]:
        try:
            drill.timed("compiled", drill.check_compiled, name, c, genome, kernel, idx)
        except Exception as exc:  # noqa: BLE001
            drill.finding("unexplained", name, "compiled", c, genome, str(exc).strip().split("\n")[0], exc)
    drill.timings["total"] = time.perf_counter() - t_start
    slowest = sorted(drill.per_candidate, reverse=True)[:10]
    return DrillReport(
        n_per_space=n_per_space, seed=seed, compiled_sample=compiled_sample, spaces=per_space,
        reasons=dict(sorted(drill.reasons.items())), screening_codes=dict(drill.screening_codes.most_common()),
        unexplained=drill.findings["unexplained"], non_finite=drill.findings["non_finite"],
        compile_fallbacks=drill.findings["compile_fallback"], mismatches=drill.findings["mismatch"],
        timings={k: round(v, 3) for k, v in drill.timings.items()},
        slowest=[{"seconds": round(s, 3), "space": sp, "formula": f} for s, sp, f in slowest],
        candidates=candidates, distinct=len(seen), eager_checked=drill.eager_checked,
        compiled_checked=drill.compiled_checked)


__all__ = ["DrillReport", "Finding", "run_drill", "space_variants"]
