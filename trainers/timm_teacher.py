"""Any timm model as a DeiT-LT teacher: `--teacher_arch timm:NAME` (e.g. `timm:resnet18`, `timm:resnet50`).

The timm model is built with `timm.create_model(NAME, pretrained=False, num_classes=C)` inside transformers'
`TimmWrapperForImageClassification`, so `Trainer`, `TeacherTrainer` (SAM, the balanced losses) and saving see a
transformers classifier. The saved folder is in timm's Hub format as well as transformers':

- `config.json` holds `architecture`, `num_classes`, `label_names` (transformers reads them back as `id2label`),
  `model_args` (never `num_classes`: transformers passes `num_classes` itself, and timm's own `save_for_hf` writes it
  there, which makes `from_pretrained` fail with "got multiple values for keyword argument 'num_classes'") and a
  `pretrained_cfg` whose mean/std, input size, interpolation and crop are the teacher's training normalisation and
  evaluation transform;
- `model.safetensors` holds timm's native keys (no `timm_model.` prefix), which both loaders accept.

So `timm.create_model("local-dir:DIR", pretrained=True)` and `AutoModelForImageClassification.from_pretrained(DIR)`
load the same model, and DeiT-LT reads the teacher's mean/std and input size from its `pretrained_cfg`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedConfig

from modeling_livt.data.transforms import EVAL_CROP_PCT, SMALL_IMAGE_SIZE

TIMM_ARCH_PREFIX = "timm:"
WRAPPER_PREFIX = "timm_model."  # TimmWrapperForImageClassification's attribute holding the timm model
PRETRAINED_SOURCE_FIELDS = ("url", "file", "hf_hub_id", "hf_hub_filename", "source", "tag", "license")


def timm_model_name(teacher_arch: str | None) -> str | None:
    """NAME of a `--teacher_arch timm:NAME`, else None."""
    if teacher_arch is not None and teacher_arch.startswith(TIMM_ARCH_PREFIX):
        return teacher_arch[len(TIMM_ARCH_PREFIX):].strip()
    return None


def check_timm_model_name(name: str) -> None:
    """`ValueError` naming `--teacher_arch` (with close timm names and how to list them) unless timm knows `name`."""
    import timm

    listing = "python -c \"import timm; print(timm.list_models('resnet*'))\""
    base = name.split(".", 1)[0]  # a pretrained tag (resnet18.a1_in1k) selects the pretrained_cfg, not the model
    if name and timm.is_model(base):
        return
    guesses = difflib.get_close_matches(base, timm.list_models(), n=3) if base else []
    hint = f" Did you mean {', '.join(f'timm:{guess}' for guess in guesses)}?" if guesses else ""
    raise ValueError(
        f"--teacher_arch {TIMM_ARCH_PREFIX}{name}: timm {timm.__version__} has no model {name!r}.{hint} Give "
        f"--teacher_arch timm:NAME with a name from timm.list_models() (e.g. {listing}), or resnet_cifar."
    )


def teacher_pretrained_cfg(source_cfg: dict, num_classes: int, image_size: int, mean: Sequence[float],
                           std: Sequence[float]) -> dict:
    """The `pretrained_cfg` of a timm teacher trained here: the architecture's own fields (first conv, classifier,
    ...) with the normalisation it was trained with and our evaluation transform (`build_image_processor`): bicubic,
    up to 32 px a plain resize (timm's crop mode `squash`, crop_pct 1.0), up to 224 px resize to size / 0.875 and
    center crop, above that resize and center crop (crop_pct 1.0). Where the weights came from (url, Hub id, tag)
    is dropped: they are this run's."""
    cfg = {key: value for key, value in dict(source_cfg).items()
           if key not in PRETRAINED_SOURCE_FIELDS and key not in ("label_names", "label_descriptions", "label_offset")
           and not key.startswith("test_")}
    if tuple(cfg.get("input_size", (3, 0, 0))[1:]) != (image_size, image_size):
        cfg["pool_size"] = None  # timm's rule when the input size changes
    small = image_size <= SMALL_IMAGE_SIZE
    cfg.update(
        input_size=(3, image_size, image_size), mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
        interpolation="bicubic", crop_pct=1.0 if small or image_size > 224 else EVAL_CROP_PCT,
        crop_mode="squash" if small else "center", num_classes=num_classes,
    )
    return cfg


def build_timm_teacher(name: str, num_labels: int, id2label: dict, label2id: dict, image_size: int,
                       mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """`TimmWrapperForImageClassification` around `timm.create_model(name, pretrained=False, num_classes=num_labels)`
    (random weights), its config carrying the labels and the teacher's `pretrained_cfg` (`teacher_pretrained_cfg`)."""
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    check_timm_model_name(name)
    config = TimmWrapperConfig(architecture=name, model_args={}, num_labels=num_labels, id2label=dict(id2label),
                               label2id=dict(label2id))
    return _with_teacher_pretrained_cfg(TimmWrapperForImageClassification(config), image_size, mean, std)


def load_timm_teacher(name_or_path: str, config: PreTrainedConfig, num_labels: int, id2label: dict, label2id: dict,
                      image_size: int, mean: Sequence[float], std: Sequence[float], **overrides) -> nn.Module:
    """A timm classifier folder (ours, or timm's Hub format) to fine-tune as the teacher: its weights, a new head for
    the data's classes (`ignore_mismatched_sizes`), the `model_args` trap fixed and its `pretrained_cfg` set to the
    normalisation and input size it is now trained with."""
    config = fix_timm_model_args(config)
    for name, value in overrides.items():
        setattr(config, name, value)
    config.num_labels = num_labels
    config.id2label, config.label2id = dict(id2label), dict(label2id)
    model = AutoModelForImageClassification.from_pretrained(name_or_path, config=config, ignore_mismatched_sizes=True)
    return _with_teacher_pretrained_cfg(model, image_size, mean, std)


def _with_teacher_pretrained_cfg(model, image_size: int, mean: Sequence[float], std: Sequence[float]):
    source = getattr(model.timm_model, "pretrained_cfg", None) or getattr(model.config, "pretrained_cfg", None) or {}
    pretrained_cfg = teacher_pretrained_cfg(source, model.config.num_labels, image_size, mean, std)
    model.config.pretrained_cfg = pretrained_cfg
    model.timm_model.pretrained_cfg = dict(pretrained_cfg)  # timm's resolve_data_config(model=...) reads it
    return model


def is_timm_wrapper(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "timm_wrapper"


def timm_native_state_dict(state_dict: dict) -> dict:
    """The wrapper's state dict with timm's own key names (the `timm_model.` prefix dropped)."""
    return {key[len(WRAPPER_PREFIX):] if key.startswith(WRAPPER_PREFIX) else key: value
            for key, value in state_dict.items()}


def fix_timm_model_args(config: PreTrainedConfig) -> PreTrainedConfig:
    """A timm_wrapper config whose `model_args` hold `num_classes` (what timm's `save_for_hf` writes) builds with
    `TypeError: got multiple values for keyword argument 'num_classes'`: move it to `num_labels`."""
    model_args = getattr(config, "model_args", None)
    if getattr(config, "model_type", None) == "timm_wrapper" and model_args and "num_classes" in model_args:
        model_args = dict(model_args)
        num_classes = model_args.pop("num_classes")
        config.model_args = model_args
        if num_classes != config.num_labels:
            config.num_labels = num_classes
    return config


def load_classifier_config(name_or_path: str, **kwargs) -> PreTrainedConfig:
    """`AutoConfig.from_pretrained` with the timm `model_args` trap fixed (`fix_timm_model_args`)."""
    return fix_timm_model_args(AutoConfig.from_pretrained(name_or_path, **kwargs))


def timm_input_config(config) -> tuple[tuple, tuple, int] | None:
    """`(mean, std, input size)` from a timm_wrapper config's `pretrained_cfg` (timm's `resolve_data_config`), or
    None without one. `ValueError` for a non-square input size (the teacher is fed square batches)."""
    pretrained_cfg = getattr(config, "pretrained_cfg", None)
    if getattr(config, "model_type", None) != "timm_wrapper" or not pretrained_cfg:
        return None
    import timm

    data_config = timm.data.resolve_data_config(pretrained_cfg=dict(pretrained_cfg), verbose=False)
    _, height, width = data_config["input_size"]
    if height != width:
        raise ValueError(
            f"The timm teacher's pretrained_cfg has a non-square input size {height}x{width}; pass "
            "--teacher_image_size to feed it square batches."
        )
    return tuple(data_config["mean"]), tuple(data_config["std"]), int(height)


__all__ = [
    "TIMM_ARCH_PREFIX",
    "build_timm_teacher",
    "check_timm_model_name",
    "fix_timm_model_args",
    "is_timm_wrapper",
    "load_classifier_config",
    "load_timm_teacher",
    "teacher_pretrained_cfg",
    "timm_input_config",
    "timm_model_name",
    "timm_native_state_dict",
]
