"""evaluate(): paired multi-seed comparison against baselines, the score, the baseline cache, `actsearch eval`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.evaluation import BaselineCache, evaluate, paired_comparison, summarize, task_score
from actsearch.formula import parse_formula
from actsearch.tasks import TASKS, get_task

runner = CliRunner()
TASK = "digits-cnn"
STEPS = 80  # past digits-cnn's check step (60), so the chance check runs
assert get_task(TASK).budget.check_step < STEPS


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ------------------------------------------------------------------------------------------ statistics

@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_paired_comparison_matches_scipy_ttest_rel(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        b = rng.uniform(0.5, 0.9, n)
        a = b + rng.normal(rng.uniform(-0.05, 0.05), 0.02, n)
        r = paired_comparison(a.tolist(), b.tolist())
        assert r["n"] == n
        assert r["diff"] == pytest.approx(float(np.mean(a - b)), abs=1e-12)
        ci = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert r["ci"][0] == pytest.approx(float(ci.low), abs=1e-9)
        assert r["ci"][1] == pytest.approx(float(ci.high), abs=1e-9)
        expected = "better" if ci.low > 0 else "worse" if ci.high < 0 else "indistinguishable"
        assert r["verdict"] == expected
    # another confidence level
    r = paired_comparison(a.tolist(), b.tolist(), confidence=0.8)
    ci = stats.ttest_rel(a, b).confidence_interval(0.8)
    assert r["ci"] == pytest.approx([float(ci.low), float(ci.high)], abs=1e-9)


def test_paired_comparison_verdicts():
    base = [0.80, 0.82, 0.79, 0.81]
    better = paired_comparison([b + d for b, d in zip(base, [0.05, 0.06, 0.05, 0.055])], base)
    assert better["verdict"] == "better" and better["ci"][0] > 0
    worse = paired_comparison([b - d for b, d in zip(base, [0.05, 0.06, 0.05, 0.055])], base)
    assert worse["verdict"] == "worse" and worse["ci"][1] < 0
    mixed = paired_comparison([b + d for b, d in zip(base, [0.03, -0.02, 0.01, -0.025])], base)
    assert mixed["verdict"] == "indistinguishable" and mixed["ci"][0] < 0 < mixed["ci"][1]
    # pairing: a large shift between seeds cancels, a small consistent gain is detected
    spread_base = [0.5, 0.7, 0.9]
    assert paired_comparison([v + 0.01 + e for v, e in zip(spread_base, [0.001, -0.001, 0.0])],
                             spread_base)["verdict"] == "better"


def test_paired_comparison_one_seed_is_never_conclusive():
    r = paired_comparison([0.9], [0.1])
    assert r["n"] == 1 and r["diff"] == pytest.approx(0.8)
    assert r["ci"] is None and r["verdict"] == "indistinguishable"  # no interval (issue 22: was [-inf, inf])


def test_task_score():
    assert task_score(0.9, 0.9, 0.1) == 0.0
    assert task_score(0.1, 0.9, 0.1) == pytest.approx(-1.0)
    assert task_score(0.98, 0.9, 0.1) == pytest.approx(0.1)
    assert task_score(0.5, 0.05, 0.1) == 0.0  # ReLU at or below chance: no margin to measure against


def test_summarize():
    s = summarize([0.5, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert s["per_seed"] == [0.5, 0.7]
    assert summarize([0.3]) == {"mean": 0.3, "std": 0.0, "per_seed": [0.3]}


# ------------------------------------------------------------------------------------------ evaluate

DOCUMENTED_TASK_KEYS = {"metric", "chance", "steps", "candidate", "baselines", "vs", "rejected", "score", "wall_s",
                        "candidate_wall_s", "saved_s", "steps_trained", "baselines_cached"}


def check_report_shape(r: dict, tasks, baselines, seeds):
    assert {"candidate", "seeds", "baselines", "versions", "settings", "screening", "tasks", "score"} <= set(r)
    assert {"formula", "canonical", "id", "params"} <= set(r["candidate"])
    assert r["seeds"] == list(range(seeds)) and r["baselines"] == baselines
    assert list(r["tasks"]) == tasks
    for name in tasks:
        t = r["tasks"][name]
        assert DOCUMENTED_TASK_KEYS <= set(t)
        assert t["metric"] == "accuracy" and t["chance"] == TASKS[name].chance
        assert set(t["baselines"]) == set(baselines) | {"relu"}
        assert "relu" in t["vs"] and set(t["vs"]) == set(baselines) | {"relu"}
        for v in t["vs"].values():
            assert {"diff", "ci", "verdict", "n"} <= set(v) and v["n"] == seeds
        for s in [t["candidate"], *t["baselines"].values()]:
            assert len(s["per_seed"]) == seeds and s["mean"] == pytest.approx(sum(s["per_seed"]) / seeds)
    assert r["score"] == pytest.approx(sum(t["score"] for t in r["tasks"].values()) / len(tasks))


@pytest.fixture(scope="module")
def swish_runs(tmp_path_factory):
    """x*sigmoid(x) on digits-cnn, 2 seeds, twice with one baseline cache."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cache = BaselineCache(tmp_path_factory.mktemp("cache"))
    c = parse_formula("x*sigmoid(x)")
    first = evaluate(c, TASK, seeds=2, steps=STEPS, cache=cache)
    second = evaluate(c, TASK, seeds=2, steps=STEPS, cache=cache)
    torch.set_num_threads(before)
    return first, second, cache


