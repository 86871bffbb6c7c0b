#!/usr/bin/env bash
# Regenerate the CPU reference results in sims/reference/ and their figures (about 50 minutes on 2 CPU cores;
# the GPU ones come from sims/gpu_check.sh). Usage: bash sims/references.sh [RUNS_DIR]
set -euo pipefail
R=${1:-runs/references}
S=sims/reference
z() { echo "+ zipfind $*" >&2; zipfind "$@"; }

z demo --out "$R/quick"  # quick sweep -> onsets -> fits -> figures
cp "$R/quick/onsets.parquet" "$S/onsets.parquet"
cp "$R/quick/fits/fits.json" "$S/fits.json"
for f in phase_diagram curves fit; do cp "$R/quick/figures/$f.png" "$S/$f.png"; done

z sweep sims/reference_engine.toml --out "$R/reference_engine" && z fit "$R/reference_engine"
cp "$R/reference_engine/onsets.parquet" "$S/reference_engine_onsets.parquet"
cp "$R/reference_engine/fits/fits.json" "$S/reference_engine_fits.json"
z sweep sims/validation.toml --out "$R/validation" && z validate "$R/validation" --fits "$R/reference_engine"
cp "$R/validation/onsets.parquet" "$S/validation_onsets.parquet"
cp "$R/validation/fits/validation.json" "$S/validation.json"

z sweep sims/tokens_quick.toml --out "$R/tokens_quick" && z fit "$R/tokens_quick"
cp "$R/tokens_quick/onsets.parquet" "$S/tokens_quick_onsets.parquet"
cp "$R/tokens_quick/fits/fits.json" "$S/tokens_quick_fits.json"
z plot phase-diagram "$R/tokens_quick" -o "$S/tokens_phase_diagram.png"
z plot curves "$R/tokens_quick" -o "$S/tokens_curves.png"
z plot attention "$R/tokens_quick" --cell 4 -o "$S/attention.png"
z plot heads "$R/tokens_quick" --cell 4 -o "$S/heads.png"
z sweep sims/tokens_one_layer.toml --out "$R/tokens_one_layer"
cp "$R/tokens_one_layer/onsets.parquet" "$S/tokens_one_layer_onsets.parquet"
z sweep sims/tokens_english.toml --out "$R/tokens_english"
cp "$R/tokens_english/onsets.parquet" "$S/tokens_english_onsets.parquet"
z plot tasks "$R/quick" "$R/tokens_quick" "$R/tokens_english" -o "$S/tasks.png"
python sims/reference_numbers.py "$R"  # the numbers the README and theory/ quote
