"""Issue 18 item 3: the trained values of learnable activation parameters are kept in the evaluation
report (per task, seed and layer) and `actsearch export RUN_DIR:ID --params trained|initial` exports them."""
import json
import statistics
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.evaluation import evaluate, versions
from actsearch.export import export_candidate, trained_param_values
from actsearch.formula import parse_formula
from actsearch.population import Member, PopActivation, PopulationContext, make_activation

from test_export import BLOCK_ACTSEARCH

runner = CliRunner()
TASK, STEPS, SEEDS = "mnist1d-mlp", 40, [0, 1]

# Loads an exported file in a fresh interpreter in which `import actsearch` fails (tests/test_export.py's
# preamble) and prints its module's parameters and its output on a probe vector.
LOADER = BLOCK_ACTSEARCH + textwrap.dedent('''
    import torch
    ns = runpy.run_path(sys.argv[1])
    m = ns[sys.argv[2]]().double()
    x = torch.tensor(json.loads(sys.argv[3]), dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
    print(json.dumps({"y": y.tolist(), "params": {n: p.item() for n, p in m.named_parameters()}}))
''')


def run_exported(tmp_path, source, cls, probe):
    path, script = tmp_path / f"{cls}.py", tmp_path / "load.py"
    path.write_text(source)
    script.write_text(LOADER)
    r = subprocess.run([sys.executable, str(script), str(path), cls, json.dumps(probe)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def pop_activation(candidate, value: float, probe) -> list:
    """The trained network's activation: a member's PopActivation with its parameter at `value`."""
    act = PopActivation(PopulationContext([Member(make_activation(candidate), 0)]))
    with torch.no_grad():
        act.run_params[0][0].fill_(value)
        return act(torch.tensor(probe, dtype=torch.float32).unsqueeze(0))[0].double().tolist()


@pytest.fixture(scope="module")
def trained():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    report = evaluate(c, tasks=TASK, seeds=SEEDS, baselines=["relu"], steps=STEPS, cache=False)
    return c, report


def test_report_keeps_trained_values_per_seed_and_layer(trained):
    c, report = trained
    t = report["tasks"][TASK]
    assert set(t["params"]) == {"0", "1"}  # JSON-ready seed keys
    for seed, ps in t["params"].items():
        assert list(ps) == ["beta"] and len(ps["beta"]) == 2  # mnist1d-mlp: two hidden layers
        assert all(isinstance(v, float) and abs(v - 1.0) > 1e-4 for v in ps["beta"]), ps  # they moved
    assert t["params"]["0"] != t["params"]["1"]
    assert "params" not in json.dumps(t["baselines"])  # baselines have none
    json.loads(json.dumps(report))  # stored as it is


def test_trained_param_values_is_the_median_over_seeds_and_layers(trained):
    c, report = trained
    values, what = trained_param_values(report)
    pooled = [v for s in report["tasks"][TASK]["params"].values() for v in s["beta"]]
    assert values == {"beta": statistics.median(pooled)}
    assert what == f"median over task {TASK}, seeds 0, 1; 2 layers each"
    with pytest.raises(ValueError, match="not evaluated on it"):
        trained_param_values(report, task="digits-cnn")
    with pytest.raises(ValueError, match="no trained parameters"):
        trained_param_values({"tasks": {TASK: {"candidate": {}}}})


def make_run(tmp_path, c, report):
    from actsearch.store import ResultStore

    run = tmp_path / "run"
    with ResultStore(run) as store:
        store.set_config({"space": "test", "strategy": "random", "tasks": [TASK], "seeds": len(SEEDS)}, versions())
        store.record_candidate({"id": c.id, "formula": c.formula, "canonical": c.formula, "params": dict(c.params),
                                "genome": [0], "screening_passed": True})
        store.record_result(c.id, report["score"], report)
    return run


def test_export_of_a_run_writes_trained_or_initial_values(trained, tmp_path):
    c, report = trained
    run = make_run(tmp_path, c, report)
    probe = torch.linspace(-5, 5, 41).tolist()
    median = trained_param_values(report)[0]["beta"]

    r = runner.invoke(app, ["export", f"{run}:{c.id}", "--params", "trained", "--name", "Trained", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["params"]["from"] == "trained" and out["params"]["values"] == {"beta": median}
    src = out["source"]
    doc = src.split('"""')[1]
    assert "TRAINED values beta=" in doc and f"median over task {TASK}, seeds 0, 1; 2 layers each" in doc
    assert "initial parameters: beta=1.0" in doc
    got = run_exported(tmp_path, src, "Trained", probe)
    assert got["params"] == {"beta": pytest.approx(median, rel=1e-12)}
    torch.testing.assert_close(torch.tensor(got["y"]), torch.tensor(pop_activation(c, median, probe)),
                               rtol=1e-5, atol=1e-6)

    # the default for a run's candidate with recorded values is trained; --task picks the task explicitly
    r = runner.invoke(app, ["export", f"{run}:{c.id}", "--task", TASK, "--name", "Trained"])
    assert r.exit_code == 0 and r.stdout == src

    r = runner.invoke(app, ["export", f"{run}:{c.id}", "--params", "initial", "--name", "Initial"])
    assert r.exit_code == 0, r.output
    assert "the INITIAL values beta=1.0" in r.stdout.split('"""')[1]
    got = run_exported(tmp_path, r.stdout, "Initial", probe)
    assert got["params"] == {"beta": 1.0}
    torch.testing.assert_close(torch.tensor(got["y"]), torch.tensor(pop_activation(c, 1.0, probe)),
                               rtol=1e-5, atol=1e-6)

    for args, fragment in [(["--task", "digits-cnn"], "not evaluated on it"),
                           (["--params", "learned"], "unknown --params"),
                           (["--params", "initial", "--task", TASK], "does not go with")]:
        r = runner.invoke(app, ["export", f"{run}:{c.id}", *args])
        assert r.exit_code == 2 and fragment in r.stderr, (args, r.stderr)
    r = runner.invoke(app, ["export", "x*sigmoid(beta*x)", "-p", "beta=1", "--params", "trained"])
    assert r.exit_code == 2 and "RUN_DIR:ID" in r.stderr


def test_top_and_report_show_what_the_parameters_learned(trained, tmp_path):
    """`top` (text and JSON) and `report` show initial -> median trained value with quartiles; the report
    plots the learned shape beside the initial one."""
    import numpy as np

    from actsearch.cli import top_rows
    from actsearch.learned import learned_params
    from actsearch.report import build_report

    c, report = trained
    run = make_run(tmp_path, c, report)
    pooled = [v for s in report["tasks"][TASK]["params"].values() for v in s["beta"]]
    (lp,) = learned_params(report, c.params)
    assert lp.name == "beta" and lp.initial == 1.0 and lp.n == 4 and lp.task == TASK
    assert lp.median == statistics.median(pooled)
    assert (lp.q25, lp.q75) == pytest.approx(tuple(np.quantile(pooled, [0.25, 0.75])))
    assert lp.median == trained_param_values(report)[0]["beta"]   # what export writes
    (row,) = [r for r in top_rows(str(run), 5) if not r["reference"]]
    assert row["learned"] == [lp.to_dict()]
    r = runner.invoke(app, ["top", str(run)], env={"COLUMNS": "300"})
    assert r.exit_code == 0 and "learned" in r.stdout and f"beta 1 -> {lp.median:.3g}" in r.stdout
    r = runner.invoke(app, ["top", str(run), "--json"])
    assert [x for x in json.loads(r.stdout) if not x["reference"]][0]["learned"][0]["median"] == lp.median
    out = tmp_path / "report.html"
    build_report(str(run), str(out))
    doc = out.read_text(encoding="utf-8")
    assert "<th>learned</th>" in doc and f"beta 1 -&gt; {lp.median:.3g}" in doc
    assert "the shape with the learned parameter values" in doc
    assert learned_params({"tasks": {TASK: {}}}, c.params) == []   # nothing trained: nothing shown


def test_a_run_without_recorded_values_exports_initial_ones_and_says_so(tmp_path):
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.5})
    report = {"score": 0.0, "seeds": [0], "tasks": {TASK: {"seeds": [0], "candidate": {"mean": 0.5, "std": 0.0, "per_seed": [0.5]},
                                                           "rejected": None}}}
    run = make_run(tmp_path, c, report)
    r = runner.invoke(app, ["export", f"{run}:{c.id}"])
    assert r.exit_code == 0, r.output
    assert "INITIAL values beta=1.5" in r.stdout and "no trained values recorded" in r.stdout
    r = runner.invoke(app, ["export", f"{run}:{c.id}", "--params", "trained"])
    assert r.exit_code == 2 and "no trained parameter values" in r.stderr


def test_exported_values_do_not_change_the_candidate_id():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    src = export_candidate(c, "torch", name="A", values={"beta": 1.25}, params_from="median over task t")
    assert c.id in src and "beta=1.25" in src and "TRAINED values beta=1.25" in src


def test_layer_task_keeps_per_channel_summaries():
    from actsearch.tasks import get_task
    from actsearch.training import train_population

    task = get_task("digits-cnn-layer")
    c = parse_formula("x*sigmoid(v*x)/group_std(x)", params={"v": 1.0})
    bn, s0 = train_population(task, [Member(task.make_unit("bn-relu"), 0), Member(task.make_unit(c), 0)], steps=8)
    assert bn.params == {}
    layers = s0.params["v"]
    assert len(layers) >= 2 and all(set(e) == {"mean", "std", "min", "q25", "median", "q75", "max"} for e in layers)
    assert all(e["min"] <= e["q25"] <= e["median"] <= e["q75"] <= e["max"] and e["std"] > 0 for e in layers)
    values, what = trained_param_values({"tasks": {task.name: {"params": {"0": s0.params}}}})
    assert values["v"] == statistics.median(e["median"] for e in layers) and "seed 0;" in what
