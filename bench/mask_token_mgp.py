"""The MGP variant that keeps the mask tokens in the encoder (all 1 + L tokens, the masked ones replaced by a learned
mask token): what MAE's token dropping saves, timed by `bench/speed.py` and counted by `bench/flops.py`."""

from __future__ import annotations

import torch
from torch import nn


class MaskTokenMGP(nn.Module):
    """MGP without MAE's token dropping: the encoder runs on CLS + all L patch tokens, the masked ones replaced by a
    learned mask token (SimMIM/BEiT-style), then the *same* decoder (embedding, blocks, pixel head) on all tokens and
    the same masked-patch loss. Shares the weights of the wrapped `LiVTForMaskedImageModeling`."""

    def __init__(self, mgp):
        super().__init__()
        self.mgp = mgp
        self.encoder_mask_token = nn.Parameter(torch.randn(1, 1, mgp.config.hidden_size) * 0.02)

    def forward(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None):
        config = self.mgp.config
        embeddings = self.mgp.livt.embeddings
        patches = embeddings.patch_embeddings(pixel_values)  # [N, L, D]
        batch_size, seq_length, _ = patches.shape
        len_keep = int(seq_length * (1 - config.mask_ratio))  # the same mask as MAE's random_masking
        if noise is None:
            noise = torch.rand(batch_size, seq_length, device=patches.device)
        ids_restore = torch.argsort(torch.argsort(noise, dim=1), dim=1)
        mask = (ids_restore >= len_keep).to(patches.dtype)  # [N, L], 1 = masked
        token = self.encoder_mask_token.to(patches.dtype)
        patches = patches * (1 - mask.unsqueeze(-1)) + token * mask.unsqueeze(-1)
        pos_embed = embeddings.position_embeddings
        patches = patches + pos_embed[:, 1:]
        cls = embeddings.cls_token + pos_embed[:, :1]
        hidden_states = torch.cat([cls.expand(batch_size, -1, -1), patches], dim=1)  # [N, 1 + L, D]
        hidden_states = self.mgp.livt.layers(hidden_states)  # the encoder's LongTailViTEncoder on all tokens
        hidden_states = self.mgp.livt.layernorm(hidden_states)
        decoder = self.mgp.decoder
        hidden_states = decoder.decoder_embed(hidden_states) + decoder.decoder_pos_embed  # already in patch order
        hidden_states = decoder.decoder_layers(hidden_states)
        pred = decoder.decoder_pred(decoder.decoder_norm(hidden_states))[:, 1:]
        return self.mgp.forward_loss(pixel_values, pred, mask)
