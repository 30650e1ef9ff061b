"""The search driver and the result store, on a synthetic space with a fake executor (fast), plus
resume after a crash: nothing evaluated twice, nothing lost, exactly the budget in the end."""
from __future__ import annotations

import json
import random
import sqlite3

import pytest

from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore, StoreError


pytestmark = pytest.mark.usefixtures("ratio_space")  # conftest.py: the fake space "ratio-test"


def fake_score(formula: str) -> float:
    # the best slope is 1.5: x*sigmoid(3*x/2)
    import re

    a, b = map(int, re.findall(r"sigmoid\((\d+)\*x/(\d+)\)", formula)[0])
    return -abs(a / b - 1.5)


class FakeExecutor:
    """Scores without training; records every candidate it evaluates; can crash after n batches."""

    capacity = 2

    def __init__(self, crash_after=None, log=None):
        self.queue, self.crash_after, self.batches = [], crash_after, 0
        self.evaluated = log if log is not None else []

    def submit(self, items, plan=None, timeout_s=None):
        self.queue.append(items)

    def wait(self):
        if self.crash_after is not None and self.batches >= self.crash_after:
            raise KeyboardInterrupt("simulated driver death")
        items = self.queue.pop(0)
        self.batches += 1
        out = []
        for cid, formula, params in items:
            self.evaluated.append(cid)
            s = fake_score(formula)
            out.append((cid, {"score": s, "seeds": [0], "tasks": {"fake": {
                "candidate": {"mean": s, "std": 0.0, "per_seed": [s]}, "rejected": None, "candidate_wall_s": 0.0,
                "vs": {"relu": {"diff": s, "ci": [s, s], "verdict": "worse"}}}}}, "fake", 0.0))
        return [out]

    def shutdown(self):
        pass


def config(**kw):
    # flat (one rung): these tests are about the driver and the store; tests/test_staging.py stages
    base = dict(space="ratio-test", strategy="evolution", tasks=["digits-cnn"], budget=12, seeds=1, batch=3,
                executor="local", strategy_options={"population": 6, "tournament": 3}, rungs="flat")
    base.update(kw)
    return SearchConfig(**base)


def test_search_evaluates_exactly_the_budget_of_distinct_candidates(tmp_path):
    ex = FakeExecutor()
    summary = SearchDriver(config(), tmp_path / "run", executor=ex).run()
    assert summary["evaluated"] == 12
    assert len(ex.evaluated) == 12 == len(set(ex.evaluated))
    store = ResultStore(tmp_path / "run")
    ranked = store.ranked()
    assert len(ranked) == 12
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert summary["best"]["score"] == ranked[0]["score"]
    kinds = [k for k, _, _ in store.events()]
    assert kinds.count("ask") == kinds.count("tell")  # every ask was answered


def test_exhaustive_search_stops_when_the_space_is_exhausted(tmp_path):
    ex = FakeExecutor()
    summary = SearchDriver(config(strategy="exhaustive", budget=100, strategy_options={}), tmp_path / "r",
                           executor=ex).run()
    # 36 genomes, but only as many distinct slopes (a+1)/(b+1) as there are distinct fractions
    distinct = len({round((a + 1) / (b + 1), 12) for a in range(6) for b in range(6)})
    assert summary["evaluated"] == distinct == len(set(ex.evaluated)) == len(ex.evaluated)
    assert summary["exhausted"]


@pytest.mark.parametrize("strategy,options", [("evolution", {"population": 6, "tournament": 3}),
                                              ("random", {}), ("optuna", {})])
def test_resume_after_a_crash_repeats_nothing_and_loses_nothing(tmp_path, strategy, options):
    log: list = []
    cfg = config(strategy=strategy, strategy_options=options, budget=15)
    with pytest.raises(KeyboardInterrupt):
        SearchDriver(cfg, tmp_path / "run", executor=FakeExecutor(crash_after=2, log=log)).run()
    first = len(log)
    assert 0 < first < 15
    with pytest.raises(StoreError, match="--resume"):
        SearchDriver(cfg, tmp_path / "run", executor=FakeExecutor())
    summary = SearchDriver(cfg, tmp_path / "run", resume=True, executor=FakeExecutor(log=log)).run()
    assert summary["evaluated"] == 15
    assert len(log) == len(set(log)) == 15  # nothing evaluated twice across the two sessions
    # an uninterrupted run with the same seed proposes the same candidates
    ref: list = []
    SearchDriver(cfg, tmp_path / "ref", executor=FakeExecutor(log=ref)).run()
    if strategy != "optuna":  # TPE's proposals depend on which results had arrived when it was asked
        assert sorted(ref) == sorted(log)


def test_resume_refuses_changed_settings_and_missing_runs(tmp_path):
    SearchDriver(config(budget=3), tmp_path / "run", executor=FakeExecutor()).run()
    with pytest.raises(StoreError, match="different settings"):
        SearchDriver(config(budget=6, seeds=2), tmp_path / "run", resume=True, executor=FakeExecutor())
    summary = SearchDriver(config(budget=6), tmp_path / "run", resume=True, executor=FakeExecutor()).run()
    assert summary["evaluated"] == 6  # a larger budget continues the run
    with pytest.raises(StoreError, match="nothing to resume"):
        SearchDriver(config(), tmp_path / "none", resume=True, executor=FakeExecutor())


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        SearchDriver(config(budget=0), tmp_path / "a", executor=FakeExecutor())
    with pytest.raises(ValueError, match="valid strategies"):
        SearchDriver(config(strategy="nope"), tmp_path / "b", executor=FakeExecutor())
    with pytest.raises(ValueError, match="unknown task"):
        SearchDriver(config(tasks=["nope"]), tmp_path / "c", executor=FakeExecutor())
    with pytest.raises(ValueError):
        SearchDriver(config(space="nope"), tmp_path / "d", executor=FakeExecutor())
    assert not (tmp_path / "a").exists()


