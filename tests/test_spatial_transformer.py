"""Spatial transformer ops (grids, bilinear sampler, TPS) and models."""

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates
from jax.test_util import check_grads
import numpy as np
import pytest

from research.models import get_model
from research.models import spatial_transformer as stm
from research.ops import spatial_transformer as st

# Jitted once per shape: eager dispatch compiles every primitive separately.
bilinear_sample = jax.jit(st.bilinear_sample)
affine_transform = jax.jit(st.affine_transform, static_argnums=2)


def _pixels(grid, hw):
  """Normalised (x, y) -> pixel (row, col), align_corners=True."""
  h, w = hw
  return (grid[..., 1] + 1) * (h - 1) / 2, (grid[..., 0] + 1) * (w - 1) / 2


def test_bilinear_sample_matches_map_coordinates():
  rng = np.random.default_rng(0)
  images = rng.random((2, 7, 9, 3)).astype(np.float32)
  # Beyond [-1, 1] too: partly and wholly outside points read zero padding.
  grid = rng.uniform(-1.4, 1.4, (2, 5, 6, 2)).astype(np.float32)
  out = bilinear_sample(jnp.asarray(images), jnp.asarray(grid))
  rows, cols = _pixels(grid, (7, 9))
  expected = np.stack([np.stack([
      map_coordinates(images[b, :, :, c], [rows[b], cols[b]], order=1, mode="constant", cval=0.0)
      for c in range(3)], -1) for b in range(2)])
  assert out.shape == (2, 5, 6, 3)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("hw", [(28, 28), (42, 42), (60, 60), (7, 9), (1, 5)])
def test_identity_theta_copies_the_input_exactly(hw):
  images = np.random.default_rng(1).random((3, *hw, 2)).astype(np.float32)
  out = affine_transform(jnp.asarray(images), st.identity_theta(3))
  np.testing.assert_array_equal(out, images)


def test_rotation_by_90_degrees_and_integer_translation():
  pattern = np.arange(5 * 5, dtype=np.float32).reshape(1, 5, 5, 1)
  rotated = affine_transform(jnp.asarray(pattern), st.make_theta(np.pi / 2)[None])
  np.testing.assert_array_equal(rotated[0, ..., 0], np.rot90(pattern[0, ..., 0]))
  # tx = 2k / (W - 1) reads k pixels to the right; what comes in is zero.
  shifted = affine_transform(jnp.asarray(pattern),
                                st.make_theta(translation=(2 * 2 / 4, 0.0))[None])
  expected = np.zeros_like(pattern)
  expected[:, :, :3] = pattern[:, :, 2:]
  np.testing.assert_array_equal(shifted, expected)


def test_invert_theta_round_trip():
  theta = st.make_theta(0.3, 1.2, (0.1, -0.2))
  composed = st.invert_theta(theta)[:, :2] @ theta[:, :2]
  np.testing.assert_allclose(composed, np.eye(2), atol=1e-6)
  np.testing.assert_allclose(st.invert_theta(st.invert_theta(theta)), theta, atol=1e-6)


def test_out_of_range_reads_zero():
  images = jnp.ones((1, 4, 4, 1))
  far = jnp.full((1, 2, 2, 2), 2.0)  # Two pixels (and more) outside.
  np.testing.assert_array_equal(bilinear_sample(images, far), 0.0)
  half_out = jnp.array([[[[-1.0 - 1.0 / 3, 0.0]]]])  # Half a pixel left of the edge.
  np.testing.assert_allclose(bilinear_sample(images, half_out), 0.5, rtol=1e-6)


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(2)
  with jax.enable_x64(True):
    images = jnp.asarray(rng.random((2, 6, 7, 2)))
    # Sample points away from pixel boundaries, where the sampler is smooth.
    pix = rng.integers(-1, [6, 7], (2, 4, 5, 2)) + rng.uniform(0.1, 0.9, (2, 4, 5, 2))
    grid = jnp.asarray(np.stack([pix[..., 1] * 2 / 6 - 1, pix[..., 0] * 2 / 5 - 1], -1))
    check_grads(bilinear_sample, (images, grid), order=1, modes=("fwd", "rev"))
    theta = st.make_theta(0.2, 0.9, (0.05, -0.1))[None].astype(jnp.float64)
    check_grads(lambda t: affine_transform(images[:1], t), (theta,), order=1)


def test_gradient_at_the_identity_is_the_subgradient():
  # On a ramp I[i, j] = j, reading at x + dx gives j + dx (W - 1) / 2 inside:
  # the snap onto pixel centres must not zero the gradient w.r.t. theta.
  w = 6
  ramp = jnp.broadcast_to(jnp.arange(w, dtype=jnp.float32), (1, 5, w))[..., None]
  interior = jnp.zeros((1, 5, w, 1)).at[:, :, :-1].set(1.0)
  grad = jax.grad(lambda t: (affine_transform(ramp, t) * interior).sum())(
      st.identity_theta(1))
  np.testing.assert_allclose(grad[0, 0, 2], interior.sum() * (w - 1) / 2, rtol=1e-6)


