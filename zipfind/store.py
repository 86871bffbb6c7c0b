"""The run directory: spec, manifest, per-chunk metrics, onsets, fits. Every write is atomic (temp + rename).

    DIR/spec.toml                   resolved spec, every default written out
    DIR/manifest.json               cells, chunks and their status, versions, device, timing
    DIR/metrics/chunk-NNNN.parquet  long format: cell, step, measure, value
    DIR/metrics/chunk-NNNN.npz      per-probe IC correctness [n_checkpoints, n_probe] per cell (for bootstraps)
    DIR/state/chunk-NNNN.pt         training state of an unfinished chunk (torch.save), removed once it is done
    DIR/onsets.parquet              one row per cell
    DIR/fits/, DIR/figures/

This module does not import torch, so `zipfind.load` works in a notebook without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import socket
import tempfile
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from . import __version__
from .config import RUN_ONLY_KEYS, Spec, dump_toml, parse_spec


class RunError(ValueError):
    """A run directory that cannot be used as asked (missing, locked, corrupted, or holding another spec)."""


SCHEMA = 2  # run-directory layout; 1: zipfind 0.1 (no schema key, no checksums), 2: checksums, lock, schema key
LOCK = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold DIR/.lock (pid, host, start time) while writing a run directory: one writer at a time.

    A lock left by a dead process on this host is taken over; a live holder, or one on another host (whose
    liveness cannot be checked), makes this raise RunError naming it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            same_host = holder.get("host") == me["host"]
            if same_host and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                path.unlink(missing_ok=True)  # stale: its writer died; take it over
                continue
            where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
            hint = ("wait for it or stop it" if same_host else
                    f"if no sweep runs there any more, delete {str(path)!r}")
            raise RunError(f"out: {str(run_dir)!r} is being written by {where}; {hint}") from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        break
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == me["pid"]:
                path.unlink()
        except (OSError, ValueError):
            pass


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())


def write_json(obj: Any, path: Path) -> None:
    atomic_write(path, json.dumps(obj, indent=1, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def chunk_path(run_dir: Path, chunk: int, ext: str) -> Path:
    return Path(run_dir) / "metrics" / f"chunk-{chunk:04d}.{ext}"


def weights_path(run_dir: Path, chunk: int) -> Path:
    """A chunk's trained weights: safetensors, tensors `step{S}/{name}` stacked [M, ...] (`[train] save`)."""
    return Path(run_dir) / "weights" / f"chunk-{chunk:04d}.safetensors"


def weights_bytes(weights: dict[int, dict[str, Any]], cells: list[int]) -> bytes:
    """The safetensors file of a chunk's kept weights (step -> name -> [M, ...] CPU tensors); the metadata names
    the chunk's cells in stack order and the kept steps."""
    from safetensors.torch import save

    tensors = {f"step{step}/{name}": t.contiguous() for step, params in sorted(weights.items())
               for name, t in params.items()}
    return save(tensors, metadata={"format": "zipfind-weights-1", "cells": json.dumps(cells),
                                   "steps": json.dumps(sorted(weights))})


def weights_cells(path: Path) -> list[int]:
    """The cells (in stack order) of a weights file that loads in full; raises if it does not."""
    from safetensors import safe_open
    from safetensors.torch import load

    load(Path(path).read_bytes())  # every tensor readable
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["cells"])


def model_bytes_file(params: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """One model's parameters (no model dimension) as safetensors, with `meta` (JSON-encoded strings) attached."""
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in params.items()},
                metadata={"format": "zipfind-model-1", **{k: json.dumps(v) for k, v in meta.items()}})


def read_model_file(path: str | Path):
    """An exported model file (`zipfind export --to safetensors`) as (zipfind.model.OneModel, its metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .config import ModelConfig
    from .model import OneModel

    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items() if k != "format"}
    return OneModel(ModelConfig(**meta["model"]), load_file(str(path))), meta


def state_path(run_dir: Path, chunk: int) -> Path:
    """Where a chunk's training state is saved while it trains (see train.train_chunk)."""
    return Path(run_dir) / "state" / f"chunk-{chunk:04d}.pt"


