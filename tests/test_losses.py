"""Losses against independent float64 reference formulas (numpy, written out longhand)."""

import math

import numpy as np
import pytest
import torch

import modeling_livt as ml
from modeling_livt.models.losses import to_soft_targets

COUNTS = [500, 120, 40, 9, 3]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ref_bal_bce(logits, targets, counts, tau):
    counts = np.asarray(counts, dtype=np.float64)
    prior = counts / counts.sum()
    z = logits + tau * (np.log(prior) - np.log(1 - prior))
    p = _sigmoid(z)
    bce = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    return bce.sum(axis=1).mean()


def _ref_soft_ce(logits, targets):
    m = logits.max(axis=1, keepdims=True)
    log_softmax = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -(targets * log_softmax).sum(axis=1).mean()


def _one_hot(labels, num_classes):
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 3
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    soft = torch.rand(6, 5, generator=gen, dtype=torch.float64)
    soft = soft / soft.sum(1, keepdim=True)
    return logits, labels, soft


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_balanced_bce_matches_reference_int_and_soft(batch, tau):
    logits, labels, soft = batch
    loss = ml.BalancedBCELoss(COUNTS, tau=tau)
    ref_int = _ref_bal_bce(logits.numpy(), _one_hot(labels.numpy(), 5), COUNTS, tau)
    ref_soft = _ref_bal_bce(logits.numpy(), soft.numpy(), COUNTS, tau)
    assert loss(logits.float(), labels).item() == pytest.approx(ref_int, rel=1e-5)
    assert loss(logits.float(), soft.float()).item() == pytest.approx(ref_soft, rel=1e-5)


def test_tau_is_honoured_and_zero_tau_is_plain_bce(batch):
    logits, labels, _ = batch
    plain = ml.BCELoss()(logits.float(), labels).item()
    assert ml.BalancedBCELoss(COUNTS, tau=0.0)(logits.float(), labels).item() == pytest.approx(plain, rel=1e-6)
    assert ml.BalancedBCELoss(COUNTS, tau=1.0)(logits.float(), labels).item() != pytest.approx(plain, rel=1e-3)
    assert plain == pytest.approx(_ref_bal_bce(logits.numpy(), _one_hot(labels.numpy(), 5), COUNTS, 0.0), rel=1e-5)


@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_balanced_ce_matches_reference(batch, tau):
    logits, labels, soft = batch
    log_prior = np.log(np.asarray(COUNTS, dtype=np.float64) / sum(COUNTS))
    loss = ml.BalancedCELoss(COUNTS, tau=tau)
    ref = _ref_soft_ce(logits.numpy() + tau * log_prior, soft.numpy())
    assert loss(logits.float(), soft.float()).item() == pytest.approx(ref, rel=1e-5)
    ref_int = _ref_soft_ce(logits.numpy() + tau * log_prior, _one_hot(labels.numpy(), 5))
    assert loss(logits.float(), labels).item() == pytest.approx(ref_int, rel=1e-5)


def test_soft_target_ce_matches_the_float64_reference(batch):
    """`soft_target_cross_entropy` is `F.cross_entropy` with probability targets: checked against the longhand
    float64 formula (float32 rounding, ~1e-6), for soft and int targets and bf16 logits."""
    logits, labels, soft = batch
    loss = ml.SoftTargetCrossEntropy()
    ref_soft = _ref_soft_ce(logits.numpy(), soft.numpy())
    ref_int = _ref_soft_ce(logits.numpy(), _one_hot(labels.numpy(), 5))
    assert loss(logits.float(), soft.float()).item() == pytest.approx(ref_soft, rel=1e-5)
    assert loss(logits.float(), labels).item() == pytest.approx(ref_int, rel=1e-5)
    assert loss(logits.float(), labels).dtype == torch.float32
    bf16 = loss(logits.bfloat16(), soft.float())
    assert bf16.dtype == torch.float32 and bf16.item() == pytest.approx(ref_soft, rel=2e-2)


def test_class_balanced_weights_reference():
    beta = 0.9999
    weights = ml.class_balanced_weights(COUNTS, beta=beta)
    raw = np.array([(1 - beta) / (1 - beta**n) for n in COUNTS])
    ref = raw / raw.sum() * len(COUNTS)
    np.testing.assert_allclose(weights.numpy(), ref, rtol=1e-6)
    assert weights.sum().item() == pytest.approx(len(COUNTS), rel=1e-6)
    assert weights[-1] > weights[0]  # rare classes weigh more


