"""zipfind's command line: thin wrappers that parse, call the library, and print.

User errors (bad spec, missing run directory, unknown option value) print one line per problem naming the
key, the value and what is allowed, and exit with code 2; no traceback.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .theory.cli import app as theory_app
from .theory.cli import fit_command, validate_command

app = typer.Typer(help="zipfind: when do induction heads form? Sweeps of stacked attention-only transformers over "
                       "Zipfian, bursty data; onset detection; analytic timing theories; phase diagrams.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
plot_app = typer.Typer(help="Figures of a run directory (output format from the file name: png, pdf, svg).",
                       no_args_is_help=True)
app.add_typer(plot_app, name="plot")
app.add_typer(theory_app, name="theory")
app.command("fit")(fit_command)
app.command("validate")(validate_command)

console = Console(stderr=True)
out = Console()
SPECS = Path(__file__).resolve().parent.parent / "sims"

DeviceOpt = Annotated[str, typer.Option(help="Training device: auto (CUDA if present), cpu, cuda or cuda:N.")]
RunDir = Annotated[Path, typer.Argument(help="A run directory made by `zipfind sweep`.")]


def fail(*lines: str) -> None:
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's user-facing errors into one-line messages and exit code 2."""
    from .config import SpecError
    from .store import RunError

    try:
        yield
    except SpecError as e:
        fail(*e.problems)
    except (RunError, FileNotFoundError) as e:
        fail(str(e))
    except OSError as e:  # disk full, permission denied, ...: every write is atomic, so nothing earlier is lost
        import errno

        what = errno.errorcode.get(e.errno, "OSError")
        fail(f"{e.filename or 'write'}: {e.strerror or e} ({what}); earlier results are intact: free space or fix "
             "the permissions, then run the same command to resume")


class _Stopped(BaseException):
    """SIGINT or SIGTERM during a sweep (a BaseException, so library code does not swallow it)."""

    def __init__(self, signum: int):
        self.signum = signum


