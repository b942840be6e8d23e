#!/usr/bin/env python
"""The ECE a perfectly calibrated model would show on a small test split: the noise floor of an ECE goal.

The model's test-split confidences are kept, and correctness is redrawn as Bernoulli(confidence) (a model calibrated
by construction) many times; the measured ECE (15 bins, `metrics.reliability_bins`) of those draws is its floor.
The model applies whatever post-hoc fields its config holds (e.g. a `posthoc_temperature` saved by
`run_eval.py --posthoc temperature --save`, or given here with `--temperature`).

    python bench/ece_noise_floor.py --model_name_or_path outputs/demo/livt_bal_bce --temperature 0.362 \
        --dataset_name digits --imbalance_factor 10
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import modeling_livt  # noqa: E402,F401  (registers our Auto classes)
from modeling_livt.data.loading import DataOptions, load_image_datasets  # noqa: E402
from modeling_livt.data.transforms import EvalTransform  # noqa: E402
from modeling_livt.evaluation.metrics import reliability_bins  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--temperature", type=float, default=None, help="Set posthoc_temperature before evaluating.")
    parser.add_argument("--dataset_name", default="digits")
    parser.add_argument("--imbalance_factor", type=float, default=None)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    model = AutoModelForImageClassification.from_pretrained(args.model_name_or_path, trust_remote_code=True).eval()
    if args.temperature is not None:
        model.config.posthoc_temperature = args.temperature
    transform = EvalTransform(AutoImageProcessor.from_pretrained(args.model_name_or_path))
    data = load_image_datasets(DataOptions(dataset_name=args.dataset_name, imbalance_factor=args.imbalance_factor))
    pixels = torch.stack([transform(image) for image in data.test[data.image_column]])
    labels = np.asarray(data.test[data.label_column])
    with torch.no_grad():
        probs = model(pixels).logits.double().softmax(-1).numpy()  # [N, C]
    confidence, prediction = probs.max(1), probs.argmax(1)
    rng = np.random.default_rng(0)
    floors = []
    for _ in range(args.draws):
        correct = rng.random(len(confidence)) < confidence
        redrawn = np.where(correct, prediction, (prediction + 1) % probs.shape[1])  # any wrong label will do
        floors.append(reliability_bins(np.log(probs), redrawn)["ece"])
    measured = reliability_bins(np.log(probs), labels)["ece"]
    low, high = np.quantile(floors, [0.05, 0.95])
    print(f"test ECE {100 * measured:.1f}%; a perfectly calibrated model with these confidences on {len(labels)} "
          f"images: mean {100 * np.mean(floors):.1f}%, 90% range {100 * low:.1f}-{100 * high:.1f}%")


if __name__ == "__main__":
    main()
