"""The variants `bench/speed.py` times: each a full training step (forward, loss, backward, AdamW step) of one model
on the same batch, plus the MGP variant that keeps its mask tokens in the encoder and a matmul reference."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import flops as flop_counter
import torch
import torch.nn.functional as F
from mask_token_mgp import MaskTokenMGP

from modeling_livt import LIVT_PRESETS

# encoder dims (ViT-Ti/S/B) + MGP decoder: LiVT's presets; heads 64-d (ViT), decoder heads 32-d (MAE)
SIZES = {name: LIVT_PRESETS[name] for name in ("tiny", "small", "base")}

ALL_VARIANTS = ("livt", "timm_vit", "hf_vit", "deit_lt", "timm_deit", "deit_lt_teacher", "deit_lt_teacher_r50",
                "mgp", "mgp_mask_token", "matmul")



# ---------------------------------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    description: str
    step: object  # callable() -> None
    train_flops_per_image: float  # analytic (0 for the matmul reference)
    images_per_step: int
    flops_per_step: float = 0.0  # matmul reference only
    times: list = field(default_factory=list)


def long_tailed_counts(num_labels: int) -> list[int]:
    from modeling_livt.data.long_tail import long_tailed_counts as counts

    return counts(1000, num_labels, 100.0)


def build_variants(args, device: torch.device, pixels: torch.Tensor | None = None) -> dict[str, Variant]:
    """The variants named in `args.variants`, each stepping on the same batch (`pixels`, default N(0, 1) images)."""
    import timm
    from timm.models.deit import VisionTransformerDistilled
    from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

    from modeling_livt import (
        BalancedBCELoss,
        DeiTLTConfig,
        DeiTLTForImageClassification,
        DeiTLTLoss,
        LiVTConfig,
        LiVTForImageClassification,
        LiVTForMaskedImageModeling,
        ResNetCifarConfig,
        ResNetCifarForImageClassification,
    )

    size = dict(SIZES[args.size])
    enc = {k: v for k, v in size.items() if not k.startswith("decoder")}
    common = dict(image_size=args.image_size, patch_size=args.patch_size, **enc)
    num_labels, batch = args.num_labels, args.batch_size
    counts = long_tailed_counts(num_labels)
    dims = flop_counter.ViTDims(image_size=args.image_size, patch_size=args.patch_size, num_labels=num_labels,
                                mask_ratio=args.mask_ratio,
                                **{k: v for k, v in size.items() if "heads" not in k})
    sup_train = flop_counter.training_flops(flop_counter.classifier_forward_flops(dims))
    deit_train = flop_counter.training_flops(flop_counter.classifier_forward_flops(dims, 2, 2))
    mgp_train = flop_counter.training_flops(flop_counter.mgp_forward_flops(dims))
    mask_token_train = flop_counter.training_flops(flop_counter.mask_token_mgp_forward_flops(dims))

    generator = torch.Generator().manual_seed(0)
    if pixels is None:
        pixels = torch.randn(batch, 3, args.image_size, args.image_size, generator=generator)
    pixels = pixels.to(device)
    labels = torch.randint(0, num_labels, (batch,), generator=generator).to(device)
    fake_teacher_logits = torch.randn(batch, num_labels, generator=generator).to(device)
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16"
           else torch.autocast(device.type, dtype=torch.float16) if args.dtype == "fp16" else contextlib.nullcontext())
    attn = args.attn_implementation
    wanted = set(args.variants)
    variants: dict[str, Variant] = {}

    def optimizer_for(module):
        params = [p for p in module.parameters() if p.requires_grad]
        if args.optimizer == "sgd":
            return torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        # "adamw": torch's default implementation, what our trainers build (a per-parameter loop on CPU)
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, fused=args.optimizer == "adamw_fused" or None)

    def make_step(module, loss_of, pre=None):
        """A training step closure: forward under autocast, loss, backward, optimizer step, zero_grad."""
        module.to(device).train()
        optimizer = optimizer_for(module) if args.optimizer != "none" else None

        def step():
            with amp:
                extra = pre() if pre is not None else None
                loss = loss_of(module, extra)
            loss.backward()
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:
                module.zero_grad(set_to_none=True)

        return step

    bal_bce = BalancedBCELoss(counts)
    if "livt" in wanted or "mgp" in wanted or "mgp_mask_token" in wanted:
        config = LiVTConfig(**common, num_labels=num_labels, class_counts=counts, loss_type="bal_bce",
                            drop_path_rate=args.drop_path, attn_implementation=attn)
        model = LiVTForImageClassification(config)
        variants["livt"] = Variant("livt", "LiVTForImageClassification (mean pool + fc_norm, Bal-BCE)",
                                   make_step(model, lambda m, _: m(pixels, labels=labels).loss), sup_train, batch)
    if "timm_vit" in wanted:
        model = timm.models.vision_transformer.VisionTransformer(
            img_size=args.image_size, patch_size=args.patch_size, embed_dim=enc["hidden_size"],
            depth=enc["num_hidden_layers"], num_heads=enc["num_attention_heads"],
            mlp_ratio=enc["intermediate_size"] / enc["hidden_size"], qkv_bias=True, global_pool="avg", fc_norm=True,
            class_token=True, num_classes=num_labels, drop_path_rate=args.drop_path,
        )
        variants["timm_vit"] = Variant("timm_vit", "timm VisionTransformer (global_pool=avg, fc_norm), same loss",
                                       make_step(model, lambda m, _: bal_bce(m(pixels), labels)), sup_train, batch)
    if "hf_vit" in wanted:
        vit_config = ViTConfig(image_size=args.image_size, patch_size=args.patch_size, num_labels=num_labels,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **enc)
        vit_config._attn_implementation = attn
        model = ViTForImageClassification(vit_config)
        variants["hf_vit"] = Variant(
            "hf_vit", "transformers ViTForImageClassification (CLS head, no drop path), same loss on its logits",
            make_step(model, lambda m, _: bal_bce(m(pixel_values=pixels).logits, labels)), sup_train, batch)

    deit_loss = DeiTLTLoss(alpha=0.5, cls_loss=None)
    deit_config = DeiTLTConfig(**common, num_labels=num_labels, class_counts=counts, drop_path_rate=args.drop_path,
                               attn_implementation=attn)

    def deit_loss_of(teacher_logits_fn):
        def loss_of(m, extra):
            out = m(pixels)
            teacher_logits = extra if extra is not None else teacher_logits_fn()
            return deit_loss(out.cls_logits, out.distillation_logits, labels, teacher_logits)
        return loss_of

    if "deit_lt" in wanted:
        model = DeiTLTForImageClassification(deit_config)
        variants["deit_lt"] = Variant("deit_lt", "DeiTLTForImageClassification, DeiT-LT loss vs fixed teacher labels",
                                      make_step(model, deit_loss_of(lambda: fake_teacher_logits)), deit_train, batch)
    if "timm_deit" in wanted:
        model = VisionTransformerDistilled(
            img_size=args.image_size, patch_size=args.patch_size, embed_dim=enc["hidden_size"],
            depth=enc["num_hidden_layers"], num_heads=enc["num_attention_heads"],
            mlp_ratio=enc["intermediate_size"] / enc["hidden_size"], qkv_bias=True, num_classes=num_labels,
            drop_path_rate=args.drop_path,
        )
        model.set_distilled_training(True)

        def timm_deit_loss(m, _):
            cls_logits, dist_logits = m(pixels)
            return deit_loss(cls_logits, dist_logits, labels, fake_teacher_logits)

        variants["timm_deit"] = Variant("timm_deit", "timm VisionTransformerDistilled (two heads), same loss",
                                        make_step(model, timm_deit_loss), deit_train, batch)

    teachers = {}
    if "deit_lt_teacher" in wanted and args.teacher in ("resnet_cifar", "both"):
        teachers["deit_lt_teacher"] = (
            ResNetCifarForImageClassification(ResNetCifarConfig(depth=32, num_labels=num_labels)), 32,
            "ResNetCifar-32 (DeiT-LT CIFAR teacher) at 32 px")
    if args.teacher in ("resnet50", "both") and ("deit_lt_teacher_r50" in wanted or "deit_lt_teacher" in wanted):
        name = "deit_lt_teacher_r50" if args.teacher == "both" else "deit_lt_teacher"
        teachers[name] = (ResNetForImageClassification(ResNetConfig(num_labels=num_labels)), args.image_size,
                          "ResNet-50 (DeiT-LT ImageNet-LT teacher) at the student's size")
    teacher_flops = {}
    for name, (teacher, teacher_size, description) in teachers.items():
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        probe = torch.randn(1, 3, teacher_size, teacher_size, device=device)
        teacher_flops[name] = flop_counter.counted_flops(lambda t=teacher, x=probe: t(x))  # per image, forward

        def teacher_logits(t=teacher, s=teacher_size):
            x = pixels if s == args.image_size else F.interpolate(pixels, size=(s, s), mode="bicubic",
                                                                  align_corners=False)
            with torch.no_grad():
                return t(x).logits.float()

        model = DeiTLTForImageClassification(deit_config)
        variants[name] = Variant(
            name, f"DeiT-LT step + teacher forward: {description}",
            make_step(model, deit_loss_of(None), pre=teacher_logits), deit_train + teacher_flops[name], batch)
        variants[name].teacher_forward_flops = teacher_flops[name]

    if "mgp" in wanted or "mgp_mask_token" in wanted:
        mgp_config = LiVTConfig(**common, **{k: v for k, v in size.items() if k.startswith("decoder")},
                                mask_ratio=args.mask_ratio, norm_pix_loss=True, attn_implementation=attn)
        mgp = LiVTForMaskedImageModeling(mgp_config)
        if "mgp" in wanted:
            variants["mgp"] = Variant("mgp", "LiVTForMaskedImageModeling (MAE token dropping)",
                                      make_step(mgp, lambda m, _: m(pixels).loss), mgp_train, batch)
        if "mgp_mask_token" in wanted:
            variants["mgp_mask_token"] = Variant(
                "mgp_mask_token", "MGP with mask tokens kept in the encoder (same encoder + decoder weights)",
                make_step(MaskTokenMGP(mgp), lambda m, _: m(pixels)), mask_token_train, batch)
    if "livt" not in wanted:
        variants.pop("livt", None)

    if "matmul" in wanted:
        n = args.matmul_size
        matmul_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
            "fp32" if device.type == "cpu" else args.dtype]
        a = torch.randn(n, n, device=device, dtype=matmul_dtype)
        b = torch.randn(n, n, device=device, dtype=matmul_dtype)
        reps = args.matmul_reps

        def matmul_step():
            for _ in range(reps):
                torch.mm(a, b)

        variants["matmul"] = Variant("matmul", f"{n}x{n} {matmul_dtype} matmul x{reps} (FLOP/s reference)",
                                     matmul_step, 0.0, 0, flops_per_step=2.0 * n**3 * reps)
    return {name: variants[name] for name in ALL_VARIANTS if name in variants}
