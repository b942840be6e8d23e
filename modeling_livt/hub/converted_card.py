"""Model cards for ported checkpoints: the weights' origin, the paper, the numbers it reports, the eval transform.

`write_converted_model_card` renders `model_cards/converted.md.j2`. The paper's numbers are given by the user
(`parse_reported_results("accuracy=60.9,many=73.6,medium=56.4,few=41.0")`, in percent as papers print them) and go
into `model-index` with the paper as their source and `verified: false`: they are the authors' claim, not a
measurement made by the port.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data.official_eval import describe_eval_transform
from .model_card import CARD_METRICS, template_file_text, template_text


@dataclass(frozen=True)
class PaperReference:
    """The publication behind a family of checkpoints, as cited on the card."""

    method: str  # the name the card uses for the checkpoint's method
    method_code: str  # whose evaluation transform the processor reproduces
    title: str
    authors: str
    venue: str
    arxiv_url: str
    code_url: str
    bibtex: str


# The papers behind the checkpoint families (bibliographic data: `model_cards/papers.json`, shipped with the templates).
PAPERS = {name: PaperReference(**entry) for name, entry in json.loads(template_file_text("papers.json")).items()}

# per `convert_checkpoint` source: the paper, and how the card describes the file
SOURCE_PAPERS = {"livt": PAPERS["livt"], "mae": PAPERS["mae"], "vit_mae": PAPERS["mae"], "deit_lt": PAPERS["deit_lt"],
                 "deit": PAPERS["deit"]}
SOURCE_DESCRIPTIONS = {
    "livt": "an official `.pth` in timm's ViT layout",
    "mae": "an official `.pth` in timm's ViT layout",
    "vit_mae": "a transformers ViTMAE folder",
    "deit_lt": "an official `.pth` in timm's VisionTransformerDistilled layout",
    "deit": "a transformers DeiT (distilled) folder",
}

# Metrics a paper reports for a long-tailed benchmark, in percent; short names accepted on the command line.
REPORTED_METRICS = ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy",
                    "index_head_accuracy", "index_mid_accuracy", "index_tail_accuracy")
REPORTED_METRIC_ALIASES = {
    "overall": "accuracy", "many": "many_shot_accuracy", "medium": "medium_shot_accuracy",
    "few": "few_shot_accuracy", "head": "index_head_accuracy", "mid": "index_mid_accuracy",
    "tail": "index_tail_accuracy",
}


def parse_reported_results(results: str | Mapping[str, float] | None) -> dict[str, float]:
    """`"accuracy=60.9,many=73.6,medium=56.4,few=41.0"` (percent) -> `{"accuracy": 0.609, ...}` (fractions).

    Keys: `REPORTED_METRICS` or their short names (`overall`, `many`, `medium`, `few`, and DeiT-LT's sorted-index
    `head`, `mid`, `tail`). Values are percentages between 0 and 100. A mapping is read the same way.
    """
    if not results:
        return {}
    if isinstance(results, str):
        items = []
        for part in (p.strip() for p in results.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"reported result {part!r} is not key=value (e.g. 'accuracy=60.9,few=41.0').")
            items.append((key.strip(), value.strip()))
    else:
        items = list(results.items())
    allowed = sorted(set(REPORTED_METRICS) | set(REPORTED_METRIC_ALIASES))
    parsed: dict[str, float] = {}
    for key, value in items:
        metric = REPORTED_METRIC_ALIASES.get(key, key)
        if metric not in REPORTED_METRICS:
            raise ValueError(f"unknown reported metric {key!r}; use one of {allowed}.")
        if metric in parsed:
            raise ValueError(f"reported metric {metric!r} is given twice.")
        try:
            percent = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"reported {key}={value!r} is not a number (give percentages, e.g. 60.9).") from None
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"reported {key}={percent} is not a percentage between 0 and 100.")
        parsed[metric] = percent / 100.0
    return parsed


def _auto_class(model) -> tuple[str, bool]:
    name = type(model).__name__
    if name.endswith("ForImageClassification"):
        return "AutoModelForImageClassification", True
    if name.endswith("ForMaskedImageModeling"):
        return "AutoModelForPreTraining", False
    return "AutoModel", False


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


def architecture_rows(model) -> list[tuple[str, str]]:
    """(label, value) rows describing the ported model's shape, from its config."""
    config = model.config
    rows = [
        ("model class", f"`{type(model).__name__}` (`model_type` `{config.model_type}`)"),
        ("image size / patch size", f"{config.image_size} / {config.patch_size}"),
        ("width / depth / heads", f"{config.hidden_size} / {config.num_hidden_layers} / {config.num_attention_heads}"),
        ("parameters", _count(sum(p.numel() for p in model.parameters()))),
    ]
    if _auto_class(model)[1]:
        rows.append(("classes", str(config.num_labels)))
    if getattr(config, "pooling", None):
        rows.append(("pooling", str(config.pooling)))
    if getattr(config, "class_counts", None):
        counts = config.class_counts
        rows.append(("training images (from the checkpoint's args)",
                     f"{sum(counts):,}, imbalance {max(counts) / max(1, min(counts)):.0f}"))
    return rows


