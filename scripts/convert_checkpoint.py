#!/usr/bin/env python
"""Port official LiVT / MAE / DeiT-LT checkpoints and transformers ViTMAE / DeiT folders to modeling_livt models.

    python scripts/convert_checkpoint.py --source livt --checkpoint livt_vit_base_imagenet_lt.pth \
        --output_dir converted/livt-b --config_overrides "num_attention_heads=12"
    python scripts/convert_checkpoint.py --source vit_mae --checkpoint path/to/vit-mae-base --output_dir converted/mae
    python scripts/convert_checkpoint.py converted.json      # the same arguments as a .json file

The output folder loads with `AutoModelForImageClassification` (classifiers), `AutoModelForPreTraining` (MGP/MAE with
a decoder) or `AutoModel` (encoders), `from_pretrained(DIR, trust_remote_code=True)`, and carries its image processor.
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Literal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cli import parse_args  # noqa: E402

from modeling_livt.convert import convert_checkpoint  # noqa: E402


@dataclass
class ConvertArguments:
    source: Literal["livt", "mae", "vit_mae", "deit_lt", "deit"] = field(
        metadata={
            "help": "livt / mae: official .pth in timm's ViT layout (classifier, MGP/MAE with decoder, or encoder "
            "only); vit_mae: transformers ViTMAEForPreTraining/ViTMAEModel folder; deit_lt: official DeiT-LT .pth "
            "(timm VisionTransformerDistilled); deit: transformers DeiTForImageClassificationWithTeacher folder."
        }
    )
    checkpoint: str = field(metadata={"help": "The .pth file or the transformers model folder to convert."})
    output_dir: str = field(metadata={"help": "Where to write the converted model (save_pretrained)."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated config fields the tensors do not determine, e.g. "
            "'num_attention_heads=12,decoder_num_attention_heads=16,layer_norm_eps=1e-6'. Unknown keys are errors."
        },
    )
    allowed_classes: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated qualified names of extra classes the checkpoint pickles that "
            "torch.load(weights_only=True) may load (only for files you trust); argparse.Namespace is always allowed."
        },
    )


def main(argv=None):
    (args,) = parse_args(ConvertArguments, argv)
    model = convert_checkpoint(
        args.source,
        args.checkpoint,
        args.output_dir,
        config_overrides=args.config_overrides,
        allowed_classes=args.allowed_classes or (),
    )
    print(f"Converted {args.checkpoint} ({args.source}) -> {type(model).__name__} in {args.output_dir}")
    return model


if __name__ == "__main__":
    main()