def test_evaluate_report(swish_runs):
    r, _, _ = swish_runs
    check_report_shape(r, [TASK], ["relu", "gelu", "silu"], 2)
    assert r["candidate"]["formula"] == "x*sigmoid(x)" and r["candidate"]["canonical"] == "x*sigmoid(x)"
    assert r["candidate"]["params"] == {} and r["candidate"]["id"].startswith("act_")
    assert r["screening"] == {"passed": True, "reasons": []}
    t = r["tasks"][TASK]
    assert t["steps"] == STEPS and t["steps_trained"] == [STEPS, STEPS] and t["rejected"] is None
    assert t["baselines_cached"] == 0 and t["saved_s"] == 0 and t["candidate_wall_s"] > 0
    assert all(0.5 < a < 1 for a in t["candidate"]["per_seed"])  # it learned something in 80 steps
    relu = t["baselines"]["relu"]["mean"]
    assert t["score"] == pytest.approx((t["candidate"]["mean"] - relu) / (relu - t["chance"]))
    assert r["score"] == t["score"]
    vs = t["vs"]["relu"]
    diffs = [a - b for a, b in zip(t["candidate"]["per_seed"], t["baselines"]["relu"]["per_seed"])]
    assert vs["diff"] == pytest.approx(sum(diffs) / 2)
    json.dumps(r)  # the report is JSON-serialisable as is


def test_swish_formula_trains_like_the_builtin_silu(swish_runs):
    """Same seeds -> same initial weights and data order; the fused kernel computes F.silu."""
    t = swish_runs[0]["tasks"][TASK]
    assert t["candidate"]["per_seed"] == pytest.approx(t["baselines"]["silu"]["per_seed"], abs=1e-6)
    assert t["vs"]["silu"]["diff"] == pytest.approx(0.0, abs=1e-6)
    assert t["vs"]["silu"]["verdict"] == "indistinguishable"
    # ...while the baselines themselves differ from one another
    assert t["baselines"]["relu"]["per_seed"] != t["baselines"]["silu"]["per_seed"]


def test_second_evaluate_reuses_cached_baselines(swish_runs):
    first, second, cache = swish_runs
    t1, t2 = first["tasks"][TASK], second["tasks"][TASK]
    assert t2["baselines_cached"] == 3 * 2  # relu, gelu, silu x 2 seeds: none trained again
    assert t2["baselines"] == t1["baselines"]
    assert t2["candidate"] == t1["candidate"]  # the candidate trained alone equals it trained in the population
    assert {k: v for k, v in t2["vs"].items()} == t1["vs"] and t2["score"] == t1["score"]
    assert len(list(cache.dir.glob("digits-cnn-*.json"))) == 6
    # a cache entry is keyed by steps too
    assert cache.get(get_task(TASK), "relu", 0, STEPS) is not None
    assert cache.get(get_task(TASK), "relu", 0, STEPS + 1) is None


def test_corrupt_cache_entry_is_retrained(tmp_path):
    cache = BaselineCache(tmp_path)
    c = parse_formula("tanh(x)*x")
    r1 = evaluate(c, TASK, seeds=1, baselines=["relu"], steps=20, cache=cache)
    (path,) = cache.dir.glob("*.json")
    path.write_text("{not json")
    r2 = evaluate(c, TASK, seeds=1, baselines=["relu"], steps=20, cache=cache)
    assert r2["tasks"][TASK]["baselines_cached"] == 0
    assert r2["tasks"][TASK]["baselines"] == r1["tasks"][TASK]["baselines"]
    assert json.loads(path.read_text())["seed"] == 0


@pytest.fixture(scope="module")
def relu_cache(tmp_path_factory):
    return BaselineCache(tmp_path_factory.mktemp("relu-cache"))


@pytest.mark.parametrize("formula, code", [("0*x+1", "constant"), ("exp(exp(x))", "non_finite")])
def test_candidates_failing_screening_are_not_trained_and_score_chance(formula, code, relu_cache):
    r = evaluate(parse_formula(formula), TASK, seeds=2, baselines=["relu"], steps=STEPS, cache=relu_cache)
    assert r["screening"]["passed"] is False and code in r["screening"]["reasons"][0]
    check_report_shape(r, [TASK], ["relu"], 2)
    t = r["tasks"][TASK]
    assert t["rejected"].startswith("screening:") and code in t["rejected"]
    assert t["steps_trained"] == [0, 0] and t["candidate_wall_s"] == 0
    assert t["candidate"]["per_seed"] == [t["chance"]] * 2
    assert t["score"] == pytest.approx(-1.0) and r["score"] == pytest.approx(-1.0)
    assert t["vs"]["relu"]["verdict"] in ("worse", "indistinguishable") and t["vs"]["relu"]["diff"] < -0.3
    assert t["baselines"]["relu"]["mean"] > 0.5  # the baselines were still trained