def cells_table(spec: Spec) -> pd.DataFrame:
    """One row per cell: `cell`, then every task and training scalar (grid axes included)."""
    return pd.DataFrame([{"cell": c.index, **c.params()} for c in spec.expand()])


LEGACY_CONTEXT = "distinct"  # the context law of run directories written before `[task] context` existed


def _is_legacy(raw: dict[str, Any]) -> bool:
    """A stored spec without the context key anywhere: made under the old (distinct) law."""
    cells = raw.get("cells", [])
    return not ("context" in raw.get("task", {}) or "context" in raw.get("grid", {})
                or any(isinstance(c, dict) and "context" in c for c in cells))


def read_spec(run_dir: Path) -> Spec:
    """The run's resolved spec; a spec.toml without a context key (an old run) reads as context = "distinct"."""
    path = Path(run_dir) / "spec.toml"
    if not path.is_file():
        raise RunError(f"run directory: {str(run_dir)!r} has no spec.toml; give a directory made by `zipfind sweep`")
    raw = tomllib.loads(path.read_text())
    if _is_legacy(raw):
        raw.setdefault("task", {})["context"] = LEGACY_CONTEXT
    return parse_spec(raw, cell_limit=None)


def resume_spec(run_dir: Path, spec: Spec) -> Spec:
    """The spec to train with: an old run directory (no context key) resumes under its own law, "distinct", when
    `spec` equals its spec except for the context law; otherwise `spec` unchanged."""
    path = Path(run_dir) / "spec.toml"
    if not path.is_file() or not _is_legacy(tomllib.loads(path.read_text())):
        return spec
    stored = read_spec(run_dir)
    legacy = replace(spec, task=replace(spec.task, context=LEGACY_CONTEXT))
    return stored if legacy.to_dict() == stored.to_dict() and "context" not in spec.axes else spec


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest; RunError (one line, what to do) when it is missing, unreadable or of a newer schema."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise RunError(f"run directory: {str(run_dir)!r} has no manifest.json; `zipfind repair {run_dir}` rebuilds "
                       "it from spec.toml and the chunk files")
    try:
        manifest = json.loads(path.read_text())
        assert isinstance(manifest, dict) and isinstance(manifest["chunks"], list)
    except (ValueError, KeyError, AssertionError, UnicodeDecodeError):
        raise RunError(f"run directory: {str(path)!r} is corrupted; `zipfind repair {run_dir}` rebuilds it from "
                       "spec.toml and the chunk files that verify") from None
    schema = manifest.get("schema", 1)
    if schema > SCHEMA:
        raise RunError(f"run directory: {str(run_dir)!r} has schema {schema}; this zipfind ({__version__}) reads "
                       f"schemas up to {SCHEMA}: upgrade zipfind")
    return manifest


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def verify_chunks(run_dir: Path, manifest: dict[str, Any]) -> dict[int, list[str]]:
    """chunk -> problems ("metrics/chunk-0001.parquet: missing" / "... corrupted (100 of 5123 bytes)") for every
    committed chunk whose files do not match the size and sha256 the manifest recorded (schema >= 2)."""
    bad: dict[int, list[str]] = {}
    for c in manifest["chunks"]:
        if c["status"] != "done":
            continue
        for rel, want in c.get("files", {}).items():
            path = Path(run_dir) / rel
            if not path.is_file():
                bad.setdefault(c["chunk"], []).append(f"{rel}: missing")
                continue
            got = _digest(path.read_bytes())
            if got != want:
                bad.setdefault(c["chunk"], []).append(
                    f"{rel}: corrupted ({got['bytes']} of {want['bytes']} bytes, checksum differs)")
    return bad


