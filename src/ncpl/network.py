"""The NCPL network: backbone + numeric-field encoder + a linear head at the target position.

The head gives four numbers per example, all in units of the target scaling: the residual's
point estimate, its 10% and 90% quantiles (a prediction interval), and the logit of the run
diverging.
"""

from __future__ import annotations

import torch
from torch import nn

from ncpl.encoders import ENCODERS

OUTPUTS = ("mean", "q_lo", "q_hi", "diverge")
QUANTILES = (0.1, 0.9)


class NCPLNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, hidden: int, is_decoder: bool, encoder: str = "fourier", **encoder_options: float):
        super().__init__()
        self.backbone = backbone
        self.is_decoder = is_decoder
        # the backbone's blocks (Qwen3DecoderLayer, ...): what accelerate's TRANSFORMER_BASED_WRAP makes the FSDP units
        self._no_split_modules = list(getattr(backbone, "_no_split_modules", None) or [])
        words = backbone.get_input_embeddings().weight
        word_rms = float(words.detach().float().pow(2).mean().sqrt())
        self.encoder = ENCODERS[encoder](hidden, word_rms, **encoder_options)
        self.head = nn.Linear(hidden, len(OUTPUTS))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_mask: torch.Tensor, num_values: torch.Tensor,
                num_scales: torch.Tensor, name_ids: torch.Tensor, name_mask: torch.Tensor, target_position: torch.Tensor) -> torch.Tensor:
        words = self.backbone.get_input_embeddings()
        embeds = words(input_ids)
        if num_mask.any():
            names = (words(name_ids) * name_mask.unsqueeze(-1)).sum(1) / name_mask.sum(1, keepdim=True).clamp_min(1)
            numbers = self.encoder(num_values.to(torch.float32), num_scales.to(torch.float32), names.to(torch.float32))
            embeds = embeds.masked_scatter(num_mask.unsqueeze(-1), numbers.to(embeds.dtype))
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        if self.is_decoder:
            state = hidden[torch.arange(len(hidden), device=hidden.device), target_position]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            state = (hidden * mask).sum(1) / mask.sum(1)
        return self.head(state.to(self.head.weight.dtype))


def loss_terms(outputs: torch.Tensor, target: torch.Tensor, converged: torch.Tensor, is_final: torch.Tensor,
               diverged: torch.Tensor, huber_delta: float = 1.0) -> dict[str, torch.Tensor]:
    """Huber on the point estimate and pinball on the quantiles (converged runs), BCE on divergence (final-loss examples)."""
    zero = outputs.sum() * 0.0
    terms = {"huber": zero, "pinball": zero, "diverge": zero}
    if converged.any():
        y = target[converged]
        out = outputs[converged]
        terms["huber"] = nn.functional.huber_loss(out[:, 0], y, delta=huber_delta)
        for column, q in zip((1, 2), QUANTILES):
            error = y - out[:, column]
            terms["pinball"] = terms["pinball"] + torch.maximum(q * error, (q - 1) * error).mean()
    if is_final.any():
        terms["diverge"] = nn.functional.binary_cross_entropy_with_logits(outputs[is_final, 3], diverged[is_final].to(outputs.dtype))
    return terms
