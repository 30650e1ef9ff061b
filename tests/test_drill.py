"""The reliability drill (actsearch/drill.py): no candidate of any search space may crash a stage or give
NaN/Inf in its kernels after passing screening.  The quick drill runs in the default suite; the large one
is marked slow (`make test-all`); `python benchmarks/drill.py --total 10000` is the full run."""
import json
import subprocess
import sys

import pytest
import torch

from actsearch.drill import OUTCOMES, DrillReport, run_drill, space_variants
from actsearch.rejection import RejectionReason
from actsearch.search_spaces import SPACES

torch.set_num_threads(2)


def _assert_clean(report: DrillReport, n: int) -> None:
    assert report.unexplained == [], report.summary()
    assert report.non_finite == [], report.summary()
    assert report.compile_fallbacks == [], report.summary()
    assert report.ok
    variants = space_variants()
    assert set(SPACES) <= set(report.spaces) == set(variants)  # every registered space, and its variants
    for name, counts in report.spaces.items():
        assert sum(counts.values()) == n, (name, counts)
        assert set(counts) <= set(OUTCOMES)
        assert counts.get("passed", 0) > 0, (name, counts)
    assert set(report.reasons) <= {r.value for r in RejectionReason}
    screened = report.reasons.get(RejectionReason.SCREENED_OUT.value, 0)
    assert (screened > 0) == bool(report.screening_codes)
    assert sum(report.screening_codes.values()) >= screened  # a screened_out may fail several checks


def test_quick_drill_finds_no_unexplained_exception_and_no_nan():
    report = run_drill(30, compiled_sample=2, seed=0)  # ~30 s here
    _assert_clean(report, 30)
    assert report.compiled_checked == 2
    assert report.eager_checked == sum(c.get("passed", 0) + c.get("kernel_non_finite", 0)
                                       for c in report.spaces.values())
    assert {"prepare", "fingerprint", "screen", "codegen", "eager", "compiled", "total"} <= set(report.timings)
    d = json.loads(report.to_json())
    assert d["ok"] and d["unexplained_count"] == 0 and d["non_finite_count"] == 0


def test_drill_records_unexplained_exceptions_with_formula_and_traceback(monkeypatch):
    def broken(candidate, groups=32):
        raise KeyError("printer bug")

    monkeypatch.setattr("actsearch.kernels.fused.generate_source", broken)
    monkeypatch.setattr("actsearch.kernels.fused._KERNELS", {})
    report = run_drill(3, spaces=["swish"], compiled_sample=0, seed=5)
    assert not report.ok and report.unexplained
    f = report.unexplained[0]
    assert f.stage == "codegen" and f.error_type == "KeyError" and "printer bug" in f.detail
    assert f.formula and f.genome is not None and "broken" in f.traceback
    assert report.reasons.get("codegen_error", 0) >= 1


def test_drill_script_prints_json(tmp_path):
    out = tmp_path / "drill.json"
    r = subprocess.run([sys.executable, "benchmarks/drill.py", "--n", "3", "--spaces", "swish",
                        "--compiled-sample", "0", "--json", "--quiet", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert d["ok"] and sum(d["spaces"]["swish"].values()) == 3
    assert json.loads(out.read_text()) == d


@pytest.mark.slow
def test_large_drill_finds_no_unexplained_exception_and_no_nan():
    report = run_drill(500, compiled_sample=8, seed=1)
    _assert_clean(report, 500)
