"""The `model/negatives` part: its checks, its draws (the batches' generator, as before it was a
part) and the uniform draw's logQ."""

import math

import numpy as np
import pytest
import torch

from ebr.training.negatives import NoNegatives, UniformDraws, UniformNegatives, uniform_log_q


def test_none_and_zero_draw_nothing():
    pool = np.arange(10)
    assert NoNegatives().bind(pool) is None
    assert UniformNegatives(0).bind(pool) is None
    assert UniformNegatives(4).bind(np.array([], dtype=np.int64)) is None


@pytest.mark.parametrize("bad", [-1, 2.5, True, "8"])
def test_num_negatives_is_checked_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"model\.negatives\.num_negatives"):
        UniformNegatives(bad)


def test_draws_come_from_the_pool_through_the_given_generator():
    pool = np.arange(100, 140)
    draws = UniformNegatives(6).bind(pool)
    assert isinstance(draws, UniformDraws)
    got = draws.draw(np.random.default_rng([3, 1]))
    # the pool indexed by one integers() call of the pass's generator: the draws of before the part
    want = pool[np.random.default_rng([3, 1]).integers(0, len(pool), 6)]
    np.testing.assert_array_equal(got, want)


def test_log_q_is_the_uniform_draws_probability():
    draws = UniformNegatives(8).bind(np.arange(32))
    log_q = draws.log_q(8, torch.device("cpu"))
    assert log_q.shape == (8,)
    assert torch.all(log_q == math.log(8 / 32))
    assert uniform_log_q(64, 32) == 0.0  # a pool smaller than the draws: probability 1
