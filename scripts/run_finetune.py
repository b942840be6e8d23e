#!/usr/bin/env python
"""LiVT stage 2: balanced fine-tuning (Bal-BCE by default) from scratch, from an MGP checkpoint or a converted one.

    python scripts/run_finetune.py --dataset_name digits --imbalance_factor 10 --config_name tiny \
        --image_size 32 --patch_size 4 --model_name_or_path outputs/mgp --output_dir outputs/finetune
    python scripts/run_finetune.py ... --model_name_or_path outputs/mgp --peft lora --lora_r 8 --merge_adapter

`--model_name_or_path` may also be any transformers image classifier (ViT, ConvNeXt, ...): its head is replaced for
the data's classes and `BalancedTrainer` trains it with the balanced loss of `--loss_type` computed from its logits.
With `--peft lora` a LoRA adapter (peft) is trained instead of every weight, the classification head in full.
"""

from functools import cached_property

from transformers import AutoModelForImageClassification

from modeling_livt import LiVTForImageClassification
from modeling_livt.models.configuration_livt import LIVT_PRESETS
from trainers import AugmentationArguments, BalancedTrainer, ModelArguments
from trainers.arguments import DataArguments, FinetuneTrainingArguments, PeftArguments, explicit_flags
from trainers.script_builder import ViTClassificationScript

# checkpoints of these model types load as our LiVT classifier; any other is a transformers image classifier
OUR_MODEL_TYPES = ("livt", "deit_lt")
# model flags that build or reshape our ViT's config: refused on top of another image classifier
LIVT_CONFIG_FLAGS = ("config_overrides", "image_size", "patch_size", "drop_path_rate")


class FinetuneScript(ViTClassificationScript):
    """A `LiVTForImageClassification` with the loss of its config (`--loss_type`), trained by `BalancedTrainer`."""

    argument_types = (ModelArguments, PeftArguments, DataArguments, AugmentationArguments, FinetuneTrainingArguments)
    model_card_method = "livt"
    trainer_class = BalancedTrainer
    model_class = LiVTForImageClassification
    presets = LIVT_PRESETS

    @property
    def peft_args(self) -> PeftArguments:
        return self.arguments_of(PeftArguments)

    @cached_property
    def foreign_checkpoint(self) -> bool:
        """Whether `--model_name_or_path` is another transformers image classifier (not a LiVT / DeiT-LT folder)."""
        config = self.checkpoint_config
        return config is not None and config.get("model_type") not in OUR_MODEL_TYPES

    def check_flags(self) -> None:
        if self.foreign_checkpoint:
            given = explicit_flags(self.model_args, LIVT_CONFIG_FLAGS)
            if given:
                raise ValueError(
                    f"{', '.join(given)}: they build or reshape a LiVT config, and --model_name_or_path "
                    f"{self.model_args.model_name_or_path} is a {self.checkpoint_config.get('model_type')} image "
                    "classifier, which keeps its own config and input size. Drop them."
                )
        super().check_flags()
        if self.model_args.mask_ratio is not None:
            raise ValueError(
                f"--mask_ratio {self.model_args.mask_ratio}: fine-tuning masks no patches (the mask ratio is MGP's, "
                "scripts/run_mgp.py). Drop --mask_ratio."
            )
        if self.peft_args.peft is not None:
            given = explicit_flags(self.training_args, ["freeze_encoder", "model_ema"])
            if given:
                raise ValueError(
                    f"{', '.join(given)} with --peft {self.peft_args.peft}: the adapter run trains the adapter and the "
                    "head (cRT, --freeze_encoder, trains the head alone) and keeps no EMA of the weights. Drop "
                    f"{' and '.join(given)}, or --peft."
                )

    @cached_property
    def checkpoint_changes(self) -> dict:
        return {} if self.foreign_checkpoint else super().checkpoint_changes

    def input_size(self) -> int:
        if not self.foreign_checkpoint:
            return super().input_size()
        from trainers.teacher import default_teacher_image_size

        return self.checkpoint_config.get("image_size") or default_teacher_image_size(
            self.model_args.model_name_or_path)

    def loss_fields(self) -> dict:
        return dict(loss_type=self.model_args.loss_type, bal_tau=self.model_args.bal_tau)

    def build_model(self):
        model = self.build_foreign_model() if self.foreign_checkpoint else super().build_model()
        if self.peft_args.peft == "lora":
            from trainers.lora import apply_lora

            model = apply_lora(model, self.peft_args)
        return model

    def build_foreign_model(self):
        """A transformers image classifier, its head replaced for the data's classes (the config carries the labels
        and the training class counts); `BalancedTrainer` computes the loss from its logits."""
        data = self.prepared.data
        kwargs = {}
        if self.model_args.attn_implementation:
            kwargs["attn_implementation"] = self.model_args.attn_implementation
        model = AutoModelForImageClassification.from_pretrained(
            self.model_args.model_name_or_path, num_labels=data.num_classes, id2label=data.id2label,
            label2id=data.label2id, ignore_mismatched_sizes=True, trust_remote_code=True, **kwargs,
        )
        model.config.class_counts = list(data.class_counts)
        return model

    def trainer_kwargs(self) -> dict:
        if not self.foreign_checkpoint:
            return {}
        return dict(class_counts=self.prepared.data.class_counts, loss_type=self.planned_loss_type(),
                    bal_tau=1.0 if self.model_args.bal_tau is None else self.model_args.bal_tau)

    def recipe_lines(self) -> dict:
        config = self.model.config
        recipe = {
            "stage 1 (MGP)": self.model_args.model_name_or_path or "none (trained from scratch)",
            # a transformers classifier's loss is the trainer's (its config has no loss fields)
            "loss_type": config.loss_type if hasattr(config, "loss_type") else self.planned_loss_type(),
            "bal_tau": config.bal_tau if hasattr(config, "bal_tau") else self.trainer_kwargs()["bal_tau"],
            "layer decay": self.training_args.layer_decay,
        }
        if self.foreign_checkpoint:
            recipe["architecture"] = f"{config.model_type} image classifier, head replaced for the data's classes"
        if self.peft_args.peft == "lora":
            from trainers.lora import lora_recipe

            recipe.update(lora_recipe(self.model, self.peft_args))
        return {**recipe, **self.shared_recipe_lines()}

    def export_extra_outputs(self, trainer) -> None:
        """`--merge_adapter`: OUTPUT_DIR/merged/, the adapter merged into the weights (a plain model folder)."""
        if self.peft_args.peft == "lora" and self.peft_args.merge_adapter:
            from trainers.lora import export_merged

            export_merged(trainer.accelerator.unwrap_model(trainer.model), self.training_args.output_dir,
                          self.prepared.image_processor)


def main(argv=None) -> dict:
    """Fine-tune with `argv` (default: the command line; or one .json file); returns the test metrics."""
    return FinetuneScript(argv).run()


if __name__ == "__main__":
    main()
