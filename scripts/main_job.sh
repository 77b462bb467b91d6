#!/usr/bin/env bash
# The main job on the bundled default data (Marin, Gadre et al., Gemstones):
#   show the runs; split them (OOD = the larger models); fit the per-source Chinchilla law;
#   train the NCPL regressor with the CPU default (configs/cpu.yaml; re-running resumes);
#   evaluate it beside Chinchilla, hparam-law and XGBoost on the held-out runs; score the OOD runs.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-runs/default}
DATA="data/marin.parquet data/gadre.parquet data/gemstones.parquet"

"$BIN/ncpl" data show $DATA
"$BIN/ncpl" data split $DATA --ood-min-params 3e8 --id-frac 0.15 --seed 0 -o "$OUT/split"
"$BIN/ncpl" fit chinchilla --train "$OUT/split/train.parquet" -o "$OUT/chinchilla"
"$BIN/ncpl" train --train "$OUT/split/train.parquet" --config configs/cpu.yaml -o "$OUT/ncpl"
"$BIN/ncpl" eval --train "$OUT/split/train.parquet" \
    --test "id=$OUT/split/id.parquet" --test "ood=$OUT/split/ood.parquet" \
    --models "chinchilla:$OUT/chinchilla,hparam-law,xgboost,xgboost-residual,xgboost-hparam-residual,ncpl:$OUT/ncpl" -o "$OUT/eval"
"$BIN/ncpl" score "$OUT/ncpl" "$OUT/split/ood.parquet" -o "$OUT/scored-ood.parquet"
