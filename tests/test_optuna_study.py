"""RUN_DIR/optuna.db, the run's Optuna studies for optuna-dashboard (actsearch.optuna_study): every
candidate a trial with the store's values and its formula, id and per-task scores as attributes; a
resumed run adds only what is missing; rebuilt from results.db, it is the same study."""
from __future__ import annotations

import json

import warnings

import optuna
import pytest

from actsearch.optuna_study import STUDY_NAME, rebuild_study, storage_url, study_name
from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore, StoreError
from fake_training import PlanExecutor, conflicting_task_quality, ratio_table, slope

pytestmark = pytest.mark.usefixtures("ratio_space")

TASKS = ["digits-cnn", "mnist1d-mlp"]
COMPLETE, FAIL, PRUNED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                          optuna.trial.TrialState.PRUNED)


class RejectingExecutor(PlanExecutor):
    """PlanExecutor whose candidates with a slope above 2.5 diverge on every task; per-task qualities
    that conflict (digits-cnn prefers 1.5, mnist1d-mlp 0.5)."""

    def __init__(self, **kw):
        super().__init__(task_quality=conflicting_task_quality, rejected=_diverges_above_2_5, **kw)


def _diverges_above_2_5(formula: str, task: str):
    return "diverged: non-finite loss" if slope(formula) > 2.5 else None


@pytest.fixture
def screen_low_slopes(monkeypatch):
    """Screening rejects the candidates with a slope below 0.5 (they become PRUNED trials)."""
    import actsearch.screening as screening

    real = screening.screen_candidate

    def screen(c, *a, **kw):
        if slope(c.source or c.formula) < 0.5:
            return screening.ScreeningResult(False, ["flat: test screen"])
        return real(c, *a, **kw)

    monkeypatch.setattr(screening, "screen_candidate", screen)


def config(**kw):
    base = dict(space="ratio-test", strategy="exhaustive", tasks=list(TASKS), budget=100, seeds=2, batch=3,
                executor="local", strategy_options={})
    base.update(kw)
    return SearchConfig(**base)


def trials(run, rung=0) -> list:
    return optuna.load_study(study_name=study_name(rung), storage=storage_url(run / "optuna.db")).trials


def snapshot(run) -> dict:
    """(study, candidate id) -> (state, values, user attrs) of every trial of every study in optuna.db."""
    out = {}
    url = storage_url(run / "optuna.db")
    for s in optuna.get_all_study_summaries(url):
        for t in optuna.load_study(study_name=s.study_name, storage=url).trials:
            key = (s.study_name, t.user_attrs["candidate_id"])
            assert key not in out, f"{key} has two trials"
            out[key] = (t.state, t.values, t.user_attrs)
    return out


def check_against_store(run, per_task: bool = False) -> dict:
    """Every candidate of the store is a trial of `actsearch`, every rung evaluation one of its rung's
    study, with the store's values; returns the snapshot."""
    snap = snapshot(run)
    with ResultStore(run, mode="read") as store:
        config = store.config()
        expected = set()
        for row in store.rung_rows():
            if row["status"] != "done":
                continue
            key = (study_name(row["rung"]), row["candidate_id"])
            expected.add(key)
            state, values, attrs = snap[key]
            cand = store.candidate(row["candidate_id"])
            assert attrs["formula"] == cand["formula"] and attrs["rung"] == row["rung"]
            assert attrs["score"] == row["score"]
            task_scores = (row["summary"] or {}).get("task_scores")
            assert attrs["task_scores"] == task_scores and attrs["seeds"] == row["summary"]["seeds"]
            if row["rejected"] or row["score"] is None:
                assert state == FAIL and values is None and attrs["reason"]
            elif per_task:
                assert state == COMPLETE and values == [task_scores[t] for t in config["tasks"]]
            else:
                assert state == COMPLETE and values == [row["score"]]
        pruned = {c for (c,) in store._all("SELECT id FROM candidates WHERE screening_passed = 0")}
        for cid in pruned:
            key = (STUDY_NAME, cid)
            expected.add(key)
            assert snap[key][0] == PRUNED and snap[key][2]["stage"] == "screen"
            assert snap[key][2]["reason_code"] == "screened_out" and "test screen" in snap[key][2]["reason"]
        # every candidate proposed is in the rung-0 study: evaluated or pruned
        assert {c for s, c in snap if s == STUDY_NAME} == {r[3] for r in store.history()} | pruned
        # the score `top` ranks a candidate by is its trial's in the highest rung study it reached
        for r in store.ranked():
            if r["rejected"] is None and r["score"] is not None:
                assert snap[(study_name(r["rung"]), r["id"])][2]["score"] == r["score"]
    assert set(snap) == expected
    return snap


