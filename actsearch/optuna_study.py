"""An Optuna study of a run, for optuna-dashboard: RUN_DIR/optuna.db (Optuna's RDB storage on SQLite),
a mirror of the run's store (RUN_DIR/results.db) that the store alone determines.

    pip install optuna-dashboard
    optuna-dashboard sqlite:///RUN_DIR/optuna.db

Studies (one per rung of the run's staged evaluation, so that the values within a study are comparable:
the same tasks and seeds):
  actsearch          rung 0, every candidate the search proposed, in the order the store recorded it:
                     COMPLETE  evaluated, valid: values = its rung-0 objective(s), what the strategy was told
                     FAIL      evaluated but rejected (diverged, timed out, ...) or without a score
                     PRUNED    rejected before training (screened out, unstable layer, invalid formula)
  actsearch-rung1..  each promoted candidate's evaluation at that rung (COMPLETE or FAIL); a flat run
                     (--rungs flat) has only `actsearch`
Objectives: --objectives score: one value, "score", maximised (0 = the tasks' reference baseline, -1
chance); score,cost: ("score" maximised, "cost" minimised, relative to ReLU; 0.0 where no cost could be
measured, as the strategy is told); tasks: one maximised value per search task, named after it;
worst-task: one value, "worst-task", the score on the candidate's worst search task, maximised.
A candidate's score at its highest rung (what `actsearch top` ranks) is its trial in the highest rung
study it reached.

Trial user attributes: candidate_id, formula, canonical, params, genome, rung, rung_label, stage
("rung K", or for a PRUNED trial the stage that stopped it: screen, stability, prepare), score, cost,
lcb, ci, tasks, seeds, per_seed, task_scores, reference, nearest (known activation) and its distance,
worker, wall_s (rung 0), and for a FAIL or PRUNED trial reason_code and reason.  Trials carry no Optuna
params (genomes differ in shape between spaces; the genome is an attribute).  Study user attributes: the
run's config, run_dir, rung, rung_label, objectives, actsearch_version.  Non-finite numbers are
stored as null.

Keeping it in step (`StudyMirror.sync`, which the search driver calls after each batch of results):
the trials present in optuna.db are keyed by (study, candidate_id); every sync adds, in the store's
order, the store's candidates and rung results that have no trial yet, and nothing else.  A resumed
run's first sync therefore adds exactly what the crashed session stored but had not mirrored, an old
run's first resume backfills its whole history, and no trial is ever added twice.  The mirror never
stops a search: an error in it is reported once as a warning and mirroring stops; `rebuild_study`
(`actsearch study RUN_DIR`) then writes optuna.db afresh from results.db (also for runs
made before this module, or runs whose optuna.db was lost).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

STUDY_NAME = "actsearch"
DB_NAME = "optuna.db"
_STAGES = {"screened_out": "screen", "unstable": "stability"}


def study_name(rung: int) -> str:
    """The study holding rung `rung`'s trials."""
    return STUDY_NAME if rung == 0 else f"{STUDY_NAME}-rung{rung}"


def storage_url(path: os.PathLike) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def metric_names(config: dict) -> list[str]:
    objectives = list(config.get("objectives") or ["score"])
    if objectives == ["tasks"]:
        return list(config["tasks"])
    return objectives


def directions(config: dict) -> list[str]:
    objectives = list(config.get("objectives") or ["score"])
    if objectives == ["tasks"]:
        return ["maximize"] * len(config["tasks"])
    return ["maximize"] + ["minimize"] * (len(objectives) - 1)


