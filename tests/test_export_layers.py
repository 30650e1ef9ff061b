"""`actsearch export` of a normalization-activation candidate: the standalone layer module (export.layer_source)
against actsearch.layers.LayerModule (outputs, gradients, running statistics, state_dict) and timm's EvoNorm."""
import ast
import importlib.util
import json

import pytest
import torch
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.export import export_candidate
from actsearch.formula import parse_formula
from actsearch.layers import create_layer
from test_layers import run  # output, input gradient and parameter gradients of one backward
from timm_reference import evo_norm_module

S0 = "x*sigmoid(v*x)/group_std(x)"
B0 = "x/max(batch_std(x), v*x + instance_std(x))"
NESTED = "x*sigmoid(v*x)/group_std(x - group_mean(v*x))"               # a moment of a moment's expression
BATCH_MEAN = "(x - batch_mean(x))/batch_std(x)*tanh(v*x)"               # running_mean and running_var
TWO_RUNNING = "x/batch_std(x*sigmoid(x)) + v*batch_mean(x) + layer_mean(x)"  # running_var_1; argument skipped in eval
FORMULAS = [S0, B0, NESTED, BATCH_MEAN, TWO_RUNNING]
C = 8
runner = CliRunner()


def load_exported(source: str, tmp_path, name: str):
    """The exported file as a fresh module (its own namespace, nothing shared with actsearch)."""
    path = tmp_path / f"{name.lower()}_{abs(hash(source)) % 10**8}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pair(formula, tmp_path, **settings):
    """(LayerModule, exported module) with the same random parameters, loaded through LayerModule's
    state_dict (strict), in float64."""
    c = parse_formula(formula, params={"v": 0.75} if "v" in formula else None)
    ours = create_layer(c, C, compiled=False, **settings).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5)
    exported = load_exported(export_candidate(c, "torch", name="Layer"), tmp_path, "Layer")
    mod = exported.Layer(C, **settings).double()
    mod.load_state_dict(ours.state_dict())
    return ours, mod


def assert_same(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("formula", FORMULAS)
def test_exported_layer_equals_layer_module_in_train_and_eval(formula, tmp_path):
    ours, mod = pair(formula, tmp_path, groups=2, eps=1e-3, momentum=0.2)
    assert set(mod.state_dict()) == set(ours.state_dict())
    gen = torch.Generator().manual_seed(2)
    for mode in ["train"] * 3 + ["eval"] * 2:  # eval after train steps: the running averages matter
        ours.train(mode == "train")
        mod.train(mode == "train")
        x = torch.randn(4, C, 3, 5, generator=gen, dtype=torch.float64) * 2 + 0.3
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        (y1, gx1, gp1), (y2, gx2, gp2) = run(ours, x, g), run(mod, x, g)
        assert_same(y2, y1)
        assert_same(gx2, gx1)
        assert gp1.keys() == gp2.keys() and {"weight", "bias"} <= gp1.keys()
        for name in gp1:
            assert_same(gp2[name], gp1[name])
        for name, buf in ours.named_buffers():
            assert_same(getattr(mod, name), buf)
    for name, buf in ours.named_buffers():  # they were updated in train mode
        assert not torch.allclose(buf, torch.zeros_like(buf)) and not torch.allclose(buf, torch.ones_like(buf))


def test_running_buffers_are_layer_modules():
    names = {}
    for formula in (B0, BATCH_MEAN, TWO_RUNNING, S0):
        c = parse_formula(formula, params={"v": 1.0})
        names[formula] = set(create_layer(c, C, groups=4, compiled=False).state_dict())
    assert names[B0] == {"v", "weight", "bias", "running_var"}  # timm's EvoNorm2dB0 names
    assert names[BATCH_MEAN] == {"v", "weight", "bias", "running_mean", "running_var"}
    assert names[TWO_RUNNING] == {"v", "weight", "bias", "running_mean", "running_var_1"}
    assert names[S0] == {"v", "weight", "bias"}


def test_state_dict_round_trip_both_ways(tmp_path):
    ours, mod = pair(B0, tmp_path, eps=1e-3)
    x = torch.randn(4, C, 3, 3, dtype=torch.float64) + 1
    for _ in range(2):
        mod(x * 2)  # the exported module's own running statistics, then into a fresh LayerModule
    fresh = create_layer(B0, C, params={"v": 1.0}, eps=1e-3, compiled=False).double()
    fresh.load_state_dict(mod.state_dict())
    assert_same(fresh.running_var, mod.running_var)
    assert_same(fresh.eval()(x), mod.eval()(x))
    assert not torch.allclose(fresh.eval()(x), ours.eval()(x))  # ours did not see those batches


@pytest.mark.parametrize("kind", ["S0", "B0"])
def test_exported_evonorm_matches_timm(kind, tmp_path):
    evo = evo_norm_module()
    if kind == "S0":
        ref, formula, settings = evo.EvoNorm2dS0(C, groups=4), S0, {"groups": 4}
    else:
        ref, formula, settings = evo.EvoNorm2dB0(C), B0, {"eps": 1e-3, "momentum": 0.1}
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    exported = load_exported(export_candidate(parse_formula(formula, params={"v": 1.0}), name=f"Evo{kind}"),
                             tmp_path, f"Evo{kind}")
    mod = getattr(exported, f"Evo{kind}")(C, **settings)
    mod.load_state_dict(ref.state_dict())
    for mode in ["train"] * 2 + ["eval"]:
        ref.train(mode == "train")
        mod.train(mode == "train")
        x = torch.randn(4, C, 5, 6, generator=gen) * 2 + 0.3
        g = torch.randn(x.shape, generator=gen)
        (y1, gx1, gp1), (y2, gx2, gp2) = run(ref, x, g), run(mod, x, g)
        assert_same(y2, y1, 2e-5)
        assert_same(gx2, gx1, 2e-5)
        for name in gp1:
            assert_same(gp2[name], gp1[name], 2e-5)
    if kind == "B0":
        torch.testing.assert_close(mod.running_var, ref.running_var, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("formula", FORMULAS)
def test_exported_layer_imports_only_torch_and_math(formula):
    source = export_candidate(parse_formula(formula, params={"v": 1.0} if "v" in formula else None), name="L")
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"math", "torch"}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"actsearch", "__import__", "importlib", "exec", "eval"}
    assert "class L(torch.nn.Module)" in source and "autograd differentiates" in ast.get_docstring(tree)


