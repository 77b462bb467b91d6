"""Complete^(d)P hyperparameter transfer (Mlodozeniec et al., arXiv 2512.22382).

Tuned per-module hyperparameters of a base run move to a run that is wider (m_N), deeper (m_L),
uses larger batches (m_B) and more tokens (m_D), with alpha in [0.5, 1] the depth exponent:

| quantity | multiplier |
|---|---|
| residual branch multiplier | m_L^-alpha |
| lr, hidden weights | m_N^-1 m_L^(alpha-1) sqrt(m_B/m_D) |
| lr, hidden biases and norms | m_L^(alpha-1) sqrt(m_B/m_D) |
| lr, unembedding | m_N^-1 sqrt(m_B/m_D) |
| lr, embeddings | sqrt(m_B/m_D) |
| Adam eps, hidden weights | m_N^-1 m_L^-alpha sqrt(m_D/m_B) |
| weight decay, hidden and unembedding weights | m_N sqrt(m_B/m_D) |
| 1 - beta1, 1 - beta2 | m_B/m_D |
| init variance, hidden weights | m_N^-1 |
| init variance, unembedding | m_N^-2 |

The table is the one in the project's METHOD.md, itself taken from a public implementation of the
paper; quantities the table does not name keep the base's value; the steps of the target run are
its tokens over its batch.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ncpl.errors import ConfigError
from ncpl.schema import read_config


class ModuleValues(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: float | None = Field(None, gt=0)
    bias_norm: float | None = Field(None, gt=0)
    unembedding: float | None = Field(None, gt=0)
    embedding: float | None = Field(None, gt=0)


class TransferConfig(BaseModel):
    """A tuned base run: its shape, batch (tokens), tokens and per-module hyperparameters."""

    model_config = ConfigDict(extra="forbid")
    width: float = Field(gt=0)
    depth: float = Field(gt=0)
    batch: float = Field(gt=0, description="tokens per step")
    tokens: float = Field(gt=0)
    alpha: float = Field(1.0, ge=0.5, le=1.0)
    lr: ModuleValues
    eps: ModuleValues = ModuleValues()
    weight_decay: ModuleValues = ModuleValues()
    init_variance: ModuleValues = ModuleValues()
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    residual_multiplier: float = Field(1.0, gt=0)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TransferConfig:
        return read_config(path, cls)


def multipliers(m_n: float, m_l: float, m_b: float, m_d: float, alpha: float) -> dict[str, float]:
    """Each rule's multiplier, by the name of the quantity it scales."""
    batch_time = math.sqrt(m_b / m_d)
    return {
        "residual_multiplier": m_l**-alpha,
        "lr.hidden": m_n**-1 * m_l ** (alpha - 1) * batch_time,
        "lr.bias_norm": m_l ** (alpha - 1) * batch_time,
        "lr.unembedding": m_n**-1 * batch_time,
        "lr.embedding": batch_time,
        "eps.hidden": m_n**-1 * m_l**-alpha / batch_time,
        "weight_decay.hidden": m_n * batch_time,
        "weight_decay.unembedding": m_n * batch_time,
        "one_minus_beta": m_b / m_d,
        "init_variance.hidden": m_n**-1,
        "init_variance.unembedding": m_n**-2,
    }


def transfer(
    base: TransferConfig,
    *,
    width: float | None = None,
    depth: float | None = None,
    batch: float | None = None,
    tokens: float | None = None,
) -> dict:
    """The target's hyperparameters (same layout as the base) and its step count."""
    given = {"width": width, "depth": depth, "batch": batch, "tokens": tokens}
    target = {name: getattr(base, name) if value is None else value for name, value in given.items()}
    for name, value in target.items():
        if not 0 < value < math.inf:
            raise ConfigError(f"{name}: got {value}, expected a number > 0; omit it to keep the base's")
    rules = multipliers(
        target["width"] / base.width,
        target["depth"] / base.depth,
        target["batch"] / base.batch,
        target["tokens"] / base.tokens,
        base.alpha,
    )
    out = {
        **target,
        "alpha": base.alpha,
        "steps": round(target["tokens"] / target["batch"]),
        "residual_multiplier": base.residual_multiplier * rules["residual_multiplier"],
    }
    for group in ("lr", "eps", "weight_decay", "init_variance"):
        values = getattr(base, group).model_dump(exclude_none=True)
        out[group] = {module: value * rules.get(f"{group}.{module}", 1.0) for module, value in values.items()}
    for name in ("beta1", "beta2"):
        out[name] = 1 - (1 - getattr(base, name)) * rules["one_minus_beta"]
        if not 0 <= out[name] < 1:
            raise ConfigError(
                f"{name}: the transfer gives {out[name]:.4g}, outside [0, 1): the batch/token ratio "
                f"changed by {rules['one_minus_beta']:.3g}x; transfer in smaller steps"
            )
    return out
