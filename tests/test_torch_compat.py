"""kernels/torch_compat.py: every private torch access guarded, switchable off with the same numbers,
and confined to actsearch's own compiles (issue 19, item 2)."""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from actsearch.formula import parse_formula
from actsearch.kernels import inductor, torch_compat
from actsearch.kernels.codegen import generate_source
from actsearch.kernels.fused import CompiledKernel, CompilePolicy, fused_activation

ROOT = Path(__file__).resolve().parent.parent

# A handful of formulas: no parameter (one forward_with_derivative graph), a learnable parameter
# (forward and backward graphs), a piecewise and a rational one.
# one with a parameter (forward and backward graphs), one without (the fused forward+derivative graph);
# the whole kernel suites with every patch off: test_the_kernel_suites_pass_with_every_patch_off (slow)
FORMULAS = [("x*tanh(softplus(x)) + beta*x", {"beta": 0.25}), ("max(x, 0) + 0.5*min(exp(x) - 1, 0)", {})]

# Runs in a fresh process (the switch is read at import): every formula's outputs and gradients.
_RUN = textwrap.dedent("""
    import json, sys, warnings
    import torch
    from actsearch.formula import parse_formula
    from actsearch.kernels import torch_compat
    from actsearch.kernels.codegen import generate_source
    from actsearch.kernels.fused import CompiledKernel, CompilePolicy, fused_activation

    formulas, out_path = json.loads(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    results, report = [], {"features": {k: v["active"] for k, v in torch_compat.features().items()
                                         if isinstance(v, dict)}, "kernels": []}
    for formula, params in formulas:
        k = CompiledKernel(generate_source(parse_formula(formula, params=params)), CompilePolicy(min_numel=0))
        x = torch.linspace(-6, 6, 4099, requires_grad=True)
        ps = [torch.tensor(v, requires_grad=True) for v in params.values()]
        y = fused_activation(k, x, *ps, compiled=True)
        g = torch.cos(torch.arange(x.numel(), dtype=torch.float32))
        grads = torch.autograd.grad(y, [x, *ps], g)
        results.append([y.detach(), *grads])
        report["kernels"].append({"compile_error": k.compile_error,
                                  "traced": [f.use_traced for f in k._compiled.values()]})
    torch.save(results, out_path)
    print(json.dumps(report))
""")


