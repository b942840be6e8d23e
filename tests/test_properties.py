"""Property tests (hypothesis): losses, shot groups and the long-tail sampler under arbitrary inputs."""

import socket

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modeling_livt as ml
from modeling_livt.data.long_tail import long_tailed_indices
from modeling_livt.evaluation.metrics import long_tail_metrics

counts_strategy = st.lists(st.integers(min_value=1, max_value=100_000), min_size=2, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    counts=counts_strategy,
    scale=st.floats(min_value=0.0, max_value=1e4),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    tau=st.floats(min_value=0.0, max_value=3.0),
)
def test_losses_finite_and_non_negative(counts, scale, seed, dtype, tau):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(4, len(counts), generator=gen) * scale).to(dtype)
    labels = torch.randint(0, len(counts), (4,), generator=gen)
    soft = torch.softmax(torch.randn(4, len(counts), generator=gen), dim=-1)
    for loss in (
        ml.BalancedBCELoss(counts, tau),
        ml.BalancedCELoss(counts, tau),
        ml.BCELoss(),
        ml.SoftTargetCrossEntropy(),
    ):
        for targets in (labels, soft):
            value = loss(logits, targets)
            assert torch.isfinite(value) and value.item() >= -1e-6, (type(loss).__name__, value)
    weights = ml.class_balanced_weights(counts)
    assert torch.isfinite(weights).all() and weights.sum().item() == pytest.approx(len(counts), rel=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=30),
    many=st.integers(20, 200),
    few=st.integers(1, 20),
)
def test_shot_groups_partition_the_classes(counts, many, few):
    num_classes = len(counts)
    logits = np.random.default_rng(0).normal(size=(3 * num_classes, num_classes))
    labels = np.arange(3 * num_classes) % num_classes
    metrics = long_tail_metrics(logits, labels, counts, many_threshold=many, few_threshold=few)
    groups = [metrics["many_shot_classes"], metrics["medium_shot_classes"], metrics["few_shot_classes"]]
    members = sorted(c for group in groups for c in group)
    assert members == list(range(num_classes))  # every class in exactly one group
    for group, key in zip(groups, ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy")):
        assert (metrics[key] is None) == (len(group) == 0)
    assert all(counts[c] > many for c in groups[0]) and all(counts[c] < few for c in groups[2])


@settings(max_examples=60, deadline=None)
@given(
    pool=st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=10),
    factor=st.floats(min_value=1.0, max_value=500.0),
    seed=st.integers(0, 1000),
    profile=st.sampled_from(["exp", "step"]),
)
def test_long_tailed_indices_properties(pool, factor, seed, profile):
    labels = [c for c, n in enumerate(pool) for _ in range(n)]
    rng = np.random.default_rng(seed)
    labels = list(rng.permutation(labels))
    indices = long_tailed_indices(labels, factor, profile, seed=seed, num_classes=len(pool))
    assert indices == long_tailed_indices(labels, factor, profile, seed=seed, num_classes=len(pool))  # reproducible
    assert len(set(indices)) == len(indices)
    chosen = np.bincount(np.asarray(labels)[indices], minlength=len(pool))
    assert (chosen <= np.asarray(pool)).all()  # never more than is available
    balanced = [max(pool)] * len(pool)
    balanced_labels = [c for c, n in enumerate(balanced) for _ in range(n)]
    balanced_counts = np.bincount(
        np.asarray(balanced_labels)[long_tailed_indices(balanced_labels, factor, profile, seed=seed)],
        minlength=len(pool),
    )
    assert (np.diff(balanced_counts) <= 0).all()  # non-increasing when the pool is balanced


def test_network_is_blocked_in_tests():
    with pytest.raises(RuntimeError, match="tried to reach the network"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(RuntimeError, match="tried to reach the network"):
        socket.create_connection(("203.0.113.1", 443), timeout=1)
