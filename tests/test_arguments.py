"""An explicit flag of the user is never ignored or made to fail by a default of ours (parsing only)."""

import dataclasses

import pytest
from transformers import HfArgumentParser

from trainers.arguments import (
    DeiTLTTrainingArguments,
    FinetuneTrainingArguments,
    LongTailTrainingArguments,
    TeacherTrainingArguments,
)


def parse(cls, *flags):
    (args,) = HfArgumentParser(cls).parse_args_into_dataclasses(["--output_dir", "/tmp/unused", *flags])
    return args


@pytest.mark.parametrize("cls", [FinetuneTrainingArguments, TeacherTrainingArguments, DeiTLTTrainingArguments])
def test_explicit_steps_switch_the_strategy_and_no_eval_drops_best_model(cls):
    # transformers would refuse load_best_model_at_end without evaluation; we keep the last model instead
    args = parse(cls, "--eval_strategy", "no", "--save_steps", "20")
    assert (args.save_strategy, args.save_steps, args.load_best_model_at_end) == ("steps", 20, False)
    # --save_steps alone was silently ignored under our default save strategy 'epoch'
    args = parse(cls, "--save_steps", "20", "--eval_steps", "10")
    assert (args.save_strategy, args.save_steps, args.eval_strategy, args.eval_steps) == ("steps", 20, "steps", 10)
    assert args.load_best_model_at_end
    # --eval_steps alone: best-model loading needs saving at the same points
    args = parse(cls, "--eval_steps", "10")
    assert (args.eval_strategy, args.save_strategy, args.save_steps) == ("steps", "steps", 10)
    # --save_steps alone: and evaluating at the same points (transformers refused the mismatch)
    args = parse(cls, "--save_steps", "7")
    assert (args.save_strategy, args.save_steps, args.eval_strategy, args.eval_steps) == ("steps", 7, "steps", 7)
    assert args.load_best_model_at_end
    # explicit strategies are kept, our defaults apply otherwise
    args = parse(cls, "--save_strategy", "no", "--eval_strategy", "epoch", "--load_best_model_at_end", "false")
    assert (args.save_strategy, args.eval_strategy) == ("no", "epoch")
    args = parse(cls)
    assert (args.save_strategy, args.eval_strategy, args.save_steps, args.load_best_model_at_end) == (
        "epoch", "epoch", 500, True)


def test_gradient_clipping_is_off_unless_asked_for():
    assert parse(FinetuneTrainingArguments).max_grad_norm == 0.0
    assert parse(FinetuneTrainingArguments, "--max_grad_norm", "1.0").max_grad_norm == 1.0


def test_base_learning_rate_is_applied_once_as_the_arguments_are_made(tmp_path):
    """`--base_learning_rate` sets learning_rate in `__post_init__` (base x effective batch / 256), idempotently, and
    refuses an explicit `--learning_rate` with it."""
    args = LongTailTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8,
                                     gradient_accumulation_steps=4, base_learning_rate=1e-3, use_cpu=True)
    assert args.learning_rate == pytest.approx(1e-3 * 32 / 256)
    assert dataclasses.replace(args).learning_rate == args.learning_rate  # re-made from its values: not scaled twice
    with pytest.raises(ValueError, match="--learning_rate 0.01: --base_learning_rate"):
        LongTailTrainingArguments(output_dir=str(tmp_path), base_learning_rate=1e-3, learning_rate=1e-2, use_cpu=True)
