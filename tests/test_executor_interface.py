"""The typed interchange between evaluation, executors, the driver and the store (docs/interfaces.md):
every executor is an `Executor` (abstract methods enforced), results are `EvaluationResult`s that
round-trip through the store unchanged, and the rejection enums' values are the codes the store holds."""
from __future__ import annotations

import pytest

from actsearch.executor import (EvaluationItem, EvaluationResult, EvaluationWorker, Executor, LocalExecutor,
                                RayExecutor, evaluate_items, timeout_outcome, worker_lost_outcome)
from actsearch.rejection import Rejection, RejectionReason, ScreeningCheck
from actsearch.search import SearchConfig
from actsearch.store import ResultStore
from actsearch.tabular import TableExecutor, write_table


def _table(tmp_path) -> str:
    table = {"format": "actsearch-table", "version": 1, "provenance": {}, "tasks": ["digits-cnn"], "seeds": [0, 1],
             "chance": {"digits-cnn": 0.1}, "baselines": {"digits-cnn": {"relu": [0.90, 0.92]}},
             "candidates": [{"id": "act_a", "formula": "x*tanh(x)", "canonical": "x*tanh(x)",
                             "acc": {"digits-cnn": [0.91, 0.95]}, "rejected": None}],
             "screened_out": [{"id": "act_s", "formula": "exp(exp(x))", "reason": "non_finite: overflow"}]}
    return write_table(table, tmp_path / "table.json.gz")


# ------------------------------------------------------------------------------------------ the base class

def test_every_executor_is_an_executor(tmp_path, one_thread):
    cfg = SearchConfig(space="swish", tasks=["digits-cnn"], seeds=2, executor="local")
    local = LocalExecutor(cfg, cache_dir=None, threads=1)
    table = TableExecutor(SearchConfig(space="swish", tasks=["digits-cnn"], seeds=2), _table(tmp_path))
    ray_executor = RayExecutor.__new__(RayExecutor)  # an instance without starting Ray (test_ray_search starts one)
    for ex in (local, table, ray_executor):
        assert isinstance(ex, Executor)
        assert not type(ex).__abstractmethods__
        assert isinstance(ex.capacity, int)
    with local as ex:  # a context manager that shuts down
        assert ex is local and local.wait() == []


def test_abstract_methods_are_enforced():
    assert Executor.__abstractmethods__ == {"submit", "wait"}
    with pytest.raises(TypeError):
        Executor()

    class NoWait(Executor):
        def submit(self, items, plan=None, timeout_s=None):
            pass

    with pytest.raises(TypeError, match="wait"):
        NoWait()

    class Minimal(NoWait):
        def wait(self):
            return []

    ex = Minimal()
    assert ex.capacity == 1 and ex.wait() == [] and ex.shutdown() is None


def test_the_table_executor_returns_typed_results(tmp_path):
    ex = TableExecutor(SearchConfig(space="swish", tasks=["digits-cnn"], seeds=2), _table(tmp_path))
    ex.submit([EvaluationItem("act_a", "x*tanh(x)", {}), ("act_s", "exp(exp(x))", {})])  # a plain tuple too
    (a, s), = ex.wait()
    assert isinstance(a, EvaluationResult) and a.candidate_id == "act_a" and a.worker == "table"
    assert a.score == pytest.approx((0.93 - 0.91) / (0.91 - 0.1)) and a.rejection is None and a.reason_code is None
    assert s.score is None and s.reason_code is RejectionReason.EVALUATION_ERROR
    assert s.rejection.stage == "evaluate" and "screened out" in s.rejection.detail
    cid, report, worker, wall = a  # still unpacks as the plain tuple of earlier versions
    assert (cid, report, worker, wall) == (a[0], a.report, "table", 0.0)


def test_the_local_path_returns_typed_results(monkeypatch):
    import actsearch.evaluation as evaluation

    def fake(cands, *a, **kw):
        if any("cos" in c.formula for c in cands):
            raise RuntimeError("kernel exploded")
        return [{"score": 0.1, "seeds": [0], "tasks": {}} for _ in cands]

    monkeypatch.setattr(evaluation, "evaluate_many", fake)
    out = evaluate_items([("a", "x*sigmoid(x)", {}), ("b", "x*cos(x)", {})], ["digits-cnn"], 1, 10, ["relu"],
                         None, "w")
    assert all(isinstance(r, EvaluationResult) for r in out)
    assert [r.candidate_id for r in out] == ["a", "b"] and out[0].score == 0.1
    assert out[1].reason_code is RejectionReason.EVALUATION_ERROR and "kernel exploded" in out[1].rejection.detail


def test_executors_measure_no_kernel_cost(monkeypatch):
    """The cost objective is the driver's static estimate: no benchmark runs on the search path."""
    import inspect

    import actsearch.evaluation as evaluation
    import actsearch.kernels.bench as bench

    def forbidden(*a, **kw):
        raise AssertionError("kernel_cost ran on the search path")

    monkeypatch.setattr(bench, "kernel_cost", forbidden)
    monkeypatch.setattr(evaluation, "evaluate_many", lambda cands, *a, **kw: [{"score": 0.0, "tasks": {}} for _ in cands])
    out = evaluate_items([("a", "x*sigmoid(x)", {})], ["digits-cnn"], 1, 10, ["relu"], None, "w")
    assert "cost" not in out[0].report
    assert "cost" not in inspect.signature(evaluate_items).parameters
    assert "cost" not in inspect.signature(EvaluationWorker.__init__).parameters


