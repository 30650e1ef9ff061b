"""benchmarks/bench_table_strategies.py on a known table (the ratio-test space, fake training): the top-1%
set, evaluations-to-top-1% against the store's evaluation order, best-true-score curves, the JSON."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from actsearch.search import SearchConfig, SearchDriver
from actsearch.staging import estimate_score
from actsearch.store import ResultStore
from actsearch.tabular import load_table
from fake_training import ratio_table

TASKS = ["digits-cnn", "mnist1d-mlp"]
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("ratio_space")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_table_strategies",
                                                  ROOT / "benchmarks" / "bench_table_strategies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def table_path(tmp_path):
    """Every candidate of the ratio space on two tasks x 5 seeds (fake training), as a table."""
    return ratio_table(tmp_path, TASKS)[0]


def _direct_truth(table):
    seeds = table["seeds"]
    base = {t: {b: dict(zip(seeds, v)) for b, v in table["baselines"][t].items()} for t in TASKS}
    return {c["id"]: estimate_score({t: dict(zip(seeds, c["acc"][t])) for t in TASKS}, base, table["chance"],
                                    {t: seeds for t in TASKS}).score
            for c in table["candidates"] if not c["rejected"]}


def test_strategy_metrics_on_a_known_table(table_path, tmp_path, monkeypatch):
    mod = _bench()
    table = load_table(table_path)
    assert len(table["candidates"]) == 23
    truth = _direct_truth(table)
    best = max(truth.values())
    want_top = {c for c, v in truth.items() if v == best}

    # keep each run's store to check the evaluation order against it
    orders: dict = {}
    real = mod.run_search

    def spy(*args, **kwargs):
        run = real(*args, **kwargs)
        orders[(run["strategy"], run["seed"])] = run
        return run

    monkeypatch.setattr(mod, "run_search", spy)
    out = tmp_path / "res.json"
    result = mod.main(["--table", str(table_path), "--strategies", "random,evolution", "--seeds", "3",
                       "--budget", "15", "--checkpoints", "5,10,15,50", "--batch", "3", "--out", str(out)])

    assert set(result["table"]["top1"]) == want_top and result["table"]["top1_size"] == len(want_top)
    assert result["table"]["top1_threshold"] == pytest.approx(float(np.percentile(list(truth.values()), 99)))
    bench = mod.Bench(table_path)
    assert bench.truth.keys() >= truth.keys()
    assert all(bench.truth[c] == pytest.approx(v) for c, v in truth.items())

    for s in ("random", "evolution"):
        runs = result["strategies"][s]["runs"]
        assert len(runs) == 3
        for r in runs:
            run = orders[(s, r["seed"])]
            assert run["budget"] == 15 and r["evaluated"] == len(run["order"]) <= 15
            pos = next((i + 1 for i, c in enumerate(run["order"]) if c in want_top), None)
            assert r["evals_to_top1"] == pos
            curve = r["curve"]
            assert len(curve) == len(run["order"])
            assert all(b >= a for a, b in zip(curve, curve[1:]) if a is not None)
            assert curve[-1] == pytest.approx(max(truth[c] for c in run["order"] if c in truth))
            assert set(r["best_true_at"]) == {"5", "10", "15"}  # 50 > budget is left out
            assert r["best_true_at"]["5"] <= r["best_true_at"]["10"] <= r["best_true_at"]["15"]
            assert r["lookups"] == r["evaluations"] > 0
        summ = result["strategies"][s]["summary"]
        e = [r["evals_to_top1"] if r["evals_to_top1"] is not None else 16 for r in runs]
        assert summ["evals_to_top1"]["median"] == pytest.approx(float(np.median(e)))
        assert summ["evals_to_top1"]["q25"] == pytest.approx(float(np.percentile(e, 25)))
        assert summ["never_found"] == sum(1 for r in runs if r["evals_to_top1"] is None)
        for k in ("5", "10", "15"):
            assert {"median", "q25", "q75"} <= set(summ["best_true_at"][k])

    # the evaluation order matches a store: rerun one search by hand and read its store
    cfg = SearchConfig(space="ratio-test", strategy="random", tasks=TASKS, seeds=2, budget=15, seed=1, batch=3,
                       rungs="flat", executor=f"table:{table_path}", validate_top=0)
    SearchDriver(cfg, tmp_path / "check", executor=mod._executor_class()(cfg, table_path)).run()
    with ResultStore(tmp_path / "check", mode="read") as store:
        order = [r["id"] for r in sorted(store.ranked(), key=lambda r: r["order"])]
    assert order == orders[("random", 1)]["order"]

    saved = json.loads(out.read_text())
    for s in ("random", "evolution"):
        m = saved["strategies"][s]["summary"]
        assert m["evals_to_top1"]["median"] is not None and m["evals_to_top1"]["q75"] >= m["evals_to_top1"]["q25"]
        assert m["best_true_at"]["15"]["median"] is not None

    # the figure script reads the JSON: curves are the medians / IQRs of the per-run curves
    spec = importlib.util.spec_from_file_location("plot_table_strategies",
                                                  ROOT / "benchmarks" / "plot_table_strategies.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    x, med, q25, q75 = plot.curves(saved)["random"]
    assert len(x) == 15 and np.all(q25 <= med) and np.all(med <= q75)
    last = [r["curve"][-1] for r in saved["strategies"]["random"]["runs"]]
    assert med[-1] == pytest.approx(float(np.median(last)))
    fig = plot.main([str(out), "--out", str(tmp_path / "fig.png"), "--json"])
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert fig["median_evals_to_top1"]["evolution"] == saved["strategies"]["evolution"]["summary"]["evals_to_top1"]["median"]


def test_staged_vs_flat_at_equal_lookups(table_path):
    mod = _bench()
    result = mod.compare(str(table_path), ["random"], seeds=2, budget=15, rungs="flat", batch=3, checkpoints=(5, 15),
                         compare_staging="random", flat_seeds=5)
    sg = result["staging"]
    for st, fl in zip(sg["runs"]["staged"], sg["runs"]["flat"]):
        assert abs(fl["lookups"] - st["lookups"]) <= 5 * len(TASKS) or fl["evaluated"] < fl["budget"]
        for r in (st, fl):
            assert r["lookups_to_top1"] is None or 0 < r["lookups_to_top1"] <= r["lookups"]
    assert {"staged", "flat"} == set(sg["summary"]) and sg["summary"]["flat"]["best_true"]["median"] is not None
    assert "| staged |" in mod.markdown(result)


def test_strategy_specs_carry_options():
    mod = _bench()
    assert mod.parse_strategy("random") == ("random", {})
    assert mod.parse_strategy("surrogate:max_features=0.33:n_startup=5:regressor=gp") == (
        "surrogate", {"max_features": 0.33, "n_startup": 5, "regressor": "gp"})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        mod.parse_strategy("surrogate:max_features")


SHIPPED = ROOT / "benchmarks" / "tables" / "pangaea-mnist1d-mlp-digits-cnn-5seeds.json.gz"
# PANGAEA with 14 of its unary operators (7 binary x 14 x 14 = 1,372 genomes): a subspace whose every
# candidate the shipped table holds, small enough to featurise in seconds
SUBSPACE_UNARY = ["zero", "one", "identity", "neg", "abs", "square", "exp", "tanh", "sigmoid", "relu", "elu",
                  "softplus", "softsign", "erf"]


def test_the_shipped_table():
    table = load_table(SHIPPED)
    assert table["tasks"] == ["mnist1d-mlp", "digits-cnn"] and len(table["seeds"]) == 5
    assert len(table["candidates"]) == 2265  # every distinct candidate of PANGAEA that passed screening
    prov = table["provenance"]
    assert prov["space"] == "pangaea" and prov["command"].startswith("actsearch bench space")
    assert prov["versions"]["torch"] and prov["worker_s"] > 3600 and prov["span_s"] > 3600
    for t in table["tasks"]:
        assert set(table["baselines"][t]) >= {"relu", "gelu", "silu"}
        assert all(len(v) == 5 for v in table["baselines"][t].values())
    assert SHIPPED.stat().st_size < 3_000_000


def random_reference(space_options: dict, top: set, searches: int = 2000, seed: int = 0) -> float:
    """Median number of evaluations until uniform random sampling of the subspace's genomes (each new
    candidate counted once, as the driver dedups) reaches a top-1% candidate: simulated directly from the
    genome -> candidate map, no searches."""
    import random

    from actsearch.search_spaces import get_space
    from actsearch.surrogate_features import genome_features

    sp = get_space("pangaea", **space_options)
    ids = [genome_features(sp, g)[0] for g in sp.enumerate()]
    rng = random.Random(seed)
    firsts = []
    for _ in range(searches):
        seen: set = set()
        order = list(range(len(ids)))
        rng.shuffle(order)  # genomes without replacement, as the random strategy avoids repeats
        for i in order:
            cid = ids[i]
            if cid is None or cid in seen:
                continue
            seen.add(cid)
            if cid in top:
                break
        firsts.append(len(seen))
    return float(np.median(firsts))


def test_strategies_on_a_subspace_of_the_shipped_table():
    """The comparison of issue 16 in small (~30 s): on a PANGAEA subspace of the shipped table,
    evaluations until a top-1% candidate (of the subspace) is evaluated.  The surrogate (3 search seeds,
    through the driver and the table executor) needs at most 0.6 x the median of random sampling
    (simulated exactly, 2,000 times); a regression in the surrogate, the features or the table executor
    breaks it.  (Measured: random 84.5 through the driver, 16 seeds; the surrogate 57, 51, 33, 24.)"""
    mod = _bench()
    bench = mod.Bench(str(SHIPPED), space_options={"unary": SUBSPACE_UNARY})
    assert 300 < len(bench.truth) < len(load_table(SHIPPED)["candidates"])
    rand = random_reference({"unary": SUBSPACE_UNARY}, bench.top)
    res = mod.compare(str(SHIPPED), ["surrogate"], seeds=3, budget=60, checkpoints=(60,), bench=bench)
    sur = res["strategies"]["surrogate"]["summary"]
    print(f"\nsubspace: {len(bench.truth)} candidates, top 1% {len(bench.top)}; evals to top 1%: random median "
          f"{rand}, surrogate {[r['evals_to_top1'] for r in res['strategies']['surrogate']['runs']]}")
    assert 60 < rand < 120
    assert sur["evals_to_top1"]["median"] <= 0.6 * rand and sur["never_found"] == 0
