"""Scoring throughput of NCPL per backbone and inference dtype, what reduced precision does to the predictions, and
the training time per epoch of the CPU default with each serialization.

    python benchmarks/throughput.py [--backbones all-minilm-l6-v2,smollm2-135m] [--dtypes fp32,int8,bf16] [--n 600] [--members 1,3]
                                    [--model runs/bench/cpu-compact/model] [--train-fraction 0.1] [--skip scoring,...]

- scoring: each (backbone, dtype) runs in its own process (a clean peak RSS). configs/s of `predict` on a sweep of
  real StepLaw + Marin configs with an untrained model of the CPU default's members and eval batch (a zero-epoch
  schedule: throughput does not depend on the weights; every member runs every config); tokens per config as serialized, and
  as run through a member's backbone (padding in, a decoder's shared prefix once a batch); achieved GFLOP/s = 2 x the
  backbone's non-embedding parameters x tokens run by all members / s; a matmul's GFLOP/s
  in the same dtype, measured in the same process just before (int8: a dynamically quantized Linear); their ratio.
  bf16 is measured only where the CPU has bf16 units (elsewhere torch emulates it: not a setting anyone should run);
  the header says which dtype `auto` runs on this machine (`ncpl.regressor.precision.bf16_pays`).
- precision (--model, a model trained on StepLaw + Marin, e.g. by benchmarks/ncpl_accuracy.py): MAE of each dtype's
  predicted final loss against fp32's, on the validation runs carved from the test protocol's training runs (which
  decide) and, reported only, on its ID / OOD test splits (benchmarks/accuracy.py).
- training: seconds per epoch of one network of configs/cpu.yaml with each serialization, timed on one epoch of each
  stage over a seeded fraction of the StepLaw + Marin training runs and divided by that fraction (validation on 16
  runs); the default trains its `members` and a calibrating network, each an epoch of this cost.

Each run writes benchmarks/results/throughput/<date>T<time>-<CPU kind>.md / .json, with only the parts it ran.
benchmarks/results/throughput.md and README.md's throughput block are the curated summary per machine kind, kept by
hand from such files: a run on one machine kind (or a `--skip` run) must not overwrite another's rows.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, benchmarks, load, machine  # noqa: E402

from ncpl import predictors  # noqa: E402
from ncpl.atomic import write_text  # noqa: E402
from ncpl.columns import usable  # noqa: E402
from ncpl.regressor.precision import bf16_matmul_speedup, cpu_features, resolve  # noqa: E402
from ncpl.regressor.predictor import NCPL  # noqa: E402
from ncpl.regressor.train_config import TrainConfig  # noqa: E402
from ncpl.report import markdown_table  # noqa: E402
from ncpl.splits import split_runs  # noqa: E402

CPU_DEFAULT = ROOT / "configs" / "cpu.yaml"
MAX_SHIFT = 0.0005  # nats: the most a reduced precision may move the MAE and still be on by default


def matmul_gflops(dtype: str, size: int = 1024, seconds: float = 2.0) -> float:
    """GFLOP/s of a size x size x size product in `dtype` on this process's threads."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    if dtype == "int8":
        linear = torch.ao.nn.quantized.dynamic.Linear(size, size)
        linear.set_weight_bias(torch.quantize_per_tensor(b, 0.05, 0, torch.qint8), None)
        product = lambda: linear(a)  # noqa: E731
    else:
        if dtype == "bf16":
            a, b = a.bfloat16(), b.bfloat16()
        product = lambda: a @ b  # noqa: E731
    product()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        product()
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def sweep_runs(shared: Path) -> pd.DataFrame:
    return pd.concat(
        [
            load("steplaw", shared / "steplaw/dense_lr_bs_loss.csv"),
            load("marin", shared / "marin/marin_sweep_runs.jsonl"),
        ],
        ignore_index=True,
    )


