#!/usr/bin/env python
"""Analytic matmul FLOPs of the ViT training steps benchmarked in `bench/speed.py`.

Counted: every matrix product (1 multiply-add = 2 FLOPs) of the patch embedding (a strided conv = a matmul over
patches), the attention qkv and output projections, the attention scores (Q K^T) and weighted values (A V), the MLP,
the MGP decoder (embedding, blocks, pixel prediction) and the classification head(s). Not counted: LayerNorm, softmax,
GELU, residual adds, drop path, the loss, the optimizer (all O(tokens x width), memory-bound).

Training FLOPs = 3 x forward FLOPs (backward = grad w.r.t. inputs + grad w.r.t. weights, each about one forward):
the usual convention for model FLOPs utilisation (MFU). It slightly over-counts the patch embedding (no gradient w.r.t.
the pixels is needed); `python bench/flops.py --check` compares with `torch.utils.flop_counter.FlopCounterMode`.

    python bench/flops.py                 # ViT-B/16 224, the paper's 512-d 8-block decoder: MGP / supervised ~ 0.55
    python bench/flops.py --check         # and cross-check the formulas against FlopCounterMode on real models
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

TRAIN_MULTIPLIER = 3  # forward + backward (2x forward)


@dataclass(frozen=True)
class ViTDims:
    """Dimensions of an encoder (+ MGP decoder) as far as matmul FLOPs are concerned."""

    image_size: int = 224
    patch_size: int = 16
    hidden_size: int = 768
    num_hidden_layers: int = 12
    intermediate_size: int = 3072
    num_channels: int = 3
    num_labels: int = 1000
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_kept(self) -> int:
        """Patches the MGP encoder sees: MAE's `len_keep = int(L * (1 - mask_ratio))`."""
        return int(self.num_patches * (1 - self.mask_ratio))

    @classmethod
    def from_config(cls, config, num_labels: int | None = None) -> ViTDims:
        """From a `LiVTConfig` / `DeiTLTConfig` (decoder fields default to the paper's when the config has none)."""
        fields = {}
        for name in cls.__dataclass_fields__:
            if hasattr(config, name):
                fields[name] = getattr(config, name)
        if num_labels is not None:
            fields["num_labels"] = num_labels
        return cls(**fields)


# Named sizes (ViT-Ti/S/B/L encoders; decoders as `modeling_livt.models.configuration_livt.LIVT_PRESETS`).
PRESETS = {
    "tiny": ViTDims(hidden_size=192, num_hidden_layers=12, intermediate_size=768, decoder_hidden_size=128,
                    decoder_num_hidden_layers=4, decoder_intermediate_size=512),
    "small": ViTDims(hidden_size=384, num_hidden_layers=12, intermediate_size=1536, decoder_hidden_size=256,
                     decoder_num_hidden_layers=4, decoder_intermediate_size=1024),
    "base": ViTDims(),
    "large": ViTDims(hidden_size=1024, num_hidden_layers=24, intermediate_size=4096),
}