@contextmanager
def _stop_on_signals(run_dir: Path) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into one line and exit code 128 + signal. Every file is written to a temporary name and
    renamed, and a chunk counts only once the manifest says so, so stopping anywhere leaves nothing half-written
    visible; the lock is released on the way out."""
    import signal

    def handler(signum, frame):
        raise _Stopped(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stopped as stop:
        from .store import done_chunks, read_manifest

        try:
            m = read_manifest(run_dir)
            done = f"{len(done_chunks(m))} of {len(m['chunks'])} chunks done"
        except Exception:  # stopped before the manifest existed
            done = "no chunk done"
        typer.echo(f"stopped: {done}; run the same command to resume", err=True)
        raise typer.Exit(code=128 + stop.signum) from None
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        fail(f"--device: {device!r} is not allowed; one of auto, cpu, cuda, cuda:N")


def _print_onsets(onsets, title: str) -> None:
    import math

    axes = [c for c in ("alpha", "B", "K", "p_bursty", "lr", "seed") if c in onsets and onsets[c].nunique() > 1]
    t = Table(title=title)
    for c in ["cell", *axes, "onset", "interval", "induction step", "final IC", "final IW"]:
        t.add_column(c, justify="right")
    fmt = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else (
        "∞" if isinstance(v, float) and math.isinf(v) else f"{v:.0f}")
    for r in onsets.to_dict("records"):
        onset = f"> {r['budget']:.0f} (censored)" if r["censored"] else fmt(r["onset_step"])
        interval = "" if r["censored"] else f"{fmt(r['onset_lo'])}–{fmt(r['onset_hi'])}"
        t.add_row(str(r["cell"]), *[f"{r[a]:g}" for a in axes], onset, interval, fmt(r["induction_step"]),
                  f"{r['final_ic_acc']:.2f}", f"{r['final_iw_acc']:.2f}")
    out.print(t)


def _plan_lines(f: dict) -> list[str]:
    """The plan of a sweep (zipfind.sweep.plan_sweep) in words: chunks, memory, time, disk."""
    human = lambda s: f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"  # noqa
    save = f["spec"].train.save
    return [
        f"plan: {f['cells']:,} cells in {f['chunks']:,} chunks of up to {f['max_models']} models"
        + (" (the run's stored plan)" if f["resumed"] else "") + f" on {f['device']}, {f['threads']} threads",
        f"memory: {f['bytes_per_model'] / 2**20:.1f} MB per model measured, about "
        f"{f['bytes_per_model'] * f['max_models'] / 2**30:.2f} GB for the largest chunk (checked against an upper "
        f"bound of {f['chunk_bytes'] / 2**30:.2f} GB; {f['free_bytes'] / 2**30:.1f} GB free)",
        f"time: about {human(f['est_s'])} ({human(f['train_s'])} training, {human(f['eval_s'])} evaluation; "
        "timed on this device)",
        "weights on disk: " + (f"{f['weights_bytes'] / 2**20:,.1f} MB (save = {save!r})" if f["weights_bytes"]
                               else "none (save = 'none')"),
    ]


def _sweep(spec_path: Path, out_dir: Optional[Path], device: str, executor: str, max_models: Optional[int],
           force: bool, ray_address: Optional[str], yes: bool = False, threads: Optional[int] = None,
           dry_run: bool = False):
    from .config import CELL_LIMIT, load_spec
    from .sweep import available_cores, plan_sweep, run_sweep

    _check_device(device)
    if executor not in ("local", "ray"):
        fail(f"--executor: {executor!r} is not allowed; one of local, ray")
    if max_models is not None and max_models < 1:
        fail(f"--max-models: {max_models} is not allowed; must be >= 1")
    if threads is not None and threads < 1:
        fail(f"--threads: {threads} is not allowed; must be >= 1")
    threads = threads or available_cores()  # the cores this process may use, unless told otherwise
    with user_errors():
        spec = load_spec(spec_path, cell_limit=None if yes else CELL_LIMIT)
        target = out_dir or Path("runs") / spec.name
        if dry_run:
            import torch

            torch.set_num_threads(threads)
            plan = plan_sweep(spec, target, device=device, max_models=max_models)
            for line in _plan_lines(plan):
                out.print(line)
            for i, ch in enumerate(plan["plan"][:20]):
                out.print(f"  chunk {i}: {len(ch)} cells ({ch[0]}..{ch[-1]})")
            if len(plan["plan"]) > 20:
                out.print(f"  ... and {len(plan['plan']) - 20} more chunks")
            out.print(f"dry run: nothing written to {target}")
            return None
        cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn()]
        with Progress(*cols, console=console, transient=False) as bar:
            chunks = bar.add_task("chunks", total=None)
            steps = bar.add_task("steps of chunk", total=None)
            n_done = 0

            def progress(event: str, f: dict) -> None:
                nonlocal n_done
                if event == "plan":
                    for line in _plan_lines(f):
                        console.print(line)
                elif event == "retrain":
                    console.print(f"retraining chunk {f['chunk']}: " + "; ".join(f["problems"]))
                elif event == "start":
                    n_done = f["done"]
                    bar.update(chunks, total=f["chunks"], completed=n_done)
                elif event == "chunk_start":
                    bar.reset(steps, total=f["steps"], description=f"chunk {f['chunk']} ({f['cells']} models)")
                elif event == "step":
                    bar.update(steps, completed=f["step"])
                elif event == "chunk_done":
                    n_done += 1
                    bar.update(chunks, completed=n_done)

            with _stop_on_signals(target):
                summary = run_sweep(spec, target, device=device, executor=executor, max_models=max_models,
                                    force=force, ray_address=ray_address, threads=threads, progress=progress)
    _print_onsets(summary.onsets, f"{spec.name}: onsets ({summary.onsets.measure.iloc[0] if len(summary.onsets) else ''})")
    out.print(f"{summary.n_cells} cells in {summary.n_chunks} chunks ({summary.ran_chunks} trained, "
              f"{summary.skipped_chunks} already done) in {summary.wall_s:.1f} s -> {summary.run_dir}")
    return summary


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (TOML): [task], [model], [train], [grid], [[cells]].")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/NAME).")] = None,
    device: DeviceOpt = "auto",
    executor: Annotated[str, typer.Option(help="local (one device; one worker per GPU) or ray.")] = "local",
    max_models: Annotated[Optional[int], typer.Option(help="Models stacked per chunk (default: sized "
                                                            "from device memory).")] = None,
    force: Annotated[bool, typer.Option(help="Discard a run of a different spec in --out.")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (default: start a "
                                                             "local one).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Run a spec with more cells than the limit "
                                                    "(zipfind.config.CELL_LIMIT).")] = False,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads (default: the cores this process may use; "
                                                         "give each of several side-by-side sweeps its share).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the chunk plan and its measured memory, time "
                                                            "and disk; train and write nothing.")] = False,
) -> None:
    """Train every cell of a spec's grid, chunk by chunk, resumably; then write the onsets table."""
    _sweep(spec, out_dir, device, executor, max_models, force, ray_address, yes, threads, dry_run)


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (TOML).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory.")],
    device: DeviceOpt = "auto",
) -> None:
    """Train all cells of a spec stacked together (as few chunks as shapes allow); also writes DIR/metrics.parquet."""
    from .store import read_metrics, write_parquet

    summary = _sweep(spec, out_dir, device, "local", 4096, False, None)
    write_parquet(read_metrics(summary.run_dir), summary.run_dir / "metrics.parquet")


