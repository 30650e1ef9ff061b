import json
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.export import export_candidate
from actsearch.formula import parse_formula

runner = CliRunner()

# The start of a script run in a fresh interpreter in which `import actsearch` fails.
BLOCK_ACTSEARCH = textwrap.dedent('''
    import importlib.abc, json, runpy, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "actsearch" or name.startswith("actsearch."):
                raise ImportError("actsearch is not importable here")
    sys.meta_path.insert(0, Block())
''')

# Runs an exported file in such an interpreter.
RUNNER = BLOCK_ACTSEARCH + textwrap.dedent('''
    import torch
    torch.manual_seed(0)
    ns = runpy.run_path(sys.argv[1])
    cls, kwargs = ns[sys.argv[2]], json.loads(sys.argv[3])
    m = cls(**kwargs).double()
    x = torch.randn(*json.loads(sys.argv[4]), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    y = m(x)
    y.pow(2).sum().backward()
    try:
        import actsearch  # noqa: F401
        blocked = False
    except ImportError:
        blocked = True
    print(json.dumps({"x": x.detach().tolist(), "y": y.detach().tolist(), "gx": x.grad.tolist(),
                      "gp": {n: p.grad.tolist() for n, p in m.named_parameters()}, "blocked": blocked}))
''')


def run_export(tmp_path, src, cls, kwargs, shape):
    path = tmp_path / "exported.py"
    path.write_text(src)
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    r = subprocess.run([sys.executable, str(script), str(path), cls, json.dumps(kwargs), json.dumps(shape)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("formula, params, kwargs, shape", [
    ("x*sigmoid(beta*x) + max(x, tanh(x))", {"beta": 1.5}, {}, [64]),
    ("x*sigmoid(beta*x)", {"beta": 1.0}, {"channels": 3}, [2, 3, 5]),
    ("mish(x) + sinc(x)", {}, {}, [64]),
    ("elu(x, alpha)*gaussian(x) + log(x)", {"alpha": 0.7}, {}, [64]),
])
def test_torch_export_runs_without_actsearch_and_matches_eager_autograd(tmp_path, formula, params, kwargs, shape):
    c = parse_formula(formula, params=params)
    out = run_export(tmp_path, export_candidate(c, "torch", name="MyAct"), "MyAct", kwargs, shape)
    assert out["blocked"]
    # reference: autograd through the plain eager formula (torch built-ins, unguarded where safe)
    from actsearch.kernels import get_kernel

    k = get_kernel(c)
    x = torch.tensor(out["x"], dtype=torch.float64, requires_grad=True)
    ps = []
    for n, v in c.params.items():
        p = torch.full((kwargs["channels"],) if kwargs.get("channels") else (), v, dtype=torch.float64,
                       requires_grad=True)
        ps.append(p)
    shaped = [p.view([1, -1] + [1] * (x.dim() - 2)) if kwargs.get("channels") else p for p in ps]
    y = k.eager_forward(x, *shaped)
    y.pow(2).sum().backward()
    torch.testing.assert_close(torch.tensor(out["y"], dtype=torch.float64), y.detach())
    torch.testing.assert_close(torch.tensor(out["gx"], dtype=torch.float64), x.grad, rtol=1e-5, atol=1e-8)
    for (n, _), p in zip(c.params.items(), ps):
        torch.testing.assert_close(torch.tensor(out["gp"][n], dtype=torch.float64), p.grad, rtol=1e-5, atol=1e-8)


def test_normalization_activation_export(tmp_path):
    c = parse_formula("x*sigmoid(v*x)/group_std(x)", params={"v": 1.0})
    out = run_export(tmp_path, export_candidate(c, "torch", name="EvoNormS0"), "EvoNormS0",
                     {"channels": 8, "groups": 4}, [2, 8, 5])
    assert out["blocked"] and len(out["gp"]["v"]) == 8


def test_docstring_has_provenance():
    c = parse_formula("x*sigmoid(beta*x)", params={"beta": 1.0})
    src = export_candidate(c, "torch", name="Swish", provenance={"scores": "mnist1d-mlp +0.4% vs ReLU"})
    doc = src.split('"""')[1]
    assert c.id in doc and "x*sigmoid(beta*x)" in doc and "beta=1.0" in doc and "mnist1d-mlp" in doc
    assert "import actsearch" not in src and "from actsearch" not in src


def test_cli_export_formats_and_errors(tmp_path):
    out = tmp_path / "a.py"
    r = runner.invoke(app, ["export", "x*sigmoid(x)", "-o", str(out), "--name", "Silu2", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["path"] == str(out)
    assert "class Silu2(torch.nn.Module)" in out.read_text()
    r = runner.invoke(app, ["export", "x*sigmoid(beta*x)", "-p", "beta=1", "--format", "latex"])
    assert r.exit_code == 0 and r.stdout.strip() == r"x \sigma\left(\beta x\right)"
    r = runner.invoke(app, ["export", "x*sigmoid(x)", "--format", "sympy"])
    assert r.exit_code == 0 and "sigmoid(" in r.stdout
    for args, fragment in [(["export", "x", "-f", "onnx"], "unknown --format"),
                           (["export", "2*x"], "fails screening"),
                           (["export", "x*tanh(x)", "--name", "not valid"], "identifier"),
                           (["export", "x/batch_std(x)", "-f", "triton"], "reduction kernels"),
                           (["export", "foo(x)"], "unknown function"),
                           (["export", "tanh(x)", "-o", str(tmp_path / "no" / "dir.py")], "cannot write")]:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and fragment in r.stderr, (args, r.stderr)
