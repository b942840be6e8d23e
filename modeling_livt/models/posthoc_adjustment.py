"""Post-hoc inference adjustments of a classifier's logits, read from its config: tau-normalisation of the head weights
(Kang et al., ICLR 2020), logit adjustment (Menon et al., ICLR 2021) and temperature scaling (Guo et al., ICML 2017).

Order of application (the order `scripts/run_eval.py --posthoc` fits them in, so that the temperature calibrates the
final logits):

1. `posthoc_tau_norm` tau: every head computes its logits with W_j / ||W_j||_2^tau in place of its row W_j (the bias
   is kept, so tau = 0 is the unadjusted head); several heads (DeiT-LT's CLS and DIST heads) are averaged afterwards;
2. `posthoc_logit_adjustment_tau` tau: z - tau * log(pi), pi_c = class_counts[c] / sum(class_counts);
3. `posthoc_temperature` T: z / T.

The models apply these in eval mode only; training losses never see them. The fitting code lives in
`modeling_livt.evaluation.posthoc` (it needs validation data, not part of a saved model).

This file is copied next to saved models as remote code: it imports only torch and its sibling config module.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_vit import POSTHOC_FIELDS

# Smallest weight-row norm used by tau-normalisation: a head row that is all zeros stays finite.
MIN_ROW_NORM = 1e-12


def tau_normalized_weight(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """Kang et al.'s tau-normalisation of a classifier weight `[C, D]`: row j divided by ||W_j||_2 ** tau."""
    norms = weight.norm(p=2, dim=1, keepdim=True).clamp_min(MIN_ROW_NORM)  # [C, 1]
    return weight / norms.pow(tau)


def head_logits(head_inputs: Sequence[tuple[torch.Tensor, nn.Linear]], tau_norm: float | None = None) -> torch.Tensor:
    """Logits `[N, C]` of one or more linear heads on their inputs `[N, D]`, averaged over the heads (DeiT-LT's
    inference rule), each head tau-normalised first when `tau_norm` is given."""
    total = None
    for features, head in head_inputs:
        weight = head.weight if tau_norm is None else tau_normalized_weight(head.weight, tau_norm)
        logits = F.linear(features, weight, head.bias)
        total = logits if total is None else total + logits
    return total if len(head_inputs) == 1 else total / len(head_inputs)


def log_prior(class_counts: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """log(n_c / N) `[C]`, computed in float64 and cast to `like`'s dtype and device."""
    counts = torch.tensor([float(c) for c in class_counts], dtype=torch.float64)
    return (counts / counts.sum()).log().to(dtype=like.dtype, device=like.device)


def adjust_logits(
    logits: torch.Tensor,
    class_counts: Sequence[float] | None = None,
    logit_adjustment_tau: float | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """Steps 2 and 3: `(logits - tau * log pi) / T`; a step whose value is None is skipped."""
    if logit_adjustment_tau is not None:
        if class_counts is None:
            raise ValueError("logit adjustment needs class_counts (training images per class) for its prior.")
        logits = logits - logit_adjustment_tau * log_prior(class_counts, logits)
    if temperature is not None:
        logits = logits / temperature
    return logits


def has_posthoc(config) -> bool:
    """Whether any post-hoc field of `config` is set."""
    return any(getattr(config, name, None) is not None for name in POSTHOC_FIELDS)


def apply_posthoc(
    config, raw_logits: torch.Tensor, head_inputs: Sequence[tuple[torch.Tensor, nn.Linear]]
) -> torch.Tensor:
    """The inference logits of a model whose `raw_logits` = `head_logits(head_inputs)`: all three steps, as `config`
    asks. Returns `raw_logits` itself when no post-hoc field is set."""
    if not has_posthoc(config):
        return raw_logits
    tau_norm = getattr(config, "posthoc_tau_norm", None)
    logits = raw_logits if tau_norm is None else head_logits(head_inputs, tau_norm)
    return adjust_logits(
        logits,
        getattr(config, "class_counts", None),
        getattr(config, "posthoc_logit_adjustment_tau", None),
        getattr(config, "posthoc_temperature", None),
    )


__all__ = ["adjust_logits", "apply_posthoc", "has_posthoc", "head_logits", "log_prior", "tau_normalized_weight"]
