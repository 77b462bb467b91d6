"""The settings of an NCPL training job: backbone, encoder, serialization, validation split and the two stages.

One YAML file of configs/ is one `TrainConfig`; its defaults are configs/cpu.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ncpl.schema import read_config


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(ge=0)
    lr: float = Field(gt=0)
    warmup_frac: float = Field(0.1, ge=0, lt=1)


class FinetuneConfig(StageConfig):
    mode: Literal["full", "lora"] = "full"
    lora_r: int = Field(16, gt=0)
    lora_alpha: float = Field(32, gt=0)


class TrainConfig(BaseModel):
    """One YAML file of configs/: the backbone, the encoder and the schedule.

    The defaults are the CPU default, configs/cpu.yaml (a test holds the two equal), so an installed wheel and a
    checkout build the same model.
    """

    model_config = ConfigDict(extra="forbid")
    backbone: str = "all-minilm-l6-v2"
    encoder: Literal["fourier", "mlp"] = "fourier"
    # The shortest period, in decades of the value, of the Fourier encoder's sin/cos features. A larger
    # model's N lies a fraction of a decade beyond the training runs': features that turn over within
    # that fraction take values there that no training run had. Of 0.25, 1 and 2.5 decades, 1 gave the
    # best ID validation MAE (benchmarks/results/ncpl-cpu-period*.md).
    fourier_min_period: float = Field(1.0, gt=0)
    # compact: categorical values as words, one placeholder per number, the prompt (about 22 tokens a StepLaw or
    # Marin config, the field names carried by the numeric-field encoder); verbose: `name: value` lines (about 92)
    serialization: Literal["compact", "verbose"] = "compact"
    numbers_as_text: bool = Field(False, description="write the numbers as text (needs serialization: verbose)")
    max_curve_points: int = Field(16, ge=0)
    # Train the network to read a measured prefix of the run's curve too (ncpl.regressor.dataset): every target of a
    # run with a curve comes again with up to this many of its checkpoints before it; predict_curve(observed=...) then
    # conditions on them. 0: the config alone (a prefix then shifts the config's curve).
    prefix_points: int = Field(0, ge=0)
    # what the network predicts given a prefix: the target's residual, or its change from the level the prefix ended
    # at (the mean residual of its last 3 points; the network then learns how a run moves on from where it is)
    prefix_target: Literal["residual", "change"] = "residual"
    # Write, before each target, where the run's lr stands at the target's point (the lr and the mean lr so far, in
    # units of the peak; ncpl.schedules.path_fields): the shape of a schedule that its family's name and scalars do not
    # say (a multistep schedule's stages, an explicit lr array), and how far a decay has got at a curve point.
    schedule_path: bool = False
    # The law a curve point's target is the residual over: `tokens`, the residual law read at the tokens seen (the
    # final loss of a shorter run); `schedule`, the law's final loss carried back along the curve by a per-source shape
    # of the lr schedule (ncpl.laws.schedule.CurveShape, fitted on the training curves), so that the network learns a
    # level and the law the schedule's decay. The final loss's target is the same under both (and so is a model trained
    # on runs without curves, StepLaw and Marin's). Curve dev splits, seeds 42 and 43 (configs/cpu-curves.yaml; README):
    # mean curve MAE over the 11 dev rows 0.094 / 0.096 -> 0.087 / 0.081 from the config, 0.061 / 0.065 -> 0.045 / 0.024
    # given a prefix.
    curve_law: Literal["tokens", "schedule"] = "schedule"
    # Name the lr's placeholder by its optimizer (`lion lr`, not `lr`), so that its input embedding carries which
    # optimizer the lr is for (the backbone's per-token layers can then combine the two) and its range (clamp_numbers)
    # is that optimizer's. Dev splits, one network, seeds 42-44 (benchmarks/results/ncpl-cpu-dev-m1-lropt.md): better
    # in distribution (StepLaw 0.0080 -> 0.0072, Marin 0.0125 -> 0.0113), level out of it (0.0130 = 0.0130, 0.0153 ->
    # 0.0149), Marin divergence AUC unchanged. With the default's three members the gain is within a seed sd on every
    # dev split (benchmarks/results/ncpl-cpu-dev-lropt.md): off.
    lr_by_optimizer: bool = False
    # Batch 8 beat 32 on the ID validation runs at equal compute (best val MAE 0.051 vs 0.063): more steps in the
    # few epochs a CPU affords.
    batch_size: int = Field(8, gt=0)
    eval_batch_size: int = Field(128, gt=0)
    seed: int = 42
    members: int = Field(3, ge=1, description="networks trained from seeds seed .. seed+members-1, outputs averaged")
    val_frac: float = Field(0.1, gt=0, lt=1)
    # The runs that choose the checkpoint and calibrate the interval (ncpl.splits.validation_split): `random`, a
    # seeded val_frac of each source; `largest`, each source's largest model size(s) (one size: its largest D)
    # plus a seeded val_frac of the rest, the step a user takes to a larger model (the law is then fitted on
    # every run, the validation runs held out from the network only).
    val_split: Literal["largest", "random"] = "random"
    # Read a number beyond the range its field (per source) had in the training runs at the range's edge: the network's
    # residual then extrapolates flat, as a tree's does, and the law alone carries the trend to a larger model.
    # Marin dev-OOD MAE 0.0215 -> 0.0184 (seeds 42-44); no change in distribution or on StepLaw (h1024 is 0.1
    # decades beyond h960: the Fourier features barely move).
    clamp_numbers: bool = True
    # Under the `random` split no validation run lies beyond the training range, so the interval could not widen
    # there: a second network, trained without each source's largest size(s), calibrates how fast it must widen
    # per decade beyond the range (NCPL._extrapolation_slopes). It adds `extrapolation_members` networks to the
    # `members` trained (one to three by default: a third more time).
    calibrate_extrapolation: bool = True
    # How many nested steps calibrate that widening, a network each (step 2 also holds out the next largest size(s)):
    # a network's miss at a size it never saw is one draw per step. 2 was worse on the dev splits (README).
    extrapolation_steps: int = Field(1, ge=1)
    # Networks in each calibrating model, outputs averaged. One network's miss at one step is one draw (StepLaw's N slope
    # ranged 0.05-0.12 nats a decade over the test seeds); three, as the default model averages, did not steady it:
    # seed 46's slope 0.046 -> 0.053, dev coverage unchanged, 3x the calibration time (README). Stays 1.
    extrapolation_members: int = Field(1, ge=1)
    # The law whose residual the network learns: the per-source Chinchilla law, or that law with the
    # lr / batch bowl (ncpl.predictors.hparam_law), which carries the optimum's move with N and D out
    # of distribution. Chinchilla is fitted through the best run of each (N, D) group by default: a law
    # fitted through every run of an lr x batch grid sits above the frontier by an offset that changes
    # with N, and the network would carry that offset out of distribution (StepLaw: 0.013 -> 0.003 OOD bias).
    baseline: Literal["chinchilla", "hparam-law"] = "hparam-law"
    baseline_fit_on: Literal["all", "best"] = "best"
    # Hand the network what the hparam law says of each config besides its loss: its lr and batch over the optimum the
    # law puts at its source, N and D (`ncpl.predictors.hparam_law.LAW_FIELDS`), as two more numbers. Not the default:
    # on the dev splits (one network, seeds 42-44) NCPL lost in distribution and on Marin dev-OOD, tied StepLaw
    # dev-OOD, while the trees given the same fields gained (benchmarks/EXPERIMENTS.md; results/ncpl-cpu-dev-m1-law).
    law_fields: bool = False
    huber_delta: float = Field(1.0, gt=0)
    # the divergence head's BCE against the residual's Huber + pinball (configs/cpu.yaml says how 1 was chosen over 0.2)
    diverge_weight: float = Field(1.0, ge=0)
    # Where p_diverge comes from: shallow trees on the flat config (`ncpl.predictors.divergence`), or the network's
    # divergence head. Trees on the dev splits (seeds 42-44): Marin ROC-AUC 0.86 / 0.84 -> 0.96 / 0.95 (dev-ID / OOD).
    divergence: Literal["trees", "network"] = "trees"
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = Field(1.0, gt=0)
    # auto: bf16 autocast where the hardware runs it fast (a GPU that supports it, a CPU where `precision.bf16_pays`)
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    log_with: list[str] = Field(default_factory=list, description="accelerate trackers, e.g. [tensorboard]")
    # 12 + 6 epochs, chosen on the dev splits over 6 + 3 (seeds 42-44, benchmarks/results/ncpl-cpu-dev-epochs2x.md):
    # StepLaw dev MAE ID 0.0123 -> 0.0076, OOD 0.0149 -> 0.0127; Marin ID 0.0131 -> 0.0117, OOD 0.0184 -> 0.0182
    stage1: StageConfig = StageConfig(epochs=12, lr=1e-3)
    stage2: FinetuneConfig = FinetuneConfig(epochs=6, lr=5e-5)

    @model_validator(mode="after")
    def _numbers_need_names(self) -> TrainConfig:
        if self.baseline == "hparam-law" and self.baseline_fit_on != "best":
            raise ValueError(
                "baseline_fit_on: hparam-law fits its frontier through the best runs; 'all' is for chinchilla"
            )
        if self.law_fields and self.baseline != "hparam-law":
            raise ValueError("law_fields: true needs baseline: hparam-law (Chinchilla has no lr or batch optimum)")
        if self.numbers_as_text and self.serialization == "compact":
            raise ValueError("numbers_as_text: true needs serialization: verbose (compact writes no field names)")
        return self

    def encoder_options(self) -> dict[str, float | bool]:
        if self.encoder == "fourier":
            return {"min_period": self.fourier_min_period}
        return {"names": self.serialization == "compact"}  # compact writes no names: the MLP encoder must embed them

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return read_config(path, cls)
