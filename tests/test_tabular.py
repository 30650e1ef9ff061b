"""Tabular benchmarks: a table written from a run's store, the table executor answering exactly what
the store holds (any seeds a plan asks for, the baselines paired), staged searches on a table, clear
refusals (not in the table, seeds it lacks, a foreign file), and a tiny real `bench space`."""
from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from actsearch.cli import app
from actsearch.search import SearchConfig
from actsearch.store import ResultStore
from actsearch.tabular import TableError, TableExecutor, load_table
from fake_training import ratio_table

TASKS = ["digits-cnn", "mnist1d-mlp"]


pytestmark = pytest.mark.usefixtures("ratio_space")  # conftest.py: the fake space "ratio-test"


@pytest.fixture
def table_path(tmp_path):
    """Every candidate of the ratio space on two tasks x 5 seeds (fake training), as a table."""
    return ratio_table(tmp_path, TASKS)


def test_the_table_holds_what_the_store_holds(table_path):
    path, run = table_path
    table = load_table(path)
    assert table["tasks"] == TASKS and table["seeds"] == [0, 1, 2, 3, 4]
    assert table["provenance"]["space"] == "ratio-test" and table["provenance"]["command"] == "test"
    with ResultStore(run, mode="read") as store:
        n = store.n_results()
        some = table["candidates"][3]
        acc = store.accuracies(some["id"])
        base = store.baseline_accuracies()
    assert len(table["candidates"]) == n == 23  # the distinct slopes of the ratio space
    assert some["acc"]["mnist1d-mlp"] == pytest.approx([acc["mnist1d-mlp"][s] for s in range(5)], abs=1e-5)
    assert table["baselines"]["digits-cnn"]["gelu"] == pytest.approx([base["digits-cnn"]["gelu"][s]
                                                                       for s in range(5)], abs=1e-5)


def test_the_table_executor_answers_any_plan_with_paired_baselines(table_path):
    path, _ = table_path
    table = load_table(path)
    cfg = SearchConfig(space="ratio-test", tasks=TASKS, seeds=2, executor=f"table:{path}")
    ex = TableExecutor(cfg, path)
    row = table["candidates"][0]
    ex.submit([(row["id"], row["formula"], {})], {"mnist1d-mlp": [3, 4]})
    (cid, rep, worker, wall), = ex.wait()[0]
    t = rep["tasks"]["mnist1d-mlp"]
    assert cid == row["id"] and t["seeds"] == [3, 4] and t["candidate"]["per_seed"] == row["acc"]["mnist1d-mlp"][3:]
    assert t["baselines"]["relu"]["per_seed"] == table["baselines"]["mnist1d-mlp"]["relu"][3:]
    ex.submit([("act_not_there", "x", {}), (row["id"], row["formula"], {})], {"digits-cnn": [0, 7]})
    out = ex.wait()[0]
    assert "not in the table" in out[0][1]["rejected"] and "no seeds" in out[1][1]["rejected"]
    assert out[0][1]["rejection"]["code"] == "evaluation_error"


