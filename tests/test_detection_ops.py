"""research/ops/{boxes,nms,roi}.py against straightforward Python loops (issue 16's ops).

Random inputs include empty sets, zero-area and inverted boxes, and boxes partly
or wholly outside the image. Shapes are tiny and shared so each op compiles once
or twice. (anchors.py: test_anchors.py.)
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import errors
from research.ops import boxes as box_ops, nms as nms_ops, roi

IMAGE_HW = (20, 24)      # Pixels; the feature map below is the image at stride 4.
FEATURES_SHAPE = (2, 5, 6, 3)
SCALE = 0.25
POOL = (2, 3)


def _random_boxes(rng, n, hw=IMAGE_HW, margin=8.0):
  """n boxes over the image and up to `margin` pixels beyond it, with every
  third box degenerate or inverted and a few wholly outside."""
  h, w = hw
  y = rng.uniform(-margin, h + margin, (n, 2))
  x = rng.uniform(-margin, w + margin, (n, 2))
  b = np.stack([y.min(1), x.min(1), y.max(1), x.max(1)], axis=1)
  b[::3, 2] = b[::3, 0]                            # Zero height.
  b[1::5, 1], b[1::5, 3] = b[1::5, 3], b[1::5, 1]  # Inverted width.
  b[2::7] += [h + margin, 0, h + margin, 0]        # Below the image.
  return b.astype(np.float32)


def _loop_iou(a, b):
  out = np.zeros((len(a), len(b)), np.float64)
  for i, p in enumerate(a):
    for j, q in enumerate(b):
      ih = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
      iw = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
      area_p = max(0.0, p[2] - p[0]) * max(0.0, p[3] - p[1])
      area_q = max(0.0, q[2] - q[0]) * max(0.0, q[3] - q[1])
      union = area_p + area_q - ih * iw
      out[i, j] = ih * iw / union if union > 0 else 0.0
  return out


# --- boxes.py ---

@pytest.mark.parametrize("n,m", [(7, 5), (0, 5), (4, 0)])
def test_pairwise_iou_matches_a_loop_with_degenerate_and_outside_boxes(n, m):
  rng = np.random.default_rng(n * 10 + m)
  a, b = _random_boxes(rng, n), _random_boxes(rng, m)
  ours = jax.jit(box_ops.pairwise_iou)(a, b)
  assert ours.shape == (n, m)
  np.testing.assert_allclose(ours, _loop_iou(a, b), rtol=1e-5, atol=1e-6)
  assert np.isfinite(ours).all()
  if n and m:
    assert float(ours[0].max()) == 0.0  # Box 0 has zero height: IoU 0 with all.
    np.testing.assert_allclose(box_ops.area(a), [max(0, p[2] - p[0]) * max(0, p[3] - p[1])
                                                 for p in a], rtol=1e-6)


def test_iou_of_two_identical_degenerate_boxes_is_zero_not_nan():
  point = jnp.asarray([[3.0, 3.0, 3.0, 3.0]])
  assert float(box_ops.pairwise_iou(point, point)[0, 0]) == 0.0


def test_clip_and_unit_conversion():
  rng = np.random.default_rng(1)
  b = _random_boxes(rng, 9)
  clipped = np.asarray(jax.jit(box_ops.clip_to_image, static_argnums=(1, 2))(b, *IMAGE_HW))
  for got, box in zip(clipped, b):
    limits = [IMAGE_HW[0], IMAGE_HW[1]] * 2
    np.testing.assert_array_equal(got, [min(max(v, 0.0), lim) for v, lim in zip(box, limits)])
  normalized = box_ops.to_normalized(clipped, *IMAGE_HW)
  assert float(normalized.min()) >= 0 and float(normalized.max()) <= 1
  np.testing.assert_allclose(box_ops.to_pixels(normalized, *IMAGE_HW), clipped, rtol=1e-6)


def _loop_encode(g, p, means, stds):
  gh, gw, ph, pw = g[2] - g[0], g[3] - g[1], p[2] - p[0], p[3] - p[1]
  t = [(g[0] + gh / 2 - p[0] - ph / 2) / ph, (g[1] + gw / 2 - p[1] - pw / 2) / pw,
       math.log(gh / ph), math.log(gw / pw)]
  return [(v - mu) / sd for v, mu, sd in zip(t, means, stds)]


def test_encode_decode_match_the_rcnn_formulas_and_invert():
  rng = np.random.default_rng(2)
  corner = rng.uniform(0, 20, (6, 2))
  proposals = np.concatenate([corner, corner + rng.uniform(2, 15, (6, 2))], 1).astype(np.float32)
  gt = proposals + rng.uniform(-2, 2, (6, 4)).astype(np.float32)
  gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 1)
  for means, stds in [(box_ops.TARGET_MEANS, box_ops.TARGET_STDS), ((0.1, -0.2, 0.0, 0.3),
                                                                  (1.0, 1.0, 1.0, 1.0))]:
    t = jax.jit(box_ops.encode, static_argnums=(2, 3))(gt, proposals, means, stds)
    expected = [_loop_encode(g.astype(np.float64), p.astype(np.float64), means, stds)
                for g, p in zip(gt, proposals)]
    np.testing.assert_allclose(t, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(box_ops.decode(t, proposals, means, stds), gt, rtol=1e-5, atol=1e-4)


def test_degenerate_boxes_encode_finite_and_huge_deltas_decode_finite():
  p = jnp.asarray([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
  g = jnp.asarray([[2.0, 2.0, 2.0, 8.0], [0.0, 0.0, 4.0, 4.0]])
  assert np.isfinite(box_ops.encode(g, p)).all()
  huge = jnp.asarray([[0.0, 0.0, 1e4, 1e4], [0.0, 0.0, 1e4, 1e4]])
  out = box_ops.decode(huge, p)
  assert np.isfinite(out).all()
  # The clamp: the first box grows at most 1000/16 = 62.5x.
  np.testing.assert_allclose(out[0, 2] - out[0, 0], 10.0 * 62.5, rtol=1e-5)
  np.testing.assert_array_equal(out[1], [5.0, 5.0, 5.0, 5.0])  # Degenerate stays degenerate.


@pytest.mark.parametrize("box,image_size,message", [
    ([1.0, 1.0, 1.0, 5.0], None, "box 1 .* zero or negative height"),
    ([1.0, 6.0, 4.0, 5.0], None, "box 1 .* zero or negative width"),
    ([1.0, 1.0, float("nan"), 5.0], None, "box 1 .* not finite"),
    ([0.2, 0.1, 1.2, 0.5], (1, 1), r"box 1 .* outside the image \[0, 1\] x \[0, 1\]"),
])
def test_validate_boxes_refuses_bad_user_boxes_in_one_line(box, image_size, message):
  good = [0.1, 0.1, 0.5, 0.5]
  box_ops.validate_boxes([good], "voc test example 3", image_size)
  box_ops.validate_boxes(np.zeros((0, 4)), "voc test example 3")
  with pytest.raises(box_ops.InvalidBoxError, match="^voc test example 3: " + message) as e:
    box_ops.validate_boxes([good, box], "voc test example 3", image_size)
  assert "\n" not in str(e.value) and isinstance(e.value, errors.ConfigError)
  with pytest.raises(box_ops.InvalidBoxError, match=r"must be \[N, 4\]"):
    box_ops.validate_boxes([1.0, 2.0, 3.0], "x")


# --- nms.py ---

def _loop_nms(b, s, iou_threshold, max_outputs, score_threshold=-np.inf, valid=None):
  """py-faster-rcnn's greedy NMS, ties in score broken by lower index."""
  order = sorted((i for i in range(len(s)) if s[i] > score_threshold
                  and (valid is None or valid[i])), key=lambda i: (-s[i], i))
  keep = []
  while order and len(keep) < max_outputs:
    i = order.pop(0)
    keep.append(i)
    order = [j for j in order if _loop_iou(b[i:i + 1], b[j:j + 1])[0, 0] <= iou_threshold]
  return keep


