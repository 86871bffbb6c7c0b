"""Trained models you can open: weights in the run directory, one model out of the stack, attention pictures,
TransformerLens export."""

import json
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import zipfind
from zipfind.cli import app
from zipfind.config import parse_spec
from zipfind.model import forward
from zipfind.store import RunError, read_model_file
from zipfind.sweep import run_sweep, weights_disk_bytes
from zipfind.tasks import get_task
from zipfind.train import cell_probes, checkpoint_steps

TOKENS = {"kind": "tokens", "K": 64, "V": 6, "word_len": 3, "N": 6}
CLASSIFICATION = {"K": 64, "N": 4, "L": 8, "D": 15}


def _spec(task, save="final", steps=24, **model):
    return parse_spec({"name": "w", "task": task, "model": {"d_model": 16, "heads": 2, **model},
                       "train": {"steps": steps, "batch": 8, "eval_every": 8, "n_probe": 16, "save": save},
                       "grid": {"alpha": [0.0, 1.0, 2.0]}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, task, save in (("tokens", TOKENS, "checkpoints"), ("classification", CLASSIFICATION, "final")):
        d = tmp_path_factory.mktemp(name) / "run"
        run_sweep(_spec(task, save, layernorm=name == "classification"), d, device="cpu", max_models=2)
        out[name] = d
    return out


@pytest.mark.parametrize("name", ["tokens", "classification"])
def test_one_model_out_of_the_stack_equals_the_stacked_forward(runs, name):
    run = zipfind.load(runs[name])
    spec = run.spec
    cells = spec.expand()
    stack = {k: torch.stack([run.weights(c.index)[spec.train.steps][k] for c in cells]) for k in
             run.weights(0)[spec.train.steps]}
    probes = cell_probes(spec, cells[1])
    batch = next(iter(probes.values()))
    x = batch.tokens[0]
    every = name == "tokens"
    want = forward(stack, x[None].expand(len(cells), *x.shape), spec.model, every_position=every).logits[1]
    one = run.model(1)
    assert isinstance(one, torch.nn.Module) and not any(p.shape[0] == len(cells) and p.dim() > 2 for p in
                                                        one.parameters())
    torch.testing.assert_close(one(x, every_position=every), want, rtol=0, atol=1e-6)


def test_checkpoints_round_trip_every_step_and_reproduce_the_metrics(runs):
    """Every checkpoint's weights are kept, and evaluating them on the cell's probes gives the stored metrics."""
    run = zipfind.load(runs["tokens"])
    spec = run.spec
    kept = run.weights(2)
    assert list(kept) == checkpoint_steps(spec.train.steps, spec.train.eval_every)
    cell = spec.expand()[2]
    task = get_task(cell.task)
    probes = cell_probes(spec, cell)
    for step in (0, 8, 24):
        values, _ = task.evaluate({k: v[None] for k, v in kept[step].items()}, spec.model, probes)
        stored = run.metrics.query("cell == 2 and step == @step").set_index("measure")["value"]
        for measure in ("ic_acc", "iw_loss", "induction_score", "prefix_match_L2H1"):
            assert values[measure].item() == pytest.approx(stored[measure], abs=1e-5)
    assert not torch.equal(kept[0]["q0"], kept[24]["q0"])


def test_weights_on_disk_match_the_plan_estimate(runs):
    run = zipfind.load(runs["tokens"])
    on_disk = sum((runs["tokens"] / rel).stat().st_size for c in run.manifest["chunks"]
                  for rel in c["files"] if rel.startswith("weights/"))
    est = sum(weights_disk_bytes(c, run.spec.model) for c in run.spec.expand())
    assert est <= on_disk <= est * 1.05 + 4096 * len(run.manifest["chunks"])  # safetensors header on top


def test_save_none_keeps_no_weights_and_says_so(tmp_path):
    spec = _spec(CLASSIFICATION, "none", steps=8)
    run_sweep(spec, tmp_path / "run", device="cpu")
    run = zipfind.load(tmp_path / "run")
    assert not (tmp_path / "run" / "weights").exists()
    with pytest.raises(RunError, match="keeps no weights"):
        run.model(0)


def test_wrong_step_or_cell_is_one_clear_line(runs):
    run = zipfind.load(runs["classification"])
    with pytest.raises(RunError, match=r"step: 5 is not allowed; the run kept the weights of steps 24 \(save ="):
        run.model(0, step=5)
    with pytest.raises(RunError, match=r"cell: 9 is not allowed; this run has cells 0-2"):
        run.model(9)


def test_a_killed_sweep_keeps_finished_weights_and_retrains_the_rest(tmp_path, runs):
    """Chunk 1 lost (as if killed before its commit): the rerun retrains it alone, and every weights file holds
    the uninterrupted run's tensors exactly (safetensors orders its metadata header freely, so not byte for byte)."""
    import shutil

    d = tmp_path / "run"
    shutil.copytree(runs["tokens"], d)
    manifest = json.loads((d / "manifest.json").read_text())
    before = (d / "weights" / "chunk-0000.safetensors").stat().st_mtime_ns
    manifest["chunks"][1]["status"] = "pending"
    manifest["chunks"][1].pop("files")
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "weights" / "chunk-0001.safetensors").unlink()
    summary = run_sweep(zipfind.load(d).spec, d, device="cpu", max_models=2)
    assert summary.ran_chunks == 1
    assert (d / "weights" / "chunk-0000.safetensors").stat().st_mtime_ns == before
    from safetensors.torch import load_file

    for f in ("chunk-0000.safetensors", "chunk-0001.safetensors"):
        got, want = load_file(d / "weights" / f), load_file(runs["tokens"] / "weights" / f)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_repair_keeps_chunks_whose_weights_verify(tmp_path, runs):
    import shutil

    from zipfind.sweep import repair

    d = tmp_path / "run"
    shutil.copytree(runs["tokens"], d)
    (d / "manifest.json").unlink()
    (d / "weights" / "chunk-0001.safetensors").write_bytes(b"truncated")
    manifest = repair(d, max_models=2)
    done = [c for c in manifest["chunks"] if c["status"] == "done"]
    assert [c["cells"] for c in done] == [[0, 1]] and not (d / "weights" / "chunk-0001.safetensors").exists()
    assert zipfind.load(d).model(0) is not None


def _tl():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from zipfind import interop

    return interop


def test_transformer_lens_export_of_the_token_task_equals_zipfind(runs):
    """Logits to 1e-5, and TransformerLens' own induction-head detection on Olsson's repeated tokens, restricted to
    the second copy, is zipfind's prefix-matching score (the same targets; its "mul" score divides by all T rows)."""
    interop = _tl()
    run = zipfind.load(runs["tokens"])
    spec = run.spec
    for step in (8, 24):
        tl = interop.to_hooked_transformer(run, 1, step)
        probes = cell_probes(spec, spec.expand()[1])
        toks = probes["rep"].tokens[0]
        torch.testing.assert_close(tl(toks), run.model(1, step)(toks, every_position=True), rtol=0, atol=1e-5)
        T = toks.shape[1]
        n = (T - 1) // 2
        detected = interop.induction_scores(tl, toks, rows=slice(n + 1, 2 * n + 1)) * T / n  # [layers, H]
        stored = run.metrics.query("cell == 1 and step == @step").set_index("measure")["value"]
        zf = np.array([[stored[f"prefix_match_L{l + 1}H{h + 1}"] for h in range(2)] for l in range(2)])
        np.testing.assert_allclose(detected.numpy(), zf, atol=1e-5)


def test_transformer_lens_export_of_classification_takes_content_through_the_residual_stream(runs):
    interop = _tl()
    run = zipfind.load(runs["classification"])
    tl = interop.to_hooked_transformer(run, 2)
    assert tl.cfg.normalization_type == "LN"
    x = cell_probes(run.spec, run.spec.expand()[2])["ic"].tokens[0]  # [n, T, D] content vectors
    one = run.model(2)
    with tl.hooks(fwd_hooks=interop.content_hooks(tl, x)):
        logits, cache = tl.run_with_cache(torch.zeros(x.shape[:2], dtype=torch.long))
    torch.testing.assert_close(logits[:, -1], one(x), rtol=0, atol=1e-5)
    attn = one.attention(x)  # [layers, H, b, T, T]
    for layer in range(run.spec.model.layers):
        torch.testing.assert_close(cache["pattern", layer], attn[layer].transpose(0, 1), rtol=0, atol=1e-6)


def test_export_cli_writes_files_that_load_back(runs, tmp_path):
    interop = _tl()
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(runs["tokens"]), str(tmp_path / "m.safetensors"), "--cell", "1",
                              "--step", "8"])
    assert res.exit_code == 0, res.output
    model, meta = read_model_file(tmp_path / "m.safetensors")
    run = zipfind.load(runs["tokens"])
    assert meta["step"] == 8 and meta["task"]["kind"] == "tokens" and meta["cell"] == 1
    toks = cell_probes(run.spec, run.spec.expand()[1])["ic"].tokens[0]
    torch.testing.assert_close(model(toks, every_position=True), run.model(1, 8)(toks, every_position=True))
    res = runner.invoke(app, ["export", str(runs["tokens"]), str(tmp_path / "tl.pt"), "--cell", "1", "--to",
                              "transformer-lens"])
    assert res.exit_code == 0, res.output
    saved = torch.load(tmp_path / "tl.pt", weights_only=False)
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tl = HookedTransformer(HookedTransformerConfig.from_dict(saved["cfg"]))
    tl.load_state_dict(saved["state_dict"])
    torch.testing.assert_close(tl(toks), interop.to_hooked_transformer(run, 1)(toks))
    res = runner.invoke(app, ["export", str(runs["tokens"]), str(tmp_path / "x"), "--cell", "1", "--to", "onnx"])
    assert res.exit_code == 2 and "--to: 'onnx' is not allowed" in res.output


