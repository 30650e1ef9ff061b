"""Staged evaluation: rung specifications, score estimates, ASHA promotion (the true best is promoted,
the rate is about 1/eta), the driver with a fake executor of known qualities, resume in the middle of
rung 1 (nothing trained twice), and Holm's correction against statsmodels."""
from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from actsearch.search import SearchConfig, SearchDriver
from actsearch.evaluation import t_interval
from actsearch.staging import (AshaPromotions, Rung, default_rungs, estimate_score, parse_rungs, ranking_key,
                               rungs_spec)
from actsearch.store import ResultStore
from fake_training import PlanExecutor, ratio_quality

TASKS = ["digits-cnn", "mnist1d-mlp"]


pytestmark = pytest.mark.usefixtures("ratio_space")  # conftest.py: the fake space "ratio-test"


def staged_config(**kw):
    base = dict(space="ratio-test", strategy="random", tasks=list(TASKS), budget=20, seeds=2, batch=3,
                executor="local", seed=1)
    base.update(kw)
    return SearchConfig(**base)


# ------------------------------------------------------------------------------------------ rungs

def test_default_rungs_grow_tasks_and_seeds_to_every_task_with_five_seeds():
    assert [(len(r.tasks), r.seeds) for r in default_rungs(["a"])] == [(1, 2), (1, 3), (1, 5)]
    assert [(len(r.tasks), r.seeds) for r in default_rungs(["a", "b"])] == [(1, 2), (1, 3), (2, 5)]
    assert [(len(r.tasks), r.seeds) for r in default_rungs(list("abcd"))] == [(1, 2), (2, 3), (4, 5)]
    assert [(len(r.tasks), r.seeds) for r in default_rungs(["a"], seeds=5)] == [(1, 5)]
    assert [(len(r.tasks), r.seeds) for r in default_rungs(["a", "b"], seeds=6)] == [(1, 6), (2, 6)]
    for tasks in (["a"], ["a", "b", "c"]):
        last = default_rungs(tasks)[-1]
        assert list(last.tasks) == tasks and last.seeds >= 5


def test_rung_deltas_train_only_what_a_rung_adds():
    r0, r1, r2 = parse_rungs("1:2,1:3,all:5", TASKS)
    assert r0.pairs() == {"digits-cnn": [0, 1]}
    assert r1.delta(r0) == {"digits-cnn": [2]}
    assert r2.delta(r1) == {"digits-cnn": [3, 4], "mnist1d-mlp": [0, 1, 2, 3, 4]}
    assert rungs_spec([r0, r1, r2]) == "1:2,1:3,2:5"
    assert parse_rungs("flat", TASKS, seeds=3) == [Rung(0, tuple(TASKS), 3)]


@pytest.mark.parametrize("spec,match", [("1:2,1:1", "fewer tasks or seeds"), ("2:2,1:3", "fewer tasks"),
                                        ("1:2,1:2,2:5", "adds nothing"), ("1:2", "last rung uses 1 of the 2"),
                                        ("3:2", "give 1..2"), ("1-2", "TASKS:SEEDS"), ("all:0", "seeds"),
                                        ("all:x", "seeds")])