def write_converted_model_card(
    output_dir: str | os.PathLike,
    model,
    source: str,
    checkpoint: str | os.PathLike,
    image_processor,
    reported_results: Mapping[str, float] | None = None,
    reported_dataset: str | None = None,
    reported_split: str = "test",
    repo_id: str | None = None,
    source_url: str | None = None,
) -> Path:
    """Render `model_cards/converted.md.j2` into `output_dir/README.md` for a model ported by `convert_checkpoint`.

    `reported_results`: the paper's numbers as fractions (`parse_reported_results`); they need `reported_dataset`.
    `repo_id`: the Hub id the card's examples use (the output folder's name when None).
    """
    if source not in SOURCE_PAPERS:
        raise ValueError(f"unknown source {source!r}; choose one of {list(SOURCE_PAPERS)}.")
    unknown = sorted(set(reported_results or {}) - set(REPORTED_METRICS))
    if unknown:
        raise ValueError(f"unknown reported metrics {unknown}; use {list(REPORTED_METRICS)} (parse_reported_results).")
    # the card's order, whatever order they were given in
    reported_results = {key: reported_results[key] for key in REPORTED_METRICS if key in (reported_results or {})}
    if reported_results and not reported_dataset:
        raise ValueError("reported results need the dataset they were measured on (--reported_dataset, e.g. "
                         "'ImageNet-LT').")
    paper = SOURCE_PAPERS[source]
    output_dir = Path(output_dir)
    model_name = repo_id.split("/")[-1] if repo_id else output_dir.resolve().name
    auto_class, is_classifier = _auto_class(model)
    eval_results = [
        EvalResult(
            task_type="image-classification", dataset_type=reported_dataset, dataset_name=reported_dataset,
            dataset_split=reported_split, metric_type=key, metric_name=CARD_METRICS[key],
            metric_value=round(value, 4), verified=False, source_name=f"{paper.title} ({paper.venue})",
            source_url=paper.arxiv_url,
        )
        for key, value in reported_results.items()
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-classification" if is_classifier else None,
        tags=["long-tailed", paper.method.lower(), "vision-transformer", "converted-checkpoint"],
        metrics=["accuracy"] if eval_results else None,
        eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_str=template_text("converted"),
        model_name=model_name,
        repo_id=repo_id or model_name,
        paper=paper,
        source=source,
        source_description=SOURCE_DESCRIPTIONS[source],
        checkpoint_name=os.path.basename(os.path.normpath(os.fspath(checkpoint))),
        source_url=source_url,
        model_class=type(model).__name__,
        auto_class=auto_class,
        is_classifier=is_classifier,
        architecture_rows=architecture_rows(model),
        reported_rows=[(CARD_METRICS[key], 100 * value) for key, value in reported_results.items()],
        reported_dataset=reported_dataset,
        reported_split=reported_split,
        eval_transform=describe_eval_transform(image_processor),
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "README.md"
    card.save(path)
    return path


__all__ = [
    "PaperReference",
    "REPORTED_METRICS",
    "SOURCE_PAPERS",
    "architecture_rows",
    "parse_reported_results",
    "write_converted_model_card",
]