@app.command()
def status(run_dir: RunDir) -> None:
    """Cells and chunks done, censored cells, wall time."""
    from .store import done_chunks, load

    from .store import read_manifest, verify_chunks

    with user_errors():
        bad = verify_chunks(run_dir, read_manifest(run_dir)) if run_dir.is_dir() else {}
        if bad:  # list every bad file, then say what to do (exit 2: the directory cannot be read as is)
            for problems in bad.values():
                for problem in problems:
                    console.print(f"bad file: {problem}")
            fail(f"run directory: {len(bad)} chunk(s) have missing or corrupted files; rerun `zipfind sweep` with "
                 f"--out {run_dir} to retrain exactly those")
        run = load(run_dir)
    m = run.manifest
    done = done_chunks(m)
    n_done = sum(len(c["cells"]) for c in m["chunks"] if c["chunk"] in done)
    t = Table(title=f"{run.spec.name} ({run_dir})", show_header=False)
    t.add_row("cells done", f"{n_done} / {m['n_cells']}")
    t.add_row("chunks done", f"{len(done)} / {len(m['chunks'])}")
    t.add_row("files", f"{sum(len(c.get('files', {})) for c in m['chunks'])} verified (size and sha256)"
              if m.get("schema", 1) >= 2 else "not checksummed (schema 1 directory)")
    t.add_row("device", str(m.get("device")))
    t.add_row("wall time", f"{sum(c.get('wall_s', 0) for c in m['chunks']):.1f} s")
    diverged = {k: v for c in m["chunks"] for k, v in c.get("diverged", {}).items()}
    t.add_row("diverged cells", ", ".join(f"{k} (step {v})" for k, v in diverged.items()) or "none")
    if run.onsets is not None:
        t.add_row("censored cells", f"{int(run.onsets.censored.sum())} / {len(run.onsets)}")
    out.print(t)


@app.command()
def repair(run_dir: RunDir) -> None:
    """Rebuild a missing or corrupted manifest from spec.toml and the chunk files that verify; chunks that do not
    are removed and retrained by the next `zipfind sweep`."""
    from .sweep import repair as repair_run

    if not run_dir.is_dir():
        fail(f"run directory: {str(run_dir)!r} does not exist")
    with user_errors():
        m = repair_run(run_dir)
    done = sum(c["status"] == "done" for c in m["chunks"])
    out.print(f"repaired {run_dir}/manifest.json: {done} chunk(s) kept, {len(m['chunks']) - done} to train; "
              "run `zipfind sweep` with the same spec and --out to finish")


