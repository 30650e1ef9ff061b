"""ResultStore: one SQLite database per run (RUN_DIR/results.db, WAL), written by the driver only.

Tables
  meta         schema version, actsearch version, run config, library versions, creation time
  events       the strategy's ask/tell log in order (seq, kind, genome, value): replaying it into a fresh
               strategy with the same seed reproduces the strategy's state exactly (resume)
  candidates   every candidate proposed: formula, canonical id, fingerprint, screening verdict and
               reason, nearest known activation, the genome that produced it
  evaluations  every (candidate, task, seed) training: metrics, wall time, worker
  results      one row per evaluated candidate: score, cost, rejection reason and its code, the full report

Opening (`ResultStore(run_dir, mode=...)`):
  read    an existing store, read-only: never written, never locked, no file created next to it (a
          finished run is opened `immutable`, a live or killed run's write-ahead log is read with
          `mode=ro`, or from a temporary copy when its directory cannot be written); works on read-only media
  write   an existing store, to resume it: the run directory's writer lock (flock on RUN_DIR/.lock,
          released by the kernel when the process dies) is taken before anything else, so a second
          writer is refused; a schema-1 store is migrated in place, in one transaction
  create  a new store where results.db does not exist at all: the lock, then a complete store written
          to a temporary file and linked into place, so results.db is a whole store or absent
Before use every file is checked: an SQLite header, a size that is a whole number of pages,
`PRAGMA quick_check`, and the tables and columns of a known schema version.  A foreign, empty,
truncated or damaged file, or one of an unknown schema version, is refused with a one-line error
(StoreError) that names the problem and the fix, and is never written; an SQLite error met later
while reading or writing becomes a StoreError too.  Nothing in an existing run is ever deleted.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from actsearch import __version__
from actsearch.rejection import RejectionReason, code_of, code_of_report

SCHEMA_VERSION = 3
# 1: no reason codes (read as NULL); 2: no rungs, baselines, validations (a flat search: every result is
# rung 0); older stores are read as they are and migrated in place, in one transaction, when opened for writing
KNOWN_SCHEMAS = (1, 2, 3)
MODES = ("read", "write", "create")
LOCK_NAME = ".lock"          # RUN_DIR/.lock: flock'ed by the one writer for its lifetime, never deleted
UNCLASSIFIED = "unclassified"  # rejection_counts' key for a rejection text with no reason code (schema-1 runs)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell', 'update')),
    genome TEXT NOT NULL, value TEXT, candidate_id TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT PRIMARY KEY, formula TEXT NOT NULL, canonical TEXT, params TEXT, genome TEXT,
    fingerprint TEXT, screening_passed INTEGER, screening_reason TEXT,
    nearest_name TEXT, nearest_distance REAL, created REAL, reason_code TEXT);
CREATE TABLE IF NOT EXISTS evaluations (
    candidate_id TEXT NOT NULL, task TEXT NOT NULL, seed INTEGER NOT NULL, metrics TEXT NOT NULL,
    wall_s REAL, worker TEXT, PRIMARY KEY (candidate_id, task, seed));
CREATE TABLE IF NOT EXISTS results (
    candidate_id TEXT PRIMARY KEY, score REAL, cost REAL, rejected TEXT, report TEXT,
    wall_s REAL, worker TEXT, finished REAL, n INTEGER, reason_code TEXT, rung INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rungs (
    candidate_id TEXT NOT NULL, rung INTEGER NOT NULL, status TEXT NOT NULL CHECK (status IN ('promoted', 'done')),
    score REAL, lcb REAL, rejected TEXT, summary TEXT, promoted REAL, finished REAL, seq INTEGER,
    PRIMARY KEY (candidate_id, rung));
CREATE TABLE IF NOT EXISTS baselines (
    task TEXT NOT NULL, name TEXT NOT NULL, seed INTEGER NOT NULL, accuracy REAL, PRIMARY KEY (task, name, seed));
CREATE TABLE IF NOT EXISTS validations (id INTEGER PRIMARY KEY, created REAL, settings TEXT, summary TEXT);
"""

# schema 3's additions to schema 2, for the migration (events is rebuilt: its CHECK gains 'update')
_SCHEMA_3_TABLES = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS rungs"):]

# the columns a store of each known schema version has (a file that lacks one is not such a store)
_COLUMNS_V1 = {
    "meta": ("key", "value"),
    "events": ("seq", "kind", "genome", "value", "candidate_id", "note"),
    "candidates": ("id", "formula", "canonical", "params", "genome", "fingerprint", "screening_passed",
                   "screening_reason", "nearest_name", "nearest_distance", "created"),
    "evaluations": ("candidate_id", "task", "seed", "metrics", "wall_s", "worker"),
    "results": ("candidate_id", "score", "cost", "rejected", "report", "wall_s", "worker", "finished", "n"),
}
_COLUMNS = {1: _COLUMNS_V1,
            2: {**_COLUMNS_V1, "candidates": _COLUMNS_V1["candidates"] + ("reason_code",),
                "results": _COLUMNS_V1["results"] + ("reason_code",)}}
