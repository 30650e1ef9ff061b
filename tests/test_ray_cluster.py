"""A real Ray cluster: a head and a worker node started with `ray start` (own ports, own temp dir, own
authentication token), `actsearch search --address` against it as a subprocess, and `kill -9` of the
worker node's raylet and workers mid-search: the search completes on the head, every candidate is
recorded exactly once (nothing lost, nothing duplicated).

Never touches the test session's shared Ray (conftest.py) nor any other Ray on the machine: every process
is started here, found through its temp dir (/tmp/rc-XXXX: short, for Ray's unix socket paths) and the
`ray start --block` process trees, and stopped by PID (never `ray stop`, which stops every Ray of the user).

Ray resolves `--node-ip-address=127.0.0.1` to the machine's address when multi-node clusters are enabled
(`ray start` of a worker node refuses the single-machine switch, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0);
the nodes' servers then listen on that address, only for the test's duration and with token auth on.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from actsearch.ray_local import _alive, _stat, descendants, stop_processes

RAY = Path(sys.executable).with_name("ray")
pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
    pytest.mark.skipif(not RAY.exists(), reason="needs the `ray` command beside the interpreter"),
]
BUDGET = 8
STEPS = 100  # a second or two a candidate: a wide window to kill the worker node while it trains
START_TIMEOUT_S = 180
MARKER = "ACTSEARCH_TEST_RAY_CLUSTER"  # in the environment of every process of the test's cluster


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on every interface now (held together while chosen, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _has_marker(pid: int, marker: bytes) -> bool:
    """The process carries the cluster's marker in its environment (every process `ray start` and its
    raylets start inherits it, also one whose parent died and that was re-parented)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


class Cluster:
    """The processes of one `ray start` cluster: the two `ray start --block` processes, everything below
    them, and every process whose environment has the cluster's marker (MARKER=temp dir; a worker whose
    raylet died is re-parented).  A background thread records them every 0.5 s (pid -> start time, so a
    reused PID is never signalled)."""

    def __init__(self, root: str, env: dict):
        self.root, self.env = root, {**env, MARKER: root}
        self.marker = f"{MARKER}={root}".encode()
        self.known: dict[int, int] = {}
        self.starters: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def scan(self) -> None:
        found: dict[int, int] = {}
        for p in list(self.starters.values()):
            if p.poll() is None:
                found.update(descendants(p.pid))
        me = os.getpid()
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me and int(name) not in found and _has_marker(int(name), self.marker):
                fields = _stat(int(name))
                if fields and len(fields) > 19:
                    found[int(name)] = int(fields[19])
        with self.lock:
            self.known.update(found)

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            self.scan()

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        """`ray start ARGS --block`; returns once the node is up (its 'Ray runtime started' line)."""
        out = Path(self.root) / f"{name}.out"
        with open(out, "wb") as f:
            p = subprocess.Popen([str(RAY), "start", *args, "--block"], stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        self.starters[name] = p
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            text = out.read_text(errors="replace")
            if "Ray runtime started" in text:
                self.scan()
                return p
            if p.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"ray start {name} did not come up:\n{out.read_text(errors='replace')[-3000:]}")

    def node_processes(self, name: str) -> dict[int, int]:
        """The live processes below one node's `ray start` (its raylet, agents, workers ...)."""
        p = self.starters[name]
        return descendants(p.pid) if p.poll() is None else {}

    def kill_node(self, name: str) -> list[str]:
        """kill -9 of the node's raylet and everything below it (its workers); returns what was killed."""
        procs = self.node_processes(name)
        raylets = [pid for pid in procs if _cmdline(pid).split(" ")[0].endswith("/raylet")]
        assert raylets, f"no raylet below {name}'s ray start"
        victims = {}
        for r in raylets:
            victims[r] = procs[r]
            victims.update(descendants(r))
        killed = []
        for pid, start in victims.items():
            if _alive(pid, start):
                killed.append(_cmdline(pid)[:60])
                os.kill(pid, signal.SIGKILL)
        return killed

    def stop(self) -> list[int]:
        """SIGTERM then SIGKILL (after 5 s) every recorded process still alive; returns those left after."""
        self.scan()
        self.stopping.set()
        self.thread.join(timeout=5)
        self.scan()
        procs = dict(self.known)
        for p in self.starters.values():  # first the ray start processes: they end their node's processes
            if p.poll() is None:
                p.terminate()
        stop_processes(procs, grace_s=5.0)
        for p in self.starters.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.scan()  # anything that appeared meanwhile (e.g. a worker mid-spawn)
        for pid, start in self.known.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        return [p for p, s in self.known.items() if _alive(p, s)]


