"""A run's configuration as tokens for a language-model backbone, every number one placeholder token.

Two serializations (`TrainConfig.serialization`):

- ``compact`` (the default): the categorical values as words, then one placeholder per number, then
  the target prompt, and no field names::

      steplaw dense adamw cosine <num> <num> ... <num> loss          (or)   ... <num> <frac> loss

  The numeric-field encoder embeds each number together with its field's *name*, so the name need
  not be written: a StepLaw or Marin config costs about 20-25 tokens instead of 70-110. Booleans are
  numbers (0 / 1) here, since a bare ``true`` says nothing about which field it is. A value the
  tokenizer splits into pieces (``steplaw`` -> ``step ##law``) takes one position too, whose input
  embedding is the mean of its pieces' word embeddings (as a field's name is embedded), so a config
  costs at most its number of fields + 3 tokens ([CLS], prompt, [SEP]). The words come first, so
  configs of one sweep share a token prefix (a decoder computes it once).
- ``verbose``: one ``key: value`` line per field, as the paper writes it (and what models saved
  before the option existed were trained on)::

      source: marin
      params: <num>
      optimizer: muon
      ...
      final loss:                      (or)   frac: <num> loss:

A curve point may come with measured points of the run's own curve before it (`SEEN_FIELDS`: a fraction of
training and the loss there as a residual over the law, one placeholder each), just before the target prompt.

Fields come in a fixed canonical order, under short names a language model knows (``lr``,
``batch``, ``width``); fields outside the common set use their own name, underscores as spaces.
Token ids are built segment by segment so that each number is exactly one reserved id, whatever
the tokenizer does with the text around it; the numeric-field encoder supplies that position's
input embedding. With ``numbers_as_text`` (verbose only) the numbers are written out instead (the
paper's ablation).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ncpl.errors import ConfigError
from ncpl.flat import is_missing
from ncpl.schedules import path_fields

if TYPE_CHECKING:
    from ncpl.regressor.train_config import TrainConfig

NUM_TOKEN = "<|num|>"
SERIALIZATIONS = ("compact", "verbose")
SECTIONS = ("model", "data", "optimizer", "schedule", "batch", "extra", "law")  # law: `TrainConfig.law_fields`
# Within a section the common fields come first in this order, then any others sorted by name.
CANONICAL = [
    "model.arch",
    "model.n_params",
    "model.n_params_total",
    "model.n_params_active",
    "model.d_model",
    "model.n_layers",
    "model.n_heads",
    "model.d_ff",
    "model.vocab_size",
    "model.seq_len",
    "model.n_experts",
    "model.top_k",
    "data.tokens",
    "data.dataset",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.beta1",
    "optimizer.beta2",
    "optimizer.eps",
    "optimizer.weight_decay",
    "optimizer.grad_clip",
    "schedule.name",
    "schedule.warmup_steps",
    "schedule.total_steps",
    "schedule.min_lr",
    "schedule.min_lr_ratio",
    "schedule.cooldown_steps",
    "batch.tokens",
    "batch.sequences",
]
_RANK = {name: i for i, name in enumerate(CANONICAL)}
SHORT_NAMES = {
    "model.arch": "arch",
    "model.n_params": "params",
    "model.n_params_total": "total params",
    "model.n_params_active": "active params",
    "model.d_model": "width",
    "model.n_layers": "depth",
    "model.n_heads": "heads",
    "model.d_ff": "ffn",
    "model.vocab_size": "vocab",
    "model.seq_len": "seq len",
    "model.n_experts": "experts",
    "model.top_k": "top k",
    "data.tokens": "tokens",
    "data.dataset": "data",
    "optimizer.name": "optimizer",
    "optimizer.weight_decay": "weight decay",
    "optimizer.grad_clip": "grad clip",
    "schedule.name": "schedule",
    "schedule.warmup_steps": "warmup",
    "schedule.total_steps": "steps",
    "schedule.min_lr": "min lr",
    "schedule.min_lr_ratio": "min lr ratio",
    "schedule.cooldown_steps": "cooldown",
    "batch.tokens": "batch tokens",
    "batch.sequences": "batch",
    "schedule.lr_now": "lr now",
    "schedule.lr_mean": "mean lr so far",
    "law.lr_over_optimum": "lr over best",
    "law.batch_over_optimum": "batch over best",
    "seen.fraction": "seen at",
    "seen.residual": "seen loss",
}


def short_name(key: str) -> str:
    """The words a field is written as: ``optimizer.lr`` -> ``lr``, ``extra.moe_name`` -> ``moe name``,
    ``optimizer.lr@lion`` (`lr_by_optimizer`) -> ``lion lr``."""
    key, _, qualifier = key.partition("@")
    name = SHORT_NAMES.get(key) or key.partition(".")[2].replace("_", " ") or key
    return f"{qualifier.replace('_', ' ')} {name}" if qualifier else name


FRACTION_FIELD = "frac"
# a measured point of the run's own curve: the fraction of training it was measured at and its loss as a residual
# over the law (in target units), written before the target prompt
SEEN_FIELDS = ("seen.fraction", "seen.residual")
MAX_LAYOUTS = 4096  # token layouts kept (numbers written as text make every row its own layout)


def config_fields(row: dict[str, Any], skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a flat config row to serialise, in canonical order, missing ones left out.

    A list (a multistep schedule's stages, an explicit lr array) is left out too: a placeholder holds one number,
    and the schedule's family and scalar parameters say what the network reads of it."""
    items = []
    for key, value in row.items():
        section = key.partition(".")[0]
        if section not in SECTIONS or key in skip or isinstance(value, (list, tuple, np.ndarray)) or is_missing(value):
            continue
        items.append((key, value))
    order = {s: i for i, s in enumerate(SECTIONS)}
    items.sort(key=lambda kv: (order[kv[0].partition(".")[0]], _RANK.get(kv[0], len(_RANK)), kv[0]))
    source = row.get("source")
    return ([("source", source)] if not is_missing(source) else []) + items


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


