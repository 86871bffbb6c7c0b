"""CLI for the theory: the `zipfind theory` group (list, show, predict) and `zipfind fit DIR`.

Thin: parses, calls zipfind.theory, prints, and (fit only) writes DIR/fits/ atomically. User errors print one line
`error: <key>: <value> — <what is allowed>` and exit with code 2.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from . import zipf
from .models import MODELS, predict_onset, resolve_params

app = typer.Typer(help="Analytic onset-time models of induction-head formation (sympy).", no_args_is_help=True)

INTERVALS = ("profile", "bootstrap", "none")


def _fail(key: str, value: Any, allowed: str) -> NoReturn:
    typer.echo(f"error: {key}: {value} — {allowed}", err=True)
    raise typer.Exit(code=2)


def _model_or_fail(name: str, key: str = "model"):
    if name not in MODELS:
        _fail(key, name, f"allowed: {', '.join(MODELS)}")
    return MODELS[name]


def _numbers(key: str, text: str) -> np.ndarray:
    """Parse '0,0.5,1' or 'start:stop:num' (inclusive linspace) into a 1-D array."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            if int(n) < 1:
                raise ValueError
            out = np.linspace(float(a), float(b), int(n))
        else:
            out = np.array([float(v) for v in text.split(",") if v.strip() != ""])
        if out.size == 0 or not np.all(np.isfinite(out)):
            raise ValueError
        return out
    except ValueError:
        _fail(key, text, "comma-separated numbers (0,0.5,1) or start:stop:num (0:2:5)")


def _console() -> Console:
    return Console(width=max(100, Console().width), soft_wrap=False)


@app.command("list")
def list_models() -> None:
    """List the registered onset-time models."""
    table = Table(title="onset-time models")
    for col in ("model", "title", "kind", "parameters", "alpha boundary"):
        table.add_column(col)
    for m in MODELS.values():
        table.add_row(m.name, m.title, m.kind, ", ".join(m.param_names), m.alpha_boundary)
    _console().print(table)


@app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="model name, e.g. M4")],
    latex: Annotated[bool, typer.Option("--latex", help="print the equation as LaTeX")] = False,
) -> None:
    """Show a model: assumptions, source, parameters and its equation."""
    m = _model_or_fail(model)
    if latex:
        typer.echo(m.latex)
        return
    con = _console()
    con.print(f"[bold]{m.name}[/bold] — {m.title} ({m.kind})")
    con.print(m.doc)
    con.print(f"source: {m.source}")
    con.print(f"derivation: {m.note}")
    con.print(f"alpha boundary: {m.alpha_boundary}")
    table = Table()
    for col in ("parameter", "default", "meaning"):
        table.add_column(col)
    for p in m.params:
        table.add_row(p.name, f"{p.default:.4g}", p.doc)
    con.print(table)
    typer.echo(m.pretty)


