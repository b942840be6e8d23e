#!/usr/bin/env python
"""LiVT stage 2: balanced fine-tuning (Bal-BCE by default) from scratch, from an MGP checkpoint or a converted one.

    python scripts/run_finetune.py --dataset_name digits --imbalance_factor 10 --config_name tiny \
        --image_size 32 --patch_size 4 --model_name_or_path outputs/mgp --output_dir outputs/finetune
"""

from modeling_livt import LiVTForImageClassification
from modeling_livt.models.configuration_livt import LIVT_PRESETS
from trainers import AugmentationArguments, BalancedTrainer, ModelArguments
from trainers.arguments import DataArguments, FinetuneTrainingArguments
from trainers.script_builder import ViTClassificationScript


class FinetuneScript(ViTClassificationScript):
    """A `LiVTForImageClassification` with the loss of its config (`--loss_type`), trained by `BalancedTrainer`."""

    argument_types = (ModelArguments, DataArguments, AugmentationArguments, FinetuneTrainingArguments)
    model_card_method = "livt"
    trainer_class = BalancedTrainer
    model_class = LiVTForImageClassification
    presets = LIVT_PRESETS

    def check_flags(self) -> None:
        super().check_flags()
        if self.model_args.mask_ratio is not None:
            raise ValueError(
                f"--mask_ratio {self.model_args.mask_ratio}: fine-tuning masks no patches (the mask ratio is MGP's, "
                "scripts/run_mgp.py). Drop --mask_ratio."
            )

    def loss_fields(self) -> dict:
        return dict(loss_type=self.model_args.loss_type, bal_tau=self.model_args.bal_tau)

    def recipe_lines(self) -> dict:
        return {
            "stage 1 (MGP)": self.model_args.model_name_or_path or "none (trained from scratch)",
            "loss_type": self.model.config.loss_type,
            "bal_tau": self.model.config.bal_tau,
            "layer decay": self.training_args.layer_decay,
            **self.shared_recipe_lines(),
        }


def main(argv=None) -> dict:
    """Fine-tune with `argv` (default: the command line; or one .json file); returns the test metrics."""
    return FinetuneScript(argv).run()


if __name__ == "__main__":
    main()