# ------------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("result", [
    EvaluationResult("c_ok", {"score": 0.25, "seeds": [0], "tasks": {}}, "w:1", 1.5),
    EvaluationResult.rejected("c_rej", Rejection(RejectionReason.COMPILE_ERROR, "compile", "g++ failed",
                                                 "CalledProcessError"), "w:2", 0.5),
    timeout_outcome([("c_slow", "x", {})], 300.0, "timeout")[0],
    worker_lost_outcome([EvaluationItem("c_lost", "x", {})], 4, "RayActorError")[0],
])
def test_results_round_trip_through_the_store(tmp_path, result):
    assert EvaluationResult.from_dict(result.to_dict()) == result
    with ResultStore(tmp_path / "run", mode="create") as store:
        store.record_candidate({"id": result.candidate_id, "formula": "x", "screening_passed": True})
        store.record_result(result.candidate_id, result.score, result.report, wall_s=result.wall_s,
                            worker=result.worker)
        stored = store.result(result.candidate_id)
    assert stored["report"] == result.report and stored["score"] == result.score
    back = EvaluationResult(result.candidate_id, stored["report"], result.worker, result.wall_s)
    assert back == result and back.rejection == result.rejection
    if result.rejection is None:
        assert stored["reason_code"] is None and stored["rejected"] is None
    else:  # the stored code is the enum's value, and reads back as the same member
        assert stored["reason_code"] == result.reason_code.value == result.rejection.code
        assert RejectionReason(stored["reason_code"]) is result.reason_code
        assert stored["rejected"] == str(result.rejection) == result.report["rejected"]


def test_a_rejection_round_trips_through_its_dict():
    r = Rejection.from_exception(ValueError("bad\nsecond line"), "prepare")
    assert r.code is RejectionReason.INVALID_FORMULA and r.error_type == "ValueError"
    assert Rejection.from_dict(r.to_dict()) == r
    assert r.to_report() == {"score": None, "tasks": {}, "seeds": [], "rejected": f"{r.code.value}: bad",
                             "rejection": r.to_dict()}


# ------------------------------------------------------------------------------------------ the codes

def test_enum_values_are_the_codes_in_the_store(tmp_path):
    """Every reason code, written by the store, is read back as the enum member of that value; the enums
    are str-valued, so a member compares equal to its stored text."""
    with ResultStore(tmp_path / "run", mode="create") as store:
        for code in RejectionReason:
            store.record_candidate({"id": f"c_{code.value}", "formula": "x", "screening_passed": True})
            store.record_result(f"c_{code.value}", None, Rejection(code, "evaluate", "why").to_report())
        store.record_candidate({"id": "s", "formula": "x", "screening_passed": False,
                                "screening_reason": "linear: f = 2*x + 0 on every probe"})
        stored = {code: store.result(f"c_{code.value}")["reason_code"] for code in RejectionReason}
        counts = store.rejection_counts()
        assert store.candidate("s")["reason_code"] == RejectionReason.SCREENED_OUT
        screening = store.screening_reasons()
    assert all(stored[code] == code.value == code and RejectionReason(stored[code]) is code for code in stored)
    assert counts[RejectionReason.SCREENED_OUT.value] == 2 and all(counts[c.value] >= 1 for c in RejectionReason)
    assert [ScreeningCheck.of(t) for t in screening] == [ScreeningCheck.LINEAR]


def test_screening_checks_are_the_screening_modules_codes():
    from actsearch.formula import parse_formula
    from actsearch.screening import screen_candidate

    for formula, check in [("2*x + 1", ScreeningCheck.LINEAR), ("exp(exp(exp(x)))", ScreeningCheck.NON_FINITE),
                           ("x - x + 3", ScreeningCheck.CONSTANT)]:
        result = screen_candidate(parse_formula(formula))
        assert not result.passed and ScreeningCheck.of("; ".join(result.reasons)) is check, formula
        assert all(ScreeningCheck(code) for code in result.codes)
    assert ScreeningCheck.of(None) is None and ScreeningCheck.of("prepare: FormulaError: x") is None
    assert ScreeningCheck.of("unstable: the input gradient diverges") is None


def test_the_report_counts_stored_codes_and_screening_checks():
    from actsearch.report import rejection_reasons

    counts = {"timeout": 2, "screened_out": 3, "unstable": 1}
    screening = ["non_finite: f is NaN", "non_finite: f is Inf; linear: ...", "constant: f = 1",
                 "unstable: worst-case gradient", "prepare: FormulaError: x+"]
    assert rejection_reasons(counts, screening) == {"timeout": 2, "unstable": 1, "screened_out: non_finite": 2,
                                                   "screened_out: constant": 1}
