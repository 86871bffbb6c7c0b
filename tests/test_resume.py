"""Mid-chunk resume: a chunk killed mid-way resumes from its saved state and equals an uninterrupted run."""

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

import zipfind
from zipfind import train
from zipfind.config import SpecError, parse_spec
from zipfind.store import state_path
from zipfind.sweep import run_sweep

SPEC = {"name": "tiny", "task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16},
        "train": {"steps": 40, "batch": 16, "eval_every": 8, "n_probe": 32, "resume_every": 10},
        "grid": {"alpha": [0.0, 1.5], "B": [1, 2]}}


class Interrupt(Exception):
    pass


def _spec(optimizer="adam"):
    return parse_spec(dict(SPEC, train=dict(SPEC["train"], optimizer=optimizer)))


def _count_steps(monkeypatch) -> list[int]:
    """Record the steps train_chunk actually takes."""
    seen, step = [], train.train_step

    def counted(ch, s, *a, **k):
        seen.append(s)
        return step(ch, s, *a, **k)

    monkeypatch.setattr(train, "train_step", counted)
    return seen


def _stop_at(step: int):
    def progress(s):
        if s == step:
            raise Interrupt

    return progress


def _assert_same(a: train.ChunkResult, b: train.ChunkResult) -> None:
    pd.testing.assert_frame_equal(a.metrics[["cell", "step", "measure"]], b.metrics[["cell", "step", "measure"]])
    np.testing.assert_allclose(a.metrics.value, b.metrics.value, rtol=1e-6, atol=1e-6)
    assert a.ic_correct.keys() == b.ic_correct.keys()
    for c in a.ic_correct:
        np.testing.assert_array_equal(a.ic_correct[c], b.ic_correct[c])
    assert a.diverged_at == b.diverged_at


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_interrupted_chunk_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, optimizer):
    spec = _spec(optimizer)
    cells = spec.expand()
    ref = train.train_chunk(cells, spec.model, spec.seed)
    path = tmp_path / "state" / "chunk-0000.pt"
    with pytest.raises(Interrupt):  # killed after step 25: the last save was at step 20
        train.train_chunk(cells, spec.model, spec.seed, progress=_stop_at(25), state_path=path)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 20 and state["n_since"] == 4  # 4 losses accumulated since the checkpoint at 16
    assert [r[0] for r in state["records"]] == [0, 1, 2, 4, 8, 16]
    seen = _count_steps(monkeypatch)
    resumed = train.train_chunk(cells, spec.model, spec.seed, state_path=path)
    assert seen == list(range(21, 41))  # it went on from step 21, not from 1
    _assert_same(ref, resumed)
    assert path.is_file()  # train_chunk deletes nothing; the sweep removes it after the commit
    assert torch.load(path, weights_only=True)["step"] == 30  # no save at the last step


@pytest.mark.parametrize("damage", ["truncated", "other_cells"])
def test_unusable_state_warns_and_trains_from_step_0(tmp_path, monkeypatch, damage):
    spec = _spec()
    cells = spec.expand()
    ref = train.train_chunk(cells, spec.model, spec.seed)
    path = tmp_path / "chunk-0000.pt"
    if damage == "truncated":
        with pytest.raises(Interrupt):
            train.train_chunk(cells, spec.model, spec.seed, progress=_stop_at(25), state_path=path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        match = "unreadable"
    else:  # a state of other cells (here: one of them only) must not be resumed into these
        with pytest.raises(Interrupt):
            train.train_chunk(cells[:1], spec.model, spec.seed, progress=_stop_at(25), state_path=path)
        match = "saved for other cells"
    seen = _count_steps(monkeypatch)
    with pytest.warns(UserWarning, match=match):
        res = train.train_chunk(cells, spec.model, spec.seed, state_path=path)
    assert seen == list(range(1, 41))
    _assert_same(ref, res)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from zipfind.config import parse_spec
    from zipfind.sweep import run_sweep
    spec, out = parse_spec({spec!r}), sys.argv[1]
    def hook(event, f, seen=[]):
        seen.append(event)
        if event == "step" and seen.count("chunk_start") == 2 and f["step"] == 25:
            os.kill(os.getpid(), signal.SIGKILL)
    run_sweep(spec, out, device="cpu", max_models=2, progress=hook)
""")


def _metrics(run_dir):
    return zipfind.load(run_dir).metrics.sort_values(["cell", "step", "measure"]).reset_index(drop=True)


def test_sweep_killed_mid_chunk_resumes_mid_chunk(tmp_path):
    ref = tmp_path / "ref"
    run_sweep(_spec(), ref, device="cpu", max_models=2)
    out, script = tmp_path / "run", tmp_path / "killer.py"
    script.write_text(KILLER.format(spec=SPEC))
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (out / "state").iterdir()) == ["chunk-0001.pt"]
    assert torch.load(state_path(out, 1), weights_only=True)["step"] == 20
    events = []
    summary = run_sweep(_spec(), out, device="cpu", progress=lambda e, f: events.append((e, f.get("step"))))
    assert summary.ran_chunks == 1
    steps = [s for e, s in events if e == "step"]
    assert steps == list(range(21, 41))  # the killed chunk went on from its save at step 20
    a, b = _metrics(ref), _metrics(out)
    pd.testing.assert_frame_equal(a[["cell", "step", "measure"]], b[["cell", "step", "measure"]])
    np.testing.assert_allclose(a.value, b.value, rtol=1e-6, atol=1e-6)
    pd.testing.assert_frame_equal(zipfind.load(ref).onsets, zipfind.load(out).onsets)
    assert list((out / "state").iterdir()) == []  # removed once the chunk was committed
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_resume_every_changes_no_result_and_is_no_axis(tmp_path):
    spec = _spec()
    assert "resume_every" not in zipfind.store.cells_table(spec).columns
    with pytest.raises(SpecError, match=r"train.resume_every: 0 is not allowed; must be > 0"):
        parse_spec(dict(SPEC, train=dict(SPEC["train"], resume_every=0)))
    with pytest.raises(SpecError, match=r"grid.resume_every: not an axis"):
        parse_spec(dict(SPEC, grid={"resume_every": [10, 20]}))
    # a rerun with another resume_every is the same run (not "a different spec"), and the new value is kept
    out = tmp_path / "run"
    run_sweep(parse_spec(dict(SPEC, grid={"alpha": [0.0]})), out, device="cpu")
    other = parse_spec(dict(SPEC, grid={"alpha": [0.0]}, train=dict(SPEC["train"], resume_every=7)))
    assert run_sweep(other, out, device="cpu").ran_chunks == 0
    assert zipfind.load(out).spec.train.resume_every == 7
