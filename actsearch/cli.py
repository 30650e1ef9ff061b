"""Command-line interface: `actsearch check | known | primitives | export | eval | baselines | search | top | validate | report |
bench | drill`.  Every command has --json."""
from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from actsearch import __version__

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="actsearch: automated search for activation functions.")
out = Console()
err = Console(stderr=True)


class CLIError(Exception):
    """An error to report as one line on stderr, with exit status 2."""


def _fail(message: str) -> "typer.Exit":
    from rich.markup import escape

    # escape: user text in a message ('[bold]', a token like '[x]') must be printed, not read as markup
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def parse_params(items: Optional[List[str]]) -> dict[str, float]:
    params: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CLIError(f"--param expects NAME=VALUE (e.g. --param beta=1.0), got {item!r}")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise CLIError(f"--param {name.strip()}: {value!r} is not a number") from None
    return params


def load_candidate(formula: str, param: Optional[List[str]]):
    from actsearch.formula import FormulaError, parse_formula

    try:
        return parse_formula(formula, params=parse_params(param))
    except FormulaError as exc:
        raise CLIError(f"bad formula: {exc}") from None


def load_stored_candidate(ref: str):
    """RUN_DIR:ID -> (candidate, provenance with the run and its scores, {"report": its stored evaluation
    report or None, "tasks": the run's search tasks}) from the run's store."""
    from actsearch.formula import FormulaError, parse_formula
    from actsearch.store import ResultStore, StoreError

    run_dir, cid = ref.rsplit(":", 1)
    try:
        with ResultStore(run_dir, mode="read") as store:  # read-only: never written, never locked
            row, result, cfg = store.candidate(cid), store.result(cid), store.config() or {}
            rungs = [r for r in store.rung_rows() if r["candidate_id"] == cid and r["status"] == "done"]
            validation = store.latest_validation()
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    if row is None:
        raise CLIError(f"no candidate {cid!r} in {run_dir} (see `actsearch top {run_dir}` for ids)")
    try:
        cand = parse_formula(row["formula"], params=row["params"] or None)
    except FormulaError as exc:
        raise CLIError(f"stored formula of {cid} does not parse: {exc}") from None
    prov = {"run": f"{os.path.abspath(run_dir)} (space {cfg.get('space')}, strategy {cfg.get('strategy')}, "
                   f"tasks {', '.join(cfg.get('tasks', []))}, {cfg.get('seeds')} seeds)"}
    if result is not None:
        parts = [f"score {result['score']:+.4f}" if result["score"] is not None else "no score"]
        for task, t in result["report"].get("tasks", {}).items():
            vs = t.get("vs", {}).get("relu")
            parts.append(f"{task}: accuracy {t['candidate']['mean']:.4f} +- {t['candidate']['std']:.4f}"
                         + (f", vs ReLU {vs['diff']:+.4f} {_fmt_ci(vs.get('ci'), 4)} {vs['verdict']}"
                            if vs else ""))
        if rungs and rungs[-1]["summary"]:
            top = max(rungs, key=lambda r: r["rung"])
            est = top["summary"]
            parts[0] = (f"score {_score_ci(est)} at rung {top['rung']} ({len(est['tasks'])} tasks x "
                        f"{len(est['seeds'])} seeds: {', '.join(est['tasks'])})")
        if result["rejected"]:
            parts.append(f"rejected: {result['rejected']}")
        v = next((c for c in (validation or {}).get("candidates", []) if c["id"] == cid), None)
        if v is not None:
            parts.append(f"validation on fresh seeds: {v['verdict']}; search-task score {_score_ci(v['fresh'])}, "
                         f"held-out score {_score_ci(v['held_out'])} ({', '.join(validation['held_out'])})")
        prov["scores"] = "; ".join(parts)
    return cand, prov, {"report": result["report"] if result is not None else None,
                        "tasks": list(cfg.get("tasks") or [])}


def _finite_ci(ci):
    """A confidence interval [lo, hi] with finite ends, else None (one seed has none; runs stored before
    issue 22 hold [-inf, inf])."""
    import math

    if not ci or len(ci) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        return None
    return [float(ci[0]), float(ci[1])]


def _fmt_ci(ci, digits: int) -> str:
    ci = _finite_ci(ci)
    return f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else "n/a (1 seed)"


def _strict(obj):
    """`obj` with every non-finite float (NaN, +-inf) replaced by None, numpy scalars made plain."""
    import math
    import numbers

    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def _json(obj) -> None:
    """The one JSON printer of every command: strict JSON (RFC 8259), so NaN and +-inf print as null."""
    sys.stdout.write(json.dumps(_strict(obj), indent=2, allow_nan=False,
                                default=lambda o: _strict(float(o))) + "\n")