@pytest.fixture
def ray_start_cluster():
    """A head (1 CPU) and a worker node (1 CPU) started with `ray start` on 127.0.0.1, ports chosen free,
    temp dir /tmp/rc-XXXX, a token of its own; yields (cluster, head address, env for its clients)."""
    root = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    env = dict(os.environ)
    for k in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_TOKEN_PATH"):
        env.pop(k, None)  # the single-machine switch (set by embedded Ray in this process) forbids worker nodes
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    cluster = Cluster(root, env)
    try:
        hp = _free_ports(13)
        common = ["--node-ip-address=127.0.0.1", f"--temp-dir={root}", "--num-cpus=1", "--disable-usage-stats",
                  "--object-store-memory=100000000"]
        cluster.start("head", ["--head", f"--port={hp[0]}", "--include-dashboard=false", f"--dashboard-port={hp[1]}",
                               f"--ray-client-server-port={hp[2]}", *common, *_node_ports(hp[3:])])
        cluster.start("worker", [f"--address=127.0.0.1:{hp[0]}", *common, *_node_ports(_free_ports(10))])
        yield cluster, f"127.0.0.1:{hp[0]}", env
    finally:
        left = cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test cluster still alive: {left}"


def _node_ports(p: list[int]) -> list[str]:
    return [f"--node-manager-port={p[0]}", f"--object-manager-port={p[1]}", f"--metrics-export-port={p[2]}",
            f"--dashboard-agent-listen-port={p[3]}", f"--dashboard-agent-grpc-port={p[4]}",
            f"--runtime-env-agent-port={p[5]}", f"--worker-port-list={','.join(map(str, p[6:10]))}"]


def _db_rows(db: Path, sql: str) -> list:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _evaluating(procs: dict[int, int]) -> bool:
    return any(_cmdline(p).startswith("ray::EvaluationWorker.evaluate") for p in procs)


@pytest.mark.slow  # ~2 min on 2 busy cores: two `ray start` nodes, worker start-up, the search
@pytest.mark.timeout(900)
def test_search_on_a_ray_start_cluster_survives_kill_9_of_the_worker_node(ray_start_cluster, tmp_path):
    cluster, address, env = ray_start_cluster
    run = tmp_path / "run"
    db = run / "results.db"
    cmd = [sys.executable, "-m", "actsearch.cli", "search", "--space", "swish", "--strategy", "random",
           "--tasks", "digits-cnn", "--seeds", "1", "--steps", str(STEPS), "--batch", "1", "--rungs", "flat",
           "--budget", str(BUDGET), "--workers", "2", "--address", address, "--validate-top", "0", "--json",
           "--run-dir", str(run)]
    t0 = time.time()
    out, err = tmp_path / "search.out", tmp_path / "search.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        driver = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env)
    killed, before = [], None
    try:
        deadline = time.time() + 400
        while time.time() < deadline and driver.poll() is None:
            rows = _db_rows(db, "SELECT worker FROM results")
            # mid-search: results are coming in, and the worker node's actor is training a candidate
            if rows and _evaluating(cluster.node_processes("worker")):
                before = len(rows)
                killed = cluster.kill_node("worker")
                break
            time.sleep(0.2)
        assert killed, f"the worker node was never busy mid-search:\n{err.read_text()[-3000:]}"
        assert before < BUDGET
        driver.wait(timeout=max(1, deadline - time.time()))
    finally:
        if driver.poll() is None:
            driver.kill()  # only the driver this test started
            driver.wait()
    wall = time.time() - t0
    assert driver.returncode == 0, err.read_text()[-3000:]
    # Ray's driver prints the node-death notice ("(raylet) Raylet is terminated ...") to stdout, before
    # the --json summary (ray/_private/worker.py listen_error_messages, whatever log_to_driver says)
    text = out.read_text()
    summary = json.loads(text[text.index("\n{") + 1 if not text.startswith("{") else 0:])
    assert summary["evaluated"] == BUDGET

    results = _db_rows(db, "SELECT candidate_id, reason_code, worker, n FROM results ORDER BY n")
    assert len(results) == BUDGET and len({r[0] for r in results}) == BUDGET
    assert [r[3] for r in results] == list(range(1, BUDGET + 1))  # numbered in arrival order, none missing
    # none lost: every candidate trained to a result (a candidate may be rejected for what it is, e.g.
    # diverged, never for the node's death)
    lost = [r for r in results if r[1] in ("worker_lost", "timeout", "internal_error") or r[2] in ("lost", "timeout")]
    assert not lost, lost
    evals = _db_rows(db, "SELECT candidate_id, task, seed FROM evaluations")
    assert len(evals) == len(set(evals)) and {e[0] for e in evals} <= {r[0] for r in results}
    assert all(e[1:] == ("digits-cnn", 0) for e in evals)  # one training per candidate, none twice
    assert {r[0] for r in results if r[1] is None} <= {e[0] for e in evals}
    told = [c for (c,) in _db_rows(db, "SELECT candidate_id FROM events WHERE kind = 'tell'")]
    assert len(told) == len(set(told)) and {r[0] for r in results} <= set(told)  # each told once
    print(f"\ncluster search: {wall:.0f} s, worker node killed after {before} results: {killed}")
