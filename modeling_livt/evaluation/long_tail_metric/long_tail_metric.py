"""`evaluate` module for long-tailed classification: many / medium / few-shot accuracy, ECE and MCE.

Load it offline from its folder (no Hub access needed)::

    import evaluate
    from modeling_livt.evaluation.metrics import LONG_TAIL_METRIC_PATH

    metric = evaluate.load(LONG_TAIL_METRIC_PATH)
    metric.compute(predictions=logits, references=labels, train_class_counts=counts)

The math lives in ``modeling_livt.evaluation.metrics.long_tail_metrics`` (one implementation); this file only adapts it
to the ``evaluate.Metric`` interface. evaluate copies this file into its module cache before importing it, so
the package is imported absolutely (it must be installed: ``pip install -e .``).
"""

import datasets
import evaluate
import numpy as np

from modeling_livt.evaluation.metrics import long_tail_metrics

_DESCRIPTION = """
Long-tailed recognition metrics computed from classifier logits. Shot groups come from the training-split
class counts: many-shot n > many_threshold (100), few-shot n < few_threshold (20), medium-shot otherwise
(split="count", the LiVT convention), or DeiT-LT's index bounds over the classes sorted by training count
(split="index", index_bounds="cifar10" | "cifar100" | "imagenet_lt" | "inat18" | (head_end, tail_start)).
Group accuracy is the mean of per-class accuracies; a group with no evaluated class is None. ECE and MCE use
n_bins (15) equal-width (lo, hi] bins on the max softmax probability. All values are fractions in 0..1.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): the logits row of each sample (num_classes values).
    references (`list` of `int`): the ground-truth class id of each sample.
    train_class_counts (`list` of `int`): training-split count of every class (required).
    many_threshold (`int`, defaults to 100), few_threshold (`int`, defaults to 20): split="count" thresholds.
    n_bins (`int`, defaults to 15): confidence bins for ECE / MCE.
    split (`str`, defaults to "count"): "count" or "index".
    index_bounds (`str` or pair of `int`, optional): with split="index".
Returns:
    accuracy, many_shot_accuracy, medium_shot_accuracy, few_shot_accuracy, ece, mce (floats or None),
    per_class_accuracy (list), many_shot_classes, medium_shot_classes, few_shot_classes (lists), split.
Examples:
    >>> metric = evaluate.load(LONG_TAIL_METRIC_PATH)
    >>> metric.compute(predictions=[[2.0, 0.0], [0.0, 1.0]], references=[0, 0], train_class_counts=[500, 10])
"""

_CITATION = """
@inproceedings{xu2023livt,
  title={Learning Imbalanced Data with Vision Transformers},
  author={Xu, Zhengzhuo and Liu, Ruikang and Yang, Shuo and Chai, Zenghao and Yuan, Chun},
  booktitle={CVPR}, year={2023}
}
@inproceedings{rangwani2024deitlt,
  title={DeiT-LT: Distillation Strikes Back for Vision Transformer Training on Long-Tailed Datasets},
  author={Rangwani, Harsh and Mondal, Pradipto and Mishra, Mayank and Asokan, Ashish Ramayee and Babu, R. Venkatesh},
  booktitle={CVPR}, year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LongTailMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        train_class_counts=None,
        many_threshold=100,
        few_threshold=20,
        n_bins=15,
        split="count",
        index_bounds=None,
    ):
        if train_class_counts is None:
            raise ValueError("train_class_counts is required: the training-split count of every class")
        logits = np.asarray(predictions, dtype=np.float64)
        if logits.ndim != 2:  # ragged rows or no rows
            lengths = sorted({len(row) for row in predictions})
            raise ValueError(f"every prediction must be a logits row of the same length; got row lengths {lengths}")
        return long_tail_metrics(
            logits,
            np.asarray(references, dtype=np.int64),
            train_class_counts,
            many_threshold=many_threshold,
            few_threshold=few_threshold,
            n_bins=n_bins,
            split=split,
            index_bounds=index_bounds,
        )
