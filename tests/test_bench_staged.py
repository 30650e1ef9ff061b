"""Smoke test of benchmarks/bench_staged.py (staged vs flat search at equal compute): one search seed,
tiny budgets, 20 training steps, local executor.  About a minute on 2 CPUs, so marked slow
(`make test-all` or `pytest -m slow tests/test_bench_staged.py`)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_staged.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_staged", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.slow
def test_bench_staged_smoke(tmp_path):
    bench = _load()
    out = tmp_path / "out.json"
    argv = ["--search-seeds", "0", "--budget", "6", "--steps", "20", "--tasks", "digits-cnn",
            "--validate-seeds", "2", "--validate-tasks", "digits-cnn,mnist1d-mlp", "--executor", "local",
            "--run-root", str(tmp_path / "runs"), "--out", str(out)]
    result = bench.main(argv)
    data = json.loads(out.read_text())
    assert data["per_seed"][0]["search_seed"] == 0
    seed = data["per_seed"][0]
    arms = seed["arms"]
    assert {"staged", "flat (LCB)"} <= set(arms) <= set(bench.ARMS)
    mean_arm = arms.get("flat (mean, old ranking)")
    if mean_arm is not None and mean_arm["same_as"]:  # the old ranking picked the LCB's candidate
        assert mean_arm["candidate"]["id"] == arms["flat (LCB)"]["candidate"]["id"]
    for name, arm in arms.items():
        for key in ("search_score", "fresh", "held_out", "gap", "search_wall_s", "validation_wall_s"):
            assert _finite(arm[key]), (name, key, arm[key])
        assert arm["compute"]["steps"] > 0 and arm["compute"]["steps"] == 20 * arm["compute"]["trainings"]
        assert arm["held_out_ci"] is not None and all(_finite(v) for v in arm["held_out_ci"])
        assert arm["verdict"]
    c = seed["compute"]
    assert 0.8 <= c["ratio"] <= 1.25
    assert c["staged_steps"] == arms["staged"]["compute"]["steps"]
    assert c["flat_steps"] == arms["flat (LCB)"]["compute"]["steps"]
    # the staged search promoted something (6 rung-0 candidates, eta 3): more than rung 0 was trained
    assert set(arms["staged"]["compute"]["trainings_per_rung"]) >= {"0", "1"}
    for arm in bench.ARMS:
        if arm in arms:
            assert _finite(data["summary"][arm]["median_held_out"])
    assert result["summary"] == data["summary"]
    # resumable: a second run finds both searches finished and the validations recorded
    again = bench.main(argv)
    assert again["per_seed"][0]["compute"] == c
    for name in arms:
        assert again["per_seed"][0]["arms"][name]["held_out"] == arms[name]["held_out"]
