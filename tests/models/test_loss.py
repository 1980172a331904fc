"""The sampled-softmax loss against hand-computed values."""

import math

import pytest
import torch

from ebr.models.frequency import CountMinSketch, ExactFrequency
from ebr.models.loss import SampledSoftmaxLoss
from ebr.training.negatives import uniform_log_q


def _reference(user, pin, pin_ids, scale, log_q=None, negatives=None, negative_ids=None, negative_log_q=None):
    """Row by row: -log softmax of the positive over admissible candidates."""
    total = 0.0
    batch = len(user)
    for i in range(batch):
        candidates = []
        for j in range(batch):
            if j != i and pin_ids[j] == pin_ids[i]:
                continue
            logit = scale * float(user[i] @ pin[j]) - (0.0 if log_q is None else float(log_q[j]))
            candidates.append((j == i, logit))
        if negatives is not None:
            for m in range(len(negatives)):
                if negative_ids[m] == pin_ids[i]:
                    continue
                candidates.append((False, scale * float(user[i] @ negatives[m]) - float(negative_log_q[m])))
        log_denominator = math.log(sum(math.exp(logit) for _, logit in candidates))
        positive = next(logit for is_positive, logit in candidates if is_positive)
        total += log_denominator - positive
    return total / batch


def test_two_by_two_hand_computed():
    # u1=(1,0), u2=(0,1); p1=(1,0), p2=(0,1); scale 2 -> logits [[2,0],[0,2]]
    loss = SampledSoftmaxLoss(temperature=0.5)
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    value = loss(user, user.clone(), torch.tensor([7, 9]))
    expected = math.log(math.exp(2) + 1) - 2  # same for both rows
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_log_q_and_duplicate_masking_and_mixed_negatives_match_reference():
    torch.manual_seed(0)
    user = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    pin = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    pin_ids = torch.tensor([1, 2, 1, 3, 4, 2])  # duplicates must be masked
    log_q = torch.log(torch.tensor([0.1, 0.3, 0.1, 0.05, 0.2, 0.3]))
    negatives = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    negative_ids = torch.tensor([3, 8, 9])  # id 3 equals row 3's positive -> masked for that row
    negative_log_q = torch.full((3,), math.log(3 / 50))
    loss = SampledSoftmaxLoss(temperature=0.1)
    value = loss(user, pin, pin_ids, log_q, negatives, negative_ids, negative_log_q)
    expected = _reference(user, pin, pin_ids, 10.0, log_q, negatives, negative_ids, negative_log_q)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_scale_is_clamped_and_temperature_learnable():
    loss = SampledSoftmaxLoss(temperature=0.001, max_scale=100.0)
    assert loss.scale.item() == pytest.approx(100.0)
    assert loss.log_scale.requires_grad
    frozen = SampledSoftmaxLoss(temperature=0.05, learn_temperature=False)
    assert not frozen.log_scale.requires_grad
    with pytest.raises(ValueError, match="temperature"):
        SampledSoftmaxLoss(temperature=0.0)


def test_count_min_sketch_never_undercounts_and_is_exact_when_wide():
    ids = torch.tensor([5, 5, 5, 9, 9, 1_000_003, 42])
    sketch = CountMinSketch(width=1 << 12, depth=4)
    sketch.update(ids)
    estimate = sketch.estimate(torch.tensor([5, 9, 1_000_003, 42, 7]))
    assert estimate.tolist() == [3.0, 2.0, 1.0, 1.0, 0.0]
    narrow = CountMinSketch(width=2, depth=2)
    narrow.update(ids)
    true_counts = torch.tensor([3.0, 2.0, 1.0, 1.0])
    assert torch.all(narrow.estimate(torch.tensor([5, 9, 1_000_003, 42])) >= true_counts)
    # log q = log(batch * count / total), clamped at 0
    expected = math.log(4 * 3 / 7)
    assert sketch.log_q(torch.tensor([5]), batch_size=4).item() == pytest.approx(min(expected, 0.0))
    assert sketch.log_q(torch.tensor([42]), batch_size=2).item() == pytest.approx(math.log(2 / 7), rel=1e-6)


def test_exact_frequency_and_uniform_log_q():
    frequency = ExactFrequency(pin_ids=[0, 0, 1, 3], num_pins=5)
    values = frequency.log_q(torch.tensor([1, 3]), batch_size=2)
    assert values.tolist() == pytest.approx([math.log(0.5), math.log(0.5)])
    assert uniform_log_q(10, 1000) == pytest.approx(math.log(0.01))
    assert uniform_log_q(10, 5) == 0.0
