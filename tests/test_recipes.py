"""bench/recipes: every recipe parses with the dataclasses of the script it is for (unknown keys and refused values
fail), and the CIFAR-10-LT teacher recipe is the official LDAM-DRW + SAM one."""

import json
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parent.parent / "bench" / "recipes"
sys.path.insert(0, str(RECIPES))

import validate  # noqa: E402


def test_every_recipe_parses_with_its_script(capsys):
    assert validate.main() == 0
    printed = capsys.readouterr().out
    assert printed.count("ok    ") == len(list(RECIPES.glob("*.json"))) and "FAIL" not in printed


def test_a_recipe_with_an_unknown_key_or_a_refused_value_fails(tmp_path, capsys):
    recipe = json.loads((RECIPES / "teacher_cifar10_lt.json").read_text())
    (tmp_path / "teacher_typo.json").write_text(json.dumps({**recipe, "sam_rhoo": 0.8}))
    (tmp_path / "teacher_refused.json").write_text(json.dumps({**recipe, "warmup_steps": 0.1, "warmup_epochs": 5}))
    assert validate.main(tmp_path) == 1
    printed = capsys.readouterr().out
    assert "FAIL  teacher_typo.json" in printed and "sam_rhoo" in printed
    assert "FAIL  teacher_refused.json" in printed and "--warmup_epochs" in printed


def test_the_cifar10_lt_teacher_recipe_is_the_official_ldam_drw_sam_one():
    from transformers import HfArgumentParser

    recipe = json.loads((RECIPES / "teacher_cifar10_lt.json").read_text())
    model, _, augmentation, training = HfArgumentParser(validate.dataclasses_of("run_teacher.py")).parse_dict(recipe)
    assert (model.loss_type, model.teacher_arch) == ("ldam_drw", "resnet_cifar")
    assert (training.sam_rho, training.weight_decay, training.learning_rate) == (0.8, 2e-4, 0.1)
    assert training.per_device_train_batch_size == 128 and training.num_train_epochs == 200
    assert augmentation.rand_augment is False
    assert training.warmup_epochs == 5 and not training.warmup_steps  # 5 epochs, as the official runs: no ratio