@pytest.mark.parametrize("cell", [0, 2])  # alpha = 0 (the head can form) and alpha = 2 (censored)
def test_attention_and_heads_figures_render(runs, tmp_path, cell):
    runner = CliRunner()
    for args in (["attention", "--probe", "rep"], ["heads"]):
        out = tmp_path / f"{args[0]}-{cell}.png"
        res = runner.invoke(app, ["plot", args[0], str(runs["tokens"]), "--cell", str(cell), "-o", str(out),
                                  *args[1:]])
        assert res.exit_code == 0, res.output
        assert out.stat().st_size > 20_000
    res = runner.invoke(app, ["plot", "attention", str(runs["classification"]), "--cell", str(cell), "-o",
                              str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["plot", "attention", str(runs["classification"]), "--cell", str(cell), "--steps", "8",
                              "-o", str(tmp_path / "c.png")])
    assert res.exit_code == 2 and "step: 8 is not allowed" in res.output


def test_attention_view_marks_the_induction_targets(runs):
    run = zipfind.load(runs["tokens"])
    pa = run.attention(0, probe="rep", n=3)
    T = pa.attn.shape[-1]
    n = (T - 1) // 2
    tok = pa.tokens[0].tolist()
    assert pa.attn.shape == (2, 2, 3, T, T) and pa.labels[0][0] == "^"
    assert set(pa.targets[0]) == set(range(n + 1, 2 * n))  # every position whose target is r_2..r_n of the copy
    for q, keys in pa.targets[0].items():
        assert all(tok[k - 1] == tok[q] for k in keys) and q - n + 1 in keys
