"""Conv arithmetic (cs231n notes) and local response normalization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import ops


@pytest.mark.parametrize("w,f,s,p,expected", [
    (227, 11, 4, 0, 55),   # AlexNet conv1 (the notes' example).
    (224, 3, 1, 1, 224),   # VGG's "same" 3x3.
    (55, 3, 2, 0, 27),     # AlexNet's overlapping 3x3/2 pool.
    (32, 5, 1, 0, 28),     # LeNet C1.
])
def test_valid_sizes(w, f, s, p, expected):
  assert ops.conv_output_size(w, f, s, p) == expected


def test_alexnet_on_224_does_not_fit_and_names_the_layer():
  with pytest.raises(ValueError, match=r"conv1: .*54.25 is not an integer"):
    ops.conv_output_size(224, 11, 4, 0, layer="conv1")


@pytest.mark.parametrize("args,match", [
    ((5, 7, 1, 0), "does not fit"),
    ((32, 5, 0, 0), "stride=0"),
    ((32, 5, 1, -1), "padding=-1"),
    ((32.5, 5, 1, 0), "input_size=32.5"),
])
def test_invalid_arguments(args, match):
  with pytest.raises(ValueError, match=match):
    ops.conv_output_size(*args, layer="x")


def test_remainder_within_padding_is_allowed_only_when_asked():
  # ResNet conv1: (224 - 7 + 6) / 2 + 1 = 112.5; the leftover is padding only.
  with pytest.raises(ValueError, match="112.5"):
    ops.conv_output_size(224, 7, 2, 3)
  assert ops.conv_output_size(224, 7, 2, 3, allow_unused_padding=True) == 112
  with pytest.raises(ValueError, match="54.25"):  # Leftover real pixels: still an error.
    ops.conv_output_size(224, 11, 4, 0, allow_unused_padding=True)


def test_dilation_and_shape():
  assert ops.conv_output_size(32, 3, 1, 0, dilation=2) == 28
  assert ops.conv_output_shape((227, 227), (11, 11), (4, 4), (0, 0)) == (55, 55)


def test_receptive_fields_of_stacked_3x3():
  assert ops.receptive_field([3, 3]) == 5
  assert ops.receptive_field([3, 3, 3]) == 7
  assert ops.receptive_field([3, 2, 3], [1, 2, 1]) == 8


def test_local_response_norm_matches_the_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 3, 9)).astype(np.float32) * 3
  n, k, alpha, beta = 2, 2.0, 1e-2, 0.75
  expected = np.empty_like(x)
  for c in range(9):
    lo, hi = max(0, c - n), min(9, c + n + 1)
    expected[..., c] = x[..., c] / (k + alpha * (x[..., lo:hi] ** 2).sum(-1)) ** beta
  got = ops.local_response_norm(jnp.asarray(x), n, k, alpha, beta)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def _outside_window(channels: int, hot, radius: int) -> np.ndarray:
  """The channels whose LRN window (c - radius .. c + radius) holds no `hot` channel."""
  return np.array([c for c in range(channels) if all(abs(c - h) > radius for h in hot)])


def test_local_response_norm_of_a_huge_channel_stays_in_its_window():
  # Issue 13 §6: 2e19 squared overflows float32; a cumulative sum carried the
  # inf (and inf - inf = NaN) into 61 of 64 channels.
  x = np.random.default_rng(1).normal(size=(2, 4, 4, 64)).astype(np.float32)
  huge = x.copy()
  huge[..., 30] = 2e19
  got, ref = ops.local_response_norm(jnp.asarray(huge)), ops.local_response_norm(jnp.asarray(x))
  assert not np.isnan(np.asarray(got)).any()
  far = _outside_window(64, [30], radius=2)
  assert len(far) == 59
  np.testing.assert_array_equal(np.asarray(got)[..., far], np.asarray(ref)[..., far])


def test_local_response_norm_depends_only_on_the_window():
  # Issue 13 §6: scaling 8 of 96 channels by 1e4 moved the others by up to 5.5e-4 (relative).
  x = np.random.default_rng(2).normal(size=(2, 5, 5, 96)).astype(np.float32)
  hot = [3, 15, 27, 40, 52, 66, 79, 90]
  scaled = x.copy()
  scaled[..., hot] *= 1e4
  got = ops.local_response_norm(jnp.asarray(scaled))
  ref = ops.local_response_norm(jnp.asarray(x))
  far = _outside_window(96, hot, radius=2)
  np.testing.assert_array_equal(np.asarray(got)[..., far], np.asarray(ref)[..., far])


def test_local_response_norm_has_the_formulas_gradient_under_jit():
  # Training differentiates it inside jit (a traced init value would not be differentiable).
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 3, 9)).astype(np.float32) * 3)
  n, k, alpha, beta = 2, 2.0, 1e-2, 0.75

  def formula(x):
    sq = jnp.pad(jnp.square(x), [(0, 0)] * 3 + [(n, n)])
    sums = sum(sq[..., i:i + 9] for i in range(2 * n + 1))
    return x / (k + alpha * sums) ** beta

  def loss(f):
    return jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(f(x)))))
  np.testing.assert_allclose(loss(lambda x: ops.local_response_norm(x, n, k, alpha, beta))(x),
                             loss(formula)(x), rtol=1e-5, atol=1e-6)
