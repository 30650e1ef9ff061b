"""Validation of a search's top candidates: fresh seeds that never overlap the search's, held-out tasks,
paired t-tests with Holm's correction, verdicts, the winner's-curse gap, storage and the CLI (on a
finished run and on one stopped early)."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.search import SearchDriver
from actsearch.store import ResultStore
from actsearch.validation import VALIDATION_SEED_BASE, fresh_seeds, held_out_tasks, validate_store, verdict
from fake_training import PlanExecutor, ratio_quality
from test_staging import staged_config

VAL_TASKS = ["digits-cnn", "mnist1d-mlp", "mnist1d-cnn"]  # the first two are the search tasks


pytestmark = pytest.mark.usefixtures("ratio_space")  # conftest.py: the fake space "ratio-test"


def searched(tmp_path, **kw):
    run = tmp_path / "run"
    SearchDriver(staged_config(**kw), run, executor=PlanExecutor()).run()
    return run


def test_validation_trains_fresh_seeds_only_and_corrects_for_every_comparison(tmp_path):
    run = searched(tmp_path)
    ex = PlanExecutor(noise=0.002)
    with ResultStore(run, mode="write") as store:
        search_seeds = store.search_seeds()
        summary = validate_store(store, ex, top=3, seeds=4, tasks=VAL_TASKS)
    fresh = fresh_seeds(4)
    assert summary["seeds"] == fresh == list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + 4))
    assert not set(fresh) & search_seeds and max(search_seeds) < VALIDATION_SEED_BASE
    # every validation training used fresh seeds, one population per task
    assert {s for (_, _, s) in ex.ledger} == set(fresh) and max(ex.ledger.values()) == 1
    assert sorted(list(p) for p in ex.plans) == sorted([t] for t in VAL_TASKS)
    assert summary["held_out"] == ["mnist1d-cnn"] and summary["search_tasks"] == ["digits-cnn", "mnist1d-mlp"]
    cands = summary["candidates"]
    assert len(cands) == 3 and summary["n_tests"] == 3 * 3 * 3  # candidates x tasks x (relu, gelu, silu)
    from statsmodels.stats.multitest import multipletests

    ps = [c["tasks"][t]["vs"][b]["p"] for c in cands for t in VAL_TASKS for b in ("relu", "gelu", "silu")]
    adj = [c["tasks"][t]["vs"][b]["p_holm"] for c in cands for t in VAL_TASKS for b in ("relu", "gelu", "silu")]
    assert adj == pytest.approx(list(multipletests(ps, method="holm")[1]))
    for c in cands:
        q = ratio_quality(c["formula"])
        # the fake's truth: quality q over ReLU (0), GELU (0.01), SiLU (0.02, the best baseline)
        assert c["tasks"]["mnist1d-cnn"]["best_baseline"] == "silu"
        v = c["tasks"]["mnist1d-cnn"]["vs"]["silu"]
        assert v["diff"] == pytest.approx(q - 0.02, abs=0.01)
        if v["p_holm"] < 0.05:
            assert v["verdict"] == ("better" if q > 0.02 else "worse")
        assert c["gap"] == pytest.approx(c["search_score"] - c["fresh"]["score"])
        assert c["verdict_code"] in ("better", "matches", "worse", "mixed")
    best = max(cands, key=lambda c: ratio_quality(c["formula"]))
    assert ratio_quality(best["formula"]) == pytest.approx(0.05)
    assert best["verdict"] == "beats the best baseline on 1 of 1 held-out task"
    with ResultStore(run, mode="read") as store:
        stored = store.latest_validation()
    assert stored["candidates"][0]["id"] == cands[0]["id"] and stored["seeds"] == fresh


def test_a_second_validation_retrains_nothing_and_default_tasks_include_a_larger_model(tmp_path):
    run = searched(tmp_path, budget=8)
    with ResultStore(run, mode="write") as store:
        validate_store(store, PlanExecutor(), top=2, seeds=2, tasks=VAL_TASKS)
        again = PlanExecutor()
        summary = validate_store(store, again, top=2, seeds=2, tasks=VAL_TASKS)
    assert not again.ledger and summary["trainings"] == 0 and len(summary["candidates"]) == 2
    held = held_out_tasks(["mnist1d-mlp"])
    assert "mnist1d-mlp" not in held and "mnist1d-mlp-deep" in held and len(held) >= 3


def test_verdicts():
    assert verdict(["better", "matches"], 2) == ("better", "beats the best baseline on 1 of 2 held-out tasks")
    assert verdict(["matches", "matches"], 2)[0] == "matches"
    assert verdict(["worse", "matches"], 2) == ("worse", "worse than the best baseline on 1 of 2 held-out tasks")
    assert verdict(["worse", "better"], 2)[0] == "mixed"


def test_validate_cli_on_a_run_stopped_early_and_search_json_reports_rungs(tmp_path, monkeypatch):
    import actsearch.executor as executor_mod

    # a search killed after 4 batches: some candidates evaluated, promotions in flight
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        SearchDriver(staged_config(budget=18, batch=2), run, executor=PlanExecutor(crash_after=6)).run()
    monkeypatch.setattr(executor_mod, "make_executor", lambda cfg, run_dir: PlanExecutor())
    r = CliRunner().invoke(app, ["validate", str(run), "--top", "2", "--seeds", "3", "--tasks",
                                 ",".join(VAL_TASKS), "--executor", "local", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert len(summary["candidates"]) == 2 and summary["seeds"] == fresh_seeds(3)
    top = json.loads(CliRunner().invoke(app, ["top", str(run), "--json"]).stdout)
    assert sum(1 for row in top if row["validation"]) == 2
    refs = [row for row in top if row["reference"]]
    assert {row["formula"] for row in refs} == {"relu", "gelu", "silu"}
    assert next(row for row in refs if row["formula"] == "relu")["score"] == pytest.approx(0.0)
    assert [row["lcb"] for row in top if not row["reference"]][:1] and all(
        "rung" in row and "tasks" in row and "seeds" in row for row in top)
    for bad, match in ((["--top", "0"], "--top"), (["--seeds", "1"], "--seeds"), (["--tasks", " "], "--tasks"),
                       (["--tasks", "nope"], "unknown task")):
        r = CliRunner().invoke(app, ["validate", str(run), *bad])
        assert r.exit_code == 2 and match in r.output, r.output
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "none")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_search_json_has_per_rung_counts_and_the_validation(tmp_path, monkeypatch):
    import actsearch.executor as executor_mod

    monkeypatch.setattr(executor_mod, "make_executor", lambda cfg, run_dir: PlanExecutor())
    r = CliRunner().invoke(app, ["search", "--space", "ratio-test", "--strategy", "random", "--tasks",
                                 "digits-cnn,mnist1d-mlp", "--budget", "9", "--batch", "3", "--executor", "local",
                                 "--validate-top", "2", "--validate-seeds", "2", "--validate-tasks",
                                 ",".join(VAL_TASKS), "--run-dir", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert [k["index"] for k in summary["rungs"]] == [0, 1, 2] and summary["eta"] == 3
    assert summary["rungs"][0]["completed"] == 9 and summary["rungs"][0]["trainings"] == 18
    assert all({"label", "completed", "promoted", "trainings", "wall_s", "tasks", "seeds"} <= set(k)
               for k in summary["rungs"])
    assert len(summary["validation"]["candidates"]) == 2
    counts = Counter(k for k in summary["validation"]["best_baseline"].values())
    assert sum(counts.values()) == len(VAL_TASKS)