def test_unscreened_nonfinite_candidate_is_rejected_while_training(relu_cache):
    r = evaluate(parse_formula("exp(exp(x))"), TASK, seeds=2, baselines=["relu"], steps=STEPS, screen=False,
                 cache=relu_cache)
    assert r["screening"] is None
    t = r["tasks"][TASK]
    assert t["rejected"].startswith("seed 0: ") and "non-finite" in t["rejected"]
    assert all(0 < s < STEPS for s in t["steps_trained"])
    assert t["saved_s"] > 0 and t["score"] == pytest.approx(-1.0)


def test_evaluate_without_cache_is_reproducible():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.5})
    runs = [evaluate(c, TASK, seeds=2, baselines=["relu"], steps=40, cache=False) for _ in range(2)]
    timing = {"wall_s", "candidate_wall_s", "saved_s"}
    strip = lambda r: {k: v for k, v in r["tasks"][TASK].items() if k not in timing}  # noqa: E731
    assert strip(runs[0]) == strip(runs[1]) and runs[0]["score"] == runs[1]["score"]
    assert runs[0]["candidate"]["params"] == {"beta": 1.5}
    assert runs[0]["tasks"][TASK]["baselines_cached"] == 0 == runs[1]["tasks"][TASK]["baselines_cached"]
    assert runs[0]["tasks"][TASK]["candidate"]["per_seed"] != runs[0]["tasks"][TASK]["baselines"]["relu"]["per_seed"]


def test_evaluate_rejects_bad_arguments_before_training():
    c = parse_formula("x*sigmoid(x)")
    with pytest.raises(ValueError, match="seeds"):
        evaluate(c, TASK, seeds=0, cache=False)
    with pytest.raises(ValueError, match="unknown built-in activation 'bogus'"):
        evaluate(c, TASK, baselines=["relu", "bogus"], cache=False)
    with pytest.raises(ValueError, match="valid tasks"):
        evaluate(c, "bogus", cache=False)
    with pytest.raises(ValueError, match="normalization"):
        evaluate(parse_formula("x - layer_mean(x)"), TASK, screen=False, cache=False)


# ------------------------------------------------------------------------------------------ CLI

def test_cli_eval_json(tmp_path):
    r = runner.invoke(app, ["eval", "x*sigmoid(x)", "--task", TASK, "--seeds", "2", "--steps", str(STEPS),
                            "--baselines", "relu,silu", "--threads", "1", "--json"],
                      env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    check_report_shape(d, [TASK], ["relu", "silu"], 2)
    assert d["candidate"]["canonical"] == "x*sigmoid(x)" and d["settings"]["threads"] == 1
    t = d["tasks"][TASK]
    assert t["steps"] == STEPS and t["candidate"]["per_seed"] == pytest.approx(t["baselines"]["silu"]["per_seed"],
                                                                             abs=1e-6)
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 4  # the cache went to ACTSEARCH_CACHE_DIR


def test_cli_eval_human_output(tmp_path):
    r = runner.invoke(app, ["eval", "exp(exp(x))", "--task", TASK, "--seeds", "1", "--steps", "10",
                            "--baselines", "relu", "--threads", "1"], env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert "rejected by screening" in r.stdout and "multi-task score -1.000" in r.stdout


@pytest.mark.parametrize("args, fragments", [
    (["x", "--task", "bogus"], ["unknown task 'bogus'", *TASKS]),
    (["x", "--tasks", "digits-cnn,bogus"], ["unknown task 'bogus'"]),
    (["exp(x) + foo(x)"], ["bad formula", "unknown function 'foo'"]),
    (["x*sigmoid(x)", "--baselines", "relu,bogus"], ["unknown built-in activation 'bogus'"]),
    (["x*sigmoid(x)", "--seeds", "0"], ["--seeds must be >= 1"]),
    (["x*sigmoid(x)", "--steps", "0"], ["--steps must be >= 1"]),
    (["x - layer_mean(x)"], ["normalization"]),
])
def test_cli_eval_bad_input_exits_2_before_training(args, fragments, tmp_path):
    r = runner.invoke(app, ["eval", *args, "--threads", "1"], env={"ACTSEARCH_CACHE_DIR": str(tmp_path)})
    assert r.exit_code == 2, r.output
    for f in fragments:
        assert f in r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "baselines").exists()


def test_evaluate_zero_steps_is_refused():
    with pytest.raises(ValueError):
        evaluate(parse_formula("exp(exp(x))"), TASK, seeds=1, baselines=["relu"], steps=0, cache=False)