def _version(value: bool):
    if value:
        typer.echo(f"actsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


def check_report(candidate, n_nearest: int = 5) -> dict:
    from actsearch.catalog import nearest_known
    from actsearch.formula import format_formula
    from actsearch.properties import analyze
    from actsearch.screening import screen_candidate

    screening = screen_candidate(candidate)
    try:
        derivative = format_formula(candidate.derivative)
    except Exception:  # Piecewise etc. have no formula spelling; show sympy's
        derivative = str(candidate.derivative)
    nearest = nearest_known(candidate, k=n_nearest)
    return {
        "formula": candidate.source,
        "canonical": candidate.formula,
        "id": candidate.id,
        "params": dict(candidate.params),
        "kind": "normalization-activation" if candidate.is_tensor_op else "scalar",
        "derivative": derivative,
        "properties": analyze(candidate),
        "screening": screening.to_dict(),
        "nearest": [m.to_dict() for m in nearest],
        "verdict": _verdict(nearest),
    }


def _verdict(nearest) -> str:
    if not nearest:
        return "no scalar catalog comparison (normalization-activation candidate)"
    best = nearest[0]
    if best.distance < 1e-3:
        return f"rediscovery of {best.title} (distance {best.distance:.2g})"
    return f"novel: nearest is {best.title} at distance {best.distance:.3g}"


@app.command()
def check(
    formula: str = typer.Argument(..., help="Formula in x, e.g. 'x*sigmoid(beta*x)'. Start with a space or use -- for a leading minus."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Parameter NAME=VALUE (repeatable)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a PNG of f and f' on [-6, 6]."),
    nearest: int = typer.Option(5, "--nearest", min=1, max=50, help="How many catalog neighbours to show."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Canonical form, derivative, properties, screening and nearest known activations of FORMULA."""
    try:
        cand = load_candidate(formula, param)
        report = check_report(cand, nearest)
        if plot:
            from actsearch.plot import plot_candidate

            if cand.is_tensor_op:
                raise CLIError("--plot draws scalar activations; this is a normalization-activation candidate")
            try:
                plot_candidate(cand, plot)
            except OSError as exc:
                raise CLIError(f"cannot write plot {plot!r}: {exc.strerror or exc}") from None
            report["plot"] = plot
    except CLIError as exc:
        raise _fail(str(exc))
    if as_json:
        _json(report)
        return
    _print_check(report)


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_show(e) for e in v) + "]"
    return str(v)


def _print_check(r: dict) -> None:
    out.print(f"[bold]{r['canonical']}[/]   [dim]{r['id']}[/]", highlight=False)
    if r["params"]:
        out.print("params: " + ", ".join(f"{k}={v:g}" for k, v in r["params"].items()))
    out.print(f"f'(x) = {r['derivative']}", highlight=False)
    from rich.markup import escape

    props = Table(show_header=False, box=None, pad_edge=False)
    for k, v in r["properties"].items():
        # a layer's moments, "batch_std(x), instance_std(x)"; escaped: rich would read "[batch_std(x)]" as markup
        names = isinstance(v, list) and v and all(isinstance(e, str) for e in v)
        props.add_row(f"  {k}", escape(", ".join(v) if names else _show(v)))
    out.print(props)
    s = r["screening"]
    if s["passed"]:
        out.print("screening: [green]passed[/]")
    else:
        out.print("screening: [red]failed[/]")
        for reason in s["reasons"]:
            out.print(f"  - {reason}", highlight=False)
    if r["nearest"]:
        t = Table(title="nearest known activations", title_justify="left")
        t.add_column("name")
        t.add_column("distance", justify="right")
        t.add_column("affine", justify="right")
        t.add_column("authors, year", overflow="ellipsis", no_wrap=True, max_width=40)
        for m in r["nearest"]:
            authors = m["reference"].split(",")[0]
            t.add_row(m["title"], f"{m['distance']:.4g}", f"{m['affine_distance']:.4g}", f"{authors}, {m['year']}")
        out.print(t)
    out.print(r["verdict"])
    if r.get("plot"):
        out.print(f"plot: {r['plot']}")


@app.command()
def known(
    family: Optional[str] = typer.Option(None, "--family", help="Only this family (relu, gated, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
):
    """List the known-activation catalog."""
    from actsearch.catalog import load_catalog

    entries = [k for k in load_catalog().values() if family is None or k.family == family]
    if family is not None and not entries:
        families = sorted({k.family for k in load_catalog().values()})
        raise _fail(f"unknown family {family!r}; families: {', '.join(families)}")
    if as_json:
        _json([{"name": k.name, "title": k.title, "formula": k.formula, "params": dict(k.params),
                "reference": k.reference, "year": k.year, "family": k.family} for k in entries])
        return
    t = Table(title=f"{len(entries)} known activations")
    for col in ("name", "formula", "year", "reference"):
        t.add_column(col, overflow="fold")
    for k in entries:
        ps = "".join(f", {n}={v:g}" for n, v in k.params.items())
        t.add_row(k.title, k.formula + ps, str(k.year), k.reference)
    out.print(t)


@app.command()
def primitives(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """List the grammar's primitives with arity, parameters, guards and cost."""
    from actsearch.primitives import PRIMITIVES

    rows = [{"name": p.name, "kind": p.kind, "inputs": p.n_inputs if p.n_inputs is not None else "2+",
             "params": {n: d for n, d in p.params}, "safe": p.safe, "aliases": list(p.aliases),
             "cost": {"elementwise": p.cost.elementwise, "transcendental": p.cost.transcendental},
             "torch": p.torch, "triton": p.triton, "sets": list(p.sets)} for p in PRIMITIVES.values()]
    if as_json:
        _json(rows)
        return
    t = Table(title=f"{len(rows)} primitives")
    for col in ("name", "kind", "inputs", "params", "guard", "cost", "sets"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else ""), r["kind"],
                  str(r["inputs"]), ", ".join(f"{k}={v:g}" for k, v in r["params"].items()), r["safe"] or "",
                  f"{r['cost']['elementwise']}+{r['cost']['transcendental']}T", ",".join(r["sets"]))
    out.print(t)


@app.command()
def export(
    formula: str = typer.Argument(..., help="Formula in x, or RUN_DIR:ID of a candidate of a search run."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Parameter NAME=VALUE (repeatable)."),
    fmt: str = typer.Option("torch", "--format", "-f", help="torch | triton | sympy | latex"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write to FILE instead of stdout."),
    name: str = typer.Option("Activation", "--name", help="Class name of the exported nn.Module."),
    as_json: bool = typer.Option(False, "--json", help="Print {format, name, id, path|source} as JSON."),
    params_from: Optional[str] = typer.Option(
        None, "--params", help="trained | initial: the parameter values of a RUN_DIR:ID export (default: "
                               "trained where the run recorded them, else initial); a formula has only initial."),
    task: Optional[str] = typer.Option(None, "--task", help="With --params trained: the task whose trained values "
                                                            "(median over its seeds and layers) are exported; "
                                                            "default the run's first search task."),
):
    """Standalone code for FORMULA: torch (imports only torch), triton, sympy or latex."""
    from actsearch.export import FORMATS, export_candidate
    from actsearch.screening import screen_candidate

    try:
        if fmt not in FORMATS:
            raise CLIError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if params_from not in (None, "trained", "initial"):
            raise CLIError(f"unknown --params {params_from!r}; choose trained or initial")
        if task is not None and params_from == "initial":
            raise CLIError("--task picks the task of the trained values; it does not go with --params initial")
        provenance, stored = None, None
        if ":" in formula and os.path.exists(os.path.join(formula.rsplit(":", 1)[0], "results.db")):
            cand, provenance, stored = load_stored_candidate(formula)
        elif ":" in formula:  # no formula has a ':', so RUN_DIR:ID of a run that is not there
            try:
                cand = load_candidate(formula, param)
            except CLIError:
                run = formula.rsplit(":", 1)[0]
                raise CLIError(f"no run at {run} ({os.path.join(run, 'results.db')} does not exist); "
                               f"RUN_DIR:ID names a candidate of a search run") from None
        else:
            cand = load_candidate(formula, param)
        values, described = _export_params(cand, stored, params_from, task)
        screening = screen_candidate(cand)
        if not screening.passed and fmt in ("torch", "triton"):
            raise CLIError("candidate fails screening, refusing to export kernels: " + "; ".join(screening.reasons))
        try:
            text = export_candidate(cand, fmt, name, provenance=provenance, values=values, params_from=described)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        if output:
            try:
                with open(output, "w") as fh:
                    fh.write(text)
            except OSError as exc:
                raise CLIError(f"cannot write {output!r}: {exc.strerror or exc}") from None
    except CLIError as exc:
        raise _fail(str(exc))
    if as_json:
        _json({"format": fmt, "name": name, "id": cand.id, "canonical": cand.formula,
               "params": {"from": "trained" if values else "initial",
                          "values": values or dict(cand.params), "note": described},
               **({"path": output} if output else {"source": text})})
    elif output:
        err.print(f"wrote {fmt} export of {cand.formula} to {output}", highlight=False)
    else:
        sys.stdout.write(text)


def _export_params(cand, stored, params_from, task):
    """(values to export or None for the initial ones, the docstring's note on them or None) for `export`:
    see its --params and --task."""
    from actsearch.export import trained_param_values

    if stored is None:  # a formula, not a run's candidate: only initial values exist
        if params_from == "trained" or task is not None:
            raise CLIError("--params trained / --task need RUN_DIR:ID of a search run's candidate (a formula "
                           "has only its initial values)")
        return None, None
    if not cand.params:
        if task is not None:
            raise CLIError(f"{cand.formula} has no learnable parameters: --task has nothing to pick")
        return None, None
    if params_from == "initial":
        return None, "as asked with --params initial, not the values the networks learned"
    report = stored["report"]
    default = stored["tasks"][0] if stored["tasks"] else None
    try:
        if report is None:
            raise ValueError("the candidate has no recorded evaluation")
        values, what = trained_param_values(report, task, default)
    except ValueError as exc:
        if params_from == "trained" or task is not None:
            raise CLIError(f"no trained parameter values to export: {exc}") from None
        # the default falls back to the initial values, and the docstring says so
        return None, ("no trained values recorded for this candidate (a run from before they were kept, "
                      "or no seed finished training)")
    return values, what


@app.command("tasks")
def tasks_cmd(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """The proxy tasks `eval` trains on: data, model, budget, chance level."""
    from actsearch.tasks import DEFAULT_TASKS, TASKS

    rows = [{"name": t.name, "kind": t.kind, "description": t.description, "metric": t.metric, "chance": t.chance,
             "steps": t.budget.steps, "batch_size": t.budget.batch_size, "lr": t.budget.lr,
             "check_step": t.budget.check_step, "in_all": t.name in DEFAULT_TASKS, "reference": t.reference,
             "baselines": list(t.baselines)} for t in TASKS.values()]
    if as_json:
        _json(rows)
        return
    table = Table()
    for col in ("task", "kind", "description", "steps x batch", "chance", "in group"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["description"], f"{r['steps']} x {r['batch_size']}", f"{r['chance']:.3f}",
                      "all" if r["in_all"] else "layers" if r["kind"] == "layer" else "")
    out.print(table)


def _check_training_options(seeds: int, steps: Optional[int], threads: int) -> None:
    """The numbers of `eval` and `baselines`: CLIError names the first bad one."""
    if seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {seeds}")
    if steps is not None and steps < 1:
        raise CLIError(f"--steps must be >= 1, got {steps}")
    if threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")


def _split(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@app.command("eval")
def eval_cmd(
    formula: str = typer.Argument(..., help="The candidate formula, e.g. 'x*sigmoid(beta*x)', or a layer "
                                  "with moment ops, e.g. 'x*sigmoid(v*x)/group_std(x)' -p v=1 on layer tasks."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="NAME=VALUE initial parameter value."),
    task: Optional[str] = typer.Option(None, "--task", help="One task (default mnist1d-mlp)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated tasks, 'all' or 'layers' (the layer tasks)."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per model (paired across candidate and baselines)."),
    baselines: Optional[str] = typer.Option(None, "--baselines", help="Comma-separated built-in baselines (default "
                                            "relu,gelu,silu; on layer tasks bn-relu,gn-relu,bn-silu,evonorm-b0,evonorm-s0)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: each task's budget)."),
    threads: int = typer.Option(2, "--threads", help="torch threads (results are reproducible per thread count)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Train the baselines even if cached."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a candidate and baselines on proxy tasks with paired seeds: means, 95% CIs, verdicts, score."""
    try:  # the formula and the numbers first: a bad one is refused before torch is imported (~2 s)
        candidate = load_candidate(formula, param)
        if task is not None and not task.strip():
            raise CLIError("--task is empty; name a task (see `actsearch tasks`)")
        if tasks is not None and not _split(tasks):
            raise CLIError("--tasks is empty; name at least one task (see `actsearch tasks`) or 'all'")
        _check_training_options(seeds, steps, threads)
    except CLIError as exc:
        raise _fail(str(exc))
    import torch

    from actsearch.evaluation import evaluate
    from actsearch.tasks import resolve_tasks, task_kind

    try:
        names = ([task.strip()] if task else []) + _split(tasks)
        task_list = resolve_tasks(names or None)
        kind = task_kind(task_list)
        if baselines is not None and not _split(baselines):
            raise CLIError("--baselines is empty; name at least one baseline")
        base = _split(baselines) if baselines is not None else list(task_list[0].baselines)
        for b in base:
            task_list[0].make_unit(b)
        if candidate.is_tensor_op != (kind == "layer"):
            task_list[0].make_unit(candidate)  # raises: the candidate is of the other kind
    except (CLIError, ValueError) as exc:
        raise _fail(str(exc))
    torch.set_num_threads(threads)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        ids = {t.name: bar.add_task(f"{t.name:<12}", total=1) for t in task_list}

        def progress(name, done, total):
            bar.update(ids[name], completed=done, total=total)

        r = evaluate(candidate, [t.name for t in task_list], seeds=seeds, baselines=base, steps=steps,
                     cache=False if no_cache else None, progress=progress)
        for t in task_list:
            bar.update(ids[t.name], completed=1, total=1)
    if as_json:
        _json(r)
        return
    _print_eval(r)


def _print_eval(r: dict) -> None:
    c = r["candidate"]
    if r["screening"] and not r["screening"]["passed"]:
        out.print(f"[bold red]rejected by screening:[/] {'; '.join(r['screening']['reasons'])}")
    for name, t in r["tasks"].items():
        table = Table(title=f"{name}: test {t['metric']}, {len(r['seeds'])} seeds, {t['steps']} steps", title_justify="left")
        for col in ("model", "mean", "std", "per seed", "diff vs model", "95% CI", "verdict"):
            table.add_column(col, justify="left" if col in ("model", "verdict") else "right")
        cs = t["candidate"]
        table.add_row(c["canonical"][:40], f"{cs['mean']:.4f}", f"{cs['std']:.4f}",
                      " ".join(f"{v:.3f}" for v in cs["per_seed"]), "", "", "")
        for b, s in t["baselines"].items():
            v = t["vs"][b]
            color = {"better": "green", "worse": "red"}.get(v["verdict"], "yellow")
            table.add_row(b, f"{s['mean']:.4f}", f"{s['std']:.4f}", " ".join(f"{x:.3f}" for x in s["per_seed"]),
                          f"{v['diff']:+.4f}", _fmt_ci(v.get("ci"), 4), f"[{color}]{v['verdict']}[/]")
        out.print(table)
        extra = f"; [red]rejected[/]: {t['rejected']} (saved {t['saved_s']:.1f} s)" if t["rejected"] else ""
        ref = ref_label(t.get("reference", "relu"))
        out.print(f"  score {t['score']:+.3f} (improvement over {ref} as a fraction of {ref}'s margin over chance "
                  f"{t['chance']:.3f}); {t['wall_s']:.1f} s{extra}")
    out.print(f"[bold]multi-task score {r['score']:+.3f}[/] for {c['canonical']} ({c['id']})")


@app.command("tune")
def tune_cmd(
    formula: str = typer.Argument(..., help="A formula with learnable parameters, e.g. 'x*(lam*exp(-kappa*x) + 1)**(-1/lam)'."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="NAME=VALUE default initial value (the centre of its range)."),
    range_: Optional[List[str]] = typer.Option(None, "--range", help="NAME=LOW:HIGH search range of a parameter "
                                               "(default: [v/4, 4v] log scale around the default v; [-1, 1] for 0)."),
    tasks: Optional[str] = typer.Option("mnist1d-mlp", "--tasks", help="Comma-separated tasks, 'all' or 'layers'."),
    trials: int = typer.Option(16, "--trials", help="Optuna trials (the default initial values are trial 0)."),
    batch: int = typer.Option(4, "--batch", help="Trials asked at once and trained as one population."),
    seeds: int = typer.Option(2, "--seeds", help="Tuning seeds (0..n-1), paired across trials and baselines."),
    validate_seeds: int = typer.Option(3, "--validate-seeds", help="Fresh seeds on which the best trial is compared with the default (0: skip)."),
    sampler: str = typer.Option("tpe", "--sampler", help="Optuna sampler: tpe, random, qmc, gp, cmaes (needs the cmaes package)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: each task's budget)."),
    seed: int = typer.Option(0, "--seed", help="Sampler seed."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (e.g. sqlite:///tune.db): resumable, and "
                                          "readable by optuna-dashboard."),
    threads: int = typer.Option(2, "--threads", help="torch threads."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Tune a candidate's initial parameter values with Optuna's samplers; the best is checked on fresh seeds."""
    from actsearch.tuning import SAMPLERS

    try:
        candidate = load_candidate(formula, param)
        if not candidate.params:
            raise CLIError(f"{candidate.formula} has no learnable parameters to tune (give them with -p NAME=VALUE)")
        ranges = {}
        for item in range_ or []:
            name, sep, span = item.partition("=")
            lo, sep2, hi = span.partition(":")
            try:
                if not (sep and sep2):
                    raise ValueError
                ranges[name.strip()] = (float(lo), float(hi))
            except ValueError:
                raise CLIError(f"--range expects NAME=LOW:HIGH (e.g. --range beta=0.1:10), got {item!r}") from None
        if sampler not in SAMPLERS:
            raise CLIError(f"unknown --sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
        for flag, v, low in (("--trials", trials, 1), ("--batch", batch, 1), ("--validate-seeds", validate_seeds, 0)):
            if v < low:
                raise CLIError(f"{flag} must be >= {low}, got {v}")
        _check_training_options(seeds, steps, threads)
        if not _split(tasks):
            raise CLIError("--tasks is empty; name at least one task (see `actsearch tasks`)")
    except CLIError as exc:
        raise _fail(str(exc))
    import torch

    from actsearch.tasks import resolve_tasks
    from actsearch.tuning import tune_initial_params

    torch.set_num_threads(threads)
    try:
        task_names = [t.name for t in resolve_tasks(_split(tasks))]
        with err.status("tuning") as status:
            result = tune_initial_params(candidate, task_names, trials=trials, batch=batch, seeds=seeds,
                                         sampler=sampler, ranges=ranges, seed=seed, validate_seeds=validate_seeds,
                                         steps=steps, storage=storage,
                                         progress=lambda done, total: status.update(f"tuning: {done}/{total} trials"))
    except ValueError as exc:
        raise _fail(str(exc))
    if as_json:
        _json(result.to_dict())
        return
    table = Table(title=f"{result.formula}: {len(result.trials)} trials ({result.sampler}), seeds "
                        f"{', '.join(map(str, result.tuning_seeds))} of {', '.join(result.tasks)}", title_justify="left")
    for col in ("trial", "initial values", "score"):
        table.add_column(col, justify="right" if col != "initial values" else "left")
    ranked = sorted(result.trials, key=lambda t: (t.score is None, -(t.score or 0.0), t.number))
    for t in ranked[:10]:
        vals = ", ".join(f"{k}={v:.4g}" for k, v in t.params.items()) + ("  (default)" if t.default else "")
        table.add_row(str(t.number), vals, "rejected" if t.score is None else f"{t.score:+.3f}")
    out.print(table)
    best = ", ".join(f"{k}={v:.4g}" for k, v in result.best_params.items())
    out.print(f"best initial values: {best}  (score {result.best_score:+.3f}; default {result.default_score:+.3f})")
    for c in result.validation:
        if c.ci is None and c.verdict == "the default is best":
            out.print(f"  {c.task}: the default initial values are the best trial")
            continue
        color = {"better": "green", "worse": "red"}.get(c.verdict, "yellow")
        out.print(f"  {c.task}, fresh seeds {c.seeds[0]}..{c.seeds[-1]}: best {c.best:.4f} vs default {c.default:.4f}, "
                  f"diff {c.diff:+.4f} {_fmt_ci(c.ci, 4)} [{color}]{c.verdict}[/]")


@app.command("families")
def families_cmd(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """The parametric families of the `families` and `polynorm` search spaces: members, paper starts, references."""
    from actsearch.families import FAMILY_TABLE, FIT_TARGETS

    rows = [{"family": f.name, "title": f.title, "kind": f.kind, "structures": list(f.structures),
             "formula": {s: f.formula(s) for s in f.structures}, "reference": f.reference, "year": f.year,
             "fit_targets": list(FIT_TARGETS) if f.kind == "activation" else []} for f in FAMILY_TABLE.values()]
    if as_json:
        _json(rows)
        return
    table = Table(title="parametric families (search spaces `families`, `polynorm`)", title_justify="left")
    for col in ("family", "kind", "members", "example", "reference"):
        table.add_column(col)
    for r in rows:
        first = r["structures"][0]
        table.add_row(r["family"], r["kind"], " ".join(r["structures"]), r["formula"][first][:60],
                      f"{r['reference'].split(',')[0]} {r['year']}")
    out.print(table)


REF_LABELS = {"relu": "ReLU", "bn-relu": "BN-ReLU"}


def ref_label(name: Optional[str]) -> str:
    """How a reference baseline is written in text: ReLU, BN-ReLU (others as named)."""
    return REF_LABELS.get(name or "relu", name or "relu")


@app.command("baselines")
def baselines_cmd(
    tasks: str = typer.Option("layers", "--tasks", help="Comma-separated tasks, 'all' or 'layers' (the layer tasks)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per baseline (paired)."),
    baselines: Optional[str] = typer.Option(None, "--baselines", help="Comma-separated baselines (default: the "
                                            "tasks' own: relu,gelu,silu or bn-relu,gn-relu,bn-silu,evonorm-b0,evonorm-s0)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: each task's budget)."),
    threads: int = typer.Option(2, "--threads", help="torch threads (results are reproducible per thread count)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Train the baselines even if cached."),
    as_json: bool = typer.Option(False, "--json"),
):
    """The baselines alone on tasks with paired seeds: mean, std, 95% CI of the mean, paired difference
    with the reference (ReLU; BN-ReLU on layer tasks).  docs/layers.md's table."""
    try:
        if not _split(tasks):
            raise CLIError("--tasks is empty; name at least one task (see `actsearch tasks`), 'all' or 'layers'")
        if baselines is not None and not _split(baselines):
            raise CLIError("--baselines is empty; name at least one baseline")
        _check_training_options(seeds, steps, threads)
    except CLIError as exc:
        raise _fail(str(exc))
    import torch

    from actsearch.evaluation import baseline_table

    torch.set_num_threads(threads)
    try:
        r = baseline_table(_split(tasks), seeds=seeds, baselines=_split(baselines) if baselines is not None else None,
                           steps=steps, cache=False if no_cache else None)
    except ValueError as exc:
        raise _fail(str(exc))
    if as_json:
        _json(r)
        return
    for name, t in r["tasks"].items():
        table = Table(title=f"{name}: test accuracy, {len(r['seeds'])} seeds, {t['steps']} steps "
                            f"({t['trained']} trained, {t['cached']} cached, {t['wall_s']:.1f} s)", title_justify="left")
        for col in ("baseline", "mean", "std", "95% CI", f"diff vs {t['reference']}", "95% CI ", "verdict"):
            table.add_column(col, justify="left" if col in ("baseline", "verdict") else "right")
        for b, row in t["rows"].items():
            v = row["vs_reference"]
            same = b == t["reference"]
            ci = _finite_ci(row["ci"])
            table.add_row(b, f"{row['mean']:.4f}", f"{row['std']:.4f}", f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "n/a",
                          "" if same else f"{v['diff']:+.4f}", "" if same else _fmt_ci(v["ci"], 4),
                          "" if same else v["verdict"])
        out.print(table)


@app.command()
def search(
    space: str = typer.Option("swish", "--space", help="Search space: swish, pangaea, tree, evonorm (layers)."),
    strategy: str = typer.Option("evolution", "--strategy", help="exhaustive, random, evolution, optuna, surrogate (a regressor on training-free features)."),
    tasks: str = typer.Option("mnist1d-mlp", "--tasks", help="Comma-separated tasks, or 'all' (activation tasks), or "
                              "'layers' (layer tasks, for --space evonorm); one kind per search."),
    budget: int = typer.Option(200, "--budget", help="Distinct candidates to evaluate."),
    seeds: int = typer.Option(2, "--seeds", help="Rung-0 seeds (paired with the baselines); with --rungs flat, every candidate's."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: each task's budget)."),
    rungs: Optional[str] = typer.Option(None, "--rungs", help="Staged evaluation: TASKS:SEEDS per rung, e.g. 1:2,1:3,all:5 "
                                        "(default), or 'flat' (one rung). A resume uses the run's own."),
    eta: Optional[int] = typer.Option(None, "--eta", help="Promote the top 1/eta of each rung (default 3)."),
    validate_top: int = typer.Option(5, "--validate-top", help="At the end, validate the top K on fresh seeds and "
                                     "held-out tasks (0: no validation)."),
    validate_seeds: int = typer.Option(5, "--validate-seeds", help="Fresh seeds per validation task."),
    validate_tasks: Optional[str] = typer.Option(None, "--validate-tasks", help="Validation tasks (default: the search "
                                                 "tasks and the held-out tasks)."),
    validate_select: Optional[str] = typer.Option(None, "--validate-select", help="How the top K are chosen: score "
                                                  "(the conservative ranking) or worst-task (the score on the "
                                                  "candidate's worst search task; see `actsearch validate --select`). "
                                                  "Default: worst-task with --objectives worst-task, else score."),
    batch: int = typer.Option(8, "--batch", help="Candidates per population (one worker call)."),
    workers: int = typer.Option(0, "--workers", help="Ray workers (default: one per CPU, one thread each)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster HOST:PORT (default: embedded Ray)."),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", help="Run directory (default runs/<space>-<strategy>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir."),
    objectives: str = typer.Option("score", "--objectives", help="'score', 'score,cost' (multi-objective), 'tasks' (one score per task, "
                                    "Pareto selection over tasks/architectures, as EvoNorm), or 'worst-task' (the "
                                    "score on the candidate's worst task: selects for transfer)."),
    seed: int = typer.Option(0, "--seed", help="Strategy seed."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds per candidate before it is rejected as timed out."),
    executor: str = typer.Option("ray", "--executor", help="ray (default), local (in-process), or table:PATH (answer "
                                 "from a tabular benchmark built by `bench space`, no training)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Search for activations (or, with --space evonorm on layer tasks, normalization-activation layers): strategy
    proposes, workers train populations, the store records everything."""
    from actsearch.search import SearchConfig, SearchDriver
    from actsearch.store import StoreError

    run_dir = run_dir or os.path.join("runs", f"{space}-{strategy}")
    if validate_tasks is not None and not _split(validate_tasks):
        raise _fail("--validate-tasks is empty; name at least one task or leave it out")
    cfg = SearchConfig(space=space, strategy=strategy, tasks=_split(tasks), budget=budget, seeds=seeds, steps=steps,
                       seed=seed, batch=batch, workers=workers, address=address, objectives=_split(objectives),
                       timeout_s=timeout, executor=executor, rungs=rungs, eta=eta, validate_top=validate_top,
                       validate_seeds=validate_seeds, validate_select=validate_select,
                       validate_tasks=_split(validate_tasks) if validate_tasks is not None else None)
    from rich.live import Live

    live = None if as_json else Live(console=err, refresh_per_second=2, transient=True)

    def show(st):
        if live is not None:
            live.update(progress_line(st))

    import contextlib

    # with --json, stdout carries the summary alone: Ray's driver prints cluster events ("(raylet) Raylet is
    # terminated" when a node dies) with print(), which would land in front of it; they go to stderr
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet_stdout:
            driver = SearchDriver(cfg, run_dir, resume=resume, progress=show)
            if live:
                live.start()
            try:
                summary = driver.run()
            finally:
                if live:
                    live.stop()
    except (ValueError, StoreError, RuntimeError) as exc:
        raise _fail(str(exc))
    except OSError as exc:  # e.g. --run-dir under a file: NotADirectoryError from creating it
        raise _fail(f"cannot use run directory {run_dir}: {exc.filename or run_dir}: {exc.strerror or exc}")
    if as_json:
        _json(summary)
        return
    out.print(f"{summary['evaluated']} evaluated ({summary['rejected']} rejected in training, "
              f"{summary['screened_out']} screened out) in {summary['elapsed_s']:.0f} s; run: {run_dir}")
    if summary.get("rejections"):  # by reason code (actsearch.rejection)
        out.print("rejections: " + ", ".join(f"{code} {n}" for code, n in summary["rejections"].items()))
    _print_rungs(summary)
    _print_top(run_dir, top_rows(run_dir, 10))
    if summary.get("validation"):
        _print_validation(summary["validation"])
    if os.path.exists(os.path.join(run_dir, "optuna.db")):
        out.print(f"dashboard: optuna-dashboard sqlite:///{os.path.join(run_dir, 'optuna.db')}  (docs/dashboard.md)")


def _print_rungs(summary: dict) -> None:
    if len(summary.get("rungs", [])) < 2:
        return
    t = Table(title=f"staged evaluation (eta {summary['eta']}): training spent per rung")
    for col in ("rung", "tasks x seeds", "completed", "promoted on", "candidate trainings", "worker s"):
        t.add_column(col)
    last = len(summary["rungs"]) - 1
    for r in summary["rungs"]:
        t.add_row(str(r["index"]), r["label"], str(r["completed"]), str(r["promoted"]) if r["index"] < last else "-",
                  str(r["trainings"]), f"{r['wall_s']:.0f}")
    out.print(t)


def _score_ci(d) -> str:
    if not d or d.get("score") is None:
        return "-"
    ci = _finite_ci(d.get("ci"))
    return f"{d['score']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _print_validation(v: dict) -> None:
    from rich.markup import escape

    by = {"worst-task": " by worst search task", "ids": " (chosen by id)"}.get(v.get("selected_by"), "")
    title = (f"validation: top {len(v['candidates'])}{by} on {len(v['seeds'])} fresh seeds; search tasks "
             f"{', '.join(v['search_tasks']) or '-'}; held out {', '.join(v['held_out']) or 'none'}")
    ref = v.get("reference_baseline", "relu")
    t = Table(title=title)
    for col in ("formula", "rung", "search score [95% CI]", "fresh seeds", "gap", "held-out score", "verdict (Holm)"):
        t.add_column(col)
    for c in v["candidates"]:
        color = {"better": "green", "worse": "red", "mixed": "yellow"}.get(c["verdict_code"], "")
        verdict = f"[{color}]{escape(c['verdict'])}[/]" if color else escape(c["verdict"])
        t.add_row(escape(c["canonical"][:40]), str(c["rung"]),
                  _score_ci({"score": c["search_score"], "ci": c["search_ci"]}), _score_ci(c["fresh"]),
                  f"{c['gap']:+.3f}" if c["gap"] is not None else "-", _score_ci(c["held_out"]), verdict)
    for b, row in v.get("reference_scores", {}).items():
        if b != ref:  # the reference scores 0 by definition
            t.add_row(f"[dim]{b} (baseline)[/]", "", "", _score_ci(row["fresh"]), "", _score_ci(row["held_out"]), "")
    out.print(t)
    out.print(f"scores: 0 = {ref_label(ref)}; {v['n_tests']} paired t-tests (candidates x tasks x baselines), "
              f"Holm-corrected at alpha {v['alpha']}; best baseline per task: "
              + ", ".join(f"{t} {b}" for t, b in v["best_baseline"].items()))
    if v.get("note"):
        out.print(f"note: {v['note']}")


def progress_line(st: dict) -> str:
    """The search's live status line (rich markup) from SearchDriver.status()."""
    from rich.markup import escape

    best = st["best"]  # None before any result; its score is None while every result so far is rejected
    score = f"{best['score']:+.3f}" if best and best["score"] is not None else "-"
    rungs = st.get("rungs") or []
    staged = ("  rungs " + "/".join(str(r["completed"]) for r in rungs)) if len(rungs) > 1 else ""
    validating = (f"  validating {st['validation']['done']}/{st['validation']['of']} tasks"
                  if st.get("validation") else "")
    return (f"evaluated [bold]{st['evaluated']}/{st['budget']}[/]  {st['rate_per_min']:.1f}/min{staged}  "
            f"rejected {st['rejected']}  screened out {st['screened_out']}{validating}  "
            + (f"best {score} {escape(best['formula'][:50])}" if best else ""))


def top_rows(run_dir: str, n: int, references: bool = True) -> list[dict]:
    """The top `n` candidates by the conservative ranking (actsearch.staging), with their rung, tasks and
    seeds, score CI, per-task scores and validation verdict; the run's baselines (ReLU, GELU and SiLU; on
    layer tasks BN-ReLU, GN-ReLU, BN-SiLU, EvoNorm-B0, EvoNorm-S0) as reference rows (`"reference": true`)
    scored on the highest rung's tasks and seeds they have, in their ranked places.  With per-task
    objectives (`--objectives tasks`) each candidate row says whether it is on the Pareto front of the
    per-task scores (`"pareto"`; null otherwise)."""
    from actsearch.learned import learned_params
    from actsearch.staging import ranking_key
    from actsearch.store import ResultStore

    store = ResultStore(run_dir, mode="read")  # read-only: never written, never locked
    try:
        cfg = store.config() or {}
        ref = run_reference(cfg)
        validation = store.latest_validation()
        verdicts = {c["id"]: c for c in validation["candidates"]} if validation else {}
        ranked = store.ranked()
        per_task = list(cfg.get("objectives") or []) == ["tasks"]
        front = {f["id"] for f in store.task_front(cfg.get("tasks") or [], ranked)} if per_task else set()
        rows = []
        for r in ranked[:n]:
            nearest = r["nearest"]
            novel = nearest["name"] is None or (nearest["distance"] or 0) > NOVEL_DISTANCE
            tasks = r["report"].get("tasks", {})
            first = next(iter(tasks.values()), None)
            vs = (first or {}).get("vs", {})
            ci = _finite_ci(vs["relu"].get("ci")) if "relu" in vs else None
            ci_ref = _finite_ci(vs[ref].get("ci")) if ref in vs else None
            est = r["estimate"] or {}
            v = verdicts.get(r["id"])
            learned = learned_params(r["report"], r["params"], default_task=(cfg.get("tasks") or [None])[0])
            rows.append({"id": r["id"], "formula": r["formula"], "canonical": r["canonical"], "params": r["params"],
                         "learned": [p.to_dict() for p in learned],
                         "score": r["score"], "ci": _finite_ci(r["ci"]), "lcb": r["lcb"], "rung": r["rung"],
                         "tasks": est.get("tasks") or list(tasks),
                         "seeds": est.get("seeds") or r["report"].get("seeds", []),
                         "task_scores": est.get("task_scores") or {},
                         "pareto": (r["id"] in front) if per_task else None,
                         "cost": r["cost"], "ci_vs_relu": ci, "ci_vs_reference": ci_ref, "reference_baseline": ref,
                         "rejected": r["rejected"], "nearest": nearest,
                         "novel": bool(novel), "reference": False,
                         "validation": ({"verdict": v["verdict"], "verdict_code": v["verdict_code"], "fresh": v["fresh"],
                                         "held_out": v["held_out"], "gap": v["gap"]} if v else None)})
        if references and rows:
            rows += _reference_rows(store)
            rows.sort(key=lambda r: ranking_key(r["score"], r["lcb"], r["rejected"] is not None))
    finally:
        store.close()
    return rows


def run_reference(cfg: dict) -> str:
    """The reference baseline of a run (its tasks' `Task.reference`: relu, or bn-relu for layer tasks)."""
    from actsearch.tasks import task_defaults

    try:
        return task_defaults(list(cfg.get("tasks") or []))[1]
    except ValueError:  # a task this version does not know
        return "relu"


def run_baselines(cfg: dict) -> list:
    """The baselines a run trained: the reference first, then its config's (or its tasks' own)."""
    from actsearch.tasks import task_defaults

    try:
        _, ref, defaults = task_defaults(list(cfg.get("tasks") or []))
    except ValueError:
        ref, defaults = "relu", ("relu", "gelu", "silu")
    return list(dict.fromkeys([ref, *(cfg.get("baselines") or defaults)]))


def _reference_rows(store) -> list[dict]:
    """The run's baselines scored like candidates, on the highest rung whose pairs they were trained on."""
    from actsearch.staging import estimate_score, parse_rungs
    from actsearch.tasks import get_task

    cfg = store.config() or {}
    base = store.baseline_accuracies()
    spread = store.pooled_spreads()  # the baselines' intervals use their rung's pooled spread, as candidates
    ref = run_reference(cfg)
    try:
        rungs = parse_rungs(cfg.get("rungs") or "flat", cfg.get("tasks") or [], cfg.get("seeds", 2))
    except ValueError:
        return []
    rows = []
    for b in run_baselines(cfg):
        for rung in reversed(rungs):  # the highest rung whose pairs the baseline has
            pairs = rung.pairs()
            est = estimate_score({t: base.get(t, {}).get(b, {}) for t in pairs}, base,
                                 {t: get_task(t).chance for t in pairs}, pairs, reference=ref)
            if est.score is not None:
                pool = spread.get(rung.index)
                ci = pool.interval(est.score, len(est.seeds)) if pool is not None else None
                rows.append({"id": f"baseline:{b}", "formula": b, "canonical": b, "params": {}, "learned": [],
                             "score": est.score, "ci": _finite_ci(ci), "lcb": ci[0] if ci else None,
                             "rung": rung.index,
                             "tasks": est.tasks, "seeds": est.seeds, "task_scores": est.task_scores, "pareto": None,
                             "cost": None, "ci_vs_relu": None, "ci_vs_reference": None, "reference_baseline": ref,
                             "rejected": None, "nearest": {"name": b, "distance": 0.0}, "novel": False,
                             "reference": True, "validation": None})
                break
    return rows


NOVEL_DISTANCE = 0.05  # RMS distance on N(0,1) probes above which a candidate is called novel


def _print_top(run_dir: str, rows: list[dict]) -> None:
    from rich.markup import escape

    n = sum(1 for r in rows if not r["reference"])
    ref = next((r["reference_baseline"] for r in rows if r.get("reference_baseline")), "relu")
    # a column per search task (per architecture) when the run has several; the Pareto mark with per-task objectives
    tasks = list(dict.fromkeys(t for r in rows for t in (r.get("task_scores") or {})))
    per_task = any(r.get("pareto") is not None for r in rows)
    title = f"top {n} of {run_dir}, ranked by the lower 95% bound of the score (0 = {ref_label(ref)})"
    if per_task:
        title += "; * = on the Pareto front of the per-task scores"
    t = Table(title=title)
    cols = ["#", "score [95% CI]", "rung: tasks x seeds"] + (tasks if len(tasks) > 1 else [])
    learned = any(r.get("learned") for r in rows)  # trained parameter values: initial -> median over seeds, layers
    cols += (["front"] if per_task else []) + ["formula"] + (["learned"] if learned else []) + [
        "nearest known", "validation", "id"]
    for col in cols:
        t.add_column(col)

    def per(r):
        if len(tasks) < 2:
            return []
        ts = r.get("task_scores") or {}
        return [f"{ts[k]:+.3f}" if ts.get(k) is not None else "-" for k in tasks]

    i = 0
    for r in rows:
        tasks_seeds = f"{r['rung']}: {len(r['tasks'])} x {len(r['seeds'])}"
        if r["reference"]:
            t.add_row("", f"[dim]{_score_ci(r)}[/]", f"[dim]{tasks_seeds}[/]", *(f"[dim]{x}[/]" for x in per(r)),
                      *([""] if per_task else []), f"[dim]{r['formula']} (baseline)[/]", *([""] if learned else []),
                      "", "", "")
            continue
        i += 1
        near = "novel" if r["novel"] else f"{r['nearest']['name']} ({r['nearest']['distance']:.3f})"
        score = _score_ci(r) + (" (rejected)" if r["rejected"] else "")
        v = r["validation"]
        t.add_row(str(i), score, tasks_seeds, *per(r), *(["*" if r.get("pareto") else ""] if per_task else []),
                  escape(r["canonical"][:50]), *([escape(_learned_cell(r))] if learned else []), near,
                  escape(v["verdict"]) if v else "", r["id"])
    out.print(t)


def _learned_cell(row: dict) -> str:
    from actsearch.learned import LearnedParam, learned_text

    return learned_text([LearnedParam(**p) for p in row.get("learned") or []])


@app.command()
def top(run_dir: str = typer.Argument(..., help="A run directory."),
        n: int = typer.Option(10, "--n", help="How many candidates to list (>= 1)."),
        as_json: bool = typer.Option(False, "--json")):
    """The best candidates of a run by a conservative estimate (the lower bound of the score's 95% CI), with
    the rung, tasks and seeds behind each score, the score per task (with several tasks; the Pareto front
    with --objectives tasks), the validation verdict, and the run's baselines as reference rows."""
    from actsearch.store import StoreError

    if n < 1:  # the store reads n <= 0 as "no limit"
        raise _fail(f"--n must be >= 1, got {n}")
    try:
        rows = top_rows(run_dir, n)
    except StoreError as exc:
        raise _fail(str(exc))
    if as_json:
        _json(rows)
        return
    _print_top(run_dir, rows)


@app.command("study")
def study_cmd(run_dir: str = typer.Argument(..., help="A run directory (not being searched now)."),
              out_path: Optional[str] = typer.Option(None, "--out", help="Where to write (default RUN_DIR/optuna.db)."),
              as_json: bool = typer.Option(False, "--json")):
    """Write the run's Optuna study afresh from its store (runs made before searches kept one, or a lost
    optuna.db); open it with optuna-dashboard (docs/dashboard.md)."""
    from actsearch.optuna_study import rebuild_study, storage_url
    from actsearch.store import StoreError

    try:
        path = rebuild_study(run_dir, out_path)
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc))
    except OSError as exc:
        raise _fail(f"cannot write the study for {run_dir}: {exc.strerror or exc}")
    if as_json:
        _json({"run_dir": run_dir, "study": str(path), "storage": storage_url(path)})
        return
    out.print(f"wrote {path}; open it with: optuna-dashboard {storage_url(path)}")


@app.command()
def validate(run_dir: str = typer.Argument(..., help="A run directory (finished or stopped early)."),
             top: int = typer.Option(5, "--top", help="How many of the best candidates to validate (>= 1)."),
             seeds: int = typer.Option(5, "--seeds", help="Fresh seeds per task (>= 2), never used by the search."),
             tasks: Optional[str] = typer.Option(None, "--tasks", help="Validation tasks (default: the search tasks "
                                                 "and the held-out tasks: the activation tasks not searched and the "
                                                 "larger mnist1d-mlp-deep, or the layer tasks not searched)."),
             executor: str = typer.Option("ray", "--executor", help="ray (default, embedded) or local (in-process)."),
             workers: int = typer.Option(0, "--workers", help="Ray workers (default: one per CPU)."),
             select: Optional[str] = typer.Option(None, "--select", help="How the top K are chosen: score (the "
                                                  "conservative ranking of the mean over the search tasks) or "
                                                  "worst-task (the score on the candidate's worst search task, among "
                                                  "those at the highest rung: candidates that transfer). Default: "
                                                  "the run's --validate-select, else worst-task for a search with "
                                                  "--objectives worst-task, else score."),
             as_json: bool = typer.Option(False, "--json")):
    """Re-train the run's top K on fresh seeds and held-out tasks against the baselines (ReLU, GELU, SiLU; the
    layer baselines for a layer search) and each task's best baseline: paired t-tests, Holm-corrected; a
    verdict per candidate and the winner's-curse gap (stored)."""
    import dataclasses

    from actsearch.search import SearchConfig
    from actsearch.store import ResultStore, StoreError

    if top < 1:
        raise _fail(f"--top must be >= 1, got {top}")
    if seeds < 2:
        raise _fail(f"--seeds must be >= 2 (a paired test needs two), got {seeds}")
    if workers < 0:
        raise _fail(f"--workers must be >= 0, got {workers}")
    if executor not in ("ray", "local"):
        raise _fail(f"--executor must be 'ray' or 'local', got {executor!r}")
    from actsearch.validation import check_selection

    if select is not None:
        try:
            check_selection(select)  # the name, before the store is opened; the tasks below
        except ValueError as exc:
            raise _fail(str(exc))
    if tasks is not None and not _split(tasks):
        raise _fail("--tasks is empty; name at least one task or leave it out")
    try:
        from actsearch.tasks import resolve_tasks

        task_names = [t.name for t in resolve_tasks(_split(tasks))] if tasks is not None else None
        store = ResultStore(run_dir, mode="write")  # the run's writer lock: not while a search writes it
    except (ValueError, StoreError) as exc:
        raise _fail(str(exc))
    try:
        stored = store.config() or {}
        known = {f.name for f in dataclasses.fields(SearchConfig)}
        cfg = SearchConfig(**{k: v for k, v in stored.items() if k in known})
        cfg.executor, cfg.workers, cfg.address = executor, workers, None
        from actsearch.tasks import task_defaults

        kind, _, cfg.baselines = task_defaults(list(cfg.tasks))  # the tasks' own baselines
        cfg.baselines = list(cfg.baselines)
        if task_names is not None and task_defaults(task_names)[0] != kind:
            raise ValueError(f"--tasks {', '.join(task_names)}: the run searched {kind} tasks "
                             f"({', '.join(cfg.tasks)}); validate it on tasks of that kind")
        if store.n_results() == 0:
            raise StoreError(f"{run_dir} has no evaluated candidate to validate")
        select = select or cfg.selection()
        check_selection(select, cfg.tasks)  # before any worker starts
        from actsearch.executor import make_executor
        from actsearch.validation import validate_store

        ex = make_executor(cfg, run_dir)
        try:
            summary = validate_store(store, ex, top=top, seeds=seeds, tasks=task_names, select=select)
        finally:
            ex.shutdown()
    except (ValueError, StoreError, RuntimeError) as exc:
        raise _fail(str(exc))
    finally:
        store.close()
    if as_json:
        _json(summary)
        return
    _print_validation(summary)


@app.command()
def report(run_dir: str = typer.Argument(..., help="A run directory."),
           output: Optional[str] = typer.Option(None, "-o", "--output", help="HTML file (default RUN_DIR/report.html)."),
           as_json: bool = typer.Option(False, "--json")):
    """An HTML report: validation forest plot and table, score by rung, best-so-far, top-k shapes, score
    distribution, Pareto front (with a cost objective), rejection reasons."""
    from actsearch.report import build_report
    from actsearch.store import StoreError

    if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):  # before the plots are drawn
        raise _fail(f"cannot write report {output!r}: no directory {os.path.dirname(os.path.abspath(output))}")
    try:
        path = build_report(run_dir, output or os.path.join(run_dir, "report.html"))
    except StoreError as exc:
        raise _fail(str(exc))
    except OSError as exc:  # an output path that cannot be written
        raise _fail(f"cannot write report {exc.filename or output!r}: {exc.strerror or exc}")
    if as_json:
        _json({"report": os.path.abspath(path)})
    else:
        out.print(f"report: {os.path.abspath(path)}")


bench_app = typer.Typer(help="Benchmarks that print measured figures (see benchmarks/).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("space")
def bench_space(
    space: str = typer.Option("pangaea", "--space", help="An enumerable search space (pangaea)."),
    tasks: str = typer.Option("mnist1d-mlp,digits-cnn", "--tasks", help="Comma-separated tasks."),
    seeds: int = typer.Option(5, "--seeds", help="Paired seeds per candidate and baseline."),
    out_dir: str = typer.Option(..., "--out", help="Directory: the run's store (resumed if it exists) and table.json.gz."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: each task's budget)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N distinct candidates (a quick table)."),
    batch: int = typer.Option(8, "--batch", help="Candidates per population."),
    workers: int = typer.Option(0, "--workers", help="Ray workers (default: one per CPU)."),
    executor: str = typer.Option("ray", "--executor", help="ray (default) or local."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train every distinct screened candidate of a space on the tasks (a tabular benchmark), resumably;
    writes OUT/table.json.gz for `search --executor table:OUT/table.json.gz`."""
    from actsearch.store import StoreError
    from actsearch.tabular import build_space_table

    if seeds < 2:
        raise _fail(f"--seeds must be >= 2 (paired statistics need two), got {seeds}")
    if limit is not None and limit < 1:
        raise _fail(f"--limit must be >= 1, got {limit}")
    if executor not in ("ray", "local"):
        raise _fail(f"--executor must be 'ray' or 'local', got {executor!r}")
    if not _split(tasks):
        raise _fail("--tasks is empty; name at least one task")
    command = "actsearch bench space " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else ""
    from rich.live import Live

    live = None if as_json else Live(console=err, refresh_per_second=2, transient=True)
    try:
        if live:
            live.start()
        result = build_space_table(space, _split(tasks), seeds, out_dir, steps=steps, workers=workers, executor=executor,
                                   batch=batch, limit=limit, command=command,
                                   progress=(lambda st: live.update(progress_line(st))) if live else None)
    except (ValueError, StoreError, RuntimeError) as exc:
        raise _fail(str(exc))
    finally:
        if live:
            live.stop()
    if as_json:
        _json(result)
        return
    out.print(f"{result['candidates']} candidates ({result['screened_out']} screened out) on {tasks} x {seeds} seeds "
              f"in {result['wall_s']:.0f} s: {result['table']} ({result['bytes'] / 1e6:.2f} MB)")


@bench_app.command("formula")
def bench_formula(
    n: int = typer.Option(1000, "--n", min=1, help="Number of random formulas."),
    seed: int = typer.Option(0, "--seed"),
    repeats: int = typer.Option(3, "--repeats", min=1),
    as_json: bool = typer.Option(False, "--json"),
):
    """Parse + canonicalize + fingerprint N random formulas (target: 1000 in < 2 s)."""
    from actsearch.bench_formula import run

    r = run(n=n, seed=seed, repeats=repeats)
    if as_json:
        _json(r)
        return
    out.print(f"{r['n']} random formulas (seed {seed}): {r['parsed']} parsed, {r['refused']} refused, "
              f"{r['distinct_ids']} distinct ids")
    out.print(f"parse + canonicalize + fingerprint: best {r['seconds']:.3f} s of {repeats} "
              f"({r['ms_per_formula']:.2f} ms/formula); target < {r['target_seconds']:.0f} s: "
              f"{'met' if r['met_target'] else 'MISSED'}")


@bench_app.command("kernels")
def bench_kernels(
    quick: bool = typer.Option(False, "--quick", help="1M elements, no large tensor, fewer reps (a smoke run)."),
    numel: Optional[int] = typer.Option(None, "--numel", min=1024, help="Elements of the suite tensors (default 4M)."),
    threads: int = typer.Option(2, "--threads", min=1),
    as_json: bool = typer.Option(False, "--json"),
):
    """Fused compiled kernels vs eager autograd, builtins, saved bytes, bandwidth bound, compile times."""
    from actsearch.kernels.bench import run_isolated

    n = numel or (2**20 if quick else 4 * 2**20)
    try:
        r = run_isolated(numel=n, big_numel=None if quick else 64 * 2**20, n_random=6, reps=3 if quick else 9,
                         threads=threads, quick=quick, progress=not as_json)
    except RuntimeError as exc:
        raise _fail(str(exc))
    if as_json:
        _json(r)
        return
    t = Table(title=f"forward+backward, {n} fp32 elements, {threads} threads")
    for col in ("formula", "eager ms", "fused ms", "speedup", "saved eager", "saved fused", "compile s"):
        t.add_column(col, overflow="fold", justify="left" if col == "formula" else "right")
    for row in r["suite"]:
        t.add_row(row["formula"][:48], f"{row['eager_ms']:.1f}", f"{row['fused_ms']:.1f}", f"{row['speedup']:.2f}x",
                  f"{row['saved_bytes_eager'] / 2**20:.0f} MiB", f"{row['saved_bytes_fused'] / 2**20:.0f} MiB",
                  f"{row['compile_s']:.2f}")
    out.print(t)
    out.print(f"median speedup {r['median_speedup']:.2f}x (min {r['min_speedup']:.2f}x); copy bandwidth "
              f"{r['bandwidth_GBps']:.1f} GB/s in cache, {r['bandwidth_cold_GBps']:.1f} GB/s from DRAM -> bound "
              f"{r['bound_ms']:.2f} / {r['bound_cold_ms']:.2f} ms per fused fwd+bwd")
    for b in r["builtins"]:
        out.print(f"  generated {b['name']}: {b['generated_ms']:.2f} ms vs torch {b['builtin_ms']:.2f} ms "
                  f"(ratio {b['ratio']:.2f})")
    if r["large"]:
        L = r["large"]
        out.print(f"  {L['numel']} elements ({L['formula']}): eager {L['eager_ms']:.0f} ms, fused {L['fused_ms']:.0f} ms, "
                  f"{L['speedup']:.2f}x")
    cmp_ = r["compile"]
    warm = cmp_["warm_cache"]
    out.print(f"compile fwd+bwd: first {cmp_['first_s']:.1f} s, then median {cmp_['median_after_first_s']:.2f} s "
              f"({cmp_['median_after_first_without_params_s']:.2f} s without parameters; max "
              f"{cmp_['max_after_first_s']:.2f} s; linker {cmp_['linker']}); warm on-disk cache, new process: "
              + (f"median {warm['median_after_first_s']:.3f} s (max {warm['max_after_first_s']:.3f} s)"
                 if "error" not in warm else f"failed: {warm['error'][-200:]}"))
    for p in r["policy"]:
        out.print(f"  policy {p['numel']:>7} elements: uncompiled {p['uncompiled_us']:.0f} us, "
                  f"compiled {p['compiled_us']:.0f} us")


@bench_app.command("train")
def bench_train(
    task: str = typer.Option("mnist1d-mlp", "--task"),
    population: int = typer.Option(16, "--population", min=1, help="Candidates trained (K)."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per candidate (S): K*S trainings on each side."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps per training (default: the task budget)."),
    threads: int = typer.Option(2, "--threads", min=1),
    quick: bool = typer.Option(False, "--quick", help="8 candidates, 300 steps (a smoke run)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Candidate trainings per minute: population-batched vs one at a time, side by side (target >= 5x)."""
    from actsearch.bench_training import run
    from actsearch.tasks import get_task

    try:
        get_task(task)
    except ValueError as exc:
        raise _fail(str(exc))
    if quick:
        population, steps = min(population, 8), steps or 300
    r = run(task=task, population=population, seeds=seeds, steps=steps, threads=threads,
            progress=None if as_json else (lambda m: err.print(m)))
    if as_json:
        _json(r)
        return
    out.print(f"{r['task']}: {r['candidates_k']} candidates x {r['seeds']} seeds = {r['population']} trainings of "
              f"{r['steps']} steps, {r['threads']} threads")
    out.print(f"  one at a time: {r['alone_s']:.1f} s ({r['alone_per_min']:.1f} trainings/min)")
    out.print(f"  batched:       {r['batched_s']:.1f} s ({r['batched_per_min']:.1f} trainings/min)")
    out.print(f"  batched again, kernel compiled: {r['batched_compiled_s']:.1f} s (compile {r['compile_s']:.1f} s; "
              f"Inductor's first-in-process warm-up {r['inductor_warmup_s']:.1f} s, not counted)")
    out.print(f"  ratio {r['ratio']:.2f}x incl. compile, {r['ratio_compiled']:.2f}x compiled (target >= 5x); max |accuracy alone - batched| = "
              f"{r['max_accuracy_diff']:.2g}; {r['rejected']} rejected by the protocol")


def _classes(name: str) -> tuple:
    """click's exception class `name` as typer raises it: typer >= 0.20 vendors click (typer._click),
    older versions use click itself."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if cls not in found:
            found.append(cls)
    return tuple(found)


def main(argv: Optional[List[str]] = None) -> None:
    """The `actsearch` entry point.  Exit status 0: done; 2: bad input (usage errors included), one
    `error: ...` line on stderr; 1: an internal error, one `error: TYPE: message` line (set ACTSEARCH_DEBUG=1
    for the traceback).  Never a raw traceback."""
    from rich.markup import escape

    try:
        rc = app(args=argv, standalone_mode=False)
    except _classes("ClickException") as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {escape(exc.format_message())}{escape(hint)}", highlight=False,
                      soft_wrap=True)
        sys.exit(exc.exit_code)
    except _classes("Abort"):
        err.print("[bold red]error:[/] aborted", highlight=False)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, reported in one line
        if os.environ.get("ACTSEARCH_DEBUG", "") not in ("", "0"):
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        err.print(f"[bold red]error:[/] {escape(type(exc).__name__)}: {escape(message)} (internal error; rerun "
                  f"with ACTSEARCH_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


@app.command("drill")
def drill_cmd(
    n: int = typer.Option(100, "--n", min=1, help="Candidates per search-space variant."),
    compiled_sample: int = typer.Option(10, "--compiled-sample", min=0,
                                        help="Passing candidates that also run compiled."),
    seed: int = typer.Option(0, "--seed"),
    spaces: Optional[str] = typer.Option(None, "--spaces", help="Comma-separated space names (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
):
    """Reliability drill: random candidates of every search space through parse, screening, codegen and
    the kernels (actsearch/drill.py).  Exit status 1 when it finds an unexplained exception or NaN/Inf."""
    from actsearch.drill import run_drill

    try:
        report = run_drill(n, spaces=spaces.split(",") if spaces else None, compiled_sample=compiled_sample,
                           seed=seed)
    except ValueError as exc:  # an unknown space name
        raise _fail(str(exc))
    if as_json:
        _json(report.to_dict())
    else:
        out.print(report.summary(), highlight=False, markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    main()
