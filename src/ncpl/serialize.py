"""A run's configuration as text for a language-model backbone, every number one placeholder token.

    source: marin
    params: <num>
    width: <num>
    optimizer: muon
    lr: <num>
    ...
    final loss:                      (or)   frac: <num> loss:

Fields come one `key: value` line each in a fixed canonical order, under short names a language
model knows (``lr``, ``batch``, ``width``) so that a config costs few tokens; fields outside the
common set use their own name, underscores as spaces. Token ids are built segment by
segment so that each number is exactly one reserved id, whatever the tokenizer does with the text
around it; the numeric-field encoder supplies that position's input embedding. With
``numbers_as_text`` the numbers are written out instead (the paper's ablation).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NUM_TOKEN = "<|num|>"
SECTIONS = ("model", "data", "optimizer", "schedule", "batch", "extra")
# Within a section the common fields come first in this order, then any others sorted by name.
CANONICAL = [
    "model.arch", "model.n_params", "model.n_params_total", "model.n_params_active", "model.d_model", "model.n_layers",
    "model.n_heads", "model.d_ff", "model.vocab_size", "model.seq_len", "model.n_experts", "model.top_k",
    "data.tokens", "data.dataset",
    "optimizer.name", "optimizer.lr", "optimizer.beta1", "optimizer.beta2", "optimizer.eps", "optimizer.weight_decay",
    "optimizer.grad_clip",
    "schedule.name", "schedule.warmup_steps", "schedule.total_steps", "schedule.min_lr", "schedule.min_lr_ratio",
    "schedule.cooldown_steps",
    "batch.tokens", "batch.sequences",
]
_RANK = {name: i for i, name in enumerate(CANONICAL)}
SHORT_NAMES = {
    "model.arch": "arch", "model.n_params": "params", "model.n_params_total": "total params",
    "model.n_params_active": "active params", "model.d_model": "width", "model.n_layers": "depth", "model.n_heads": "heads",
    "model.d_ff": "ffn", "model.vocab_size": "vocab", "model.seq_len": "seq len", "model.n_experts": "experts",
    "model.top_k": "top k", "data.tokens": "tokens", "data.dataset": "data", "optimizer.name": "optimizer",
    "optimizer.weight_decay": "weight decay", "optimizer.grad_clip": "grad clip", "schedule.name": "schedule",
    "schedule.warmup_steps": "warmup", "schedule.total_steps": "steps", "schedule.min_lr": "min lr",
    "schedule.min_lr_ratio": "min lr ratio", "schedule.cooldown_steps": "cooldown", "batch.tokens": "batch tokens",
    "batch.sequences": "batch",
}


def short_name(key: str) -> str:
    """The words a field is written as: ``optimizer.lr`` -> ``lr``, ``extra.moe_name`` -> ``moe name``."""
    return SHORT_NAMES.get(key) or key.partition(".")[2].replace("_", " ") or key
FRACTION_FIELD = "frac"
MAX_LAYOUTS = 4096  # token layouts kept (numbers written as text make every row its own layout)


def config_fields(row: dict[str, Any], skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a flat config row to serialise, in canonical order, missing ones left out."""
    items = []
    for key, value in row.items():
        section = key.partition(".")[0]
        if section not in SECTIONS or key in skip or _missing(value):
            continue
        items.append((key, value))
    order = {s: i for i, s in enumerate(SECTIONS)}
    items.sort(key=lambda kv: (order[kv[0].partition(".")[0]], _RANK.get(kv[0], len(_RANK)), kv[0]))
    source = row.get("source")
    return ([("source", source)] if not _missing(source) else []) + items


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass
class Encoded:
    """Token ids of one example, with where its numbers are and what they are."""

    input_ids: list[int]
    num_positions: list[int] = field(default_factory=list)
    num_values: list[float] = field(default_factory=list)
    num_fields: list[str] = field(default_factory=list)
    target_position: int = -1  # the position whose hidden state predicts the target


class Serializer:
    """Turns flat config rows into `Encoded` token sequences for one tokenizer."""

    def __init__(self, tokenizer: Any, *, numbers_as_text: bool = False, is_decoder: bool = True):
        self.tokenizer = tokenizer
        self.numbers_as_text = numbers_as_text
        self.is_decoder = is_decoder
        if NUM_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [NUM_TOKEN]})
        self.num_id = tokenizer.convert_tokens_to_ids(NUM_TOKEN)
        self._text_cache: dict[str, list[int]] = {}
        self._layouts: dict[tuple, Encoded] = {}

    def _ids(self, text: str) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self._text_cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def name_ids(self, key: str) -> list[int]:
        """Token ids of a field's short name, for the encoder's field-name embedding."""
        return self._ids(short_name(key))

    def encode(self, row: dict[str, Any], fraction: float | None = None) -> Encoded:
        """Config row + target prompt: ``final loss:`` or ``frac: <x> loss:``.

        Rows with the same fields and the same non-numeric values share their token ids; only the
        numbers differ. The ids are kept per such layout, so a sweep tokenizes each layout once.
        """
        pairs = config_fields(row) + ([(FRACTION_FIELD, fraction)] if fraction is not None else [])
        as_number = [_is_number(value) and not self.numbers_as_text for _, value in pairs]
        layout = tuple((key, None if number else (type(value).__name__, value)) for (key, value), number in zip(pairs, as_number))
        template = self._layouts.get(layout)
        if template is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            template = self._layouts[layout] = self._encode(pairs, final=fraction is None)
        values = [float(value) for (_, value), number in zip(pairs, as_number) if number]
        return Encoded(list(template.input_ids), list(template.num_positions), values, list(template.num_fields), template.target_position)

    def _encode(self, pairs: list[tuple[str, Any]], final: bool) -> Encoded:
        tok = self.tokenizer
        out = Encoded(input_ids=[])
        if not self.is_decoder and tok.cls_token_id is not None:
            out.input_ids.append(tok.cls_token_id)
        pending = ""
        for key, value in pairs:
            if _is_number(value) and not self.numbers_as_text:
                out.input_ids += self._ids(pending + f"{short_name(key)}:")
                out.num_positions.append(len(out.input_ids))
                out.num_values.append(float(value))
                out.num_fields.append(key)
                out.input_ids.append(self.num_id)
                pending = " loss:" if key == FRACTION_FIELD else "\n"
                continue
            text = format_value(value)
            pending += f"{short_name(key)}: {text}" + (" loss:" if key == FRACTION_FIELD else "\n")
        if final:
            pending += "final loss:"
        out.input_ids += self._ids(pending)
        out.target_position = len(out.input_ids) - 1
        if not self.is_decoder and tok.sep_token_id is not None:
            out.input_ids.append(tok.sep_token_id)
        return out

    def text(self, row: dict[str, Any], fraction: float | None = None) -> str:
        """The serialised text, placeholders shown as NUM_TOKEN (for inspection and tests)."""
        encoded = self.encode(row, fraction)
        return self.tokenizer.decode(encoded.input_ids, skip_special_tokens=False)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return f"{float(value):.6g}"
    return str(value)