def test_store_round_trip_and_refuses_bad_files(tmp_path):
    s = ResultStore(tmp_path / "r")
    s.set_config({"a": 1}, {"torch": "x"})
    s.record_candidate({"id": "act_1", "formula": "x*sigmoid(x)", "canonical": "x*sigmoid(x)", "params": {},
                        "genome": [1, [2, "a"]], "screening_passed": True, "nearest_name": "silu",
                        "nearest_distance": 0.0})
    rep = {"score": 0.5, "seeds": [0, 1], "tasks": {"t": {"candidate": {"per_seed": [0.9, 0.8]}, "rejected": None,
                                                           "candidate_wall_s": 2.0}}}
    s.record_result("act_1", 0.5, rep, cost=2.0, wall_s=1.0, worker="w")
    s.log_ask([1, [2, "a"]])
    s.log_tell([1, [2, "a"]], 0.5, "act_1")
    s.close()
    s = ResultStore(tmp_path / "r", create=False)
    assert s.config() == {"a": 1}
    assert s.candidate("act_1")["genome"] == [1, [2, "a"]]
    assert s.result("act_1") == {"score": 0.5, "cost": 2.0, "rejected": None, "report": rep, "reason_code": None}
    assert s.events() == [("ask", [1, [2, "a"]], None), ("tell", [1, [2, "a"]], 0.5)]
    assert s.evaluation_count() == 2
    s.close()
    with sqlite3.connect(str(tmp_path / "r" / "results.db")) as con:  # the store itself reads read-only
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema 99"):
        ResultStore(tmp_path / "r")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an actsearch results store"):
        ResultStore(bad)
    assert (bad / "results.db").read_bytes() == b"this is not sqlite" * 100  # left untouched
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "missing", create=False)


def test_top_report_and_export_read_a_run(tmp_path):
    from typer.testing import CliRunner

    from actsearch.cli import app

    run = tmp_path / "run"
    SearchDriver(config(budget=6), run, executor=FakeExecutor()).run()
    runner = CliRunner()
    r = runner.invoke(app, ["top", str(run), "--n", "3", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert len(rows) == 3
    assert set(rows[0]) >= {"id", "formula", "canonical", "score", "nearest", "novel"}
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert rows[0]["nearest"]["name"] is not None and isinstance(rows[0]["novel"], bool)
    # x*sigmoid(k*x) is a Swish: the catalog knows it, so it is not novel for k near 1
    best = rows[0]
    r = runner.invoke(app, ["export", f"{run}:{best['id']}"])
    assert r.exit_code == 0, r.output
    assert best["id"] in r.stdout and "scores: score" in r.stdout and str(run) in r.stdout
    r = runner.invoke(app, ["export", f"{run}:act_nope"])
    assert r.exit_code == 2 and "no candidate" in r.output
    r = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "rep.html"), "--json"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and best["id"] in html
    r = runner.invoke(app, ["top", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_a_candidate_that_breaks_evaluation_is_recorded_and_the_batch_goes_on(monkeypatch):
    import actsearch.evaluation as evaluation
    from actsearch.executor import evaluate_items

    real = evaluation.evaluate_many

    def flaky(cands, *a, **kw):
        if any("cos" in c.formula for c in cands):
            raise RuntimeError("kernel exploded")
        return [{"score": 0.1, "seeds": [0], "tasks": {}} for _ in cands]

    monkeypatch.setattr(evaluation, "evaluate_many", flaky)
    items = [("a", "x*sigmoid(x)", {}), ("b", "x*cos(x)", {}), ("c", "x*tanh(x)", {})]
    out = evaluate_items(items, ["digits-cnn"], 1, 10, ["relu"], None, "w")
    assert [o[0] for o in out] == ["a", "b", "c"]
    assert out[0][1]["score"] == 0.1 and out[2][1]["score"] == 0.1
    assert out[1][1]["score"] is None and "kernel exploded" in out[1][1]["rejected"]
    monkeypatch.setattr(evaluation, "evaluate_many", real)


def test_multi_objective_search_keeps_a_pareto_front(tmp_path):
    from actsearch.strategies import pareto_front

    cfg = config(strategy="optuna", strategy_options={}, objectives=["score", "cost"], budget=10)
    summary = SearchDriver(cfg, tmp_path / "run", executor=FakeExecutor()).run()
    front = summary["pareto"]
    assert front
    rows = [r for r in ResultStore(tmp_path / "run").ranked()]
    assert all(r["cost"] is not None and r["cost"] > 0 for r in rows)
    idx = pareto_front([(r["score"], r["cost"]) for r in rows])
    assert {rows[i]["id"] for i in idx} == {p["id"] for p in front}


def test_measured_kernel_cost_is_relative_to_relu():
    import math

    from actsearch.formula import parse_formula
    from actsearch.kernels.bench import kernel_cost

    for f, p in [("max(0, x)", {}), ("x*sigmoid(beta*x)", {"beta": 1.0})]:
        c = kernel_cost(parse_formula(f, params=p or None), numel=4096, reps=3)
        assert math.isfinite(c) and c > 0
