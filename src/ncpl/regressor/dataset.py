"""Training examples for the NCPL network: runs -> (token sequence, scaled residual target).

A run gives one final-loss example, and up to `max_curve_points` points of its loss curve, each
asking for the loss at a fraction of training. The target is the residual of the loss over the
per-source law (Chinchilla, or Chinchilla with the lr / batch bowl; fitted on the training runs): for a
curve point, the law's final loss carried back along the curve by the shape of the run's lr schedule
(`Targets.shape`, `curve_law: schedule`) or the law read at the tokens seen so far, divided by the training residuals' robust spread (1.4826 x their median
absolute deviation). A diverged run keeps its final-loss example for the divergence head, with no
regression target.

With `prefix_points`, each of those targets of a run with a curve also comes a second time with a measured prefix
of its own curve in the input: the checkpoints up to a random one before the target (up to `prefix_points` of them,
`seen_points`), each as its fraction of training and its residual. The network so learns to read how a run has
gone so far, not only its config (a level shift of the config's curve is what a prefix gives without this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ncpl.laws.schedule import CurveShape
from ncpl.predictors import ANCHOR_POINTS, TokenLaw
from ncpl.regressor.serialize import Encoded, Serializer


@dataclass
class Example:
    encoded: Encoded
    target: float  # scaled residual; NaN when the run diverged
    is_final: bool
    diverged: bool


@dataclass
class Targets:
    """How losses become targets and back: the residual over `baseline`, in units of `scale`. Along a curve the law
    is read at the tokens seen, or, with a `shape` (`ncpl.laws.schedule.CurveShape`), at the run's end and carried
    back along the curve by the shape of its lr schedule (where the shape knows the run's source and schedule; the
    final loss's target is the same either way)."""

    baseline: TokenLaw
    scale: float
    shape: CurveShape | None = None

    def to_target(self, runs: pd.DataFrame, loss: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
        return (loss - self._law(runs, n_tokens)) / self.scale

    def to_loss(self, runs: pd.DataFrame, target: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
        return np.asarray(target) * self.scale + self._law(runs, n_tokens)

    def _law(self, runs: pd.DataFrame, n_tokens: np.ndarray) -> np.ndarray:
        n_tokens = np.asarray(n_tokens, float)
        along = self.baseline.predict_at(runs, n_tokens)
        if self.shape is None:
            return along
        offset = self.shape.offset(runs, n_tokens)
        at_end = self.baseline.predict_at(runs, runs["data.tokens"].to_numpy(float))
        return np.where(np.isfinite(offset), at_end + offset, along)


def curve_indices(n_points: int, max_points: int) -> list[int]:
    """Up to `max_points` evenly spaced checkpoints, the last one (the final loss) left out."""
    if n_points <= 1 or max_points <= 0:
        return []
    candidates = np.arange(n_points - 1)
    if len(candidates) <= max_points:
        return candidates.tolist()
    return sorted(set(np.linspace(0, n_points - 2, max_points).round().astype(int).tolist()))


def seen_points(fractions: np.ndarray, residuals: np.ndarray, max_points: int) -> list[tuple[float, float]]:
    """Up to `max_points` of the measured (fraction, residual) points, evenly spaced, the latest always in."""
    if not len(fractions) or max_points <= 0:
        return []
    chosen = np.unique(np.linspace(0, len(fractions) - 1, min(max_points, len(fractions))).round().astype(int))
    return [(float(fractions[k]), float(residuals[k])) for k in chosen]


def build_examples(
    runs: pd.DataFrame,
    serializer: Serializer,
    targets: Targets,
    max_curve_points: int = 0,
    prefix_points: int = 0,
    rng: np.random.Generator | None = None,
    prefix_target: str = "residual",
) -> list[Example]:
    """The examples of `runs`; with `prefix_points`, a second copy of each target of a run with a curve, conditioned on
    a prefix of that curve ending at a checkpoint drawn by `rng` from those before the target."""
    if prefix_points and rng is None:
        raise ValueError("rng: build_examples needs a numpy Generator to draw prefixes when prefix_points > 0")
    runs = runs.reset_index(drop=True)
    loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
    diverged = runs["diverged"].fillna(False).to_numpy(bool)
    final_target = targets.to_target(runs, loss, runs["data.tokens"].to_numpy(float))
    examples = []
    for i, row in enumerate(runs.to_dict("records")):
        converged = not diverged[i] and math.isfinite(loss[i])
        examples.append(
            Example(serializer.encode(row), float(final_target[i]) if converged else math.nan, True, bool(diverged[i]))
        )
        curve_tokens, curve_loss = row.get("curve_tokens"), row.get("curve_loss")
        if not (isinstance(curve_tokens, (list, np.ndarray)) and len(curve_tokens) and not diverged[i]):
            continue
        n = len(curve_tokens)
        fractions = np.asarray(curve_tokens, float) / float(row["data.tokens"])
        residuals = targets.to_target(
            runs.iloc[[i] * n], np.asarray(curve_loss, float), np.asarray(curve_tokens, float)
        )
        asked = [(j, float(fractions[j]), float(residuals[j])) for j in curve_indices(n, max_curve_points)]
        for _, fraction, target in asked:
            examples.append(Example(serializer.encode(row, fraction), target, False, False))
        if not prefix_points or not converged:
            continue
        for j, fraction, target in [*asked, (n - 1, None, float(final_target[i]))]:  # the final loss: after the last
            if j == 0:
                continue
            end = int(rng.integers(0, j))  # the prefix ends at a checkpoint before the target
            seen = seen_points(fractions[: end + 1], residuals[: end + 1], prefix_points)
            offset = prefix_offset(residuals[: end + 1], prefix_target)
            examples.append(Example(serializer.encode(row, fraction, seen), target - offset, False, False))
    return examples


def prefix_offset(residuals: np.ndarray, prefix_target: str) -> float:
    """What the network's output given a prefix is relative to: under `change`, the level the prefix ended at (the
    mean residual of its last `ANCHOR_POINTS` points); under `residual`, 0. Training and prediction share it."""
    return float(np.mean(residuals[-ANCHOR_POINTS:])) if prefix_target == "change" else 0.0


class Collator:
    """Pads a list of examples into the tensors `NCPLNetwork.forward` takes (plus the targets)."""

    def __init__(self, serializer: Serializer, field_scales: dict[str, float]):
        self.serializer = serializer
        self.pad_id = serializer.tokenizer.pad_token_id if serializer.tokenizer.pad_token_id is not None else 0
        self.field_scales = field_scales

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        # Built in numpy and turned into tensors once per batch: a tensor per example cost more than
        # a tiny backbone's forward pass.
        lengths = np.array([len(e.encoded.input_ids) for e in examples])
        batch, width = len(examples), int(lengths.max())
        input_ids = np.full((batch, width), self.pad_id, dtype=np.int64)
        num_mask = np.zeros((batch, width), dtype=bool)
        word_mask = np.zeros((batch, width), dtype=bool)
        values, fields, words = [], [], []
        for b, example in enumerate(examples):
            encoded = example.encoded
            input_ids[b, : lengths[b]] = encoded.input_ids
            num_mask[b, encoded.num_positions] = True
            values += encoded.num_values  # positions ascend, so this is masked_scatter's row-major order
            fields += encoded.num_fields
            word_mask[b, list(encoded.word_positions)] = True
            words += encoded.word_pieces
        # pooled into one embedding each: the numbers' field names (for the encoder), then the split words
        names = [self.serializer.name_ids(f) for f in fields] + list(words)
        name_width = max((len(n) for n in names), default=1)
        name_ids = np.full((len(names), name_width), self.pad_id, dtype=np.int64)
        name_mask = np.zeros((len(names), name_width), dtype=np.float32)
        for k, ids in enumerate(names):
            name_ids[k, : len(ids)] = ids
            name_mask[k, : len(ids)] = 1
        targets = np.array([e.target for e in examples], dtype=np.float64)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy((np.arange(width) < lengths[:, None]).astype(np.int64)),
            "num_mask": torch.from_numpy(num_mask),
            "word_mask": torch.from_numpy(word_mask),
            "num_values": torch.tensor(values, dtype=torch.float64).float(),
            "num_scales": torch.tensor([self.field_scales.get(f, 1.0) for f in fields], dtype=torch.float32),
            "name_ids": torch.from_numpy(name_ids),
            "name_mask": torch.from_numpy(name_mask),
            "target_position": torch.tensor([e.encoded.target_position for e in examples], dtype=torch.long),
            "target": torch.from_numpy(np.nan_to_num(targets, nan=0.0).astype(np.float32)),
            "converged": torch.from_numpy(~np.isnan(targets)),
            "is_final": torch.tensor([e.is_final for e in examples]),
            "diverged": torch.tensor([e.diverged for e in examples]),
        }


MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "num_mask",
    "word_mask",
    "num_values",
    "num_scales",
    "name_ids",
    "name_mask",
    "target_position",
)
