"""Long-tail losses: Bal-BCE (LiVT), Bal-CE (logit adjustment), plain BCE / soft-target CE, the DeiT-LT
distillation loss and class-balanced (effective-number) weights.

All losses take `logits [B, C]` and `targets` as int labels `[B]` or soft targets `[B, C]` (mixup / cutmix with
label smoothing folded in). The prior only enters the *training* loss; model logits are never adjusted.
The class prior is kept as a Python list and turned into a tensor on first use on a device, so the modules hold
no tensor state (they are safe to build on the meta device inside `from_pretrained`).

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_vit import LOSS_TYPES, MULTI_LABEL, check_problem_type

# what `build_loss` builds: the losses a ViT config may name (`LOSS_TYPES`) and LDAM, the teachers' margin loss
BUILD_LOSS_TYPES = (*LOSS_TYPES, "ldam")


def _check_counts(class_counts, require_positive=True):
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.tolist()
    counts = [float(c) for c in class_counts]
    if len(counts) == 0:
        raise ValueError("`class_counts` is empty: pass one training count per class.")
    for index, count in enumerate(counts):
        if math.isnan(count) or math.isinf(count):
            raise ValueError(f"`class_counts` entry for class {index} is {count}; counts must be finite.")
        if count < 0 or (require_positive and count <= 0):
            raise ValueError(
                f"Class {index} has {count:g} training images: a balanced loss needs every class present "
                "(log-prior -inf). Add images of that class or drop it from the label set."
            )
    return counts


def check_class_balanced_beta(beta: float, name: str = "beta") -> None:
    """The effective-number beta must be in [0, 1); `ValueError` names the argument (`name`). Trainers call it when
    they are built, so that a bad value fails at start-up rather than at the DRW point."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"{name}={beta} must be in [0, 1).")


def class_balanced_weights(class_counts, beta: float = 0.9999) -> torch.Tensor:
    """Effective-number class weights (Cui et al., 2019) as DeiT-LT uses them: w_c = (1 - beta) / (1 - beta^n_c),
    normalised so that they sum to the number of classes. Returns a float32 tensor `[C]`."""
    counts = torch.tensor(_check_counts(class_counts), dtype=torch.float64)
    check_class_balanced_beta(beta)
    weights = (1.0 - beta) / (1.0 - torch.pow(beta, counts))
    weights = weights / weights.sum() * len(counts)
    return weights.float()


def to_soft_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return `[B, C]` float targets: one-hot for int labels (validated), soft targets passed through (validated)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [batch, num_classes], got {tuple(logits.shape)}.")
    batch, num_classes = logits.shape
    if targets.dim() == 1 and not targets.is_floating_point():
        if targets.shape[0] != batch:
            raise ValueError(
                f"logits have shape {tuple(logits.shape)} but targets have shape {tuple(targets.shape)}: "
                "one label per example is needed."
            )
        if batch and (targets.min() < 0 or targets.max() >= num_classes):
            bad = targets[(targets < 0) | (targets >= num_classes)][0].item()
            raise ValueError(f"Label {bad} is outside [0, {num_classes}): check the label column and num_labels.")
        return F.one_hot(targets, num_classes).to(torch.float32)
    if targets.shape != logits.shape:
        raise ValueError(
            f"Soft targets have shape {tuple(targets.shape)} but logits have shape {tuple(logits.shape)}; "
            "pass int labels [B] or soft targets [B, C]."
        )
    return targets.to(torch.float32)


class _PriorLoss(nn.Module):
    """Shared bookkeeping: the class counts as Python floats and a per-device cache of the log prior."""

    def __init__(self, class_counts, tau: float = 1.0):
        super().__init__()
        self.class_counts = _check_counts(class_counts)
        self.tau = float(tau)
        self._cache = {}

    def log_prior(self, device) -> torch.Tensor:
        """log(pi_c), pi_c = n_c / N, float32 on `device` (computed in float64)."""
        key = ("log_prior", str(device))
        if key not in self._cache:
            counts = torch.tensor(self.class_counts, dtype=torch.float64)
            self._cache[key] = torch.log(counts / counts.sum()).float().to(device)
        return self._cache[key]

    def _check_width(self, logits):
        if logits.dim() != 2 or logits.shape[1] != len(self.class_counts):
            raise ValueError(
                f"logits have shape {tuple(logits.shape)} but the loss was built for {len(self.class_counts)} classes."
            )

    def extra_repr(self):
        return f"num_classes={len(self.class_counts)}, tau={self.tau}"


class BalancedBCELoss(_PriorLoss):
    """Bal-BCE (LiVT, eq. 6): BCE on z + tau * (log pi - log(1 - pi)), summed over classes, averaged over the batch.

    Args:
        class_counts: training images per class (all > 0).
        tau: strength of the adjustment (1.0 in the paper; the official code ignores it, we honour it).
    """

    def bias(self, device) -> torch.Tensor:
        key = ("bce_bias", str(device))
        if key not in self._cache:
            counts = torch.tensor(self.class_counts, dtype=torch.float64)
            prior = counts / counts.sum()
            if (prior >= 1).any():
                raise ValueError("Bal-BCE needs at least two classes with images (a class prior of 1 has no bias).")
            self._cache[key] = (torch.log(prior) - torch.log1p(-prior)).float().to(device)
        return self._cache[key]

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self._check_width(logits)
        targets = to_soft_targets(logits, targets)
        adjusted = logits.float() + self.tau * self.bias(logits.device)
        return F.binary_cross_entropy_with_logits(adjusted, targets, reduction="mean") * logits.shape[1]