def linear_flops(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def block_flops(tokens: int, dim: int, mlp_dim: int) -> dict[str, int]:
    """One pre-norm transformer block on `tokens` tokens of width `dim` (the head count does not change FLOPs)."""
    return {
        "attention_qkv": linear_flops(tokens, dim, 3 * dim),
        "attention_scores": 2 * 2 * tokens * tokens * dim,  # Q K^T and A V, summed over heads
        "attention_proj": linear_flops(tokens, dim, dim),
        "mlp": linear_flops(tokens, dim, mlp_dim) + linear_flops(tokens, mlp_dim, dim),
    }


def _add(total: dict[str, int], part: dict[str, int], times: int = 1, prefix: str = "") -> dict[str, int]:
    for key, value in part.items():
        total[prefix + key] = total.get(prefix + key, 0) + times * value
    return total


def _with_total(parts: dict[str, int]) -> dict[str, int]:
    parts = {k: int(v) for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def patch_embed_flops(dims: ViTDims, patches: int | None = None) -> int:
    patches = dims.num_patches if patches is None else patches
    return linear_flops(patches, dims.num_channels * dims.patch_size**2, dims.hidden_size)


def classifier_forward_flops(dims: ViTDims, num_prefix_tokens: int = 1, num_heads: int = 1) -> dict[str, int]:
    """Supervised ViT forward per image: LiVT (CLS + mean pooling, 1 head) or DeiT-LT (CLS + DIST, 2 heads)."""
    tokens = num_prefix_tokens + dims.num_patches
    parts = {"patch_embed": patch_embed_flops(dims)}
    _add(parts, block_flops(tokens, dims.hidden_size, dims.intermediate_size), dims.num_hidden_layers)
    parts["head"] = num_heads * linear_flops(1, dims.hidden_size, dims.num_labels)
    return _with_total(parts)


def _decoder_flops(dims: ViTDims, encoder_tokens: int) -> dict[str, int]:
    """MAE decoder: embed the encoder's tokens, blocks on CLS + all L patches, predict p*p*C pixels (CLS row too)."""
    tokens = 1 + dims.num_patches
    parts = {"decoder_embed": linear_flops(encoder_tokens, dims.hidden_size, dims.decoder_hidden_size)}
    _add(parts, block_flops(tokens, dims.decoder_hidden_size, dims.decoder_intermediate_size),
         dims.decoder_num_hidden_layers, prefix="decoder_")
    parts["decoder_pred"] = linear_flops(tokens, dims.decoder_hidden_size, dims.num_channels * dims.patch_size**2)
    return parts


def mgp_forward_flops(dims: ViTDims) -> dict[str, int]:
    """MGP (MAE) forward per image: all L patches embedded, the encoder on CLS + the kept `L * (1 - mask_ratio)`."""
    tokens = 1 + dims.num_kept
    parts = {"patch_embed": patch_embed_flops(dims)}
    _add(parts, block_flops(tokens, dims.hidden_size, dims.intermediate_size), dims.num_hidden_layers)
    _add(parts, _decoder_flops(dims, tokens))
    return _with_total(parts)


def mask_token_mgp_forward_flops(dims: ViTDims) -> dict[str, int]:
    """The MGP variant that keeps mask tokens in the encoder (SimMIM/BEiT-style): the encoder runs on CLS + all L
    tokens (masked ones replaced by a mask token), then the same decoder on all of them."""
    tokens = 1 + dims.num_patches
    parts = {"patch_embed": patch_embed_flops(dims)}
    _add(parts, block_flops(tokens, dims.hidden_size, dims.intermediate_size), dims.num_hidden_layers)
    _add(parts, _decoder_flops(dims, tokens))
    return _with_total(parts)


def training_flops(forward: dict[str, int] | int) -> int:
    total = forward["total"] if isinstance(forward, dict) else forward
    return TRAIN_MULTIPLIER * int(total)


def summary(dims: ViTDims) -> dict:
    """Per-image forward / training FLOPs of each step and the ratios `speed.py` compares its timings with."""
    supervised = classifier_forward_flops(dims)
    deit = classifier_forward_flops(dims, num_prefix_tokens=2, num_heads=2)
    mgp = mgp_forward_flops(dims)
    mask_token = mask_token_mgp_forward_flops(dims)
    return {
        "dims": asdict(dims),
        "forward_gflops_per_image": {
            "supervised": supervised["total"] / 1e9,
            "deit_lt": deit["total"] / 1e9,
            "mgp": mgp["total"] / 1e9,
            "mask_token_mgp": mask_token["total"] / 1e9,
        },
        "train_gflops_per_image": {
            "supervised": training_flops(supervised) / 1e9,
            "deit_lt": training_flops(deit) / 1e9,
            "mgp": training_flops(mgp) / 1e9,
            "mask_token_mgp": training_flops(mask_token) / 1e9,
        },
        "mgp_flop_ratio": mgp["total"] / supervised["total"],
        "mask_token_flop_ratio": mgp["total"] / mask_token["total"],
        "breakdown_forward": {"supervised": supervised, "mgp": mgp, "mask_token_mgp": mask_token},
    }


# ---------------------------------------------------------------------------------------------------------------------
# Cross-check against torch's FlopCounterMode on the real models (eager attention: CPU SDPA kernels are not counted)
# ---------------------------------------------------------------------------------------------------------------------
def counted_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def check(dims: ViTDims, batch_size: int = 2) -> dict:
    """Forward FLOPs of LiVT (classifier, MGP), DeiT-LT and the mask-token MGP variant counted by FlopCounterMode vs
    the formulas above (should agree to <0.1%), plus the counted backward/forward ratio of a training step."""
    import torch

    from modeling_livt import (
        DeiTLTConfig,
        DeiTLTForImageClassification,
        LiVTConfig,
        LiVTForImageClassification,
        LiVTForMaskedImageModeling,
    )

    torch.manual_seed(0)
    fields = {k: v for k, v in asdict(dims).items() if k not in ("num_labels",)}
    config = LiVTConfig(**fields, num_attention_heads=max(1, dims.hidden_size // 64),
                        decoder_num_attention_heads=max(1, dims.decoder_hidden_size // 32),
                        num_labels=dims.num_labels, attn_implementation="eager")
    pixels = torch.randn(batch_size, dims.num_channels, dims.image_size, dims.image_size)
    rows = {}

    from mask_token_mgp import MaskTokenMGP

    classifier = LiVTForImageClassification(config)
    rows["supervised"] = (counted_flops(lambda: classifier(pixels)), classifier_forward_flops(dims)["total"])
    forward = counted_flops(lambda: classifier(pixels))
    both = counted_flops(lambda: classifier(pixels).logits.sum().backward())
    rows["supervised_train_over_forward"] = (both / forward, TRAIN_MULTIPLIER)

    mgp = LiVTForMaskedImageModeling(config)
    rows["mgp"] = (counted_flops(lambda: mgp(pixels)), mgp_forward_flops(dims)["total"])
    mask_token = MaskTokenMGP(mgp)
    rows["mask_token_mgp"] = (counted_flops(lambda: mask_token(pixels)), mask_token_mgp_forward_flops(dims)["total"])

    deit_config = DeiTLTConfig(**{k: v for k, v in fields.items() if not k.startswith(("decoder", "mask"))},
                               num_attention_heads=max(1, dims.hidden_size // 64), num_labels=dims.num_labels,
                               attn_implementation="eager")
    deit = DeiTLTForImageClassification(deit_config)
    rows["deit_lt"] = (counted_flops(lambda: deit(pixels)),
                       classifier_forward_flops(dims, num_prefix_tokens=2, num_heads=2)["total"])
    out = {}
    for name, (counted, analytic) in rows.items():
        if name.endswith("over_forward"):
            out[name] = {"counted": counted, "analytic": analytic}
            continue
        counted_per_image = counted / batch_size
        out[name] = {"counted_gflops": counted_per_image / 1e9, "analytic_gflops": analytic / 1e9,
                     "relative_error": counted_per_image / analytic - 1}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base", choices=sorted(PRESETS))
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--patch_size", type=int, default=None)
    parser.add_argument("--check", action="store_true", help="Cross-check with FlopCounterMode on real models.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args(argv)
    dims = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("image_size", "patch_size") if getattr(args, k) is not None}
    if overrides:
        dims = ViTDims(**{**asdict(dims), **overrides})
    result = summary(dims)
    if args.check:
        result["check"] = check(dims)
    if args.json:
        print(json.dumps(result))
        return result
    print(f"{args.preset}: {dims}")
    for step, gflops in result["forward_gflops_per_image"].items():
        print(f"  {step:16s} forward {gflops:8.2f} GFLOPs/image   training {3 * gflops:8.2f}")
    print(f"  mgp_flop_ratio        (MGP / supervised)            = {result['mgp_flop_ratio']:.3f}")
    print(f"  mask_token_flop_ratio (MGP / mask-token encoder MGP) = {result['mask_token_flop_ratio']:.3f}")
    if args.check:
        print(json.dumps(result["check"], indent=2))
    return result


if __name__ == "__main__":
    main()
