"""modeling_livt: LiVT and DeiT-LT vision transformers for long-tailed data, as Hugging Face models.

Importing the package registers the configs and models with the transformers Auto classes and marks them for
remote code, so `save_pretrained` writes `auto_map` and copies the model files next to the weights.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

from .configuration_livt import LIVT_PRESETS, LiVTConfig
from .losses import (
    BalancedBCELoss,
    BalancedCELoss,
    BCELoss,
    DeiTLTLoss,
    SoftTargetCrossEntropy,
    build_loss,
    class_balanced_weights,
)
from .modeling_livt import (
    LiVTForImageClassification,
    LiVTForMaskedImageModeling,
    LiVTModel,
    LiVTPreTrainedModel,
)

__version__ = "0.1.0"


def _register(config_cls, model_classes):
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    config_cls.register_for_auto_class()
    for auto_cls, model_cls in model_classes:
        auto_cls.register(config_cls, model_cls, exist_ok=True)
        model_cls.register_for_auto_class(auto_cls.__name__)


_register(
    LiVTConfig,
    [
        (AutoModel, LiVTModel),
        (AutoModelForImageClassification, LiVTForImageClassification),
        (AutoModelForPreTraining, LiVTForMaskedImageModeling),
    ],
)

__all__ = [
    "LIVT_PRESETS",
    "BCELoss",
    "BalancedBCELoss",
    "BalancedCELoss",
    "DeiTLTLoss",
    "LiVTConfig",
    "LiVTForImageClassification",
    "LiVTForMaskedImageModeling",
    "LiVTModel",
    "LiVTPreTrainedModel",
    "SoftTargetCrossEntropy",
    "build_loss",
    "class_balanced_weights",
]

# DeiT-LT and its CIFAR ResNet teacher
from .configuration_deit_lt import DEIT_LT_PRESETS, DeiTLTConfig  # noqa: E402
from .modeling_deit_lt import (  # noqa: E402
    DeiTLTForImageClassification,
    DeiTLTImageClassifierOutput,
    DeiTLTModel,
    DeiTLTPreTrainedModel,
)
from .resnet_cifar import (  # noqa: E402
    ResNetCifarConfig,
    ResNetCifarForImageClassification,
    convert_paco_resnet32_state_dict,
)

_register(
    DeiTLTConfig,
    [(AutoModel, DeiTLTModel), (AutoModelForImageClassification, DeiTLTForImageClassification)],
)
_register(ResNetCifarConfig, [(AutoModelForImageClassification, ResNetCifarForImageClassification)])

__all__ += [
    "DEIT_LT_PRESETS",
    "DeiTLTConfig",
    "DeiTLTForImageClassification",
    "DeiTLTImageClassifierOutput",
    "DeiTLTModel",
    "DeiTLTPreTrainedModel",
    "ResNetCifarConfig",
    "ResNetCifarForImageClassification",
    "convert_paco_resnet32_state_dict",
]