def _kept(indices, mask):
  indices, mask = np.asarray(indices), np.asarray(mask)
  assert list(mask) == sorted(mask, reverse=True)  # The kept ones first, then padding.
  return indices[mask].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_a_loop_greedy_nms_with_ties(seed):
  rng = np.random.default_rng(seed)
  b = _random_boxes(rng, 12, margin=2.0)
  b[6:] = b[:6] + rng.uniform(-1, 1, (6, 4)).astype(np.float32)  # Heavy overlaps.
  s = (rng.integers(0, 5, 12) / 4).astype(np.float32)  # Many equal scores.
  valid = rng.uniform(size=12) > 0.2
  for iou_t, max_out, score_t, v in [(0.5, 12, -np.inf, None), (0.3, 4, -np.inf, None),
                                     (0.5, 12, 0.25, valid), (0.0, 12, -np.inf, None)]:
    ours = nms_ops.nms(b, s, iou_t, max_out, score_t, None if v is None else jnp.asarray(v))
    assert ours[0].shape == (max_out,) and ours[1].shape == (max_out,)
    assert _kept(*ours) == _loop_nms(b, s, iou_t, max_out, score_t, v)


def test_nms_vmaps_over_images():
  # The detectors run it per image of a batch: vmap must not change the result.
  rng = np.random.default_rng(5)
  b = np.stack([_random_boxes(rng, 12, margin=2.0) for _ in range(2)])
  s = rng.uniform(size=(2, 12)).astype(np.float32)
  indices, mask = jax.vmap(lambda b, s: nms_ops.nms(b, s, 0.3, 4))(b, s)
  for i in range(2):
    assert _kept(indices[i], mask[i]) == _loop_nms(b[i], s[i], 0.3, 4)


