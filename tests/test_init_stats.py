"""Init statistics of a parameter's own initializer: analytic for jax's, sampled otherwise."""

import math

import flax.linen as nn
import jax
import numpy as np
import pytest

from smh_jax.core import init_stats

INIT = nn.initializers


@pytest.mark.parametrize("init,shape,mean,std,kurtosis", [
    (INIT.lecun_normal(), (784, 1000), 0.0, 1 / math.sqrt(784), -0.634),  # truncated normal
    (INIT.he_normal(), (3, 3, 16, 32), 0.0, math.sqrt(2 / 144), -0.634),  # fan_in 3*3*16
    (INIT.variance_scaling(2.0, "fan_out", "normal"), (3, 3, 16, 32), 0.0,
     math.sqrt(2 / 288), 0.0),
    (INIT.glorot_uniform(), (2, 2), 0.0, math.sqrt(2 / 4), -1.2),  # tiny: still exact
    (INIT.uniform(0.1), (5,), 0.05, 0.1 / math.sqrt(12), -1.2),  # U[0, 0.1)
    (INIT.normal(0.02), (7, 3), 0.0, 0.02, 0.0),
    (INIT.truncated_normal(1.0, lower=0.0, upper=3.0), (8,), 0.79116, 0.58941, None),
    (INIT.constant(0.5), (3,), 0.5, 0.0, 0.0),
    (INIT.zeros, (3,), 0.0, 0.0, 0.0),
    (INIT.ones, (4, 4), 1.0, 0.0, 0.0),
    (INIT.orthogonal(), (4, 6), 0.0, 1 / math.sqrt(6), None),
    (nn.with_logical_partitioning(INIT.lecun_normal(), ("a", "b")), (16, 4), 0.0, 0.25, -0.634),
])
def test_known_initializers_get_exact_statistics(init, shape, mean, std, kurtosis):
    stats = init_stats.analytic(init, (shape,), {})
    assert stats is not None and stats.analytic
    assert stats.mean == pytest.approx(mean, abs=1e-4)
    assert stats.std == pytest.approx(std, rel=1e-4)
    if kurtosis is not None:
        assert stats.kurtosis == pytest.approx(kurtosis, abs=1e-3)


def test_analytic_statistics_agree_with_many_draws():
    for init in (INIT.he_normal(), INIT.glorot_uniform(), INIT.uniform(0.3)):
        exact = init_stats.analytic(init, ((64, 64),), {})
        values = np.concatenate([np.asarray(init(jax.random.key(i), (64, 64))).ravel()
                                 for i in range(16)])
        assert values.std() == pytest.approx(exact.std, rel=0.02)
        assert values.mean() == pytest.approx(exact.mean, abs=0.01 * exact.std + 1e-3)


def test_unknown_initializers_are_sampled_with_pooled_draws():
    def shifted(key, shape, dtype=np.float32):  # not one of jax's: sampled
        return 0.5 + 2.0 * jax.random.normal(key, shape, dtype)

    assert init_stats.analytic(shifted, ((2, 2),), {}) is None
    stats = init_stats.sample(shifted, ((2, 2),), {})
    # A 2x2 tensor is drawn 1,024 times: 4,096 values, so both moments are close.
    assert not stats.analytic
    assert stats.std == pytest.approx(2.0, rel=0.05)
    assert stats.mean == pytest.approx(0.5, abs=0.1)


def test_a_sampled_zero_mean_initializer_keeps_mean_exactly_zero():
    def plain(key, shape, dtype=np.float32):
        return jax.random.normal(key, shape, dtype) * 0.3

    assert init_stats.sample(plain, ((3, 5),), {}).mean == 0.0


def test_an_initializer_over_a_traced_value_is_reported():
    def init_under_jit(x):
        with pytest.raises(init_stats.TracedInitializer):
            init_stats.sample(lambda key, shape: x * jax.random.normal(key, shape), ((4,),), {})
        return x

    jax.jit(init_under_jit)(1.0)


def test_truncated_normal_moments():
    stats = init_stats.truncated_normal_stats(-2.0, 2.0)
    assert stats.std == pytest.approx(0.87962566103423978, rel=1e-12)  # jax's own constant
    assert stats.mean == pytest.approx(0.0, abs=1e-15)