def check_chunks(run_dir: Path, manifest: dict[str, Any]) -> None:
    """RunError naming the first bad chunk file and what to do, if any committed chunk fails verification."""
    bad = verify_chunks(run_dir, manifest)
    if bad:
        first = next(iter(bad.values()))[0]
        n = sum(len(v) for v in bad.values())
        raise RunError(f"run directory: {first}" + (f" (and {n - 1} more)" if n > 1 else "")
                       + f"; rerun `zipfind sweep` on {str(run_dir)!r} to retrain the affected chunks")


def results_key(spec: Spec) -> dict[str, Any]:
    """The spec less the keys that change no result (RUN_ONLY_KEYS): equal keys, equal results."""
    d = spec.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in RUN_ONLY_KEYS}
    return d


def prepare_run(run_dir: Path, spec: Spec, chunks: list[list[int]], meta: dict[str, Any], force: bool) -> dict[str, Any]:
    """Create the run directory, or reopen it for resuming; returns the manifest.

    `meta` (device, torch version, ...) is recorded. Reopening keeps the stored chunk plan (results do not
    depend on it) and refuses a changed spec, or finished chunks of another data stream (zipfind.rng), unless
    `force`, which starts the run over: the old chunks, onsets and fits are removed, so nothing derived from the
    other spec or stream survives.
    """
    from .rng import DATA_STREAM  # here, so that reading runs (and zipfind.theory) never imports torch

    run_dir = Path(run_dir)
    spec_text = dump_toml(spec.to_dict())
    if (run_dir / "manifest.json").is_file() and (run_dir / "spec.toml").is_file():
        same = results_key(read_spec(run_dir)) == results_key(spec)
        manifest = read_manifest(run_dir) if same else {}
        stream = manifest.get("data_stream", "one torch generator per model (zipfind < 0.4)")
        if same and stream == DATA_STREAM:  # an old run's spec gains its explicit context key, etc.
            atomic_write(run_dir / "spec.toml", spec_text)
            manifest.update(meta, resumed=manifest.get("resumed", 0) + 1)
            write_json(manifest, run_dir / "manifest.json")
            return manifest
        if same and not force and any(c["status"] == "done" for c in manifest["chunks"]):
            raise RunError(f"out: {str(run_dir)!r} was trained with data stream {stream!r}; this zipfind draws "
                           f"{DATA_STREAM!r}, so resuming would mix streams; use another --out, or --force to "
                           "discard it and start over")
        if not same and not force:
            raise RunError(f"out: {str(run_dir)!r} holds a run of a different spec; use another --out, "
                           "or --force to discard it and start over")
        stale = [*(run_dir / "metrics").glob("chunk-*"), *(run_dir / "fits").glob("*"), run_dir / "onsets.parquet",
                 *(run_dir / "state").glob("chunk-*"), *(run_dir / "weights").glob("chunk-*")]
        for p in stale:
            p.unlink(missing_ok=True)
    elif run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir()) and not force:
        raise RunError(f"out: {str(run_dir)!r} exists and is not a zipfind run directory; use another --out, "
                       "or --force to write into it")
    atomic_write(run_dir / "spec.toml", spec_text)
    manifest = {
        "schema": SCHEMA, "spec_name": spec.name, "zipfind": __version__, "data_stream": DATA_STREAM,
        "python": platform.python_version(),
        "platform": platform.platform(), **meta,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": 0, "n_cells": len(spec.expand()),
        "chunks": [{"chunk": i, "cells": c, "status": "pending"} for i, c in enumerate(chunks)],
    }
    write_json(manifest, run_dir / "manifest.json")
    return manifest


