"""The NCPL network: backbone + numeric-field encoder + a linear head at the target position.

The head gives four numbers per example, all in units of the target scaling: the residual's
point estimate, its 10% and 90% quantiles (a prediction interval), and the logit of the run
diverging.
"""

from __future__ import annotations

import torch
from torch import nn

from ncpl.regressor.encoders import ENCODERS

OUTPUTS = ("mean", "q_lo", "q_hi", "diverge")
QUANTILES = (0.1, 0.9)


class NCPLNetwork(nn.Module):
    def __init__(
        self, backbone: nn.Module, hidden: int, is_decoder: bool, encoder: str = "fourier", **encoder_options: float
    ):
        super().__init__()
        self.backbone = backbone
        self.is_decoder = is_decoder
        # the backbone's blocks (Qwen3DecoderLayer, ...): what accelerate's TRANSFORMER_BASED_WRAP makes the FSDP units
        self._no_split_modules = list(getattr(backbone, "_no_split_modules", None) or [])
        words = backbone.get_input_embeddings().weight
        word_rms = float(words.detach().float().pow(2).mean().sqrt())
        self.encoder = ENCODERS[encoder](hidden, word_rms, **encoder_options)
        self.head = nn.Linear(hidden, len(OUTPUTS))
        self.share_prefix = True  # decoders at inference: compute a batch's shared leading positions once
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        num_mask: torch.Tensor,
        num_values: torch.Tensor,
        num_scales: torch.Tensor,
        name_ids: torch.Tensor,
        name_mask: torch.Tensor,
        target_position: torch.Tensor,
        word_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embeds = self.embed(input_ids, num_mask, num_values, num_scales, name_ids, name_mask, word_mask)
        if self.is_decoder:
            hidden = self._decode(embeds, attention_mask)
            state = hidden[torch.arange(len(hidden), device=hidden.device), target_position]
        else:
            hidden = self.backbone(inputs_embeds=embeds, attention_mask=unless_full(attention_mask)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            state = (hidden * mask).sum(1) / mask.sum(1)
        return self.head(state.to(self.head.weight.dtype))

    def embed(
        self,
        input_ids: torch.Tensor,
        num_mask: torch.Tensor,
        num_values: torch.Tensor,
        num_scales: torch.Tensor,
        name_ids: torch.Tensor,
        name_mask: torch.Tensor,
        word_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The backbone's input embeddings: word embeddings, the numbers' encodings at their placeholders, and the
        mean of its pieces' embeddings at each split word (compact serialization)."""
        words = self.backbone.get_input_embeddings()
        embeds = words(input_ids)
        if name_ids.numel():  # pooled id lists: the numbers' field names first, then the split words
            pooled = (words(name_ids) * name_mask.unsqueeze(-1)).sum(1) / name_mask.sum(1, keepdim=True).clamp_min(1)
            n_numbers = len(num_values)
            if n_numbers:
                names = pooled[:n_numbers].to(torch.float32)
                numbers = self.encoder(num_values.to(torch.float32), num_scales.to(torch.float32), names)
                embeds = embeds.masked_scatter(num_mask.unsqueeze(-1), numbers.to(embeds.dtype))
            if word_mask is not None and len(pooled) > n_numbers:
                embeds = embeds.masked_scatter(word_mask.unsqueeze(-1), pooled[n_numbers:].to(embeds.dtype))
        return embeds

    def _decode(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """A decoder's hidden states. At inference the positions every row of the batch shares (equal input
        embeddings, no padding: the words of a sweep's configs) run once, and the rest attend to their key/value
        cache; the result equals the full pass within float tolerance."""
        shared = shared_prefix(embeds, attention_mask) if self.share_prefix and not torch.is_grad_enabled() else 0
        mask = unless_full(attention_mask)
        if shared < 2 or len(embeds) < 2:
            return self.backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        prefix = self.backbone(inputs_embeds=embeds[:1, :shared], use_cache=True)
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(len(embeds))
        rest = self.backbone(
            inputs_embeds=embeds[:, shared:], attention_mask=mask, past_key_values=cache, use_cache=True
        )
        return torch.cat([prefix.last_hidden_state.expand(len(embeds), -1, -1), rest.last_hidden_state], dim=1)


def unless_full(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The mask, or None where no position is padding (every scoring batch: one sequence length each), so that
    attention runs without one: one MiniLM network scores 752 -> 858 configs/s in bf16, equal outputs
    (benchmarks/results/throughput.md)."""
    return None if bool(attention_mask.all()) else attention_mask


def shared_prefix(embeds: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading positions hold the same input embedding in every row, unpadded, leaving at least one position
    to compute per row."""
    same = (embeds == embeds[:1]).all(-1).all(0) & attention_mask.bool().all(0)
    return min(int(same.int().cumprod(0).sum()), embeds.shape[1] - 1)


def loss_terms(
    outputs: torch.Tensor,
    target: torch.Tensor,
    converged: torch.Tensor,
    is_final: torch.Tensor,
    diverged: torch.Tensor,
    huber_delta: float = 1.0,
) -> dict[str, torch.Tensor]:
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
        terms["diverge"] = nn.functional.binary_cross_entropy_with_logits(
            outputs[is_final, 3], diverged[is_final].to(outputs.dtype)
        )
    return terms