@app.command("predict")
def predict(
    model: Annotated[str, typer.Argument(help="model name, e.g. M4")],
    alpha: Annotated[str, typer.Option("--alpha", help="Zipf exponents: 0,0.5,1 or start:stop:num")],
    B: Annotated[str, typer.Option("--B", help="burst lengths (0 = no bursty sequences)")],
    K: Annotated[str, typer.Option("--K", help="number of classes")] = "2048",
    N: Annotated[str, typer.Option("--N", help="context items")] = "8",
    L: Annotated[str, typer.Option("--L", help="number of labels")] = "32",
    p_bursty: Annotated[str, typer.Option("--p-bursty", help="fraction of bursty sequences")] = "0.9",
    p_novel: Annotated[str, typer.Option("--p-novel", help="fraction of novel-class sequences")] = "0",
    lr: Annotated[str, typer.Option("--lr", help="learning rate")] = "0.003",
    context: Annotated[str, typer.Option("--context", help="context law: iid or distinct")] = "iid",
    params: Annotated[
        Path | None, typer.Option("--params", help="fits.json of a run (the record of MODEL is used)")
    ] = None,
) -> None:
    """Predict the onset step over the grid of the given values (inf: no onset predicted)."""
    m = _model_or_fail(model)
    grid = {
        "alpha": _numbers("alpha", alpha), "B": _numbers("B", B), "K": _numbers("K", K), "N": _numbers("N", N),
        "L": _numbers("L", L), "p_bursty": _numbers("p_bursty", p_bursty), "p_novel": _numbers("p_novel", p_novel),
        "lr": _numbers("lr", lr),
    }
    checks = {
        "alpha": (alpha, lambda v: v >= 0, "Zipf exponents >= 0"),
        "B": (B, lambda v: v >= 0, "burst lengths >= 0"),
        "K": (K, lambda v: (v >= 1) & (v == np.round(v)), "integers >= 1"),
        "N": (N, lambda v: v > 0, "context sizes > 0"),
        "L": (L, lambda v: v > 0, "label counts > 0"),
        "p_bursty": (p_bursty, lambda v: (v >= 0) & (v <= 1), "fractions in [0, 1]"),
        "p_novel": (p_novel, lambda v: (v >= 0) & (v <= 1), "fractions in [0, 1]"),
        "lr": (lr, lambda v: v > 0, "learning rates > 0"),
    }
    for key, (text, ok, allowed) in checks.items():
        if not np.all(ok(grid[key])):
            _fail(key, text, allowed)
    if context not in zipf.CONTEXT_LAWS:
        _fail("context", context, f"one of {', '.join(zipf.CONTEXT_LAWS)}")
    theta = None
    if params is not None:
        if not params.is_file():
            _fail("params", params, "a fits.json file written by `zipfind fit`")
        try:
            records = json.loads(params.read_text())
            theta = resolve_params(m, records)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            _fail("params", params, f"a fits.json holding a record for {m.name} ({exc})")
    varying = [k for k, v in grid.items() if v.size > 1 or k in ("alpha", "B")]
    rows = list(itertools.product(*(grid[k] for k in varying)))
    cols = {k: np.array([r[i] for r in rows]) for i, k in enumerate(varying)}
    fixed = {k: v[0] for k, v in grid.items() if k not in varying}
    t_star = predict_onset(m, theta, **cols, **fixed, context=context)
    table = Table(title=f"{m.name} predicted onset step" + (f" ({params})" if params else " (default parameters)"))
    for k in varying:
        table.add_column(k, justify="right")
    table.add_column("t*", justify="right")
    for i, r in enumerate(rows):
        t = t_star[i]
        table.add_row(*(f"{v:g}" for v in r), "never" if not math.isfinite(t) else f"{t:.1f}")
    _console().print(table)


def fit_command(
    run_dir: Annotated[Path, typer.Argument(help="run directory holding onsets.parquet")],
    models: Annotated[str, typer.Option("--models", help="comma-separated models (default: all)")] = "",
    folds: Annotated[int, typer.Option("--folds", help="k of the k-fold held-out evaluations (over cells and over "
                                                        "groups of cells with identical inputs)")] = 5,
    starts: Annotated[int, typer.Option("--starts", help="optimiser starts per model")] = 8,
    interval: Annotated[str, typer.Option("--interval", help="profile, bootstrap or none")] = "profile",
    seed: Annotated[int, typer.Option("--seed", help="seed of starts, folds and bootstrap")] = 0,
) -> None:
    """Fit onset-time models to DIR/onsets.parquet (censored likelihood); write DIR/fits/fits.json and
    DIR/fits/predictions.parquet and print a comparison table."""
    from ..store import read_onsets
    from .fit import fit_models, onset_data

    if not run_dir.is_dir():
        _fail("run_dir", run_dir, "an existing run directory")
    onsets_path = run_dir / "onsets.parquet"
    if not onsets_path.is_file():
        _fail("onsets", onsets_path, "not found; run `zipfind onsets DIR` first")
    names = [n.strip() for n in models.split(",") if n.strip()] or list(MODELS)
    for n in names:
        _model_or_fail(n, "models")
    if interval not in INTERVALS:
        _fail("interval", interval, f"one of {', '.join(INTERVALS)}")
    if starts < 1:
        _fail("starts", starts, "an integer >= 1")
    try:
        onsets = read_onsets(run_dir)
        data, _ = onset_data(onsets)
    except (ValueError, OSError) as exc:
        _fail("onsets", onsets_path, f"an onsets table ({exc})")
    if folds < 2 or folds > data.n:
        _fail("folds", folds, f"an integer from 2 to the number of cells ({data.n})")
    if data.n_censored == data.n:
        _fail("onsets", onsets_path, f"all {data.n} cells are censored; nothing to fit")

    report = fit_models(
        onsets, names, folds=folds, n_starts=starts, interval=interval, seed=seed,  # type: ignore[arg-type]
        progress=lambda name: typer.echo(f"fitting {name} ...", err=True),
    )
    from ..store import atomic_write, write_parquet

    out_dir = run_dir / "fits"
    atomic_write(out_dir / "fits.json", json.dumps(report.records(), indent=2, allow_nan=False) + "\n")
    write_parquet(report.predictions, out_dir / "predictions.parquet")

    table = Table(title=f"onset models fitted to {data.n} cells ({data.n_censored} censored), {folds}-fold held-out")
    cols = ("model", "k", "AIC", "ΔAIC", "BIC", "cell folds |ln err|", "grouped |ln err|", "censor acc",
            "extrapolation |ln err|", "censor acc ", "parameters (95% CI)")
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "parameters (95% CI)") else "right")
    for _, row in report.table().iterrows():
        table.add_row(
            row["model"], str(row["k"]), f"{row['aic']:.1f}", f"{row['delta_aic']:.1f}", f"{row['bic']:.1f}",
            f"{row['heldout_median_abs_log_err']:.3f}", f"{row['heldout_grouped_median_abs_log_err']:.3f}",
            f"{row['heldout_grouped_censor_accuracy']:.2f}", f"{row['extrapolation_median_abs_log_err']:.3f}",
            f"{row['extrapolation_censor_accuracy']:.2f}", row["params"].replace("; ", "\n"),
        )
    _console().print(table)
    typer.echo(f"wrote {out_dir / 'fits.json'} and {out_dir / 'predictions.parquet'}")


