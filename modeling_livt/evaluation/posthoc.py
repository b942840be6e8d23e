"""Fitting post-hoc adjustments on a validation split: temperature scaling (Guo et al., 2017), logit adjustment
(Menon et al., 2021) and tau-normalisation of the classifier weights (Kang et al., 2020).

Everything here works on tensors collected once (logits, the classifier heads' inputs, labels), with no data
loading. The values found are written into a model's config (`posthoc_tau_norm`, `posthoc_logit_adjustment_tau`,
`posthoc_temperature`), and the models apply them at inference (`posthoc_adjustment.py`, which travels as remote code).

Fitting order = application order: tau-norm (its tau chosen for balanced accuracy), then logit adjustment (its tau
chosen for balanced accuracy on the tau-normalised logits), then the temperature (minimum NLL of the final logits, so
that what is calibrated is what the model outputs). A temperature never changes a prediction.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..models.configuration_vit import POSTHOC_FIELDS
from ..models.posthoc_adjustment import adjust_logits, head_logits

__all__ = [
    "DEFAULT_TAU_GRID",
    "POSTHOC_METHODS",
    "PosthocFit",
    "TauSearch",
    "balanced_accuracy",
    "choose_logit_adjustment_tau",
    "choose_tau_norm",
    "classifier_heads",
    "fit_posthoc",
    "fit_temperature",
    "head_logits_float64",
    "negative_log_likelihood",
    "parse_posthoc_methods",
    "parse_tau_grid",
]

#: The methods, in the order they are fitted and applied.
POSTHOC_METHODS = ("tau_norm", "logit_adjustment", "temperature")

#: Default tau grid of both searches: 0, 0.1, ..., 2 (0 = unadjusted, so the search can always keep the model as is).
DEFAULT_TAU_GRID = "0:2:0.1"

# Temperature search range: T in [1e-2, 1e2] covers logits 100x too flat to 100x too sharp.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-2, 1e2


def parse_posthoc_methods(value: str | Sequence[str] | None) -> list[str]:
    """`"temperature,logit_adjustment"` (or a list) -> the methods in application order, each once.

    Raises `ValueError` naming an unknown method and the choices; `None` or an empty value gives `[]`.
    """
    if value is None:
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(name).strip().lower().replace("-", "_") for name in names if str(name).strip()]
    unknown = [name for name in names if name not in POSTHOC_METHODS]
    if unknown:
        raise ValueError(f"unknown post-hoc method {unknown[0]!r}; choose from {', '.join(POSTHOC_METHODS)}.")
    return [method for method in POSTHOC_METHODS if method in names]


def parse_tau_grid(value: str | Sequence[float]) -> list[float]:
    """A tau grid from `"START:STOP:STEP"` (STOP included), `"0.5,1,1.5"` or a list of numbers; sorted, unique.

    Raises `ValueError` for an empty grid, a non-positive step, or a non-finite value.
    """
    if isinstance(value, str):
        text = value.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError(f"tau grid {value!r}: expected START:STOP:STEP (e.g. 0:2:0.1) or a comma list.")
            try:
                start, stop, step = (float(p) for p in parts)
            except ValueError:
                raise ValueError(f"tau grid {value!r}: START, STOP and STEP must be numbers.") from None
            if not step > 0:
                raise ValueError(f"tau grid {value!r}: STEP must be positive.")
            count = math.floor((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 10) for i in range(max(count, 0))]
        else:
            try:
                values = [float(p) for p in text.split(",") if p.strip()]
            except ValueError:
                raise ValueError(f"tau grid {value!r}: expected numbers separated by commas.") from None
    else:
        values = [float(v) for v in value]
    if not values:
        raise ValueError(f"tau grid {value!r} is empty: give at least one value (e.g. 0:2:0.1 or 1.0).")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"tau grid {value!r} holds a non-finite value.")
    return sorted(set(values))


def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.dim() != 2:
        raise ValueError(f"logits must be [num_samples, num_classes], got shape {tuple(logits.shape)}.")
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits but {labels.shape[0]} labels.")
    if labels.numel() == 0:
        raise ValueError("cannot fit post-hoc adjustments on 0 validation examples.")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be class ids in [0, {logits.shape[1]}).")
    return logits.double(), labels


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy of the softmax of `logits` (float64)."""
    logits, labels = _check_logits_labels(logits, labels)
    return float(F.cross_entropy(logits, labels))


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present in `labels` of their top-1 accuracy (mean per-class recall)."""
    logits, labels = _check_logits_labels(logits, labels)
    correct = (logits.argmax(dim=1) == labels).double()
    num_classes = logits.shape[1]
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    totals = torch.bincount(labels, minlength=num_classes).double()
    present = totals > 0
    return float((hits[present] / totals[present]).mean())


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, min_temperature: float = MIN_TEMPERATURE,
    max_temperature: float = MAX_TEMPERATURE,
) -> float:
    """The temperature T minimising the validation NLL of `softmax(logits / T)`, within [min, max].

    With beta = 1 / T the NLL is convex in beta (a log-sum-exp of functions linear in beta, minus a linear term), and
    its derivative, mean(E_softmax[z] - z_label), is increasing: the minimum is where it changes sign, found by
    bisection on log beta (float64, to machine precision). A bound is returned when the minimum lies beyond it (e.g.
    every validation example already right with margin: the NLL keeps falling as T -> 0).
    """
    logits, labels = _check_logits_labels(logits, labels)
    if not 0 < min_temperature < max_temperature:
        raise ValueError(f"need 0 < min_temperature < max_temperature, got {min_temperature}, {max_temperature}.")
    label_logits = logits.gather(1, labels[:, None]).squeeze(1)

    def slope(log_beta: float) -> float:  # d NLL / d beta at beta = exp(log_beta); its sign is all we need
        probabilities = torch.softmax(logits * math.exp(log_beta), dim=1)
        return float(((probabilities * logits).sum(dim=1) - label_logits).mean())

    low, high = -math.log(max_temperature), -math.log(min_temperature)  # log beta bounds
    if slope(low) >= 0:
        return max_temperature
    if slope(high) <= 0:
        return min_temperature
    for _ in range(100):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if slope(middle) < 0:
            low = middle
        else:
            high = middle
    return math.exp(-(low + high) / 2)


@dataclass
class TauSearch:
    """A grid search over tau: the chosen `tau`, and the `grid` with its validation `balanced_accuracy` per value."""

    tau: float
    grid: list[float]
    balanced_accuracy: list[float]

    def to_dict(self) -> dict:
        return {"tau": self.tau, "grid": self.grid, "balanced_accuracy": self.balanced_accuracy}


def _grid_search(grid: Sequence[float], score) -> TauSearch:
    """Highest score wins; ties go to the smallest |tau| (the least change to the trained model)."""
    grid = parse_tau_grid(grid)
    scores = [score(tau) for tau in grid]
    best = max(range(len(grid)), key=lambda i: (scores[i], -abs(grid[i]), -grid[i]))
    return TauSearch(tau=grid[best], grid=grid, balanced_accuracy=scores)


def choose_logit_adjustment_tau(
    logits: torch.Tensor, labels: torch.Tensor, class_counts: Sequence[float] | None, grid: Sequence[float]
) -> TauSearch:
    """The tau of `logits - tau * log(pi)` (pi = class_counts / sum) with the best validation balanced accuracy."""
    if class_counts is None:
        raise ValueError("logit adjustment needs class_counts (training images per class) for the prior pi.")
    if len(class_counts) != logits.shape[-1]:
        raise ValueError(
            f"class_counts has {len(class_counts)} entries but the logits have {logits.shape[-1]} classes."
        )
    if any(not c > 0 for c in class_counts):
        raise ValueError(
            "logit adjustment needs every class present in class_counts (a zero count has log pi = -inf)."
        )
    logits, labels = _check_logits_labels(logits, labels)
    return _grid_search(grid, lambda tau: balanced_accuracy(adjust_logits(logits, class_counts, tau), labels))


def choose_tau_norm(
    head_inputs: Sequence[tuple[torch.Tensor, nn.Linear]], labels: torch.Tensor, grid: Sequence[float]
) -> TauSearch:
    """The tau of the tau-normalised heads (rows W_j / ||W_j||^tau; several heads averaged) with the best validation
    balanced accuracy. `head_inputs` pairs each head's input features `[N, D]` with the head."""
    if not head_inputs:
        raise ValueError("tau_norm needs at least one linear classifier head.")
    return _grid_search(grid, lambda tau: balanced_accuracy(head_logits_float64(head_inputs, tau), labels))


