"""actsearch.tuning / `actsearch tune`: Optuna tunes initial parameter values; the default is trial 0; the
best is compared with the default on fresh seeds; a stored study resumes without training a trial twice."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import actsearch.evaluation as evaluation
from actsearch.cli import app
from actsearch.formula import parse_formula
from actsearch.tuning import default_ranges, tune_initial_params

runner = CliRunner()


def fake_evaluate_many(log):
    """Accuracy peaks at beta = 2 (a smooth bump); seeds add a small paired offset; beta > 6 diverges."""
    def run(cands, tasks, seeds, baselines=None, steps=None, screen=True, cache=None, progress=None):
        out = []
        for c in cands:
            beta = c.params["beta"]
            log.append((c.id, tuple(seeds)))
            per_task = {}
            for t in tasks:
                acc = [0.6 + 0.2 * math.exp(-(math.log(beta / 2.0)) ** 2) + 0.001 * s for s in seeds]
                per_task[t] = {"candidate": {"mean": sum(acc) / len(acc), "per_seed": acc},
                               "score": sum(acc) / len(acc) - 0.7, "rejected": "diverged" if beta > 6 else None}
            out.append({"candidate": {"id": c.id}, "tasks": per_task,
                        "score": sum(p["score"] for p in per_task.values()) / len(per_task)})
        return out
    return run


@pytest.fixture
def fake(monkeypatch):
    log: list = []
    monkeypatch.setattr(evaluation, "evaluate_many", fake_evaluate_many(log))
    return log


def test_tpe_moves_the_start_towards_the_optimum_and_checks_it_on_fresh_seeds(fake):
    r = tune_initial_params("x*sigmoid(beta*x)", "mnist1d-mlp", params={"beta": 1.0}, trials=24, batch=4, seeds=2, seed=1,
                            validate_seeds=3)
    assert r.trials[0].default and r.trials[0].params == {"beta": 1.0}
    assert len(r.trials) == 24 and len(fake) == 24 + 2   # 24 trials, then best and default on fresh seeds
    assert abs(math.log(r.best_params["beta"] / 2.0)) < 0.25   # near the peak at 2
    assert r.best_score > r.default_score
    (v,) = r.validation
    assert v.seeds == [1000, 1001, 1002]   # validation's fresh seeds (actsearch.validation.fresh_seeds)
    assert all(seeds == (0, 1) for _, seeds in fake[:24])       # tuning never saw the fresh seeds
    assert v.diff > 0 and v.verdict == "better" and v.ci[0] > 0
    assert 0.25 <= min(t.params["beta"] for t in r.trials) and max(t.params["beta"] for t in r.trials) <= 4.0
    json.dumps(r.to_dict())


def test_rejected_trials_fail_and_the_default_can_win(fake):
    r = tune_initial_params("x*sigmoid(beta*x)", "mnist1d-mlp", params={"beta": 1.0}, trials=6, batch=3, seeds=2,
                            ranges={"beta": (6.5, 9.0)}, sampler="random", validate_seeds=2)
    rejected = [t for t in r.trials if t.score is None]
    assert len(rejected) == 5 and all(t.rejected == "diverged" for t in rejected)
    assert r.best_params == {"beta": 1.0}        # only the default trained
    assert r.validation[0].verdict == "the default is best"


def test_a_stored_study_resumes_without_training_a_trial_twice(fake, tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    tune_initial_params("x*sigmoid(beta*x)", "mnist1d-mlp", params={"beta": 1.0}, trials=4, batch=2, seeds=1, storage=url,
                        validate_seeds=0)
    assert len(fake) == 4
    r = tune_initial_params("x*sigmoid(beta*x)", "mnist1d-mlp", params={"beta": 1.0}, trials=8, batch=2, seeds=1, storage=url,
                            validate_seeds=0)
    assert len(fake) == 8 and len(r.trials) == 8          # 4 more, not 8 more
    assert len({cid for cid, _ in fake}) == 8
    import optuna

    study = optuna.load_study(study_name="actsearch-tune", storage=url)
    assert len(study.trials) == 8 and study.user_attrs["formula"] == "x*sigmoid(beta*x)"
    assert all("initial_params" in t.user_attrs for t in study.trials)


def test_ranges_keep_the_sign_and_refuse_nonsense():
    assert default_ranges({"a": 2.0, "b": -1.0, "c": 0.0}) == {"a": (0.5, 8.0), "b": (-4.0, -0.25), "c": (-1.0, 1.0)}
    c = parse_formula("x*(lam*exp(-kappa*x) + 1)**(-1/lam)", params={"kappa": 1.0, "lam": 1.0})
    with pytest.raises(ValueError, match="keep its default's sign"):
        tune_initial_params(c, ranges={"lam": (-1.0, 2.0)})
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        tune_initial_params(c, ranges={"nope": (0.1, 2.0)})
    with pytest.raises(ValueError, match="no learnable parameters"):
        tune_initial_params("relu(x)")
    with pytest.raises(ValueError, match="unknown sampler"):
        tune_initial_params(c, sampler="annealing")


def test_cli_refuses_bad_input_before_training():
    for args, msg in ((["relu(x)"], "no learnable parameters"),
                      (["x*sigmoid(beta*x)", "-p", "beta=1", "--range", "beta=2"], "NAME=LOW:HIGH"),
                      (["x*sigmoid(beta*x)", "-p", "beta=1", "--sampler", "nope"], "unknown --sampler"),
                      (["x*sigmoid(beta*x)", "-p", "beta=1", "--trials", "0"], "--trials must be >= 1")):
        r = runner.invoke(app, ["tune", *args])
        assert r.exit_code == 2 and msg in r.stderr, (args, r.stderr)


def test_cli_tune_really_trains(tmp_path):
    """Real training, tiny: 2 trials of 20 steps on one seed, the best checked on 2 fresh seeds."""
    r = runner.invoke(app, ["tune", "x*sigmoid(beta*x)", "-p", "beta=1", "--tasks", "mnist1d-mlp", "--trials", "2",
                            "--batch", "2", "--seeds", "1", "--steps", "20", "--validate-seeds", "2", "--json"],
                      env={"ACTSEARCH_CACHE_DIR": str(tmp_path / "cache")})
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert len(d["trials"]) == 2 and d["trials"][0]["default"] and d["trials"][0]["params"] == {"beta": 1.0}
    assert all(t["score"] is not None and math.isfinite(t["score"]) for t in d["trials"])
    assert d["best_score"] >= d["default_score"]
    v = d["validation"][0]
    assert v["task"] == "mnist1d-mlp" and v["seeds"] == [1000, 1001]
