"""Numeric-field encoders: a number in a config field -> one input embedding for the backbone.

- `MLPEncoder`, the paper's: Linear(1, 2H), ReLU, Linear(2H, H) on the value times a per-field
  scale. The paper picks the scales by hand (lr x 1e4, ...); here each field's scale is one over
  the median magnitude of its training values, so that any field gets one without a hand-picked
  constant (values of unseen fields pass unscaled). The paper writes each field's name as text
  before its number; the compact serialization does not, so there (`names=True`) the encoder adds
  the name embedding as the Fourier encoder does: without it two fields of equal scaled value
  would be the same token.
- `FourierEncoder`, the default: sign, log10 magnitude and sin/cos features of the log magnitude
  at geometric periods of 1 to 40 decades (`TrainConfig.fourier_min_period`), through an MLP, plus
  an embedding of the field's *name* taken from the backbone's own word embeddings of that name.
  Scale-free, so a new field or a value far outside the training range (a 10x larger model) lands
  somewhere sensible.

Both end in an RMS normalisation with a learned gain initialised to the RMS of the backbone's word
embeddings: raw MLP outputs are about 10x larger than the token embeddings around them.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Encoder(nn.Module):
    def __init__(self, hidden: int, word_rms: float):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([float(word_rms)]))  # 1-d: FSDP's fully_shard refuses 0-d parameters

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        gain = state_dict.get(prefix + "gain")
        if gain is not None and gain.dim() == 0:  # a model saved when the gain was a scalar
            state_dict[prefix + "gain"] = gain.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain


class MLPEncoder(_Encoder):
    def __init__(self, hidden: int, word_rms: float, names: bool = False):
        super().__init__(hidden, word_rms)
        self.mlp = nn.Sequential(nn.Linear(1, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden))
        self.name_projection = nn.Linear(hidden, hidden, bias=False) if names else None

    def forward(self, values: torch.Tensor, scales: torch.Tensor, name_embeddings: torch.Tensor) -> torch.Tensor:
        out = self.mlp((values * scales).unsqueeze(-1))
        return self._normalise(out if self.name_projection is None else out + self.name_projection(name_embeddings))


class FourierEncoder(_Encoder):
    def __init__(
        self, hidden: int, word_rms: float, n_frequencies: int = 16, min_period: float = 1.0, max_period: float = 40.0
    ):
        super().__init__(hidden, word_rms)
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), n_frequencies)
        self.register_buffer("frequencies", 2 * math.pi / periods, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(3 + 2 * n_frequencies, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.name_projection = nn.Linear(hidden, hidden, bias=False)

    def features(self, values: torch.Tensor) -> torch.Tensor:
        magnitude = torch.log10(values.abs().clamp_min(1e-30))
        zero = (values == 0).to(values.dtype)
        magnitude = magnitude * (1 - zero)
        angles = magnitude.unsqueeze(-1) * self.frequencies.to(values.dtype)
        return torch.cat(
            [
                torch.sign(values).unsqueeze(-1),
                zero.unsqueeze(-1),
                (magnitude / 10).unsqueeze(-1),
                angles.sin(),
                angles.cos(),
            ],
            dim=-1,
        )

    def forward(self, values: torch.Tensor, scales: torch.Tensor, name_embeddings: torch.Tensor) -> torch.Tensor:
        return self._normalise(self.mlp(self.features(values)) + self.name_projection(name_embeddings))


ENCODERS = {"fourier": FourierEncoder, "mlp": MLPEncoder}


def field_scales(values_by_field: dict[str, list[float]]) -> dict[str, float]:
    """One over the median magnitude of each field's non-zero training values."""
    scales = {}
    for name, values in values_by_field.items():
        magnitudes = sorted(abs(v) for v in values if v)
        scales[name] = 1.0 / magnitudes[len(magnitudes) // 2] if magnitudes else 1.0
    return scales
