import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actsearch.cli import app

runner = CliRunner()
ACTSEARCH = [sys.executable, "-m", "actsearch.cli"]


def run_json(*args):
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_check_json_names_silu_as_nearest():
    d = run_json("check", "x*sigmoid(x)")
    assert {"canonical", "derivative", "properties", "screening", "nearest"} <= set(d)
    assert d["canonical"] == "x*sigmoid(x)"
    assert d["screening"] == {"passed": True, "reasons": []}
    top = d["nearest"][0]
    assert top["name"] == "silu" and "Swish" in top["title"] and top["distance"] < 1e-9
    assert {"name", "distance", "reference"} <= set(top)
    assert d["verdict"].startswith("rediscovery of")
    assert d["properties"]["monotonic"] is False and d["properties"]["bounded_below"] is True


def test_check_with_parameter_and_plot(tmp_path):
    png = tmp_path / "swish.png"
    d = run_json("check", "x*sigmoid(beta*x)", "--param", "beta=2.0", "--plot", str(png))
    assert d["params"] == {"beta": 2.0}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert d["nearest"][0]["distance"] > 1e-3  # beta=2 is no longer exactly SiLU
    assert d["verdict"].startswith("novel: nearest is")


def test_check_reports_screening_failures():
    d = run_json("check", "exp(exp(x))")
    assert d["screening"]["passed"] is False
    assert d["screening"]["reasons"][0].startswith("non_finite")


def test_check_human_output():
    r = runner.invoke(app, ["check", "max(x, tanh(x))"])
    assert r.exit_code == 0
    assert "max(x, tanh(x))" in r.stdout and "nearest known" in r.stdout and "screening: passed" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["check", "exp(x) + foo(x)"], "unknown function 'foo'"),
    (["check", "x", "--param", "beta"], "NAME=VALUE"),
    (["check", "x", "--param", "beta=abc"], "not a number"),
    (["check", "x/batch_std(x)", "--plot", "p.png"], "normalization-activation"),
    (["known", "--family", "nope"], "unknown family"),
])
def test_bad_input_exits_nonzero_with_a_message(args, fragment):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert fragment in r.stderr
    assert "Traceback" not in r.output


def test_plot_to_unwritable_path_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["check", "tanh(x)", "--plot", str(tmp_path / "missing" / "p.png")])
    assert r.exit_code == 2 and "cannot write plot" in r.stderr


def test_injection_via_real_entry_point_creates_nothing(tmp_path):
    sentinel = tmp_path / "p"
    payload = f'__import__("os").system("touch {sentinel}")'
    r = subprocess.run([*ACTSEARCH, "check", payload], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    assert "error: bad formula" in r.stderr and "Traceback" not in r.stderr
    assert not sentinel.exists()
    assert not Path("/tmp/p").exists() or os.path.getmtime("/tmp/p") < os.path.getmtime(tmp_path)


def test_known_json_lists_the_catalog():
    entries = run_json("known")
    assert len(entries) >= 80
    assert all({"name", "formula", "reference"} <= set(e) for e in entries)
    assert len({e["name"] for e in entries}) == len(entries)


def test_primitives_json():
    prims = {p["name"]: p for p in run_json("primitives")}
    assert prims["log"]["safe"] == "log(|u| + eps)"
    assert prims["max"]["inputs"] == "2+"


def test_bench_formula_json_small():
    d = run_json("bench", "formula", "--n", "50", "--repeats", "1")
    assert d["n"] == 50 and d["parsed"] + d["refused"] == 50 and d["seconds"] > 0


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("actsearch ")