def head_logits_float64(
    head_inputs: Sequence[tuple[torch.Tensor, nn.Linear]], tau_norm: float | None = None
) -> torch.Tensor:
    """`posthoc_adjustment.head_logits` in float64 on copies of the heads (the given heads are left as they are)."""
    heads = [(features.double(), copy.deepcopy(head).double()) for features, head in head_inputs]
    with torch.no_grad():
        return head_logits(heads, tau_norm)


def classifier_heads(model: nn.Module) -> list[nn.Linear]:
    """The linear heads whose (averaged) outputs are the model's logits: DeiT-LT's `classifier` and
    `distillation_classifier`, or the `classifier` of LiVT and of most transformers image classifiers.

    Raises `ValueError` when the model has no such head (tau-normalisation needs one)."""
    heads = [getattr(model, "classifier", None)]
    if getattr(model.config, "model_type", None) == "deit_lt":
        heads.append(getattr(model, "distillation_classifier", None))
    if not all(isinstance(head, nn.Linear) for head in heads):
        raise ValueError(
            f"tau_norm needs a linear classifier head (`model.classifier` an nn.Linear); {type(model).__name__} has "
            "none. Use temperature and logit_adjustment, which only need the logits."
        )
    return heads


@dataclass
class PosthocFit:
    """What `fit_posthoc` found: the config values (None = method not chosen) and each search's trace."""

    tau_norm: float | None = None
    logit_adjustment_tau: float | None = None
    temperature: float | None = None
    searches: dict[str, dict] = field(default_factory=dict)

    def config_values(self) -> dict[str, float | None]:
        """The `posthoc_*` config fields, every one of them (None clears a field)."""
        return dict(zip(POSTHOC_FIELDS, (self.tau_norm, self.logit_adjustment_tau, self.temperature), strict=True))

    def apply(self, logits: torch.Tensor, class_counts, head_inputs=None) -> torch.Tensor:
        """The adjusted logits of raw `logits` (and, with tau-norm, the heads' inputs), as the model computes them."""
        if self.tau_norm is not None:
            logits = head_logits_float64(head_inputs, self.tau_norm)
        return adjust_logits(logits.double(), class_counts, self.logit_adjustment_tau, self.temperature)