def _clean(obj: Any) -> Any:
    """JSON-safe user attributes: non-finite floats become None (the dashboard parses strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _loads(text: Optional[str], default=None):
    if text is None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _when(ts: Optional[float]) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts) if ts else datetime.datetime.now()


@contextlib.contextmanager
def _optuna_quiet(optuna):
    """Optuna logs every study it creates at INFO ("A new study created in RDB ..."); not in a search's output."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class StudyMirror:
    """The run's Optuna studies in `path` (default RUN_DIR/optuna.db), kept in step with its store by
    `sync(store)`.  `config`: the run's config (the store's, `store.config()`); `rungs`: the run's rungs
    (staging.Rung list) when known, for the studies' labels."""

    def __init__(self, path: os.PathLike, config: dict, rungs: Optional[list] = None, run_dir: Optional[str] = None):
        import optuna

        self.optuna = optuna
        self.path = Path(path)
        self.config = dict(config)
        self.rungs = list(rungs or [])
        self.run_dir = run_dir
        self.names = metric_names(self.config)
        self.directions = directions(self.config)
        self.tasks = list(self.config.get("tasks") or [])
        self.per_task = list(self.config.get("objectives") or ["score"]) == ["tasks"]
        self.worst_task = list(self.config.get("objectives") or ["score"]) == ["worst-task"]
        self._rung_mark = 0       # the store's rungs.seq (results.n in a store older than schema 3) mirrored
        self._pruned_mark = 0     # candidates.rowid mirrored
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # WAL: optuna-dashboard reads while the search writes, without blocking it
            import sqlite3

            db = sqlite3.connect(self.path)
            try:
                db.execute("PRAGMA journal_mode=WAL")
            finally:
                db.close()
        with _optuna_quiet(optuna):
            self.storage = optuna.storages.RDBStorage(storage_url(self.path),
                                                      engine_kwargs={"connect_args": {"timeout": 30}})
        self.studies: dict[int, Any] = {}
        self.keys: dict[int, set] = {}  # rung -> candidate ids with a trial
        for s in self.storage.get_all_studies():
            rung = self._rung_of(s.study_name)
            if rung is None:
                continue
            study_id = self.storage.get_study_id_from_name(s.study_name)
            self.keys[rung] = {t.user_attrs.get("candidate_id")
                               for t in self.storage.get_all_trials(study_id, deepcopy=False)}

    @staticmethod
    def _rung_of(name: str) -> Optional[int]:
        if name == STUDY_NAME:
            return 0
        prefix = f"{STUDY_NAME}-rung"
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
        return None

    def study(self, rung: int):
        """The study of `rung`, created (with its user attributes and metric names) on first use."""
        if rung in self.studies:
            return self.studies[rung]
        optuna = self.optuna
        with _optuna_quiet(optuna):
            study = optuna.create_study(storage=self.storage, study_name=study_name(rung),
                                        directions=self.directions, load_if_exists=True)
        have = [d.name.lower() for d in study.directions]
        if have != self.directions:
            raise ValueError(f"{self.path}: study {study_name(rung)} has directions {have}, this run "
                             f"{self.directions}; rebuild it (actsearch study RUN_DIR)")
        label = self.rungs[rung].label() if rung < len(self.rungs) else None
        attrs = {"config": _clean(self.config), "run_dir": self.run_dir, "rung": rung, "rung_label": label,
                 "objectives": self.names, "source": "results.db (actsearch.optuna_study)"}
        try:
            from actsearch import __version__

            attrs["actsearch_version"] = __version__
        except ImportError:  # pragma: no cover
            pass
        for key, value in attrs.items():
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)
        if study.metric_names != self.names:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard labels axes with
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.names)
        self.studies[rung] = study
        self.keys.setdefault(rung, set())
        return study

    # -- trials
    def _common(self, row: dict) -> dict:
        return {"candidate_id": row["candidate_id"], "formula": row["formula"], "canonical": row["canonical"],
                "params": _loads(row["params"], {}), "genome": _loads(row["genome"])}

    def _rung_trial(self, row: dict):
        optuna = self.optuna
        summary = _loads(row["summary"]) or {}
        rung = int(row["rung"])
        score, cost = row["score"], row["cost"]
        task_scores = summary.get("task_scores") or None
        attrs = {**self._common(row), "rung": rung, "rung_label": summary.get("rung_label") or (
                     self.rungs[rung].label() if rung < len(self.rungs) else None),
                 "stage": f"rung {rung}", "score": score, "cost": cost, "lcb": row["lcb"],
                 "ci": summary.get("ci"), "tasks": summary.get("tasks"), "seeds": summary.get("seeds"),
                 "per_seed": summary.get("per_seed"), "task_scores": task_scores,
                 "reference": summary.get("reference"),
                 "nearest": row["nearest_name"], "nearest_distance": row["nearest_distance"]}
        if rung == 0:
            attrs.update(worker=row["worker"], wall_s=row["wall_s"])
        rejected = row["rejected"] or (row["result_rejected"] if rung == 0 else None)
        values, reason = None, None
        if rejected:
            reason = rejected
        elif score is None or not math.isfinite(score):
            reason = "no score at this rung"
        elif self.per_task or self.worst_task:  # as the strategy is told: every task's score, or the worst one
            missing = [t for t in self.tasks if not task_scores or task_scores.get(t) is None]
            if missing:
                reason = f"no score on {', '.join(missing)}"
            else:
                per_task = [float(task_scores[t]) for t in self.tasks]
                values = per_task if self.per_task else [min(per_task)]
        elif len(self.names) == 1:
            values = [float(score)]
        else:  # score, cost: as the strategy is told (no measured cost: 0.0)
            values = [float(score), float(cost) if cost is not None and math.isfinite(cost) else 0.0]
        if values is not None and not all(math.isfinite(v) for v in values):
            values, reason = None, "a non-finite objective value"
        if values is None:
            attrs.update(reason=reason, reason_code=row["reason_code"] if rung == 0 else None)
            state = optuna.trial.TrialState.FAIL
        else:
            state = optuna.trial.TrialState.COMPLETE
        start = _when(row["created"] if rung == 0 else row["promoted"] or row["created"])
        return self._frozen(state, values, attrs, start, max(start, _when(row["finished"])))

    def _pruned_trial(self, row: dict):
        code = row["reason_code"] or "screened_out"
        reason = row["reason"] or code
        stage = _STAGES.get(code)
        if stage is None:  # rejected by an exception: "<stage>: <error type>: <detail>"
            head = reason.split(":", 1)[0].strip()
            stage = head if head and " " not in head else "prepare"
        attrs = {**self._common(row), "rung": 0, "stage": stage, "reason_code": code, "reason": reason}
        when = _when(row["created"])
        return self._frozen(self.optuna.trial.TrialState.PRUNED, None, attrs, when, when)

    def _frozen(self, state, values, attrs, start, complete):
        return self.optuna.trial.FrozenTrial(
            number=-1, trial_id=-1, state=state, value=None, values=values, datetime_start=start,
            datetime_complete=complete, params={}, distributions={}, user_attrs=_clean(attrs), system_attrs={},
            intermediate_values={})

    # -- keeping in step
    def sync(self, store) -> int:
        """Add a trial for every candidate and rung evaluation of `store` that has none yet, in the
        store's order.  Returns how many trials were added."""
        self.study(0)  # the run's study exists from the first sync on, even before any result
        rows = ([("rung", r) for r in store.rung_rows_after(self._rung_mark)]
                + [("pruned", r) for r in store.pruned_candidates_after(self._pruned_mark)])
        rows.sort(key=lambda kr: (kr[1]["finished"] if kr[0] == "rung" else kr[1]["created"]) or 0.0)
        added = 0
        for kind, row in rows:
            rung, cid = (int(row["rung"]) if kind == "rung" else 0), row["candidate_id"]
            if cid not in self.keys.get(rung, ()):  # a trial only where it has none yet
                trial = self._rung_trial(row) if kind == "rung" else self._pruned_trial(row)
                self.study(rung).add_trial(trial)  # creates the rung's study and its key set on first use
                self.keys[rung].add(cid)
                added += 1
            if kind == "rung":
                self._rung_mark = max(self._rung_mark, row["mark"])
            else:
                self._pruned_mark = max(self._pruned_mark, row["mark"])
        return added

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.storage.remove_session()
        with contextlib.suppress(Exception):
            self.storage.engine.dispose()