def _run_formulas(tmp_path, name, **env):
    out = tmp_path / f"{name}.pt"
    proc = subprocess.run([sys.executable, "-c", _RUN, json.dumps(FORMULAS), str(out)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out), json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_patch_off_gives_the_same_outputs_and_gradients(tmp_path):
    # ACTSEARCH_TORCH_PRIVATE=0: no private torch feature at all (torch.compile and eager autograd
    # only); every formula's values and gradients match those of the default build.
    on, on_report = _run_formulas(tmp_path, "on")
    off, off_report = _run_formulas(tmp_path, "off", ACTSEARCH_TORCH_PRIVATE="0")
    assert not any(off_report["features"].values())
    if torch_compat.tested_torch():
        assert on_report["features"]["traced_graphs"] and all(any(k["traced"]) for k in on_report["kernels"])
    assert all(not any(k["traced"]) for k in off_report["kernels"])  # torch.compile throughout
    assert all(k["compile_error"] is None for k in on_report["kernels"] + off_report["kernels"])
    for (formula, _), a, b in zip(FORMULAS, on, off):
        for ta, tb in zip(a, b):
            torch.testing.assert_close(ta, tb, rtol=1e-5, atol=1e-6, msg=formula)


def test_switch_reports_and_turns_every_feature_off():
    report = torch_compat.features()
    assert set(torch_compat.FEATURES) <= set(report)
    assert report["torch"] == torch.__version__
    with torch_compat.private_disabled():
        assert not torch_compat.private_enabled()
        assert not any(torch_compat.active(name) for name in torch_compat.FEATURES)
        assert torch_compat.keep_graph() is True  # the fallback never lets backward reuse a buffer
        assert not inductor.traced_graphs_enabled()
        with pytest.raises(torch_compat.Unavailable):
            torch_compat.trace_and_compile(lambda x: (x,), [torch.ones(3)], True, {})
        with pytest.raises(torch_compat.Unavailable):
            torch_compat.load_module("")
        with torch_compat.compile_scope():  # no patch installed
            from torch._inductor.async_compile import AsyncCompile

            assert not getattr(AsyncCompile.__dict__["wait"], "_actsearch_deferrable", False)
    assert torch_compat.private_enabled()


def _torch_originals():
    from torch._inductor.async_compile import AsyncCompile
    from torch._inductor.dtype_propagation import DtypePropagationOpsHandler

    return DtypePropagationOpsHandler.__dict__.get("__init__"), AsyncCompile.__dict__.get("wait")


def test_patches_are_installed_only_inside_actsearchs_compiles():
    before = _torch_originals()
    with torch_compat.compile_scope():
        inside = _torch_originals()
        with torch_compat.compile_scope():  # nested: one installation
            assert _torch_originals() == inside
        assert _torch_originals() == inside
    assert _torch_originals() == before
    if torch_compat.active("dtype_rules_once"):
        assert getattr(inside[0], "_actsearch_once", False) and inside[0] is not before[0]
    if torch_compat.active("deferred_builds"):
        assert getattr(inside[1], "_actsearch_deferrable", False)


def test_dtype_rules_are_set_up_once_and_follow_new_registrations(monkeypatch):
    # Inside actsearch's compiles Inductor's DtypePropagationOpsHandler singleton reruns its rule
    # set-up only when the rule registry changed (it is constructed at every op Inductor emits).
    from torch._inductor import dtype_propagation, utils
    from torch._inductor.utils import OpDtypeRule
    from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND

    if not inductor.skip_repeated_dtype_rule_setup():
        pytest.skip("this torch has no DtypePropagationOpsHandler")
    import torch._inductor.codegen.common  # noqa: F401 - what the set-up reads; any compile imports both
    import torch._inductor.lowering  # noqa: F401 - registers the dtype rules

    cls = dtype_propagation.DtypePropagationOpsHandler
    with torch_compat.compile_scope():
        assert getattr(cls.__init__, "_actsearch_once", False)
        handler = cls()
        rule = handler.__dict__.pop("add")  # a rule the set-up makes; gone until the set-up runs again
        try:
            assert cls() is handler and "add" not in handler.__dict__  # unchanged registry: skipped
            monkeypatch.setitem(utils.op_dtype_propagation_rules, "actsearch_test_op",
                                OpDtypeRule(ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT, torch.float16))
            cls()  # a rule registered later: the set-up runs again and picks it up
            assert "add" in handler.__dict__ and handler.actsearch_test_op() == torch.float16
        finally:
            handler.__dict__.setdefault("add", rule)
    assert not getattr(cls.__init__, "_actsearch_once", False)


def _gold_note(path) -> bool:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True).stdout
    return ".note.gnu.gold-version" in out


def test_users_own_torch_compile_sees_nothing_of_actsearch(tmp_path, monkeypatch):
    # After actsearch compiled a kernel (fast linker, ld shim, class patches), a torch.compile of the
    # user's own in the same process runs torch as shipped: no COMPILER_PATH or other variable in
    # the environment, Inductor's compiler setting and classes unchanged, its kernel linked by the
    # system linker (not the shim's gold), and the right result.
    import random

    import torch._inductor.config as inductor_config

    env_before = dict(os.environ)
    originals, cxx = _torch_originals(), inductor_config.cpp.cxx
    c = parse_formula(f"x*sigmoid({random.uniform(1.01, 1.99):.9f}*x)")
    k = CompiledKernel(generate_source(c), CompilePolicy(min_numel=0))
    x = torch.randn(300, requires_grad=True)
    fused_activation(k, x, compiled=True).sum().backward()
    assert k.compile_error is None
    changed = {k for k in set(os.environ) | set(env_before) if os.environ.get(k) != env_before.get(k)}
    assert {k for k in changed if not k.startswith("_TORCHINDUCTOR_")} == set()  # torch's own aside
    assert os.environ.get("COMPILER_PATH") == env_before.get("COMPILER_PATH")
    assert _torch_originals() == originals and inductor_config.cpp.cxx == cxx

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "user-inductor"))
    scale = random.uniform(2.01, 2.99)

    def users_fn(t):
        return torch.sin(t) * scale + t

    t = torch.randn(1000)
    out = torch.compile(users_fn)(t)
    torch.testing.assert_close(out, users_fn(t))
    assert _torch_originals() == originals and inductor_config.cpp.cxx == cxx
    built = list((tmp_path / "user-inductor").rglob("*.so"))
    assert built, "the user's function built no kernel"
    ld = subprocess.run(["ld", "--version"], capture_output=True, text=True).stdout
    if inductor._linker and Path(inductor._linker).name == "ld.gold" and "gold" not in ld.split("\n")[0]:
        assert shutil.which("readelf")
        assert not any(_gold_note(p) for p in built)  # the system linker, not the shim's