def fit_posthoc(
    methods: Sequence[str],
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_counts: Sequence[float] | None = None,
    head_inputs: Sequence[tuple[torch.Tensor, nn.Linear]] | None = None,
    logit_adjustment_grid: Sequence[float] | str = DEFAULT_TAU_GRID,
    tau_norm_grid: Sequence[float] | str = DEFAULT_TAU_GRID,
) -> PosthocFit:
    """Fit `methods` (names of `POSTHOC_METHODS`) on validation `logits` / `labels`, each on the output of the ones
    before it (tau-norm -> logit adjustment -> temperature). `head_inputs` (each head's input features and the head)
    is needed for tau-norm, `class_counts` for logit adjustment."""
    methods = parse_posthoc_methods(methods)
    if not methods:
        raise ValueError(f"no post-hoc method given; choose from {', '.join(POSTHOC_METHODS)}.")
    logits, labels = _check_logits_labels(logits, labels)
    fit = PosthocFit()
    if "tau_norm" in methods:
        if not head_inputs:
            raise ValueError("tau_norm needs the classifier heads and their inputs (head_inputs).")
        search = choose_tau_norm(head_inputs, labels, parse_tau_grid(tau_norm_grid))
        fit.tau_norm, fit.searches["tau_norm"] = search.tau, search.to_dict()
    current = fit.apply(logits, class_counts, head_inputs)
    if "logit_adjustment" in methods:
        search = choose_logit_adjustment_tau(current, labels, class_counts, parse_tau_grid(logit_adjustment_grid))
        fit.logit_adjustment_tau, fit.searches["logit_adjustment"] = search.tau, search.to_dict()
        current = adjust_logits(current, class_counts, fit.logit_adjustment_tau)
    if "temperature" in methods:
        fit.temperature = fit_temperature(current, labels)
        fit.searches["temperature"] = {
            "temperature": fit.temperature,
            "nll_before": negative_log_likelihood(current, labels),
            "nll_after": negative_log_likelihood(current / fit.temperature, labels),
        }
    return fit
