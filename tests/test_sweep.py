"""Sweeps: chunking invariance, kill-and-resume, atomic files, Ray = local, zipfind.load round trip."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import zipfind
from conftest import TINY, sorted_metrics, tiny_run
from zipfind.config import parse_spec
from zipfind.store import RunError
from zipfind.sweep import plan_chunks, run_sweep

SPEC = TINY


_metrics = sorted_metrics


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return tiny_run(tmp_path_factory, max_models=6)


def test_plan_chunks_groups_by_shape():
    raw = dict(SPEC, grid={"alpha": [0.0, 1.0], "N": [4, 8]})
    spec = parse_spec(raw)
    chunks = plan_chunks(spec.expand(), spec.model, 3)
    cells = spec.expand()
    assert sorted(i for c in chunks for i in c) == list(range(4))
    for c in chunks:
        assert len({cells[i].task.N for i in c}) == 1


@pytest.mark.parametrize("max_models", [1, 4])
def test_results_do_not_depend_on_chunking(reference, tmp_path, max_models):
    out = tmp_path / "run"
    summary = run_sweep(parse_spec(SPEC), out, device="cpu", max_models=max_models)
    assert summary.n_chunks == -(-6 // max_models)
    a, b = _metrics(reference), _metrics(out)
    pd.testing.assert_frame_equal(a[["cell", "step", "measure"]], b[["cell", "step", "measure"]])
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)
    oa, ob = zipfind.load(reference).onsets, zipfind.load(out).onsets
    pd.testing.assert_frame_equal(oa, ob, check_exact=False, rtol=1e-4)


def test_load_round_trip(reference):
    run = zipfind.load(reference)
    assert run.spec.to_dict() == parse_spec(SPEC).to_dict()
    assert list(run.cells.columns[:1]) == ["cell"] and {"alpha", "B", "K", "lr", "seed"} <= set(run.cells.columns)
    assert len(run.cells) == 6 and list(run.metrics.columns) == ["cell", "step", "measure", "value"]
    assert set(run.onsets.cell) == set(range(6))
    assert {"onset_step", "onset_lo", "onset_hi", "censored", "budget", "induction_step"} <= set(run.onsets.columns)
    ic = run.ic_correct()
    assert set(ic) == set(range(6)) and ic[0].shape == (run.metrics.step.nunique(), 32)
    m = json.loads((reference / "manifest.json").read_text())
    assert m["n_cells"] == 6 and all(c["status"] == "done" for c in m["chunks"])
    assert {"zipfind", "torch", "python", "device"} <= set(m)


def test_rerun_skips_finished_chunks_and_refuses_a_changed_spec(reference, tmp_path):
    before = _metrics(reference)
    summary = run_sweep(parse_spec(SPEC), reference, device="cpu")
    assert summary.ran_chunks == 0 and summary.skipped_chunks == summary.n_chunks
    pd.testing.assert_frame_equal(before, _metrics(reference))
    changed = dict(SPEC, train=dict(SPEC["train"], lr=1e-2))
    with pytest.raises(RunError, match="different spec"):
        run_sweep(parse_spec(changed), reference, device="cpu")
    pd.testing.assert_frame_equal(before, _metrics(reference))  # nothing lost


def test_missing_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        zipfind.load(tmp_path / "nope")


KILLER = textwrap.dedent("""
    import os, signal, sys
    from zipfind.config import parse_spec
    from zipfind.sweep import run_sweep
    spec, out, when = parse_spec({spec!r}), sys.argv[1], sys.argv[2]
    def hook(event, f, seen=[]):
        seen.append(event)
        if when == "after_commit" and event == "chunk_done":
            os.kill(os.getpid(), signal.SIGKILL)
        if when == "mid_chunk" and event == "step" and seen.count("chunk_start") == 2 and f["step"] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    run_sweep(spec, out, device="cpu", max_models=2, progress=hook)