@app.command()
def onsets(
    run_dir: RunDir,
    measure: Annotated[str, typer.Option(help="Measure whose rise (or fall, for losses and icl_score) marks the "
                                               "onset (e.g. ic_acc, induction_score, ic_loss, icl_score).")] = "ic_acc",
    estimator: Annotated[str, typer.Option(help="threshold, logistic or max_slope.")] = "threshold",
) -> None:
    """Recompute the onsets table from stored metrics (no retraining) and print it."""
    from .onset import ESTIMATORS
    from .sweep import compute_onsets

    if estimator not in ESTIMATORS:
        fail(f"--estimator: {estimator!r} is not allowed; one of {', '.join(ESTIMATORS)}")
    with user_errors():
        from .store import load

        run = load(run_dir)
        available = sorted(run.metrics.measure.unique())
        if measure not in available:
            fail(f"--measure: {measure!r} is not allowed; one of {', '.join(available)}")
        table = compute_onsets(run_dir, measure=measure, estimator=estimator)
    _print_onsets(table, f"onsets of {measure} ({estimator}) -> {run_dir / 'onsets.parquet'}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


@app.command()
def bench(
    config: Annotated[Optional[list[Path]], typer.Option(help="Spec file(s) to benchmark (repeatable; default: "
                                                              "sims/quick.toml and sims/bench_small.toml).")] = None,
    models: Annotated[Optional[str], typer.Option(help="Comma-separated M values (default: 1,8,32 on CPU; "
                                                       "1,8,32,128 on GPU).")] = None,
    device: DeviceOpt = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the stacked loss.")] = False,
    dtype: Annotated[str, typer.Option(help="fp32 or bf16 (autocast).")] = "fp32",
    repeats: Annotated[int, typer.Option(help="Interleaved timing repeats per M.")] = 3,
    no_loop: Annotated[bool, typer.Option("--no-loop", help="Skip the one-model-at-a-time baseline.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list of records instead of a table.")] = False,
    profile: Annotated[bool, typer.Option("--profile", help="Also profile where a stacked step's time goes "
                                                            "(sample, forward, backward, optimizer, other).")] = False,
) -> None:
    """Stacked engine vs a plain one-model-at-a-time loop and a torch.func vmap ensemble: model-steps/s, ratios,
    FLOP/s vs peak, data share, memory."""
    import json

    import torch

    from .bench import run_bench
    from .config import load_spec
    from .train import resolve_device

    _check_device(device)
    if dtype not in ("fp32", "bf16"):
        fail(f"--dtype: {dtype!r} is not allowed; one of fp32, bf16")
    dev = resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("--device: 'cuda' is not available on this machine; use cpu or auto")
    try:
        ms = [int(x) for x in (models or ("1,8,32,128" if dev.type == "cuda" else "1,8,32")).split(",")]
        assert all(m >= 1 for m in ms)
    except (ValueError, AssertionError):
        fail(f"--models: {models!r} is not allowed; comma-separated positive integers, e.g. 1,8,32")
    paths = config or [SPECS / "quick.toml", SPECS / "bench_small.toml"]
    records = []
    with user_errors():
        for p in paths:
            spec = load_spec(p)
            records += run_bench(spec, ms, dev, repeats=repeats, compile=compile, dtype=dtype, loop=not no_loop,
                                 config_name=p.stem, profile=profile)
    if as_json:
        typer.echo(json.dumps(records, indent=1))
        return
    t = Table(title=f"zipfind bench on {records[0]['device']} ({dtype})")
    for c in ["config", "M", "stacked steps/s", "loop steps/s", "ratio", "vmap steps/s", "vs vmap", "GFLOP/s",
              "% of peak", "data share", "MB/model"]:
        t.add_column(c, justify="right")
    for r in records:
        t.add_row(r["config"], str(r["M"]),
                  f"{r['stacked_model_steps_per_s']:.1f} ±{100 * r['stacked_spread']:.0f}%",
                  f"{r['loop_model_steps_per_s']:.1f} ±{100 * r['loop_spread']:.0f}%", f"{r['ratio']:.2f}x",
                  f"{r['vmap_model_steps_per_s']:.1f} ±{100 * r['vmap_spread']:.0f}%", f"{r['ratio_vs_vmap']:.2f}x",
                  f"{r['achieved_gflops']:.1f}", f"{100 * r['peak_fraction']:.0f}% of {r['peak_gflops']:.0f}",
                  f"{100 * r['data_share']:.1f}%", f"{r['peak_mem_per_model_mb']:.1f}")
    out.print(t)
    if profile:
        from .bench import PHASES

        pt = Table(title="where a stacked step's time goes (share of wall time, under torch.profiler)")
        for c in ["config", "M", *PHASES, "other"]:
            pt.add_column(c, justify="right")
        for r in records:
            pt.add_row(r["config"], str(r["M"]), *[f"{100 * r['profile'][ph]:.0f}%" for ph in (*PHASES, "other")])
        out.print(pt)


def _figure_path(run_dir: Path, output: Optional[Path], name: str) -> Path:
    path = output or run_dir / "figures" / f"{name}.png"
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        fail(f"-o: {str(path)!r} is not allowed; the file name must end in .png, .pdf or .svg")
    return path


def _save(fig, path: Path) -> None:
    import io

    from .store import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:].lower(), dpi=150, bbox_inches="tight")
    atomic_write(path, buf.getvalue())
    out.print(f"wrote {path}")


