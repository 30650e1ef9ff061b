"""Issue 21: no candidate may crash a search.  Every exception on one candidate's way (build,
fingerprint, screening, kernel generation, compilation, training, its worker's death) is recorded as
that candidate's rejection, with a reason code, and the search and its resume go on."""
from __future__ import annotations

import os

import pytest

from actsearch.executor import EvaluationWorker, RayExecutor, evaluate_items, locate_failure
from actsearch.rejection import Rejection, RejectionReason, classify_exception, code_of
from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore
from actsearch.strategies import RandomStrategy

# issue 21 item 1: this swish genome made fingerprinting raise "cannot evaluate atan2 numerically"
# out of SearchDriver.run(), and --resume hit it again, so the run could never finish
CRASHING_GENOME = [["gauss_dist", "sin", "sqrt"], ["laplace_dist", "abs", "neg"]]


@pytest.fixture
def first_ask(monkeypatch):
    """RandomStrategy proposes `genome` first, then its usual draws (deterministic, so a resumed run's
    fresh strategy replays the same log)."""
    def install(genome):
        real = RandomStrategy._ask

        def ask(self):
            if not getattr(self, "_scripted_done", False):
                self._scripted_done = True
                return genome
            return real(self)

        monkeypatch.setattr(RandomStrategy, "_ask", ask)
    return install


def _issue_config(**kw):
    base = dict(space="swish", strategy="random", tasks=["digits-cnn"], budget=2, seeds=1, batch=1,
                executor="local", steps=50)
    base.update(kw)
    return SearchConfig(**base)


def test_issue_21_reproducer_finishes_its_budget_and_resumes(tmp_path, first_ask):
    first_ask(CRASHING_GENOME)
    run = tmp_path / "run"
    summary = SearchDriver(_issue_config(), run).run()
    assert summary["evaluated"] == 2
    store = ResultStore(run, create=False)
    events = store.db.execute("SELECT kind, genome, note FROM events ORDER BY seq").fetchall()
    assert events[0][0] == "ask" and "gauss_dist" in events[0][1]
    # the crashing genome was told (as a failure), with a note that leads with its reason code, or it
    # was built and screened normally once its canonical form stopped containing atan2
    tell = next(e for e in events if e[0] == "tell" and "gauss_dist" in e[1])
    assert tell[2] is None or code_of(tell[2]) is not None or tell[2] == "duplicate"
    store.close()
    # resume with a larger budget: the logged failure replays, the run goes on to the new budget
    summary = SearchDriver(_issue_config(budget=3), run, resume=True).run()
    assert summary["evaluated"] == 3