def save_chunk(run_dir: Path, manifest: dict[str, Any], chunk: int, metrics: pd.DataFrame,
               ic_correct: dict[int, np.ndarray], info: dict[str, Any], weights: dict | None = None) -> None:
    """Write a finished chunk's files (metrics, per-probe IC accuracy, kept weights), then mark it done in the
    manifest with their sizes and checksums (the commit point of a chunk)."""
    buf = io.BytesIO()
    metrics.to_parquet(buf, index=False)
    npz = io.BytesIO()
    np.savez_compressed(npz, **{f"cell_{c}": v for c, v in ic_correct.items()})
    files = {}
    out = [(chunk_path(run_dir, chunk, "parquet"), buf.getvalue()), (chunk_path(run_dir, chunk, "npz"), npz.getvalue())]
    if weights:
        out.append((weights_path(run_dir, chunk), weights_bytes(weights, manifest["chunks"][chunk]["cells"])))
    for path, data in out:
        atomic_write(path, data)
        files[str(path.relative_to(run_dir))] = _digest(data)
    manifest["chunks"][chunk].update(status="done", files=files, **info)
    manifest["schema"] = SCHEMA
    write_json(manifest, Path(run_dir) / "manifest.json")


def done_chunks(manifest: dict[str, Any]) -> set[int]:
    return {c["chunk"] for c in manifest["chunks"] if c["status"] == "done"}


@dataclass(frozen=True)
class Run:
    """A run directory's contents for notebooks: `zipfind.load(DIR)`."""

    path: Path
    spec: Spec
    manifest: dict[str, Any]
    cells: pd.DataFrame  # cell + every task/train scalar (grid axes included)
    metrics: pd.DataFrame  # cell, step, measure, value
    onsets: pd.DataFrame | None  # the onsets table, None until computed

    def ic_correct(self) -> dict[int, np.ndarray]:
        """cell -> per-probe IC accuracy [n_checkpoints, n_probe] (correctness, or a document's share of correct
        letters in the token task), for bootstrap intervals."""
        out: dict[int, np.ndarray] = {}
        for f in (chunk_path(self.path, c, "npz") for c in sorted(done_chunks(self.manifest))):
            with np.load(f) as z:
                out.update({int(k.split("_")[1]): z[k] for k in z.files})
        return out

    @property
    def fits(self) -> list[dict[str, Any]] | None:
        p = self.path / "fits" / "fits.json"
        return json.loads(p.read_text()) if p.is_file() else None

    @property
    def predictions(self) -> pd.DataFrame | None:
        p = self.path / "fits" / "predictions.parquet"
        return pd.read_parquet(p) if p.is_file() else None

    def _chunk_of(self, cell: int) -> tuple[dict[str, Any], int]:
        """The committed chunk holding `cell` and the cell's place in its stack."""
        if cell not in set(self.cells["cell"]):
            raise RunError(f"cell: {cell!r} is not allowed; this run has cells 0-{len(self.cells) - 1}")
        for c in self.manifest["chunks"]:
            if cell in c["cells"]:
                if c["status"] != "done":
                    raise RunError(f"cell: {cell} is in chunk {c['chunk']}, which is not trained yet; run "
                                   f"`zipfind sweep` on {str(self.path)!r} to finish it")
                return c, c["cells"].index(cell)
        raise RunError(f"cell: {cell} is in no chunk of the manifest; run `zipfind repair {self.path}`")

    def weights(self, cell: int) -> dict[int, dict[str, Any]]:
        """step -> parameter name -> tensor of one model (no model dimension), every step the run kept; the
        file is verified against the manifest's checksum first."""
        from safetensors.torch import load

        chunk, m = self._chunk_of(cell)
        rel = str(weights_path(Path("."), chunk["chunk"]))
        if rel not in chunk.get("files", {}):
            raise RunError(f"run directory: {str(self.path)!r} keeps no weights (its spec has [train] save = "
                           f"{self.spec.train.save!r}); rerun the sweep with save = \"final\" or \"checkpoints\"")
        data = (self.path / rel).read_bytes() if (self.path / rel).is_file() else b""
        if _digest(data) != chunk["files"][rel]:
            raise RunError(f"run directory: {rel}: missing or corrupted; rerun `zipfind sweep` on "
                           f"{str(self.path)!r} to retrain the chunk")
        out: dict[int, dict[str, Any]] = {}
        for key, t in load(data).items():
            step, name = key.split("/", 1)
            out.setdefault(int(step.removeprefix("step")), {})[name] = t[m]
        return dict(sorted(out.items()))

    def _step(self, cell: int, step: int | None) -> tuple[int, dict[str, Any]]:
        kept = self.weights(cell)
        step = max(kept) if step is None else step
        if step not in kept:
            shown = ", ".join(map(str, list(kept)[:12])) + (", ..." if len(kept) > 12 else "")
            raise RunError(f"step: {step!r} is not allowed; the run kept the weights of steps {shown}"
                           + (" (save = \"checkpoints\" keeps every checkpoint)" if len(kept) == 1 else ""))
        return step, kept[step]

    def model(self, cell: int, step: int | None = None):
        """One trained model as a plain `torch.nn.Module` (zipfind.model.OneModel), at `step` (default: the last
        kept step); its outputs equal the stacked model's."""
        from .model import OneModel

        return OneModel(self.spec.model, self._step(cell, step)[1])

    def attention(self, cell: int, step: int | None = None, probe: str = "ic", n: int | None = None):
        """Attention patterns of one model on (the first n sequences of) one of its task's probe sets, with the
        positions labelled and the induction targets listed (zipfind.attention.ProbeAttention)."""
        from .attention import probe_attention

        step, params = self._step(cell, step)
        try:
            return probe_attention(self.spec, self.spec.expand()[cell], params, step, probe, n)
        except ValueError as e:
            raise RunError(str(e)) from None


