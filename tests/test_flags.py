"""Every flag a script declares is honoured or refused, never silently ignored: one table entry per flag.

The flags are found programmatically: each script in scripts/ is run up to its argument parser, which is captured
(its dataclasses, or its argparse options), and every field our own dataclasses declare is a flag (TrainingArguments'
inherited fields are transformers' own; the fields we redeclare with our defaults are ours). The table says where each
flag is observed (`trainer...`, `model.config...`, `prepared...` (the data), `optimizer...`, `output:`, `card:`), or
that it is refused with which message. A flag without an entry, or an entry without a flag, fails the test. Entries
with a value are checked cheaply: per script, one build (arguments, data, model and trainer, no training) with all of
those values, each `where` evaluated on it; every refusal with its flags is run and must raise its message. There is
no third kind: a flag that would change nothing is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from modeling_livt.data.transforms import get_normalization

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
SCRIPTS = sorted(path.stem for path in (ROOT / "scripts").glob("*.py") if not path.stem.startswith("_"))


@dataclasses.dataclass(frozen=True)
class Seen:
    """Observed at `where`: an expression over the built run (trainer, model, args, prepared, optimizer) when
    `value` is given (checked: `--flag value` makes `where` equal `expect`), else a description."""

    where: str
    value: str | None = None
    expect: object = None


@dataclasses.dataclass(frozen=True)
class Refused:
    """Refused with a ValueError matching `message` (a regex) when the script gets `argv`."""

    message: str
    argv: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------------------------
# The table: {script: {flag: entry or tuple of entries}}
# ---------------------------------------------------------------------------------------------------------------------
TINY_ENCODER = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"
TINY_DECODER = ("decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,"
                "decoder_intermediate_size=64")
CIFAR_MEAN = tuple(get_normalization("cifar")[0])
PREPARE = ("--data_root", "{tmp}/root", "--train_file", "{tmp}/absent.txt")  # prepare_dataset's required flags
FAKE_TOKEN = "hf_not_a_real_token"

DATA = {
    "dataset_name": Seen("prepared.data: load_image_datasets (digits, a Hub name or a local folder)"),
    "dataset_config_name": Seen("prepared.data: the Hub dataset's configuration"),
    "train_dir": Seen("prepared.data.train: an imagefolder"),
    "validation_dir": Seen("prepared.data.validation: an imagefolder"),
    "test_dir": Seen("prepared.data.test: an imagefolder"),
    "image_column_name": Seen("prepared.data.image_column: what the transforms read"),
    "label_column_name": Seen("prepared.data.label_column: the labels and class counts"),
    "imbalance_factor": Seen("round(max(prepared.data.class_counts) / min(prepared.data.class_counts))", "5", 5),
    "imbalance_profile": Seen("prepared.data.class_counts: the long-tail profile"),
    "lt_seed": Seen("prepared.data: the seed of the validation carve, long-tail draw and max_*_samples"),
    "validation_split_percentage": Seen("prepared.data.validation: carved when the dataset has none"),
    "streaming": Seen("prepared.data.train: an IterableDataset (needs --max_steps, refused otherwise)"),
    "shuffle_buffer_size": Seen("prepared.data.train: the streamed split's shuffle buffer"),
    "streaming_num_shards": Seen("prepared.data.train: the shards of a streamed map-style split"),
    "class_counts_file": Seen("prepared.data.class_counts: read instead of counted"),
    "skip_corrupt_images": Seen("prepared.data.corrupt_images: dropped and counted"),
    "max_train_samples": Seen("prepared.data.train: a seeded subset, after the long-tail draw"),
    "max_eval_samples": Seen("len(prepared.data.validation)", "20", 20),
    "validation_source": Seen("prepared.data.validation: where a carved validation split comes from"),
    "split_indices_file": Seen("prepared.data: the long-tailed split of an earlier run"),
}

AUGMENTATION = {
    "normalization": Seen("tuple(prepared.mean)", "cifar", CIFAR_MEAN),
    "mixup": Seen("prepared.train_collator.mixup.alpha", "0.3", 0.3),
    "cutmix": Seen("prepared.train_collator.cutmix.alpha", "0.6", 0.6),
    "mixup_switch_prob": Seen("prepared.train_collator.mix.p", "0.3", [0.7, 0.3]),
    "mixup_prob": Seen("prepared.train_collator.prob", "0.9", 0.9),
    "label_smoothing": Seen("prepared.train_collator.label_smoothing", "0.2", 0.2),
    "rand_augment": Seen("prepared.train: the training transform (build_finetune_transform: timm RandAugment)"),
    "auto_augment": Seen("prepared.train: the training transform's RandAugment policy (with --rand_augment)"),
    "random_erasing": Seen("prepared.train: the training transform's RandomErasing probability"),
}

# MGP trains on MAE's transform: the fine-tuning augmentation is refused
MGP_AUGMENTATION = {
    "normalization": Seen("tuple(prepared.mean)", "cifar", CIFAR_MEAN),
    **{name: Refused(f"--{name} {value}.*MGP trains on MAE's transform.*takes --normalization", (f"--{name}", value))
       for name, value in [("mixup", "0.5"), ("cutmix", "0.5"), ("mixup_switch_prob", "0.1"), ("mixup_prob", "0.5"),
                           ("label_smoothing", "0.2"), ("rand_augment", "false"), ("auto_augment", "rand-m5"),
                           ("random_erasing", "0.5")]},
}

# --bal_tau scales the prior of the balanced losses: refused for ce / bce (and the teacher's LDAM)
BAL_TAU_MESSAGE = r"--bal_tau 0.5: it sets the strength of the class prior of the balanced losses .* loss here is {}"

VIT_MODEL = {
    "model_name_or_path": Seen("model: from_pretrained, the explicit model flags on top of its config "
                               "(tests/test_scripts.py: applied and refused)"),
    "config_name": (Seen("model.config: the preset (from scratch)"),
                    Refused("--config_name small builds a model from scratch, but --model_name_or_path",
                            ("--model_name_or_path", "{checkpoint}", "--config_name", "small"))),
    "config_overrides": (Seen("model.config.layer_norm_eps", f"{TINY_ENCODER},layer_norm_eps=1e-05", 1e-5),
                         Refused(r"--config_overrides hidden_size=64 \(the checkpoint has hidden_size=32\)",
                                 ("--model_name_or_path", "{checkpoint}", "--config_overrides", "hidden_size=64"))),
    "image_size": Seen("(model.config.image_size, prepared.image_processor.size['height'])", "16", (16, 16)),
    "patch_size": (Seen("model.config.patch_size", "8", 8),
                   Refused(r"--patch_size 8 \(the checkpoint has patch_size=4\)",
                           ("--model_name_or_path", "{checkpoint}", "--patch_size", "8"))),
    "bal_tau": Seen("model.config.bal_tau", "0.5", 0.5),
    "drop_path_rate": Seen("model.config.drop_path_rate", "0.2", 0.2),
    "attn_implementation": Seen("model.config._attn_implementation", "eager", "eager"),
}

LONG_TAIL_TRAINING = {
    "base_learning_rate": (Seen("args.learning_rate", "0.0256", 0.0256 * 16 / 256),  # x effective batch / 256
                           Refused("--learning_rate 0.001: --base_learning_rate 0.001 sets the learning rate",
                                   ("--base_learning_rate", "1e-3", "--learning_rate", "1e-3"))),
    "layer_decay": Seen("min(g['lr'] for g in optimizer.param_groups) / max(g['lr'] for g in optimizer.param_groups)",
                        "0.5", 0.5**3),  # 2 blocks: embeddings at 0.5 ** 3 of the head's rate
    "weight_decay": Seen("max(g['weight_decay'] for g in optimizer.param_groups)", "0.1", 0.1),
    "lr_scheduler_type": Seen("trainer.lr_scheduler: Trainer's schedule"),
    "warmup_steps": Seen("trainer.lr_scheduler: Trainer's warmup (below 1: a ratio)"),
    "repeated_augmentation": Seen("type(trainer._get_train_sampler()).__name__", None),
    "sampler": Seen("type(trainer._get_train_sampler()).__name__", "class_balanced", "ClassAwareSampler"),
    "freeze_encoder": Seen("model: encoder frozen, heads re-initialised (cRT)"),
    "reinit_head": (Seen("model: the heads re-initialised or kept (with --freeze_encoder)"),
                    Refused("--reinit_head false: it only acts with --freeze_encoder true",
                            ("--reinit_head", "false"))),
    "max_grad_norm": Seen("args.max_grad_norm", "1.0", 1.0),
    "report_to": Seen("trainer.callback_handler: Trainer's loggers"),
    "model_ema": Seen("trainer.model_ema_callback: the EMA of the weights"),
    "model_ema_decay": (Seen("trainer.model_ema_callback.decay"),
                        Refused("--model_ema_decay 0.9: they set the EMA of the weights, which is off",
                                ("--model_ema_decay", "0.9"))),
    "model_ema_force_cpu": (Seen("trainer.model_ema_callback.device"),
                            Refused("--model_ema_force_cpu true: they set the EMA of the weights, which is off",
                                    ("--model_ema_force_cpu", "true"))),
}

FINETUNE_TRAINING = {
    **LONG_TAIL_TRAINING,
    "eval_strategy": Seen("args.eval_strategy: Trainer's evaluation (--eval_steps switches it to steps)"),
    "save_strategy": Seen("args.save_strategy: Trainer's checkpoints (--save_steps switches it to steps)"),
    "load_best_model_at_end": Seen("args.load_best_model_at_end: Trainer (off without evaluation)"),
    "metric_for_best_model": Seen("args.metric_for_best_model: Trainer's model selection"),
    "save_total_limit": Seen("args.save_total_limit", "1", 1),
    "remove_unused_columns": Seen("args.remove_unused_columns: Trainer's column filter"),
    "index_bounds": (Seen("output: eval_results.json index_* metrics and the card (resolved before training)"),
                     Refused("unknown --index_bounds 'x'; choose one of", ("--index_bounds", "x"))),
    "save_steps": Seen("args.save_steps", "7", 7),
}

# run_finetune.py --peft lora: observed end to end in tests/test_lora.py (a value here would put every checked flag of
# the one build on an adapter run); each --lora_* flag alone is refused
LORA_OFF = "they set the LoRA adapter, which is off: add --peft lora"
LORA = {
    "peft": (Seen("model: a peft.PeftModel (adapter + head trained, the rest frozen); output: the adapter"),
             Refused("--freeze_encoder true with --peft lora", ("--peft", "lora", "--freeze_encoder", "true"))),
    "lora_r": (Seen("model.peft_config['default'].r"), Refused(f"--lora_r 4: {LORA_OFF}", ("--lora_r", "4"))),
    "lora_alpha": (Seen("model.peft_config['default'].lora_alpha"),
                   Refused(f"--lora_alpha 4.0: {LORA_OFF}", ("--lora_alpha", "4"))),
    "lora_dropout": (Seen("model.peft_config['default'].lora_dropout"),
                     Refused(f"--lora_dropout 0.0: {LORA_OFF}", ("--lora_dropout", "0"))),
    "lora_target_modules": (Seen("model.peft_config['default'].target_modules (unknown names refused)"),
                            Refused(f"--lora_target_modules qkv: {LORA_OFF}", ("--lora_target_modules", "qkv"))),
    "merge_adapter": (Seen("output: OUTPUT_DIR/merged/, the adapter merged into the weights"),
                      Refused(f"--merge_adapter true: {LORA_OFF}", ("--merge_adapter", "true"))),
}

TABLE: dict[str, dict] = {
    "run_finetune": {
        **VIT_MODEL,
        "loss_type": Seen("model.config.loss_type", "bal_ce", "bal_ce"),
        "bal_tau": (VIT_MODEL["bal_tau"],
                    Refused(BAL_TAU_MESSAGE.format("ce"), ("--loss_type", "ce", "--bal_tau", "0.5")),
                    Refused(BAL_TAU_MESSAGE.format("bce"),  # a checkpoint's loss, set by an override
                            ("--model_name_or_path", "{checkpoint}", "--config_overrides", "loss_type=bce",
                             "--bal_tau", "0.5"))),
        "mask_ratio": Refused("--mask_ratio 0.5: fine-tuning masks no patches", ("--mask_ratio", "0.5")),
        **LORA,
        **DATA,
        **AUGMENTATION,
        **FINETUNE_TRAINING,
    },
    "run_mgp": {
        **VIT_MODEL,
        "image_size": Seen("(model.config.image_size, prepared.image_processor.size['height'])", "16", (16, 16)),
        "mask_ratio": Seen("model.config.mask_ratio", "0.5", 0.5),
        "config_overrides": (Seen("model.config.layer_norm_eps", f"{TINY_ENCODER},{TINY_DECODER},layer_norm_eps=1e-05",
                                  1e-5),
                             Refused(r"--config_overrides decoder_hidden_size=64 \(the checkpoint has",
                                     ("--model_name_or_path", "{checkpoint}", "--config_overrides",
                                      "decoder_hidden_size=64"))),
        "loss_type": Refused("--loss_type bce: MGP's loss is the masked-patch reconstruction", ("--loss_type", "bce")),
        **DATA,
        "imbalance_factor": Seen("prepared.data.class_counts: the long-tail draw (before --max_train_samples)"),
        "max_train_samples": Seen("len(prepared.data.train)", "200", 200),
        "bal_tau": Refused("--bal_tau 0.5: MGP's loss is the masked-patch reconstruction", ("--bal_tau", "0.5")),
        **MGP_AUGMENTATION,
        **LONG_TAIL_TRAINING,
        "layer_decay": Seen("args.layer_decay: the optimizer's layer groups (off for pretraining)"),
        "freeze_encoder": Refused("--freeze_encoder: LiVTForMaskedImageModeling has no classification head",
                                  ("--freeze_encoder", "true")),
        "adam_beta2": Seen("optimizer.defaults['betas'][1]", "0.9", 0.9),
        "remove_unused_columns": (Seen("args.remove_unused_columns", "false", False),
                                  Refused("--remove_unused_columns true: MGP's transform reads the image column",
                                          ("--remove_unused_columns", "true"))),
        "num_reconstruction_images": Seen("output: mgp_reconstructions.png after training (0: none)"),
    },
    "run_deit_lt": {
        **VIT_MODEL,
        "cls_loss_type": Seen("model.config.cls_loss_type", "bal_bce", "bal_bce"),
        "bal_tau": (VIT_MODEL["bal_tau"],
                    Refused(BAL_TAU_MESSAGE.format("ce") + r".*--cls_loss_type bal_bce", ("--bal_tau", "0.5"))),
        "teacher_name_or_path": Seen("type(trainer.teacher.model).__name__", None),
        "teacher_image_size": Seen("trainer.teacher.image_size", "16", 16),
        "distillation_alpha": Seen("trainer.deit_lt_loss.alpha", "0.3", 0.3),
        "drw_epoch": Seen("trainer.drw_callback.drw_epoch", "2", 2.0),
        "drw_step": Seen("trainer.drw_callback.drw_step: the DRW point in optimizer steps"),
        "drw_beta": Seen("trainer.drw_beta", "0.999", 0.999),
        "no_mixup_after_drw": Seen("trainer.no_mixup_after_drw", "true", True),
        **DATA,
        **AUGMENTATION,
        **FINETUNE_TRAINING,
        "learning_rate": Seen("max(g['lr'] for g in optimizer.param_groups)", "0.002", 0.002),
        "repeated_augmentation": Seen("type(trainer._get_train_sampler()).__name__", "2",
                                      "RepeatedAugmentationSampler"),
        "sampler": Seen("trainer.sampling_labels: the class-aware draw, in the repeated-augmentation order"),
        "freeze_encoder": Seen("model.deit_lt.layers[0].mlp.fc1.weight.requires_grad", "true", False),
        "base_learning_rate": (Seen("args.learning_rate (x effective batch / 256)"),
                               LONG_TAIL_TRAINING["base_learning_rate"][1]),
        "layer_decay": Seen("optimizer.param_groups: the lr scales of the layers (1.0: off)"),
        "model_ema": Seen("trainer.model_ema_callback is not None", "true", True),
        "model_ema_decay": (Seen("trainer.model_ema_callback.decay", "0.999", 0.999),
                            LONG_TAIL_TRAINING["model_ema_decay"][1]),
        "model_ema_force_cpu": (Seen("trainer.model_ema_callback.device", "true", "cpu"),
                                LONG_TAIL_TRAINING["model_ema_force_cpu"][1]),
    },
    "run_teacher": {
        "model_name_or_path": Seen("model: AutoModelForImageClassification.from_pretrained, a new head"),
        "teacher_arch": (Seen("type(model).__name__", "resnet_cifar", "ResNetCifarForImageClassification"),
                         Seen("model: timm:NAME, TimmWrapperForImageClassification around timm.create_model(NAME) "
                              "(tests/test_timm_teacher.py)"),
                         Refused(r"--teacher_arch timm:no_such_net: timm .* has no model .*timm\.list_models\(\)",
                                 ("--teacher_arch", "timm:no_such_net"))),
        "config_overrides": (Seen("model.config.depth", "depth=14,base_width=4", 14),
                             Seen("model.config: on top of --model_name_or_path, the fields that keep its weights' "
                                  "shapes (tests/test_teacher.py)"),
                             Refused(r"--config_overrides base_width=8 \(\d+ weight\(s\) change, e\.g\. .*: the "
                                     "weights of --model_name_or_path",
                                     ("--model_name_or_path", "{checkpoint}", "--config_overrides", "base_width=8")),
                             Refused(r"--config_overrides depth=8,base_width=4: .*--teacher_arch is timm:test_resnet",
                                     ("--teacher_arch", "timm:test_resnet"))),
        "image_size": Seen("prepared.image_processor.size['height']", "16", 16),
        "loss_type": Seen("type(trainer.loss_fn).__name__", "ldam_drw", "LDAMLoss"),
        "bal_tau": (Seen("trainer.loss_fn: the balanced losses' prior"),
                    Refused(BAL_TAU_MESSAGE.format("ce"), ("--loss_type", "ce", "--bal_tau", "0.5")),
                    Refused(BAL_TAU_MESSAGE.format("ldam"), ("--loss_type", "ldam", "--bal_tau", "0.5"))),
        "ldam_max_m": (Seen("trainer.loss_fn.max_m", "0.3", 0.3),
                       Refused("--ldam_max_m 0.3: they set LDAM's margins and logit scale, and --loss_type is bal_ce",
                               ("--ldam_max_m", "0.3"))),
        "ldam_s": (Seen("trainer.loss_fn.s", "10", 10.0),
                   Refused("--ldam_s 10.0: they set LDAM's margins and logit scale, and --loss_type is bce",
                           ("--loss_type", "bce", "--ldam_s", "10"))),
        "drw_epoch": Seen("trainer.drw_callback.drw_epoch", "2", 2.0),
        "drw_step": Seen("trainer.drw_callback.drw_step: the DRW point in optimizer steps"),
        "drw_beta": (Seen("trainer.drw_beta", "0.999", 0.999),
                     Refused("--drw_beta 0.99: it sets the class-balanced weights of deferred re-weighting, which is "
                             "off here", ("--drw_beta", "0.99")),
                     Refused("--drw_beta 0.99: .* which is off here", ("--loss_type", "ldam", "--drw_beta", "0.99"))),
        **DATA,
        **AUGMENTATION,
        **FINETUNE_TRAINING,
        "mixup": Seen("prepared.train_collator: MixUp (teacher default 0: off)"),
        "cutmix": Seen("prepared.train_collator: CutMix (teacher default 0: off)"),
        "mixup_switch_prob": Seen("prepared.train_collator: CutMix instead of MixUp"),
        "mixup_prob": Seen("prepared.train_collator: the share of mixed batches"),
        "label_smoothing": Seen("prepared.train_collator: label smoothing (teacher default 0)"),
        "normalization": Seen("prepared.mean, prepared.std"),
        "learning_rate": Seen("optimizer.defaults['lr']", "0.05", 0.05),
        "base_learning_rate": (Seen("args.learning_rate (x effective batch / 256)"),
                               LONG_TAIL_TRAINING["base_learning_rate"][1]),
        "weight_decay": Seen("max(g['weight_decay'] for g in optimizer.param_groups)", "0.01", 0.01),
        "layer_decay": Refused("--layer_decay 0.5: the teacher trains every layer at one learning rate",
                               ("--layer_decay", "0.5")),
        "sampler": Seen("trainer.sampling_labels: the class-aware draw"),
        "freeze_encoder": Seen("model: encoder frozen, head re-initialised (cRT)"),
        "max_grad_norm": Seen("args.max_grad_norm: Trainer's clipping (SAM's second step)"),
        "lr_decay_epochs": (Seen("trainer.lr_scheduler: x gamma at those epochs (tests/test_teacher.py)"),
                            Refused("--lr_decay_epochs 0.5: it steps a constant learning rate down, and "
                                    "--lr_scheduler_type is cosine", ("--lr_decay_epochs", "0.5"))),
        "lr_decay_gamma": (Seen("trainer.lr_scheduler: the factor of each step (tests/test_teacher.py)"),
                           Refused("--lr_decay_gamma 0.01: it is the factor of the --lr_decay_epochs steps",
                                   ("--lr_decay_gamma", "0.01"))),
        "sam_rho": Seen("optimizer.defaults['rho']", "0.1", 0.1),
        "sam_adaptive": Seen("optimizer.defaults['adaptive']", "true", True),
        "sam_base_optimizer": Seen("type(trainer.sam.base_optimizer).__name__: SGD or AdamW (--optim is refused, "
                                   "tests/test_teacher.py)"),
        "momentum": (Seen("optimizer.defaults['momentum']", "0.5", 0.5),
                     Refused("--momentum 0.5: they set SGD, and SAM's base optimizer is AdamW here",
                             ("--sam_base_optimizer", "adamw", "--momentum", "0.5"))),
        "nesterov": (Seen("optimizer.defaults['nesterov']", "true", True),
                     Refused("--nesterov true: they set SGD, and SAM's base optimizer is AdamW here",
                             ("--sam_base_optimizer", "adamw", "--nesterov", "true"))),
        "channels_last": Seen("model: the memory format of the convolution weights"),
        "warmup_epochs": (Seen("args.warmup_steps once the scheduler is built: epochs x steps per epoch "
                               "(tests/test_teacher.py)"),
                          Refused("--warmup_steps 5 and --warmup_epochs 2 both set the warmup: give one",
                                  ("--warmup_steps", "5", "--warmup_epochs", "2"))),
    },
    "run_eval": {
        "model_name_or_path": Seen("model: AutoModelForImageClassification.from_pretrained"),
        "output_dir": Seen("output: eval_results.json, the plots, class_counts.json, README.md"),
        "split": (Seen("the evaluated split, the one named: train, validation or test (tests/test_posthoc_script.py)"),
                  Refused("unknown --split 'val'; choose one of train, validation, test", ("--split", "val"))),
        "per_device_eval_batch_size": Seen("the evaluation Trainer's batch size"),
        "index_bounds": (Seen("output: eval_results.json index_* metrics"),
                         Refused("unknown --index_bounds 'x'; choose one of", ("--index_bounds", "x"))),
        "write_card": Seen("output: README.md"),
        "posthoc": Seen("output: posthoc_results.json, the adjusted evaluation"),
        "save": (Seen("the model folder's config.json (posthoc_* fields)"),
                 Refused("--save / --posthoc_output_dir save fitted post-hoc values: give --posthoc too",
                         ("--save", "true"))),
        "posthoc_output_dir": (Seen("output: an adjusted copy of the model"),
                               Refused("give --posthoc too", ("--posthoc_output_dir", "{tmp}/copy"))),
        "logit_adjustment_grid": (Seen("the taus tried for logit_adjustment (with --posthoc logit_adjustment)"),
                                  Refused("--logit_adjustment_grid 0:1:0.5: it sets the taus tried by the post-hoc "
                                          "logit_adjustment, which is not fitted here: add --posthoc logit_adjustment",
                                          ("--logit_adjustment_grid", "0:1:0.5"))),
        "tau_norm_grid": (Seen("the taus tried for tau_norm (with --posthoc tau_norm)"),
                          Refused("--tau_norm_grid 0,1: it sets the taus tried by the post-hoc tau_norm, which is not "
                                  "fitted here: add --posthoc tau_norm",
                                  ("--posthoc", "temperature", "--tau_norm_grid", "0,1"))),
        "test_distributions": (Seen("output: eval_results.json test_distributions, the card's table "
                                    "(tests/test_test_distributions.py)"),
                               Refused("unknown test distribution 'sideways10'",
                                       ("--test_distributions", "sideways10")),
                               Refused("re-weight a balanced split",
                                       ("--test_distributions", "forward10", "--split", "train"))),
        "test_distribution_seed": (Seen("output: eval_results.json test_distribution_seed (the re-sampling's seed)"),
                                   Refused("--test_distribution_seed 3: it seeds the --test_distributions re-sampling",
                                           ("--test_distribution_seed", "3"))),
        "target_prior": (Seen("output: eval_results.json target_prior (tests/test_test_distributions.py)"),
                         Refused("unknown test distribution 'forward'", ("--target_prior", "forward")),
                         Refused("no such file", ("--target_prior", "{tmp}/absent.json"))),
        "target_prior_tau": (Seen("output: eval_results.json target_prior.tau"),
                             Refused("--target_prior_tau 0.5: it sets the strength of the --target_prior adjustment",
                                     ("--target_prior_tau", "0.5"))),
        **DATA,
    },
    "prepare_dataset": {
        "data_root": Seen("the images read"),
        "train_file": Seen("output: the train split"),
        "output_dir": Seen("output: data/*.parquet, README.md, class_counts.json"),
        "validation_file": Seen("output: the validation split"),
        "test_file": Seen("output: the test split"),
        "validation_as_test": Seen("output: the dataset card's test split"),
        "label_names_file": Seen("output: the ClassLabel names"),
        "num_classes": Seen("output: the ClassLabel size"),
        "pretty_name": Seen("card: the title"),
        "max_shard_size": Seen("output: the parquet shards"),
        "min_shards": Seen("output: the parquet shards"),
        "shuffle_seed": Seen("output: the row order"),
        "num_workers": Seen("the image-reading threads"),
        "overwrite": Seen("output: an existing dataset replaced"),
        "push_to_hub": Seen("the Hub dataset repository"),
        "hub_dataset_id": (Seen("the Hub dataset repository (with --push_to_hub)"),
                           Refused("--hub_dataset_id me/lt: they set the Hub dataset repository, and nothing is "
                                   "pushed: add --push_to_hub", PREPARE + ("--hub_dataset_id", "me/lt"))),
        "hub_private": (Seen("the Hub repository's visibility (with --push_to_hub)"),
                        Refused("--hub_private true: they set the Hub dataset repository, and nothing is pushed: add "
                                "--push_to_hub", PREPARE + ("--hub_private",))),
    },
    "convert_checkpoint": {
        "source": Seen("the converter (modeling_livt.hub.convert)"),
        "checkpoint": Seen("the converted weights"),
        "output_dir": Seen("output: the converted model folder"),
        "config_overrides": Seen("output: config.json"),
        "allowed_classes": Seen("torch.load's allow-list"),
        "class_map": (Seen("output: the heads renumbered to the dataset's label ids, ported_class_map.json "
                           "(tests/test_official_ports.py)"),
                      Refused("--class_map and --class_map_from_counts both give the class map",
                              ("--class_map", "{tmp}/a.json", "--class_map_from_counts", "{tmp}/b.json")),
                      Refused("--source mae ports no classifier", ("--source", "mae", "--class_map", "{tmp}/a.json"))),
        "class_map_from_counts": (Seen("output: the official class map (classes by training count) applied to the "
                                       "heads (tests/test_official_ports.py)"),
                                  Refused("renumbers a classifier's heads, and --source vit_mae ports no classifier",
                                          ("--source", "vit_mae", "--class_map_from_counts", "{tmp}/b.json"))),
        "normalization": Seen("output: preprocessor_config.json mean/std"),
        "reported_results": (Seen("card: the paper's numbers and model-index"),
                             Refused("--reported_results needs --reported_dataset",
                                     ("--reported_results", "accuracy=60.9"))),
        "reported_dataset": Seen("card: the dataset of --reported_results"),
        "reported_split": Seen("card: the split of --reported_results"),
        "source_url": Seen("card: the download link"),
        "model_card": Seen("output: README.md"),
        "push_to_hub": Seen("the Hub model repository"),
        "hub_model_id": Seen("card: the repository id; the Hub repository"),
        "hub_private_repo": (Seen("the Hub repository's visibility (with --push_to_hub)"),
                             Refused("--hub_private_repo true: they set the Hub upload, and nothing is pushed: add "
                                     "--push_to_hub", ("--hub_private_repo", "true"))),
        "hub_token": (Seen("the Hub login (with --push_to_hub)"),
                      Refused(r"--hub_token \*\*\*: they set the Hub upload, and nothing is pushed: add --push_to_hub",
                              ("--hub_token", FAKE_TOKEN))),
    },
    "demo": {
        "method": Seen("which scripts run: livt (MGP + fine-tuning) or deit_lt (teacher + student)"),
        "output_dir": Seen("output: one folder per run, results_<method>.md/json"),
        "mgp_epochs": Seen("run_mgp.py --num_train_epochs (--method livt)"),
        "finetune_epochs": Seen("run_finetune.py --num_train_epochs (--method livt)"),
        "teacher_epochs": Seen("run_teacher.py --num_train_epochs (--method deit_lt)"),
        "student_epochs": Seen("run_deit_lt.py --num_train_epochs (--method deit_lt)"),
    },
}


# ---------------------------------------------------------------------------------------------------------------------
# Discovery: the flags each script declares
# ---------------------------------------------------------------------------------------------------------------------
class _ParserReached(Exception):
    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def _is_ours(cls) -> bool:
    return not cls.__module__.startswith(("transformers", "builtins"))


@pytest.fixture(scope="module")
def declared_flags() -> dict[str, list[str]]:
    """{script: its flags}: each script's `main([])` runs up to its parser, which is captured there."""
    found = {}
    original = argparse.ArgumentParser.parse_known_args

    def reached(self, *args, **kwargs):
        raise _ParserReached(self)

    argparse.ArgumentParser.parse_known_args = reached
    try:
        for script in SCRIPTS:
            with pytest.raises(_ParserReached) as caught:
                importlib.import_module(script).main([])
            parser = caught.value.parser
            flags = []
            if hasattr(parser, "dataclass_types"):
                for dataclass_type in parser.dataclass_types:
                    for cls in dataclass_type.__mro__:
                        if cls is TrainingArguments or not dataclasses.is_dataclass(cls) or not _is_ours(cls):
                            continue
                        flags += [name for name in vars(cls).get("__annotations__", {}) if name not in flags]
            else:
                flags = [action.dest for action in parser._actions if action.dest != "help"]
            found[script] = flags
    finally:
        argparse.ArgumentParser.parse_known_args = original
    return found