def test_a_staged_search_on_the_table_runs_in_seconds_and_finds_the_true_best(table_path, tmp_path):
    path, _ = table_path
    r = CliRunner().invoke(app, ["search", "--space", "ratio-test", "--strategy", "random", "--tasks", ",".join(TASKS),
                                 "--budget", "15", "--batch", "3", "--executor", f"table:{path}",
                                 "--run-dir", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["evaluated"] == 15 and summary["validation"] is None and "fresh" in summary["validation_skipped"]
    assert [k["completed"] for k in summary["rungs"]][0] == 15 and summary["rungs"][2]["completed"] >= 1
    assert summary["elapsed_s"] < 30


def test_bad_tables_are_refused(tmp_path, table_path):
    path, _ = table_path
    with pytest.raises(TableError, match="no table"):
        load_table(tmp_path / "none.json.gz")
    (tmp_path / "junk.json.gz").write_bytes(b"not gzip")
    with pytest.raises(TableError, match="not a readable"):
        load_table(tmp_path / "junk.json.gz")
    with gzip.open(tmp_path / "other.json.gz", "wt") as f:
        json.dump({"photos": []}, f)
    with pytest.raises(TableError, match="not an actsearch table"):
        load_table(tmp_path / "other.json.gz")
    with pytest.raises(ValueError, match="built from space"):
        SearchConfig(space="pangaea", tasks=TASKS, executor=f"table:{path}").validate()
    with pytest.raises(TableError, match="not mnist1d-cnn"):
        TableExecutor(SearchConfig(space="ratio-test", tasks=["mnist1d-cnn"]), path)
    r = CliRunner().invoke(app, ["search", "--executor", f"table:{tmp_path / 'none.json.gz'}", "--run-dir",
                                 str(tmp_path / "r")])
    assert r.exit_code == 2 and "no table" in r.output


def test_bench_space_trains_a_small_real_table_and_resumes(tmp_path):
    out = tmp_path / "tab"
    args = ["bench", "space", "--space", "pangaea", "--tasks", "digits-cnn", "--seeds", "2", "--steps", "10",
            "--limit", "3", "--executor", "local", "--out", str(out), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    table = load_table(result["table"])
    assert result["candidates"] == 3 == len(table["candidates"]) and table["seeds"] == [0, 1]
    assert all(len(c["acc"]["digits-cnn"]) == 2 and all(0 <= a <= 1 for a in c["acc"]["digits-cnn"])
               for c in table["candidates"])
    assert set(table["baselines"]["digits-cnn"]) >= {"relu", "gelu", "silu"}
    prov = table["provenance"]
    assert prov["worker_s"] > 0 and prov["span_s"] >= 0 and prov["wall_s"] >= prov["span_s"]
    again = CliRunner().invoke(app, args)  # a finished table: resumed, nothing trained again
    assert again.exit_code == 0 and json.loads(again.stdout)["candidates"] == 3
    for bad, match in ((["--seeds", "1"], "--seeds"), (["--limit", "0"], "--limit"), (["--executor", "gpu"], "executor")):
        r = CliRunner().invoke(app, ["bench", "space", "--out", str(tmp_path / "x"), *bad])
        assert r.exit_code == 2 and match in r.output


def test_table_statistics_count_significant_candidates_with_holm(table_path):
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    from actsearch.tabular import table_statistics

    path, _ = table_path
    table = load_table(path)
    s = table_statistics(table)
    assert s["valid"] == len(table["candidates"]) == 23
    t = "mnist1d-mlp"
    relu = table["baselines"][t]["relu"]
    ps = [stats.ttest_rel(c["acc"][t], relu).pvalue for c in table["candidates"]]
    adj = multipletests(ps, method="holm")[1]
    diffs = [sum(c["acc"][t]) / 5 - sum(relu) / 5 for c in table["candidates"]]
    assert s["tasks"][t]["baselines"]["relu"]["better"] == sum(1 for p, d in zip(adj, diffs) if p < 0.05 and d > 0)
    assert s["tasks"][t]["baselines"]["relu"]["worse"] == sum(1 for p, d in zip(adj, diffs) if p < 0.05 and d < 0)
    bh = multipletests(ps, method="fdr_bh")[1]
    assert s["tasks"][t]["baselines"]["relu"]["better_fdr"] == sum(1 for p, d in zip(bh, diffs) if p < 0.05 and d > 0)
    assert s["tasks"][t]["baselines"]["relu"]["worse_fdr"] == sum(1 for p, d in zip(bh, diffs) if p < 0.05 and d < 0)
    assert s["tasks"][t]["baselines"]["relu"]["better_raw"] == sum(1 for p, d in zip(ps, diffs) if p < 0.05 and d > 0)
    # BH is never stricter than Holm
    assert s["tasks"][t]["baselines"]["relu"]["worse_fdr"] >= s["tasks"][t]["baselines"]["relu"]["worse"]
    # the fake's qualities are the same on both tasks: their scores rank alike
    assert s["spearman"]["digits-cnn ~ mnist1d-mlp"] > 0.8
    assert s["top"][0]["formula"] and s["top"][0]["score"] >= s["top"][-1]["score"]
