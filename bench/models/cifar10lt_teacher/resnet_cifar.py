"""CIFAR-style ResNet (He et al., 2016, section 4.2): the ResNet-32 teacher of DeiT-LT on CIFAR-LT.

transformers' `ResNetForImageClassification` has an ImageNet stem (7x7 stride-2 conv + max pool) that shrinks a 32-px
image to 8 px before the first stage; the CIFAR ResNet keeps the full resolution: 3x3 conv stem with 16 channels,
three stages of n BasicBlocks (16, 32, 64 channels; the last two stages halve the resolution), global average pooling
and a linear head. depth = 6n + 2 (ResNet-20/32/44/56/110: n = 3/5/7/9/18). Shortcuts are option A (the paper's
CIFAR choice): a strided identity zero-padded with extra channels, no parameters.

Parameter names follow the official LDAM-DRW `models/resnet_cifar.py` (kaidic/LDAM-DRW): `conv1`, `bn1`, `layer1..3`
(`.i.conv1/bn1/conv2/bn2`), `linear`, so its checkpoints load after stripping DDP's `module.` prefix.
`convert_paco_resnet32_state_dict` ports the PaCo(+SAM) teachers released with DeiT-LT (val-iisc/DeiT-LT).

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.utils import logging
from transformers.utils.generic import can_return_tuple

from .losses import build_labels_loss, check_problem_type

SHORTCUT_TYPES = ("A", "B")
# MoCo's training-only parts (val-iisc/DeiT-LT moco/builder.py): the query encoder's projection to the MoCo space
# (`encoder_q.fc`, an MLP with `mlp`), the momentum key encoder and its head, the queue of keys and their labels.
MOCO_TRAINING_ONLY = ("encoder_q.fc.", "encoder_k.", "linear_k.", "queue", "queue_l", "queue_ptr")

logger = logging.get_logger(__name__)


class ResNetCifarConfig(PreTrainedConfig):
    r"""Configuration of [`ResNetCifarForImageClassification`].

    Args:
        depth (`int`, defaults to 32): 6n + 2; n BasicBlocks per stage (ResNet-32: n = 5).
        num_channels (`int`, defaults to 3): input channels.
        base_width (`int`, defaults to 16): channels of the stem and the first stage; the stages have
            `base_width * (1, 2, 4)` channels.
        shortcut_type (`str`, defaults to `"A"`): `"A"` zero-padded strided identity (official LDAM-DRW / PaCo CIFAR
            ResNets), `"B"` 1x1 conv + BatchNorm projection.
        use_norm (`bool`, defaults to `False`): cosine head (LDAM's `NormedLinear`: logits are cosines between the
            normalised feature and class weights, `linear.weight` of shape `[features, classes]`, no bias).
        num_labels / id2label / label2id: the classes.

    Example:
    ```python
    >>> from modeling_livt import ResNetCifarConfig, ResNetCifarForImageClassification
    >>> teacher = ResNetCifarForImageClassification(ResNetCifarConfig(num_labels=10))  # ResNet-32, 0.46M parameters
    ```
    """

    model_type = "resnet_cifar"

    depth: int = 32
    num_channels: int = 3
    base_width: int = 16
    shortcut_type: str = "A"
    use_norm: bool = False
    batch_norm_eps: float = 1e-5
    batch_norm_momentum: float = 0.1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_resnet_cifar()

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    def validate_resnet_cifar(self):
        """Raise `ValueError` naming the field for inconsistent values."""
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth={self.depth!r} must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...).")
        if self.shortcut_type not in SHORTCUT_TYPES:
            raise ValueError(f"Unknown shortcut_type={self.shortcut_type!r}; choose one of {list(SHORTCUT_TYPES)}.")
        for name in ("num_channels", "base_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if self.shortcut_type == "A" and self.base_width % 2:
            raise ValueError(f"base_width={self.base_width} must be even for option-A shortcuts (zero padding).")
        check_problem_type(self.problem_type)


class ResNetCifarShortcutA(nn.Module):
    """Option A: `x[:, :, ::stride, ::stride]` zero-padded from `in_planes` to `planes` channels (half on each side:
    `planes // 4` per side when the width doubles, as LDAM-DRW's `LambdaLayer`). No parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad_front = (planes - in_planes) // 2
        self.pad_back = planes - in_planes - self.pad_front

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states[:, :, :: self.stride, :: self.stride]
        return F.pad(hidden_states, (0, 0, 0, 0, self.pad_front, self.pad_back), "constant", 0.0)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


class ResNetCifarBasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), 3x3 convs without bias."""

    def __init__(self, config: ResNetCifarConfig, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        bn = dict(eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, **bn)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, **bn)
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif config.shortcut_type == "A":
            self.shortcut = ResNetCifarShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes, **bn)
            )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(hidden_states)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(hidden_states))


class ResNetCifarNormedLinear(nn.Module):
    """LDAM's cosine classifier: normalize(x) @ normalize(W, dim=0), `weight [in_features, out_features]`."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1).mm(F.normalize(self.weight, dim=0))