@dataclass
class Encoded:
    """Token ids of one example, with where its numbers are and what they are."""

    input_ids: list[int]
    num_positions: list[int] = field(default_factory=list)
    num_values: list[float] = field(default_factory=list)
    num_fields: list[str] = field(default_factory=list)
    target_position: int = -1  # the position whose hidden state predicts the target
    # compact: positions of categorical values the tokenizer splits, each one position embedded as its pieces' mean
    word_positions: tuple[int, ...] = ()
    word_pieces: tuple[tuple[int, ...], ...] = ()


class Serializer:
    """Turns flat config rows into `Encoded` token sequences for one tokenizer."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        numbers_as_text: bool = False,
        is_decoder: bool = True,
        serialization: Literal["compact", "verbose"] = "compact",
        schedule_path: bool = False,
        lr_by_optimizer: bool = False,
    ):
        if serialization not in SERIALIZATIONS:
            raise ConfigError(f"serialization: {serialization!r} is not one of {', '.join(SERIALIZATIONS)}")
        if numbers_as_text and serialization == "compact":
            raise ConfigError(
                "numbers_as_text: needs serialization 'verbose' (compact writes no field names, so a "
                "number written as text would not say which field it is)"
            )
        self.tokenizer = tokenizer
        self.numbers_as_text = numbers_as_text
        self.is_decoder = is_decoder
        self.compact = serialization == "compact"
        self.schedule_path = schedule_path
        self.lr_by_optimizer = lr_by_optimizer
        if NUM_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [NUM_TOKEN]})
        self.num_id = tokenizer.convert_tokens_to_ids(NUM_TOKEN)
        self._text_cache: dict[str, list[int]] = {}
        self._layouts: dict[tuple, Encoded] = {}

    @classmethod
    def for_config(cls, config: TrainConfig, tokenizer: Any, is_decoder: bool) -> Serializer:
        """The serializer a network trained under `config` reads its configs with."""
        return cls(
            tokenizer,
            numbers_as_text=config.numbers_as_text,
            is_decoder=is_decoder,
            serialization=config.serialization,
            schedule_path=config.schedule_path,
            lr_by_optimizer=config.lr_by_optimizer,
        )

    def _ids(self, text: str) -> list[int]:
        ids = self._text_cache.get(text)
        if ids is None:
            ids = self._text_cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def name_ids(self, key: str) -> list[int]:
        """Token ids of a field's short name, for the encoder's field-name embedding."""
        return self._ids(short_name(key))

    def encode(
        self, row: dict[str, Any], fraction: float | None = None, seen: Sequence[tuple[float, float]] = ()
    ) -> Encoded:
        """Config row (+ with `schedule_path`, where its lr stands at the target's point: `ncpl.schedules.path_fields`)
        + the measured points of its curve `seen` ((fraction, residual) pairs, `SEEN_FIELDS`) + target prompt:
        ``final loss:`` or ``frac: <x> loss:``.

        Rows with the same fields and the same non-numeric values share their token ids; only the
        numbers differ. The ids are kept per such layout, so a sweep tokenizes each layout once.
        """
        pairs = config_fields(row) + (path_fields(row, fraction) if self.schedule_path else [])
        optimizer = row.get("optimizer.name")
        if self.lr_by_optimizer and isinstance(optimizer, str):  # the lr's field named by its optimizer: `lion lr`
            pairs = [(f"{key}@{optimizer}" if key == "optimizer.lr" else key, value) for key, value in pairs]
        pairs += [pair for point in seen for pair in zip(SEEN_FIELDS, point)]
        pairs += [(FRACTION_FIELD, fraction)] if fraction is not None else []
        as_number = [self._as_number(value) for _, value in pairs]
        if self.compact:  # the words first (a prefix shared across a sweep), then the numbers in canonical order
            order = sorted(range(len(pairs)), key=lambda i: as_number[i])
            pairs, as_number = [pairs[i] for i in order], [as_number[i] for i in order]
        layout = tuple(
            (key, None if number else (type(value).__name__, value)) for (key, value), number in zip(pairs, as_number)
        )
        template = self._layouts.get(layout)
        if template is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            encode = self._encode_compact if self.compact else self._encode_verbose
            template = self._layouts[layout] = self._finish(encode(pairs, as_number, final=fraction is None))
        values = [float(value) for (_, value), number in zip(pairs, as_number) if number]
        return Encoded(
            list(template.input_ids),
            list(template.num_positions),
            values,
            list(template.num_fields),
            template.target_position,
            template.word_positions,
            template.word_pieces,
        )

    def _as_number(self, value: Any) -> bool:
        """Whether the value goes in as a placeholder (the numeric-field encoder) rather than as words."""
        return (_is_number(value) and not self.numbers_as_text) or (self.compact and _is_bool(value))

    def _placeholder(self, out: Encoded, key: str, value: Any) -> None:
        out.num_positions.append(len(out.input_ids))
        out.num_values.append(float(value))
        out.num_fields.append(key)
        out.input_ids.append(self.num_id)

    def _encode_compact(self, pairs: list[tuple[str, Any]], as_number: list[bool], final: bool) -> Encoded:
        out = Encoded(input_ids=[])
        for (key, value), number in zip(pairs, as_number):
            if number:
                self._placeholder(out, key, value)
                continue
            pieces = self._ids(" " + format_value(value).replace("_", " "))
            if len(pieces) > 1:
                out.word_positions += (len(out.input_ids),)
                out.word_pieces += (tuple(pieces),)
            out.input_ids.append(pieces[0])  # a split value's position: its embedding is replaced by the pieces' mean
        out.input_ids += self._ids(" loss")
        return out

    def _encode_verbose(self, pairs: list[tuple[str, Any]], as_number: list[bool], final: bool) -> Encoded:
        out = Encoded(input_ids=[])
        pending = ""
        for (key, value), number in zip(pairs, as_number):
            if number:
                out.input_ids += self._ids(pending + f"{short_name(key)}:")
                self._placeholder(out, key, value)
                pending = " loss:" if key == FRACTION_FIELD else "\n"
                continue
            text = format_value(value)
            pending += f"{short_name(key)}: {text}" + (" loss:" if key == FRACTION_FIELD else "\n")
        if final:
            pending += "final loss:"
        out.input_ids += self._ids(pending)
        return out

    def _finish(self, out: Encoded) -> Encoded:
        """The target position (the prompt's last token) and, for an encoder, its [CLS] / [SEP] (as it was pretrained:
        sentence-transformers mean-pool over them too)."""
        out.target_position = len(out.input_ids) - 1
        tok = self.tokenizer
        if not self.is_decoder and tok.cls_token_id is not None:
            out.input_ids.insert(0, tok.cls_token_id)
            out.num_positions = [p + 1 for p in out.num_positions]
            out.word_positions = tuple(p + 1 for p in out.word_positions)
            out.target_position += 1
        if not self.is_decoder and tok.sep_token_id is not None:
            out.input_ids.append(tok.sep_token_id)
        return out

    def text(self, row: dict[str, Any], fraction: float | None = None) -> str:
        """The serialised text, placeholders shown as NUM_TOKEN, a split word as its pieces (inspection, tests)."""
        encoded = self.encode(row, fraction)
        pieces = dict(zip(encoded.word_positions, encoded.word_pieces))
        ids = [i for position, token in enumerate(encoded.input_ids) for i in pieces.get(position, (token,))]
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return f"{float(value):.6g}"
    return str(value)
