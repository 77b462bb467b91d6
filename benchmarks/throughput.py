"""Scoring throughput of NCPL per backbone: configs/s, tokens per config, achieved GFLOP/s against a
plain matmul on the same machine, and peak memory.

    python benchmarks/throughput.py [--backbones all-minilm-l6-v2,smollm2-135m] [--n 300]

The sweep is real StepLaw and Marin configs. Throughput does not depend on the weights, so each
model is built with a zero-epoch schedule (initialised, untrained) instead of trained.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, load, machine, update_readme  # noqa: E402

from ncpl.regressor.predictor import NCPL  # noqa: E402
from ncpl.regressor.trainer import TrainConfig  # noqa: E402


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="all-minilm-l6-v2,smollm2-135m")
    parser.add_argument("--n", type=int, default=300, help="configs scored per backbone")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    runs = pd.concat([load("steplaw", args.shared / "steplaw/dense_lr_bs_loss.csv"),
                      load("marin", args.shared / "marin/marin_sweep_runs.jsonl")], ignore_index=True)
    sweep = runs.sample(args.n, replace=len(runs) < args.n, random_state=0).reset_index(drop=True)
    peak_matmul = matmul_gflops()
    rows = []
    for backbone in args.backbones.split(","):
        config = TrainConfig(backbone=backbone, stage1={"epochs": 0, "lr": 1e-3}, stage2={"epochs": 0, "lr": 1e-5}, eval_batch_size=256)
        model = NCPL(config).fit(runs)
        model.predict(sweep.head(64))  # warm-up
        start = time.perf_counter()
        model.predict(sweep)
        seconds = time.perf_counter() - start
        tokens = sum(len(model._example(row).encoded.input_ids) for row in sweep.to_dict("records")) / len(sweep)
        body = sum(p.numel() for name, p in model.networks[0].backbone.named_parameters() if "embed" not in name)
        rate = len(sweep) / seconds
        rows.append({"backbone": backbone, "configs_per_s": round(rate, 1), "tokens_per_config": round(tokens, 1),
                     "gflops": round(2 * body * tokens * rate / 1e9, 1), "matmul_gflops": round(peak_matmul, 1),
                     "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)})
        print(rows[-1], flush=True)
    header = list(rows[0])
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(str(row[k]) for k in header) + " |" for row in rows])
    body = f"Measured {datetime.date.today()} on {machine()} by `python benchmarks/throughput.py` (fp32, {args.n} configs):\n\n{table}\n"
    out = ROOT / "benchmarks" / "results"
    (out / "throughput.md").write_text(body)
    update_readme("throughput", body)
    (out / "throughput.json").write_text(json.dumps(rows, indent=1))
    print(body)


if __name__ == "__main__":
    main()
