#!/usr/bin/env python
"""`make demo`: the main job on the embedded offline default (scikit-learn digits made long-tailed, rho = 10).

METHOD=livt (default): MGP pretraining of a tiny LiVT -> Bal-BCE fine-tuning -> test evaluation, plus the same
fine-tuning budget with plain BCE for comparison. METHOD=deit_lt: a flat ResNet-32 teacher (SAM), then a DeiT-LT
student distilled from it. Prints a Many/Medium/Few/Acc/ECE table and leaves loadable folders under outputs/demo/.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_finetune  # noqa: E402
import run_mgp  # noqa: E402

from trainers.workflow import format_results_table  # noqa: E402

DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
# a small ViT for 32-px digits: 64 patch tokens of 4x4 pixels
MODEL = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
         "hidden_size=96,num_hidden_layers=4,num_attention_heads=3,intermediate_size=384,"
         "decoder_hidden_size=64,decoder_num_hidden_layers=2,decoder_num_attention_heads=2,decoder_intermediate_size=256"]
COMMON = ["--seed", "0", "--per_device_train_batch_size", "64", "--per_device_eval_batch_size", "128",
          "--dataloader_num_workers", "0", "--logging_steps", "50", "--disable_tqdm", "true"]


def run_livt(out: str, epochs_mgp: int, epochs_ft: int) -> dict:
    mgp_dir = os.path.join(out, "livt_mgp")
    run_mgp.main(DATA + MODEL + COMMON + [
        "--output_dir", mgp_dir, "--num_train_epochs", str(epochs_mgp), "--learning_rate", "1e-3",
        "--warmup_steps", "0.05", "--save_strategy", "no",
    ])
    results = {}
    for loss in ("bal_bce", "bce"):
        results[f"LiVT MGP + {loss.upper().replace('_', '-')}"] = run_finetune.main(DATA + COMMON + [
            "--model_name_or_path", mgp_dir, "--output_dir", os.path.join(out, f"livt_{loss}"), "--loss_type", loss,
            "--num_train_epochs", str(epochs_ft), "--learning_rate", "1e-3", "--layer_decay", "0.75",
            "--drop_path_rate", "0.1", "--warmup_steps", "0.1", "--save_total_limit", "1",
        ])
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="livt", choices=["livt", "deit_lt"])
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--mgp_epochs", type=int, default=100)
    parser.add_argument("--finetune_epochs", type=int, default=60)
    args = parser.parse_args()
    start = time.time()
    if args.method == "livt":
        results = run_livt(args.output_dir, args.mgp_epochs, args.finetune_epochs)
    else:
        import run_deit_lt  # noqa: PLC0415  (DeiT-LT demo: teacher, then student)

        results = run_deit_lt.demo(args.output_dir)
    table = format_results_table(results)
    minutes = (time.time() - start) / 60
    report = f"{table}\n\nDigits-LT (rho = 10), balanced test split; wall time {minutes:.1f} min.\n"
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, f"results_{args.method}.md"), "w", encoding="utf-8") as f:
        f.write(report)
    with open(os.path.join(args.output_dir, f"results_{args.method}.json"), "w", encoding="utf-8") as f:
        json.dump({name: {k: v for k, v in m.items() if not isinstance(v, list)} for name, m in results.items()}, f,
                  indent=2)
    print("\n" + report)


if __name__ == "__main__":
    main()
