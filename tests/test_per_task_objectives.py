"""--objectives tasks: one maximised score per search task (a layer's score on each architecture, as
EvoNorm selects layers), Pareto selection in the strategies, the per-task Pareto front in the summary."""
from __future__ import annotations


import pytest

from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore
from actsearch.strategies import dominates, make_strategy
from fake_training import PlanExecutor, RatioSpace, conflicting_task_quality

TASKS = ["digits-cnn", "mnist1d-mlp"]

pytestmark = pytest.mark.usefixtures("ratio_space")


class TaskPlanExecutor(PlanExecutor):
    """PlanExecutor with conflicting per-task qualities (digits-cnn prefers a/b = 1.5, mnist1d-mlp 0.5)."""

    def __init__(self, **kw):
        super().__init__(task_quality=conflicting_task_quality, **kw)


def config(**kw):
    base = dict(space="ratio-test", strategy="evolution", strategy_options={"population": 8, "tournament": 3},
                tasks=list(TASKS), objectives=["tasks"], budget=18, seeds=2, batch=3, executor="local", seed=2)
    base.update(kw)
    return SearchConfig(**base)


def test_config_checks_and_default_rungs_train_every_task():
    cfg = config()
    cfg.validate()
    assert cfg.n_objectives() == 2 and cfg.directions() == ("maximize", "maximize")
    assert all(r.tasks == tuple(TASKS) for r in cfg.resolved_rungs())
    assert [r.seeds for r in cfg.resolved_rungs()] == [2, 3, 5]
    with pytest.raises(ValueError, match="at least two --tasks"):
        config(tasks=["digits-cnn"]).validate()
    with pytest.raises(ValueError, match="every rung must train every task"):
        config(rungs="1:2,all:5").validate()
    with pytest.raises(ValueError, match="'tasks'"):
        config(objectives=["tasks", "cost"]).validate()


def test_worst_task_objective_config():
    cfg = config(objectives=["worst-task"])
    cfg.validate()
    assert cfg.n_objectives() == 1 and cfg.directions() == ("maximize",) and cfg.worst_task and not cfg.per_task
    assert all(r.tasks == tuple(TASKS) for r in cfg.resolved_rungs())  # a worst task needs every task
    assert cfg.selection() == "worst-task" and config().selection() == "score"
    assert config(objectives=["worst-task"], validate_select="score").selection() == "score"
    with pytest.raises(ValueError, match="worst-task needs at least two --tasks"):
        config(objectives=["worst-task"], tasks=["digits-cnn"]).validate()
    with pytest.raises(ValueError, match="every rung must train every task"):
        config(objectives=["worst-task"], rungs="1:2,all:5").validate()


def test_worst_task_search_tells_and_promotes_the_worst_tasks_score(tmp_path):
    """The strategy is told, ASHA promotes on, and the Optuna mirror records the score on the worst task;
    on the conflicting fake tasks that is the candidate nearest a/b = 1, which a mean over the two tasks
    (flat between 0.5 and 1.5) cannot single out."""
    import optuna

    from fake_training import slope
    from actsearch.optuna_study import storage_url, study_name
    from actsearch.staging import worst_task

    driver = SearchDriver(config(objectives=["worst-task"], budget=15), tmp_path / "run",
                          executor=TaskPlanExecutor(noise=0.002))
    driver.run()
    with ResultStore(tmp_path / "run", mode="read") as store:
        rows = store.rung_rows()
        ranked = {r["id"]: r for r in store.ranked()}
        tells = [v for k, _, v in store.events() if k == "tell" and v is not None]
    # every value told is a float: the worst task's score at some rung of some candidate
    worst_seen = {round(worst_task(r["summary"]["task_scores"], TASKS), 12) for r in rows if r["summary"]}
    assert tells and all(isinstance(v, float) for v in tells)
    assert {round(v, 12) for v in tells} <= worst_seen
    # ASHA promoted the best rung-0 candidate on its worst task, the one nearest a/b = 1
    rung0 = {r["candidate_id"]: worst_task(r["summary"]["task_scores"], TASKS)
             for r in rows if r["rung"] == 0 and r["status"] == "done" and r["summary"]}
    # the promotion book holds the worst task's score of every rung-0 candidate, not the mean
    assert {c: v for c, (v, _) in driver.asha.done[0].items()} == pytest.approx(rung0)
    best0 = max((v, c) for c, v in rung0.items() if v is not None)[1]
    assert ranked[best0]["rung"] >= 1
    assert abs(slope(ranked[best0]["formula"]) - 1.0) == min(abs(slope(ranked[c]["formula"]) - 1.0) for c in rung0)
    # the Optuna mirror's rung-0 trial values are the worst-task scores
    trials = optuna.load_study(study_name=study_name(0), storage=storage_url(tmp_path / "run" / "optuna.db")).trials
    values = {t.user_attrs["candidate_id"]: t.values[0] for t in trials if t.values}
    assert values and all(values[c] == pytest.approx(rung0[c]) for c in values)


