"""A layer search end to end (issue 17): the evonorm space on the layer tasks, staged, with per-task
objectives, validated on held-out layer tasks, against BN-ReLU (the layer tasks' reference) and the layer
baselines; `top` and `report` with a column per task and the Pareto front; refusals of a search that mixes
kinds; exact resume.  Training is the fake executor of tests/fake_training.py (a fixed quality per
formula and task), except the real smoke test at the end (tiny --steps, marked slow)."""
from __future__ import annotations

import json
import statistics
from collections import Counter

import pytest
from typer.testing import CliRunner

from actsearch.cli import app, top_rows
from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore
from actsearch.tasks import LAYER_TASKS, get_task
from actsearch.validation import fresh_seeds, held_out_tasks
from fake_training import LAYER_BASELINE_QUALITY, PlanExecutor, hashed_quality

LAYER_BASELINES = list(get_task("digits-cnn-layer").baselines)
SEARCHED = ["mnist1d-resnet-layer", "digits-mobilenet-layer"]  # digits-cnn-layer is held out
runner = CliRunner()


def layer_config(**kw):
    base = dict(space="evonorm", strategy="evolution", strategy_options={"population": 6, "tournament": 3},
                tasks=list(SEARCHED), budget=15, seeds=2, batch=3, executor="local", seed=3)
    base.update(kw)
    return SearchConfig(**base)


def executor_for(cfg, **kw):
    """What make_executor would give the driver: an executor holding the validated config (its baselines)."""
    cfg.validate()
    return PlanExecutor(quality=hashed_quality, task_quality=hashed_quality, config=cfg, **kw)


# ------------------------------------------------------------------------------------ configuration

def test_a_layer_search_defaults_to_the_layer_baselines_and_activation_searches_keep_theirs():
    cfg = layer_config(tasks=["layers"])
    cfg.validate()
    assert cfg.tasks == list(LAYER_TASKS) and cfg.baselines == LAYER_BASELINES
    assert LAYER_BASELINES == ["bn-relu", "gn-relu", "bn-silu", "evonorm-b0", "evonorm-s0"]
    act = SearchConfig(space="swish", tasks=["all"])
    act.validate()
    assert act.baselines == ["relu", "gelu", "silu"]
    chosen = layer_config(baselines=["evonorm-s0", "gn-relu"])
    chosen.validate()
    assert chosen.baselines == ["evonorm-s0", "gn-relu"]  # the reference (bn-relu) is trained anyway
    assert held_out_tasks(SEARCHED) == ["digits-cnn-layer"] and held_out_tasks(list(LAYER_TASKS)) == []
    assert "mnist1d-mlp-deep" in held_out_tasks(["mnist1d-mlp"])  # activation searches: unchanged


