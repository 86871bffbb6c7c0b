"""Figures and fits through the command line: files of the requested format, clear errors."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from zipfind.cli import app

runner = CliRunner()

SPEC = """
name = "fig"
[task]
K = 128
N = 4
L = 8
D = 15
[model]
d_model = 16
[train]
steps = 12
batch = 16
eval_every = 6
n_probe = 32
[grid]
alpha = [0.0, 0.5, 1.0, 1.5]
B = [1, 2]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny real run whose onsets table is replaced by synthetic onsets (tiny models never learn in 12 steps)."""
    base = tmp_path_factory.mktemp("fig")
    (base / "s.toml").write_text(SPEC)
    out = base / "run"
    assert runner.invoke(app, ["sweep", str(base / "s.toml"), "--out", str(out), "--device", "cpu"]).exit_code == 0
    o = pd.read_parquet(out / "onsets.parquet")
    rng = np.random.default_rng(0)
    t = 300 * np.exp(1.2 * o.alpha + 0.2 * np.log(o.B)) * np.exp(rng.normal(0, 0.1, len(o)))
    o["censored"] = t > 1500
    o["budget"] = 1500.0
    o["onset_step"] = np.where(o.censored, np.nan, t)
    o["onset_lo"], o["onset_hi"] = np.where(o.censored, 1500, 0.9 * t), np.where(o.censored, np.inf, 1.1 * t)
    o.to_parquet(out / "onsets.parquet")
    return out


MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


def test_fit_then_every_figure(run_dir, tmp_path):
    res = runner.invoke(app, ["fit", str(run_dir), "--models", "M0,M4", "--folds", "2"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "fits" / "fits.json").is_file() and (run_dir / "fits" / "predictions.parquet").is_file()
    for cmd, suffix in [(["plot", "phase-diagram", str(run_dir)], ".svg"),
                        (["plot", "curves", str(run_dir), "--where", "B=2"], ".pdf"),
                        (["plot", "fit", str(run_dir), "--model", "M4"], ".png")]:
        path = tmp_path / f"{cmd[1]}{suffix}"
        res = runner.invoke(app, cmd + ["-o", str(path)])
        assert res.exit_code == 0, res.output
        assert path.stat().st_size > 1000 and path.read_bytes()[:5].startswith(MAGIC[suffix])
    res = runner.invoke(app, ["plot", "phase-diagram", str(run_dir)])  # default location
    assert res.exit_code == 0 and (run_dir / "figures" / "phase_diagram.png").stat().st_size > 1000


@pytest.mark.parametrize("args,fragment", [
    (["plot", "phase-diagram", "RUN", "-o", "x.jpg"], "-o: 'x.jpg' is not allowed"),
    (["plot", "phase-diagram", "RUN", "--x", "gamma"], "--x: 'gamma' is not allowed"),
    (["plot", "phase-diagram", "RUN", "--model", "M9"], "--model: 'M9' is not allowed"),
    (["plot", "curves", "RUN", "--where", "alpha"], "--where: 'alpha' is not allowed"),
    (["plot", "fit", "/nonexistent/run"], "does not exist"),
])
def test_figure_errors(run_dir, args, fragment):
    runner.invoke(app, ["fit", str(run_dir), "--models", "M0", "--folds", "2"])
    res = runner.invoke(app, [str(run_dir) if a == "RUN" else a for a in args])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output


def test_theory_group_is_wired():
    res = runner.invoke(app, ["theory", "list"])
    assert res.exit_code == 0 and "M4" in res.output
    res = runner.invoke(app, ["theory", "predict", "M4", "--alpha", "0,2", "--B", "2"])
    assert res.exit_code == 0, res.output