def score_one(backbone: str, dtype: str, n: int, shared: Path, members: int | None = None) -> dict:
    """One (backbone, dtype) row of the scoring table; runs in a process of its own. `members`: the networks the
    model averages (default: the CPU default's)."""
    runs = sweep_runs(shared)
    sweep = runs.sample(n, replace=len(runs) < n, random_state=0).reset_index(drop=True)
    config = TrainConfig.model_validate(
        {
            **TrainConfig.from_yaml(CPU_DEFAULT).model_dump(),
            "backbone": backbone,
            **({"members": members} if members else {}),
            "stage1": {"epochs": 0, "lr": 1e-3},
            "stage2": {"epochs": 0, "lr": 1e-5},
        }
    )
    model = NCPL(config, inference_dtype=dtype).fit(runs)
    tokens_run = []
    hook = lambda module, args, kwargs: tokens_run.append(kwargs["inputs_embeds"].shape[:2].numel())  # noqa: E731
    for network in model._inference_networks():  # int8 / bf16: copies
        network.backbone.register_forward_pre_hook(hook, with_kwargs=True)
    members = len(model.networks_)
    model.predict(sweep.head(64))  # warm-up (and the reduced-precision copy made)
    peak_matmul = matmul_gflops(dtype)
    tokens_run.clear()
    start = time.perf_counter()
    model.predict(sweep)
    seconds = time.perf_counter() - start
    tokens = np.mean([len(model._example(row).encoded.input_ids) for row in sweep.to_dict("records")])
    body = sum(p.numel() for name, p in model.networks_[0].backbone.named_parameters() if "embed" not in name)
    achieved = 2 * body * sum(tokens_run) / seconds / 1e9
    return {
        "backbone": backbone,
        "dtype": dtype,
        "configs_per_s": round(n / seconds, 1),
        "batch": model.config.eval_batch_size,
        "tokens_per_config": round(float(tokens), 1),
        "members": members,
        "tokens_run_per_config": round(sum(tokens_run) / n / members, 1),
        "gflops": round(achieved, 1),
        "matmul_gflops": round(peak_matmul, 1),
        "roofline_frac": round(achieved / peak_matmul, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "threads": torch.get_num_threads(),
        "cpu_flags": cpu_features().flags(),
    }


def precision_shift(model_dir: Path, dtypes: list[str], shared: Path) -> list[dict]:
    """MAE of the predicted final loss per dtype, and its shift from fp32's, on the validation runs and test splits."""
    model = predictors.load_predictor(model_dir)
    splits = benchmarks(shared)
    train = pd.concat([splits["steplaw"][0], splits["marin"][0]], ignore_index=True)
    sets = {
        "validation": split_runs(train, id_frac=model.config.val_frac, seed=model.config.seed).id,
        **splits["steplaw"][1],
        **splits["marin"][1],
    }
    rows = []
    for name, runs in sets.items():
        runs = runs[usable(runs)]
        loss = runs["final_loss"].to_numpy(float)
        predicted = {}
        for dtype in ["fp32", *[d for d in dtypes if d != "fp32"]]:
            model.inference_dtype = dtype
            start = time.perf_counter()
            predicted[dtype] = model.predict(runs)
            seconds = time.perf_counter() - start
            mae = float(np.abs(predicted[dtype] - loss).mean())
            fp32_mae = float(np.abs(predicted["fp32"] - loss).mean())
            rows.append(
                {
                    "split": name,
                    "dtype": dtype,
                    "n": len(runs),
                    "mae": round(mae, 5),
                    "mae_shift": round(mae - fp32_mae, 5),
                    "mean_abs_change": round(float(np.abs(predicted[dtype] - predicted["fp32"]).mean()), 5),
                    "seconds": round(seconds, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def epoch_seconds(serialization: str, mixed_precision: str, fraction: float, shared: Path) -> dict:
    """Seconds per epoch of each stage of one network of configs/cpu.yaml, from one epoch on `fraction` of the
    training runs (the default trains `members` networks and a calibrating one, each alike)."""
    splits = benchmarks(shared)
    train = pd.concat([splits["steplaw"][0], splits["marin"][0]], ignore_index=True)
    subset = train.sample(frac=fraction, random_state=0)
    val = train.drop(subset.index).sample(16, random_state=0)
    config = TrainConfig.from_yaml(CPU_DEFAULT)
    config = TrainConfig.model_validate(
        {
            **config.model_dump(),
            "serialization": serialization,
            "mixed_precision": mixed_precision,
            "members": 1,
            "calibrate_extrapolation": False,
            "stage1": {**config.stage1.model_dump(), "epochs": 1},
            "stage2": {**config.stage2.model_dump(), "epochs": 1},
        }
    )
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # one process, several settings: accelerate keeps the first mixed_precision
    with tempfile.TemporaryDirectory() as work:
        NCPL(config, work_dir=work).fit(subset, val=val)
        log = [json.loads(line) for line in (Path(work) / "train_log.jsonl").read_text().splitlines()]
    seconds = {entry["stage"]: entry["seconds"] for entry in log}
    return {
        "serialization": serialization,
        "mixed_precision": mixed_precision,
        "train_runs": len(subset),
        "fraction": fraction,
        "stage1_epoch_s": round(seconds[1] / fraction, 1),
        "stage2_epoch_s": round(seconds[2] / fraction, 1),
    }


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="all-minilm-l6-v2,smollm2-135m")
    parser.add_argument("--dtypes", default="fp32,int8,bf16", help="bf16 only where the CPU has bf16 units")
    parser.add_argument("--n", type=int, default=600, help="configs scored per backbone and dtype")
    parser.add_argument("--model", type=Path, default=None, help="a trained CPU-default model: measure the MAE shift")
    parser.add_argument("--train-fraction", type=float, default=0.1, help="share of the training runs timed per epoch")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: scoring, precision, training")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--members", default=None, help="networks per model, comma-separated (default: the CPU default's), e.g. 1,3"
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # backbone:dtype:members, in a child process
    args = parser.parse_args()
    if args.one:
        backbone, dtype, members = args.one.split(":")
        row = score_one(backbone, dtype, args.n, args.shared, int(members) or None)
        print("RESULT " + json.dumps(row), flush=True)
        return
    skip = set(filter(None, args.skip.split(",")))
    features = cpu_features()
    dtypes = [d for d in args.dtypes.split(",") if d != "bf16" or features.bf16_units]
    speedup = f"bf16 matmul {bf16_matmul_speedup():.2f}x fp32, " if features.bf16_units else ""
    sections = [
        f"Measured {datetime.date.today()} on {machine()} ({features.flags()}; {speedup}`auto` runs "
        f"{resolve('auto')}) by `python benchmarks/throughput.py {' '.join(sys.argv[1:])}`."
    ]
    results = {}
    if "scoring" not in skip:
        rows = []
        for backbone, dtype, members in itertools.product(
            args.backbones.split(","), dtypes, (args.members or "0").split(",")
        ):
            command = [
                sys.executable,
                __file__,
                "--one",
                f"{backbone}:{dtype}:{members}",
                "--n",
                str(args.n),
                "--shared",
                str(args.shared),
            ]
            before = load_average()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"{backbone} {dtype} failed:\n{done.stderr[-3000:]}")
            rows.append({**json.loads(lines[-1][7:]), "load_avg": f"{before} / {load_average()}"})
            print(rows[-1], flush=True)
        results["scoring"] = rows
        sections.append(
            f"Scoring {args.n} StepLaw + Marin configs (`predict` at configs/cpu.yaml's batch, compact serialization; load "
            f"average 1/5/15 min before / after each row):\n\n{markdown_table(rows)}"
        )
    if args.model and "precision" not in skip:
        rows = precision_shift(args.model, args.dtypes.split(","), args.shared)
        results["precision"] = rows
        sections.append(
            f"Predicted final loss of {args.model} per inference dtype (bf16 in software where the CPU has "
            f"no bf16 units: the numbers, not the speed); `auto` may pick a dtype only if its |MAE shift| "
            f"stays under {MAX_SHIFT} on the validation runs:\n\n{markdown_table(rows)}"
        )
    if "training" not in skip:
        before = load_average()
        # bf16 autocast only where the CPU has bf16 units (emulated elsewhere: many times slower)
        settings = [("verbose", "no"), ("compact", "no")] + [("compact", "bf16")] * features.bf16_units
        rows = [epoch_seconds(s, m, args.train_fraction, args.shared) for s, m in settings]
        for row in rows:
            row["speedup"] = round(
                (rows[0]["stage1_epoch_s"] + rows[0]["stage2_epoch_s"])
                / (row["stage1_epoch_s"] + row["stage2_epoch_s"]),
                2,
            )
        results["training"] = rows
        sections.append(
            f"Training configs/cpu.yaml (`mixed_precision`: `no` = fp32, `bf16` = autocast): seconds per epoch, timed on one epoch of each stage over "
            f"{args.train_fraction:.0%} of the training runs and divided by it (load average {before} / "
            f"{load_average()}):\n\n{markdown_table(rows)}"
        )
    body = "\n\n".join(sections) + "\n"
    kind = "amx" if features.amx else "avx512_bf16" if features.avx512_bf16 else features.capability.lower()
    stem = ROOT / "benchmarks" / "results" / "throughput" / f"{datetime.datetime.now():%Y-%m-%dT%H%M}-{kind}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text(stem.with_suffix(".md"), body)
    write_text(
        stem.with_suffix(".json"),
        json.dumps({"meta": {"argv": sys.argv[1:], "cpu": features.flags()}, **results}, indent=1),
    )
    print(body)
    print(f"written to {stem.relative_to(ROOT)}.md / .json")


if __name__ == "__main__":
    main()
