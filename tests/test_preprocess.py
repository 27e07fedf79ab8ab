"""The CPU-side preprocessing ops (research/data/preprocess.py), each on its own."""

import numpy as np
import pytest

from research.data import preprocess


def _image(h=47, w=17, c=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_resize_small_sets_the_shorter_side_and_keeps_the_aspect():
  tall = preprocess.resize_small(_image(47, 17), None, 34)
  assert tall.shape == (94, 34, 3) and tall.dtype == np.uint8
  wide = preprocess.resize_small(_image(20, 50), None, 10)
  assert wide.shape == (10, 25, 3)
  gray = preprocess.resize_small(_image(28, 28, 1), None, 14)
  assert gray.shape == (14, 14, 1)
  # A constant image stays constant (the resize interpolates, nothing else).
  flat = np.full((30, 40, 3), 77, np.uint8)
  assert np.all(preprocess.resize_small(flat, None, 15) == 77)


def test_central_crop_takes_the_centre():
  image = _image(9, 7)
  np.testing.assert_array_equal(preprocess.central_crop(image, None, 3), image[3:6, 2:5])
  with pytest.raises(ValueError, match=r"central_crop\(8\) of a 9x7 image.*resize first"):
    preprocess.central_crop(image, None, 8)


def test_random_crop_is_a_window_of_the_image_and_a_function_of_the_key():
  image = np.arange(10 * 12, dtype=np.uint8).reshape(10, 12, 1)
  crops = [preprocess.random_crop(image, _rng(s), 4) for s in range(20)]
  for crop in crops:
    assert crop.shape == (4, 4, 1)
    top, left = divmod(int(crop[0, 0, 0]), 12)  # Each pixel's value is its index.
    np.testing.assert_array_equal(crop, image[top:top + 4, left:left + 4])
  assert len({c.tobytes() for c in crops}) > 5  # Placed at random ...
  np.testing.assert_array_equal(crops[3], preprocess.random_crop(image, _rng(3), 4))  # ... by key.


def test_inception_crop_size_area_and_determinism():
  image = _image(64, 48)
  out = preprocess.inception_crop(image, _rng(1), 32)
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, preprocess.inception_crop(image, _rng(1), 32))
  assert not np.array_equal(out, preprocess.inception_crop(image, _rng(2), 32))
  # The windows it samples: area fraction in [0.08, 1], aspect ratio in [3/4, 4/3].
  seen = []
  original = preprocess.resize
  try:
    preprocess.resize = lambda crop, rng, h, w: seen.append(crop.shape[:2]) or original(
        crop, rng, h, w)
    for s in range(200):
      preprocess.inception_crop(image, _rng(s), 16)
  finally:
    preprocess.resize = original
  areas = np.array([h * w for h, w in seen]) / (64 * 48)
  ratios = np.array([w / h for h, w in seen])
  assert areas.min() >= 0.08 - 0.01 and areas.max() <= 1.0
  assert ratios.min() >= 0.75 - 0.05 and ratios.max() <= 4 / 3 + 0.05
  assert areas.max() - areas.min() > 0.5  # The whole range is used.


def test_inception_crop_falls_back_to_the_centre_of_a_thin_image():
  thin = _image(200, 3)  # Aspect 0.015: no draw fits; the centred 3x4 window is used.
  assert preprocess.inception_crop(thin, _rng(0), 8).shape == (8, 8, 3)


def test_scale_jitter_draws_the_shorter_side_in_its_range():
  sides = {min(preprocess.scale_jitter(_image(30, 40), _rng(s), 16, 20).shape[:2])
           for s in range(60)}
  assert sides == {16, 17, 18, 19, 20}


def test_flip_lr_mirrors_about_half_the_time():
  image = _image(5, 6)
  outs = [preprocess.flip_lr(image, _rng(s)) for s in range(100)]
  flipped = sum(np.array_equal(o, image[:, ::-1]) for o in outs)
  assert all(np.array_equal(o, image) or np.array_equal(o, image[:, ::-1]) for o in outs)
  assert 30 < flipped < 70


def test_pca_lighting_shifts_every_pixel_by_one_colour_along_the_eigenvectors():
  image = np.full((6, 5, 3), 128, np.uint8)
  out = preprocess.pca_lighting(image, _rng(4), 0.1)
  assert out.dtype == np.uint8 and out.shape == image.shape
  shift = out.astype(int) - 128
  assert np.all(shift == shift[0, 0]) and np.any(shift != 0)  # One shift per image.
  alpha = _rng(4).normal(0.0, 0.1, 3)
  expected = 255 * preprocess.IMAGENET_EIGVECS @ (alpha * np.array([0.2175, 0.0188, 0.0045]))
  np.testing.assert_allclose(shift[0, 0], expected, atol=0.51)
  saturated = preprocess.pca_lighting(np.full((2, 2, 3), 255, np.uint8), _rng(0), 10.0)
  assert saturated.min() >= 0 and saturated.max() <= 255  # Clipped, not wrapped.
  with pytest.raises(ValueError, match="needs RGB"):
    preprocess.pca_lighting(_image(4, 4, 1), _rng(0), 0.1)


def test_resize_to_a_fixed_size():
  assert preprocess.resize(_image(47, 17), None, 20, 30).shape == (20, 30, 3)


def test_build_applies_the_ops_in_order_with_one_generator():
  fn = preprocess.build("resize_small(36)|random_crop(32)|flip_lr|pca_lighting(0.1)")
  image = _image(47, 17)
  a, b = fn(image, _rng(7)), fn(image, _rng(7))
  assert a.shape == (32, 32, 3)
  np.testing.assert_array_equal(a, b)
  assert preprocess.build("") is None
  assert preprocess.output_hw("resize_small(256)|central_crop(224)", (None, None)) == (224, 224)
  assert preprocess.output_hw("resize_small(256)", (None, None)) == (None, None)
  assert preprocess.output_hw("flip_lr", (32, 32)) == (32, 32)
  assert preprocess.output_hw("resize(20, 30)|flip_lr", (None, None)) == (20, 30)


@pytest.mark.parametrize("pp,match", [
    ("inception_crop", r"takes 1 argument"),
    ("scale_jitter(256)", r"takes 2 argument"),
    ("random_resized_crop(224)", r"unknown preprocessing op 'random_resized_crop\(224\)'"),
    ("central_crop(a)", r"arguments must be numbers"),
])
def test_bad_op_strings_name_the_op(pp, match):
  with pytest.raises(ValueError, match=match):
    preprocess.parse(pp)