class SearchMirror:
    """The search driver's handle: opens the mirror on first use, never raises (a failure is warned
    about once, then mirroring stops: the store stays the record, rebuild_study writes the study later).
    enabled=False: a handle that writes nothing (SearchDriver(..., optuna_study=False))."""

    def __init__(self, run_dir: os.PathLike, config: dict, rungs: Optional[list] = None, enabled: bool = True):
        self.run_dir, self.config, self.rungs, self.enabled = str(run_dir), config, rungs, enabled
        self.mirror: Optional[StudyMirror] = None
        self.error: Optional[str] = None

    def sync(self, store) -> None:
        if self.error is not None or not self.enabled:
            return
        try:
            if self.mirror is None:
                self.mirror = StudyMirror(Path(self.run_dir) / DB_NAME, self.config, self.rungs, self.run_dir)
            self.mirror.sync(store)
        except Exception as exc:  # noqa: BLE001 - the study is a view; the search goes on without it
            self.error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"the Optuna study {Path(self.run_dir) / DB_NAME} is no longer updated ({self.error}); "
                          f"the search goes on (results.db is the record) - rebuild the study afterwards with "
                          f"`actsearch study {self.run_dir}`", RuntimeWarning, stacklevel=2)
            self.close()

    def close(self) -> None:
        mirror, self.mirror = self.mirror, None
        if mirror is not None:
            mirror.close()


def rebuild_study(run_dir: os.PathLike, out: Optional[os.PathLike] = None) -> Path:
    """Write the run's Optuna studies afresh from its results.db: to a temporary file next to `out`
    (default RUN_DIR/optuna.db), then moved over it, so `out` is a whole study or the old one.  Refused
    while a search writes the run (its own mirror keeps optuna.db in step).  Returns the path written."""
    from actsearch.staging import parse_rungs
    from actsearch.store import ResultStore, StoreError, writer_active

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / DB_NAME
    if writer_active(run_dir):
        raise StoreError(f"{run_dir} is being written by a search now; its own mirror keeps {out} up to date - "
                         f"rebuild it when the search has ended")
    with ResultStore(run_dir, mode="read") as store:
        config = store.config()
        if config is None:
            raise StoreError(f"{store.path} has no run config (an empty run); nothing to rebuild")
        try:
            rungs = parse_rungs(config.get("rungs") or "flat", config.get("tasks") or [], config.get("seeds", 2))
        except (ValueError, TypeError):
            rungs = None
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".new", dir=out.parent)
        os.close(fd)
        os.unlink(tmp)  # the mirror creates it (in WAL mode)
        mirror = None
        try:
            mirror = StudyMirror(tmp, config, rungs, str(run_dir))
            mirror.sync(store)
            mirror.close()
            import sqlite3

            db = sqlite3.connect(tmp)  # fold the log into the file before it is moved into place
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{out}{suffix}")
            os.replace(tmp, out)
        finally:
            if mirror is not None:
                mirror.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{tmp}{suffix}")
    return out