def test_exported_layer_without_affine_or_running_statistics_and_group_size(tmp_path):
    for settings in ({"affine": False}, {"track_running_stats": False}, {"group_size": 2}):
        ours, mod = pair(BATCH_MEAN if "group_size" not in settings else S0, tmp_path, **settings)
        assert set(mod.state_dict()) == set(ours.state_dict())
        x = torch.randn(3, C, 4, dtype=torch.float64)
        assert_same(mod(x), ours(x))
        assert_same(mod.eval()(x), ours.eval()(x))
    assert mod.groups == 4
    exported = load_exported(export_candidate(parse_formula(S0, params={"v": 1.0}), name="S"), tmp_path, "S")
    with pytest.raises(ValueError, match="divisible by groups"):
        exported.S(12, groups=8)
    with pytest.raises(ValueError, match="expected an"):
        exported.S(8, groups=4)(torch.randn(2, 4, 3))
    exported = load_exported(export_candidate(parse_formula(B0, params={"v": 1.0}), name="B"), tmp_path, "B")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        exported.B(8)(torch.randn(1, 8))


def test_clashing_parameter_names_are_refused():
    for name in ("weight", "training", "running_var", "_t0", "eps"):
        c = parse_formula(f"x*sigmoid({name}*x)/group_std(x)", params={name: 1.0})
        with pytest.raises(ValueError, match="clashes"):
            export_candidate(c)


def test_cli_exports_a_layer_and_a_layer_of_a_run(tmp_path):
    from actsearch.store import ResultStore

    out = tmp_path / "b0.py"
    r = runner.invoke(app, ["export", B0, "-p", "v=1", "-o", str(out), "--name", "EvoNormB0", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["path"] == str(out)
    source = out.read_text()
    assert "class EvoNormB0(torch.nn.Module)" in source and "register_buffer('running_var'" in source
    c = parse_formula(S0, params={"v": 1.0})
    run_dir = tmp_path / "run"
    store = ResultStore(run_dir)
    store.record_candidate({"id": c.id, "formula": c.formula, "canonical": c.formula, "params": dict(c.params),
                            "genome": [0], "screening_passed": True})
    store.close()
    r = runner.invoke(app, ["export", f"{run_dir}:{c.id}", "--name", "Found"])
    assert r.exit_code == 0, r.output
    assert "class Found(torch.nn.Module)" in r.stdout and str(run_dir) in r.stdout
    module = load_exported(r.stdout, tmp_path, "Found")
    ours = create_layer(c, C, groups=4, compiled=False)
    mod = module.Found(C, groups=4)
    mod.load_state_dict(ours.state_dict())
    x = torch.randn(2, C, 3)
    torch.testing.assert_close(mod(x), ours(x))
    r = runner.invoke(app, ["export", "x*sigmoid(weight*x)/group_std(x)", "-p", "weight=1"])
    assert r.exit_code == 2 and "clashes" in r.stderr


def test_cli_check_reports_layer_properties():
    r = runner.invoke(app, ["check", "relu((x - batch_mean(x))/batch_std(x))", "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["properties"]
    assert p["kind"] == "normalization-activation" and p["moments"] == ["batch_mean(x)", "batch_std(x)"]
    assert p["scale_invariant"] and p["shift_invariant"] and p["needs_running_statistics"] and p["batch_dependent"]
    r = runner.invoke(app, ["check", S0, "-p", "v=1"])
    assert r.exit_code == 0, r.output
    assert "group_std(x)" in r.stdout and "scale_invariant" in r.stdout and "no running statistics" in r.stdout