""")


@pytest.mark.parametrize("when", ["after_commit", "mid_chunk"])
def test_killed_sweep_resumes_to_identical_results(reference, tmp_path, when):
    out = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(spec=SPEC))
    proc = subprocess.run([sys.executable, str(script), str(out), when], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    files = sorted(p.name for p in (out / "metrics").iterdir())
    assert files == ["chunk-0000.npz", "chunk-0000.parquet"]  # the killed chunk left nothing visible
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["status"] for c in manifest["chunks"]] == ["done", "pending", "pending"]
    summary = run_sweep(parse_spec(SPEC), out, device="cpu")
    assert summary.ran_chunks == 2
    a, b = _metrics(reference), _metrics(out)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_ray_executor_equals_local(reference, tmp_path):
    if os.environ.get("ZIPFIND_CI") or os.environ.get("CI"):
        import ray  # noqa: F401  (CI installs the [ray] extra: a missing ray is a failure there, not a skip)
    else:
        pytest.importorskip("ray", reason="the [ray] extra is not installed (CI installs it and runs this test)")
    out = tmp_path / "run"
    run_sweep(parse_spec(SPEC), out, device="cpu", executor="ray", max_models=3)
    a, b = _metrics(reference), _metrics(out)
    pd.testing.assert_frame_equal(a[["cell", "step", "measure"]], b[["cell", "step", "measure"]])
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)


def test_force_starts_over_without_stale_results(tmp_path):
    spec = parse_spec(dict(SPEC, grid={"alpha": [0.0]}))
    out = tmp_path / "run"
    run_sweep(spec, out, device="cpu")
    (out / "fits").mkdir()
    (out / "fits" / "fits.json").write_text("[]")  # a fit of the old spec
    changed = parse_spec(dict(SPEC, grid={"alpha": [1.0]}))
    run_sweep(changed, out, device="cpu", force=True)
    run = zipfind.load(out)
    assert run.fits is None and list(run.onsets.alpha) == [1.0]
    assert run.spec.to_dict() == changed.to_dict()


def test_a_run_of_another_data_stream_is_not_resumed(tmp_path):
    """A run directory trained by zipfind < 0.4 (no data_stream in its manifest: one torch generator per model)
    is refused rather than completed with other draws; --force starts it over under this stream."""
    spec = parse_spec(dict(SPEC, grid={"alpha": [0.0, 1.0]}))
    out = tmp_path / "run"
    run_sweep(spec, out, device="cpu", max_models=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data_stream"] == "philox4x32-10"
    del manifest["data_stream"]
    manifest["chunks"][1]["status"] = "pending"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="zipfind < 0.4.*would mix streams"):
        run_sweep(spec, out, device="cpu", max_models=1)
    assert not json.loads((out / "manifest.json").read_text()).get("data_stream")  # nothing changed
    summary = run_sweep(spec, out, device="cpu", max_models=1, force=True)
    assert summary.ran_chunks == 2
    assert json.loads((out / "manifest.json").read_text())["data_stream"] == "philox4x32-10"


def test_old_run_directory_loads_and_resumes_under_its_own_law(tmp_path):
    """A spec.toml without the context key (made before it existed) reads as "distinct" and resumes as such:
    the resumed chunks equal a fresh "distinct" sweep's, not an "iid" one's."""
    from zipfind.config import dump_toml

    grid = {"alpha": [2.0], "B": [1, 2]}
    legacy = tmp_path / "old"
    spec_iid = parse_spec(dict(SPEC, grid=grid))
    spec_distinct = parse_spec(dict(SPEC, grid=grid, task=dict(SPEC["task"], context="distinct")))
    run_sweep(spec_distinct, legacy, device="cpu", max_models=1)
    # make it an old directory: no context key in spec.toml, one chunk not yet trained
    d = spec_distinct.to_dict()
    del d["task"]["context"]
    (legacy / "spec.toml").write_text(dump_toml(d))
    manifest = json.loads((legacy / "manifest.json").read_text())
    manifest["chunks"][1]["status"] = "pending"
    (legacy / "metrics" / "chunk-0001.parquet").unlink()
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    assert zipfind.load(legacy).spec.task.context == "distinct"
    summary = run_sweep(spec_iid, legacy, device="cpu", max_models=1)  # the user's spec has no context key
    assert summary.ran_chunks == 1
    assert "context = \"distinct\"" in (legacy / "spec.toml").read_text()
    fresh_d, fresh_i = tmp_path / "d", tmp_path / "i"
    run_sweep(spec_distinct, fresh_d, device="cpu", max_models=2)
    run_sweep(spec_iid, fresh_i, device="cpu", max_models=2)
    a, b, c = _metrics(legacy), _metrics(fresh_d), _metrics(fresh_i)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.value, c.value, rtol=1e-3)
    # an old onsets.parquet (no context column) gains the law its run was made with
    old_onsets = pd.read_parquet(legacy / "onsets.parquet").drop(columns="context")
    old_onsets.to_parquet(legacy / "onsets.parquet", index=False)
    assert set(zipfind.load(legacy).onsets["context"]) == {"distinct"}


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from zipfind.cli import app
    from zipfind.config import dump_toml

    spec = tmp_path / "tiny.toml"
    spec.write_text(dump_toml(TINY))
    res = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "run"), "--device", "cpu",
                                   "--max-models", "4", "--threads", "1", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "run").exists()
    lines = res.output.splitlines()
    assert lines[0].startswith("plan: 6 cells in 2 chunks of up to 4 models on cpu, 1 threads")
    assert "MB per model measured" in res.output and "chunk 1: 2 cells (4..5)" in res.output


def test_plan_measures_memory_below_the_upper_bound_and_counts_evaluation(tmp_path):
    from zipfind.sweep import plan_sweep

    spec = parse_spec(SPEC)
    plan = plan_sweep(spec, tmp_path / "run", device="cpu", max_models=6)
    assert 0 < plan["bytes_per_model"] * plan["max_models"] < plan["chunk_bytes"]
    assert plan["est_s"] == pytest.approx(plan["train_s"] + plan["eval_s"]) and plan["eval_s"] > 0
    assert plan["plan"] == [list(range(6))] and not (tmp_path / "run").exists()


def test_available_cores_follow_the_affinity_mask():
    from zipfind.sweep import available_cores

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this platform")
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert available_cores() == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert available_cores() <= len(mask)