def test_every_script_is_in_the_table():
    assert set(SCRIPTS) == set(TABLE), "add the new script's flags to TABLE"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_an_entry_and_every_entry_a_flag(declared_flags, script):
    flags, table = declared_flags[script], TABLE[script]
    assert flags, script
    missing = [flag for flag in flags if flag not in table]
    assert not missing, f"{script}: flags without a table entry (where is each observed, or is it refused?): {missing}"
    stale = sorted(set(table) - set(flags))
    assert not stale, f"{script}: table entries for flags the script no longer has: {stale}"
    for flag, entries in table.items():
        for entry in entries if isinstance(entries, tuple) else (entries,):
            assert isinstance(entry, (Seen, Refused)), (script, flag)  # observed or refused: never ignored


# ---------------------------------------------------------------------------------------------------------------------
# Checks: the observations and the refusals
# ---------------------------------------------------------------------------------------------------------------------
FAST = ["--per_device_train_batch_size", "16", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
        "--seed", "0"]
DIGITS = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
VIT = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4"]


def _entries(script, kind):
    for flag, entries in TABLE[script].items():
        for entry in entries if isinstance(entries, tuple) else (entries,):
            if isinstance(entry, kind):
                yield flag, entry


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, teacher_dir):
    """A tiny saved MGP model, a tiny DeiT-LT and a tiny CIFAR ResNet teacher, the `{checkpoint}` of the refusals."""
    import modeling_livt as ml
    from tests.helpers import TINY

    out = tmp_path_factory.mktemp("checkpoints")
    ml.LiVTForMaskedImageModeling(ml.LiVTConfig(**TINY)).save_pretrained(out / "mgp")
    encoder = {k: v for k, v in TINY.items() if not k.startswith("decoder_")}
    ml.DeiTLTForImageClassification(ml.DeiTLTConfig(**encoder, num_labels=10)).save_pretrained(out / "deit_lt")
    return {"run_mgp": out / "mgp", "run_finetune": out / "mgp", "run_deit_lt": out / "deit_lt",
            "run_teacher": teacher_dir}