def test_deit_lt_loss_weighted_mean_semantics():
    gen = torch.Generator().manual_seed(1)
    cls_logits = torch.randn(5, 4, generator=gen)
    dist_logits = torch.randn(5, 4, generator=gen)
    teacher_logits = torch.randn(5, 4, generator=gen)
    targets = torch.tensor([0, 1, 2, 3, 3])
    weights = torch.tensor([0.5, 1.0, 1.5, 1.0])
    loss = ml.DeiTLTLoss(alpha=0.5, class_weights=weights)
    # independent reference: per-sample CE against the teacher argmax, weighted mean sum(w*ce)/sum(w)
    teacher = teacher_logits.argmax(1).numpy()
    d = dist_logits.double().numpy()
    log_sm = d - d.max(1, keepdims=True) - np.log(np.exp(d - d.max(1, keepdims=True)).sum(1, keepdims=True))
    ce = -log_sm[np.arange(5), teacher]
    w = weights.double().numpy()[teacher]
    dist_ref = (w * ce).sum() / w.sum()
    cls_ref = _ref_soft_ce(cls_logits.double().numpy(), _one_hot(targets.numpy(), 4))
    expected = 0.5 * cls_ref + 0.5 * dist_ref
    assert loss(cls_logits, dist_logits, targets, teacher_logits).item() == pytest.approx(expected, rel=1e-5)
    # unweighted: plain mean; alpha moves the mix
    plain = ml.DeiTLTLoss(alpha=0.25)
    expected_plain = 0.75 * cls_ref + 0.25 * ce.mean()
    assert plain(cls_logits, dist_logits, targets, teacher_logits).item() == pytest.approx(expected_plain, rel=1e-5)


def test_deit_lt_loss_accepts_custom_cls_loss():
    gen = torch.Generator().manual_seed(2)
    cls_logits, dist_logits, teacher = (torch.randn(4, 5, generator=gen) for _ in range(3))
    targets = torch.tensor([0, 1, 2, 4])
    bal = ml.BalancedBCELoss(COUNTS)
    loss = ml.DeiTLTLoss(alpha=0.5, cls_loss=bal)
    expected = 0.5 * bal(cls_logits, targets) + 0.5 * torch.nn.functional.cross_entropy(dist_logits, teacher.argmax(1))
    assert loss(cls_logits, dist_logits, targets, teacher).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    "counts, match",
    [([5, 0, 3], "Class 1 has 0"), ([5, -2, 3], "Class 1 has -2"), ([5, float("nan"), 3], "class 1"), ([], "empty")],
)
def test_bad_counts_raise_naming_the_class(counts, match):
    with pytest.raises(ValueError, match=match):
        ml.BalancedBCELoss(counts)
    with pytest.raises(ValueError, match=match):
        ml.BalancedCELoss(counts)


def test_label_outside_range_and_shape_mismatch_raise_value_error():
    loss = ml.BalancedBCELoss([10, 5, 2])
    with pytest.raises(ValueError, match="Label 3 is outside"):
        loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="Label -1 is outside"):
        loss(torch.zeros(2, 3), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)|one label per example"):
        loss(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"Soft targets have shape \(2, 4\)"):
        to_soft_targets(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="built for 3 classes"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_bf16_logits_give_finite_loss_close_to_fp32(batch):
    logits, labels, _ = batch
    loss = ml.BalancedBCELoss(COUNTS)
    fp32 = loss(logits.float(), labels).item()
    bf16 = loss(logits.bfloat16(), labels).item()
    assert math.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=2e-2)


def test_build_loss_requires_counts_for_balanced_losses():
    with pytest.raises(ValueError, match="needs the training class counts"):
        ml.build_loss("bal_bce", None)
    with pytest.raises(ValueError,
                       match=r"Unknown loss_type='focal'; choose one of \['bal_bce', 'bal_ce', 'bce', 'ce', 'ldam'\]"):
        ml.build_loss("focal", [1, 2])
    assert isinstance(ml.build_loss("ldam", [5, 1]), ml.LDAMLoss)
    assert isinstance(ml.build_loss("bce"), ml.BCELoss)


def test_deit_lt_loss_refuses_bad_class_weights():
    loss = ml.DeiTLTLoss(alpha=0.5)
    with pytest.raises(ValueError, match=r"class_weights must be a 1-D tensor of class weights, got shape \(2, 2\)"):
        loss.class_weights = [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match="class_weights must hold finite, non-negative"):
        loss.class_weights = [1.0, float("nan")]
    loss.class_weights = [1.0, 0.5]
    assert loss.class_weights.dtype == torch.float32 and loss.class_weights.tolist() == [1.0, 0.5]
