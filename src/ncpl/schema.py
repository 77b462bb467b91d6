"""One typed description of a pretraining run.

`RunConfig` is everything a run was configured with; `RunRecord` adds what came out of it. Both
validate on construction: a bad value raises `ConfigError` naming the field, the value and what was
expected. `to_flat` / `from_flat` give the dotted-key view (``model.n_params``, ``optimizer.lr``)
that Parquet files and tabular models use. The field types are in `ncpl.field_types`, the error messages
in `ncpl.validation`, the helpers of the flat view in `ncpl.flat`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ncpl.atomic import atomic_path
from ncpl.errors import ConfigError
from ncpl.field_types import Beta, Count, NonNegative, Positive, PositiveInt, Ratio, Scalar, check_scalar
from ncpl.flat import SCHEDULE_LR, present, to_python, unflatten
from ncpl.validation import did_you_mean, nested_model, validate

# --- optimizers ---------------------------------------------------------------------------------

OPTIMIZERS = (
    "adamw",
    "adam",
    "nadamw",
    "adam-mini",
    "lion",
    "muon",
    "soap",
    "sophia",
    "kron",
    "scion",
    "mars",
    "cautious",
    "shampoo",
    "adafactor",
    "lamb",
    "sgd",
    "signum",
)
_OPTIMIZER_ALIASES = {
    "adam_w": "adamw",
    "adamw_torch": "adamw",
    "adamwscheduled": "adamw",
    "decoupled_adamw": "adamw",
    "nadam": "nadamw",
    "mini": "adam-mini",
    "adammini": "adam-mini",
    "adam_mini": "adam-mini",
    "soape": "soap",
    "sophiah": "sophia",
    "sophia-h": "sophia",
    "psgd-kron": "kron",
    "psgd_kron": "kron",
    "cautious-adamw": "cautious",
    "c-adamw": "cautious",
}


def normalize_optimizer(name: str) -> str:
    key = name.strip().lower()
    key = _OPTIMIZER_ALIASES.get(key, key)
    if key not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)} (aliases: {', '.join(sorted(_OPTIMIZER_ALIASES))})"
        )
    return key


# --- the configuration --------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Section):
    n_params: Count = Field(description="non-embedding parameters (total, for MoE)")
    n_params_total: Count | None = Field(None, description="parameters including embeddings")
    n_params_active: Count | None = Field(None, description="parameters active per token (MoE)")
    d_model: PositiveInt | None = None
    n_layers: PositiveInt | None = None
    n_heads: PositiveInt | None = None
    d_ff: PositiveInt | None = None
    vocab_size: PositiveInt | None = None
    seq_len: PositiveInt | None = None
    arch: Literal["dense", "moe"] = "dense"
    n_experts: PositiveInt | None = None
    top_k: PositiveInt | None = None

    @model_validator(mode="after")
    def _moe_fields(self) -> ModelSpec:
        if self.arch == "dense" and (self.n_experts or 0) > 1:
            raise ValueError(f"model.n_experts={self.n_experts} needs model.arch='moe'")
        return self


class DataSpec(_Section):
    tokens: Count = Field(description="training tokens")
    dataset: str | None = None


# The optimizer-specific fields each optimizer's real runs carry (data/*.parquet: Marin's hyperparameters, Gadre's
# z_loss and qk_norm). Any other optimizer field is refused as a likely typo (`lrr`); a field of your own goes
# under the top-level `extra` section, which every predictor reads as it reads the rest of the config.
OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "adamw": ("nesterov", "qk_norm", "z_loss"),
    "nadamw": ("nesterov",),
    "adam-mini": ("nesterov",),
    "muon": ("decay", "momentum", "muon_epsilon", "muon_to_adam_lr"),
    "scion": ("decay", "momentum", "scion_epsilon", "scion_to_signum_lr"),
    "kron": (
        "block_size",
        "normalize_grads",
        "partition_grads_into_blocks",
        "preconditioner_init_scale",
        "preconditioner_lr",
        "preconditioner_update_probability",
        "update_prob_flat_start",
    ),
    "soap": ("block_size", "partition_grads_into_blocks", "precondition_frequency", "shampoo_beta"),
    "mars": ("gamma",),
    "sophia": ("gamma",),
}


class OptimizerSpec(BaseModel):
    """Common optimizer fields, and the optimizer-specific ones its real runs carry (`OPTIMIZER_FIELDS`)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "adamw"
    lr: Positive | None = Field(None, description="the peak learning rate (the schedule scales it)")
    beta1: Beta | None = Field(None, description="decay of the first-moment (momentum) average")
    beta2: Beta | None = Field(None, description="decay of the second-moment average")
    eps: NonNegative | None = Field(None, description="added to the denominator of the update")
    weight_decay: NonNegative | None = None
    grad_clip: NonNegative | None = Field(None, description="the gradient norm clipped to")

    @field_validator("name", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected an optimizer name (string), got {value!r}")
        return normalize_optimizer(value)

    @model_validator(mode="after")
    def _known_extras(self) -> OptimizerSpec:
        specific = OPTIMIZER_FIELDS.get(self.name, ())
        for key, value in (self.model_extra or {}).items():
            if key not in specific:
                known = [*type(self).model_fields, *specific]
                raise ValueError(
                    f"optimizer.{key}: unknown field for optimizer {self.name!r}{did_you_mean(key, known)}; its fields are "
                    f"{', '.join(known)}; put a field of your own under 'extra' (extra.{key})"
                )
            check_scalar(f"optimizer.{key}", value)
        return self


SCHEDULE_FAMILIES = ("constant", "cosine", "linear", "wsd", "multistep", "explicit")


class ScheduleSpec(_Section):
    """The lr schedule: a named family with its parameters, or the lr of every step (`lr`).

    Steps count from 0; the peak lr is ``optimizer.lr``. `ncpl.schedules.lr_at_steps` turns this
    into the lr of every step. Families (other names, e.g. ``inv_sqrt``, are kept as text):
    constant; cosine and linear (peak to the min lr over the steps after warmup); wsd (constant,
    then a decay of `cooldown_steps` steps to the min lr, shaped by `decay`); multistep (the peak,
    then `stage_lr_ratios[i]` x peak from step `stage_steps[i]` on); explicit (`lr` given per step).
    """

    name: str | None = Field(None, description="family: " + ", ".join(SCHEDULE_FAMILIES) + " (others kept as text)")
    warmup_steps: NonNegative | None = Field(None, description="linear warmup from 0 to the peak lr")
    total_steps: PositiveInt | None = None
    min_lr: NonNegative | None = Field(None, description="the lr at the end of the decay")
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    cooldown_steps: NonNegative | None = Field(None, description="wsd: steps of the final decay")
    decay: Literal["linear", "cosine", "exponential"] | None = Field(None, description="wsd: shape of the final decay")
    stage_steps: list[PositiveInt] | None = Field(None, description="multistep: the step each later stage starts at")
    stage_lr_ratios: list[Ratio] | None = Field(None, description="multistep: each later stage's lr / peak lr")
    lr: list[NonNegative] | None = Field(
        None,
        description="explicit: the lr of every step from step 0 (stored "
        "in the column schedule_lr, not read as a config field)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSpec:
        if (self.stage_steps is None) != (self.stage_lr_ratios is None) or (
            self.stage_steps is not None and len(self.stage_steps) != len(self.stage_lr_ratios)
        ):
            raise ValueError("schedule.stage_steps and schedule.stage_lr_ratios: give both, one entry per later stage")
        if self.stage_steps is not None and any(b <= a for a, b in zip(self.stage_steps, self.stage_steps[1:])):
            raise ValueError(f"schedule.stage_steps: got {self.stage_steps}; the stage starts must increase")
        if self.lr is not None and self.name not in (None, "explicit"):
            raise ValueError(f"schedule.lr: a per-step lr array goes with schedule.name 'explicit', not {self.name!r}")
        if self.name == "explicit" and not self.lr:
            raise ValueError("schedule.name 'explicit' needs schedule.lr, the lr of every step")
        if self.lr is not None and self.name is None:
            self.name = "explicit"
        return self


class BatchSpec(_Section):
    tokens: Count | None = Field(None, description="tokens per optimizer step")
    sequences: PositiveInt | None = None


class RunConfig(_Section):
    source: str = Field(min_length=1, description="where the run comes from; losses compare only within a source")
    model: ModelSpec
    data: DataSpec
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    batch: BatchSpec = Field(default_factory=BatchSpec)
    extra: dict[str, Scalar] = Field(default_factory=dict, description="source-specific fields")

    @field_validator("extra")
    @classmethod
    def _scalar_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            check_scalar(f"extra.{key}", item)
        return value

    @property
    def flops(self) -> float:
        """Training compute 6 N D (non-embedding, active parameters where given)."""
        return 6.0 * (self.model.n_params_active or self.model.n_params) * self.data.tokens


class Curve(_Section):
    """Loss at points of training; `tokens` strictly increasing."""

    tokens: list[Count]
    loss: list[Positive]

    @model_validator(mode="after")
    def _aligned(self) -> Curve:
        if len(self.tokens) != len(self.loss):
            raise ValueError(f"curve.tokens has {len(self.tokens)} points but curve.loss has {len(self.loss)}")
        if any(b <= a for a, b in zip(self.tokens, self.tokens[1:])):
            raise ValueError("curve.tokens must be strictly increasing")
        return self


class RunRecord(_Section):
    run_id: str = Field(min_length=1)
    config: RunConfig
    final_loss: Positive | None = Field(
        None, description="final loss in nats/token; None only for a diverged run with no finite loss"
    )
    loss_kind: str = Field("train", description="what the loss measures: train, c4_eval, paloma_c4_en, ...")
    diverged: bool = False
    curve: Curve | None = None
    other_losses: dict[str, Positive] = Field(
        default_factory=dict,
        description="other measurements of the run (other eval sets, the unsmoothed loss); outcomes, so never config",
    )
    meta: dict[str, Scalar] = Field(
        default_factory=dict, description="bookkeeping (W&B id, sweep name, labels); never read by a predictor"
    )

    @model_validator(mode="after")
    def _loss_present(self) -> RunRecord:
        if self.final_loss is None and not self.diverged:
            raise ValueError("final_loss is required unless the run diverged (diverged=true)")
        return self

    # --- flat dotted view -----------------------------------------------------------------------

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {
            "run_id": self.run_id,
            "source": self.config.source,
            "loss_kind": self.loss_kind,
            "final_loss": self.final_loss,
            "diverged": self.diverged,
            "curve_tokens": list(self.curve.tokens) if self.curve else None,
            "curve_loss": list(self.curve.loss) if self.curve else None,
        }
        flat.update({f"other_loss.{name}": loss for name, loss in self.other_losses.items()})
        flat.update({f"meta.{name}": value for name, value in self.meta.items()})
        flat.update(config_to_flat(self.config))
        return flat

    @classmethod
    def from_flat(cls, row: dict[str, Any]) -> RunRecord:
        row = present(row)
        curve = None
        if "curve_tokens" in row or "curve_loss" in row:
            curve = {"tokens": list(row.pop("curve_tokens", [])), "loss": list(row.pop("curve_loss", []))}
        top = {k: row.pop(k) for k in ("run_id", "final_loss", "loss_kind", "diverged") if k in row}
        other = {k.removeprefix("other_loss."): row.pop(k) for k in list(row) if k.startswith("other_loss.")}
        meta = {k.removeprefix("meta."): to_python(row.pop(k)) for k in list(row) if k.startswith("meta.")}
        return validate(cls, {**top, "curve": curve, "other_losses": other, "meta": meta, "config": unflatten(row)})


def config_to_flat(config: RunConfig) -> dict[str, Any]:
    flat: dict[str, Any] = {"source": config.source}
    for section in ("model", "data", "optimizer", "schedule", "batch"):
        for key, value in getattr(config, section).model_dump().items():
            flat[f"{section}.{key}"] = value
    flat[SCHEDULE_LR] = flat.pop("schedule.lr")  # thousands of numbers: never a config field to read
    for key, value in config.extra.items():
        flat[f"extra.{key}"] = value
    return flat


def config_from_flat(row: dict[str, Any]) -> RunConfig:
    return validate(RunConfig, unflatten(present(row)))


def known_fields(model: type[BaseModel] = RunConfig) -> list[str]:
    """The flat dotted fields of `model` (``model.n_params``, ``optimizer.lr``, ...), read from the pydantic models,
    with every optimizer's specific fields; ``extra.*`` takes any name."""
    fields = []
    for name in model.model_fields:
        section = nested_model(model, (name,))
        fields += [f"{name}.{inner}" for inner in section.model_fields] if section else [name]
    specific = sorted({f for names in OPTIMIZER_FIELDS.values() for f in names})
    return fields + [f"optimizer.{name}" for name in specific if f"optimizer.{name}" not in fields]


# --- YAML / JSON files --------------------------------------------------------------------------


def read_config(path: str | Path, kind: type[BaseModel] = RunConfig) -> Any:
    """Load a RunConfig (or RunRecord) from .yaml/.yml/.json."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    try:
        return validate(kind, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save(obj: BaseModel, path: str | Path) -> None:
    path = Path(path)
    data = obj.model_dump(mode="json", exclude_none=True)
    text = json.dumps(data, indent=2) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
