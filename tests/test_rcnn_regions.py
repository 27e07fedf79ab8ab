"""R-CNN's regions (issue 16; Girshick et al. 2014, §2.1 and Appendix A): warping with
context padding against a loop, and region features as the classifier's fc7, in chunks."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models import rcnn, vgg


def _loop_warp(image, box, s, context):
  h_img, w_img, _ = image.shape
  size = [max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)]
  pad = [v * context / (s - 2 * context) for v in size]
  y0, x0 = box[0] - pad[0], box[1] - pad[1]
  hh, ww = size[0] + 2 * pad[0], size[1] + 2 * pad[1]

  def weights(coord, n):  # Bilinear weights over in-image pixels, renormalised; None outside.
    if coord < 0 or coord > n:
      return None
    f = coord - 0.5
    lo = math.floor(f)
    w = {k: 1 - abs(f - k) for k in (lo, lo + 1) if 0 <= k < n and abs(f - k) < 1}
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}

  out = np.zeros((s, s, image.shape[2]))
  for i in range(s):
    wy = weights(y0 + (i + 0.5) * hh / s, h_img)
    for j in range(s):
      wx = weights(x0 + (j + 0.5) * ww / s, w_img)
      if wy is None or wx is None:
        continue
      out[i, j] = sum(a * b * image[y, x] for y, a in wy.items() for x, b in wx.items())
  return out


def test_warp_regions_with_context_matches_a_loop():
  rng = np.random.default_rng(4)
  image = rng.normal(size=(12, 16, 2)).astype(np.float32)
  boxes = np.asarray([[2, 3, 9, 12], [0, 0, 12, 16], [-3, 10, 5, 20], [6, 6, 6, 8],
                      [4.5, 1.25, 5.5, 14.75]], np.float32)
  warped = jax.jit(rcnn.warp_regions, static_argnums=(2, 3))(image, boxes, 10, 2.0)
  assert warped.shape == (5, 10, 10, 2)
  for got, box in zip(np.asarray(warped), boxes.astype(np.float64)):
    np.testing.assert_allclose(got, _loop_warp(image, box, 10, 2.0), rtol=1e-5, atol=1e-5)
  # Context: the box itself fills the middle S - 2p pixels: [2, 3, 9, 12] dilated by 2/6 of its size.
  np.testing.assert_allclose(rcnn.context_boxes(boxes[:1], 10, 2.0),
                             [[2 - 7 / 3, 3 - 3.0, 9 + 7 / 3, 12 + 3.0]], rtol=1e-6)
  assert rcnn.scaled_context(227) == 16 and rcnn.scaled_context(64) == pytest.approx(4.511, abs=1e-3)
  with pytest.raises(ValueError, match="no room"):
    rcnn.warp_regions(image, boxes, 10, 5.0)


def test_region_features_are_the_classifiers_fc7_in_chunks():
  model = vgg.MODELS["vgg_small"]()
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  apply_fn = lambda x: model.apply(variables, x, train=False)
  image = jnp.asarray(np.random.default_rng(5).normal(size=(40, 50, 1)), jnp.float32)
  boxes = np.asarray([[0, 0, 20, 20], [5, 10, 35, 48], [10, 10, 12, 30], [30, 0, 40, 50],
                      [1, 1, 39, 49], [20, 25, 30, 35]], np.float32)
  features = lambda b: rcnn.region_features(apply_fn, image, b, 28, 2.0)
  both = jax.jit(lambda b: (features(b), apply_fn(rcnn.warp_regions(image, b, 28, 2.0))[1]["fc7"]))
  direct, reference = both(boxes)
  assert direct.shape == (6, 256)
  np.testing.assert_allclose(direct, reference, rtol=1e-5, atol=1e-6)
  chunked = rcnn.in_chunks(lambda b: both(b)[0], np.concatenate([boxes, boxes[:3]]), 6)
  np.testing.assert_allclose(chunked, np.concatenate([direct, direct[:3]]), rtol=1e-5, atol=1e-5)
  with pytest.raises(KeyError, match="no 'pool5'"):
    jax.eval_shape(lambda b: rcnn.region_features(apply_fn, image, b, 28, 2.0, layer="pool5"),
                   boxes)