def _run_with_onsets(run_dir: Path):
    from .store import load

    with user_errors():
        run = load(run_dir)
    if run.onsets is None or run.onsets.empty:
        fail(f"run directory: {str(run_dir)!r} has no onsets.parquet; run `zipfind onsets {run_dir}` first")
    return run


OutputOpt = Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file (.png, .pdf, .svg); "
                                                                           "default DIR/figures/NAME.png.")]


def _phase_diagram(run_dir: Path, output: Optional[Path], x: str, y: str, model: Optional[str]) -> Path:
    from .plots import phase_diagram
    from .theory.choose import best_model, theory_grid

    run = _run_with_onsets(run_dir)
    for key, axis in (("--x", x), ("--y", y)):
        if axis not in run.onsets.columns:
            fail(f"{key}: {axis!r} is not allowed; one of the grid axes {', '.join(run.spec.axes)}")
    theory = None
    fits = run.fits
    if model != "none" and fits:
        names = [r["model"] for r in fits]
        if model is not None and model not in names:
            fail(f"--model: {model!r} is not allowed; one of the fitted models {', '.join(names)}, or none")
        name = model or best_model(fits)
        theory = theory_grid(run.onsets, name, fits, x=x, y=y)
    path = _figure_path(run_dir, output, "phase_diagram")
    _save(phase_diagram(run.onsets, x=x, y=y, theory=theory), path)
    return path


@plot_app.command("phase-diagram")
def plot_phase_diagram(
    run_dir: RunDir,
    output: OutputOpt = None,
    x: Annotated[str, typer.Option("--x", help="Grid axis across.")] = "alpha",
    y: Annotated[str, typer.Option("--y", help="Grid axis up.")] = "B",
    model: Annotated[Optional[str], typer.Option(help="Fitted model whose no-onset boundary is drawn (default: "
                                                      "best held-out error; 'none' to omit).")] = None,
) -> None:
    """Median onset over two grid axes, censored cells marked, final IC/IW accuracy beside, theory boundary."""
    _phase_diagram(run_dir, output, x, y, model)


def _parse_where(where: Optional[str]) -> Optional[dict]:
    if not where:
        return None
    sel = {}
    for part in where.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            fail(f"--where: {where!r} is not allowed; write axis=value pairs, e.g. alpha=1,B=2")
        try:
            sel[key.strip()] = float(value)
        except ValueError:
            sel[key.strip()] = value.strip()
    return sel


def _curves(run_dir: Path, output: Optional[Path], where: Optional[str], hue: Optional[str],
            measures: Optional[str] = None) -> Path:
    from .plots import learning_curves

    run = _run_with_onsets(run_dir)
    names = [m.strip() for m in measures.split(",") if m.strip()] if measures is not None else None
    try:
        fig = learning_curves(run.metrics, run.onsets, where=_parse_where(where), hue=hue, measures=names)
    except ValueError as e:
        fail(f"--where/--hue/--measures: {e}")
    path = _figure_path(run_dir, output, "curves")
    _save(fig, path)
    return path


