"""Gadre et al. hyperparameter grid (`exp_data/grid.json`): 435 runs, key -> final loss.

A key reads ``d=<width>_l=<layers>_h=<heads>-<bs>-<lr>-<wd>-<bs>-<tokens>-<warmup>-<cooldown lr>``;
the batch size (sequences of 2048) appears twice and must agree. Non-embedding parameters follow
open_lm's count as the models' `params_no_embed` does (blocks, norms and the untied output layer),
which a test checks against those files. The repository does not say which validation set the
grid losses come from, so their loss kind is plain ``val``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.errors import DataError
from ncpl.schema import RunRecord
from ncpl.sources import Row
from ncpl.sources._files import read_json
from ncpl.validation import validate

SEQ_LEN = 2048
VOCAB = 50432
_SHAPE = re.compile(r"d=(\d+)_l=(\d+)_h=(\d+)")
_KEY = re.compile(r"^(d=\d+_l=\d+_h=\d+)-(\d+)-([0-9.eE+-]+?)-([0-9.eE+-]+?)-(\d+)-(\d+)-(\d+)-([0-9.eE+-]+)$")


def shape_of(model: str) -> dict[str, int]:
    """d_model, n_layers, n_heads, d_ff of an open_lm shape name (empty for named models like open_lm_1b)."""
    match = _SHAPE.search(model)
    if not match:
        return {}
    width, layers, heads = map(int, match.groups())
    return {"d_model": width, "n_layers": layers, "n_heads": heads, "d_ff": swiglu_hidden(width)}


def swiglu_hidden(width: int) -> int:
    """open_lm's SwiGLU hidden size: 2/3 of 4 x width, rounded up to a multiple of 256."""
    return 256 * ((int(2 * 4 * width / 3) + 255) // 256)


def params_no_embed(width: int, layers: int) -> int:
    per_layer = 4 * width * width + 3 * width * swiglu_hidden(width) + 2 * width
    return layers * per_layer + width + width * VOCAB


def record(key: str, loss: Any) -> RunRecord:
    match = _KEY.match(key)
    if not match:
        raise DataError(f"grid key {key!r} does not read <shape>-<bs>-<lr>-<wd>-<bs>-<tokens>-<warmup>-<cd>")
    shape_name, bs, lr, wd, bs_again, tokens, warmup, cooldown = match.groups()
    if bs != bs_again:
        raise DataError(f"grid key {key!r}: the two batch-size fields differ ({bs} vs {bs_again})")
    shape = shape_of(shape_name)
    sequences = int(bs)
    config = {
        "source": "gadre-grid",
        "model": {
            "n_params": params_no_embed(shape["d_model"], shape["n_layers"]),
            **shape,
            "seq_len": SEQ_LEN,
            "vocab_size": VOCAB,
        },
        "data": {"tokens": int(tokens)},
        "optimizer": {"name": "adamw", "lr": float(lr), "weight_decay": float(wd)},
        "schedule": {
            "name": "cosine",
            "warmup_steps": int(warmup),
            "min_lr": float(cooldown),
            "total_steps": round(int(tokens) / (sequences * SEQ_LEN)),
        },
        "batch": {"sequences": sequences, "tokens": sequences * SEQ_LEN},
    }
    return validate(
        RunRecord, {"run_id": f"gadre-grid/{key}", "config": config, "final_loss": loss, "loss_kind": "val"}
    )


def rows(path: Path) -> Iterator[Row]:
    grid = read_json(path)
    if not isinstance(grid, dict):
        raise DataError(f"{path}: expected a JSON object of key -> loss")
    for number, (key, loss) in enumerate(grid.items(), start=1):
        yield Row(f"{path}: entry {number} ({key})", 1, lambda key=key, loss=loss: record(key, loss))