def test_strategies_take_directions():
    s = make_strategy("evolution", RatioSpace(), n_objectives=2, directions=("maximize", "maximize"))
    # in the utilities' orientation (objective 0 up, the rest down) the second score is negated
    assert s._oriented((0.1, 0.2)) == (0.1, -0.2)
    assert dominates(s._oriented((0.2, 0.3)), s._oriented((0.1, 0.2)))
    with pytest.raises(ValueError, match="directions"):
        make_strategy("random", RatioSpace(), n_objectives=2, directions=("maximize",))
    opt = make_strategy("optuna", RatioSpace(), n_objectives=2, directions=("maximize", "maximize"))
    assert [d.name for d in opt.study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    sur = make_strategy("surrogate", RatioSpace(), n_objectives=2, directions=("maximize", "maximize"))
    assert sur._objective((0.1, 0.3)) == pytest.approx(0.2)  # the mean of per-task scores is learned


def test_per_task_search_tells_task_scores_and_reports_their_pareto_front(tmp_path):
    summary = SearchDriver(config(), tmp_path / "run", executor=TaskPlanExecutor()).run()
    with ResultStore(tmp_path / "run", mode="read") as store:
        tells = [v for k, _, v in store.events() if k == "tell" and v is not None]
        ranked = [r for r in store.ranked() if r["score"] is not None]
        scores = {r["id"]: store.task_scores(r["id"]) for r in ranked}
    assert tells and all(isinstance(v, list) and len(v) == 2 for v in tells)
    front = summary["pareto"]
    assert front and all(set(f["task_scores"]) == set(TASKS) for f in front)
    points = {c: (s["digits-cnn"], -s["mnist1d-mlp"]) for c, s in scores.items() if s}
    for f in front:  # nothing evaluated dominates a front member, and every non-member is dominated
        assert not any(dominates(p, points[f["id"]]) for p in points.values())
    ids = {f["id"] for f in front}
    for c, p in points.items():
        if c not in ids:
            assert any(dominates(points[f], p) for f in ids)
    # the conflicting tasks give a front of more than one candidate
    assert len(front) >= 2


@pytest.mark.parametrize("objective", ["tasks", "worst-task"])
def test_per_task_search_resumes_exactly(tmp_path, objective):
    cfg = dict(objectives=[objective], budget=15)  # below the fake space's 17 members: no exhaustion
    SearchDriver(config(**cfg), tmp_path / "ref", executor=TaskPlanExecutor()).run()
    with pytest.raises(KeyboardInterrupt):
        SearchDriver(config(**cfg), tmp_path / "run", executor=TaskPlanExecutor(crash_after=3)).run()
    SearchDriver(config(**cfg), tmp_path / "run", resume=True, executor=TaskPlanExecutor()).run()
    with ResultStore(tmp_path / "ref", mode="read") as a, ResultStore(tmp_path / "run", mode="read") as b:
        ea = [(k, g, v) for k, g, v in a.events() if k in ("ask", "tell")]
        eb = [(k, g, v) for k, g, v in b.events() if k in ("ask", "tell")]
        assert [(k, g) for k, g, _ in ea] == [(k, g) for k, g, _ in eb]
        assert [r["id"] for r in a.ranked()] == [r["id"] for r in b.ranked()]


def test_worst_task_selection_validates_the_candidates_that_transfer(tmp_path):
    """Conflicting tasks (digits-cnn prefers a/b = 1.5, mnist1d-mlp 0.5): the mean over the two is flat
    between 0.5 and 1.5, the worse of the two peaks at a/b = 1.  --select worst-task takes, among the
    candidates at the highest rung, the best on their worst search task; --select score the conservative
    ranking of the mean."""
    from fake_training import slope
    from actsearch.validation import select_candidates, validate_store

    SearchDriver(config(budget=21, seeds=2, validate_top=0), tmp_path / "run", optuna_study=False,
                 executor=TaskPlanExecutor(noise=0.002)).run()
    with ResultStore(tmp_path / "run", mode="write") as store:
        by_score = select_candidates(store, 3, "score")
        worst = select_candidates(store, 3, "worst-task")
        valid = [r for r in store.ranked() if r["rejected"] is None and r["score"] is not None]
        task_min = {r["id"]: min(store.task_scores(r["id"]).values()) for r in valid}
        top_rung = max(r["rung"] for r in valid)
        summary = validate_store(store, TaskPlanExecutor(noise=0.002), top=2, seeds=3, select="worst-task")
        stored = store.latest_validation()
    assert by_score == valid[:3]
    assert len(worst) == 3 and worst[0]["rung"] == top_rung and worst != by_score
    assert sum(r["rung"] == top_rung for r in valid) >= 3  # a choice within the top rung
    # rungs never rise down the list, and within a rung the worst-task scores never rise
    keys = [(-r["rung"], -task_min[r["id"]]) for r in worst]
    assert keys == sorted(keys)
    # nothing left out beats the last chosen on (rung, worst task)
    assert all((-r["rung"], -task_min[r["id"]]) >= keys[-1] for r in valid if r not in worst)
    # the truth: the worst-task choice at the top rung is the candidate closest to a/b = 1 there
    at_top = [r for r in valid if r["rung"] == top_rung]
    assert abs(slope(worst[0]["formula"]) - 1.0) == min(abs(slope(r["formula"]) - 1.0) for r in at_top)
    assert summary["selected_by"] == stored["selected_by"] == "worst-task"
    assert [c["id"] for c in summary["candidates"]] == [r["id"] for r in worst[:2]]
    with ResultStore(tmp_path / "run", mode="read") as store:
        with pytest.raises(ValueError, match="--select must be one of score, worst-task"):
            select_candidates(store, 3, "median")


def test_worst_task_selection_needs_several_search_tasks(tmp_path):
    """Refused by select_candidates, and by `validate --select worst-task` before any worker starts."""
    from typer.testing import CliRunner

    from actsearch.cli import app
    from actsearch.validation import select_candidates

    SearchDriver(config(tasks=["digits-cnn"], objectives=["score"], budget=3, validate_top=0), tmp_path / "run",
                 optuna_study=False, executor=PlanExecutor()).run()
    with ResultStore(tmp_path / "run", mode="read") as store:
        with pytest.raises(ValueError, match="worst-task needs a run that searched at least two tasks"):
            select_candidates(store, 2, "worst-task")
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "run"), "--select", "worst-task", "--executor", "local",
                                 "--json"])
    assert r.exit_code != 0 and "worst-task needs a run that searched at least two tasks" in r.output
    with ResultStore(tmp_path / "run", mode="read") as store:
        assert store.latest_validation() is None  # nothing was validated