class BalancedCELoss(_PriorLoss):
    """Bal-CE / logit adjustment (Menon et al.): soft-target cross-entropy on z + tau * log(pi)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self._check_width(logits)
        targets = to_soft_targets(logits, targets)
        adjusted = logits.float() + self.tau * self.log_prior(logits.device)
        return soft_target_cross_entropy(adjusted, targets)


class BCELoss(nn.Module):
    """Plain multi-label BCE with the same reduction as Bal-BCE (sum over classes, mean over the batch)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = to_soft_targets(logits, targets)
        return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="mean") * logits.shape[1]


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean over the batch of -sum_c y_c log softmax(z)_c (targets already `[B, C]`)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy for int labels or soft targets `[B, C]` (timm's SoftTargetCrossEntropy)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(logits, to_soft_targets(logits, targets))


def build_loss(loss_type: str, class_counts=None, tau: float = 1.0) -> nn.Module:
    """The training loss for `loss_type` in `BUILD_LOSS_TYPES`: a ViT's `LOSS_TYPES`, plus `"ldam"` (default
    margins), which the CNN teacher trains with (LDAM wants a cosine head, `ResNetCifarConfig(use_norm=True)`)."""
    if loss_type in ("bal_bce", "bal_ce"):
        if class_counts is None:
            raise ValueError(
                f"loss_type={loss_type!r} needs the training class counts: set `class_counts` in the config "
                "(the scripts fill it from the training split), or use loss_type='ce'/'bce'."
            )
        return BalancedBCELoss(class_counts, tau) if loss_type == "bal_bce" else BalancedCELoss(class_counts, tau)
    if loss_type == "bce":
        return BCELoss()
    if loss_type == "ce":
        return SoftTargetCrossEntropy()
    if loss_type == "ldam":
        if class_counts is None:
            raise ValueError("loss_type='ldam' needs the training class counts (its margins are per class).")
        return LDAMLoss(class_counts)
    raise ValueError(f"Unknown loss_type={loss_type!r}; choose one of {list(BUILD_LOSS_TYPES)}.")


class MultiLabelBCELoss(nn.Module):
    """`problem_type="multi_label_classification"`: BCE with logits over independent multi-hot targets `[B, C]`, mean
    over the B x C matrix, exactly as transformers' `ViTForImageClassification` (`BCEWithLogitsLoss()`). No class
    prior: the balanced losses are single-label."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.shape != logits.shape:
            raise ValueError(
                f"problem_type='multi_label_classification' takes multi-hot targets of the logits' shape "
                f"{tuple(logits.shape)}, got labels of shape {tuple(targets.shape)}; for one int label per example "
                "use problem_type='single_label_classification' (or None)."
            )
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def build_labels_loss(loss_type: str, class_counts=None, tau: float = 1.0, problem_type: str | None = None):
    """The loss a model's `forward(labels=...)` computes, from its config: `problem_type` None or
    `"single_label_classification"` -> `build_loss(loss_type, class_counts, tau)` (int labels or soft targets);
    `"multi_label_classification"` -> `MultiLabelBCELoss`; `"regression"` -> `ValueError`."""
    check_problem_type(problem_type)
    if problem_type == MULTI_LABEL:
        return MultiLabelBCELoss()
    return build_loss(loss_type, class_counts, tau)


def checked_class_weights(weights, name: str, num_classes: int | None = None) -> torch.Tensor | None:
    """`weights` as a float32 vector of finite, non-negative class weights (of `num_classes` entries when given), or
    None; `ValueError` names the argument otherwise."""
    if weights is None:
        return None
    weights = torch.as_tensor(weights, dtype=torch.float32)
    size = "" if num_classes is None else f"{num_classes} "
    if weights.dim() != 1 or (num_classes is not None and len(weights) != num_classes):
        raise ValueError(f"{name} must be a 1-D tensor of {size}class weights, got shape {tuple(weights.shape)}.")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative class weights.")
    return weights


class ClassWeightedLoss(nn.Module):
    """A loss with an optional `class_weights` vector, checked on every assignment: deferred re-weighting (DRW)
    swaps it in mid-training. `num_weighted_classes` (None: any length) is the length it must have."""

    num_weighted_classes: int | None = None

    @property
    def class_weights(self) -> torch.Tensor | None:
        return self._class_weights

    @class_weights.setter
    def class_weights(self, weights):
        self._class_weights = checked_class_weights(weights, "class_weights", self.num_weighted_classes)


class DeiTLTLoss(ClassWeightedLoss):
    """DeiT-LT loss: (1 - alpha) * cls_loss(cls_logits, targets) + alpha * dist_loss.

    dist_loss is the cross-entropy of the DIST head against the teacher's argmax on the same (augmented, mixed)
    batch; with `class_weights` (set at the DRW epoch) it is PyTorch's weighted mean sum(w_t * ce) / sum(w_t),
    w indexed by the teacher's class.

    Args:
        alpha: weight of the distillation term (0.5).
        class_weights: `[C]` weights or None (e.g. `class_balanced_weights(counts, 0.9999)`); settable later.
        cls_loss: loss for the CLS head; defaults to soft-target CE (give e.g. `BalancedBCELoss(counts)`).
    """

    def __init__(self, alpha: float = 0.5, class_weights=None, cls_loss: nn.Module | None = None):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1].")
        self.alpha = float(alpha)
        self.cls_loss = cls_loss if cls_loss is not None else SoftTargetCrossEntropy()
        self.class_weights = class_weights

    def distillation_loss(self, distillation_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        if teacher_logits.shape != distillation_logits.shape:
            raise ValueError(
                f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                f"{tuple(distillation_logits.shape)} differ: teacher and student need the same label space."
            )
        teacher_labels = teacher_logits.argmax(dim=-1)
        weight = None
        if self._class_weights is not None:
            if self._class_weights.shape[0] != distillation_logits.shape[1]:
                raise ValueError(
                    f"class_weights has {self._class_weights.shape[0]} entries for "
                    f"{distillation_logits.shape[1]} classes."
                )
            weight = self._class_weights.to(distillation_logits.device)
        return F.cross_entropy(distillation_logits.float(), teacher_labels, weight=weight)

    def forward(self, cls_logits, distillation_logits, targets, teacher_logits) -> torch.Tensor:
        cls_term = self.cls_loss(cls_logits, targets)
        dist_term = self.distillation_loss(distillation_logits, teacher_logits)
        return (1.0 - self.alpha) * cls_term + self.alpha * dist_term


class LDAMLoss(ClassWeightedLoss):
    """LDAM (Cao et al., NeurIPS 2019, official kaidic/LDAM-DRW `losses.py`): cross-entropy on s * (z - m_y).

    Per-class margins m_c proportional to n_c^(-1/4), scaled so that the largest (the rarest class) is `max_m`; the
    margin is taken off the target logit only, then the logits are scaled by `s` (LDAM pairs it with a cosine head,
    `ResNetCifarConfig(use_norm=True)`, whose logits lie in [-1, 1]). Soft targets `[B, C]` (mixup / label smoothing)
    take `z - y * m` off every class in proportion to its target mass: for one-hot targets that is exactly LDAM.

    `class_weights` (`[C]`, settable, e.g. `class_balanced_weights(counts, 0.9999)` from the DRW epoch: LDAM-DRW)
    makes the loss PyTorch's weighted mean sum_i w_i * ce_i / sum_i w_i with w_i = sum_c y_ic w_c (= w_{y_i} for
    int labels).

    Args:
        class_counts: training images per class (all > 0).
        max_m: the largest margin (0.5).
        s: logit scale (30).
        class_weights: optional class weights (None until the DRW point).
    """

    def __init__(self, class_counts, max_m: float = 0.5, s: float = 30.0, class_weights=None):
        super().__init__()
        counts = _check_counts(class_counts)
        if max_m < 0 or s <= 0:
            raise ValueError(f"LDAM needs max_m >= 0 and s > 0, got max_m={max_m}, s={s}.")
        raw = [count ** -0.25 for count in counts]
        self.margins = [m * (max_m / max(raw)) for m in raw]  # Python floats: no tensor state (meta-device safe)
        self.max_m = float(max_m)
        self.s = float(s)
        self.num_weighted_classes = len(self.margins)
        self.class_weights = class_weights

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[1] != len(self.margins):
            raise ValueError(
                f"logits have shape {tuple(logits.shape)} but the loss was built for {len(self.margins)} classes."
            )
        targets = to_soft_targets(logits, targets)
        margins = torch.tensor(self.margins, dtype=torch.float32, device=logits.device)
        log_probs = F.log_softmax(self.s * (logits.float() - targets * margins), dim=-1)
        per_example = -(targets * log_probs).sum(dim=-1)
        if self.class_weights is None:
            return per_example.mean()
        example_weights = targets @ self.class_weights.to(logits.device)
        return (example_weights * per_example).sum() / example_weights.sum()

    def extra_repr(self):
        weighted = self.class_weights is not None
        return f"num_classes={len(self.margins)}, max_m={self.max_m}, s={self.s}, weighted={weighted}"


__all__ = [
    "BUILD_LOSS_TYPES",
    "BCELoss",
    "BalancedBCELoss",
    "BalancedCELoss",
    "DeiTLTLoss",
    "LDAMLoss",
    "MultiLabelBCELoss",
    "SoftTargetCrossEntropy",
    "build_labels_loss",
    "build_loss",
    "class_balanced_weights",
    "soft_target_cross_entropy",
    "to_soft_targets",
]
