import pytest

from actsearch.formula import parse_formula
from actsearch.properties import analyze


@pytest.mark.parametrize("text, expect", [
    ("tanh(x)", dict(monotonic="increasing", bounded_above=True, bounded_below=True, smooth=True,
                     zero_centred=True, parity="odd")),
    ("sigmoid(x)", dict(monotonic="increasing", bounded_above=True, bounded_below=True, zero_centred=False)),
    ("relu(x)", dict(monotonic="increasing", bounded_above=False, bounded_below=True, smooth=False)),
    ("x*sigmoid(x)", dict(monotonic=False, bounded_above=False, bounded_below=True, smooth=True, parity="none")),
    ("softsign(x)", dict(monotonic="increasing", bounded_above=True, bounded_below=True, parity="odd")),
    ("log(1 + x**2)", dict(bounded_above=False, bounded_below=True, parity="even", smooth=True)),
    ("sin(x)", dict(monotonic=False, bounded_above=True, bounded_below=True)),
    ("x**3", dict(monotonic="increasing", bounded_above=False, bounded_below=False, parity="odd")),
    ("-exp(-x)", dict(monotonic="increasing", bounded_above=True, bounded_below=False)),
    ("selu(x)", dict(monotonic="increasing", bounded_below=True, bounded_above=False)),
])
def test_properties(text, expect):
    p = analyze(parse_formula(text))
    for k, v in expect.items():
        assert p[k] == v, (text, k, p[k])


def test_swish_non_monotone_region():
    p = analyze(parse_formula("x*sigmoid(x)"))
    (lo, hi), = p["non_monotone_regions"]
    assert lo == -10.0 and hi == pytest.approx(-1.2785, abs=0.01)  # swish's minimum is at x = -1.2785
    assert p["f(0)"] == 0.0 and p["f'(0)"] == pytest.approx(0.5)


def test_tensor_candidate_properties_say_not_applicable():
    assert analyze(parse_formula("x/batch_std(x)"))["kind"] == "normalization-activation"
