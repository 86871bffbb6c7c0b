"""One writer per run directory, files that verify, repair, signals, schema versions: each failure says what
happened and what to do (one line, exit 2, or 128 + signal), and leaves earlier results intact."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import zipfind
from conftest import TINY, sorted_metrics, tiny_run
from zipfind.cli import app
from zipfind.config import dump_toml, parse_spec
from zipfind.store import RunError, run_lock
from zipfind.sweep import run_sweep

SPEC = TINY
runner = CliRunner()


_metrics = sorted_metrics


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return tiny_run(tmp_path_factory, max_models=2)  # three chunks


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _spec_file(tmp_path):
    p = tmp_path / "spec.toml"
    p.write_text(dump_toml(parse_spec(SPEC).to_dict()))
    return p


def test_a_second_writer_is_refused_with_the_holders_name(reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": "now"}))
        res = runner.invoke(app, ["sweep", str(_spec_file(tmp_path)), "--out", str(out), "--device", "cpu"])
        assert res.exit_code == 2
        line = res.output.strip().splitlines()[-1]
        assert f"is being written by pid {holder.pid}" in line and "Traceback" not in res.output
        assert (out / ".lock").is_file()  # the holder's lock is left alone
        # read-only commands still work while the writer holds the lock
        assert runner.invoke(app, ["status", str(out)]).exit_code == 0
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    summary = run_sweep(parse_spec(SPEC), out, device="cpu")
    assert summary.ran_chunks == 0 and not (out / ".lock").exists()


def test_the_same_process_cannot_write_twice(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        with pytest.raises(RunError, match="is being written by pid"):
            run_sweep(parse_spec(SPEC), out, device="cpu")
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "delete"])
def test_damaged_chunk_files_are_found_and_exactly_those_chunks_retrained(reference, tmp_path, damage):
    out = _copy(reference, tmp_path / "run")
    victim = out / "metrics" / "chunk-0001.parquet"
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[:100])
    elif damage == "bitflip":
        victim.write_bytes(data[:50] + bytes([data[50] ^ 1]) + data[51:])
    else:
        victim.unlink()
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 2 and "metrics/chunk-0001.parquet" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["onsets", str(out)])
    assert res.exit_code == 2 and "metrics/chunk-0001.parquet" in res.output and "retrain" in res.output
    with pytest.raises(RunError, match="chunk-0001.parquet"):
        zipfind.load(out)
    events = []
    summary = run_sweep(parse_spec(SPEC), out, device="cpu", progress=lambda e, f: events.append((e, f)))
    assert summary.ran_chunks == 1
    assert [f["chunk"] for e, f in events if e == "retrain"] == [1]
    plan = events[0][1]  # the plan comes first: cells, chunks, memory and a timed estimate
    assert events[0][0] == "plan" and plan["cells"] == 6 and plan["chunks"] == 3 and 0 < plan["est_s"] < 600
    a, b = _metrics(reference), _metrics(out)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_lost_manifest_is_rebuilt_from_the_chunks_that_verify(reference, tmp_path, damage):
    out = _copy(reference, tmp_path / "run")
    if damage == "missing":
        (out / "manifest.json").unlink()
    else:
        (out / "manifest.json").write_text('{"chunks": [')
    (out / "metrics" / "chunk-0002.parquet").write_bytes(b"not parquet")  # and one chunk is broken too
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 2 and "zipfind repair" in res.output
    res = runner.invoke(app, ["repair", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 chunk(s) kept, 1 to train" in res.output
    summary = run_sweep(parse_spec(SPEC), out, device="cpu")
    assert summary.ran_chunks == 1
    a, b = _metrics(reference), _metrics(out)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)


def test_a_newer_schema_is_refused_and_an_old_one_read(reference, tmp_path):
    out = _copy(reference, tmp_path / "run")
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema"] == 2 and all("sha256" in f for c in m["chunks"] for f in c["files"].values())
    m["schema"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 2 and "schema 99" in res.output and "upgrade zipfind" in res.output
    m["schema"] = 1  # a zipfind 0.1 directory: no schema key, no checksums
    del m["schema"]
    for c in m["chunks"]:
        c.pop("files")
    (out / "manifest.json").write_text(json.dumps(m))
    assert len(zipfind.load(out).metrics) == len(_metrics(reference))


STOPPER = textwrap.dedent("""
    import os, signal, sys, threading
    from zipfind.cli import app
    import zipfind.sweep as sw

    real = sw.train_chunk
    sig = getattr(signal, sys.argv[3])
    calls = []
    def slow(*a, **k):
        calls.append(1)
        if len(calls) == 2:  # the second chunk: stop the sweep while it trains
            os.kill(os.getpid(), sig)
        return real(*a, **k)
    sw.train_chunk = slow
    sys.argv = ["zipfind", "sweep", sys.argv[1], "--out", sys.argv[2], "--device", "cpu", "--max-models", "2"]
    app()
