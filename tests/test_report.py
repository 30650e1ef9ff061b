"""The HTML report of a run: the validation forest plot and table (only for a validated run), the
top-candidates table's rung and interval columns, score by rung (only for a staged run), and the Pareto
plot (only for a run with a cost objective).  Searches and validations use the fake executor of
tests/fake_training.py (no training), so this runs in seconds."""
from __future__ import annotations

import re

import pytest

import actsearch.search_spaces as spaces_mod
from actsearch.report import (FOREST_TITLE, PARETO_TITLE, SCORE_BY_RUNG_TITLE, build_report, forest_plot,
                              has_cost_objective, score_by_rung_plot)
from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore
from actsearch.validation import validate_store
from fake_training import PlanExecutor
from fake_training import RatioSpace

VALIDATION_TASKS = ["digits-cnn", "mnist1d-mlp"]


pytestmark = pytest.mark.usefixtures("ratio_space")  # conftest.py: the fake space "ratio-test"


def run_config(**kw):
    # one search task, so that mnist1d-mlp is a held-out task of the validation
    base = dict(space="ratio-test", strategy="random", tasks=["digits-cnn"], budget=12, seeds=2, batch=3,
                executor="local", seed=1)
    base.update(kw)
    return SearchConfig(**base)


class CostExecutor(PlanExecutor):
    """PlanExecutor whose reports carry a measured kernel cost, as a worker's do with --objectives score,cost."""

    def wait(self):
        out = super().wait()
        for outcome in out:
            for cid, report, worker, wall in outcome:
                report["cost"] = 1.0 + (sum(map(ord, cid)) % 7) / 10
        return out


def _report(run, tmp_path, name="report.html") -> str:
    out = tmp_path / name
    assert build_report(str(run), str(out)) == str(out)
    return out.read_text(encoding="utf-8")