def _base_argv(script, tmp_path, teacher_dir, from_checkpoint=False) -> list[str]:
    """The flags every check of `script` starts from: digits, a tiny model (or none, on top of a checkpoint)."""
    out = ["--output_dir", str(tmp_path / "out")]
    if script in ("run_finetune", "run_mgp", "run_deit_lt"):
        overrides = f"{TINY_ENCODER},{TINY_DECODER}" if script != "run_deit_lt" else TINY_ENCODER
        model = [] if from_checkpoint else VIT + ["--config_overrides", overrides]
        teacher = ["--teacher_name_or_path", str(teacher_dir)] if script == "run_deit_lt" else []
        return DIGITS + model + teacher + FAST + out
    if script == "run_teacher":
        model = [] if from_checkpoint else ["--config_overrides", "depth=8,base_width=4"]
        return DIGITS + model + FAST + out
    if script == "run_eval":
        return ["--model_name_or_path", str(tmp_path / "no_model")] + out
    if script == "convert_checkpoint":
        return ["--source", "livt", "--checkpoint", str(tmp_path / "no.pth")] + out
    return out


def _start(script, argv):
    """The run of `argv` up to training: {trainer, model, args, prepared, optimizer} (a script without a trainer runs
    its `main`)."""
    module = importlib.import_module(script)
    if script == "run_mgp":
        trainer, prepared = module.build_trainer(argv)
    elif script in ("run_finetune", "run_deit_lt", "run_teacher"):
        script_class = {"run_finetune": "FinetuneScript", "run_deit_lt": "DeiTLTScript",
                        "run_teacher": "TeacherScript"}[script]
        built = getattr(module, script_class)(argv)
        trainer, prepared = built.build_trainer(), built.prepared
    else:
        return {"result": module.main(argv)}
    return dict(trainer=trainer, model=trainer.model, args=trainer.args, prepared=prepared,
                optimizer=trainer.create_optimizer(), torch=torch)


