"""Folders saved by earlier versions load into today's classes with the same outputs.

`tests/fixtures/saved_v0_1/` holds three tiny models (config.json + model.safetensors) saved at commit 0b42560, before
the model files moved to `modeling_livt/models/`, the shared ViT got neutral names, and `distillation_alpha` /
`drw_beta` left DeiT-LT's config; `expected_outputs.json` has the outputs that version computed on fixed inputs.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForPreTraining

import modeling_livt as ml

FIXTURES = Path(__file__).parent / "fixtures" / "saved_v0_1"
EXPECTED = json.loads((FIXTURES / "expected_outputs.json").read_text())


def _inputs():
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(EXPECTED["pixels_seed"]))
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(EXPECTED["noise_seed"]))
    return pixels, noise


@pytest.mark.parametrize(
    ("name", "auto_class", "model_class"),
    [
        ("livt_classifier", AutoModelForImageClassification, ml.LiVTForImageClassification),
        ("livt_mgp", AutoModelForPreTraining, ml.LiVTForMaskedImageModeling),
        ("deit_lt_classifier", AutoModelForImageClassification, ml.DeiTLTForImageClassification),
    ],
)
def test_old_folder_loads_with_identical_outputs(name, auto_class, model_class):
    model, info = auto_class.from_pretrained(FIXTURES / name, output_loading_info=True)
    assert type(model) is model_class
    assert not any(info.values()), info  # no missing, unexpected or mismatched key
    pixels, noise = _inputs()
    with torch.no_grad():
        output = model.eval()(pixels, noise=noise) if name == "livt_mgp" else model.eval()(pixels)
    expected = torch.tensor(EXPECTED["logits"][name])
    torch.testing.assert_close(output.logits, expected, rtol=0, atol=1e-6)
    if name == "livt_mgp":
        assert output.loss.item() == pytest.approx(EXPECTED["logits"]["livt_mgp_loss"], abs=1e-6)


def test_old_deit_lt_config_drops_the_trainer_fields():
    saved = json.loads((FIXTURES / "deit_lt_classifier" / "config.json").read_text())
    assert saved["distillation_alpha"] == 0.3 and saved["drw_beta"] == 0.99  # what the old version wrote
    config = AutoConfig.from_pretrained(FIXTURES / "deit_lt_classifier")
    assert type(config) is ml.DeiTLTConfig
    assert "distillation_alpha" not in config.to_dict() and "drw_beta" not in config.to_dict()
    assert config.class_counts == [8, 4, 2] and config.num_labels == 3


def test_old_livt_classifier_keeps_its_posthoc_temperature():
    config = AutoConfig.from_pretrained(FIXTURES / "livt_classifier")
    assert config.posthoc_temperature == 1.5 and config.class_counts == [8, 4, 2]


MODEL_FILES = sorted((Path(ml.__file__).parent / "models").glob("*.py"))
ALLOWED_TOP_LEVEL = {"torch", "transformers"} | set(sys.stdlib_module_names)


def test_model_files_import_only_torch_transformers_and_each_other():
    """The files copied next to saved models as remote code: absolute imports only of torch / transformers / the
    standard library, relative imports only of single-dot siblings that exist in the same folder."""
    import ast

    assert {path.name for path in MODEL_FILES} >= {"modeling_vit.py", "modeling_livt.py", "modeling_deit_lt.py"}
    for path in MODEL_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
                assert roots <= ALLOWED_TOP_LEVEL, f"{path.name} imports {roots - ALLOWED_TOP_LEVEL}"
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in ALLOWED_TOP_LEVEL, f"{path.name} imports from {node.module}"
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 and (path.parent / f"{node.module}.py").exists(), (
                    f"{path.name}: `from {'.' * node.level}{node.module} import` is not a sibling model file"
                )