def test_every_candidate_is_a_trial_with_the_stores_values(tmp_path, screen_low_slopes):
    run = tmp_path / "run"
    summary = SearchDriver(config(), run, executor=RejectingExecutor()).run()
    snap = check_against_store(run)
    states = [t.state for t in trials(run)]
    assert len(states) == summary["evaluated"] + summary["screened_out"]
    assert COMPLETE in states and FAIL in states and PRUNED in states
    assert any(s.startswith(f"{STUDY_NAME}-rung") for s, _ in snap)  # default rungs: promotions have studies
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(run / "optuna.db"))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and study.metric_names == ["score"]
    assert study.user_attrs["config"]["space"] == "ratio-test" and study.user_attrs["rung"] == 0
    best = study.best_trial
    assert best.user_attrs["candidate_id"].startswith("act_") and "sigmoid" in best.user_attrs["formula"]
    assert set(best.user_attrs["task_scores"]) == {"digits-cnn"}  # rung 0: the first task


@pytest.mark.parametrize("objectives", [["tasks"], ["score", "cost"]])
def test_multi_objective_studies(tmp_path, screen_low_slopes, objectives):
    run = tmp_path / "run"
    SearchDriver(config(objectives=objectives, rungs="all:2,all:3"), run, executor=RejectingExecutor()).run()
    per_task = objectives == ["tasks"]
    snap = check_against_store(run, per_task=per_task) if per_task else snapshot(run)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(run / "optuna.db"))
    if per_task:
        assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2 and study.metric_names == TASKS
        assert len(study.best_trials) >= 2  # the tasks conflict: a front, not one best
    else:
        assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
        assert study.metric_names == ["score", "cost"]
        with ResultStore(run, mode="read") as store:
            for (s, cid), (state, values, attrs) in snap.items():
                if s == STUDY_NAME and state == COMPLETE:
                    res = store.result(cid)
                    assert values == [attrs["score"], res["cost"] or 0.0]
                    assert attrs["cost"] == res["cost"]


def test_resume_adds_only_what_is_missing(tmp_path, screen_low_slopes, monkeypatch):
    from actsearch import optuna_study

    run = tmp_path / "run"
    cfg = config(budget=14)
    real, calls = optuna_study.StudyMirror.sync, []

    def first_two_only(self, store):  # the driver dies between storing results and mirroring them
        calls.append(1)
        return real(self, store) if len(calls) <= 2 else 0

    monkeypatch.setattr(optuna_study.StudyMirror, "sync", first_two_only)
    with pytest.raises(KeyboardInterrupt):
        SearchDriver(cfg, run, executor=RejectingExecutor(crash_after=4)).run()
    monkeypatch.setattr(optuna_study.StudyMirror, "sync", real)
    first = snapshot(run)
    with ResultStore(run, mode="read") as store:
        stored = sum(r["status"] == "done" for r in store.rung_rows()) + store.n_screened_out()
    assert 0 < len(first) < stored  # results stored but not mirrored when the driver died
    SearchDriver(cfg, run, resume=True, executor=RejectingExecutor()).run()
    second = check_against_store(run)
    assert all(second[k][:2] == first[k][:2] for k in first)  # kept as they were, none twice (snapshot asserts)
    # resuming a finished run adds nothing; a larger budget adds only the new candidates
    SearchDriver(cfg, run, resume=True, executor=RejectingExecutor()).run()
    assert snapshot(run).keys() == second.keys()
    SearchDriver(config(budget=18), run, resume=True, executor=RejectingExecutor()).run()
    third = check_against_store(run)
    assert set(second) < set(third)