class ResNetCifarPreTrainedModel(PreTrainedModel):
    config_class = ResNetCifarConfig
    config: ResNetCifarConfig
    base_model_prefix = "resnet_cifar"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["ResNetCifarBasicBlock"]
    accepts_loss_kwargs = False  # mean-reduced loss: let Trainer divide by gradient-accumulation steps

    @torch.no_grad()
    def _init_weights(self, module):
        """LDAM-DRW / PaCo init: kaiming_normal (fan_in) conv and linear weights, PyTorch-default linear bias,
        BatchNorm 1/0. Only tensors missing from a checkpoint reach here."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.kaiming_normal_(module.weight)
            if module.bias is not None:
                bound = 1.0 / math.sqrt(module.weight.shape[1])
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, ResNetCifarNormedLinear):
            weight = module.weight
            if not getattr(weight, "_is_hf_initialized", False):  # uniform(-1, 1), unit columns (LDAM)
                weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)


class ResNetCifarForImageClassification(ResNetCifarPreTrainedModel):
    """CIFAR ResNet (ResNet-32 by default) with a linear head.

    `forward(pixel_values [N, C, H, W], labels=None)` -> `ImageClassifierOutput(loss, logits [N, classes],
    hidden_states)`; `labels` may be int `[N]` or soft `[N, classes]` (cross-entropy either way), or multi-hot
    `[N, classes]` under `config.problem_type="multi_label_classification"` (BCE with logits); `return_dict=False`
    (argument or config) gives `output.to_tuple()`. With
    `output_hidden_states=True`, `hidden_states` = (stem, layer1, layer2, layer3) feature maps: a 32x32 input gives
    32x32, 32x32, 16x16 and 8x8 maps.
    """

    def __init__(self, config: ResNetCifarConfig):
        config.validate_resnet_cifar()
        super().__init__(config)
        self.num_labels = config.num_labels
        width = config.base_width
        self.conv1 = nn.Conv2d(config.num_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        in_planes = width
        for index, (planes, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2)), start=1):
            blocks = []
            for block_stride in [stride] + [1] * (config.blocks_per_stage - 1):
                blocks.append(ResNetCifarBasicBlock(config, in_planes, planes, block_stride))
                in_planes = planes
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.num_features = in_planes
        if config.use_norm:
            self.linear = ResNetCifarNormedLinear(in_planes, config.num_labels)
        else:
            self.linear = nn.Linear(in_planes, config.num_labels)
        self.post_init()

    @property
    def loss_fct(self) -> nn.Module:
        """The loss of `forward(labels=...)`: soft-target cross-entropy, or BCE with logits under
        `config.problem_type="multi_label_classification"`; `"regression"` raises `ValueError`."""
        return build_labels_loss("ce", problem_type=self.config.problem_type)

    def forward_features(self, pixel_values: torch.Tensor, output_hidden_states: bool = False):
        """`[N, C, H, W]` -> (pooled features `[N, 4 * base_width]`, feature maps or None)."""
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must be [batch, {self.config.num_channels}, height, width], "
                f"got {tuple(pixel_values.shape)}."
            )
        hidden_states = F.relu(self.bn1(self.conv1(pixel_values)))
        maps = [hidden_states]
        for stage in (self.layer1, self.layer2, self.layer3):
            hidden_states = stage(hidden_states)
            maps.append(hidden_states)
        pooled = hidden_states.mean(dim=(2, 3))  # global average pooling
        return pooled, (tuple(maps) if output_hidden_states else None)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput:
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        pooled, maps = self.forward_features(pixel_values, output_hidden_states=bool(output_hidden_states))
        logits = self.linear(pooled)
        loss = self.loss_fct(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=maps)


# ---------------------------------------------------------------------------------------------------------------------
# Weight ports
# ---------------------------------------------------------------------------------------------------------------------
def convert_paco_resnet32_state_dict(state_dict, return_dropped: bool = False):
    """Map a PaCo CIFAR ResNet checkpoint (the DeiT-LT teachers) to `ResNetCifarForImageClassification` keys.

    Layout of the released teachers (e.g. `paco_sam_ckpt_cf10_if100.pth.tar`), as val-iisc/DeiT-LT `main.py` loads
    them with `--paco`: `checkpoint["state_dict"]` holds a DDP-wrapped `moco.builder.MoCo` around
    `teacher_models/resnet_cifar_paco.resnet32`: `module.encoder_q.{conv1,bn1,layer1..3}.*` (the backbone),
    `module.encoder_q.fc.*` (the contrastive projection, dropped), `module.linear.{weight,bias}` (the classifier on the
    pooled 64-d feature: MoCo's inference logits), and training-only `encoder_k.*`, `linear_k.*`, `queue`, `queue_l`,
    `queue_ptr` (dropped). Plain (non-MoCo) `resnet_cifar_paco.ResNet_s` (head `fc`) and LDAM-DRW `ResNet_s` (head
    `linear`) state dicts are accepted too. The whole checkpoint dict (with `state_dict` / `model`) may be passed.

    Checked against val-iisc/DeiT-LT `moco/builder.py` (`MoCo(base_encoder, dim, K, m, T, mlp, feat_dim, normalize,
    num_classes)`; the CIFAR teachers with `--paco --moco-dim 32 --moco-k 1024 --feat_dim 64`, `--mlp` True by
    default): `encoder_q = base_encoder(num_classes=dim)`, so `encoder_q.fc` is the projection to the 32-d MoCo space
    (`fc.0` Linear 64-64, `fc.1` BatchNorm1d, `fc.3` Linear 64-32 with `mlp`), not a classifier; `MoCo._inference`
    returns `self.linear(avgpool features of encoder_q)`: MoCo's `linear` is the head.

    Note: MoCo's `normalize=True` variant (features L2-normalised before `linear`) cannot be told from the weights;
    the official CIFAR scripts use the default `normalize=False`, which this port assumes.

    Returns the converted state dict, or `(converted, dropped)` with `return_dropped=True`: `dropped` lists the source
    keys (as the checkpoint spells them, `module.` included) left out; they are also logged. A MoCo checkpoint with a
    key that is neither the query backbone, the head nor one of MoCo's training-only parts is refused (the official
    loader is `strict=True`).
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    elif "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    original_names = {(k[len("module."):] if k.startswith("module.") else k): k for k in state_dict}
    state_dict = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    backbone = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
    converted, dropped = {}, []
    if any(k.startswith("encoder_q.") for k in state_dict):  # PaCo / MoCo wrapper
        unknown = []
        for key, value in state_dict.items():
            if key.startswith("encoder_q.") and key[len("encoder_q."):].startswith(backbone):
                converted[key[len("encoder_q."):]] = value
            elif key in ("linear.weight", "linear.bias"):
                converted[key] = value
            elif key.startswith(MOCO_TRAINING_ONLY):
                dropped.append(original_names[key])
            else:
                unknown.append(original_names[key])
        if unknown:
            raise ValueError(f"PaCo checkpoint with keys outside MoCo's layout (val-iisc/DeiT-LT moco/builder.py): "
                             f"{unknown[:8]}")
        if "linear.weight" not in converted:
            raise ValueError("PaCo checkpoint without the `linear` classifier: cannot build the teacher's head.")
    else:  # a plain CIFAR ResNet
        for key, value in state_dict.items():
            if key.startswith(backbone):
                converted[key] = value
            elif key.startswith(("fc.", "linear.")):
                converted["linear." + key.split(".", 1)[1]] = value
            else:
                dropped.append(original_names[key])
    if "conv1.weight" not in converted:
        raise ValueError(f"Not a CIFAR ResNet checkpoint: no `conv1.weight` among {sorted(state_dict)[:8]}...")
    if dropped:
        logger.info("PaCo/CIFAR ResNet port: dropped %d training-only tensors: %s", len(dropped), ", ".join(dropped))
    return (converted, dropped) if return_dropped else converted


def resnet_cifar_config_from_state_dict(state_dict, **kwargs) -> ResNetCifarConfig:
    """Infer depth, width, shortcut type, head type and number of classes from a converted state dict."""
    blocks = {int(k.split(".")[1]) for k in state_dict if k.startswith("layer1.")}
    weight = state_dict["linear.weight"]
    use_norm = "linear.bias" not in state_dict
    num_labels = weight.shape[1] if use_norm else weight.shape[0]
    shortcut = "B" if any(".shortcut." in k for k in state_dict) else "A"
    fields = dict(
        depth=6 * len(blocks) + 2, num_channels=state_dict["conv1.weight"].shape[1],
        base_width=state_dict["conv1.weight"].shape[0], shortcut_type=shortcut, use_norm=use_norm,
    )
    if "id2label" not in kwargs:
        fields["num_labels"] = num_labels
    return ResNetCifarConfig(**{**fields, **kwargs})


__all__ = [
    "ResNetCifarConfig",
    "ResNetCifarPreTrainedModel",
    "ResNetCifarForImageClassification",
    "convert_paco_resnet32_state_dict",
    "resnet_cifar_config_from_state_dict",
]