def read_metrics(run_dir: Path, manifest: dict[str, Any] | None = None) -> pd.DataFrame:
    """The committed chunks' metrics (a chunk still being written is not visible), verified first."""
    manifest = read_manifest(run_dir) if manifest is None else manifest
    check_chunks(run_dir, manifest)
    files = [chunk_path(run_dir, c, "parquet") for c in sorted(done_chunks(manifest))]
    if not files:
        return pd.DataFrame({"cell": pd.Series(dtype=int), "step": pd.Series(dtype=int),
                             "measure": pd.Series(dtype=str), "value": pd.Series(dtype=float)})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def load(run_dir: str | Path) -> Run:
    """Open a run directory: spec, manifest, cells, metrics and (if computed) onsets."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory: {str(run_dir)!r} does not exist")
    if not (run_dir / "manifest.json").is_file() and not (run_dir / "spec.toml").is_file():
        raise RunError(f"run directory: {str(run_dir)!r} has no manifest.json; give a directory made by "
                       "`zipfind sweep`")
    spec = read_spec(run_dir)
    cells = cells_table(spec)
    onsets = read_onsets(run_dir, cells)
    manifest = read_manifest(run_dir)
    return Run(path=run_dir, spec=spec, manifest=manifest, cells=cells, metrics=read_metrics(run_dir, manifest),
               onsets=onsets)


def read_onsets(run_dir: Path, cells: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """DIR/onsets.parquet (None if not computed); an old run's table gains its cells' `context` and `task` columns."""
    path = Path(run_dir) / "onsets.parquet"
    if not path.is_file():
        return None
    onsets = pd.read_parquet(path)
    if "context" not in onsets.columns and (cells is not None or (Path(run_dir) / "spec.toml").is_file()):
        cells = cells_table(read_spec(run_dir)) if cells is None else cells
        at = list(onsets.columns).index("p_novel") + 1 if "p_novel" in onsets.columns else len(onsets.columns)
        onsets.insert(at, "context", onsets["cell"].map(cells.set_index("cell")["context"]))
    if "task" not in onsets.columns:  # written before the token task: every cell is a classification cell
        onsets.insert(1 if "cell" in onsets.columns else 0, "task", "classification")
    return onsets