@pytest.mark.parametrize("kw,match", [
    ({"space": "swish"}, r"--space swish searches scalar activation functions, but --tasks mnist1d-resnet-layer, "
                         r"digits-mobilenet-layer are layer tasks.*--space evonorm"),
    ({"space": "pangaea", "tasks": ["layers"]}, "searches scalar activation functions"),
    ({"tasks": ["mnist1d-mlp"]}, r"--space evonorm searches normalization-activation layers, but --tasks "
                                 r"mnist1d-mlp is an activation task, which trains scalar activation functions.*--tasks layers"),
    ({"tasks": ["digits-cnn", "digits-cnn-layer"]}, r"mixes activation tasks \(digits-cnn\) and layer tasks "
                                                    r"\(digits-cnn-layer\)"),
    ({"space": "swish", "tasks": ["layers", "all"]}, "mixes activation tasks"),
    ({"baselines": ["relu"]}, r"--baselines: .*'relu'.*bn-relu, gn-relu"),
    ({"baselines": []}, "--baselines must be a non-empty list"),
    ({"validate_tasks": ["digits-cnn"]}, r"--validate-tasks digits-cnn: activation task, but the search's tasks "
                                         r"are layer tasks"),
])
def test_a_search_of_mixed_kinds_is_refused_before_anything_is_made(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        SearchDriver(layer_config(**kw), tmp_path / "run", executor=PlanExecutor())
    assert not (tmp_path / "run").exists()


def test_the_cli_refuses_a_mixed_search_with_one_line(tmp_path):
    r = runner.invoke(app, ["search", "--space", "evonorm", "--tasks", "digits-cnn", "--budget", "2",
                            "--run-dir", str(tmp_path / "run"), "--executor", "local"])
    assert r.exit_code == 2 and "--space evonorm searches normalization-activation layers" in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ a staged layer search

@pytest.fixture(scope="module")
def staged_layer_run(tmp_path_factory):
    """A staged score-objective layer search on two layer tasks, validated at the end (top 3, 3 fresh seeds,
    default tasks: the searched two and the held-out third)."""
    tmp = tmp_path_factory.mktemp("layer")
    cfg = layer_config(validate_top=3, validate_seeds=3)
    ex = executor_for(cfg)
    summary = SearchDriver(cfg, tmp / "run", executor=ex).run()
    return {"run": tmp / "run", "summary": summary, "ex": ex, "tmp": tmp}


def test_a_layer_search_trains_the_layer_baselines_and_runs_staged(staged_layer_run):
    summary, ex = staged_layer_run["summary"], staged_layer_run["ex"]
    assert summary["evaluated"] == 15 and summary["reference"] == "bn-relu"
    assert ex.baselines_trained == {(t, b) for t in LAYER_TASKS for b in LAYER_BASELINES}
    # staged: rung 0 is the first task with 2 seeds, the last every task with 5
    assert [(len(r["tasks"]), r["seeds"]) for r in summary["rungs"]] == [(1, 2), (1, 3), (2, 5)]
    assert summary["rungs"][0]["completed"] == 15 and summary["rungs"][1]["completed"] > 0
    assert summary["rungs"][0]["trainings"] == 15 * 2
    assert max(v for (c, t, s), v in ex.ledger.items() if s < 1000) == 1  # no search pair trained twice
    with ResultStore(staged_layer_run["run"], mode="read") as store:
        assert store.config()["baselines"] == LAYER_BASELINES


def test_the_estimates_are_against_bn_relu(staged_layer_run):
    with ResultStore(staged_layer_run["run"], mode="read") as store:
        base = store.baseline_accuracies()
        rows = [r for r in store.rung_rows() if r["status"] == "done" and r["summary"]]
        assert rows
        for row in rows:
            est = row["summary"]
            assert est["reference"] == "bn-relu"
            acc = store.accuracies(row["candidate_id"])
            by_hand = []
            for i, s in enumerate(est["seeds"]):
                by_hand.append(statistics.fmean(
                    (acc[t][s] - base[t]["bn-relu"][s]) / (statistics.fmean(base[t]["bn-relu"][x] for x in est["seeds"])
                                                          - get_task(t).chance) for t in est["tasks"]))
            assert est["per_seed"] == pytest.approx(by_hand, abs=1e-12)
            assert row["score"] == pytest.approx(statistics.fmean(by_hand), abs=1e-12)
            # the paired comparisons are with the layer baselines (stored with sorted keys)
            for t in est["tasks"]:
                assert set(est["vs"][t]) == set(LAYER_BASELINES)


def test_validation_is_on_the_held_out_layer_task_against_the_best_layer_baseline(staged_layer_run):
    v = staged_layer_run["summary"]["validation"]
    ex = staged_layer_run["ex"]
    assert v["search_tasks"] == SEARCHED and v["held_out"] == ["digits-cnn-layer"] and v["note"] is None
    assert v["reference_baseline"] == "bn-relu" and v["baselines"] == LAYER_BASELINES and v["kind"] == "layer"
    assert len(v["candidates"]) == 3 and v["n_tests"] == 3 * 3 * len(LAYER_BASELINES)
    assert {s for (_, _, s) in ex.ledger if s >= 1000} == set(fresh_seeds(3))
    from statsmodels.stats.multitest import multipletests

    tests = [(c, t, b) for c in v["candidates"] for t in v["tasks"] for b in LAYER_BASELINES]
    ps = [c["tasks"][t]["vs"][b]["p"] for c, t, b in tests]
    assert [c["tasks"][t]["vs"][b]["p_holm"] for c, t, b in tests] == pytest.approx(
        list(multipletests(ps, method="holm")[1]))
    for c in v["candidates"]:
        held = c["tasks"]["digits-cnn-layer"]
        assert held["held_out"] and held["best_baseline"] == "evonorm-s0"  # the fake's best layer baseline
        assert held["vs"]["evonorm-s0"]["diff"] == pytest.approx(
            hashed_quality(c["formula"], "digits-cnn-layer") - LAYER_BASELINE_QUALITY["evonorm-s0"], abs=0.012)
        assert "held-out task" in c["verdict"]
        assert c["held_out"]["tasks"] == ["digits-cnn-layer"] and c["fresh"]["tasks"] == SEARCHED
    # bn-relu is the zero of the fresh and held-out scores; the other baselines are reference rows
    assert set(v["reference_scores"]) == set(LAYER_BASELINES)
    assert v["reference_scores"]["bn-relu"]["held_out"]["score"] == pytest.approx(0.0, abs=1e-12)


def test_top_has_the_layer_baselines_as_reference_rows_and_a_column_per_task(staged_layer_run):
    run = str(staged_layer_run["run"])
    rows = top_rows(run, 5)
    refs = {r["formula"]: r for r in rows if r["reference"]}
    assert set(refs) == set(LAYER_BASELINES)
    assert refs["bn-relu"]["score"] == pytest.approx(0.0, abs=1e-12)
    cands = [r for r in rows if not r["reference"]]
    assert len(cands) == 5 and all(r["reference_baseline"] == "bn-relu" and r["pareto"] is None for r in cands)
    assert cands[0]["ci_vs_relu"] is None and cands[0]["validation"] is not None
    assert all(set(r["task_scores"]) == set(r["tasks"]) for r in rows)
    top = [r for r in cands if r["rung"] == 2]
    assert top and all(set(r["task_scores"]) == set(SEARCHED) for r in top)
    r = runner.invoke(app, ["top", run, "--n", "5"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert "0 = BN-ReLU" in r.stdout and "mnist1d-resnet-layer" in r.stdout and "digits-mobilenet-layer" in r.stdout
    assert "evonorm-s0 (baseline)" in r.stdout
    data = json.loads(runner.invoke(app, ["top", run, "--json"]).stdout)
    assert {row["formula"] for row in data if row["reference"]} == set(LAYER_BASELINES)


def test_validate_cli_on_a_layer_run_trains_the_layer_baselines_and_refuses_activation_tasks(staged_layer_run,
                                                                                            monkeypatch):
    import actsearch.executor as executor_mod

    made = []

    def make(cfg, run_dir):
        made.append(PlanExecutor(quality=hashed_quality, task_quality=hashed_quality, config=cfg))
        return made[-1]

    monkeypatch.setattr(executor_mod, "make_executor", make)
    run = str(staged_layer_run["run"])
    for tasks, message in (("digits-cnn", "the run searched layer tasks"), ("digits-cnn,digits-cnn-layer", "mix kinds")):
        r = runner.invoke(app, ["validate", run, "--tasks", tasks, "--executor", "local"])
        assert r.exit_code == 2 and message in r.stderr and not made, r.output
    r = runner.invoke(app, ["validate", run, "--top", "2", "--seeds", "4", "--executor", "local", "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)
    assert v["held_out"] == ["digits-cnn-layer"] and v["baselines"] == LAYER_BASELINES
    assert made[0].config.baselines == LAYER_BASELINES
    # seeds 1000-1002 of the top 3 were validated at the end of the search: only 1003 is trained now
    assert {s for (_, _, s) in made[0].ledger} == {1003} and max(made[0].ledger.values()) == 1
    assert v["trainings"] == 2 * 3
    assert {b for _, b in made[0].baselines_trained} == set(LAYER_BASELINES)
    human = runner.invoke(app, ["validate", run, "--top", "2", "--seeds", "2", "--executor", "local"],
                          env={"COLUMNS": "300"})
    assert human.exit_code == 0 and "0 = BN-ReLU" in human.stdout and "held out digits-cnn-layer" in human.stdout


def test_the_report_of_a_layer_search(staged_layer_run):
    from actsearch.report import build_report

    out = staged_layer_run["tmp"] / "report.html"
    build_report(str(staged_layer_run["run"]), str(out))
    doc = out.read_text(encoding="utf-8")
    assert "improvements over BN-ReLU" in doc and "probe tensor" in doc
    assert "<th>mnist1d-resnet-layer</th><th>digits-mobilenet-layer</th>" in doc and "<th>front</th>" not in doc
    assert "digits-cnn-layer" in doc and "Validation" in doc


# ------------------------------------------------------------------------------------ per-task objectives

@pytest.fixture(scope="module")
def per_task_layer_run(tmp_path_factory):
    """--objectives tasks over every layer task (nothing left to hold out), staged, validated."""
    tmp = tmp_path_factory.mktemp("layer-tasks")
    cfg = layer_config(tasks=["layers"], objectives=["tasks"], budget=15, validate_top=2, validate_seeds=2)
    ex = executor_for(cfg)
    summary = SearchDriver(cfg, tmp / "run", executor=ex).run()
    return {"run": tmp / "run", "summary": summary, "ex": ex, "tmp": tmp}


def test_a_per_task_layer_search_validates_on_fresh_seeds_only_and_says_so(per_task_layer_run):
    summary = per_task_layer_run["summary"]
    assert all(len(r["tasks"]) == 3 for r in summary["rungs"]) and len(summary["rungs"]) == 3
    v = summary["validation"]
    assert v["held_out"] == [] and v["search_tasks"] == list(LAYER_TASKS)
    assert "no held-out task (every layer task was searched)" in v["note"] and "fresh seeds" in v["note"]
    assert all("searched task" in c["verdict"] for c in v["candidates"])
    front = summary["pareto"]
    assert front and all(set(f["task_scores"]) == set(LAYER_TASKS) for f in front)
    # the human output of `validate` says there is no held-out task
    from actsearch.cli import _print_validation, out

    with out.capture() as cap:
        _print_validation(v)
    assert "held out none" in cap.get() and "no held-out task" in cap.get()


def test_top_and_report_mark_the_pareto_front_of_the_per_task_scores(per_task_layer_run):
    from actsearch.report import build_report

    run = str(per_task_layer_run["run"])
    front = {f["id"] for f in per_task_layer_run["summary"]["pareto"]}
    rows = [r for r in top_rows(run, 100) if not r["reference"]]
    assert {r["id"] for r in rows if r["pareto"]} == front
    assert all(r["pareto"] is False for r in rows if r["id"] not in front)
    r = runner.invoke(app, ["top", run, "--n", "100"], env={"COLUMNS": "400"})
    assert r.exit_code == 0 and "Pareto front of the per-task scores" in r.stdout
    assert all(t in r.stdout for t in LAYER_TASKS)
    out = per_task_layer_run["tmp"] / "report.html"
    build_report(run, str(out))
    doc = out.read_text(encoding="utf-8")
    assert "".join(f"<th>{t}</th>" for t in LAYER_TASKS) + "<th>front</th>" in doc
    assert doc.count("<td>★</td>") == len([r for r in rows[:25] if r["pareto"]]) > 0
    assert "no held-out task" in doc


def test_a_killed_layer_search_resumes_exactly(tmp_path):
    """Killed after 3 batches (promotions in flight), resumed: the same asks, tells and updates as an
    uninterrupted run, the same ranking, and no (candidate, task, seed) trained twice."""
    kw = dict(tasks=["layers"], objectives=["tasks"], budget=12)
    SearchDriver(layer_config(**kw), tmp_path / "ref", executor=executor_for(layer_config(**kw))).run()
    ledger: Counter = Counter()
    with pytest.raises(KeyboardInterrupt):
        cfg = layer_config(**kw)
        SearchDriver(cfg, tmp_path / "run", executor=executor_for(cfg, crash_after=3, ledger=ledger)).run()
    with ResultStore(tmp_path / "run", mode="read") as store:
        assert 0 < store.n_results() < 12
    cfg = layer_config(**kw)
    SearchDriver(cfg, tmp_path / "run", resume=True, executor=executor_for(cfg, ledger=ledger)).run()
    assert max(ledger.values()) == 1
    with ResultStore(tmp_path / "ref", mode="read") as a, ResultStore(tmp_path / "run", mode="read") as b:
        assert list(a.events()) == list(b.events())
        assert [(r["id"], r["score"], r["rung"]) for r in a.ranked()] == [(r["id"], r["score"], r["rung"])
                                                                          for r in b.ranked()]
        assert a.task_front(LAYER_TASKS) == b.task_front(LAYER_TASKS)


# ------------------------------------------------------------------------------------ real training

@pytest.mark.slow
def test_a_real_layer_search_smoke(tmp_path):
    """The brief's smoke command, really trained (30 steps): per-task objectives on two layer tasks, validated
    on fresh seeds and the held-out third layer task."""
    run = tmp_path / "run"
    r = runner.invoke(app, ["search", "--space", "evonorm", "--strategy", "evolution", "--tasks",
                            "digits-cnn-layer,mnist1d-resnet-layer", "--objectives", "tasks", "--budget", "4",
                            "--steps", "30", "--seeds", "1", "--rungs", "flat", "--validate-top", "1",
                            "--validate-seeds", "2", "--executor", "local", "--run-dir", str(run), "--json"],
                      env={"ACTSEARCH_CACHE_DIR": str(tmp_path / "cache")})
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["evaluated"] == 4 and summary["reference"] == "bn-relu"
    v = summary["validation"]
    assert v["held_out"] == ["digits-mobilenet-layer"] and len(v["candidates"]) == 1
    with ResultStore(run, mode="read") as store:
        assert store.n_results() == 4
        scored = [r for r in store.ranked() if r["score"] is not None]
        assert scored and all(r["estimate"]["reference"] == "bn-relu" for r in scored)
        assert set(store.baseline_accuracies()) == {"digits-cnn-layer", "mnist1d-resnet-layer",
                                                    "digits-mobilenet-layer"}