_COLUMNS[3] = {**_COLUMNS[2], "results": _COLUMNS[2]["results"] + ("rung",),
               "rungs": ("candidate_id", "rung", "status", "score", "lcb", "rejected", "summary", "promoted",
                         "finished", "seq"),
               "baselines": ("task", "name", "seed", "accuracy"),
               "validations": ("id", "created", "settings", "summary")}


class StoreError(Exception):
    """A run directory that cannot be used, with what is wrong and how to fix it."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True)


def _dir_writable(path: Path) -> bool:
    """False on read-only media (access(2) says EROFS there, even to root)."""
    return os.access(path, os.W_OK)


def _lock_holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def writer_active(run_dir: os.PathLike) -> bool:
    """Whether a writer holds RUN_DIR's lock now (a search running or resuming it).  Never blocks, never
    creates the lock file."""
    import fcntl

    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:  # BlockingIOError: held; anything else: cannot tell, so assume a writer
        return True
    finally:
        os.close(fd)


def _reason_code(reason_code, report: Optional[dict]) -> Optional[str]:
    """The code to store: the caller's, else the report's own (its rejection's, or the one leading its text)."""
    if reason_code is None:
        reason_code = code_of_report(report)
    return None if reason_code is None else RejectionReason(str(reason_code)).value


class ResultStore:
    """One run's store.  mode: "read" (read-only, no lock), "write" (an existing store, under the run's
    writer lock) or "create" (a new store, under the lock).  Without a mode, the old `create=` decides:
    False is "read"; True (the old default) is "write" when results.db exists, else "create".  Close
    the store (or use it as a context manager) to release the lock."""

    def __init__(self, run_dir: os.PathLike, mode: Optional[str] = None, create: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "results.db"
        if mode is None:
            mode = "read" if not create else ("write" if self.path.exists() else "create")
        if mode not in MODES:
            raise ValueError(f"ResultStore mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.db: Optional[sqlite3.Connection] = None
        self.schema: Optional[int] = None
        self._lock_file = None
        self._tmpdir: Optional[str] = None
        self._immutable = False
        try:
            if mode == "read":
                self._open_read()
            else:
                self._lock()
                if mode == "create":
                    self._create()
                self._open_write()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- opening
    def _lock(self) -> None:
        """Take RUN_DIR/.lock (flock, exclusive, not waiting) for this writer's lifetime."""
        import fcntl

        if self.mode == "create":
            if os.path.lexists(self.path):  # refused before anything, even the lock file, is made here
                raise self._holds_a_run()
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the run directory {self.run_dir} ({exc.strerror}); "
                                 f"choose another --run-dir") from None
        elif not self.path.exists():
            raise StoreError(f"nothing to resume: {self.path} does not exist (start the run with "
                             f"`actsearch search --run-dir {self.run_dir}`, without --resume)")
        lock = self.run_dir / LOCK_NAME
        try:
            f = open(lock, "a+")
        except OSError as exc:
            raise StoreError(f"cannot lock {self.run_dir} for writing ({exc.strerror}: {lock}); a run on read-only "
                             f"media can be read (top, report, export) but not resumed - copy it to a writable "
                             f"directory to resume it") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise StoreError(f"{self.run_dir} is in use by another actsearch search{_lock_holder(lock)}, which holds "
                             f"{lock}; one writer per run: wait for it to finish or stop it, then --resume "
                             f"(nothing was changed)") from None
        except OSError as exc:
            f.close()
            raise StoreError(f"cannot lock {lock} ({exc.strerror}); keep run directories on a file system with "
                             f"file locks, or choose another --run-dir") from None
        self._lock_file = f
        try:  # who holds it, for the message a second writer gets
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        except OSError:
            pass

    def _create(self) -> None:
        """A complete new store at results.db: written to a temporary file, then linked into place."""
        if os.path.lexists(self.path):  # again under the lock: another process may have created it meanwhile
            raise self._holds_a_run()
        fd, tmp = tempfile.mkstemp(prefix=".results.db.", suffix=".new", dir=self.run_dir)
        os.close(fd)
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.execute("BEGIN IMMEDIATE")
                for key, value in (("schema_version", SCHEMA_VERSION), ("actsearch_version", __version__),
                                   ("created", time.time())):
                    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, _dumps(value)))
                db.execute("COMMIT")
            finally:
                db.close()
            try:
                os.link(tmp, self.path)  # never replaces a file that appeared meanwhile
            except FileExistsError:
                raise self._holds_a_run() from None
            except OSError:  # a file system without hard links; the lock keeps other actsearch writers out
                os.rename(tmp, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot create {self.path} ({exc}); choose another --run-dir") from None
        finally:
            for suffix in ("", "-wal", "-shm"):  # this process's own temporary file
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp + suffix)

    def _holds_a_run(self) -> StoreError:
        return StoreError(f"{self.run_dir} already holds a run ({self.path}); pass --resume to continue it, or "
                          f"choose another --run-dir (nothing was changed)")

    def _check_file(self) -> None:
        """Refuse, before SQLite opens it, a file that is empty, not SQLite, or not a whole number of pages."""
        keep = "it was left untouched"
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(100)
        except OSError as exc:
            raise StoreError(f"cannot read {self.path} ({exc.strerror}); check its permissions") from None
        if size == 0:
            raise StoreError(f"{self.path} is empty (0 bytes), not an actsearch results store; {keep} - move it "
                             f"away or choose another --run-dir")
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            raise StoreError(f"{self.path} is not an actsearch results store (not an SQLite database); {keep} - "
                             f"move it away or choose another --run-dir")
        page = int.from_bytes(head[16:18], "big")
        page = 65536 if page == 1 else page
        if page < 512 or page & (page - 1):
            raise StoreError(f"{self.path} is damaged (its header gives a page size of {page} bytes); {keep} - "
                             f"restore it from a copy")
        if size % page:
            raise StoreError(f"{self.path} is damaged: {size:,} bytes is not a whole number of {page}-byte pages (a "
                             f"truncated or partial copy?); {keep} - restore it from a complete copy")
        pages = int.from_bytes(head[28:32], "big")
        wal = Path(f"{self.path}-wal")
        if (head[92:96] == head[24:28] and pages * page > size
                and not (wal.exists() and wal.stat().st_size > 0)):
            raise StoreError(f"{self.path} is damaged: {size:,} bytes, where its header records {pages} pages of "
                             f"{page} bytes (a truncated copy?); {keep} - restore it from a complete copy")

    def _connect(self, path: Path, params: str) -> sqlite3.Connection:
        return sqlite3.connect(f"{path.resolve().as_uri()}?{params}", uri=True, timeout=30, isolation_level=None)

    def _open_read(self) -> None:
        if not self.path.exists():
            raise StoreError(f"{self.path} does not exist: no run in {self.run_dir} (start one with "
                             f"`actsearch search --run-dir {self.run_dir}`)")
        self._check_file()
        wal = Path(f"{self.path}-wal")
        if not (wal.exists() and wal.stat().st_size > 0) and not writer_active(self.run_dir):
            # a finished run: everything is in results.db, and nobody writes it
            self._immutable = True
            self.db = self._connect(self.path, "mode=ro&immutable=1")
        elif _dir_writable(self.run_dir):
            self.db = self._connect(self.path, "mode=ro")  # a live or killed run: its log is read too
        else:
            # a killed run on read-only media: SQLite cannot open its log there; read a private copy
            self._tmpdir = tempfile.mkdtemp(prefix="actsearch-store-")
            copy = Path(self._tmpdir) / "results.db"
            for suffix in ("", "-wal"):
                if os.path.exists(f"{self.path}{suffix}"):
                    shutil.copyfile(f"{self.path}{suffix}", f"{copy}{suffix}")
            self.db = self._connect(copy, "mode=ro")
        self._validate(self.db)

    def _open_write(self) -> None:
        self._check_file()
        check = self._connect(self.path, "mode=ro")  # everything is checked before the first write
        try:
            self._validate(check)
        finally:
            check.close()
        self.db = self._connect(self.path, "mode=rw")
        with self._guard():
            if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        if self.schema < SCHEMA_VERSION:
            self._migrate()

    def _validate(self, db: sqlite3.Connection) -> None:
        """Integrity, then the tables and columns of a known schema version; sets self.schema."""
        keep = "it was left untouched"
        with self._guard():
            problems = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise StoreError(f"{self.path} is damaged (integrity check: {'; '.join(problems[:3])}); {keep} - restore "
                             f"it from a copy, or copy out what is readable with `sqlite3 {self.path} .recover`")
        with self._guard():
            tables = {name: {row[1] for row in db.execute(f"PRAGMA table_info(\"{name}\")")}
                      for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
            row = (db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                   if {"key", "value"} <= tables.get("meta", set()) else None)
        try:
            version = json.loads(row[0]) if row else None
        except (TypeError, ValueError):
            version = None
        if version is None or isinstance(version, bool) or not isinstance(version, int):
            found = ", ".join(sorted(tables)) or "no tables"
            raise StoreError(f"{self.path} is not an actsearch results store (an SQLite database with {found}); "
                             f"{keep} - move it away or choose another --run-dir")
        if version not in KNOWN_SCHEMAS:
            with self._guard():
                made_by = db.execute("SELECT value FROM meta WHERE key = 'actsearch_version'").fetchone()
            raise StoreError(f"{self.path} was written with results schema {version} (actsearch "
                             f"{json.loads(made_by[0]) if made_by else None}); this is actsearch {__version__} with "
                             f"schema {SCHEMA_VERSION}. Use that version to read or resume it, or start a new --run-dir")
        missing = [f"{t}.{c}" for t, cols in _COLUMNS[version].items() for c in cols if c not in tables.get(t, ())]
        if missing:
            raise StoreError(f"{self.path} is not an actsearch results store of schema {version} (it lacks "
                             f"{', '.join(missing[:5])}); {keep} - move it away or choose another --run-dir")
        self.schema = version

    def _migrate(self) -> None:
        """Schema 1 -> 2 -> 3, in place, in one transaction.  2: the reason_code columns, filled where the
        stored rejection text leads with a code and for screened-out candidates.  3: results.rung (0: an
        old run is a flat search), the rungs, baselines and validations tables (every old result becomes
        a completed rung-0 row), and the events table rebuilt so that its kind may be 'update'."""
        with self._guard():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.schema < 2:
                    for table in ("results", "candidates"):
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN reason_code TEXT")
                    for cid, text in self.db.execute("SELECT candidate_id, rejected FROM results "
                                                     "WHERE rejected IS NOT NULL").fetchall():
                        code = code_of(text)
                        if code is not None:
                            self.db.execute("UPDATE results SET reason_code = ? WHERE candidate_id = ?",
                                            (code.value, cid))
                    self.db.execute("UPDATE candidates SET reason_code = ? WHERE screening_passed = 0",
                                    (RejectionReason.SCREENED_OUT.value,))
                if "rung" not in {row[1] for row in self.db.execute("PRAGMA table_info(results)")}:
                    self.db.execute("ALTER TABLE results ADD COLUMN rung INTEGER NOT NULL DEFAULT 0")
                for stmt in _SCHEMA_3_TABLES.split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.db.execute("ALTER TABLE events RENAME TO events_v2")
                self.db.execute(_SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS events"):
                                        _SCHEMA.index("CREATE TABLE IF NOT EXISTS candidates")].strip().rstrip(";"))
                self.db.execute("INSERT INTO events SELECT seq, kind, genome, value, candidate_id, note FROM events_v2")
                self.db.execute("DROP TABLE events_v2")
                self.db.execute("INSERT INTO rungs (candidate_id, rung, status, score, lcb, rejected, summary, promoted,"
                                " finished, seq) SELECT candidate_id, 0, 'done', score, NULL, rejected, NULL, NULL,"
                                " finished, n FROM results")
                self._set_meta("schema_version", SCHEMA_VERSION)
                self._set_meta("migrated", {"from": self.schema, "to": SCHEMA_VERSION, "by": __version__,
                                            "at": time.time()})
                self.db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise
        self.schema = SCHEMA_VERSION

    # -- errors
    @contextlib.contextmanager
    def _guard(self):
        """SQLite errors (other than integrity errors, which are bugs) become StoreErrors that say what to do."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.path} holds a value that is not valid JSON ({exc}); the store is damaged - "
                             f"restore it from a copy") from None

    def _error(self, exc: sqlite3.DatabaseError) -> StoreError:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            return StoreError(f"{self.path} is busy ({msg}): another process holds it; try again when it is done")
        if "readonly" in msg or "read-only" in msg:
            return StoreError(f"{self.path} cannot be written here ({msg}); copy the run to a writable directory")
        if "full" in msg:
            return StoreError(f"{self.path} cannot grow ({msg}); free some space, then --resume (what was written "
                              f"is kept)")
        if "I/O" in msg:
            return StoreError(f"{self.path} cannot be read or written ({msg}); check the disk it is on")
        if self._immutable and writer_active(self.run_dir):
            return StoreError(f"{self.path} changed while it was read (a search is writing this run now); "
                              f"run the command again")
        return StoreError(f"{self.path} is damaged or unreadable ({msg}); it was left untouched - restore it from a "
                          f"copy, or copy out what is readable with `sqlite3 {self.path} .recover`")

    def _all(self, sql: str, params: tuple = ()) -> list:
        with self._guard():
            return self._db().execute(sql, params).fetchall()

    def _db(self) -> sqlite3.Connection:
        if self.db is None:
            raise StoreError(f"{self.path} is closed; open it again")
        return self.db

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        self._writable()
        with self._guard():
            return self._db().execute(sql, params)

    def _writable(self) -> None:
        if self.mode == "read":
            raise StoreError(f"{self.path} was opened read-only; open it with mode='write' (which takes the run's "
                             f"writer lock) to change it")

    def _col(self, alias: str = "") -> str:
        """The reason_code column, or NULL in a schema-1 store read as is."""
        return f"{alias}reason_code" if self.schema >= 2 else "NULL"

    # -- incremental reads (actsearch.optuna_study mirrors the store with these)
    def rung_rows_after(self, mark: int) -> list[dict]:
        """The completed rung evaluations with a sequence number above `mark`, in order, each with its
        candidate's formula, genome and nearest known activation and its result's cost, worker and
        rejection (a flat run's results are rung 0, numbered by arrival)."""
        col = self._col("r.")
        if self.schema >= 3:
            sql = ("SELECT g.seq, g.candidate_id, g.rung, g.score, g.lcb, g.rejected, g.summary, g.promoted, "
                   "g.finished, c.formula, c.canonical, c.params, c.genome, c.nearest_name, c.nearest_distance, c.created, "
                   f"r.cost, r.wall_s, r.worker, {col}, r.rejected FROM rungs g "
                   "JOIN candidates c ON c.id = g.candidate_id LEFT JOIN results r ON r.candidate_id = g.candidate_id "
                   "WHERE g.status = 'done' AND g.seq > ? ORDER BY g.seq")
        else:  # a flat search: every result is rung 0
            sql = ("SELECT r.n, r.candidate_id, 0, r.score, NULL, r.rejected, NULL, NULL, r.finished, "
                   "c.formula, c.canonical, c.params, c.genome, c.nearest_name, c.nearest_distance, c.created, "
                   f"r.cost, r.wall_s, r.worker, {col}, r.rejected FROM results r "
                   "JOIN candidates c ON c.id = r.candidate_id WHERE r.n > ? ORDER BY r.n")
        keys = ("mark", "candidate_id", "rung", "score", "lcb", "rejected", "summary", "promoted", "finished",
                "formula", "canonical", "params", "genome", "nearest_name", "nearest_distance", "created",
                "cost", "wall_s", "worker", "reason_code", "result_rejected")
        return [dict(zip(keys, row)) for row in self._all(sql, (mark,))]

    def pruned_candidates_after(self, mark: int) -> list[dict]:
        """Candidates rejected before training (no result) with a row number above `mark`, in the order
        they were proposed."""
        sql = ("SELECT c.rowid, c.id, c.formula, c.canonical, c.params, c.genome, c.screening_reason, "
               f"{self._col('c.')}, c.created FROM candidates c WHERE c.screening_passed = 0 AND c.rowid > ? "
               "AND NOT EXISTS (SELECT 1 FROM results r WHERE r.candidate_id = c.id) ORDER BY c.rowid")
        keys = ("mark", "candidate_id", "formula", "canonical", "params", "genome", "reason", "reason_code", "created")
        return [dict(zip(keys, row)) for row in self._all(sql, (mark,))]

    # -- meta
    def meta(self, key: str, default=None):
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        with self._guard():
            return json.loads(rows[0][0]) if rows else default

    def _set_meta(self, key: str, value) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _dumps(value)))

    def config(self) -> Optional[dict]:
        return self.meta("config")

    def set_config(self, config: dict, versions: dict) -> None:
        self._set_meta("config", config)
        self._set_meta("versions", versions)

    # -- events (the strategy log)
    def log_ask(self, genome) -> int:
        return self._write("INSERT INTO events (kind, genome) VALUES ('ask', ?)", (_dumps(genome),)).lastrowid

    def log_tell(self, genome, value, candidate_id: Optional[str] = None, note: Optional[str] = None) -> int:
        """value: None, a float, or a tuple of floats (stored as a JSON list)."""
        return self._write("INSERT INTO events (kind, genome, value, candidate_id, note) VALUES ('tell', ?, ?, ?, ?)",
                           (_dumps(genome), _dumps(value), candidate_id, note)).lastrowid

    def events(self) -> list[tuple[str, Any, Any]]:
        rows = self._all("SELECT kind, genome, value FROM events ORDER BY seq")
        with self._guard():
            return [(k, json.loads(g), json.loads(v) if v is not None else None) for k, g, v in rows]

    # -- candidates, evaluations, results
    def record_candidate(self, c: dict) -> None:
        """c["reason_code"]: why it cannot be trained (default: screened_out when it failed screening)."""
        passed = bool(c.get("screening_passed"))
        code = c.get("reason_code") or (None if passed else RejectionReason.SCREENED_OUT)
        self._write(
            "INSERT OR IGNORE INTO candidates (id, formula, canonical, params, genome, fingerprint, screening_passed,"
            " screening_reason, nearest_name, nearest_distance, created, reason_code) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (c["id"], c["formula"], c.get("canonical"), _dumps(c.get("params", {})), _dumps(c.get("genome")),
             c.get("fingerprint"), int(passed), c.get("screening_reason"),
             c.get("nearest_name"), c.get("nearest_distance"), time.time(),
             None if code is None else RejectionReason(str(code)).value))

    def candidate(self, candidate_id: str) -> Optional[dict]:
        with self._guard():
            cur = self._db().execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
            row = cur.fetchone()
            if row is None:
                return None
            d = dict(zip([c[0] for c in cur.description], row))
            d.setdefault("reason_code", None)
            d["params"] = json.loads(d["params"]) if d["params"] else {}
            d["genome"] = json.loads(d["genome"]) if d["genome"] else None
        return d

    def record_result(self, candidate_id: str, score: Optional[float], report: dict, cost: Optional[float] = None,
                      wall_s: float = 0.0, worker: str = "", reason_code: Optional[str] = None) -> None:
        """The rung-0 evaluation of one candidate: its per-(task, seed) trainings, the baselines trained
        with them, and its summary, atomically.  reason_code: a RejectionReason value; when None, the
        report's rejection's code, or the code that leads the rejection text ("code: detail")."""
        self.record_rung(candidate_id, 0, report, score, cost=cost, wall_s=wall_s, worker=worker,
                         reason_code=reason_code)

    def record_rung(self, candidate_id: str, rung: int, report: dict, score: Optional[float],
                    lcb: Optional[float] = None, summary: Optional[dict] = None, cost: Optional[float] = None,
                    wall_s: float = 0.0, worker: str = "", reason_code: Optional[str] = None,
                    updates: Sequence = ()) -> None:
        """One candidate's evaluation at `rung`, atomically: the (task, seed) trainings of `report` (what
        the rung added), the baselines' accuracies trained with them, the rung's row (score over all of
        the rung's tasks and seeds, its lower confidence bound, `summary`), and the results row: created
        at rung 0 (a plain INSERT: evaluating a candidate twice is a bug, and fails loudly), its score
        and rung moved up at a higher rung; `updates`, (genome, value) pairs, go to the strategy log as
        'update' events in the same transaction, so a resumed run's strategy gets them exactly once."""
        self._writable()
        db = self._db()
        rejected = report.get("rejected") or next(
            (f"{name}: {t['rejected']}" for name, t in report.get("tasks", {}).items() if t.get("rejected")), None)
        code = _reason_code(reason_code, report)
        now = time.time()
        with self._guard():
            db.execute("BEGIN IMMEDIATE")
            try:
                self._insert_trainings(db, candidate_id, report, worker, rung)
                if rung == 0:
                    n = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                    db.execute("INSERT INTO results (candidate_id, score, cost, rejected, report, wall_s, worker, "
                               "finished, n, reason_code) VALUES (?,?,?,?,?,?,?,?,?,?)",
                               (candidate_id, score, cost, rejected, _dumps(report), wall_s, worker, now, n + 1, code))
                else:
                    db.execute("UPDATE results SET score = ?, rung = ? WHERE candidate_id = ?",
                               (score, rung, candidate_id))
                if self.schema >= 3:
                    seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM rungs").fetchone()[0]
                    db.execute("INSERT INTO rungs (candidate_id, rung, status, score, lcb, rejected, summary, "
                               "promoted, finished, seq) VALUES (?,?,'done',?,?,?,?,NULL,?,?) "
                               "ON CONFLICT (candidate_id, rung) DO UPDATE SET status = 'done', score = excluded.score,"
                               " lcb = excluded.lcb, rejected = excluded.rejected, summary = excluded.summary, "
                               "finished = excluded.finished, seq = excluded.seq",
                               (candidate_id, rung, score, lcb, rejected, None if summary is None else _dumps(summary),
                                now, seq))
                for genome, value in updates:
                    db.execute("INSERT INTO events (kind, genome, value, candidate_id, note) VALUES "
                               "('update', ?, ?, ?, ?)", (_dumps(genome), _dumps(value), candidate_id, f"rung {rung}"))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

    def _insert_trainings(self, db, candidate_id: str, report: dict, worker: str, tag) -> None:
        """The report's (task, seed) trainings of the candidate (plain INSERTs: training a pair twice is a
        bug) and of the baselines (the first result of a baseline's pair is kept), inside a transaction."""
        for task, t in report.get("tasks", {}).items():
            seeds = t.get("seeds", report.get("seeds", []))
            for seed, acc in zip(seeds, t["candidate"]["per_seed"]):
                db.execute("INSERT INTO evaluations (candidate_id, task, seed, metrics, wall_s, worker) "
                           "VALUES (?,?,?,?,?,?)",
                           (candidate_id, task, int(seed), _dumps({"accuracy": acc, "rejected": t["rejected"],
                                                                   "rung": tag}),
                            t.get("candidate_wall_s", 0.0) / max(1, len(seeds)), worker))
            if self.schema >= 3:
                for name, b in (t.get("baselines") or {}).items():
                    for seed, acc in zip(seeds, b.get("per_seed", [])):
                        db.execute("INSERT OR IGNORE INTO baselines (task, name, seed, accuracy) VALUES "
                                   "(?,?,?,?)", (task, name, int(seed), acc))

    def search_seeds(self) -> set[int]:
        """The seeds of every training of the search (validation trainings excluded)."""
        return {int(seed) for (seed,) in self._all(
            "SELECT DISTINCT seed FROM evaluations WHERE COALESCE(json_extract(metrics, '$.rung'), 0) != 'validation'")}

    def record_trainings(self, candidate_id: str, report: dict, worker: str = "", tag: str = "validation") -> None:
        """Trainings outside the search's rungs (validation): evaluations tagged `tag`, and baselines."""
        self._writable()
        db = self._db()
        with self._guard():
            db.execute("BEGIN IMMEDIATE")
            try:
                self._insert_trainings(db, candidate_id, report, worker, tag)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

    # -- staged evaluation
    def promote(self, candidate_id: str, rung: int) -> None:
        """Record that `candidate_id` was promoted to `rung` (submitted, not yet trained there)."""
        self._write("INSERT INTO rungs (candidate_id, rung, status, promoted, seq) VALUES "
                    "(?, ?, 'promoted', ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM rungs))",
                    (candidate_id, int(rung), time.time()))

    def rung_rows(self) -> list[dict]:
        """Every rung row in the order it was last changed: {candidate_id, rung, status, score, lcb,
        rejected, summary}.  A store older than schema 3 (a flat search) has one done rung-0 row per result."""
        if self.schema < 3:
            rows = self._all("SELECT candidate_id, 0, 'done', score, NULL, rejected, NULL FROM results ORDER BY n")
        else:
            rows = self._all("SELECT candidate_id, rung, status, score, lcb, rejected, summary FROM rungs ORDER BY seq")
        with self._guard():
            return [{"candidate_id": c, "rung": r, "status": st, "score": sc, "lcb": lcb, "rejected": rej,
                     "summary": json.loads(summ) if summ else None} for c, r, st, sc, lcb, rej, summ in rows]

    def task_scores(self, candidate_id: str) -> Optional[dict]:
        """task -> score at the candidate's highest completed rung (its estimate's task_scores), None when
        it has no completed rung with an estimate."""
        if self.schema < 3:
            return None
        rows = self._all("SELECT summary FROM rungs WHERE candidate_id = ? AND status = 'done' AND summary IS NOT NULL "
                         "ORDER BY rung DESC LIMIT 1", (candidate_id,))
        if not rows:
            return None
        with self._guard():
            return json.loads(rows[0][0]).get("task_scores") or None

    def task_front(self, tasks: Sequence[str], ranked: Optional[list] = None) -> list[dict]:
        """Per-task objectives (`--objectives tasks`): the Pareto front of the candidates' scores on each of
        `tasks` (every one maximised) at each candidate's highest rung, over the evaluated candidates with
        a score on every task: [{"id", "formula", "score", "task_scores"}] in ranked order.  `ranked`:
        ranked() when the caller has it."""
        from actsearch.strategies import pareto_front

        tasks = list(tasks)
        rows = []
        for r in self.ranked() if ranked is None else ranked:
            if r["score"] is None:
                continue
            ts = self.task_scores(r["id"])
            if ts and all(ts.get(t) is not None for t in tasks):
                rows.append((r, tuple(float(ts[t]) for t in tasks)))
        if not rows:
            return []
        # pareto_front maximises objective 0 and minimises the rest: negate the others
        front = pareto_front([(v[0], *(-x for x in v[1:])) for _, v in rows])
        return [{"id": rows[i][0]["id"], "formula": rows[i][0]["formula"], "score": rows[i][0]["score"],
                 "task_scores": dict(zip(tasks, rows[i][1]))} for i in front]

    def pooled_spreads(self, rows: Optional[list] = None) -> dict:
        """rung -> staging.PooledSpread of the per-seed scores of the candidates that completed it (not
        rejected), the spread behind the rankings' intervals.  `rows`: rung_rows() when the caller has them."""
        from actsearch.staging import pooled_spread

        lists: dict[int, list] = {}
        for row in self.rung_rows() if rows is None else rows:
            if row["status"] == "done" and row["summary"] and not row["rejected"] and row["score"] is not None:
                lists.setdefault(row["rung"], []).append(row["summary"].get("per_seed") or [])
        return {k: p for k, p in ((k, pooled_spread(v)) for k, v in lists.items()) if p is not None}

    def told_genomes(self, candidate_id: str) -> list:
        """The genomes told a value of `candidate_id` (several when duplicates were proposed), first tell first."""
        rows = self._all("SELECT genome FROM events WHERE kind = 'tell' AND candidate_id = ? ORDER BY seq",
                         (candidate_id,))
        with self._guard():
            out, seen = [], set()
            for (g,) in rows:
                if g not in seen:
                    seen.add(g)
                    out.append(json.loads(g))
            return out

    def accuracies(self, candidate_id: str) -> dict[str, dict[int, float]]:
        """task -> seed -> test accuracy of every stored training of `candidate_id` (search and validation)."""
        out: dict[str, dict[int, float]] = {}
        with self._guard():
            for task, seed, metrics in self._all("SELECT task, seed, metrics FROM evaluations WHERE candidate_id = ?",
                                                 (candidate_id,)):
                out.setdefault(task, {})[int(seed)] = json.loads(metrics)["accuracy"]
        return out

    def baseline_accuracies(self) -> dict[str, dict[str, dict[int, float]]]:
        """task -> baseline name -> seed -> test accuracy, of the baselines trained in this run (a store
        older than schema 3 keeps them only in its reports, which are read)."""
        out: dict = {}
        if self.schema >= 3:
            for task, name, seed, acc in self._all("SELECT task, name, seed, accuracy FROM baselines"):
                out.setdefault(task, {}).setdefault(name, {})[int(seed)] = acc
            return out
        with self._guard():
            for (report,) in self._all("SELECT report FROM results"):
                rep = json.loads(report)
                for task, t in rep.get("tasks", {}).items():
                    seeds = t.get("seeds", rep.get("seeds", []))
                    for name, b in (t.get("baselines") or {}).items():
                        for seed, acc in zip(seeds, b.get("per_seed", [])):
                            out.setdefault(task, {}).setdefault(name, {}).setdefault(int(seed), acc)
        return out

    def record_validation(self, settings: dict, summary: dict) -> int:
        return self._write("INSERT INTO validations (created, settings, summary) VALUES (?, ?, ?)",
                           (time.time(), _dumps(settings), _dumps(summary))).lastrowid

    def latest_validation(self) -> Optional[dict]:
        """The last validation's summary (actsearch.validation), or None."""
        if self.schema < 3:
            return None
        rows = self._all("SELECT id, created, summary FROM validations ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        with self._guard():
            return {**json.loads(rows[0][2]), "validation_id": rows[0][0], "created": rows[0][1]}

    def result(self, candidate_id: str) -> Optional[dict]:
        rows = self._all(f"SELECT score, cost, rejected, report, {self._col()} FROM results WHERE candidate_id = ?",
                         (candidate_id,))
        if not rows:
            return None
        score, cost, rejected, report, code = rows[0]
        with self._guard():
            return {"score": score, "cost": cost, "rejected": rejected, "report": json.loads(report),
                    "reason_code": code}

    def n_results(self) -> int:
        return self._all("SELECT COUNT(*) FROM results")[0][0]

    def n_rejected(self) -> int:
        return self._all("SELECT COUNT(*) FROM results WHERE rejected IS NOT NULL")[0][0]

    def n_screened_out(self) -> int:
        return self._all("SELECT COUNT(*) FROM candidates WHERE screening_passed = 0")[0][0]

    def evaluation_count(self) -> int:
        return self._all("SELECT COUNT(*) FROM evaluations")[0][0]

    def ranked(self, n: Optional[int] = None) -> list[dict]:
        """Evaluated candidates, best first by the conservative ranking of actsearch.staging.ranking_key:
        valid before rejected, then the lower 95% confidence bound of the score at the candidate's
        highest rung, then the score.  Each row has the rung reached and that rung's estimate."""
        from actsearch.staging import ranking_key

        sql = ("SELECT r.candidate_id, c.formula, c.canonical, c.params, r.score, r.cost, r.rejected, r.report, "
               f"c.nearest_name, c.nearest_distance, r.n, {self._col('r.')} FROM results r "
               "JOIN candidates c ON c.id = r.candidate_id ORDER BY r.n")
        rows = self._all(sql)
        rung_rows = self.rung_rows()  # read (and their summaries decoded) once for both uses
        top: dict[str, dict] = {}
        for row in rung_rows:
            if row["status"] == "done" and row["rung"] >= top.get(row["candidate_id"], {"rung": -1})["rung"]:
                top[row["candidate_id"]] = row
        spread = self.pooled_spreads(rung_rows)
        for row in top.values():  # the interval with the spread pooled over the candidate's rung
            summ, pool = row["summary"], spread.get(row["rung"])
            ci = (pool.interval(row["score"], len(summ.get("per_seed") or []))
                  if summ and pool is not None and row["score"] is not None else None)
            row["lcb"], row["ci"] = (ci[0], ci) if ci else (None, None)
        out = []
        with self._guard():
            for cid, formula, canonical, params, score, cost, rejected, report, nname, ndist, order, code in rows:
                rung = top.get(cid) or {"rung": 0, "lcb": None, "summary": None, "rejected": None}
                summary = rung["summary"] or {}
                out.append({"id": cid, "formula": formula, "canonical": canonical,
                            "params": json.loads(params or "{}"), "score": score, "cost": cost,
                            "rejected": rejected or rung["rejected"], "reason_code": code, "report": json.loads(report),
                            "nearest": {"name": nname, "distance": ndist}, "order": order,
                            "rung": rung["rung"], "lcb": rung["lcb"], "ci": rung.get("ci"),
                            "estimate": rung["summary"]})
        out.sort(key=lambda r: ranking_key(r["score"], r["lcb"], r["rejected"] is not None, r["order"]))
        return out[:int(n)] if n else out

    def history(self) -> list[tuple[int, Optional[float], Optional[str], str]]:
        """(evaluation number, rung-0 score, rejected, candidate id) in the order results arrived."""
        if self.schema >= 3:  # the rung-0 score: results.score moves up with the candidate's rung
            return [tuple(r) for r in self._all(
                "SELECT r.n, COALESCE(g.score, r.score), r.rejected, r.candidate_id FROM results r LEFT JOIN rungs g "
                "ON g.candidate_id = r.candidate_id AND g.rung = 0 ORDER BY r.n")]
        return [tuple(r) for r in self._all("SELECT n, score, rejected, candidate_id FROM results ORDER BY n")]

    def rung_spending(self) -> dict[int, dict]:
        """rung -> {"trainings": candidate (task, seed) trainings, "wall_s": their worker seconds}, from the
        evaluations table (validation trainings, whose rung is "validation", are counted apart)."""
        # grouped in SQL: the search's status line asks for this after every batch
        return {rung: {"trainings": n, "wall_s": wall or 0.0} for rung, n, wall in self._all(
            "SELECT COALESCE(json_extract(metrics, '$.rung'), 0), COUNT(*), SUM(wall_s) FROM evaluations GROUP BY 1")}

    def screening_reasons(self) -> list[str]:
        return [r[0] for r in self._all("SELECT screening_reason FROM candidates WHERE screening_passed = 0")]

    def rejection_counts(self) -> dict[str, int]:
        """reason code -> how many candidates were rejected for it, most first: the results rejected in
        training or evaluation, and the candidates stopped before it (screened out, invalid, ...).  A
        rejection text without a code (a schema-1 run) counts under its leading code or `unclassified`."""
        counts: Counter = Counter()
        for code, text in self._all(f"SELECT {self._col()}, rejected FROM results "
                                    f"WHERE rejected IS NOT NULL OR {self._col()} IS NOT NULL"):
            derived = code or code_of(text)
            counts[str(derived) if derived else UNCLASSIFIED] += 1
        for (code,) in self._all(f"SELECT {self._col('c.')} FROM candidates c WHERE (c.screening_passed = 0 OR "
                                 f"{self._col('c.')} IS NOT NULL) AND NOT EXISTS "
                                 "(SELECT 1 FROM results r WHERE r.candidate_id = c.id)"):
            counts[code or RejectionReason.SCREENED_OUT.value] += 1
        return dict(counts.most_common())

    def close(self) -> None:
        """Close the database, then release the writer lock (the log is checkpointed under it)."""
        db, self.db = self.db, None
        lock, self._lock_file = self._lock_file, None
        tmpdir, self._tmpdir = self._tmpdir, None
        try:
            if db is not None:
                db.close()
        finally:
            if lock is not None:
                lock.close()  # closing the descriptor releases the flock
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