@plot_app.command("curves")
def plot_curves(
    run_dir: RunDir,
    output: OutputOpt = None,
    where: Annotated[Optional[str], typer.Option(help="Select cells, e.g. alpha=1,B=2.")] = None,
    hue: Annotated[Optional[str], typer.Option(help="Overlay cells coloured by this axis (one panel per "
                                                    "measure).")] = None,
    measures: Annotated[Optional[str], typer.Option(help="Measures to draw, e.g. ic_acc,icl_score,rep_loss "
                                                         "(default: IC, IW, context-label accuracy and induction "
                                                         "score, those the run has).")] = None,
) -> None:
    """Measures against step (IC, IW, context-label accuracy and induction score by default), onset marked."""
    _curves(run_dir, output, where, hue, measures)


def _onset_of(run, cell: int) -> tuple[float, float, bool]:
    """(onset, onset_lo, censored) of a cell from the onsets table (NaN, NaN, True when there is none)."""
    row = run.onsets[run.onsets["cell"] == cell] if run.onsets is not None else None
    if row is None or row.empty:
        return float("nan"), float("nan"), True
    r = row.iloc[0]
    return float(r["onset_step"]), float(r["onset_lo"]), bool(r["censored"])


def _load(run_dir: Path):
    from .store import load

    return load(run_dir)


CellOpt = Annotated[int, typer.Option("--cell", help="Cell index (see `zipfind onsets DIR`).")]


@plot_app.command("attention")
def plot_attention(
    run_dir: RunDir,
    cell: CellOpt,
    output: OutputOpt = None,
    steps: Annotated[Optional[str], typer.Option(help="Kept steps to show, e.g. 0,400,3000 (default: before, "
                                                      "around and after the onset).")] = None,
    probe: Annotated[str, typer.Option(help="Probe set (classification: ic, ic2, iw; tokens: ic, iw, doc, "
                                            "rep).")] = "ic",
    seq: Annotated[int, typer.Option(help="Which probe sequence.")] = 0,
) -> None:
    """Every head's attention on one probe sequence at a few steps, tokens labelled, induction targets marked."""
    from .attention import default_steps
    from .plots.heads import attention_figure

    with user_errors():
        run = _load(run_dir)
        kept = list(run.weights(cell))
    onset, lo, censored = _onset_of(run, cell)
    try:
        chosen = [int(x) for x in steps.split(",")] if steps else default_steps(kept, onset, lo, censored)
    except ValueError:
        fail(f"--steps: {steps!r} is not allowed; give kept steps separated by commas, e.g. {kept[0]},{kept[-1]}")
    if seq < 0 or seq >= run.spec.expand()[cell].train.n_probe:
        fail(f"--seq: {seq} is not allowed; a probe set has sequences 0-{run.spec.expand()[cell].train.n_probe - 1}")
    with user_errors():
        views = {s: run.attention(cell, s, probe, n=seq + 1) for s in chosen}
    try:
        first = next(iter(views.values()))
    except StopIteration:
        fail("--steps: no step to show")
    fig = attention_figure({s: v.attn[:, :, seq].numpy() for s, v in views.items()}, first.labels[seq],
                           first.targets[seq], onset=onset,
                           title=f"{run.spec.name}, cell {cell}: {probe} probe, sequence {seq}")
    _save(fig, _figure_path(run_dir, output, f"attention-cell{cell}"))


@plot_app.command("heads")
def plot_heads(run_dir: RunDir, cell: CellOpt, output: OutputOpt = None) -> None:
    """Every head's previous-token, prefix-matching and copying score over training, the onset marked."""
    from .plots.heads import heads_figure

    with user_errors():
        run = _load(run_dir)
    onset, _, censored = _onset_of(run, cell)
    try:
        fig = heads_figure(run.metrics, cell, onset=onset, censored=censored,
                           title=f"{run.spec.name}, cell {cell}")
    except ValueError as e:
        fail(f"--cell: {e}")
    _save(fig, _figure_path(run_dir, output, f"heads-cell{cell}"))