_CACHE_DIR_RUN = textwrap.dedent("""
    import json, os, sys
    import torch
    from actsearch.formula import parse_formula
    from actsearch.kernels.cache import KernelCache
    from actsearch.kernels.fused import CompilePolicy, fused_activation, get_kernel

    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # through the on-disk kernel cache (ACTSEARCH_CACHE_DIR), as ActivationModule and training do
    k = get_kernel(parse_formula("x*sigmoid(1.37*x)"), cache=KernelCache(), policy=CompilePolicy(min_numel=0))
    x = torch.randn(300, requires_grad=True)
    fused_activation(k, x, compiled=True).sum().backward()
    after_ours = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # where a torch.compile of the user's would now put its artifacts (Inductor's own lookup, as it compiles)
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    print(json.dumps({"before": before, "after_ours": after_ours, "error": k.compile_error,
                      "after_users": cache_dir()}))
""")


def test_inductor_cache_dir_is_actsearchs_only_inside_its_compiles(tmp_path):
    """Without a TORCHINDUCTOR_CACHE_DIR of the user's, actsearch's compiles put Inductor's artifacts under
    <cache>/inductor, and the process's environment is left alone: the user's own torch.compile gets
    Inductor's default directory (here under TMPDIR), not actsearch's."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    (tmp_path / "tmp").mkdir()
    env.update(ACTSEARCH_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(tmp_path / "tmp"))
    proc = subprocess.run([sys.executable, "-c", _CACHE_DIR_RUN], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["before"] is None and r["error"] is None
    # after our compile the variable is unset or torch's own default (torch writes it there the first time
    # anything asks, torch.compile's wrapper included), never actsearch's directory
    assert r["after_ours"] is None or r["after_ours"].startswith(str(tmp_path / "tmp"))
    assert r["after_users"] and r["after_users"].startswith(str(tmp_path / "tmp"))   # Inductor's default
    assert list((tmp_path / "cache" / "inductor").rglob("*.py")), "actsearch's compile used its own directory"


def test_fast_linker_runs_only_in_actsearchs_compiler(tmp_path):
    # The g++ wrapper (Inductor's cpp.cxx in actsearch's compiles only) finds the ld shim through the
    # COMPILER_PATH it sets for itself; the process's own g++ finds the system ld.
    linker = inductor.use_fast_linker()
    if linker is None or not inductor._cxx_options:
        pytest.skip("no fast linker here (ACTSEARCH_LINKER, COMPILER_PATH or no gcc)")
    (wrapper,) = inductor._cxx_options["cpp.cxx"]
    assert "COMPILER_PATH" not in os.environ or "actsearch-ld" not in os.environ["COMPILER_PATH"]
    ld = subprocess.run([wrapper, "-print-prog-name=ld"], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(ld).name == "ld" and (Path(ld).parent / "linker").resolve() == Path(linker).resolve()
    plain = subprocess.run(["g++", "-print-prog-name=ld"], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(plain).parent != Path(ld).parent
    assert inductor.inductor_options({})["cpp.cxx"] == (wrapper,)
    root = Path(ld).parent.parent
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700 and os.lstat(root).st_uid == os.getuid()
    if Path(linker).name != "ld.gold" or shutil.which("readelf") is None:
        return
    # a kernel actsearch builds now is linked by gold (its note), against the stubs (all three NEEDED)
    import random
    import re
    import time

    t0 = time.time()
    k = CompiledKernel(generate_source(parse_formula(f"x*sigmoid({random.uniform(1.01, 1.99):.9f}*x)")),
                       CompilePolicy(min_numel=0))
    fused_activation(k, torch.randn(64, requires_grad=True), compiled=True).sum().backward()
    assert k.compile_error is None
    new = [p for p in Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]).rglob("*.so") if p.stat().st_mtime >= t0 - 1]
    assert new and all(_gold_note(p) for p in new)
    if os.environ.get("ACTSEARCH_LINK_STUBS") != "0":
        for p in new:
            needed = subprocess.run(["readelf", "-d", str(p)], capture_output=True, text=True).stdout
            assert {"libtorch.so", "libtorch_cpu.so", "libtorch_python.so"} <= set(
                re.findall(r"\(NEEDED\).*\[(.+?)\]", needed))


def test_ld_shim_stubs_libtorch_only_for_inductor_outputs(tmp_path, monkeypatch):
    # Through the wrapper, a shared object written under TORCHINDUCTOR_CACHE_DIR links against the
    # symbol-less libtorch stubs (all three NEEDED); every other link runs the real linker (as-needed:
    # libtorch_cpu only).  The stubbed object loads and its call reaches the real function.
    import ctypes
    import re

    inductor.use_fast_linker()
    if not inductor._cxx_options or shutil.which("readelf") is None:
        pytest.skip("needs the fast linker and readelf")
    (wrapper,) = inductor._cxx_options["cpp.cxx"]
    src = tmp_path / "k.c"
    src.write_text("extern int aoti_torch_dtype_float32(void);\nint k(void) { return aoti_torch_dtype_float32(); }\n")
    lib = Path(torch.__file__).parent / "lib"
    if " aoti_torch_dtype_float32\n" not in subprocess.run(
            ["readelf", "--dyn-syms", "-W", str(lib / "libtorch_cpu.so")], capture_output=True, text=True).stdout:
        pytest.skip("this libtorch_cpu does not export aoti_torch_dtype_float32")
    cache = tmp_path / "inductor"
    (cache / "ab").mkdir(parents=True)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    monkeypatch.delenv("ACTSEARCH_LINK_STUBS", raising=False)

    def link(cc, out, **env):
        cmd = [cc, "-x", "c", "-shared", "-fPIC", str(src), "-o", str(out), f"-L{lib}", "-ltorch", "-ltorch_cpu",
               "-ltorch_python"]
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **env})
        needed = subprocess.run(["readelf", "-d", str(out)], capture_output=True, text=True, check=True).stdout
        return set(re.findall(r"\(NEEDED\).*\[(.+?)\]", needed)) & {"libtorch.so", "libtorch_cpu.so",
                                                                      "libtorch_python.so"}

    assert link(wrapper, cache / "ab" / "k.so") == {"libtorch.so", "libtorch_cpu.so", "libtorch_python.so"}
    assert link(wrapper, tmp_path / "k.so") == {"libtorch_cpu.so"}
    assert link(wrapper, cache / "ab" / "k2.so", ACTSEARCH_LINK_STUBS="0") == {"libtorch_cpu.so"}
    assert link("gcc", cache / "ab" / "k3.so") == {"libtorch_cpu.so"}  # the process's own gcc: untouched
    assert ctypes.CDLL(str(cache / "ab" / "k.so")).k() == 6  # c10::ScalarType::Float


def _fresh_linker(monkeypatch):
    monkeypatch.setattr(inductor, "_linker_done", False)
    monkeypatch.setattr(inductor, "_linker", None)
    monkeypatch.setattr(inductor, "_cxx_options", {})
    monkeypatch.delenv("COMPILER_PATH", raising=False)
    linker = inductor.use_fast_linker()
    return linker, (Path(inductor._cxx_options["cpp.cxx"][0]).parent.parent if inductor._cxx_options else None)


def test_ld_shim_falls_back_to_the_bare_linker(monkeypatch, tmp_path):
    # No gcc to build the stubs, or a shim that cannot run: the directory's `ld` is a plain link to the
    # linker, so every link still works, only without the stubs.
    linker = shutil.which("ld.gold") or shutil.which("ld")
    if linker is None or inductor._gcc_compiler() is None:
        pytest.skip("no linker or g++ on PATH")
    monkeypatch.setattr(inductor, "_link_root", lambda: tmp_path / "actsearch-ld-test")
    monkeypatch.setenv("ACTSEARCH_LINKER", linker)
    shim = inductor._LD_SHIM
    found, link_dir = _fresh_linker(monkeypatch)
    assert found == linker and link_dir.parent == tmp_path / "actsearch-ld-test"
    assert not (link_dir / "ld").is_symlink() and (link_dir / "ld").read_text().startswith("#!/bin/sh")
    monkeypatch.setattr(inductor, "_LD_SHIM", "#!/bin/sh\nexit 1\n# {linker} {stubs}\n")
    found, link_dir = _fresh_linker(monkeypatch)
    assert (link_dir / "ld").is_symlink() and os.readlink(link_dir / "ld") == linker

    def no_gcc(root):
        raise FileNotFoundError("gcc")

    monkeypatch.setattr(inductor, "_LD_SHIM", shim)
    monkeypatch.setattr(inductor, "_link_stubs", no_gcc)
    found, link_dir = _fresh_linker(monkeypatch)
    assert (link_dir / "ld").is_symlink() and os.readlink(link_dir / "ld") == linker
    assert "COMPILER_PATH" not in os.environ


def test_fast_linker_is_off_with_the_switch(monkeypatch):
    with torch_compat.private_disabled():
        assert _fresh_linker(monkeypatch) == (None, None)
        assert "cpp.cxx" not in inductor.inductor_options({})


def test_private_directory_is_made_0700_and_checked(tmp_path, monkeypatch):
    d = torch_compat.private_directory(tmp_path / "new" / "private")
    st = os.lstat(d)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    # readable by others (what older versions made): ours, nobody else could write it: made 0700
    d.chmod(0o755)
    assert stat.S_IMODE(os.lstat(torch_compat.private_directory(d)).st_mode) == 0o700
    # writable by others: its files may not be ours: moved aside, a fresh empty directory instead
    (d / "ld").write_text("#!/bin/sh\n# planted\n")
    d.chmod(0o777)
    with pytest.warns(RuntimeWarning, match="writable by others"):
        fresh = torch_compat.private_directory(d)
    assert fresh == d and list(d.iterdir()) == [] and stat.S_IMODE(os.lstat(d).st_mode) == 0o700
    (aside,) = [p for p in d.parent.iterdir() if p.name.startswith("private.unsafe-")]
    assert (aside / "ld").exists()
    # a symlink (to a directory of ours, even) is refused
    (tmp_path / "link").symlink_to(d)
    with pytest.raises(torch_compat.UnsafeDirectory):
        torch_compat.private_directory(tmp_path / "link")
    # owned by another user: refused, left alone
    uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: uid + 1)
    with pytest.raises(torch_compat.UnsafeDirectory, match="owned by"):
        torch_compat.private_directory(d)
    monkeypatch.undo()
    assert d.exists() and stat.S_IMODE(os.lstat(d).st_mode) == 0o700


def test_an_unsafe_link_root_is_not_used(tmp_path, monkeypatch):
    # /tmp/actsearch-ld-<uid> made by someone else (simulated: a symlink): the ld shim goes to a
    # private directory under the user's cache directory instead.
    elsewhere = tmp_path / "theirs"
    elsewhere.mkdir()
    (tmp_path / "actsearch-ld-x").symlink_to(elsewhere)
    monkeypatch.setattr(inductor, "_link_root", lambda: tmp_path / "actsearch-ld-x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = inductor._private_link_root()
    assert root == tmp_path / "cache" / "actsearch" / f"ld-{os.getuid()}"
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    assert list(elsewhere.iterdir()) == []


def test_unknown_inductor_options_are_dropped_with_one_warning(monkeypatch):
    monkeypatch.setattr(torch_compat, "_warned_options", set())
    options = {"cpp.enable_loop_tail_vec": False, "actsearch_no_such_option": 3}
    with pytest.warns(RuntimeWarning, match="actsearch_no_such_option"):
        assert torch_compat.filter_inductor_options(options) == {"cpp.enable_loop_tail_vec": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per key
        torch_compat.filter_inductor_options(options)
    # a renamed key in actsearch's own options: every compile still works, without it
    monkeypatch.setattr(inductor, "INDUCTOR_OPTIONS", {**inductor.INDUCTOR_OPTIONS, "actsearch_renamed_key": 1})
    monkeypatch.setattr(torch_compat, "_warned_options", set())
    with pytest.warns(RuntimeWarning, match="actsearch_renamed_key"):
        fn = inductor.compile_fused(lambda t: torch.exp(t) * 0.3187 + t)
    t = torch.randn(100)
    torch.testing.assert_close(fn(t), torch.exp(t) * 0.3187 + t)


def test_pyproject_declares_the_tested_torch_range():
    text = (ROOT / "pyproject.toml").read_text()
    (low, high) = torch_compat.TESTED_TORCH[0], torch_compat.TESTED_TORCH[-1]
    assert f'"torch>={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}"' in text


@pytest.mark.slow
def test_the_kernel_suites_pass_with_every_patch_off(tmp_path):
    """The kernel test suites, run with ACTSEARCH_TORCH_PRIVATE=0 (public torch.compile and eager only):
    every output and gradient check passes; only the tests that assert a private mechanism itself
    (marked private_torch) are skipped.  ~10 min on 2 cores."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, ACTSEARCH_TORCH_PRIVATE="0", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                        "tests/test_kernels.py", "tests/test_population_kernel.py", "tests/test_codegen_regressions.py",
                        "tests/test_fast_math.py"], cwd=root, env=env, capture_output=True, text=True, timeout=3000)
    tail = r.stdout[-3000:]
    assert r.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail
