"""Model cards with long-tail results, written with huggingface_hub's `ModelCard` / `ModelCardData`.

The templates live in the repository's `model_cards/` folder (`livt.md.j2`, `deit_lt.md.j2`, ...), which the wheel
ships as `modeling_livt/model_cards/` (setup.py maps the folder there); `template_text` reads either.
`model-index` carries accuracy, many/medium/few-shot accuracy, DeiT-LT's head/mid/tail (sorted-index) accuracy when
evaluated with `--index_bounds`, and ECE (Trainer's own card only knows plain accuracy).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_FOLDER = "model_cards"
# where the templates are: inside the installed package (wheel), or the repository's top-level folder (checkout)
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / TEMPLATE_FOLDER

CARD_METRICS = {
    "accuracy": "Top-1 accuracy",
    "many_shot_accuracy": "Many-shot accuracy",
    "medium_shot_accuracy": "Medium-shot accuracy",
    "few_shot_accuracy": "Few-shot accuracy",
    "index_head_accuracy": "Head accuracy (DeiT-LT index split)",
    "index_mid_accuracy": "Mid accuracy (DeiT-LT index split)",
    "index_tail_accuracy": "Tail accuracy (DeiT-LT index split)",
    "ece": "Expected calibration error",
    "cls_accuracy": "CLS-head accuracy",
    "distillation_accuracy": "DIST-head accuracy",
}


def template_file_text(filename: str) -> str:
    """The text of `model_cards/{filename}` (a template or the paper references): the copy installed inside the
    package (a wheel), else the repository's folder (a checkout, an editable install)."""
    packaged = resources.files("modeling_livt") / TEMPLATE_FOLDER / filename
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    in_repository = TEMPLATE_DIR / filename
    if in_repository.is_file():
        return in_repository.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"model card file {filename} is missing: looked in the installed package ({packaged}) and in the "
        f"repository's {TEMPLATE_FOLDER}/ folder ({in_repository}). Reinstall the package (`pip install .` ships "
        "the templates)."
    )


def template_text(name: str) -> str:
    """The model card template `model_cards/{name}.md.j2`."""
    return template_file_text(f"{name}.md.j2")


def eval_results(metrics: dict, dataset_name: str, dataset_split: str = "test") -> list[EvalResult]:
    """`model-index` entries for every known metric present (a group without classes, None, is left out)."""
    results = []
    for key, name in CARD_METRICS.items():
        value = metrics.get(key)
        if value is None:
            continue
        results.append(
            EvalResult(
                task_type="image-classification", dataset_type=dataset_name, dataset_name=dataset_name,
                dataset_split=dataset_split, metric_type=key, metric_name=name, metric_value=round(float(value), 4),
            )
        )
    return results


def index_split_rows(metrics: dict, num_classes: int) -> list[tuple[str, str]]:
    """(metric key, table label) of DeiT-LT's head/mid/tail rows, when the metrics carry them (`--index_bounds`)."""
    bounds = metrics.get("index_bounds")
    if not bounds:
        return []
    head_end, tail_start = (int(b) for b in bounds)
    return [
        ("index_head_accuracy", f"Head (DeiT-LT split: the {head_end} most frequent classes)"),
        ("index_mid_accuracy", f"Mid (classes {head_end + 1}-{tail_start} by training count)"),
        ("index_tail_accuracy", f"Tail (the {num_classes - tail_start} least frequent classes)"),
    ]


def experts_table(metrics: dict) -> str:
    """Markdown of DeiT-LT's two experts beside their average, one row each (the accuracies a run measured), or ""
    when the metrics do not carry them."""
    if metrics.get("cls_accuracy") is None or metrics.get("cls_many_shot_accuracy") is None:
        return ""
    columns = [("accuracy", "Accuracy"), ("many_shot_accuracy", "Many"), ("medium_shot_accuracy", "Medium"),
               ("few_shot_accuracy", "Few")]
    if metrics.get("index_head_accuracy") is not None:
        columns += [("index_head_accuracy", "Head"), ("index_mid_accuracy", "Mid"), ("index_tail_accuracy", "Tail")]
    lines = ["| Logits | " + " | ".join(name for _, name in columns) + " |", "|---|" + "---|" * len(columns)]
    for prefix, name in (("", "average of both heads"), ("cls_", "CLS head"), ("distillation_", "DIST head")):
        values = [metrics.get(prefix + key) for key, _ in columns]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{100 * v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def test_distribution_section(metrics: dict) -> str:
    """Markdown of the shifted test distributions (`run_eval.py --test_distributions` / `--target_prior`), or ""."""
    rows = metrics.get("test_distributions") or {}
    target = metrics.get("target_prior") or {}
    adjusted = target.get("test_distributions") or {}
    if not rows and not adjusted:
        return ""
    names = list(rows) + [name for name in adjusted if name not in rows]
    header = "| Test distribution | Images | Accuracy | ECE |"
    if adjusted:
        header += f" Accuracy (adjusted to {target.get('prior')}) | ECE (adjusted) |"
    lines = [
        "## Shifted test distributions",
        "",
        "The balanced test split re-sampled to SADE's test class distributions (Zhang et al., NeurIPS 2022): "
        "forward-N follows the training long-tail profile with imbalance N, backward-N reverses it.",
    ]
    if adjusted:
        lines.append(f"Adjusted: logits - {target.get('tau'):g} * (log pi_train - log pi_target), with the target "
                     f"prior {target.get('prior')}.")
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]

    def pct(values, key):
        return "-" if values is None or values.get(key) is None else f"{100 * values[key]:.1f}"

    for name in names:
        base = rows.get(name) or adjusted.get(name)
        line = f"| {name} | {base['num_examples']} | {pct(rows.get(name), 'accuracy')} | {pct(rows.get(name), 'ece')} |"
        if adjusted:
            line += f" {pct(adjusted.get(name), 'accuracy')} | {pct(adjusted.get(name), 'ece')} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


# the card's YAML keeps what its text was written from, so that an evaluation (run_eval.py) can refresh the results
# without losing the recipe, the base model or the teacher
CARD_INPUTS_KEY = "modeling_livt"
# the card of a folder whose card does not keep them (written before it did, or not by us), by its model type
CARD_METHODS = {"deit_lt": "deit_lt", "resnet_cifar": "teacher"}


def read_card_inputs(folder: str | os.PathLike) -> dict | None:
    """What the card in `folder` was written from (`method`, `recipe`, `base_model`, `teacher`), or None when the
    folder has no card or its card does not keep them."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        return None
    inputs = ModelCard.load(path).data.to_dict().get(CARD_INPUTS_KEY)
    return inputs if isinstance(inputs, dict) and inputs.get("method") else None


def write_model_card(
    output_dir: str | os.PathLike,
    method: str,
    model_name: str,
    metrics: dict | None,
    class_counts: list[int],
    dataset_name: str,
    imbalance_factor: float | None = None,
    recipe: dict | None = None,
    label_names: list[str] | None = None,
    base_model: str | None = None,
    teacher: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Render `model_cards/{method}.md.j2` into `output_dir/README.md` and return its path."""
    metrics = metrics or {}
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "long-tailed", method.replace("_", "-"), "vision-transformer"],
        datasets=[dataset_name] if "/" in dataset_name and not os.path.exists(dataset_name) else None,
        metrics=["accuracy"],
        eval_results=eval_results(metrics, dataset_name, metrics.get("split", "test")) or None,
        base_model=base_model if base_model and not os.path.exists(base_model) else None,
        **{CARD_INPUTS_KEY: {"method": method, "recipe": recipe or {}, "base_model": base_model, "teacher": teacher}},
    )
    names = label_names or [str(i) for i in range(len(class_counts))]
    output_dir = Path(output_dir)
    card = ModelCard.from_template(
        card_data,
        template_str=template_text(method),
        model_name=model_name,
        repo_id=repo_id or model_name,
        metrics=metrics,
        class_rows=[(i, names[i], count) for i, count in enumerate(class_counts)],
        num_train_images=sum(class_counts),
        imbalance_factor=imbalance_factor,
        observed_imbalance=max(class_counts) / max(1, min(class_counts)) if class_counts else None,
        dataset_name=dataset_name,
        recipe=recipe or {},
        index_rows=index_split_rows(metrics, len(class_counts)),
        index_bounds=metrics.get("index_bounds"),
        experts_table=experts_table(metrics),
        teacher=teacher,
        base_model=base_model,
        has_per_class_plot=(output_dir / "per_class_accuracy.png").exists(),
        has_reliability_plot=(output_dir / "reliability_diagram.png").exists(),
    )
    section = test_distribution_section(metrics)
    if section:
        card.text = card.text.rstrip("\n") + "\n\n" + section
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "README.md"
    card.save(path)
    return path