def test_bad_rung_specifications_are_refused_with_the_reason(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_rungs(spec, TASKS)


# ------------------------------------------------------------------------------------------ estimates

def test_the_estimate_is_the_evaluation_score_with_a_t_interval_in_score_units():
    from scipy import stats

    rng = random.Random(0)
    seeds = [0, 1, 2, 3]
    relu = {t: {s: 0.6 + rng.gauss(0, 0.02) for s in seeds} for t in TASKS}
    cand = {t: {s: relu[t][s] + 0.01 + rng.gauss(0, 0.01) for s in seeds} for t in TASKS}
    chance = {t: 0.1 for t in TASKS}
    est = estimate_score(cand, {t: {"relu": relu[t]} for t in TASKS}, chance, {t: seeds for t in TASKS})
    # evaluation.task_score averaged over tasks
    expected = statistics.fmean((statistics.fmean(cand[t].values()) - statistics.fmean(relu[t].values()))
                                / (statistics.fmean(relu[t].values()) - 0.1) for t in TASKS)
    assert est.score == pytest.approx(expected, abs=1e-12)
    lo, hi = stats.t.interval(0.95, len(seeds) - 1, loc=statistics.fmean(est.per_seed), scale=stats.sem(est.per_seed))
    assert est.ci == pytest.approx([lo, hi]) and est.lcb == pytest.approx(lo)
    assert est.vs["digits-cnn"]["relu"]["n"] == 4
    one = estimate_score(cand, {t: {"relu": relu[t]} for t in TASKS}, chance, {"digits-cnn": [0]})
    assert one.ci is None and one.lcb is None and t_interval([1.0]) is None
    missing = estimate_score(cand, {t: {"relu": relu[t]} for t in TASKS}, chance, {"digits-cnn": [0, 9]})
    assert missing.score is None and missing.missing == ["digits-cnn/9"]


def test_the_conservative_ranking_puts_a_narrow_interval_above_a_lucky_mean():
    lucky = ranking_key(0.12, -0.30)      # 2 seeds: large mean, wide interval
    solid = ranking_key(0.05, 0.02)       # 5 seeds x 2 tasks
    one_seed = ranking_key(0.5, None)
    rejected = ranking_key(0.9, 0.8, rejected=True)
    assert sorted([rejected, one_seed, lucky, solid]) == [solid, lucky, one_seed, rejected]


# ------------------------------------------------------------------------------------------ ASHA

def _simulate(values: list, eta: int, n_rungs: int, rung_noise: float, seed: int) -> AshaPromotions:
    """Results of candidates with true values `values` arrive one by one (in the given order); after each,
    every possible promotion is made and the promoted candidates' next-rung results arrive at once."""
    rng = random.Random(seed)
    asha = AshaPromotions(n_rungs, eta)

    def measure(cid, rung):
        return values[cid] + rng.gauss(0, rung_noise / (rung + 1))

    for cid in range(len(values)):
        asha.record(0, cid, measure(cid, 0))
        while True:
            rung, ids = asha.next_promotions(limit=100)
            if not ids:
                break
            for c in ids:
                asha.mark_promoted(rung, c)
                asha.record(rung + 1, c, measure(c, rung + 1))
    return asha


def test_asha_promotes_the_true_best_and_about_one_in_eta():
    rates = []
    for seed in range(20):
        rng = random.Random(seed)
        values = [rng.random() for _ in range(90)]
        best = max(range(90), key=values.__getitem__)
        asha = _simulate(values, eta=3, n_rungs=3, rung_noise=0.0, seed=seed)
        assert best in asha.done[2]  # without noise the true best always reaches the last rung
        n0, p0 = len(asha.done[0]), len(asha.promoted[0])
        assert p0 >= n0 // 3  # at the end the whole top third of rung 0 has been promoted
        assert len(asha.done[1]) == p0
        rates.append(p0 / n0)
    # asynchronous promotion from partial rungs promotes somewhat more than 1/eta (ASHA's known excess)
    assert 1 / 3 <= statistics.fmean(rates) <= 1 / 3 + 0.12, rates


def test_asha_top_third_of_each_rung_and_ties_go_to_the_earlier_result():
    asha = AshaPromotions(2, eta=3)
    for cid, v in [("a", 0.1), ("b", 0.3), ("c", 0.2)]:
        asha.record(0, cid, v)
    assert asha.promotable(0) == ["b"]
    asha.record(0, "d", None)  # rejected: never promoted, but it counts in n
    asha.record(0, "e", 0.3)
    assert asha.promotable(0) == ["b"]  # floor(5/3) = 1; e ties b and came later
    asha.record(0, "f", 0.0)
    assert asha.promotable(0) == ["b", "e"]
    assert asha.promotable(1) == []  # the last rung promotes nobody
    with pytest.raises(ValueError, match="eta"):
        AshaPromotions(2, eta=1)


# ------------------------------------------------------------------------------------------ the driver

def _rows(run):
    with ResultStore(run, mode="read") as s:
        return s.rung_rows(), s.ranked(), s.events()


def test_a_staged_search_promotes_the_true_best_and_trains_each_pair_once(tmp_path):
    ex = PlanExecutor()
    summary = SearchDriver(staged_config(), tmp_path / "run", executor=ex).run()
    assert summary["evaluated"] == 20
    assert max(ex.ledger.values()) == 1  # no (candidate, task, seed) trained twice
    rows, ranked, events = _rows(tmp_path / "run")
    done = {(r["candidate_id"], r["rung"]) for r in rows if r["status"] == "done"}
    assert all(r["status"] == "done" for r in rows)  # nothing left in flight
    by_rung = Counter(k for _, k in done)
    assert by_rung[0] == 20 and 0 < by_rung[1] < 20 and 0 < by_rung[2] <= by_rung[1]
    assert [r["completed"] for r in summary["rungs"]] == [by_rung[0], by_rung[1], by_rung[2]]
    assert summary["rungs"][2]["tasks"] == TASKS and summary["rungs"][2]["seeds"] == 5
    assert summary["rungs"][0]["trainings"] == 20 * 2
    assert summary["rungs"][1]["trainings"] == by_rung[1] * 1          # rung 1 adds seed 2 on task 1
    assert summary["rungs"][2]["trainings"] == by_rung[2] * (2 + 5)    # seeds 3-4 on task 1, 0-4 on task 2
    # the best candidate evaluated reaches the last rung and tops the conservative ranking
    with ResultStore(tmp_path / "run", mode="read") as s:
        quality = {r["id"]: ratio_quality(s.candidate(r["id"])["formula"]) for r in ranked}
    best = max(quality, key=quality.get)
    assert (best, 2) in done
    assert ranked[0]["id"] == best and ranked[0]["rung"] == 2 and ranked[0]["ci"] is not None
    # strategies were told the value at the highest rung: one update per genome per rung > 0 completed
    updates = [e for e in events if e[0] == "update"]
    assert len(updates) >= by_rung[1] + by_rung[2]


def test_a_flat_search_is_one_rung(tmp_path):
    ex = PlanExecutor()
    summary = SearchDriver(staged_config(rungs="flat", budget=9), tmp_path / "run", executor=ex).run()
    assert len(summary["rungs"]) == 1 and summary["rungs"][0]["completed"] == 9
    assert set(map(lambda k: k[1:], ex.ledger)) == {(t, s) for t in TASKS for s in (0, 1)}
    assert sum(ex.ledger.values()) == 9 * 2 * 2


@pytest.mark.parametrize("crash_after", [12, 14])
def test_resume_in_the_middle_of_rung_1_repeats_nothing(tmp_path, crash_after):
    ledger: Counter = Counter()
    cfg = staged_config(budget=18, batch=2)
    with pytest.raises(KeyboardInterrupt):
        SearchDriver(cfg, tmp_path / "run", executor=PlanExecutor(crash_after=crash_after, ledger=ledger)).run()
    rows, _, _ = _rows(tmp_path / "run")
    in_flight = {(r["candidate_id"], r["rung"]) for r in rows if r["status"] == "promoted"}
    assert any(k == 1 for _, k in in_flight) or any(r["rung"] == 1 and r["status"] == "done" for r in rows)
    before = dict(ledger)
    ex = PlanExecutor(ledger=ledger)
    summary = SearchDriver(staged_config(budget=18, batch=2, rungs=None), tmp_path / "run", resume=True,
                           executor=ex).run()
    assert summary["evaluated"] == 18
    assert max(ledger.values()) == 1, [k for k, v in ledger.items() if v > 1]  # nothing trained twice
    rows, _, _ = _rows(tmp_path / "run")
    done = {(r["candidate_id"], r["rung"]) for r in rows if r["status"] == "done"}
    assert in_flight <= done and all(r["status"] == "done" for r in rows)  # the promotions in flight were finished
    # the resumed run first resubmitted what was in flight, with the same plans
    assert len(ledger) > len(before)
    # and it trained exactly what an uninterrupted run trains for the promotions it made
    for (cid, rung) in done:
        plan = cfg.resolved_rungs()[rung].pairs()
        assert all(ledger[(cid, t, s)] == 1 for t, seeds in plan.items() for s in seeds)
    # a finished run resumed trains nothing more
    again = PlanExecutor()
    SearchDriver(staged_config(budget=18, batch=2), tmp_path / "run", resume=True, executor=again).run()
    assert sum(again.ledger.values()) == 0


def test_resume_refuses_other_rungs_and_adopts_the_runs_own(tmp_path):
    from actsearch.store import StoreError

    SearchDriver(staged_config(budget=6), tmp_path / "run", executor=PlanExecutor()).run()
    with pytest.raises(StoreError, match="rungs"):
        SearchDriver(staged_config(budget=6, rungs="flat"), tmp_path / "run", resume=True, executor=PlanExecutor())
    with pytest.raises(StoreError, match="eta"):
        SearchDriver(staged_config(budget=6, eta=4), tmp_path / "run", resume=True, executor=PlanExecutor())
    d = SearchDriver(staged_config(budget=6, rungs="1:2,1:3,all:5"), tmp_path / "run", resume=True,
                     executor=PlanExecutor())  # the same rungs, written another way
    d.close()


@pytest.mark.parametrize("kw,match", [({"rungs": "1:3,1:2"}, "rungs"), ({"eta": 1}, "eta"),
                                      ({"validate_top": -1}, "validate-top"), ({"validate_seeds": 1}, "validate-seeds"),
                                      ({"seeds": 1001}, "seeds")])
def test_bad_staging_options_are_refused(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        SearchDriver(staged_config(**kw), tmp_path / "run", executor=PlanExecutor())


# ------------------------------------------------------------------------------------------ statistics

def test_holm_matches_statsmodels_and_the_textbook_example():
    from statsmodels.stats.multitest import multipletests

    from actsearch.validation import holm

    p = [0.01, 0.04, 0.03, 0.005]
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = random.Random(3)
    many = [rng.random() ** 3 for _ in range(40)]
    assert holm(many) == pytest.approx(list(multipletests(many, method="holm")[1]))
    assert holm([]) == []


def test_paired_test_matches_scipy():
    from scipy import stats

    from actsearch.validation import paired_test

    a, b = [0.61, 0.64, 0.60, 0.66, 0.63], [0.60, 0.61, 0.60, 0.62, 0.61]
    r = paired_test(a, b)
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert r["diff"] == pytest.approx(statistics.fmean(x - y for x, y in zip(a, b)))
    assert paired_test([0.5, 0.6], [0.4, 0.5])["p"] == 0.0  # identical non-zero differences
    assert paired_test([0.5, 0.6], [0.5, 0.6])["p"] == 1.0


def test_history_is_rung_0_in_arrival_order_with_ids(tmp_path):
    SearchDriver(staged_config(budget=9), tmp_path / "run", executor=PlanExecutor()).run()
    with ResultStore(tmp_path / "run", mode="read") as s:
        hist = s.history()
        order = [r["id"] for r in sorted(s.ranked(), key=lambda r: r["order"])]
        rung0 = {r["candidate_id"]: r["score"] for r in s.rung_rows() if r["rung"] == 0}
    assert [h[0] for h in hist] == list(range(1, 10)) and [h[3] for h in hist] == order
    assert all(h[1] == rung0[h[3]] for h in hist)  # the rung-0 score, not the score at a higher rung
