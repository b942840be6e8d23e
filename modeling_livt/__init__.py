"""modeling_livt: LiVT and DeiT-LT vision transformers for long-tailed data, as Hugging Face models.

Layout: `models/` (the remote-code model files: configs, the shared ViT, LiVT, DeiT-LT, the ResNet teacher, losses),
`data/` (long-tailed splits, loading, transforms, benchmark datasets), `evaluation/` (metrics, plots, post-hoc
fitting) and `hub/` (model cards, checkpoint ports). Importing the package does not import `datasets`.

Importing the package registers the configs and models with the transformers Auto classes and marks them for
remote code, so `save_pretrained` writes `auto_map` and copies the model files next to the weights.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

from .data.long_tail import long_tailed_counts, make_long_tailed
from .evaluation.metrics import long_tail_metrics
from .hub.convert import deit_lt_from_livt, load_deit_lt_student
from .models.configuration_deit_lt import DEIT_LT_PRESETS, DeiTLTConfig
from .models.configuration_livt import LIVT_PRESETS, LiVTConfig
from .models.configuration_vit import LongTailViTEncoderConfig
from .models.losses import (
    BalancedBCELoss,
    BalancedCELoss,
    BCELoss,
    DeiTLTLoss,
    LDAMLoss,
    SoftTargetCrossEntropy,
    build_loss,
    class_balanced_weights,
)
from .models.modeling_deit_lt import (
    DeiTLTForImageClassification,
    DeiTLTImageClassifierOutput,
    DeiTLTModel,
    DeiTLTPreTrainedModel,
)
from .models.modeling_livt import LiVTForImageClassification, LiVTForMaskedImageModeling, LiVTModel, LiVTPreTrainedModel
from .models.modeling_vit import (
    LongTailViTEncoder,
    LongTailViTEncoderModel,
    LongTailViTLayer,
    LongTailViTPreTrainedModel,
)
from .models.resnet_cifar import ResNetCifarConfig, ResNetCifarForImageClassification, convert_paco_resnet32_state_dict

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
_register(
    DeiTLTConfig,
    [(AutoModel, DeiTLTModel), (AutoModelForImageClassification, DeiTLTForImageClassification)],
)
_register(ResNetCifarConfig, [(AutoModelForImageClassification, ResNetCifarForImageClassification)])

__all__ = [
    "DEIT_LT_PRESETS",
    "LIVT_PRESETS",
    "BCELoss",
    "BalancedBCELoss",
    "BalancedCELoss",
    "DeiTLTConfig",
    "DeiTLTForImageClassification",
    "DeiTLTImageClassifierOutput",
    "DeiTLTLoss",
    "DeiTLTModel",
    "DeiTLTPreTrainedModel",
    "LDAMLoss",
    "LiVTConfig",
    "LiVTForImageClassification",
    "LiVTForMaskedImageModeling",
    "LiVTModel",
    "LiVTPreTrainedModel",
    "LongTailViTEncoder",
    "LongTailViTEncoderConfig",
    "LongTailViTEncoderModel",
    "LongTailViTLayer",
    "LongTailViTPreTrainedModel",
    "ResNetCifarConfig",
    "ResNetCifarForImageClassification",
    "SoftTargetCrossEntropy",
    "build_loss",
    "class_balanced_weights",
    "convert_paco_resnet32_state_dict",
    "deit_lt_from_livt",
    "long_tail_metrics",
    "load_deit_lt_student",
    "long_tailed_counts",
    "make_long_tailed",
]

