"""The benchmark compares equal work: FLOP count by hand, identical loss trajectories, and a parseable --json."""

import json

import pytest
import torch
from typer.testing import CliRunner

from zipfind.bench import forward_macs, make_loop, step_flops
from zipfind.cli import app
from zipfind.config import ModelConfig, parse_spec
from zipfind.train import setup_chunk, train_step

TINY = {"task": {"K": 64, "N": 2, "L": 4, "D": 3}, "model": {"d_model": 4},
        "train": {"batch": 8, "steps": 4, "eval_every": 2, "n_probe": 8}, "grid": {"alpha": [0.0, 1.5], "B": [1, 2]}}


def test_flop_count_matches_a_hand_count():
    # T = 5, D = 3, d = 4, L = 4, two layers:
    # embedding 5*3*4 = 60; layer 1: 4*5*4*4 + 2*5*5*4 = 320 + 200 = 520;
    # last layer: K,V 2*5*4*4 = 160, Q,O 2*4*4 = 32, query row scores + mixing 2*5*4 = 40; readout 4*4 = 16
    assert forward_macs(ModelConfig(d_model=4), N=2, D=3, L=4) == 60 + 520 + 160 + 32 + 40 + 16
    spec = parse_spec(TINY)
    assert step_flops(spec.model, spec.expand()[0]) == 6 * 8 * 828
    # MLP readout (h = 5): d*h + h*h + h*L = 20 + 25 + 20 instead of 16
    assert forward_macs(ModelConfig(d_model=4, readout="mlp", mlp_hidden=5), N=2, D=3, L=4) == 828 - 16 + 65


def test_loop_baseline_follows_the_stacked_trajectory():
    spec = parse_spec({**TINY, "task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16, "heads": 2},
                       "train": {"batch": 16, "steps": 4, "eval_every": 2, "lr": 1e-2}})
    cells = spec.expand()
    chunk = setup_chunk(cells, spec.model, spec.seed)
    loop = make_loop(cells, spec.model, spec.seed, chunk)
    for step in range(1, 9):
        stacked = train_step(chunk, step)
        looped = torch.stack(loop.step())
        torch.testing.assert_close(stacked, looped, rtol=1e-4, atol=1e-5)


def test_token_task_peers_follow_the_stacked_trajectory():
    """The token task's loop and vmap peers (token embedding, every position read out) take the stacked steps."""
    from zipfind.bench import make_vmap

    spec = parse_spec({"name": "t", "task": {"kind": "tokens", "K": 64, "V": 6, "word_len": 3, "N": 6},
                       "model": {"d_model": 16, "heads": 2}, "train": {"batch": 8, "steps": 4, "eval_every": 2,
                                                                      "lr": 1e-2}, "grid": {"alpha": [0.0, 1.0]}})
    cells = spec.expand()
    chunk = setup_chunk(cells, spec.model, spec.seed)
    loop = make_loop(cells, spec.model, spec.seed, chunk)
    ens = make_vmap(make_loop(cells, spec.model, spec.seed, chunk), cells, spec.model, spec.seed, chunk.data_seeds.device)
    for step in range(1, 7):
        stacked = train_step(chunk, step)
        torch.testing.assert_close(stacked, torch.stack(loop.step()), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stacked, ens.step(), rtol=1e-4, atol=1e-5)
    T, V = 1 + 6 * 4, 6 + 3  # BOS + 6 words of 3 letters and a separator; letters + SEP, BOS, PAD
    assert step_flops(spec.model, cells[0]) == 6 * 8 * (2 * (4 * T * 16 * 16 + 2 * T * T * 16) + T * 16 * V)


def test_vmap_ensemble_follows_the_stacked_trajectory():
    """PyTorch's ensembling recipe on the same weights and data takes the same steps as the stacked engine."""
    from zipfind.bench import make_vmap

    spec = parse_spec({**TINY, "task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16, "heads": 2},
                       "train": {"batch": 16, "steps": 4, "eval_every": 2, "lr": 1e-2}})
    cells = spec.expand()
    chunk = setup_chunk(cells, spec.model, spec.seed)
    ens = make_vmap(make_loop(cells, spec.model, spec.seed, chunk), cells, spec.model, spec.seed, chunk.data_seeds.device)
    for step in range(1, 9):
        torch.testing.assert_close(train_step(chunk, step), ens.step(), rtol=1e-4, atol=1e-5)


def test_bench_json_has_every_field(tmp_path, monkeypatch):
    """Through the CLI, with a fake clock (the records' arithmetic is checked, not this machine's speed): a
    stacked step of M models costs 20 ms, drawing its data 5 ms, a loop step (the M models one by one) 10 ms, a
    vmap-ensemble step 40 ms."""
    import zipfind.bench

    cost = {"stacked": 0.020, "sampling": 0.005, "looped": 0.010, "vmapped": 0.040}
    monkeypatch.setattr(zipfind.bench, "_timed", lambda fn, device, n: n * cost[fn.__name__])
    spec = tmp_path / "b.toml"
    spec.write_text('name = "b"\n[task]\nK = 64\nN = 2\nL = 4\nD = 3\n[model]\nd_model = 4\n'
                    '[train]\nbatch = 8\nsteps = 4\neval_every = 2\nn_probe = 8\n')
    res = CliRunner().invoke(app, ["bench", "--config", str(spec), "--models", "1,2", "--device", "cpu",
                                   "--repeats", "1", "--json"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    assert [r["M"] for r in records] == [1, 2]
    fields = {"config", "device", "M", "stacked_model_steps_per_s", "loop_model_steps_per_s", "ratio",
              "vmap_model_steps_per_s", "ratio_vs_vmap", "achieved_gflops", "peak_gflops", "peak_fraction",
              "data_share", "peak_mem_per_model_mb"}
    for r in records:
        assert fields <= set(r)
        M = r["M"]
        assert r["stacked_model_steps_per_s"] == pytest.approx(M / 0.020)
        assert r["loop_model_steps_per_s"] == pytest.approx(M / 0.010)
        assert r["ratio"] == pytest.approx(0.010 / 0.020)
        assert r["vmap_model_steps_per_s"] == pytest.approx(M / 0.040) and r["ratio_vs_vmap"] == pytest.approx(2.0)
        assert r["data_share"] == pytest.approx(0.005 / 0.020)  # data time over step time
        assert r["achieved_gflops"] == pytest.approx(M / 0.020 * r["flops_per_model_step"] / 1e9)
        assert r["peak_gflops"] > 0 and r["stacked_spread"] == 0.0
        assert r["peak_mem_per_model_mb"] != r["peak_mem_per_model_mb"]  # NaN on a CPU: no allocator record


def test_profile_splits_a_step_into_its_labelled_phases():
    from zipfind.bench import PHASES, profile_phases

    spec = parse_spec({**TINY, "task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16}})
    chunk = setup_chunk(spec.expand(), spec.model, spec.seed)
    step = [0]

    def stacked():
        step[0] += 1
        train_step(chunk, step[0])

    shares = profile_phases(stacked, chunk.data_seeds.device, n=3)
    assert set(shares) == {*PHASES, "other"}
    assert all(shares[ph] > 0 for ph in PHASES) and sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