def test_nms_empty_input_and_no_candidates():
  indices, mask = nms_ops.nms(jnp.zeros((0, 4)), jnp.zeros((0,)), 0.5, 3)
  assert indices.shape == (3,) and not mask.any()
  indices, mask = nms_ops.nms(jnp.ones((2, 4)), jnp.asarray([0.1, float("nan")]), 0.5, 3, 0.5)
  assert not mask.any()


def test_batched_and_multiclass_nms_match_per_class_loops():
  rng = np.random.default_rng(7)
  n, c = 10, 3
  shared = _random_boxes(rng, n, margin=2.0)
  per_class = shared[:, None] + rng.uniform(-2, 2, (n, c, 4)).astype(np.float32)
  scores = (rng.integers(0, 6, (n, c)) / 5).astype(np.float32)
  for b in (shared, per_class):
    indices, mask = nms_ops.batched_nms(b, scores, 0.4, 5, 0.1)
    assert indices.shape == (c, 5)
    loops = [_loop_nms(b if b.ndim == 2 else b[:, k], scores[:, k], 0.4, 5, 0.1) for k in range(c)]
    assert [_kept(indices[k], mask[k]) for k in range(c)] == loops
    out = nms_ops.multiclass_nms(b, scores, 0.4, 5, 6, 0.1)
    # All kept detections by decreasing score, ties: lower class, then rank.
    expected = sorted(((-scores[i, k], k, r, i) for k in range(c) for r, i in enumerate(loops[k])))
    expected = expected[:6]
    got_mask = np.asarray(out["mask"])
    assert got_mask.sum() == len(expected) and got_mask[:len(expected)].all()
    assert out["classes"][got_mask].tolist() == [e[1] for e in expected]
    assert out["indices"][got_mask].tolist() == [e[3] for e in expected]
    np.testing.assert_array_equal(out["scores"][got_mask], [-e[0] for e in expected])
    picked = [b[e[3]] if b.ndim == 2 else b[e[3], e[1]] for e in expected]
    np.testing.assert_array_equal(out["boxes"][got_mask], np.reshape(picked, (-1, 4)))
  empty = nms_ops.multiclass_nms(jnp.zeros((0, 4)), jnp.zeros((0, c)), 0.4, 5, 6)
  assert empty["boxes"].shape == (6, 4) and not empty["mask"].any()


# --- roi.py ---

def _c_round(v):
  return math.copysign(math.floor(abs(v) + 0.5), v)


