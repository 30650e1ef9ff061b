"""ResultStore: one SQLite database per run (RUN_DIR/results.db, WAL), written by the driver only.

Tables
  meta         schema version, actsearch version, run config, library versions, creation time
  events       the strategy's ask/tell log in order (seq, kind, genome, value): replaying it into a fresh
               strategy with the same seed reproduces the strategy's state exactly (resume)
  candidates   every candidate proposed: formula, canonical id, fingerprint, screening verdict and
               reason, nearest known activation, the genome that produced it
  evaluations  every (candidate, task, seed) training: metrics, wall time, worker
  results      one row per evaluated candidate: score, cost, rejection reason, the full report

A run directory made by another schema version, or a file that is not a valid database, is refused
with an error that names the problem and the fix; nothing in an existing run is ever deleted.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from actsearch import __version__

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell')),
    genome TEXT NOT NULL, value TEXT, candidate_id TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT PRIMARY KEY, formula TEXT NOT NULL, canonical TEXT, params TEXT, genome TEXT,
    fingerprint TEXT, screening_passed INTEGER, screening_reason TEXT,
    nearest_name TEXT, nearest_distance REAL, created REAL);
CREATE TABLE IF NOT EXISTS evaluations (
    candidate_id TEXT NOT NULL, task TEXT NOT NULL, seed INTEGER NOT NULL, metrics TEXT NOT NULL,
    wall_s REAL, worker TEXT, PRIMARY KEY (candidate_id, task, seed));
CREATE TABLE IF NOT EXISTS results (
    candidate_id TEXT PRIMARY KEY, score REAL, cost REAL, rejected TEXT, report TEXT,
    wall_s REAL, worker TEXT, finished REAL, n INTEGER);
"""


class StoreError(Exception):
    """A run directory that cannot be used, with what is wrong and how to fix it."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True)


class ResultStore:
    def __init__(self, run_dir: os.PathLike, create: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "results.db"
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path} does not exist: no run in {self.run_dir} (start one with "
                                 f"`actsearch search --run-dir {self.run_dir}`)")
            self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable results database ({exc}); it was left untouched - "
                             f"move it away or choose another --run-dir") from None
        if version is None:
            self._set_meta("schema_version", SCHEMA_VERSION)
            self._set_meta("actsearch_version", __version__)
            self._set_meta("created", time.time())
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written with results schema {version} (actsearch "
                             f"{self.meta('actsearch_version')}); this is actsearch {__version__} with schema "
                             f"{SCHEMA_VERSION}. Use that version to read or resume it, or start a new --run-dir")

    # -- meta
    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _dumps(value)))

    def config(self) -> Optional[dict]:
        return self.meta("config")

    def set_config(self, config: dict, versions: dict) -> None:
        self._set_meta("config", config)
        self._set_meta("versions", versions)

    # -- events (the strategy log)
    def log_ask(self, genome) -> int:
        cur = self.db.execute("INSERT INTO events (kind, genome) VALUES ('ask', ?)", (_dumps(genome),))
        return cur.lastrowid

    def log_tell(self, genome, value, candidate_id: Optional[str] = None, note: Optional[str] = None) -> int:
        """value: None, a float, or a tuple of floats (stored as a JSON list)."""
        cur = self.db.execute("INSERT INTO events (kind, genome, value, candidate_id, note) VALUES ('tell', ?, ?, ?, ?)",
                              (_dumps(genome), _dumps(value), candidate_id, note))
        return cur.lastrowid

    def events(self) -> list[tuple[str, Any, Any]]:
        return [(k, json.loads(g), json.loads(v) if v is not None else None)
                for k, g, v in self.db.execute("SELECT kind, genome, value FROM events ORDER BY seq")]

    # -- candidates, evaluations, results
    def record_candidate(self, c: dict) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO candidates (id, formula, canonical, params, genome, fingerprint, screening_passed,"
            " screening_reason, nearest_name, nearest_distance, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (c["id"], c["formula"], c.get("canonical"), _dumps(c.get("params", {})), _dumps(c.get("genome")),
             c.get("fingerprint"), int(bool(c.get("screening_passed"))), c.get("screening_reason"),
             c.get("nearest_name"), c.get("nearest_distance"), time.time()))

    def candidate(self, candidate_id: str) -> Optional[dict]:
        cur = self.db.execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        row = cur.fetchone()
        if row is None:
            return None
        d = dict(zip([c[0] for c in cur.description], row))
        d["params"] = json.loads(d["params"]) if d["params"] else {}
        d["genome"] = json.loads(d["genome"]) if d["genome"] else None
        return d

    def record_result(self, candidate_id: str, score: Optional[float], report: dict, cost: Optional[float] = None,
                      wall_s: float = 0.0, worker: str = "") -> None:
        """The evaluation of one candidate: its per-(task, seed) trainings and its summary, atomically."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for task, t in report.get("tasks", {}).items():
                for seed, acc in zip(report.get("seeds", []), t["candidate"]["per_seed"]):
                    self.db.execute("INSERT INTO evaluations VALUES (?,?,?,?,?,?)",
                                    (candidate_id, task, int(seed), _dumps({"accuracy": acc, "rejected": t["rejected"]}),
                                     t.get("candidate_wall_s", 0.0) / max(1, len(report.get("seeds", [1]))), worker))
            rejected = report.get("rejected") or next(
                (f"{name}: {t['rejected']}" for name, t in report.get("tasks", {}).items() if t["rejected"]), None)
            n = self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            # plain INSERTs: evaluating a candidate twice is a bug, and fails loudly here
            self.db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?)",
                            (candidate_id, score, cost, rejected, _dumps(report), wall_s, worker, time.time(), n + 1))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def result(self, candidate_id: str) -> Optional[dict]:
        row = self.db.execute("SELECT score, cost, rejected, report FROM results WHERE candidate_id = ?",
                              (candidate_id,)).fetchone()
        if row is None:
            return None
        return {"score": row[0], "cost": row[1], "rejected": row[2], "report": json.loads(row[3])}

    def n_results(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def n_rejected(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM results WHERE rejected IS NOT NULL").fetchone()[0]

    def n_screened_out(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM candidates WHERE screening_passed = 0").fetchone()[0]

    def evaluation_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def ranked(self, n: Optional[int] = None) -> list[dict]:
        """Evaluated candidates, best score first (rejected ones last)."""
        sql = ("SELECT r.candidate_id, c.formula, c.canonical, c.params, r.score, r.cost, r.rejected, r.report, "
               "c.nearest_name, c.nearest_distance, r.n FROM results r JOIN candidates c ON c.id = r.candidate_id "
               "ORDER BY (r.rejected IS NOT NULL), r.score DESC, r.n")
        rows = self.db.execute(sql + (f" LIMIT {int(n)}" if n else "")).fetchall()
        out = []
        for cid, formula, canonical, params, score, cost, rejected, report, nname, ndist, order in rows:
            out.append({"id": cid, "formula": formula, "canonical": canonical, "params": json.loads(params or "{}"),
                        "score": score, "cost": cost, "rejected": rejected, "report": json.loads(report),
                        "nearest": {"name": nname, "distance": ndist}, "order": order})
        return out

    def history(self) -> list[tuple[int, Optional[float], Optional[str]]]:
        """(evaluation number, score, rejected) in the order results arrived."""
        return list(self.db.execute("SELECT n, score, rejected FROM results ORDER BY n"))

    def screening_reasons(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT screening_reason FROM candidates WHERE screening_passed = 0")]

    def close(self) -> None:
        self.db.close()

