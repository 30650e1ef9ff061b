"""Search on Ray and resume after killing the driver: real training on a tiny budget.

  * a two-node `ray.cluster_utils.Cluster`: one node is removed mid-run; its batch is retried on the
    other node and the run ends with exactly the budget, no evaluation lost or duplicated;
  * `kill -9` of a driver process, then `--resume`: nothing repeated (the store refuses a second
    result for a candidate), nothing lost, exactly the budget.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from actsearch.executor import RayExecutor
from actsearch.search import SearchConfig, SearchDriver
from actsearch.store import ResultStore
from fake_training import wait_for_results

TINY = dict(space="swish", strategy="random", tasks=["digits-cnn"], seeds=1, steps=40, batch=2, rungs="flat")


def test_two_node_search_survives_losing_a_node(ray_cluster, tmp_path):
    import ray

    node = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    cfg = SearchConfig(**TINY, budget=6, workers=2)
    cfg.validate()
    ex = RayExecutor(cfg, cache_dir=str(tmp_path / "cache"))
    assert ex.n_workers == 2 and ex.threads == 1
    assert len({ray.get(w.pid.remote()) for w in ex.idle}) == 2  # two worker processes, one per node
    removed = []
    submit = ex.submit

    def submit_then_remove(*args, **kwargs):
        # once both workers hold a batch, take the second node (and the worker on it) away: its batch is
        # then certainly in flight, so the test does not depend on which worker finishes first
        submit(*args, **kwargs)
        if not removed and len(ex.running) == 2:
            ray_cluster.remove_node(node)
            removed.append(len(ex.running))

    ex.submit = submit_then_remove
    try:
        summary = SearchDriver(cfg, tmp_path / "run", executor=ex).run()
    finally:
        ex.shutdown()
    assert removed
    assert summary["evaluated"] == 6
    store = ResultStore(tmp_path / "run", create=False)
    assert store.n_results() == 6 and store.evaluation_count() == 6  # one (candidate, task, seed) each
    assert ex.deaths >= 1  # the removed node's worker died and its batch was run again elsewhere


def test_unreachable_address_is_refused_before_anything_is_created(tmp_path):
    cfg = SearchConfig(**TINY, budget=2, address="127.0.0.1:1")
    with pytest.raises(ValueError, match="cannot reach a Ray cluster"):
        SearchDriver(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="HOST:PORT"):
        SearchDriver(SearchConfig(**TINY, budget=2, address="nonsense"), tmp_path / "run")


def _cli(*args):
    return [sys.executable, "-m", "actsearch.cli", "search", "--space", "swish", "--strategy", "evolution",
            "--tasks", "digits-cnn", "--seeds", "1", "--steps", "40", "--batch", "2", "--executor", "local",
            "--rungs", "flat", "--validate-top", "0", "--json", *args]


def test_kill_9_the_driver_then_resume(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, ACTSEARCH_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(_cli("--budget", "8", "--run-dir", str(run)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = run / "results.db"
    wait_for_results(db, 2, proc)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
    proc.wait()
    with sqlite3.connect(str(db)) as con:
        before = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 2 <= before < 8
    done = subprocess.run(_cli("--budget", "8", "--run-dir", str(run), "--resume"), env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["evaluated"] == 8
    store = ResultStore(run, create=False)
    assert store.n_results() == 8 and store.evaluation_count() == 8
    ns = [r[0] for r in store.history()]
    assert ns == list(range(1, 9))  # results numbered in arrival order, none missing, none twice
    kinds = [k for k, _, _ in store.events()]
    assert kinds.count("ask") == kinds.count("tell")
