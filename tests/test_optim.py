"""Schedules and optimizers built from the config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smh_jax.training import config_base, optim


def _config(**schedule):
    c = config_base.base_config()
    c.optimizer.learning_rate = 0.4
    for key, value in schedule.items():
        c.schedule[key] = value
    return c


def test_warmup_then_cosine():
    fn = optim.create_learning_rate_fn(_config(name="cosine", warmup_epochs=1.0), 10, 100)
    assert float(fn(0)) == 0.0 and float(fn(5)) == pytest.approx(0.2)
    assert float(fn(10)) == pytest.approx(0.4)
    assert float(fn(55)) == pytest.approx(0.2, abs=1e-3)  # half way through the decay
    assert float(fn(100)) == pytest.approx(0.0, abs=1e-6)


def test_step_schedule_boundaries_in_epochs():
    fn = optim.create_learning_rate_fn(_config(name="step", step_epochs=(2.0, 4.0),
                                               step_factor=0.1), 10, 60)
    assert [round(float(fn(s)), 6) for s in (19, 20, 39, 40)] == [0.4, 0.04, 0.04, 0.004]


def test_exponential_decay_is_staircase_per_decay_epochs():
    fn = optim.create_learning_rate_fn(_config(name="exponential", decay_epochs=2.4,
                                               decay_rate=0.97), 10, 1000)
    assert float(fn(23)) == pytest.approx(0.4) and float(fn(24)) == pytest.approx(0.4 * 0.97)


def test_one_cycle_peaks_at_the_configured_fraction():
    fn = optim.create_learning_rate_fn(_config(name="one_cycle", one_cycle_peak=0.25), 10, 100)
    values = np.array([float(fn(s)) for s in range(101)])
    assert values.argmax() == 25 and values.max() == pytest.approx(0.4)
    assert values[0] == pytest.approx(0.4 / 25) and values[-1] < 1e-3


def test_learning_rate_scales_with_batch_when_asked():
    c = _config()
    c.optimizer.base_batch_size = 256
    c.batch_size = 1024
    assert optim.peak_learning_rate(c) == pytest.approx(1.6)


def test_decay_mask_default_and_regex():
    params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2)), "bias": jnp.ones(2)},
              "smh": {"a": jnp.ones((4, 2)), "scale": jnp.ones(3)}}
    assert optim.decay_mask(params, "") == {"conv": {"kernel": True, "bias": False},
                                            "smh": {"a": True, "scale": False}}
    assert optim.decay_mask(params, "bias|scale$")["conv"] == {"kernel": False, "bias": True}


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adamw"])
def test_optimizers_step_and_decay_only_masked_params(name):
    c = _config()
    c.optimizer.name = name
    c.optimizer.weight_decay = 0.5
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = optim.create_optimizer(c, lambda step: 0.1, params)
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    assert float(jnp.abs(updates["w"]).sum()) > 0  # decay moves the matrix
    assert float(jnp.abs(updates["b"]).sum()) == 0  # not the vector
    no_decay = optim.create_optimizer(c, lambda step: 0.1, params, decay_variables=False)
    updates, _ = no_decay.update(zero_grads, no_decay.init(params), params)
    assert float(jnp.abs(updates["w"]).sum()) == 0


def test_gradient_clipping():
    c = _config()
    c.optimizer.grad_clip_norm = 1.0
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.0
    params = {"w": jnp.zeros(4)}
    tx = optim.create_optimizer(c, lambda step: 1.0, params)
    updates, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)
