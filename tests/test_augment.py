"""Augmentations: per example, shapes kept, reproducible from the key, each op's meaning."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.data import augment
from research.train import steps

ALL_GRAY = "crop_pad4,flip_lr,flip_ud,translate3,rotate15,scale1.25"
ALL_RGB = ALL_GRAY + ",color_jitter0.4,grayscale0.5,pca_color0.1"


def _images(n=6, hw=(12, 10), c=1, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, *hw, c)), jnp.float32)


def test_parse_names_numbers_and_errors():
  assert augment.parse("crop_pad4, flip_lr,scale1.5,rotate") == [
      ("crop_pad", 4.0), ("flip_lr", None), ("scale", 1.5), ("rotate", 15)]
  assert augment.parse("") == [] and augment.make_augment("", channels=1) is None
  with pytest.raises(ValueError, match="Unknown augmentation 'cutout8'"):
    augment.parse("cutout8")
  with pytest.raises(ValueError, match="takes no number"):
    augment.parse("flip_lr2")
  with pytest.raises(ValueError, match="needs RGB"):
    augment.make_augment("color_jitter", channels=1)


@pytest.mark.parametrize("spec,c", [(ALL_GRAY, 1), (ALL_RGB, 3)])
def test_shapes_kept_and_reproducible_from_the_key(spec, c):
  x = _images(c=c)
  rgb = augment.rgb_covariance_eigh(np.asarray(x * 255).astype(np.uint8)) if c == 3 else None
  fn = jax.jit(augment.make_augment(spec, channels=c, rgb_eigh=rgb))
  a, b = fn(jax.random.PRNGKey(3), x), fn(jax.random.PRNGKey(3), x)
  assert a.shape == x.shape and a.dtype == x.dtype
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, fn(jax.random.PRNGKey(4), x))


def test_each_example_stays_itself_so_labels_still_match():
  # Example i is the constant i / 10: any op that mixed examples would show.
  x = jnp.broadcast_to(jnp.arange(6, dtype=jnp.float32)[:, None, None, None] / 10, (6, 8, 8, 1))
  out = augment.make_augment("flip_lr,flip_ud", channels=1)(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(out, x)


def test_geometric_ops():
  x = _images(n=1)[0]
  key = jax.random.PRNGKey(0)
  for name, identity_strength in (("translate", 0.0), ("rotate", 0.0), ("scale", 1.0)):
    op = jax.jit(augment.OPS[name], static_argnums=2)
    np.testing.assert_allclose(op(key, x, identity_strength), x, atol=1e-6)
  flipped = augment.flip_lr(key, x, None)
  assert np.array_equal(flipped, x) or np.array_equal(flipped, x[:, ::-1])
  # A padded crop is the image shifted by (dy, dx) in [-p, p], zeros coming in.
  out = np.asarray(jax.jit(augment.crop_pad, static_argnums=2)(jax.random.PRNGKey(5), x, 2))
  padded = np.pad(np.asarray(x), ((2, 2), (2, 2), (0, 0)))
  assert any(np.array_equal(out, padded[dy:dy + 12, dx:dx + 10])
             for dy in range(5) for dx in range(5))
  # A 90-degree rotation of a square image is a transpose and a flip (exact pixels).
  sq = _images(n=1, hw=(9, 9))[0]
  rot = jax.jit(augment._warp)(sq, angle=jnp.pi / 2)
  assert any(np.allclose(rot, r, atol=1e-5) for r in (np.rot90(sq, 1), np.rot90(sq, -1)))


def test_colour_ops():
  x = _images(n=1, c=3)[0]
  key = jax.random.PRNGKey(1)
  np.testing.assert_allclose(augment.color_jitter(key, x, 0.0), x, atol=1e-6)
  gray = augment.grayscale(key, x, 1.0)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2])
  eigvals = jnp.array([0.001, 0.01, 0.04])
  eigvecs = jnp.eye(3)
  np.testing.assert_allclose(augment.pca_color(key, x, 0.0, eigvals, eigvecs), x)
  # One shift per image, the same for every pixel.
  shift = augment.pca_color(key, x, 0.1, eigvals, eigvecs) - x
  np.testing.assert_allclose(shift, jnp.broadcast_to(shift[0, 0], shift.shape), atol=1e-6)


class Linear(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    return nn.Dense(8)(x.reshape(x.shape[0], -1)), {}


def test_train_step_augments_deterministically_from_seed_and_step():
  model = Linear()
  tx = optax.sgd(0.1)
  state = steps.create_train_state(model, tx, (1, 28, 28, 1), seed=0)
  batch = {"image": np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), np.uint8),
           "label": np.arange(8, dtype=np.int32)}
  norm = dict(mean=(0.3,), std=(0.3,))
  aug = augment.make_augment("crop_pad4,flip_lr", channels=1)
  step = jax.jit(steps.make_train_step(model, tx, augment=aug, **norm))
  plain = jax.jit(steps.make_train_step(model, tx, **norm))
  a, b, c = step(state, batch)[0], step(state, batch)[0], plain(state, batch)[0]
  leaves = lambda s: jax.tree.leaves(s.params)
  assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
  assert not all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))
