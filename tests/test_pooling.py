"""research/ops/pooling.py: the reshaped max pool equals flax's reduce_window one exactly."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import models
from research.models import layers
from research.ops import pooling
from research.train import steps


def _value_and_grad(pool, x):
  # A non-linear head, so each pooled position gets its own upstream gradient.
  return jax.value_and_grad(lambda x: jnp.sum(jnp.sin(pool(x)) * jnp.arange(1.0, 1 + pool(x).size)
                                              .reshape(pool(x).shape)))(x)


@pytest.mark.parametrize("shape,window,stride,padding", [
    ((2, 8, 8, 3), 2, 2, "VALID"),
    ((2, 9, 7, 3), 2, 2, "VALID"),                # Odd sizes: VALID drops the last row/column.
    ((1, 9, 9, 2), 3, 3, ((0, 0), (0, 0))),       # Explicit zero padding tiles too.
    ((2, 9, 9, 3), 3, 2, "VALID"),                # Overlapping (AlexNet): flax's path.
    ((2, 8, 8, 3), 2, 2, ((1, 1), (1, 1))),       # Padded: flax's path.
])
def test_max_pool_values_and_gradients_equal_flax_with_ties(shape, window, stride, padding):
  rng = np.random.default_rng(0)
  # Rounded ReLU outputs: many windows have several equal maxima (zeros above
  # all), where the gradient must go to the first one, as select_and_scatter does.
  x = jnp.asarray(np.maximum(np.round(rng.normal(size=shape) * 2) / 2, 0), jnp.float32)
  reference = lambda x: nn.max_pool(x, (window, window), (stride, stride), padding)
  ours = lambda x: pooling.max_pool(x, window, stride, padding)
  (value, grad), (ref_value, ref_grad) = _value_and_grad(ours, x), _value_and_grad(reference, x)
  np.testing.assert_array_equal(ours(x), reference(x))
  np.testing.assert_array_equal(value, ref_value)
  np.testing.assert_array_equal(grad, ref_grad)
  # Every window routes its whole gradient to exactly one input (ties included).
  if window == stride and padding != ((1, 1), (1, 1)):
    ones = jax.grad(lambda x: jnp.sum(ours(x)))(x)
    assert float(ones.sum()) == ours(x).size and set(np.unique(ones)) <= {0.0, 1.0}


def test_lenet_training_step_unchanged_by_the_fast_pool(monkeypatch):
  model = models.get_model("lenet5", c3_table=False)
  tx = optax.sgd(0.01, momentum=0.9)
  state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
  rng = np.random.default_rng(1)
  batch = {"image": rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 16).astype(np.int32)}

  def two_steps():
    step = jax.jit(steps.make_train_step(model, tx, mean=(0.5,), std=(0.25,)))
    s, m1 = step(state, batch)
    s, m2 = step(s, batch)
    return s, [float(m1["loss"]), float(m2["loss"])]

  fast_state, fast_losses = two_steps()
  monkeypatch.setattr(layers.pooling, "max_pool", lambda x, w, s, p: nn.max_pool(
      x, (w, w), (s, s), p))
  plain_state, plain_losses = two_steps()
  np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(fast_state.params), jax.tree.leaves(plain_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
