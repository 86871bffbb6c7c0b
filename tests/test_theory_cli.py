"""zipfind theory list/show/predict and zipfind fit, through typer.testing.CliRunner on a small app holding the
theory group and the fit command, on a synthetic onsets.parquet in tmp_path."""

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from zipfind.theory import MODELS, predict_onset, simulate_onsets
from zipfind.theory.cli import app as theory_app
from zipfind.theory.cli import fit_command, validate_command

runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(theory_app, name="theory")
    app.command("fit")(fit_command)
    app.command("validate")(validate_command)
    return app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory whose onsets come from M4 (noise 0.2, budget 8000 steps): 27 cells, 9 censored."""
    d = tmp_path_factory.mktemp("run")
    grid = [(a, b) for a in np.linspace(0, 2, 9) for b in (1, 2, 4)]
    cells = pd.DataFrame([dict(cell=i, alpha=a, B=b, seed=0, K=2048, L=32, N=8, D=63, eps=0.1, p_bursty=0.9,
                               p_novel=0.0, lr=3e-3, steps=8000) for i, (a, b) in enumerate(grid)])
    onsets = simulate_onsets("M4", MODELS["M4"].defaults, cells, sigma=0.2, budget=8000.0, seed=0)
    onsets = onsets.drop(columns="true_onset").assign(estimator="threshold", measure="ic_acc")
    onsets.to_parquet(d / "onsets.parquet", index=False)
    return d


def test_list_and_show():
    app = make_app()
    res = runner.invoke(app, ["theory", "list"])
    assert res.exit_code == 0
    for name in MODELS:
        assert name in res.output
    res = runner.invoke(app, ["theory", "show", "M4"])
    assert res.exit_code == 0 and "competition with memorisation" in res.output and "theory/M4_competition.md" in res.output
    res = runner.invoke(app, ["theory", "show", "M1", "--latex"])
    assert res.exit_code == 0 and res.output.strip() == MODELS["M1"].latex


def test_predict_defaults_and_grid():
    res = runner.invoke(make_app(), ["theory", "predict", "M4", "--alpha", "0:2:5", "--B", "1,2"])
    assert res.exit_code == 0, res.output
    t = predict_onset("M4", alpha=1.0, B=2)
    assert f"{t:.1f}" in res.output
    assert res.output.count("\n") >= 10  # 5 alphas x 2 Bs rows
    res = runner.invoke(make_app(), ["theory", "predict", "M6", "--alpha", "2", "--B", "2"])
    assert res.exit_code == 0 and "never" in res.output
    res = runner.invoke(make_app(), ["theory", "predict", "M7", "--alpha", "2", "--B", "2", "--context", "distinct"])
    assert res.exit_code == 0 and f"{predict_onset('M7', alpha=2.0, B=2, context='distinct'):.1f}" in res.output
    res = runner.invoke(make_app(), ["theory", "predict", "M7", "--alpha", "2", "--B", "2", "--context", "uniq"])
    assert res.exit_code == 2 and "context" in res.output


def test_fit_writes_fits_and_predictions_and_predict_reads_them(run_dir):
    app = make_app()
    res = runner.invoke(app, ["fit", str(run_dir), "--models", "M0,M4", "--folds", "3", "--starts", "2"])
    assert res.exit_code == 0, res.output
    assert "AIC" in res.output and "M4" in res.output
    fits = json.loads((run_dir / "fits" / "fits.json").read_text())
    assert [r["model"] for r in fits] == ["M0", "M4"]
    for r in fits:
        for key in ("model", "params", "aic", "bic", "n_cells", "n_censored", "heldout_median_abs_log_err",
                    "heldout_censor_accuracy", "loglik", "k"):
            assert key in r
        assert r["n_cells"] == 27 and r["n_censored"] == 9
    m4 = fits[1]
    for name, true in {"A": 60.0, "r": 1.5}.items():  # profile intervals cover the generating values
        p = m4["params"][name]
        assert p["lo"] <= true <= p["hi"], (name, p)
    assert m4["aic"] < fits[0]["aic"]
    pred = pd.read_parquet(run_dir / "fits" / "predictions.parquet")
    assert len(pred) == 54 and set(pred.model) == {"M0", "M4"}
    for col in ("cell", "alpha", "B", "K", "N", "seed", "observed_onset", "censored", "budget", "predicted_onset",
                "heldout_predicted_onset", "fold"):
        assert col in pred.columns, col
    assert "estimator" not in pred.columns and not list((run_dir / "fits").glob(".*tmp*"))
    # theory predict --params uses the fitted record
    res = runner.invoke(app, ["theory", "predict", "M4", "--alpha", "0.5", "--B", "2", "--params",
                              str(run_dir / "fits" / "fits.json")])
    assert res.exit_code == 0, res.output
    fitted = {k: v["value"] for k, v in m4["params"].items()}
    assert f"{predict_onset('M4', fitted, alpha=0.5, B=2):.1f}" in res.output


@pytest.mark.parametrize("args,key", [
    (["fit", "{missing}"], "run_dir"),
    (["fit", "{empty}"], "onsets"),
    (["fit", "{run}", "--models", "M0,M9"], "models"),
    (["fit", "{run}", "--folds", "1"], "folds"),
    (["fit", "{run}", "--folds", "100"], "folds"),
    (["fit", "{run}", "--interval", "wald"], "interval"),
    (["theory", "show", "M9"], "model"),
    (["theory", "predict", "M4", "--alpha", "a,b", "--B", "2"], "alpha"),
    (["theory", "predict", "M4", "--alpha", "1", "--B", "-1"], "B"),
    (["theory", "predict", "M4", "--alpha", "1", "--B", "2", "--params", "{missing}"], "params"),
    (["theory", "predict", "M5", "--alpha", "1", "--B", "2", "--params", "{fits}"], "params"),
])
def test_user_errors_are_one_line_exit_2(args, key, run_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    fits = tmp_path / "fits.json"
    fits.write_text(json.dumps([{"model": "M4", "params": {"A": {"value": 60.0}, "r": {"value": 1.5}}}]))
    sub = {"{missing}": str(tmp_path / "nope"), "{empty}": str(tmp_path / "empty"), "{run}": str(run_dir),
           "{fits}": str(fits)}
    res = runner.invoke(make_app(), [sub.get(a, a) for a in args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: "), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_validate_scores_another_sweep_with_fits(run_dir, tmp_path):
    """`zipfind validate VAL --fits REF`: per-axis errors of the reference fits on unseen cells; bad input exits 2."""
    app = make_app()
    if not (run_dir / "fits" / "fits.json").is_file():
        assert runner.invoke(app, ["fit", str(run_dir), "--models", "M0,M4", "--folds", "3", "--starts", "2"]).exit_code == 0
    val = tmp_path / "val"
    val.mkdir()
    base = dict(alpha=0.5, B=2, K=2048, L=32, N=8, D=63, eps=0.1, p_bursty=0.9, p_novel=0.0, lr=3e-3, seed=0)
    cells = pd.DataFrame([base, {**base, "K": 512}, {**base, "K": 8192}, {**base, "lr": 1e-3}])
    cells.insert(0, "cell", range(len(cells)))
    onsets = simulate_onsets("M4", MODELS["M4"].defaults, cells, sigma=0.2, budget=8000.0, seed=1)
    onsets.drop(columns="true_onset").to_parquet(val / "onsets.parquet", index=False)
    res = runner.invoke(app, ["validate", str(val), "--fits", str(run_dir)])
    assert res.exit_code == 0, res.output
    out = json.loads((val / "fits" / "validation.json").read_text())
    rows = {(r["model"], r["axis"]): r for r in out["summary"]}
    assert {("M4", "K"), ("M4", "lr"), ("M4", "base"), ("M0", "all")} <= set(rows)
    assert rows[("M4", "K")]["n_cells"] == 2
    res = runner.invoke(app, ["validate", str(val), "--fits", str(tmp_path / "nope.json")])
    assert res.exit_code == 2 and "fits" in res.output
