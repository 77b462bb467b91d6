import time
from pathlib import Path

import pytest
import torch

from ncpl.regressor.backbones import BUILTINS, Backbone, load_backbone

SENTENCE = "final loss: 2.5"


def _hidden(backbone: Backbone, text: str) -> torch.Tensor:
    batch = backbone.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return backbone.model(**batch).last_hidden_state


@pytest.mark.parametrize("spec, is_decoder", [("tiny-decoder", True), ("tiny-encoder", False)])
def test_tiny_backbones(spec, is_decoder):
    backbone = load_backbone(spec)
    assert backbone.is_decoder is is_decoder
    n_tokens = len(backbone.tokenizer(SENTENCE)["input_ids"])
    assert _hidden(backbone, SENTENCE).shape == (1, n_tokens, backbone.hidden_size)
    assert backbone.hidden_size == 32
    assert backbone.model.config.vocab_size == len(backbone.tokenizer)

    again = load_backbone(spec).model.state_dict()
    for name, tensor in backbone.model.state_dict().items():
        assert torch.equal(tensor, again[name]), name


def test_tiny_decoder_dtype():
    assert load_backbone("tiny-decoder", dtype=torch.bfloat16).model.dtype == torch.bfloat16


def test_minilm():
    backbone = load_backbone("all-minilm-l6-v2")
    assert not backbone.is_decoder
    assert backbone.hidden_size == 384
    a = _hidden(backbone, "the learning rate was 3e-4").mean(1)
    b = _hidden(backbone, "a completely unrelated sentence about cats").mean(1)
    assert a.shape == (1, 384)
    assert not torch.allclose(a, b, atol=1e-3)


def test_smollm2_gguf_then_cache(tmp_path: Path):
    start = time.perf_counter()
    first = load_backbone("smollm2-135m", cache_dir=tmp_path)
    gguf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    cached = load_backbone("smollm2-135m", cache_dir=tmp_path)
    cached_seconds = time.perf_counter() - start
    print(f"smollm2-135m: first (GGUF) load {gguf_seconds:.1f}s, cached load {cached_seconds:.1f}s")

    assert first.is_decoder and cached.is_decoder
    assert first.hidden_size == cached.hidden_size == 576
    assert cached.tokenizer.pad_token is not None

    folder = tmp_path / "backbones" / "smollm2-135m"
    names = {p.name for p in folder.iterdir()}
    assert any(n.endswith(".safetensors") for n in names), names
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= names, names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".gguf"))], names
    assert [p.name for p in folder.parent.iterdir()] == ["smollm2-135m"]  # no temp folder left

    hidden = _hidden(first, SENTENCE)
    assert hidden.shape[-1] == 576
    assert torch.isfinite(hidden).all()
    assert torch.allclose(hidden, _hidden(cached, SENTENCE), atol=1e-5)


@pytest.mark.parametrize("missing", ["folder", "hub-id"])
def test_unknown_spec(tmp_path: Path, monkeypatch, missing):
    if missing == "folder":
        spec = str(tmp_path / "no-such-backbone")
    else:  # offline, so the hub lookup fails at once instead of retrying for a minute
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
        spec = "no-such-org/no-such-backbone"
    with pytest.raises(ValueError, match="no-such-backbone") as raised:
        load_backbone(spec)
    assert all(name in str(raised.value) for name in BUILTINS)
