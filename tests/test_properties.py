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


# ---- normalization-activation layers (properties.analyze_layer) ---------------------------------------
LAYERS = {
    "bn_relu": ("relu((x - batch_mean(x))/batch_std(x))", None),
    "b0": ("x/max(batch_std(x), v*x + instance_std(x))", {"v": 1.0}),
    "s0": ("x*sigmoid(v*x)/group_std(x)", {"v": 1.0}),
    "gn": ("(x - group_mean(x))/group_std(x)", None),
    "ln": ("x/layer_std(x)", None),
    "s0_v0": ("x*sigmoid(0*x)/group_std(x)", None),  # v = 0: x/(2 group_std(x)), scale invariant
}


@pytest.mark.parametrize("name, expect", [
    ("bn_relu", dict(moments=["batch_mean(x)", "batch_std(x)"], scopes=["batch"], needs_running_statistics=True,
                     batch_dependent=True, channel_independent=True, group_independent=True, scale_invariant=True,
                     shift_invariant=True)),
    ("b0", dict(moments=["batch_std(x)", "instance_std(x)"], scopes=["batch", "instance"],
                needs_running_statistics=True, batch_dependent=True, channel_independent=True,
                group_independent=True, scale_invariant=True, shift_invariant=False)),
    ("s0", dict(moments=["group_std(x)"], scopes=["group"], needs_running_statistics=False, batch_dependent=False,
                channel_independent=False, group_independent=True, scale_invariant=False, shift_invariant=False)),
    ("gn", dict(needs_running_statistics=False, batch_dependent=False, channel_independent=False,
                group_independent=True, scale_invariant=True, shift_invariant=True)),
    ("ln", dict(scopes=["layer"], batch_dependent=False, channel_independent=False, group_independent=False,
                scale_invariant=True, shift_invariant=False)),
    ("s0_v0", dict(scale_invariant=True, shift_invariant=False)),
])
def test_layer_properties(name, expect):
    formula, params = LAYERS[name]
    p = analyze(parse_formula(formula, params=params))
    assert p["kind"] == "normalization-activation"
    for k, v in expect.items():
        assert p[k] == v, (name, k, p[k])


def test_layer_invariance_deviations_are_eps_sized_or_large():
    """Scale invariance holds up to the eps inside each std (~1e-4 of the output's RMS on the probe), exact
    shift invariance to round-off; S0's v*x inside the sigmoid breaks scale invariance by O(1)."""
    bn, b0, s0 = (analyze(parse_formula(*LAYERS[n])) for n in ("bn_relu", "b0", "s0"))
    assert 1e-6 < bn["scale_deviation"] < 1e-3 and bn["shift_deviation"] < 1e-12
    assert 1e-6 < b0["scale_deviation"] < 1e-3 and b0["shift_deviation"] > 1
    assert s0["scale_deviation"] > 0.5
    assert "running statistics at inference" in bn["inference"] and "no running" in s0["inference"]
