#!/usr/bin/env python
"""DeiT-LT: a DeiT student (CLS + DIST tokens) distilled from a flat teacher on its own augmented, mixed batches, with
class-balanced distillation weights from a deferred (DRW) epoch.

    python scripts/run_teacher.py --dataset_name digits --imbalance_factor 10 --output_dir outputs/teacher
    python scripts/run_deit_lt.py --dataset_name digits --imbalance_factor 10 --config_name tiny --image_size 32 \
        --patch_size 4 --teacher_name_or_path outputs/teacher --drw_epoch 80 --num_train_epochs 100 \
        --output_dir outputs/deit_lt
    # combined recipe: a LiVT MGP checkpoint as the student's start, Bal-BCE on the CLS head
    python scripts/run_deit_lt.py --model_name_or_path outputs/mgp --cls_loss_type bal_bce --teacher_name_or_path ... \
        --output_dir outputs/livt_deit_lt
    python scripts/run_deit_lt.py deit_lt.json                     # the arguments as a .json file

`scripts/demo.py --method deit_lt` runs both (teacher, then student) on the embedded offline digits-LT.
"""

from modeling_livt import DEIT_LT_PRESETS, DeiTLTForImageClassification, load_deit_lt_student
from trainers.arguments import (
    AugmentationArguments,
    DataArguments,
    DeiTLTModelArguments,
    DeiTLTTrainingArguments,
    DistillationArguments,
)
from trainers.deit_lt import DeiTLTTrainer, DistillationTeacher
from trainers.drw import describe_drw_point
from trainers.script_builder import ViTClassificationScript, teacher_reference


class DeiTLTScript(ViTClassificationScript):
    """A `DeiTLTForImageClassification` student (from scratch, a DeiT-LT checkpoint or a LiVT one) and the frozen
    teacher it distils from, trained by `DeiTLTTrainer`."""

    argument_types = (DeiTLTModelArguments, DistillationArguments, DataArguments, AugmentationArguments,
                      DeiTLTTrainingArguments)
    model_card_method = "deit_lt"
    trainer_class = DeiTLTTrainer
    model_class = DeiTLTForImageClassification
    presets = DEIT_LT_PRESETS
    loss_flag = "--cls_loss_type"

    def __init__(self, argv=None):
        super().__init__(argv)
        self.distillation_args: DistillationArguments = self.arguments_of(DistillationArguments)
        self.teacher_reference = teacher_reference(self.distillation_args.teacher_name_or_path,
                                                   self.training_args.output_dir)
        self.teacher: DistillationTeacher | None = None

    def loss_fields(self) -> dict:
        return dict(cls_loss_type=self.model_args.cls_loss_type, bal_tau=self.model_args.bal_tau)

    def load_pretrained(self, model_name_or_path: str, **kwargs):
        """A DeiT-LT checkpoint, or a LiVT one: the combined recipe (`deit_lt_from_livt`)."""
        return load_deit_lt_student(model_name_or_path, **kwargs)

    def build_model(self):
        """The student; the teacher is loaded with it, to see the student's batches (size and normalisation)."""
        student = super().build_model()
        self.teacher = DistillationTeacher.from_pretrained(
            self.distillation_args.teacher_name_or_path, image_size=self.distillation_args.teacher_image_size,
            student_mean=self.prepared.mean, student_std=self.prepared.std,
        )
        return student

    def recipe_lines(self) -> dict:
        distillation, teacher = self.distillation_args, self.teacher
        drw = describe_drw_point(distillation.drw_epoch, distillation.drw_step)
        return {
            "student initialisation": self.model_args.model_name_or_path or "random (trained from scratch)",
            "CLS loss": self.model.config.cls_loss_type,
            "distillation alpha": distillation.distillation_alpha,
            "teacher": f"`{self.teacher_reference}` ({type(teacher.model).__name__}, input "
            f"{teacher.image_size or self.image_size} px"
            + (", batch renormalised to its mean/std" if teacher.renormalizes else "") + ")",
            "DRW (class-balanced DIST weights)": f"{drw}, beta {distillation.drw_beta}",
            "mixup after DRW": "off" if distillation.no_mixup_after_drw else "on",
            "layer decay": self.training_args.layer_decay,
            **self.shared_recipe_lines(),
        }

    def trainer_kwargs(self) -> dict:
        distillation = self.distillation_args
        return dict(
            teacher=self.teacher, distillation_alpha=distillation.distillation_alpha,
            drw_epoch=distillation.drw_epoch, drw_step=distillation.drw_step, drw_beta=distillation.drw_beta,
            no_mixup_after_drw=distillation.no_mixup_after_drw,
        )


def main(argv=None) -> dict:
    """Distil a DeiT-LT student with `argv` (default: the command line; or one .json file); returns the test
    metrics."""
    return DeiTLTScript(argv).run()


if __name__ == "__main__":
    main()