""")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signals_stop_with_one_line_and_nothing_half_written(reference, tmp_path, sig):
    out = tmp_path / "run"
    script = tmp_path / "stopper.py"
    script.write_text(STOPPER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script), str(_spec_file(tmp_path)), str(out), sig],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 128 + getattr(signal, sig), proc.stderr
    assert "stopped: 1 of 3 chunks done; run the same command to resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")] and not (out / ".lock").exists()
    assert sorted(p.name for p in (out / "metrics").iterdir()) == ["chunk-0000.npz", "chunk-0000.parquet"]
    summary = run_sweep(parse_spec(SPEC), out, device="cpu")
    assert summary.ran_chunks == 2
    np.testing.assert_allclose(_metrics(reference).value, _metrics(out).value, rtol=1e-5, atol=1e-6)


def test_memory_is_checked_before_anything_is_allocated(tmp_path, monkeypatch):
    """K = 2e8 (a 50 GB class table) and an oversized chunk are refused with what to change, before any tensor
    or file is made."""
    import zipfind.sweep as sw

    monkeypatch.setattr(sw, "train_chunk", lambda *a, **k: pytest.fail("training started"))
    out = tmp_path / "run"
    big = parse_spec(dict(SPEC, task=dict(SPEC["task"], K=200_000_000), grid={}))
    with pytest.raises(RunError, match=r"cell 0: one model needs about .* GB \(K = 200000000.*reduce K"):
        run_sweep(big, out, device="cpu")
    assert not out.exists()
    monkeypatch.setattr(sw, "available_bytes", lambda device: 3 * sw.model_bytes(parse_spec(SPEC).expand()[0],
                                                                                 parse_spec(SPEC).model))
    with pytest.raises(RunError, match="--max-models: a chunk of 6 models needs .*use --max-models 3 or fewer"):
        run_sweep(parse_spec(SPEC), out, device="cpu", max_models=6)
    assert not out.exists()


def test_a_huge_grid_is_refused_at_once_unless_asked_for(tmp_path):
    from zipfind.config import SpecError

    raw = dict(SPEC, grid={"alpha": [i / 100 for i in range(100)], "lr": [1e-3 * (i + 1) for i in range(40)],
                           "seed": list(range(30))})
    import zipfind.config as cfg

    expanded = []
    real_expand = cfg.Spec.expand
    cfg.Spec.expand = lambda self: expanded.append(1) or real_expand(self)
    try:
        with pytest.raises(SpecError) as err:
            parse_spec(raw)
    finally:
        cfg.Spec.expand = real_expand
    assert not expanded  # the cells are counted, never expanded
    assert err.value.problems == ["grid: 120,000 cells is over the limit of 100,000; shrink the grid, or pass --yes "
                                  "to plan and run it anyway"]
    with pytest.raises(SpecError, match="2 cells is over the limit of 1"):
        parse_spec(dict(raw, grid={"alpha": [0.0, 1.0]}), cell_limit=1)


BAD = [  # (override merged into a valid spec, or raw TOML text; extra CLI args; fragment of the one error line)
    ({"task": {"K": -5}}, [], "K: -5 is not allowed"),
    ({"task": {"alpha": -1.0}}, [], "alpha: -1.0 is not allowed"),
    ({"task": {"B": 3}}, [], "B must divide N = 8"),
    ({"task": {"N": 0}}, [], "N: 0 is not allowed"),
    ({"task": {"L": 1}}, [], "L: 1 is not allowed"),
    ({"task": {"p_bursty": 1.5}}, [], "p_bursty: 1.5 is not allowed"),
    ({"task": {"p_novel": -0.1}}, [], "p_novel: -0.1 is not allowed"),
    ({"task": {"eps": -0.1}}, [], "eps: -0.1 is not allowed"),
    ({"task": {"context": "uniq"}}, [], "context: 'uniq' is not allowed; one of iid, distinct"),
    ({"task": {"KK": 5}}, [], "task.KK: unknown key (did you mean 'K'?)"),
    ({"task": {"K": "many"}}, [], "task.K: 'many' is not allowed; expected an integer"),
    ({"train": {"lr": 0.0}}, [], "lr: 0.0 is not allowed"),
    ({"train": {"steps": 0}}, [], "steps: 0 is not allowed"),
    ({"train": {"batch": -1}}, [], "batch: -1 is not allowed"),
    ({"train": {"optimizer": "adagrad"}}, [], "optimizer: 'adagrad' is not allowed"),
    ({"train": {"eval_every": 100000}}, [], "eval_every: 100000 is not allowed"),
    ({"train": {"beta1": 1.0}}, [], "beta1: 1.0 is not allowed"),
    ({"model": {"readout": "conv"}}, [], "readout: 'conv' is not allowed"),
    ({"model": {"heads": 3}}, [], "heads: 3 is not allowed; must divide d_model"),
    ({"model": {"layers": 0}}, [], "layers: 0 is not allowed"),
    ({"grid": {"alpha": []}}, [], "grid.alpha: [] is not allowed"),
    ({"grid": {"alpha": [1.0, 1.0]}}, [], "axis values must be distinct"),
    ({"grid": {"beta": [1]}}, [], "grid.beta: unknown axis"),
    ({"grid": {"alpha": 1.0}}, [], "expected a list of values"),
    ({"cells": [{"foo": 1}]}, [], "cells[0].foo: unknown key"),
    ({"colour": "red"}, [], "colour: unknown top-level key"),
    ({"seed": "x"}, [], "seed: 'x' is not allowed; expected an integer"),
    ("[task\nK = 1\n", [], "is not valid TOML"),
    ({}, ["--device", "tpu"], "--device: 'tpu' is not allowed"),
    ({}, ["--executor", "dask"], "--executor: 'dask' is not allowed; one of local, ray"),
    ({}, ["--max-models", "0"], "--max-models: 0 is not allowed"),
    ({}, ["--out", "NOTDIR"], "exists and is not a zipfind run directory"),
]
BASE = {"name": "t", "task": {"K": 64, "N": 8, "L": 32, "D": 7}, "model": {"d_model": 8},
        "train": {"steps": 8, "batch": 4, "eval_every": 4, "n_probe": 8}}


@pytest.mark.parametrize("text,args,fragment", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, text, args, fragment):  # noqa: C901
    """Each bad spec or flag: exit 2, one line naming the key, the value and what is allowed, no traceback, and
    nothing written or lost."""
    spec = tmp_path / "s.toml"
    if isinstance(text, str):
        spec.write_text(text)
    else:
        raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
        for k, v in text.items():
            raw[k] = {**raw[k], **v} if isinstance(v, dict) and k in raw else v
        spec.write_text(dump_toml(raw))
    notdir = tmp_path / "notarun"
    notdir.mkdir()
    (notdir / "precious.txt").write_text("keep me")
    out = tmp_path / "run"
    args = [str(notdir) if a == "NOTDIR" else a for a in args]
    res = runner.invoke(app, ["sweep", str(spec), *(["--out", str(out)] if "--out" not in args else []), *args])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], res.output
    assert "Traceback" not in res.output
    assert not out.exists() and (notdir / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in notdir.iterdir()) == ["precious.txt"]


@pytest.mark.parametrize("err", ["ENOSPC", "EACCES"])
def test_a_failed_write_leaves_earlier_results_intact(reference, tmp_path, monkeypatch, err):
    """Disk full or permission denied while the second chunk is written: one line and exit 2 from the CLI; the
    first chunk stays committed and verified, nothing half-written is visible, and a rerun finishes the run."""
    import errno

    import zipfind.store as st

    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 7:  # spec, manifest, chunk 0 (2 files + manifest), then the first file of chunk 1
            raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)), str(out / "metrics"))
        return real_fsync(fd)

    monkeypatch.setattr(st.os, "fsync", failing_fsync)
    res = runner.invoke(app, ["sweep", str(_spec_file(tmp_path)), "--out", str(out), "--device", "cpu",
                              "--max-models", "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"({err})" in errors[0] and "earlier results are intact" in errors[0]
    monkeypatch.setattr(st.os, "fsync", real_fsync)
    m = json.loads((out / "manifest.json").read_text())
    assert [c["status"] for c in m["chunks"]] == ["done", "pending", "pending"]
    assert st.verify_chunks(out, m) == {} and not (out / ".lock").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    summary = run_sweep(parse_spec(SPEC), out, device="cpu")
    assert summary.ran_chunks == 2
    np.testing.assert_allclose(_metrics(reference).value, _metrics(out).value, rtol=1e-5, atol=1e-6)