@plot_app.command("tasks")
def plot_tasks(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories, one panel each (e.g. a classification "
                                                        "and a token sweep).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Figure file (.png, .pdf or .svg).")],
) -> None:
    """Onset against alpha for several runs side by side, each with its best fitted model; English marked."""
    from .english import english_alpha
    from .plots.tasks import task_comparison

    runs = [_run_with_onsets(d) for d in run_dirs]
    panels = {f"{r.spec.name} ({r.spec.task.kind})": (r.onsets, r.fits) for r in runs}
    en = [a for a in (english_alpha(r.onsets) for r in runs) if a is not None]
    try:
        fig = task_comparison(panels, english_alpha=en[0] if en else None)
    except ValueError as e:
        fail(f"run directories: {e}")
    _save(fig, _figure_path(run_dirs[0], output, "tasks"))


@plot_app.command("fit")
def plot_fit(
    run_dir: RunDir,
    output: OutputOpt = None,
    model: Annotated[Optional[str], typer.Option(help="Only this fitted model (default: all).")] = None,
) -> None:
    """Predicted vs observed onset per fitted model (censored cells and held-out predictions marked)."""
    from .plots import fit_overlay

    run = _run_with_onsets(run_dir)
    preds = run.predictions
    if preds is None:
        fail(f"run directory: {str(run_dir)!r} has no fits; run `zipfind fit {run_dir}` first")
    names = list(dict.fromkeys(preds["model"]))
    if model is not None and model not in names:
        fail(f"--model: {model!r} is not allowed; one of the fitted models {', '.join(names)}")
    _save(fit_overlay(preds, models=[model] if model else None, fits=run.fits, hue="alpha"),
          _figure_path(run_dir, output, "fit"))


@app.command()
def export(
    run_dir: RunDir,
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="File to write.")],
    cell: CellOpt,
    to: Annotated[str, typer.Option("--to", help="safetensors (one model's weights and its spec) or "
                                                 "transformer-lens (a HookedTransformer's cfg and state dict, "
                                                 "for torch.load).")] = "safetensors",
    step: Annotated[Optional[int], typer.Option(help="A kept step (default: the last).")] = None,
) -> None:
    """One trained model out of a run, as safetensors or as a TransformerLens HookedTransformer."""
    import dataclasses
    import io

    from .store import atomic_write, model_bytes_file

    if to not in ("safetensors", "transformer-lens"):
        fail(f"--to: {to!r} is not allowed; one of safetensors, transformer-lens")
    with user_errors():
        run = _load(run_dir)
        model = run.model(cell, step)
        kept = step if step is not None else max(run.weights(cell))
    if to == "safetensors":
        c = run.spec.expand()[cell]
        meta = {"model": dataclasses.asdict(run.spec.model), "task": dataclasses.asdict(c.task),
                "train": dataclasses.asdict(c.train), "cell": cell, "step": kept, "spec_seed": run.spec.seed}
        data = model_bytes_file(dict(model.params), meta)
    else:
        import torch

        from .interop import hooked_from_params

        try:
            tl = hooked_from_params(dict(model.params), run.spec.model)
        except (ImportError, ValueError) as e:
            fail(f"--to: {e}")
        buf = io.BytesIO()
        torch.save({"cfg": tl.cfg.to_dict(), "state_dict": tl.state_dict(), "cell": cell, "step": kept}, buf)
        data = buf.getvalue()
    with user_errors():
        atomic_write(out_path, data)
    out.print(f"wrote {out_path} (cell {cell}, step {kept}, {to})")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/quick"),
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option(help="Discard an earlier run of another spec in --out.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads (default: the cores this process may "
                                                         "use).")] = None,
) -> None:
    """The quick sweep end to end: sims/quick.toml -> onsets -> theory fits -> phase diagram and curves."""
    t0 = time.perf_counter()
    spec = SPECS / "quick.toml"
    if not spec.is_file():
        fail(f"spec: {str(spec)!r} does not exist; run the demo from a source checkout (pip install -e .)")
    _sweep(spec, out_dir, device, "local", None, force, None, threads=threads)
    fit_command(run_dir=out_dir, models="", folds=5)
    _phase_diagram(out_dir, None, "alpha", "B", None)
    _curves(out_dir, None, None, "alpha")
    plot_fit(out_dir, None, None)
    out.print(f"demo done in {time.perf_counter() - t0:.0f} s: metrics {out_dir / 'metrics'}, onsets "
              f"{out_dir / 'onsets.parquet'}, fits {out_dir / 'fits'}, figures {out_dir / 'figures'}")
