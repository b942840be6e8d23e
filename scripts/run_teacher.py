#!/usr/bin/env python
"""DeiT-LT's flat teacher: a CNN trained on the long-tailed data with SAM and a long-tail loss (Bal-CE by default).

    python scripts/run_teacher.py --dataset_name digits --imbalance_factor 10 --normalization digits \
        --output_dir outputs/teacher --num_train_epochs 200 --sam_rho 0.05
    python scripts/run_teacher.py ... --loss_type ldam_drw --drw_epoch 160          # LDAM-DRW
    python scripts/run_teacher.py ... --model_name_or_path microsoft/resnet-50       # larger images
    python scripts/run_teacher.py ... --teacher_arch timm:resnet18                   # any timm model, new weights
    python scripts/run_teacher.py teacher.json                                       # the arguments as a .json file

The output folder (weights, image processor, id2label, class counts, card) is what `run_deit_lt.py
--teacher_name_or_path` takes, and loads with `pipeline("image-classification", model=DIR, trust_remote_code=True)`.
A timm teacher's folder also loads with `timm.create_model("local-dir:DIR", pretrained=True)`.
"""

from trainers.arguments import (
    DataArguments,
    TeacherAugmentationArguments,
    TeacherModelArguments,
    TeacherTrainingArguments,
)
from trainers.drw import describe_drw_point
from trainers.script_builder import ClassificationScript
from trainers.teacher import (
    TeacherTrainer,
    build_teacher_model,
    check_teacher_flags,
    default_teacher_image_size,
    teacher_drw_point,
)


class TeacherScript(ClassificationScript):
    """A CIFAR ResNet or any transformers image classifier, trained by `TeacherTrainer` (SAM, the teacher's loss)."""

    argument_types = (TeacherModelArguments, DataArguments, TeacherAugmentationArguments, TeacherTrainingArguments)
    model_card_method = "teacher"
    trainer_class = TeacherTrainer

    def check_flags(self) -> None:
        """Also refuse, before any data is loaded, what the teacher would ignore (`check_teacher_flags`): --optim
        (SAM's base optimizer is --sam_base_optimizer), --layer_decay, the loss flags its loss does not use."""
        super().check_flags()
        check_teacher_flags(self.model_args, self.training_args)

    def input_size(self) -> int:
        return self.model_args.image_size or default_teacher_image_size(self.model_args.model_name_or_path)

    def build_model(self):
        return build_teacher_model(self.model_args, self.prepared.data, self.image_size, mean=self.prepared.mean,
                                   std=self.prepared.std)

    def recipe_lines(self) -> dict:
        model_args, training_args = self.model_args, self.training_args
        config = self.model.config
        depth = f" (depth {config.depth})" if hasattr(config, "depth") else ""
        if config.model_type == "timm_wrapper":
            depth = f" (timm {config.architecture})"
        recipe = {
            "architecture": f"{type(self.model).__name__}{depth}",
            "initialisation": model_args.model_name_or_path or "random",
            "loss_type": model_args.loss_type,
            "optimizer": f"SAM (rho {training_args.sam_rho}{', adaptive' if training_args.sam_adaptive else ''}) "
            f"around {training_args.sam_base_optimizer}",
            "weight decay": training_args.weight_decay,
            **self.shared_recipe_lines(),
        }
        drw_epoch, drw_step = teacher_drw_point(model_args.loss_type, model_args.drw_epoch, model_args.drw_step,
                                                training_args)
        if drw_epoch is not None or drw_step is not None:
            recipe["DRW"] = f"{describe_drw_point(drw_epoch, drw_step)}, beta {model_args.drw_beta}"
        decay = training_args.lr_decay_milestones()
        if decay is not None:
            recipe["learning-rate steps"] = f"x{decay[1]:g} at epochs {', '.join(f'{e:g}' for e in decay[0])}"
        return recipe

    def trainer_kwargs(self) -> dict:
        model_args = self.model_args
        return dict(
            class_counts=self.prepared.data.class_counts, loss_type=model_args.loss_type, bal_tau=model_args.bal_tau,
            ldam_max_m=model_args.ldam_max_m, ldam_s=model_args.ldam_s, drw_epoch=model_args.drw_epoch,
            drw_step=model_args.drw_step, drw_beta=model_args.drw_beta,
        )


def main(argv=None) -> dict:
    """Train the teacher with `argv` (default: the command line; or one .json file); returns the test metrics."""
    return TeacherScript(argv).run()


if __name__ == "__main__":
    main()