def validate_command(
    run_dir: Annotated[Path, typer.Argument(help="run directory of a validation sweep (onsets.parquet)")],
    fits: Annotated[Path, typer.Option("--fits", help="fits.json, or a run directory with fits/fits.json, "
                                                     "fitted on other sweeps")],
    models: Annotated[str, typer.Option("--models", help="comma-separated models (default: all fitted)")] = "",
) -> None:
    """Score fitted models on cells no fit has seen: median |ln pred/obs| and censoring accuracy per axis of
    a one-axis-at-a-time sweep; write DIR/fits/validation.json and DIR/fits/validation_predictions.parquet."""
    from ..store import RunError, atomic_write, read_onsets, write_parquet
    from .heldout import validate

    if not run_dir.is_dir():
        _fail("run_dir", run_dir, "an existing run directory")
    try:
        onsets = read_onsets(run_dir)
    except RunError as exc:
        _fail("run_dir", run_dir, str(exc))
    if onsets is None:
        _fail("onsets", run_dir / "onsets.parquet", "not found; run `zipfind onsets DIR` first")
    path = fits / "fits" / "fits.json" if fits.is_dir() else fits
    if not path.is_file():
        _fail("fits", fits, "a fits.json file, or a run directory fitted by `zipfind fit`")
    records = json.loads(path.read_text())
    fitted = [r["model"] for r in records]
    names = [n.strip() for n in models.split(",") if n.strip()] or fitted
    for n in names:
        if n not in fitted:
            _fail("models", n, f"one of the fitted models {', '.join(fitted)}")
    summary, preds = validate(onsets, records, names)
    out_dir = run_dir / "fits"
    atomic_write(out_dir / "validation.json", json.dumps(
        {"fits": str(path), "summary": json.loads(summary.to_json(orient="records"))}, indent=2) + "\n")
    write_parquet(preds, out_dir / "validation_predictions.parquet")
    axes = [a for a in summary.axis.unique() if a != "all"] + ["all"]
    table = Table(title=f"out-of-sample median |ln pred/obs| (censoring calls right) on {run_dir}, fits {path}")
    table.add_column("axis")
    for n in names:
        table.add_column(n, justify="right")
    for a in axes:
        sub = summary[summary.axis == a].set_index("model")
        n_obs = int(sub["n_observed"].iloc[0])
        cells = []
        for n in names:
            med, acc = sub.loc[n, "median_abs_log_err"], sub.loc[n, "censor_accuracy"]
            cells.append(("–" if not np.isfinite(med) else f"{med:.2f}") + f" ({acc:.0%})")
        table.add_row(f"{a} ({int(sub['n_cells'].iloc[0])} cells, {n_obs} onsets)", *cells)
    _console().print(table)
    typer.echo(f"wrote {out_dir / 'validation.json'} and {out_dir / 'validation_predictions.parquet'}")
