"""One writer per run directory, files that verify, repair, signals, schema versions: each failure says what
happened and what to do (one line, exit 2, or 128 + signal), and leaves earlier results intact."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import zipfind
from zipfind.cli import app
from zipfind.config import dump_toml, parse_spec
from zipfind.store import RunError, run_lock
from zipfind.sweep import run_sweep

SPEC = {"name": "tiny", "task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16},
        "train": {"steps": 16, "batch": 16, "eval_every": 8, "n_probe": 32},
        "grid": {"alpha": [0.0, 1.0, 2.0], "B": [1, 2]}}
runner = CliRunner()


def _metrics(run_dir):
    return zipfind.load(run_dir).metrics.sort_values(["cell", "step", "measure"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run_sweep(parse_spec(SPEC), out, device="cpu", max_models=2)
    return out


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