def test_an_exception_at_any_stage_of_preparation_is_a_recorded_rejection(tmp_path, monkeypatch):
    """Whatever raises while a candidate is built, fingerprinted or screened, the candidate is recorded
    with a reason code and the search reaches its budget (FakeExecutor-free: screening only)."""
    import actsearch.screening as screening
    import actsearch.search as search

    calls = {"n": 0}
    real = screening.screen_candidate

    def exploding(c, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("simulated screening bug")
        return real(c, *a, **kw)

    monkeypatch.setattr(screening, "screen_candidate", exploding)

    class Scores:
        capacity = 1

        def __init__(self):
            self.queue = []

        def submit(self, items, plan=None, timeout_s=None):
            self.queue.append([(cid, {"score": 0.0, "seeds": [0], "tasks": {}}, "fake", 0.0)
                               for cid, _, _ in items])

        def wait(self):
            return [self.queue.pop(0)]

        def shutdown(self):
            pass

    run = tmp_path / "run"
    summary = SearchDriver(_issue_config(budget=3), run, executor=Scores()).run()
    assert summary["evaluated"] == 3
    store = ResultStore(run, create=False)
    rows = store.db.execute("SELECT id, reason_code, screening_reason FROM candidates WHERE reason_code IS NOT NULL"
                            " AND reason_code != 'screened_out'").fetchall()
    assert any(code == RejectionReason.NOT_EVALUABLE.value and "ZeroDivisionError" in why and "simulated" in why
               for _, code, why in rows), rows
    notes = [n for (n,) in store.db.execute("SELECT note FROM events WHERE kind = 'tell'")]
    assert any(n and n.startswith("not_evaluable: simulated screening bug") for n in notes), notes
    assert search.rejection_code({"rejected": "timeout: no result"}) == "timeout"


def test_rejection_codes_classify_exceptions_by_type_and_stage():
    from actsearch.formula import FormulaError
    from actsearch.numeric import EvaluationError

    assert classify_exception(FormulaError("bad"), "evaluate") is RejectionReason.INVALID_FORMULA
    assert classify_exception(EvaluationError("atan2"), "prepare") is RejectionReason.NOT_EVALUABLE
    assert classify_exception(KeyError("k"), "codegen") is RejectionReason.CODEGEN_ERROR
    assert classify_exception(KeyError("k"), "elsewhere") is RejectionReason.INTERNAL_ERROR
    r = Rejection.from_exception(ValueError("line one\nline two"), "evaluate")
    assert str(r) == "evaluation_error: line one" and r.to_dict()["code"] == "evaluation_error"
    assert code_of(str(r)) is RejectionReason.EVALUATION_ERROR and code_of("screening: x") is None


def test_a_failing_candidate_is_located_at_its_stage(monkeypatch):
    import actsearch.evaluation as evaluation
    import actsearch.kernels.fused as fused

    def boom(cands, *a, **kw):
        raise RuntimeError("training blew up")

    monkeypatch.setattr(evaluation, "evaluate_many", boom)
    out = evaluate_items([("a", "x*sigmoid(x)", {})], ["digits-cnn"], 1, 10, ["relu"], None, "w")
    assert out[0][1]["rejection"]["code"] == "evaluation_error" and out[0][1]["rejection"]["stage"] == "evaluate"
    assert out[0][1]["rejected"] == "evaluation_error: training blew up"
    assert locate_failure(("b", "x+", {}), RuntimeError("x")).code is RejectionReason.INVALID_FORMULA

    def no_source(c):
        raise NotImplementedError("printer cannot print Foo")

    monkeypatch.setattr(fused, "get_kernel", no_source)
    r = locate_failure(("c", "x*tanh(x)", {}), RuntimeError("later"))
    assert r.code is RejectionReason.CODEGEN_ERROR and r.stage == "codegen" and "Foo" in r.detail


def test_a_candidate_that_kills_its_worker_is_isolated_and_recorded(ray_cluster, tmp_path):
    """A batch whose worker process dies is split in halves; the candidate that keeps killing its
    worker alone is recorded as worker_lost, every other candidate of the batch is scored."""
    import ray

    class CrashingWorker(EvaluationWorker):
        def evaluate(self, items, plan=None):
            if any("cos" in f for _, f, _ in items):
                os._exit(1)
            return [(cid, {"score": 0.5, "seeds": [0], "tasks": {}}, "w", 0.0) for cid, _, _ in items]

    cfg = SearchConfig(space="swish", strategy="random", tasks=["digits-cnn"], budget=4, seeds=1, steps=10,
                       batch=4, workers=1)
    cfg.validate()
    ex = RayExecutor(cfg, cache_dir=str(tmp_path / "cache"), max_retries=1)
    try:
        for w in ex.idle:
            ray.kill(w)
        ex.remote_cls = ray.remote(num_cpus=ex.threads, max_restarts=0)(CrashingWorker)
        ex.idle = [ex._new_worker()]
        ex.submit([("a", "x*sigmoid(x)", {}), ("b", "x*cos(x)", {}), ("c", "x*tanh(x)", {}), ("d", "x*erf(x)", {})])
        outcomes = []
        while not outcomes:
            outcomes = ex.wait()
        # one outcome for the one batch submitted (the driver counts batches), though it ran in parts
        assert len(outcomes) == 1 and sorted(cid for cid, *_ in outcomes[0]) == ["a", "b", "c", "d"]
        got = {cid: report for cid, report, worker, wall in outcomes[0]}
    finally:
        ex.shutdown()
    assert {k: v["score"] for k, v in got.items()} == {"a": 0.5, "b": None, "c": 0.5, "d": 0.5}
    assert got["b"]["rejection"]["code"] == "worker_lost"
    assert ex.deaths == 4  # [a b c d] -> [a b] -> [b], and its one retry