def test_tps_zero_offsets_is_the_identity():
  grid = st.tps_grid(jnp.zeros((2, 16, 2)), (28, 28))
  np.testing.assert_array_equal(grid, jnp.broadcast_to(st.identity_grid((28, 28)), grid.shape))
  images = np.random.default_rng(3).random((2, 28, 28, 1)).astype(np.float32)
  np.testing.assert_array_equal(bilinear_sample(jnp.asarray(images), grid), images)


def test_tps_with_affine_displacements_is_that_affine_map():
  theta = st.make_theta(jnp.array([0.3, -0.5]), jnp.array([0.8, 1.1]),
                        jnp.array([[0.1, -0.2], [0.0, 0.3]]))
  c = jnp.asarray(st.tps_control_points(4), jnp.float32)
  moved = jnp.einsum("bij,kj->bki", theta[:, :, :2], c) + theta[:, None, :, 2]
  tps = st.tps_grid(moved - c, (20, 24))
  np.testing.assert_allclose(tps, st.affine_grid(theta, (20, 24)), atol=2e-5)


def test_tps_interpolates_the_control_points():
  # On 28x28 the 4x4 control points sit on pixels 0, 9, 18 and 27.
  offsets = jax.random.normal(jax.random.key(0), (1, 16, 2)) * 0.1
  grid = st.tps_grid(offsets, (28, 28))
  at_points = grid[0][np.ix_([0, 9, 18, 27], [0, 9, 18, 27])].reshape(16, 2)
  np.testing.assert_allclose(at_points, st.tps_control_points(4) + offsets[0], atol=2e-5)


def test_projective_identity_and_affine_cases():
  theta = st.make_theta(0.4, 0.9, (0.1, 0.2))[None]
  homography = jnp.concatenate([theta, jnp.array([[[0.0, 0.0, 1.0]]])], axis=1)
  np.testing.assert_allclose(st.projective_grid(homography, (9, 11)),
                             st.affine_grid(theta, (9, 11)), atol=1e-6)


@pytest.mark.parametrize("transform", stm.TRANSFORMS)
def test_spatial_transformer_starts_at_the_identity(transform):
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  loc = stm.CNNLocalization() if transform == "affine" else stm.FCNLocalization()
  module = stm.SpatialTransformer(loc, transform)

  @jax.jit  # One compilation for init, apply and gradient.
  def run(x):
    variables = module.init(jax.random.key(1), x)
    (out, theta), state = module.apply(variables, x, mutable=["intermediates"])
    loss = lambda p: (module.apply({"params": p}, x)[0] * x).sum() ** 2
    return variables["params"], out, theta, state, jax.grad(loss)(variables["params"])

  params, out, theta, state, grads = run(x)
  np.testing.assert_array_equal(out, x)
  assert state["intermediates"]["theta"][0].shape == theta.shape
  # Zero kernel, identity bias; the kernel still gets a gradient.
  np.testing.assert_array_equal(params["regressor"]["kernel"], 0.0)
  np.testing.assert_array_equal(params["regressor"]["bias"], stm.identity_params(transform))
  assert jnp.abs(grads["regressor"]["kernel"]).max() > 0


def test_spatial_transformer_between_layers_with_another_output_size():
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 5))  # A feature map.
  module = stm.SpatialTransformer(stm.FCNLocalization((8,)), "affine", out_hw=(6, 6))
  out, theta = jax.jit(lambda x: module.apply(module.init(jax.random.key(1), x), x))(x)
  np.testing.assert_allclose(out, affine_transform(x, st.identity_theta(2), (6, 6)))
  assert theta.shape == (2, 2, 3)


@pytest.mark.parametrize("name,kwargs,hw", [
    ("fcn", {}, 28),
    ("cnn", {}, 42),
    ("st_fcn", {"transform": "tps"}, 28),
    ("st_cnn", {"transform": "projective", "st_downsample": 2}, 60),
])
def test_models(name, kwargs, hw):
  model = get_model(name, **kwargs)
  x = jax.random.uniform(jax.random.key(0), (2, hw, hw, 1))
  logits, features = jax.jit(lambda x: model.apply(model.init(jax.random.key(1), x), x))(x)
  assert logits.shape == (2, 10)
  if name.startswith("st_"):
    down = kwargs.get("st_downsample", 1)
    assert features["transformed"].shape == (2, hw // down, hw // down, 1)
    if down == 1:
      np.testing.assert_array_equal(features["transformed"], x)
    assert "theta" in features