def _loop_roi_max_pool(x, b, idx, pooled, scale, upstream):
  """Caffe's ROIPoolingLayer Forward_cpu and Backward (argmax accumulation);
  also which outputs have a non-empty bin."""
  _, h, w, c = x.shape
  ph, pw = pooled
  out = np.zeros((len(b), ph, pw, c), np.float32)
  grad = np.zeros_like(x)
  filled = np.zeros(out.shape, bool)
  for r, (box, n) in enumerate(zip(b, idx)):
    y1, x1, y2, x2 = (int(_c_round(float(np.float32(v) * np.float32(scale)))) for v in box)
    rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
    bh, bw = np.float32(rh) / np.float32(ph), np.float32(rw) / np.float32(pw)
    for i in range(ph):
      for j in range(pw):
        hs = min(max(int(math.floor(np.float32(i) * bh)) + y1, 0), h)
        he = min(max(int(math.ceil(np.float32(i + 1) * bh)) + y1, 0), h)
        ws = min(max(int(math.floor(np.float32(j) * bw)) + x1, 0), w)
        we = min(max(int(math.ceil(np.float32(j + 1) * bw)) + x1, 0), w)
        for k in range(c):
          best, arg = -np.inf, None
          for yy in range(hs, he):
            for xx in range(ws, we):
              if x[n, yy, xx, k] > best:
                best, arg = x[n, yy, xx, k], (yy, xx)
          if arg is not None:
            out[r, i, j, k] = best
            grad[n, arg[0], arg[1], k] += upstream[r, i, j, k]
            filled[r, i, j, k] = True
  return out, grad, filled


def _features(seed):
  rng = np.random.default_rng(seed)
  # Rounded ReLU outputs: many bins hold several equal maxima (zeros above all).
  return np.maximum(np.round(rng.normal(size=FEATURES_SHAPE) * 2) / 2, 0).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_roi_max_pool_values_and_gradient_match_caffes_loops(seed):
  rng = np.random.default_rng(seed)
  x = _features(seed)
  b = np.concatenate([_random_boxes(rng, 9), [[0, 0, 20, 24], [10, 6, 10, 14]]]).astype(np.float32)
  # The last box's cells are 2.5, 1.5, 2.5, 3.5: C's round gives 3, 2, 3, 4;
  # rounding halves to even (jnp.round) would give 2, 2, 2, 4.
  b[3] = [-30, -30, -20, -20]                       # Wholly outside: bins are empty -> 0.
  idx = rng.integers(0, FEATURES_SHAPE[0], len(b)).astype(np.int32)
  upstream = rng.normal(size=(len(b), *POOL, FEATURES_SHAPE[3])).astype(np.float32)
  pooled, vjp = jax.vjp(lambda x: roi.roi_max_pool(x, b, idx, POOL, SCALE), x)
  ref_out, ref_grad, filled = _loop_roi_max_pool(x, b, idx, POOL, SCALE, upstream)
  np.testing.assert_array_equal(pooled, ref_out)
  np.testing.assert_allclose(vjp(upstream)[0], ref_grad, rtol=1e-5, atol=1e-5)  # Sums reordered.
  assert np.all(np.asarray(pooled[3]) == 0)
  # Each bin sends its whole gradient to one input (ties not split): with
  # upstream 1, an input's gradient counts the bins that chose it.
  ones = np.asarray(vjp(jnp.ones_like(pooled))[0])
  assert np.array_equal(ones, np.round(ones)) and ones.sum() == filled.sum()


def test_roi_ops_take_no_rois():
  x = jnp.asarray(_features(0))
  for op in (roi.roi_max_pool, roi.roi_align):
    out = op(x, jnp.zeros((0, 4)), jnp.zeros((0,), jnp.int32), POOL, SCALE)
    assert out.shape == (0, *POOL, FEATURES_SHAPE[3])