def test_a_run_whose_study_was_lost_or_never_made_is_backfilled_and_rebuilt(tmp_path, screen_low_slopes):
    run = tmp_path / "run"
    SearchDriver(config(budget=10), run, executor=RejectingExecutor()).run()
    live = snapshot(run)
    for suffix in ("", "-wal", "-shm"):  # a run made before optuna.db existed
        (run / f"optuna.db{suffix}").unlink(missing_ok=True)
    assert rebuild_study(run) == run / "optuna.db"
    rebuilt = snapshot(run)
    assert {k: v[:2] for k, v in rebuilt.items()} == {k: v[:2] for k, v in live.items()}
    assert all(rebuilt[k][2] == live[k][2] for k in live)
    assert rebuild_study(run).exists() and snapshot(run).keys() == live.keys()  # again: replaced, not doubled
    # an old run resumed: its first sync backfills the whole history
    for suffix in ("", "-wal", "-shm"):
        (run / f"optuna.db{suffix}").unlink(missing_ok=True)
    SearchDriver(config(budget=12), run, resume=True, executor=RejectingExecutor()).run()
    assert set(live) < set(check_against_store(run))
    with ResultStore(run, mode="write"):  # a search writing the run: its own mirror is the writer
        with pytest.raises(StoreError, match="being written"):
            rebuild_study(run)
    out = tmp_path / "elsewhere" / "study.db"  # e.g. a run on read-only media
    rebuild_study(run, out)
    assert len(optuna.load_study(study_name=STUDY_NAME, storage=storage_url(out)).trials) == len(trials(run))
    # the same through the command line
    from typer.testing import CliRunner

    from actsearch.cli import app

    cli_out = tmp_path / "cli" / "study.db"
    r = CliRunner().invoke(app, ["study", str(run), "--out", str(cli_out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["storage"] == storage_url(cli_out)
    assert len(optuna.load_study(study_name=STUDY_NAME, storage=storage_url(cli_out)).trials) == len(trials(run))


def test_the_mirror_never_stops_a_search(tmp_path, monkeypatch):
    from actsearch import optuna_study

    def broken(self, store):
        raise OSError("disk full")

    monkeypatch.setattr(optuna_study.StudyMirror, "sync", broken)
    with pytest.warns(RuntimeWarning, match="no longer updated.*disk full"):
        summary = SearchDriver(config(budget=6, rungs="flat"), tmp_path / "run", executor=PlanExecutor()).run()
    assert summary["evaluated"] == 6


def test_cli_search_writes_the_study(tmp_path):
    """End to end through `actsearch search` (a tabular executor: no training)."""
    from typer.testing import CliRunner

    from actsearch.cli import app

    table, _ = ratio_table(tmp_path)
    run = tmp_path / "cli-run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the mirror warns only when it fails
        r = CliRunner().invoke(app, ["search", "--space", "ratio-test", "--strategy", "random", "--tasks",
                                     ",".join(TASKS), "--budget", "8", "--seeds", "2", "--executor", f"table:{table}",
                                     "--validate-top", "0", "--run-dir", str(run)])
    assert r.exit_code == 0, r.output
    study = optuna.load_study(study_name="actsearch", storage=f"sqlite:///{run}/optuna.db")
    assert len(study.trials) == 8 and all(t.state == COMPLETE for t in study.trials)
    with ResultStore(run, mode="read") as store:
        assert sorted(t.value for t in study.trials) == sorted(h[1] for h in store.history())
        assert {t.user_attrs["candidate_id"] for t in study.trials} == {h[3] for h in store.history()}
        assert all(t.user_attrs["formula"] == store.candidate(t.user_attrs["candidate_id"])["formula"]
                   for t in study.trials)
    check_against_store(run)


def test_a_driver_can_do_without_the_study(tmp_path):
    """SearchDriver(..., optuna_study=False), e.g. benchmarks of many tabular searches: no optuna.db;
    rebuild_study writes it afterwards."""
    run = tmp_path / "run"
    SearchDriver(config(budget=4, rungs="flat"), run, executor=PlanExecutor(), optuna_study=False).run()
    assert not (run / "optuna.db").exists()
    rebuild_study(run)
    check_against_store(run)


def test_a_schema_1_run_is_rebuilt_as_it_is(tmp_path):
    """A run of the first store schema (no reason codes, no rungs) read as it is, never migrated."""
    from test_store import _schema_1_store

    run = tmp_path / "old"
    _schema_1_store(run)
    before = (run / "results.db").read_bytes()
    rebuild_study(run)
    assert (run / "results.db").read_bytes() == before
    by_id = {t.user_attrs["candidate_id"]: t for t in trials(run)}
    assert by_id["a"].state == COMPLETE and by_id["a"].values == [0.2] and by_id["a"].user_attrs["formula"] == "x"
    assert by_id["b"].state == FAIL and by_id["b"].user_attrs["reason"].startswith("timeout")
    assert by_id["s"].state == PRUNED and by_id["s"].user_attrs["stage"] == "screen"
    assert by_id["s"].user_attrs["reason"] == "non_finite: overflow"
