#!/usr/bin/env python
"""Port official LiVT / MAE / DeiT-LT checkpoints and transformers ViTMAE / DeiT folders to modeling_livt models.

    python scripts/convert_checkpoint.py --source livt --checkpoint livt_vit_base_imagenet_lt.pth \
        --output_dir converted/livt-b --config_overrides "num_attention_heads=12"
    python scripts/convert_checkpoint.py --source vit_mae --checkpoint path/to/vit-mae-base --output_dir converted/mae
    python scripts/convert_checkpoint.py converted.json      # the same arguments as a .json file
    # a Hub-ready port: the official eval transform, a model card with the paper's numbers, pushed at the end
    python scripts/convert_checkpoint.py --source livt --checkpoint livt_imagenet_lt_224.pth --output_dir livt-b \
        --normalization imagenet_lt --reported_dataset ImageNet-LT \
        --reported_results "accuracy=60.9,many=73.6,medium=56.4,few=41.0" --push_to_hub --hub_model_id me/livt-b

The output folder loads with `AutoModelForImageClassification` (classifiers), `AutoModelForPreTraining` (MGP/MAE with
a decoder) or `AutoModel` (encoders), `from_pretrained(DIR, trust_remote_code=True)`, and carries the official
evaluation transform as its image processor and a model card (README.md). With --push_to_hub the Hub repository is
created first, so an offline machine fails before anything is converted or written.

Official DeiT-LT ImageNet-LT / iNat18 students output classes renumbered by training frequency (the official
`class_map`); the port renumbers their heads back to the dataset's label ids: from the checkpoint's pickled
`args.class_map` (by default), `--class_map FILE` or `--class_map_from_counts class_counts.json` (or the official
`ImageNet_LT_train.txt`). `--class_map none` keeps the official output order.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Literal

from transformers import AutoImageProcessor

from modeling_livt.data.transforms import get_normalization
from modeling_livt.hub.class_map import permute_classifier_labels, resolve_class_map
from modeling_livt.hub.convert import convert_checkpoint
from modeling_livt.hub.converted_card import parse_reported_results, write_converted_model_card
from modeling_livt.hub.repos import create_hub_repo, upload_model_folder
from trainers.arguments import explicit_flags
from trainers.cli import parse_args

PORTED_CLASS_MAP_FILE = "ported_class_map.json"  # the class map a port applied, next to the weights


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
    class_map: str | None = field(
        default=None,
        metadata={
            "help": "Renumber the ported heads to the dataset's label ids with this class map: a json list, "
            "class_map[dataset label] = the checkpoint's output index (the official DeiT-LT args.class_map); "
            "'checkpoint' reads the checkpoint's args.class_map; 'none' keeps the checkpoint's output order. "
            "Default for --source deit_lt: the checkpoint's args.class_map when it pickles one."
        },
    )
    class_map_from_counts: str | None = field(
        default=None,
        metadata={
            "help": "Build the class map as the official DeiT-LT code does (classes sorted by training count, "
            "descending) from the training counts in label order: a json list (class_counts.json) or the official "
            "split file (ImageNet_LT_train.txt: 'path label' lines)."
        },
    )


@dataclass
class ModelCardArguments:
    normalization: str | None = field(
        default=None,
        metadata={
            "help": "mean/std of the saved image processor: a preset (imagenet, imagenet_lt, inat18, cifar). Default: "
            "what the official code used: LiVT's args.dataset, ImageNet's for DeiT-LT, a folder's own processor."
        },
    )
    reported_results: str | None = field(
        default=None,
        metadata={
            "help": "The paper's numbers for this checkpoint, in percent, for the model card and its model-index: "
            "'accuracy=60.9,many=73.6,medium=56.4,few=41.0' (also head/mid/tail: DeiT-LT's sorted-index split)."
        },
    )
    reported_dataset: str | None = field(
        default=None, metadata={"help": "The dataset of --reported_results, e.g. 'ImageNet-LT' (required with it)."}
    )
    reported_split: str = field(default="test", metadata={"help": "The split of --reported_results."})
    source_url: str | None = field(
        default=None, metadata={"help": "Where the checkpoint was downloaded from (linked on the model card)."}
    )
    model_card: bool = field(default=True, metadata={"help": "Write README.md (the model card) into --output_dir."})
    push_to_hub: bool = field(
        default=False,
        metadata={"help": "Upload --output_dir to --hub_model_id. The repo is created before converting, so an "
                  "offline machine (HF_HUB_OFFLINE=1, no network) fails before any work."},
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "The Hub repository, e.g. 'username/livt-b'."})
    hub_private_repo: bool | None = field(
        default=None, metadata={"help": "Create the Hub repository as private (with --push_to_hub)."}
    )
    hub_token: str | None = field(
        default=None, metadata={"help": "Hub token (with --push_to_hub; default: the one of `hf auth login`)."}
    )


CLASS_MAP_SOURCES = ("livt", "deit_lt", "deit")  # the classifier sources whose heads can be renumbered


def main(argv=None):
    args, card_args = parse_args((ConvertArguments, ModelCardArguments), argv)
    given_maps = [f"--{name}" for name in ("class_map", "class_map_from_counts") if getattr(args, name) is not None]
    if len(given_maps) == 2:
        raise ValueError("--class_map and --class_map_from_counts both give the class map: give one.")
    if given_maps and args.source not in CLASS_MAP_SOURCES:
        raise ValueError(f"{given_maps[0]} renumbers a classifier's heads, and --source {args.source} ports no "
                         f"classifier: use it with --source {', '.join(CLASS_MAP_SOURCES)}.")
    if not card_args.push_to_hub:
        given = explicit_flags(card_args, ["hub_private_repo"])
        given += ["--hub_token ***"] if card_args.hub_token is not None else []  # never a token in a message
        if given:
            raise ValueError(f"{', '.join(given)}: they set the Hub upload, and nothing is pushed: add --push_to_hub "
                             "(or drop them).")
    reported = parse_reported_results(card_args.reported_results)  # bad input fails before anything is read
    if reported and not card_args.reported_dataset:
        raise ValueError("--reported_results needs --reported_dataset (the dataset they were measured on).")
    if card_args.normalization:
        get_normalization(card_args.normalization)
    if not os.path.exists(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint} not found.")
    if card_args.push_to_hub:
        if not card_args.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. 'username/livt-b').")
        if not card_args.model_card:
            raise ValueError("--push_to_hub uploads the model card too: drop --model_card false.")
        create_hub_repo(card_args.hub_model_id, args.output_dir, card_args.hub_private_repo, card_args.hub_token,
                        without="Convert without --push_to_hub")
    class_map, class_map_origin = None, "none"
    if given_maps or args.source == "deit_lt":  # resolved (and refused) before anything is written
        class_map, class_map_origin = resolve_class_map(
            args.checkpoint if args.source == "deit_lt" else None, args.class_map, args.class_map_from_counts,
            allowed_classes=args.allowed_classes.split(",") if args.allowed_classes else (),
        )
    model = convert_checkpoint(
        args.source,
        args.checkpoint,
        args.output_dir,
        config_overrides=args.config_overrides,
        allowed_classes=args.allowed_classes or (),
        normalization=card_args.normalization,
    )
    if class_map is not None:
        permute_classifier_labels(model, class_map)
        model.save_pretrained(args.output_dir)
        with open(os.path.join(args.output_dir, PORTED_CLASS_MAP_FILE), "w", encoding="utf-8") as f:
            json.dump({"class_map": class_map, "source": class_map_origin}, f)
        print(f"Renumbered the heads to the dataset's label ids (class map: {class_map_origin})")
    print(f"Converted {args.checkpoint} ({args.source}) -> {type(model).__name__} in {args.output_dir}")
    if card_args.model_card:
        card = write_converted_model_card(
            args.output_dir, model, args.source, args.checkpoint, AutoImageProcessor.from_pretrained(args.output_dir),
            reported_results=reported, reported_dataset=card_args.reported_dataset,
            reported_split=card_args.reported_split, repo_id=card_args.hub_model_id, source_url=card_args.source_url,
        )
        print(f"Model card: {card}")
    if card_args.push_to_hub:
        url = upload_model_folder(args.output_dir, card_args.hub_model_id, card_args.hub_token,
                                  commit_message=f"Port of {os.path.basename(args.checkpoint)} ({args.source})")
        print(f"Pushed to {card_args.hub_model_id}: {url}")
    return model


if __name__ == "__main__":
    main()