def _loop_roi_align(x, b, idx, pooled, scale, ratio, aligned, upstream):
  """torchvision's roi_align forward (CPU kernel) and its backward, as loops."""
  _, h, w, c = x.shape
  out = np.zeros((len(b), *pooled, c), np.float64)
  grad = np.zeros(x.shape, np.float64)
  off = 0.5 if aligned else 0.0
  for r, (box, n) in enumerate(zip(b.astype(np.float64), idx)):
    y0, x0, y1, x1 = box[0] * scale - off, box[1] * scale - off, box[2] * scale - off, \
        box[3] * scale - off
    rh, rw = y1 - y0, x1 - x0
    if not aligned:
      rh, rw = max(rh, 1.0), max(rw, 1.0)
    bh, bw = rh / pooled[0], rw / pooled[1]
    for i in range(pooled[0]):
      for j in range(pooled[1]):
        for iy in range(ratio):
          for ix in range(ratio):
            y = y0 + i * bh + (iy + 0.5) * bh / ratio
            xx = x0 + j * bw + (ix + 0.5) * bw / ratio
            if y < -1.0 or y > h or xx < -1.0 or xx > w:
              continue
            y, xx = max(y, 0.0), max(xx, 0.0)
            yl, xl = int(y), int(xx)
            if yl >= h - 1:
              yl = yh = h - 1
              y = float(yl)
            else:
              yh = yl + 1
            if xl >= w - 1:
              xl = xh = w - 1
              xx = float(xl)
            else:
              xh = xl + 1
            ly, lx = y - yl, xx - xl
            for (py, px), wt in (((yl, xl), (1 - ly) * (1 - lx)), ((yl, xh), (1 - ly) * lx),
                                 ((yh, xl), ly * (1 - lx)), ((yh, xh), ly * lx)):
              out[r, i, j] += wt * x[n, py, px] / ratio ** 2
              grad[n, py, px] += wt * upstream[r, i, j] / ratio ** 2
  return out, grad


@pytest.mark.parametrize("aligned,ratio", [(True, 2), (False, 1)])
def test_roi_align_values_and_gradient_match_torchvisions_loops(aligned, ratio):
  rng = np.random.default_rng(3)
  x = rng.normal(size=FEATURES_SHAPE).astype(np.float32)
  b = np.concatenate([_random_boxes(rng, 9), [[0, 0, 20, 24], [-30, -30, -20, -20]]])
  b = b.astype(np.float32)
  idx = rng.integers(0, FEATURES_SHAPE[0], len(b)).astype(np.int32)
  upstream = rng.normal(size=(len(b), *POOL, FEATURES_SHAPE[3])).astype(np.float32)
  f = lambda x: roi.roi_align(x, b, idx, POOL, SCALE, ratio, aligned)
  grad = jax.grad(lambda x: jnp.sum(f(x) * upstream))(x)
  ref_out, ref_grad = _loop_roi_align(x, b, idx, POOL, SCALE, ratio, aligned, upstream)
  np.testing.assert_allclose(f(x), ref_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(f(x))[-1] == 0)  # Wholly outside: every sample reads 0.


def test_roi_align_box_gradient_matches_finite_differences():
  x = jnp.asarray(np.random.default_rng(4).normal(size=FEATURES_SHAPE), jnp.float32)
  b = jnp.asarray([[3.3, 2.7, 14.1, 17.9]])
  f = jax.jit(lambda b: jnp.sum(roi.roi_align(x, b, jnp.zeros(1, jnp.int32), POOL, SCALE) ** 2))
  g = jax.jit(jax.grad(f))(b)
  eps = 1e-2  # No sample crosses a cell edge within +-eps here (piecewise smooth).
  for k in range(4):
    e = jnp.zeros_like(b).at[0, k].set(eps)
    np.testing.assert_allclose(g[0, k], (f(b + e) - f(b - e)) / (2 * eps), rtol=2e-2, atol=2e-3)


def test_roi_align_refuses_a_zero_sampling_ratio():
  with pytest.raises(ValueError, match="sampling_ratio=0 must be >= 1"):
    roi.roi_align(jnp.zeros(FEATURES_SHAPE), jnp.zeros((1, 4)), jnp.zeros(1, jnp.int32), POOL,
                  SCALE, 0)
