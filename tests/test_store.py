"""The result store against bad input and damaged stores (issue 22, items 1-4), and its reason codes
(schema 2): one writer per run, refusal of foreign, empty, truncated and damaged files without writing
to them, read-only reading (also on read-only media), and schema-1 runs read as is and migrated on
resume.  Runs are made by the real driver with the fake executor of test_search (no training)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

import actsearch.store as store_mod
from actsearch.cli import app
from actsearch.search import SearchDriver
from actsearch.store import SCHEMA_VERSION, ResultStore, StoreError
from test_search import FakeExecutor, config

runner = CliRunner()
PAGE = 4096


pytestmark = pytest.mark.usefixtures("ratio_space")  # conftest.py: the fake space "ratio-test"


class PaddedExecutor(FakeExecutor):
    """FakeExecutor whose reports carry a log, so that a run of 8 fills more than 8 pages."""

    def wait(self):
        return [[(cid, {**rep, "log": "x" * 3000}, w, t) for cid, rep, w, t in out] for out in super().wait()]


def make_run(path, budget=8) -> None:
    SearchDriver(config(budget=budget), path, executor=PaddedExecutor()).run()
    assert os.path.getsize(path / "results.db") >= 10 * PAGE


def files(d) -> dict:
    """Every file in d: its bytes' hash, size and mtime."""
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            st = os.stat(p)
            with open(p, "rb") as f:
                out[name] = (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(r, fragment: str) -> None:
    assert r.exit_code == 2, r.output
    assert fragment in r.stderr, r.stderr
    assert "Traceback" not in r.output


def tables(db) -> list:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        names = sorted(n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    con.close()
    return names


# -- 1. one writer per run

def test_a_second_writer_is_refused_while_the_first_holds_the_run(tmp_path):
    run = tmp_path / "run"
    SearchDriver(config(budget=4), run, executor=FakeExecutor()).run()
    first = SearchDriver(config(budget=8), run, resume=True, executor=FakeExecutor())  # holds the lock
    with pytest.raises(StoreError, match="in use by another actsearch search"):
        SearchDriver(config(budget=8), run, resume=True, executor=FakeExecutor())
    with pytest.raises(StoreError, match="one writer per run"):
        ResultStore(run, mode="write")
    # readers need no lock: top reads the run while it is held
    assert len(json.loads(cli("top", run, "--json").stdout)) == 4
    log: list = []
    summary = first.run()  # ends by releasing the lock
    assert summary["evaluated"] == 8
    second = SearchDriver(config(budget=10), run, resume=True, executor=FakeExecutor(log=log)).run()
    assert second["evaluated"] == 10 and len(log) == len(set(log)) == 2
    with ResultStore(run, mode="read") as s:
        kinds = [k for k, _, _ in s.events()]
        cids = [r["id"] for r in s.ranked()]
    assert kinds.count("ask") == kinds.count("tell") and len(cids) == len(set(cids)) == 10


def test_the_lock_dies_with_its_process_so_a_killed_run_resumes_at_once(tmp_path):
    run = tmp_path / "run"
    SearchDriver(config(budget=4), run, executor=FakeExecutor()).run()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from actsearch.store import ResultStore
            store = ResultStore(sys.argv[1], mode="write")
            print("locked", flush=True)
            time.sleep(600)
        """), str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with ResultStore(run, mode="read") as s:
            events_before = len(s.events())
        r = cli("search", "--space", "ratio-test", "--tasks", "digits-cnn", "--executor", "local", "--budget", "8",
                "--run-dir", run, "--resume")
        refused(r, "in use by another actsearch search")
        assert f"pid {holder.pid}" in " ".join(r.stderr.split())
        with ResultStore(run, mode="read") as s:
            assert len(s.events()) == events_before  # the refused writer wrote nothing
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # only the process this test started
        holder.wait()
    log: list = []
    summary = SearchDriver(config(budget=8), run, resume=True, executor=FakeExecutor(log=log)).run()
    assert summary["evaluated"] == 8 and len(log) == len(set(log)) == 4


# -- 2. foreign and empty files

def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    run = tmp_path / "F"
    run.mkdir()
    db = run / "results.db"
    with sqlite3.connect(str(db)) as con:
        con.execute("CREATE TABLE photos(x)")
        con.execute("INSERT INTO photos VALUES ('holiday.jpg')")
    con.close()
    before = sha(db)
    refused(cli("top", run), "is not an actsearch results store")
    refused(cli("top", run), "photos")
    refused(cli("report", run, "-o", tmp_path / "r.html"), "is not an actsearch results store")
    refused(cli("export", f"{run}:act_0123456789abcdef"), "is not an actsearch results store")
    with pytest.raises(StoreError, match="is not an actsearch results store"):
        SearchDriver(config(), run, resume=True, executor=FakeExecutor())
    with pytest.raises(StoreError, match="already holds a run"):
        SearchDriver(config(), run, executor=FakeExecutor())
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match="left untouched"):
            ResultStore(run, mode=mode)
    assert sha(db) == before and tables(db) == ["photos"]  # no run tables were added
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("content, fragment", [(b"", "is empty (0 bytes)"),
                                               (b"holiday photos\n" * 500, "not an SQLite database")])
def test_an_empty_or_non_sqlite_results_db_is_refused_and_stays_as_it_is(tmp_path, content, fragment):
    run = tmp_path / "F"
    run.mkdir()
    (run / "results.db").write_bytes(content)
    refused(cli("top", run), fragment)
    refused(cli("search", "--space", "ratio-test", "--tasks", "digits-cnn", "--executor", "local", "--run-dir", run,
                "--resume"), fragment)
    with pytest.raises(StoreError, match="already holds a run"):
        ResultStore(run, mode="create")
    assert (run / "results.db").read_bytes() == content
    assert sorted(os.listdir(run)) == [".lock", "results.db"]  # the refused writer's lock file, nothing else


def finished_run_altered_by(run, budget: int, sql: str):
    """A finished run whose results.db was then changed behind the store's back by `sql`."""
    SearchDriver(config(budget=budget), run, executor=FakeExecutor()).run()
    with sqlite3.connect(str(run / "results.db")) as con:
        con.execute(sql)
    con.close()
    return run


def test_a_store_that_lacks_columns_of_its_version_is_refused(tmp_path):
    run = finished_run_altered_by(tmp_path / "r", 3, "ALTER TABLE results DROP COLUMN report")
    refused(cli("top", run), "lacks results.report")


def test_a_new_store_is_made_whole_or_not_at_all_and_only_where_none_exists(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "missing", mode="read")
    with pytest.raises(StoreError, match="nothing to resume"):
        ResultStore(tmp_path / "missing", mode="write")
    assert not (tmp_path / "missing").exists()  # neither made the directory
    with ResultStore(tmp_path / "new", mode="create") as s:
        assert s.meta("schema_version") == SCHEMA_VERSION and s.n_results() == 0
    assert sorted(os.listdir(tmp_path / "new")) == [".lock", "results.db"]  # no temporary file left
    with pytest.raises(StoreError, match="already holds a run"):
        ResultStore(tmp_path / "new", mode="create")
    with pytest.raises(ValueError, match="mode must be one of"):
        ResultStore(tmp_path / "new", mode="append")


# -- 3. damaged stores

def test_random_bytes_in_pages_5_to_7_are_refused_and_never_written(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    with open(bad / "results.db", "r+b") as f:  # dd if=/dev/urandom bs=4096 seek=4 count=3 conv=notrunc
        f.seek(4 * PAGE)
        f.write(random.Random(22).randbytes(3 * PAGE))
    before = sha(bad / "results.db")
    cid = json.loads(cli("top", run, "--json").stdout)[0]["id"]
    refused(cli("top", bad), "is damaged")
    refused(cli("report", bad, "-o", tmp_path / "r.html"), "is damaged")
    refused(cli("export", f"{bad}:{cid}"), "is damaged")
    refused(cli("search", "--space", "ratio-test", "--tasks", "digits-cnn", "--executor", "local", "--run-dir", bad,
                "--resume"), "is damaged")
    with pytest.raises(StoreError, match="is damaged"):
        SearchDriver(config(budget=10), bad, resume=True, executor=FakeExecutor())
    assert sha(bad / "results.db") == before


@pytest.mark.parametrize("cut, fragment", [(3248, "is not a whole number of 4096-byte pages"),
                                           (2 * PAGE, "where its header records")])
def test_a_truncated_copy_is_refused_not_shown_in_part(tmp_path, cut, fragment):
    run = tmp_path / "run"
    make_run(run)
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    os.truncate(bad / "results.db", os.path.getsize(run / "results.db") - cut)
    before = sha(bad / "results.db")
    refused(cli("top", bad), fragment)
    log: list = []
    with pytest.raises(StoreError, match=fragment):
        SearchDriver(config(budget=10), bad, resume=True, executor=FakeExecutor(log=log))
    assert log == [] and sha(bad / "results.db") == before


class _Broken:
    def execute(self, *a, **k):
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self):
        pass


def test_an_sqlite_error_met_later_while_reading_is_a_store_error(tmp_path, monkeypatch):
    run = tmp_path / "run"
    SearchDriver(config(budget=3), run, executor=FakeExecutor()).run()
    s = ResultStore(run, mode="read")
    s.db = _Broken()
    for read in (s.ranked, s.n_results, s.events, s.history, s.config, s.rejection_counts,
                 lambda: s.result("x"), lambda: s.candidate("x")):
        with pytest.raises(StoreError, match="is damaged or unreadable .*database disk image is malformed"):
            read()
    monkeypatch.setattr(ResultStore, "_db", lambda self: _Broken())
    refused(cli("top", run), "is damaged or unreadable")
    refused(cli("report", run, "-o", tmp_path / "r.html"), "is damaged or unreadable")


# -- 4. read-only reading

def test_top_report_and_export_read_a_read_only_run_without_changing_it(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    (run / "results.db").chmod(0o444)
    run.chmod(0o555)
    try:
        before = files(run)
        rows = json.loads(cli("top", run, "--json").stdout)
        assert len(rows) == 8
        assert cli("report", run, "-o", tmp_path / "r.html").exit_code == 0
        r = cli("export", f"{run}:{rows[0]['id']}")
        assert r.exit_code == 0 and "class Activation" in r.stdout
        assert files(run) == before  # same files (no -wal, -shm), same bytes, same mtimes
    finally:
        run.chmod(0o755)


def test_reading_never_writes_and_writing_needs_the_write_mode(tmp_path):
    run = tmp_path / "run"
    SearchDriver(config(budget=3), run, executor=FakeExecutor()).run()
    before = files(run)
    with ResultStore(run, mode="read") as s:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            s.db.execute("CREATE TABLE x (y)")  # the connection itself is read-only
        with pytest.raises(StoreError, match="opened read-only"):
            s.log_ask([0, 0])
        with pytest.raises(StoreError, match="opened read-only"):
            s.record_result("act_x", 0.0, {})
    assert ResultStore(run, create=False).mode == "read"  # the old spelling reads too
    assert files(run) == before


def _killed_writer(run) -> int:
    """A writer that records 3 results and dies by SIGKILL: its results are only in results.db-wal."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from actsearch.store import ResultStore
        s = ResultStore(sys.argv[1], mode="write")
        for i in range(3):
            s.record_candidate({"id": f"late_{i}", "formula": "x", "screening_passed": True})
            s.record_result(f"late_{i}", -1.0, {"score": -1.0, "seeds": [], "tasks": {}})
        print("written", flush=True)
        time.sleep(600)
    """), str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        os.kill(child.pid, signal.SIGKILL)  # only the process this test started
        child.wait()
    assert os.path.getsize(run / "results.db-wal") > 0
    return 3


@pytest.mark.parametrize("writable", [True, False])
def test_a_killed_run_is_read_with_its_log_also_on_read_only_media(tmp_path, monkeypatch, writable):
    run = tmp_path / "run"
    SearchDriver(config(budget=3), run, executor=FakeExecutor()).run()
    late = _killed_writer(run)
    # read-only media: SQLite cannot open a log there, so the store reads a private copy of both files
    monkeypatch.setattr(store_mod, "_dir_writable", lambda path: writable)
    before = {k: v for k, v in files(run).items() if k != "results.db-shm"}  # the log's index may be rebuilt
    with ResultStore(run, mode="read") as s:
        assert s.n_results() == 3 + late
        copy = s._tmpdir
    assert (copy is None) == writable and (copy is None or not os.path.exists(copy))
    assert {k: v for k, v in files(run).items() if k != "results.db-shm"} == before


def test_a_read_only_bind_mount_is_read(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    late = _killed_writer(run)  # with a log to read: SQLite cannot open it on read-only media itself
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(run), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts are not allowed here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("read-only remounts are not allowed here")
        before = files(ro)
        assert len(json.loads(cli("top", ro, "--n", "20", "--json").stdout)) == 8 + late
        assert cli("report", ro, "-o", tmp_path / "r.html").exit_code == 0
        refused(cli("report", ro), "cannot write the report")  # its default place, RUN_DIR/report.html
        refused(cli("search", "--space", "ratio-test", "--tasks", "digits-cnn", "--executor", "local", "--run-dir",
                    ro, "--resume"), "cannot lock")
        assert files(ro) == before
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


# -- reason codes (schema 2) and schema-1 stores

def _report(rejected=None, **extra):
    return {"score": None if rejected else 0.1, "seeds": [], "tasks": {}, "rejected": rejected, **extra}


def test_reason_codes_are_stored_with_results_and_candidates_and_counted(tmp_path):
    with ResultStore(tmp_path / "r", mode="create") as s:
        for i in range(7):
            s.record_candidate({"id": f"c{i}", "formula": "x", "screening_passed": True})
        s.record_candidate({"id": "s1", "formula": "exp(exp(x))", "screening_passed": False,
                            "screening_reason": "non_finite: overflow"})
        s.record_candidate({"id": "bad", "formula": "genome [1]", "screening_passed": False,
                            "reason_code": "invalid_formula"})
        s.record_result("c0", 0.1, _report())
        s.record_result("c1", None, _report("timeout: no result in 300 s"))                 # from the text
        s.record_result("c2", None, _report("boom", rejection={"code": "worker_lost"}))    # from the report
        s.record_result("c3", None, _report("compile_error: g++"), reason_code="timeout")  # the caller's wins
        s.record_result("c4", None, {"score": None, "seeds": [0], "tasks": {"t": {
            "candidate": {"per_seed": [0.1]}, "rejected": "non-finite loss"}}})            # no code in the text
        s.record_result("c5", None, _report("evaluation_error: oops"), reason_code=None)
        with pytest.raises(ValueError):
            s.record_result("c6", None, _report("x"), reason_code="not_a_code")
        assert s.n_results() == 6  # the refused one was not recorded
        assert s.result("c0")["reason_code"] is None
        assert s.result("c1")["reason_code"] == "timeout"
        assert s.result("c2")["reason_code"] == "worker_lost"
        assert s.result("c3")["reason_code"] == "timeout"
        assert s.result("c4")["reason_code"] is None and s.result("c4")["rejected"] == "t: non-finite loss"
        assert {r["id"]: r["reason_code"] for r in s.ranked()}["c5"] == "evaluation_error"
        assert s.candidate("s1")["reason_code"] == "screened_out"
        assert s.candidate("bad")["reason_code"] == "invalid_formula"
        assert s.candidate("c0")["reason_code"] is None
        assert s.rejection_counts() == {"timeout": 2, "worker_lost": 1, "unclassified": 1, "evaluation_error": 1,
                                        "screened_out": 1, "invalid_formula": 1}


_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell')),
    genome TEXT NOT NULL, value TEXT, candidate_id TEXT, note TEXT);
CREATE TABLE candidates (
    id TEXT PRIMARY KEY, formula TEXT NOT NULL, canonical TEXT, params TEXT, genome TEXT,
    fingerprint TEXT, screening_passed INTEGER, screening_reason TEXT,
    nearest_name TEXT, nearest_distance REAL, created REAL);
CREATE TABLE evaluations (
    candidate_id TEXT NOT NULL, task TEXT NOT NULL, seed INTEGER NOT NULL, metrics TEXT NOT NULL,
    wall_s REAL, worker TEXT, PRIMARY KEY (candidate_id, task, seed));
CREATE TABLE results (
    candidate_id TEXT PRIMARY KEY, score REAL, cost REAL, rejected TEXT, report TEXT,
    wall_s REAL, worker TEXT, finished REAL, n INTEGER);
"""  # the tables of actsearch's schema 1 (before reason codes)


def _schema_1_store(run) -> None:
    run.mkdir()
    con = sqlite3.connect(str(run / "results.db"), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(_SCHEMA_V1)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("actsearch_version", '"0.1.0"'),
                                                       ("config", '{"space": "swish"}')])
    con.executemany("INSERT INTO candidates (id, formula, canonical, params, screening_passed, screening_reason) "
                    "VALUES (?, ?, ?, '{}', ?, ?)", [("a", "x", "x", 1, None), ("b", "tanh(x)", "tanh(x)", 1, None),
                                                     ("s", "exp(exp(x))", "exp(exp(x))", 0, "non_finite: overflow")])
    con.executemany("INSERT INTO results VALUES (?, ?, NULL, ?, ?, 0, 'w', 0, ?)",
                    [("a", 0.2, None, json.dumps(_report()), 1),
                     ("b", None, "timeout: no result in 300 s", json.dumps(_report("timeout: no result in 300 s")), 2)])
    con.close()


def test_a_schema_1_store_is_read_as_is_and_migrated_in_place_for_writing(tmp_path):
    run = tmp_path / "old"
    _schema_1_store(run)
    before = files(run)
    with ResultStore(run, mode="read") as s:
        assert s.schema == 1
        assert [(r["id"], r["reason_code"]) for r in s.ranked()] == [("a", None), ("b", None)]
        assert s.result("b")["reason_code"] is None and s.candidate("s")["reason_code"] is None
        assert s.rejection_counts() == {"timeout": 1, "screened_out": 1}
    assert len(json.loads(cli("top", run, "--json").stdout)) == 2
    assert files(run) == before  # reading did not migrate it
    with ResultStore(run, mode="write") as s:
        assert s.schema == SCHEMA_VERSION == s.meta("schema_version") and s.meta("migrated")["from"] == 1
        assert [(r["candidate_id"], r["rung"], r["status"]) for r in s.rung_rows()] == [("a", 0, "done"), ("b", 0, "done")]
        assert s.result("b")["reason_code"] == "timeout" and s.result("a")["reason_code"] is None
        assert s.candidate("s")["reason_code"] == "screened_out"
        assert s.config() == {"space": "swish"} and s.n_results() == 2
        s.record_result("c", None, _report("diverged: nan"))  # written with the new column
        assert s.result("c")["reason_code"] == "diverged"
    with ResultStore(run, mode="write") as s:  # once only
        assert s.meta("migrated")["from"] == 1 and s.rejection_counts()["timeout"] == 1


def test_a_schema_1_run_resumes(tmp_path):
    run = tmp_path / "run"
    SearchDriver(config(budget=4), run, executor=FakeExecutor()).run()
    with sqlite3.connect(str(run / "results.db")) as con:  # as the previous version left it
        con.execute("ALTER TABLE results DROP COLUMN reason_code")
        con.execute("ALTER TABLE candidates DROP COLUMN reason_code")
        con.execute("ALTER TABLE results DROP COLUMN rung")
        for table in ("rungs", "baselines", "validations"):
            con.execute(f"DROP TABLE {table}")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    log: list = []
    summary = SearchDriver(config(budget=7), run, resume=True, executor=FakeExecutor(log=log)).run()
    assert summary["evaluated"] == 7 and len(log) == len(set(log)) == 3
    with ResultStore(run, mode="read") as s:
        assert s.schema == SCHEMA_VERSION and s.meta("migrated")["from"] == 1


def test_a_store_of_an_unknown_schema_version_is_refused_by_readers_too(tmp_path):
    run = finished_run_altered_by(tmp_path / "run", 2, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    refused(cli("top", run), "was written with results schema 99")
