"""Shared test helpers: the tiny sweep spec and a run's metrics in a stable order."""

import zipfind

TINY = {"name": "tiny", "task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16},
        "train": {"steps": 16, "batch": 16, "eval_every": 8, "n_probe": 32},
        "grid": {"alpha": [0.0, 1.0, 2.0], "B": [1, 2]}}


def sorted_metrics(run_dir):
    return zipfind.load(run_dir).metrics.sort_values(["cell", "step", "measure"]).reset_index(drop=True)


def tiny_run(tmp_path_factory, max_models: int):
    """A finished sweep of TINY in a fresh directory (the reference that resumed or repaired runs must equal)."""
    from zipfind.config import parse_spec
    from zipfind.sweep import run_sweep

    out = tmp_path_factory.mktemp("ref") / "run"
    run_sweep(parse_spec(TINY), out, device="cpu", max_models=max_models)
    return out