def _same(observed, expected) -> bool:
    if isinstance(expected, float):
        return observed == pytest.approx(expected)
    if isinstance(expected, tuple) and isinstance(observed, tuple):
        return len(observed) == len(expected) and all(_same(o, e) for o, e in zip(observed, expected))
    return observed == expected


CHECKED_SCRIPTS = ["run_deit_lt", "run_finetune", "run_mgp", "run_teacher"]  # those with a trainer to build
REFUSALS = [(script, flag, entry) for script in SCRIPTS for flag, entry in _entries(script, Refused) if entry.argv]


@pytest.mark.parametrize("script", CHECKED_SCRIPTS)
def test_flags_are_observed_where_the_table_says(script, tmp_path, teacher_dir):
    checked = [(flag, entry) for flag, entry in _entries(script, Seen) if entry.value is not None]
    argv = _base_argv(script, tmp_path, teacher_dir)
    for flag, entry in checked:
        argv += [f"--{flag}", entry.value]
    run = _start(script, argv)
    wrong = {}
    for flag, entry in checked:
        observed = eval(entry.where, dict(run))  # noqa: S307 (the table's own expressions)
        if not _same(observed, entry.expect):
            wrong[flag] = (entry.where, observed, entry.expect)
    assert not wrong, f"{script}: flags not observed where the table says: {wrong}"


@pytest.mark.parametrize(("script", "flag", "entry"), REFUSALS, ids=[f"{s}-{f}" for s, f, _ in REFUSALS])
def test_refused_flags_stop_the_run_with_their_message(script, flag, entry, tmp_path, teacher_dir, checkpoints):
    argv = [value.format(checkpoint=checkpoints.get(script), tmp=tmp_path) for value in entry.argv]
    base = _base_argv(script, tmp_path, teacher_dir, from_checkpoint="--model_name_or_path" in argv)
    with pytest.raises(ValueError, match=entry.message):
        _start(script, base + argv)


def test_a_refused_hub_token_is_never_written_in_the_message(tmp_path, teacher_dir):
    argv = _base_argv("convert_checkpoint", tmp_path, teacher_dir) + ["--hub_token", FAKE_TOKEN]
    with pytest.raises(ValueError, match="--push_to_hub") as refused:
        _start("convert_checkpoint", argv)
    assert FAKE_TOKEN not in str(refused.value)
