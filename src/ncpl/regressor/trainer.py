"""Two-stage training of the NCPL network on accelerate.

Stage 1 trains the numeric encoder and the head with the backbone frozen; stage 2 fine-tunes the
whole network, or LoRA adapters on the backbone (peft), from stage 1's best weights. AdamW, linear
warmup then linear decay, gradient clipping. After every epoch the validation MAE (final loss, in
nats) is measured, the best weights are kept, and the full training state is checkpointed, so that
running the same command again after an interruption resumes from the last finished epoch.

The same loop runs on one CPU process, several (gloo), and GPUs / nodes with DDP or FSDP under
`accelerate launch`: nothing here names a device (the fused AdamW runs on CPU, CUDA, MPS and XPU tensors and
on FSDP2's DTensors).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncpl.atomic import atomic_path
from ncpl.errors import ConfigError
from ncpl.launch import launched_processes, require_joined
from ncpl.regressor.dataset import MODEL_INPUTS, Collator, Example
from ncpl.regressor.heartbeat import Heartbeat
from ncpl.regressor.network import NCPLNetwork, loss_terms
from ncpl.regressor.precision import bf16_pays
from ncpl.regressor.train_config import StageConfig, TrainConfig


def linear_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_frac: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if launched_processes() > 1:
        raise ConfigError(
            "mixed_precision: auto decides on a CPU by timing a bf16 matmul in each process, and launched processes "
            "could decide differently; set mixed_precision to bf16 or no"
        )
    return "bf16" if bf16_pays() else "no"


# settings of the model around its networks, not of a network's training: a checkpoint resumes whatever they are (a
# member's network trains the same in an ensemble of any size)
NOT_TRAINING = {"members", "calibrate_extrapolation", "extrapolation_steps", "extrapolation_members"}


class Trainer:
    """Runs both stages for one network; `work_dir` holds checkpoints and the metrics log."""

    def __init__(
        self,
        config: TrainConfig,
        network: NCPLNetwork,
        collator: Collator,
        work_dir: str | Path,
        to_loss: Any,
        accelerator: Any = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        self.config, self.network, self.collator, self.to_loss = config, network, collator, to_loss
        self.work_dir = Path(work_dir)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=_mixed_precision(config.mixed_precision),
            log_with=config.log_with or None,
            project_config=ProjectConfiguration(project_dir=str(self.work_dir)),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            # one scheduler step an optimizer step: by default accelerate steps it once per process, which on N
            # processes would run the schedule (counted in optimizer steps) N times too fast
            step_scheduler_with_optimizer=False,
        )
        # accelerate 1.15 joins CPU processes only when told ACCELERATE_USE_CPU, and sets up FSDP only on GPUs
        require_joined(self.accelerator.num_processes, "each would train alone on all the data")
        self.progress_path = self.work_dir / "checkpoint" / "progress.json"
        self.best_path = self.work_dir / "checkpoint" / "best.safetensors"
        self.log_path = self.work_dir / "train_log.jsonl"
        self.whole_state: dict[str, torch.Tensor] | None = None  # under FSDP2: the trained weights, unsharded

    # --- the stages -----------------------------------------------------------------------------

    def fit(self, train: list[Example], val: list[Example], val_loss: np.ndarray) -> NCPLNetwork:
        """Train; returns the network holding the best weights (LoRA merged)."""
        with torch.random.fork_rng():  # seeded from `seed`; the caller's random state is left as it was
            torch.manual_seed(self.config.seed)
            return self._fit(train, val, val_loss)

    def _fit(self, train: list[Example], val: list[Example], val_loss: np.ndarray) -> NCPLNetwork:
        acc = self.accelerator
        if self.config.log_with:
            acc.init_trackers("ncpl", config=self.config.model_dump(mode="json"))
        progress = self._read_progress(_fingerprint(train, val))
        self._trim_log(progress)
        stage2 = self.config.stage2
        lora = stage2.epochs > 0 and stage2.mode == "lora"
        if lora and acc.is_fsdp2:  # before stage 1, so that no compute is spent on a run that would fail at stage 2
            raise ConfigError(
                "stage2.mode: 'lora' does not train under FSDP2 (peft adds its adapters to weights fully_shard has "
                "already sharded, and their sum mixes plain tensors with DTensors); set stage2.mode to 'full', or "
                "train LoRA under DDP"
            )
        if progress["stage"] == 1:
            self._stage(1, self.config.stage1, train, val, val_loss, progress)
            self._load_best()
            if lora:
                self._wrap_lora()
            self._save_best(self.network)  # stage 2 starts from stage 1's best, kept in stage-2 form
            progress.update(stage=2, epoch=-1)
            self._write_progress(progress)
        else:
            if lora:
                self._wrap_lora()
            if progress["epoch"] == -1:
                self._load_best()
        if stage2.epochs:
            self._stage(2, stage2, train, val, val_loss, progress)
            self._load_best()
        if lora:
            self.network.backbone = self.network.backbone.merge_and_unload()
        if acc.is_fsdp2:  # a collective: while the process group lives (NCPL.fit ends it after its last network)
            self.whole_state = self._gather_whole_state()
        return self.network

    def _trainable(self, stage: int) -> list[torch.nn.Parameter]:
        full = stage == 2 and self.config.stage2.mode == "full"
        for name, param in self.network.named_parameters():
            in_backbone = name.startswith("backbone.")
            param.requires_grad = (not in_backbone) or full or (stage == 2 and "lora_" in name)
        return [p for p in self.network.parameters() if p.requires_grad]

    def _wrap_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        stage2 = self.config.stage2
        lora = LoraConfig(r=stage2.lora_r, lora_alpha=stage2.lora_alpha, lora_dropout=0.0, target_modules="all-linear")
        self.network.backbone = get_peft_model(self.network.backbone, lora)

    def _stage(
        self,
        stage: int,
        settings: StageConfig,
        train: list[Example],
        val: list[Example],
        val_loss: np.ndarray,
        progress: dict[str, Any],
    ) -> None:
        from torch.utils.data import DataLoader

        acc, cfg = self.accelerator, self.config
        params = self._trainable(stage)
        # fused: one fused update a tensor instead of a chain of element-wise ops; on 2 CPU cores the AdamW step of
        # the 22.7M MiniLM backbone took 80 ms (about 40% of a stage-2 step), the fused one 15 ms
        optimizer = torch.optim.AdamW(
            params, lr=settings.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True
        )
        loader = DataLoader(
            train,
            batch_size=cfg.batch_size,
            shuffle=True,
            collate_fn=self.collator,
            generator=torch.Generator().manual_seed(cfg.seed + stage),
        )
        val_loader = DataLoader(val, batch_size=cfg.eval_batch_size, shuffle=False, collate_fn=self.collator)
        steps_per_epoch = math.ceil(len(train) / (cfg.batch_size * acc.num_processes))
        scheduler = linear_schedule(optimizer, max(1, settings.epochs * steps_per_epoch), settings.warmup_frac)
        network, optimizer, loader, val_loader, scheduler = acc.prepare(
            self.network, optimizer, loader, val_loader, scheduler
        )
        if progress["stage"] == stage and progress["epoch"] >= 0:
            checkpoint = self.work_dir / "checkpoint" / progress["checkpoint"]
            acc.load_state(str(checkpoint))
            acc.print(f"resumed stage {stage} after epoch {progress['epoch'] + 1} from {checkpoint}")
        for epoch in range(progress["epoch"] + 1, settings.epochs):
            started = time.perf_counter()
            network.train()
            self.network.backbone.eval()  # no dropout: a regression to a hundredth of a nat does not tolerate it
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            totals: dict[str, float] = {}
            bar = Heartbeat(
                loader,
                f"stage {stage} epoch {epoch + 1}/{settings.epochs}",
                len(loader),
                acc.print,
                enabled=acc.is_local_main_process,
            )
            for batch in bar:
                outputs = network(**{k: batch[k] for k in MODEL_INPUTS})
                terms = loss_terms(
                    outputs.float(),
                    batch["target"],
                    batch["converged"],
                    batch["is_final"],
                    batch["diverged"],
                    cfg.huber_delta,
                )
                loss = terms["huber"] + terms["pinball"] + cfg.diverge_weight * terms["diverge"]
                acc.backward(loss)
                acc.clip_grad_norm_(network.parameters(), cfg.grad_clip)  # the prepared ones: FSDP replaces them
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                for key, value in terms.items():
                    totals[key] = totals.get(key, 0.0) + float(value.detach())
                bar.set_postfix(f"loss {float(loss.detach()):.4f}")
            val_mae = self.validate(network, val_loader, val_loss)
            improved = val_mae < progress["best"]
            if improved:
                progress.update(best=val_mae, best_stage=stage)
                self._save_best(network)
            metrics = {
                "stage": stage,
                "epoch": epoch + 1,
                "val_mae": val_mae,
                "best_val_mae": progress["best"],
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(time.perf_counter() - started, 2),
                **{f"train_{k}": v / max(1, len(loader)) for k, v in totals.items()},
            }
            self._log(metrics)  # before the checkpoint: a kill in between re-runs the epoch, whose line is then trimmed
            self._checkpoint(progress, stage, epoch)
            acc.print(
                f"stage {stage} epoch {epoch + 1}/{settings.epochs}: val MAE {val_mae:.4f} (best {progress['best']:.4f})"
                f"{' *' if improved else ''} [{metrics['seconds']:.0f}s]"
            )
        self.network = acc.unwrap_model(network)
        acc.free_memory()

    @torch.no_grad()
    def validate(self, network: torch.nn.Module, val_loader: Any, val_loss: np.ndarray) -> float:
        """MAE of the predicted final loss over the validation runs that converged."""
        network.eval()
        outputs = []
        for batch in Heartbeat(
            val_loader,
            "validation",
            len(val_loader),
            self.accelerator.print,
            enabled=self.accelerator.is_local_main_process,
        ):
            out = network(**{k: batch[k] for k in MODEL_INPUTS})[:, 0].float()
            outputs.append(self.accelerator.gather_for_metrics(out))
        predicted = self.to_loss(torch.cat(outputs).cpu().numpy())
        ok = np.isfinite(val_loss)
        return float(np.abs(predicted[ok] - val_loss[ok]).mean())

    # --- state on disk --------------------------------------------------------------------------

    def _read_progress(self, data: str) -> dict[str, Any]:
        config = self.config.model_dump(mode="json", exclude=NOT_TRAINING)
        if not self.progress_path.exists():
            return {"stage": 1, "epoch": -1, "best": math.inf, "config": config, "data": data}
        progress = json.loads(self.progress_path.read_text())
        saved = {key: value for key, value in progress.get("config", {}).items() if key not in NOT_TRAINING}
        defaults = type(self.config)().model_dump(mode="json")
        # a checkpoint written before a setting existed trained as the setting's default does
        if saved != {key: value for key, value in config.items() if key in saved or value != defaults[key]}:
            raise ConfigError(
                f"{self.work_dir}: holds a checkpoint of a different training config; "
                "train into a new output folder, or delete this one to start over"
            )
        if progress.setdefault("data", data) != data:  # a checkpoint written before the fingerprint has none
            raise ConfigError(
                f"{self.work_dir}: holds a checkpoint trained on other runs (or another validation split); "
                "train into a new output folder, or delete this one to start over"
            )
        return progress

    def _write_progress(self, progress: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with atomic_path(self.progress_path) as tmp:
                tmp.write_text(json.dumps(progress))

    def _checkpoint(self, progress: dict[str, Any], stage: int, epoch: int) -> None:
        """Save the whole state into a new folder, then point progress.json at it, then drop the previous one:
        a kill at any moment leaves progress.json naming a complete checkpoint."""
        name = f"stage{stage}-epoch{epoch + 1}"
        self.accelerator.save_state(str(self.work_dir / "checkpoint" / name))
        self.accelerator.wait_for_everyone()
        previous = progress.get("checkpoint")
        progress.update(stage=stage, epoch=epoch, checkpoint=name)
        self._write_progress(progress)
        if previous and previous != name and self.accelerator.is_main_process:
            shutil.rmtree(self.work_dir / "checkpoint" / previous, ignore_errors=True)

    def _save_best(self, model: torch.nn.Module) -> None:
        from safetensors.torch import save_file

        self.accelerator.wait_for_everyone()
        state = self.accelerator.get_state_dict(model)
        if self.accelerator.is_main_process:
            with atomic_path(self.best_path) as tmp:
                save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
        self.accelerator.wait_for_everyone()

    def _gather_whole_state(self) -> dict[str, torch.Tensor]:
        """The network's weights, whole on every process (a collective under FSDP2, which leaves each a shard)."""
        from torch.distributed.tensor import DTensor

        return {
            key: (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu()
            for key, value in self.network.state_dict().items()
        }

    def _load_best(self) -> None:
        from safetensors.torch import load_file

        if not self.best_path.exists():  # no epoch ran (a schedule of zero epochs): keep the weights as they are
            return
        model, state = self.accelerator.unwrap_model(self.network), load_file(str(self.best_path))
        if self.accelerator.is_fsdp2:  # sharded parameters: each process keeps its shard of the full tensors
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=True))
        else:
            model.load_state_dict(state, strict=True)

    def _trim_log(self, progress: dict[str, Any]) -> None:
        """Drop the log lines of epochs after the last checkpoint: they run again on resume."""
        if not (self.accelerator.is_main_process and self.log_path.exists()):
            return
        done = (progress["stage"], progress["epoch"] + 1)
        log = self.read_log()
        kept = [entry for entry in log if (entry["stage"], entry["epoch"]) <= done]
        if len(kept) < len(log):
            with atomic_path(self.log_path) as tmp:
                tmp.write_text("".join(json.dumps(entry) + "\n" for entry in kept))

    def read_log(self) -> list[dict[str, Any]]:
        """The metrics of every epoch logged so far (none on the processes that do not log)."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def _log(self, metrics: dict[str, Any]) -> None:
        if self.config.log_with:
            self.accelerator.log(metrics)
        if self.accelerator.is_main_process:
            with self.log_path.open("a") as log:
                log.write(json.dumps(metrics) + "\n")


def _fingerprint(train: list[Example], val: list[Example]) -> str:
    """A hash of the examples a training reads, so that a work folder resumes only the training of the same runs."""
    digest = hashlib.sha256()
    for examples in (train, val):
        digest.update(len(examples).to_bytes(8, "little"))
        for example in examples:
            digest.update(np.asarray(example.encoded.input_ids, np.int64).tobytes())
            digest.update(np.asarray(example.encoded.num_values, np.float64).tobytes())
            digest.update(np.float64(example.target).tobytes())
    return digest.hexdigest()
