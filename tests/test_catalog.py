import numpy as np
import pytest

from actsearch.catalog import load_catalog, nearest_known
from actsearch.formula import parse_formula
from actsearch.screening import screen_candidate


def test_catalog_size_and_fields():
    cat = load_catalog()
    assert len(cat) >= 80
    for k in cat.values():
        assert k.formula and k.reference and 1940 <= k.year <= 2026


def test_every_entry_parses_and_screens_clean():
    failures = {}
    for name, k in load_catalog().items():
        r = screen_candidate(k.candidate)
        if not r.passed:
            failures[name] = r.reasons
    assert not failures


@pytest.mark.parametrize("formula, expect", [
    ("x*sigmoid(x)", "silu"),
    ("x/(1+exp(-x))", "silu"),
    ("x*tanh(softplus(x))", "mish"),
    ("x*tanh(log(1+exp(x)))", "mish"),
    ("max(x, 0)", "relu"),
    ("0.5*x*(1+erf(x/sqrt(2)))", "gelu"),
])
def test_rediscoveries_are_recognised(formula, expect):
    best = nearest_known(parse_formula(formula))[0]
    assert best.distance < 1e-9
    same = [m.name for m in nearest_known(parse_formula(formula), k=10) if m.distance < 1e-9]
    assert expect in same


def test_novel_candidate_reports_distance_and_affine_distance():
    c = parse_formula("2*x*sigmoid(x) + 1")
    raw = nearest_known(c, k=len(load_catalog()))
    aff = nearest_known(c, k=3, affine=True)
    assert raw[0].distance > 0.1                       # not a rediscovery without rescaling
    assert aff[0].affine_distance < 1e-9               # but an affine image of SiLU
    assert [m.distance for m in raw] == sorted(m.distance for m in raw)
    silu = next(m for m in raw if m.name == "silu")
    assert silu.affine_distance < 1e-9


def test_distance_is_rms_on_normal_probes():
    from actsearch.identity import PROBE_NORMAL

    c = parse_formula("x*sigmoid(x) + 0.25")
    silu = next(m for m in nearest_known(c, k=len(load_catalog())) if m.name == "silu")
    assert silu.distance == pytest.approx(0.25, rel=1e-9)
    assert PROBE_NORMAL.size == 1000


def test_tensor_candidates_have_no_scalar_neighbours():
    assert nearest_known(parse_formula("x/batch_std(x)")) == []


def test_nan_candidate_is_infinitely_far():
    m = nearest_known(parse_formula("log(x)*exp(exp(exp(x)))"), k=1)[0]
    assert np.isinf(m.distance) or m.distance > 1e6
