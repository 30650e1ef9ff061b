"""Issue 22: bad arguments give one clear `error:` line and exit status 2 - never a traceback, a hang,
silent loss or invalid JSON.  One regression test per item, and a test that runs every command of the
typer app (listed from the app, so a new command is covered, or must be added to BAD_ARGS) with bad
arguments through the real entry point."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from actsearch import cli
from actsearch.cli import app
from actsearch.evaluation import paired_comparison
from actsearch.search import SearchConfig

runner = CliRunner()
ACTSEARCH = [sys.executable, "-m", "actsearch.cli"]


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (which Python's json accepts by default)."""
    return json.loads(text, parse_constant=_refuse_constant)


def run_cli(*args, timeout=60, env=None, cwd=None):
    return subprocess.run([*ACTSEARCH, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def assert_one_clean_error(r, fragment=None):
    """Exit 2, exactly one `error:` line on stderr, no traceback, nothing (or strict JSON) on stdout."""
    output = r.stdout + r.stderr
    assert r.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert sum(ln.startswith("error:") for ln in lines) == 1, output
    if fragment is not None:
        assert fragment in r.stderr, output
    if r.stdout.strip():
        strict_json(r.stdout)


def command_paths(group=None, prefix=()):
    """Every leaf command of the app, e.g. ('check',), ('bench', 'train')."""
    import click  # noqa: F401 - typer's command objects quack like click's

    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from command_paths(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


# bad arguments that each command must refuse before any training, compiling or search starts
BAD_ARGS = {
    "check": [["x+"], ["x", "--nearest", "0"]],
    "known": [["--family", "nope"]],
    "primitives": [["extra-argument"]],
    "families": [["extra-argument"]],
    "study": [["no-such-run"]],
    "tune": [["relu(x)"], ["x*sigmoid(beta*x)", "-p", "beta=1", "--sampler", "nope"],
             ["x*sigmoid(beta*x)", "-p", "beta=1", "--trials", "0"], ["x*sigmoid(beta*x)", "-p", "beta=1", "--range", "beta=2"],
             ["x*sigmoid(beta*x)", "-p", "beta=1", "--range", "beta=-1:2"], ["x*sigmoid(beta*x)", "-p", "beta=1", "--tasks", "nope"]],
    "export": [["x+"], ["x", "--format", "nope"], ["/nonexistent-run:act_0123456789abcdef"]],
    "tasks": [["extra-argument"]],
    "eval": [["x+"], ["x", "--seeds", "0"], ["x", "--tasks", ""], ["x", "--steps", "-1"]],
    "baselines": [["--seeds", "0"], ["--tasks", ""], ["--steps", "0"], ["--tasks", "bogus"],
                  ["--tasks", "layers", "--baselines", "relu"]],
    "search": [["--workers", "-1"], ["--timeout", "-1"], ["--tasks", ""], ["--budget", "0"], ["--rungs", "1:3,1:2"],
               ["--eta", "1"], ["--validate-top", "-1"], ["--validate-seeds", "1"], ["--validate-tasks", " "],
               ["--rungs", "2:2", "--tasks", "digits-cnn"], ["--validate-select", "median"],
               ["--validate-select", "worst-task", "--tasks", "digits-cnn"]],
    "top": [["/nonexistent-run"], ["/nonexistent-run", "--n", "0"]],
    "validate": [["/nonexistent-run"], ["/nonexistent-run", "--top", "0"], ["/nonexistent-run", "--seeds", "1"],
                 ["/nonexistent-run", "--tasks", "nope"], ["/nonexistent-run", "--executor", "gpu"],
                 ["/nonexistent-run", "--select", "median"]],
    "report": [["/nonexistent-run"], ["/nonexistent-run", "-o", "/proc/nope/r.html"]],
    "bench formula": [["--n", "0"]],
    "bench kernels": [["--numel", "1"]],
    "bench train": [["--population", "0"]],
    "bench space": [["--seeds", "1", "--out", "o"], ["--limit", "0", "--out", "o"], ["--tasks", " ", "--out", "o"],
                    ["--executor", "gpu", "--out", "o"], ["--space", "tree", "--out", "o"]],
    "drill": [["--n", "0"], ["--spaces", "nope"], ["--compiled-sample", "-1"]],
}


def test_every_command_has_bad_argument_cases():
    paths = {" ".join(p) for p in command_paths()}
    assert paths == set(BAD_ARGS), f"add bad-argument cases for {sorted(paths - set(BAD_ARGS))} to BAD_ARGS"


@pytest.mark.parametrize("path", sorted(" ".join(p) for p in command_paths()))
def test_every_command_refuses_bad_arguments_cleanly(path, tmp_path, capsys, monkeypatch):
    """Through the real entry point in a fresh process: an unknown option and the first bad-argument
    case; then every case through cli.main in this process (the same handler, without the start-up)."""
    cases = [["--no-such-option"], *BAD_ARGS.get(path, [])]
    for args in cases[:2]:
        r = run_cli(*path.split(), *args, "--json", cwd=tmp_path)
        assert_one_clean_error(r)
        assert r.stdout.strip() == "", r.stdout  # an error prints no JSON document
    monkeypatch.chdir(tmp_path)
    for args in cases:
        with pytest.raises(SystemExit) as exc:
            cli.main([*path.split(), *args, "--json"])
        captured = capsys.readouterr()
        r = subprocess.CompletedProcess(args, exc.value.code, captured.out, captured.err)
        assert_one_clean_error(r)
        assert r.stdout.strip() == "", r.stdout
    assert list(tmp_path.iterdir()) == []  # nothing was created (no run directory, no report)


# ---------------------------------------------------------------------------------------- item 5

@pytest.mark.parametrize("field, value", [
    ("workers", -1), ("budget", 0), ("budget", -5), ("batch", 0), ("seeds", 0), ("steps", 0), ("steps", -3),
    ("seed", 1.5), ("workers", 2.5),
])
def test_item5_search_config_refuses_bad_numbers(field, value):
    with pytest.raises(ValueError, match=f"--{field}"):
        SearchConfig(**{field: value}, executor="local").validate()


def test_item5_negative_workers_exits_2_instead_of_hanging(tmp_path):
    r = run_cli("search", "--workers", "-1", "--run-dir", str(tmp_path / "run"), timeout=60)
    assert_one_clean_error(r, "--workers must be an integer >= 0")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------- item 6

@pytest.mark.parametrize("timeout", [-1, 0, 0.0, math.nan, math.inf, -math.inf])
def test_item6_timeout_must_be_positive_and_finite(timeout):
    with pytest.raises(ValueError, match="--timeout"):
        SearchConfig(timeout_s=timeout, executor="local").validate()


def test_item6_progress_line_with_a_best_that_has_no_score():
    st = {"evaluated": 3, "budget": 10, "rate_per_min": 1.5, "rejected": 3, "screened_out": 0,
          "best": {"id": "act_0", "formula": "x*sigmoid(x)", "score": None}}
    line = cli.progress_line(st)
    assert "best - x*sigmoid(x)" in line
    assert "best +0.250" in cli.progress_line({**st, "best": {**st["best"], "score": 0.25}})
    assert "best" not in cli.progress_line({**st, "best": None})


# ---------------------------------------------------------------------------------------- item 7

def test_item7_one_seed_has_no_interval():
    r = paired_comparison([0.9], [0.1])
    assert r["ci"] is None and r["verdict"] == "indistinguishable" and r["n"] == 1
    strict_json(json.dumps(r, allow_nan=False))


def test_item7_json_output_is_strict(capsys):
    cli._json({"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": np.float32("inf"), "d": np.float64(2.0),
               "e": np.int64(3), "f": (1, None, "x"), "g": True})
    d = strict_json(capsys.readouterr().out)
    assert d == {"a": None, "b": [None, None, 1.5], "c": None, "d": 2.0, "e": 3, "f": [1, None, "x"], "g": True}


def _fake_eval_report(candidate, tasks, seeds, baselines, **kw):
    vs = {b: paired_comparison([0.9] * seeds, [0.8] * seeds) for b in ["relu", *baselines]}
    summary = {"mean": 0.9, "std": 0.0, "per_seed": [0.9] * seeds}
    return {"candidate": {"formula": candidate.source, "canonical": candidate.formula, "id": candidate.id,
                          "params": {}}, "seeds": list(range(seeds)), "baselines": list(baselines),
            "screening": {"passed": True, "reasons": []}, "score": 0.1,
            "tasks": {t: {"metric": "accuracy", "chance": 0.1, "steps": 1, "candidate": summary,
                          "baselines": {b: {**summary, "mean": 0.8} for b in vs}, "vs": vs, "rejected": None,
                          "score": 0.1, "wall_s": 0.0, "saved_s": 0.0, "loss": math.nan} for t in tasks}}


def test_item7_eval_with_one_seed_prints_strict_json_and_a_table(monkeypatch):
    import actsearch.evaluation

    monkeypatch.setattr(actsearch.evaluation, "evaluate", _fake_eval_report)
    r = runner.invoke(app, ["eval", "x*sigmoid(x)", "--seeds", "1", "--baselines", "relu", "--json"])
    assert r.exit_code == 0, r.output
    d = strict_json(r.stdout)
    assert d["tasks"]["mnist1d-mlp"]["vs"]["relu"]["ci"] is None
    assert d["tasks"]["mnist1d-mlp"]["loss"] is None  # NaN -> null
    r = runner.invoke(app, ["eval", "x*sigmoid(x)", "--seeds", "1", "--baselines", "relu"])
    assert r.exit_code == 0, r.output
    assert "n/a" in r.stdout and "inf" not in r.stdout


def _store_with_one_seed_runs(run_dir):
    """A run as earlier versions stored 1-seed results: ci [-inf, inf]; and one with ci None."""
    from actsearch.store import ResultStore

    store = ResultStore(run_dir)
    for i, ci in enumerate([[-math.inf, math.inf], None]):
        cid = f"act_{i:016x}"
        store.record_candidate({"id": cid, "formula": "x*sigmoid(x)", "canonical": "x*sigmoid(x)", "params": {},
                                "genome": [i], "screening_passed": True})
        report = {"seeds": [0], "tasks": {"mnist1d-mlp": {
            "candidate": {"mean": 0.9, "std": 0.0, "per_seed": [0.9]}, "rejected": None,
            "vs": {"relu": {"diff": 0.1, "ci": ci, "verdict": "indistinguishable", "n": 1}}}}}
        store.record_result(cid, 0.1 * i, report)
    store.close()


def test_item7_top_json_of_a_one_seed_run_is_strict(tmp_path):
    run = tmp_path / "run"
    _store_with_one_seed_runs(run)
    r = runner.invoke(app, ["top", str(run), "--json"])
    assert r.exit_code == 0, r.output
    rows = strict_json(r.stdout)
    assert len(rows) == 2 and all(row["ci_vs_relu"] is None for row in rows)
    r = runner.invoke(app, ["top", str(run)])
    assert r.exit_code == 0 and "inf" not in r.stdout, r.output


# ---------------------------------------------------------------------------------------- item 8

def test_item8_empty_task_list_is_refused():
    for tasks in ([], [""], ["  "]):
        with pytest.raises(ValueError, match="--tasks is empty"):
            SearchConfig(tasks=tasks, executor="local").validate()
    for args in (["--tasks", ""], ["--tasks", " , "], ["--task", ""]):
        r = runner.invoke(app, ["eval", "x*sigmoid(x)", *args])
        assert r.exit_code == 2 and "is empty" in r.stderr, r.output
    r = runner.invoke(app, ["search", "--tasks", "", "--executor", "local", "--run-dir", "unused"])
    assert r.exit_code == 2 and "--tasks is empty" in r.stderr, r.output


@pytest.mark.parametrize("n", ["0", "-1"])
def test_item8_top_n_must_be_positive(tmp_path, n):
    run = tmp_path / "run"
    _store_with_one_seed_runs(run)
    r = runner.invoke(app, ["top", str(run), "--n", n, "--json"])
    assert r.exit_code == 2 and "--n must be >= 1" in r.stderr and r.stdout == "", r.output
    assert len(strict_json(runner.invoke(app, ["top", str(run), "--n", "1", "--json"]).stdout)) == 1


# ---------------------------------------------------------------------------------------- item 9

def test_item9_division_by_a_zero_parameter_is_reported_not_raised():
    r = runner.invoke(app, ["check", "x/beta", "-p", "beta=0", "--json"])
    assert r.exit_code == 0, r.output
    d = strict_json(r.stdout)
    assert d["params"] == {"beta": 0.0} and d["screening"]["passed"] is False


def test_item9_moment_of_an_argument_that_folds_to_a_constant():
    from actsearch.formula import parse_formula
    from actsearch.identity import PROBE_TENSOR
    from actsearch.numeric import evaluate

    c = parse_formula("batch_var(sign(pow(softshrink(x), erf(x))))")
    assert c.is_tensor_op
    f = evaluate(c.safe_expr, PROBE_TENSOR, c.params)  # the guarded form folds to batch_var(1)
    assert f.shape == PROBE_TENSOR.shape and np.all(f == 0)
    r = runner.invoke(app, ["check", "batch_var(sign(pow(softshrink(x), erf(x))))", "--json"])
    assert r.exit_code == 0, r.output
    d = strict_json(r.stdout)
    assert d["kind"] == "normalization-activation"
    assert d["screening"]["passed"] is False and d["screening"]["reasons"][0].startswith("constant")


# ---------------------------------------------------------------------------------------- item 10

def test_item10_report_to_an_unwritable_path(tmp_path):
    run = tmp_path / "run"
    _store_with_one_seed_runs(run)
    r = runner.invoke(app, ["report", str(run), "-o", "/proc/nope/r.html"])
    assert r.exit_code == 2 and "cannot write report" in r.stderr and "Traceback" not in r.output, r.output


def test_item10_run_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    r = run_cli("search", "--executor", "local", "--budget", "1", "--run-dir", str(tmp_path / "file" / "run"),
                "--json", timeout=120)
    assert_one_clean_error(r, str(tmp_path / "file" / "run"))


def test_item10_export_of_a_missing_run_says_so(tmp_path):
    r = runner.invoke(app, ["export", f"{tmp_path}/nope:act_0123456789abcdef"])
    assert r.exit_code == 2, r.output
    assert f"no run at {tmp_path}/nope" in r.stderr and "bad formula" not in r.stderr


# ---------------------------------------------------------------------------------------- item 12

PROBE = """
import sys
from actsearch.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    heavy = sorted(m for m in ("torch", "ray", "matplotlib") if m in sys.modules)
    print("EXIT", exc.code, "HEAVY", ",".join(heavy) or "-")
"""


@pytest.mark.parametrize("command", [["check", "x+"], ["eval", "x+"], ["export", "x+"], ["eval", "x", "-p", "b"]])
def test_item12_formulas_are_parsed_before_heavy_imports(command):
    r = subprocess.run([sys.executable, "-c", PROBE, *command], capture_output=True, text=True, timeout=60)
    assert "EXIT 2 HEAVY -" in r.stdout, r.stdout + r.stderr
    assert r.stderr.startswith("error: ")


# ---------------------------------------------------------------------------------------- main()

def test_main_turns_an_unexpected_exception_into_one_line_and_exit_1(monkeypatch, capsys):
    def boom(*a, **k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(cli, "check_report", boom)
    monkeypatch.delenv("ACTSEARCH_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", "x*sigmoid(x)", "--json"])
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ZeroDivisionError: float division by zero")
    assert "ACTSEARCH_DEBUG=1" in lines[0]
    monkeypatch.setenv("ACTSEARCH_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["check", "x*sigmoid(x)"])


def test_main_usage_errors_exit_2_with_one_error_line(capsys):
    for argv in (["check"], ["top", "r", "--n", "x"], ["no-such-command"], ["check", "x", "--nearest", "0"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert [ln.startswith("error:") for ln in err.strip().splitlines()] == [True], err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0


def test_error_messages_are_not_read_as_markup():
    r = runner.invoke(app, ["check", "relu(x) + [bold]"])
    assert r.exit_code == 2 and "[bold]" in r.stderr, r.output