def _sections(doc: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", doc)


def _validation_table(doc: str) -> str:
    m = re.search(r"<table class='validation'>(.*?)</table>", doc, re.S)
    assert m, "no validation table"
    return m.group(1)


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    """A staged, score-only run (3 rungs), its report before validation, the validation summary and
    its report after validation."""
    mp = pytest.MonkeyPatch()  # the autouse fixture is per test; this fixture runs before it
    mp.setitem(spaces_mod.SPACES, "ratio-test", RatioSpace)
    try:
        tmp = tmp_path_factory.mktemp("staged")
        run = tmp / "run"
        SearchDriver(run_config(), run, executor=PlanExecutor()).run()
        before = _report(run, tmp, "before.html")
        with ResultStore(run, mode="write") as store:
            summary = validate_store(store, PlanExecutor(), top=3, seeds=5, tasks=VALIDATION_TASKS)
        after = _report(run, tmp, "after.html")
        with ResultStore(run, mode="read") as store:
            rung_rows, ranked, cfg = store.rung_rows(), store.ranked(), store.config()
    finally:
        mp.undo()
    return {"run": run, "before": before, "after": after, "summary": summary, "rung_rows": rung_rows,
            "ranked": ranked, "config": cfg}


def test_a_run_never_validated_has_no_forest_plot_nor_validation_table(staged_run):
    doc = staged_run["before"]
    assert FOREST_TITLE not in doc and "class='validation'" not in doc
    assert "Best score vs evaluations" in _sections(doc)


def test_a_validated_run_has_the_forest_plot_and_a_row_per_validated_candidate(staged_run):
    doc, summary = staged_run["after"], staged_run["summary"]
    assert len(summary["candidates"]) == 3 and summary["held_out"] == ["mnist1d-mlp"]
    sections = _sections(doc)
    assert FOREST_TITLE in sections and "Validation" in sections
    # the forest plot is an embedded image right after its title
    assert re.search(re.escape(f"<h2>{FOREST_TITLE}</h2>") + r"<img src='data:image/png;base64,[A-Za-z0-9+/=]{100,}'",
                     doc)
    table = _validation_table(doc)
    for header in ("rung", "search score", "fresh-seed score", "gap", "held-out score", "verdict"):
        assert f"{header}" in table
    for cand in summary["candidates"]:
        assert cand["id"] in table and cand["formula"] in table
        assert cand["verdict"] in table
        assert f"{cand['fresh']['score']:+.4f}" in table and f"{cand['held_out']['score']:+.4f}" in table
    # one row per candidate, then the non-ReLU baselines as references
    assert table.count("<tr class='verdict-") == 3 and table.count("<tr class='reference'>") == 2


def test_the_forest_plot_rows_markers_and_significance(staged_run):
    import matplotlib.pyplot as plt

    summary = staged_run["summary"]
    fig = forest_plot(summary)
    try:
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        # a group title per candidate (its formula), then one row per validation task
        for cand in summary["candidates"]:
            i = labels.index(cand["formula"])
            assert labels[i + 1].startswith("digits-cnn") and "(held out)" not in labels[i + 1]
            assert labels[i + 2].startswith("mnist1d-mlp (held out)")
        assert len(labels) == 3 * (1 + len(VALIDATION_TASKS))
        # a vertical line at 0
        assert any(list(line.get_xdata()) == [0, 0] for line in ax.lines)
        # filled markers exactly for the Holm-significant comparisons drawn (best baseline and ReLU)
        drawn = [(v, t) for c in summary["candidates"] for t in c["tasks"].values()
                 for b, v in t["vs"].items() if b in (t["best_baseline"], "relu")]
        markers = [ln for ln in ax.lines if ln.get_marker() in ("o", "s")]
        assert len(markers) == len(drawn)
        significant = sum(v["p_holm"] < summary["alpha"] for v, _ in drawn)
        filled = sum(ln.get_markerfacecolor() != "white" for ln in markers)
        assert filled == significant
        # the figure grows with its rows
        one = forest_plot({**summary, "candidates": summary["candidates"][:1]})
        assert fig.get_figheight() > one.get_figheight()
    finally:
        plt.close("all")
    assert forest_plot({**summary, "candidates": []}) is None


def test_the_top_table_has_rung_and_interval_and_a_staged_run_plots_score_by_rung(staged_run):
    doc, ranked = staged_run["after"], staged_run["ranked"]
    head = re.search(r"<h2>Top candidates</h2>.*?<tr>(.*?)</tr>", doc, re.S).group(1)
    assert "<th>rung</th>" in head and "<th>95% CI</th>" in head
    best = ranked[0]
    assert best["rung"] == 2 and best["ci"] is not None
    assert f"<td>[{best['ci'][0]:+.3f}, {best['ci'][1]:+.3f}]</td><td>2</td>" in doc
    assert SCORE_BY_RUNG_TITLE in _sections(doc)
    assert len({r["rung"] for r in staged_run["rung_rows"] if r["status"] == "done"}) == 3


def test_a_score_only_run_has_no_pareto_plot(staged_run):
    assert staged_run["config"]["objectives"] == ["score"]
    assert "Pareto" not in staged_run["after"] and "Pareto" not in staged_run["before"]


def test_a_run_with_a_cost_objective_has_a_pareto_plot_and_a_flat_run_no_score_by_rung(tmp_path):
    run = tmp_path / "run"
    SearchDriver(run_config(objectives=["score", "cost"], rungs="flat", budget=8), run, executor=CostExecutor()).run()
    with ResultStore(run, mode="read") as store:
        ranked = store.ranked()
        rung_rows = store.rung_rows()
    assert ranked and all(r["cost"] is not None for r in ranked)
    doc = _report(run, tmp_path)
    sections = _sections(doc)
    assert PARETO_TITLE in sections
    assert SCORE_BY_RUNG_TITLE not in sections and score_by_rung_plot(rung_rows) is None  # one rung
    assert FOREST_TITLE not in doc  # never validated


def test_the_pareto_plot_needs_a_cost_objective_and_a_cost_for_every_candidate():
    rows = [{"score": 0.1, "cost": 1.0}, {"score": 0.2, "cost": 2.0}]
    assert has_cost_objective({"objectives": ["score", "cost"]}, rows)
    assert not has_cost_objective({"objectives": ["score"]}, rows)
    assert not has_cost_objective({}, rows)
    assert not has_cost_objective({"objectives": ["score", "cost"]}, rows + [{"score": 0.3, "cost": None}])
    assert not has_cost_objective({"objectives": ["score", "cost"]}, [])
