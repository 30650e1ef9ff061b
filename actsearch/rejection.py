"""Why a candidate was rejected: a closed set of reason codes, and the record that carries one.

Every exception raised while one candidate is prepared (built from its genome, parsed, fingerprinted),
screened, compiled or evaluated stops at that candidate's boundary and becomes a `Rejection`; the search
records it (the store's `reason_code` column, the report's `rejection`) and goes on.  The code is an enum
so that runs can be counted and compared by reason; the free-text `detail` says what exactly went wrong.

  invalid_formula    the genome or text does not make a valid formula (FormulaError)
  not_evaluable      the formula cannot be evaluated numerically (fingerprint or screening probes)
  screened_out       a screening check failed (its own code, e.g. non_finite, leads the detail)
  unstable           a layer whose input gradient explodes under an adversarial input perturbation
                     (actsearch.layer_stability, EvoNorm's stability protocol), before any training
  codegen_error      the kernel source could not be generated (printer or derivative failure)
  compile_error      the generated kernel could not be compiled or run (Inductor/Triton failure)
  diverged           training was stopped: non-finite loss, or chance accuracy at the check step
  evaluation_error   training or scoring raised
  timeout            no result within the per-candidate time limit
  worker_lost        the worker evaluating it died more often than the retry limit
  internal_error     any other exception at the candidate's boundary (a bug: please report it)

The values are the codes stored in the store's `reason_code` columns and the reports' `rejection.code`,
so `RejectionReason(stored_code)` reads a stored code back.  A screened-out candidate's screening check
(actsearch.screening's stable check codes, `ScreeningCheck`) leads its stored `screening_reason` text;
`ScreeningCheck.of(text)` reads it back (the one place that text is decoded).  docs/interfaces.md has
the table of codes.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Optional


class _Code(str, enum.Enum):
    """A code stored as its string value; `of` reads the code leading a stored "code: detail" text."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, text: Optional[str]):
        """The member leading `text` ("code: detail"), or None (no text, or another head)."""
        if not text:
            return None
        try:
            return cls(text.split(":", 1)[0].strip())
        except ValueError:
            return None


class RejectionReason(_Code):
    INVALID_FORMULA = "invalid_formula"
    NOT_EVALUABLE = "not_evaluable"
    SCREENED_OUT = "screened_out"
    UNSTABLE = "unstable"
    CODEGEN_ERROR = "codegen_error"
    COMPILE_ERROR = "compile_error"
    DIVERGED = "diverged"
    EVALUATION_ERROR = "evaluation_error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Rejection:
    """One candidate's rejection: the reason code, the stage it happened in, and the error's text."""

    code: RejectionReason
    stage: str                      # prepare, screen, fingerprint, codegen, compile, evaluate, ...
    detail: str                     # what went wrong, one line
    error_type: Optional[str] = None  # the exception's class name, when an exception caused it

    def __str__(self) -> str:
        return f"{self.code.value}: {self.detail}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["code"] = self.code.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Rejection":
        """The inverse of to_dict (a report's `rejection`, as stored)."""
        return cls(RejectionReason(str(d["code"])), str(d.get("stage") or ""), str(d.get("detail") or ""),
                   d.get("error_type"))

    def to_report(self) -> dict:
        """The report of a candidate that was not scored: chance-level score (None), no trainings, this
        rejection (`rejected`: its "code: detail" text, `rejection`: to_dict())."""
        return {"score": None, "tasks": {}, "seeds": [], "rejected": str(self), "rejection": self.to_dict()}

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str,
                       code: Optional[RejectionReason] = None) -> "Rejection":
        return cls(code or classify_exception(exc, stage), stage, _one_line(exc), type(exc).__name__)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# the stage an exception was raised in decides its code when its type does not
_STAGE_CODES = {"prepare": RejectionReason.INVALID_FORMULA, "fingerprint": RejectionReason.NOT_EVALUABLE,
                "screen": RejectionReason.NOT_EVALUABLE, "codegen": RejectionReason.CODEGEN_ERROR,
                "compile": RejectionReason.COMPILE_ERROR, "evaluate": RejectionReason.EVALUATION_ERROR}


def classify_exception(exc: BaseException, stage: str) -> RejectionReason:
    """The reason code of an exception raised at `stage` of one candidate's way through the search."""
    from actsearch.formula import FormulaError
    from actsearch.numeric import EvaluationError

    if isinstance(exc, FormulaError):
        return RejectionReason.INVALID_FORMULA
    if isinstance(exc, EvaluationError):
        return RejectionReason.NOT_EVALUABLE
    return _STAGE_CODES.get(stage, RejectionReason.INTERNAL_ERROR)


def code_of_report(report: Optional[dict]) -> Optional[RejectionReason]:
    """The reason code a worker's report carries: its `rejection`'s code, else the code leading its
    `rejected` text, else None."""
    if not report:
        return None
    rejection = report.get("rejection")
    if isinstance(rejection, dict) and rejection.get("code") is not None:
        return RejectionReason(str(rejection["code"]))
    return code_of(report.get("rejected"))


def code_of(text: Optional[str]) -> Optional[RejectionReason]:
    """The reason code that leads a stored rejection text ("code: detail"), or None."""
    return RejectionReason.of(text)


class ScreeningCheck(_Code):
    """The screening checks' codes (actsearch.screening): a screened-out candidate's `screening_reason`
    is "check: detail[; check: detail ...]", led by the first check that failed."""

    NON_FINITE = "non_finite"
    NON_FINITE_GRADIENT = "non_finite_gradient"
    CONSTANT = "constant"
    LINEAR = "linear"
    ZERO_GRADIENT = "zero_gradient"
    OUTPUT_TOO_LARGE = "output_too_large"
    GRADIENT_TOO_LARGE = "gradient_too_large"
    DUPLICATE = "duplicate"
    NOT_EVALUABLE = "not_evaluable"
    # ScreeningCheck.of(reason): the check leading a stored screening reason, or None (a stability
    # verdict, a rejection before training "stage: error: detail")
