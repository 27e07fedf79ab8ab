"""Region-of-interest feature pooling: RoI max pooling (Fast R-CNN) and RoI align (Mask R-CNN).

Both read a fixed-size [PH, PW, C] feature grid for each box from a batch of
feature maps [B, H, W, C] (NHWC, as the models here). Boxes are pixel
coordinates of the *input image* (boxes.py's conventions); spatial_scale maps
them onto the feature map (1/16 for VGG16's conv5_3, the papers' setting).
Every RoI names its image with batch_indices (in [0, B): an index outside is
clamped by XLA's gather, not refused). R may be 0. Jittable; output_size,
spatial_scale, sampling_ratio and aligned are static.
"""

import functools

import jax
import jax.numpy as jnp


def _c_round(v: jax.Array) -> jax.Array:
  """C's round(): halves away from zero (jnp.round rounds them to even), exactly:
  v - trunc(v) is exact in floating point, so no v + 0.5 rounding error."""
  t = jnp.trunc(v)
  return t + jnp.where(jnp.abs(v - t) >= 0.5, jnp.sign(v), 0)


def _caffe_bins(start, end, pooled: int, size: int):
  """Caffe's ROIPoolingLayer bins along one axis: [R] rounded RoI start/end
  cells (inclusive) -> [R, pooled] bin starts and ends (exclusive), clipped to
  [0, size]."""
  length = jnp.maximum(end - start + 1, 1)  # "Force malformed ROIs to be 1x1".
  bin_size = length / pooled  # float32, as the layer's Dtype.
  p = jnp.arange(pooled, dtype=jnp.float32)
  lo = jnp.floor(p * bin_size[:, None]).astype(jnp.int32) + start[:, None]
  hi = jnp.ceil((p + 1) * bin_size[:, None]).astype(jnp.int32) + start[:, None]
  return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def _first_max(v, i, v2, i2):
  """Combines two (max, row-major index of its first occurrence) pairs."""
  take2 = (v2 > v) | ((v2 == v) & (i2 < i))
  return jnp.where(take2, v2, v), jnp.where(take2, i2, i)


def _shift(x, axis: int, d: int, fill):
  """x moved d places back along axis (x[p + d] at p), the end filled."""
  kept = jax.lax.slice_in_dim(x, d, x.shape[axis], axis=axis)
  pad_shape = list(x.shape)
  pad_shape[axis] = d
  return jnp.concatenate([kept, jnp.full(pad_shape, fill, x.dtype)], axis=axis)


def _levels(size: int) -> int:
  return size.bit_length()  # floor(log2(size)) + 1 levels: windows 1, 2, ..., 2^floor(log2).


def _sparse_table(x: jax.Array):
  """2-D sparse table of window maxima of x [B, H, W, C] and their first
  (row-major) positions: values [KH, KW, B, H, W, C] and int32 flat indices
  h * W + w, entry (kh, kw, b, h, w) for the window [h, h + 2^kh) x [w, w + 2^kw)."""
  _, h, w, _ = x.shape
  flat = (jnp.arange(h, dtype=jnp.int32)[:, None] * w + jnp.arange(w, dtype=jnp.int32))
  index = jnp.broadcast_to(flat[None, :, :, None], x.shape)
  big = jnp.iinfo(jnp.int32).max
  rows = [(x, index)]
  for k in range(1, _levels(h)):
    v, i = rows[-1]
    d = 1 << (k - 1)
    rows.append(_first_max(v, i, _shift(v, 1, d, -jnp.inf), _shift(i, 1, d, big)))
  table = []
  for v, i in rows:
    cols = [(v, i)]
    for k in range(1, _levels(w)):
      v, i = cols[-1]
      d = 1 << (k - 1)
      cols.append(_first_max(v, i, _shift(v, 2, d, -jnp.inf), _shift(i, 2, d, big)))
    table.append((jnp.stack([c[0] for c in cols]), jnp.stack([c[1] for c in cols])))
  return jnp.stack([t[0] for t in table]), jnp.stack([t[1] for t in table])


def _level_of(length: jax.Array, levels: int) -> jax.Array:
  """floor(log2(length)) for int lengths >= 1, below `levels`, in integer arithmetic."""
  return sum((length >= (1 << k)).astype(jnp.int32) for k in range(1, levels))


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale"))
def roi_max_pool(features: jax.Array, boxes: jax.Array, batch_indices: jax.Array,
                 output_size: tuple[int, int], spatial_scale: float) -> jax.Array:
  """RoI max pooling (Girshick 2015, "Fast R-CNN", §2.1), as its Caffe layer computes it.

  Each RoI is rounded to feature cells, start = round(y1 * scale), end =
  round(y2 * scale) (C's round; both cells included, height end - start + 1,
  at least 1: the layer's arithmetic, applied to our +1-free boxes), and divided
  into an H x W grid of sub-windows of approximate size h/H x w/W: bin p spans
  cells [floor(p h / H), ceil((p + 1) h / H)) from the start, clipped to the
  map. Each bin is max-pooled per channel; a bin wholly outside the map gives 0.

  The gradient is §2.3 eq. 4: each output's gradient goes to its bin's argmax
  (the first maximum in row-major order on ties, as the layer's strict `>`
  keeps it), summed over all RoIs and bins that chose that input. It comes from
  autodiff of a gather at the argmax, so no gradient is split between ties.

  Cost: a 2-D sparse table of window maxima (log2 H x log2 W copies of the
  features, values and int32 positions) answers each bin in 4 lookups, so
  memory does not grow with R x bin size.

  Args:
    features: float [B, H, W, C].
    boxes: float [R, 4], [ymin, xmin, ymax, xmax] in input-image pixels.
    batch_indices: int [R], the image of each RoI.
    output_size: static (PH, PW), the grid (7 x 7 for VGG16, 6 x 6 for CaffeNet).
    spatial_scale: static float, feature cells per input pixel (1/16).

  Returns:
    [R, PH, PW, C], features.dtype.
  """
  nb, h, w, c = features.shape
  ph, pw = output_size
  r = boxes.shape[0]
  if r == 0:
    return jnp.zeros((0, ph, pw, c), features.dtype)
  cells = _c_round(boxes.astype(jnp.float32) * jnp.float32(spatial_scale)).astype(jnp.int32)
  hs, he = _caffe_bins(cells[:, 0], cells[:, 2], ph, h)  # [R, PH]
  ws, we = _caffe_bins(cells[:, 1], cells[:, 3], pw, w)  # [R, PW]
  empty = (he <= hs)[:, :, None] | (we <= ws)[:, None, :]  # [R, PH, PW]
  # Each bin's first cell and length, [R, PH, PW]; empty bins read cell 0 with
  # length 1 (masked below). A non-empty bin starts inside the map.
  len_h = jnp.where(empty, 1, (he - hs)[:, :, None])
  len_w = jnp.where(empty, 1, (we - ws)[:, None, :])
  kh, kw = _level_of(len_h, _levels(h)), _level_of(len_w, _levels(w))
  h_lo = jnp.where(empty, 0, hs[:, :, None])
  w_lo = jnp.where(empty, 0, ws[:, None, :])
  h_hi = h_lo + len_h - (1 << kh)
  w_hi = w_lo + len_w - (1 << kw)
  values, indices = _sparse_table(jax.lax.stop_gradient(features))
  b = jnp.broadcast_to(batch_indices.astype(jnp.int32)[:, None, None], empty.shape)
  best = None
  for hh in (h_lo, h_hi):
    for ww in (w_lo, w_hi):
      corner = values[kh, kw, b, hh, ww], indices[kh, kw, b, hh, ww]  # [R, PH, PW, C]
      best = corner if best is None else _first_max(*best, *corner)
  argmax = best[1]  # [R, PH, PW, C], flat h * W + w.
  flat = features.reshape(nb, h * w, c)
  pooled = flat[b[..., None], argmax, jnp.arange(c)]  # A gather: its gradient is eq. 4.
  return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)


def _bilinear_axis(coords: jax.Array, size: int):
  """torchvision's roi_align bilinear_interpolate along one axis.

  coords float [R, S] -> (low, high) int32 and (w_low, w_high) float [R, S].
  A sample below -1 or above `size` reads 0; within, it is clamped to the
  first/last cell (so [-1, 0] reads the first cell, [size - 1, size] the last).
  """
  inside = (coords >= -1.0) & (coords <= size)
  c = jnp.maximum(coords, 0.0)
  low = jnp.floor(c).astype(jnp.int32)
  at_end = low >= size - 1
  low = jnp.where(at_end, size - 1, low)
  high = jnp.where(at_end, size - 1, low + 1)
  # At the end both corners are the last cell, so how the weight splits between
  # them does not matter (torchvision moves the point onto the cell instead).
  frac = c - low
  zero = jnp.zeros((), c.dtype)
  return low, high, jnp.where(inside, 1.0 - frac, zero), jnp.where(inside, frac, zero)


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale", "sampling_ratio",
                                             "aligned"))
def roi_align(features: jax.Array, boxes: jax.Array, batch_indices: jax.Array,
              output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int = 2,
              aligned: bool = True) -> jax.Array:
  """RoI align (He, Gkioxari, Dollár & Girshick 2017, "Mask R-CNN", §3).

  No rounding: each bin of the RoI (exact h/PH x w/PW) averages the bilinear
  interpolation of the features at sampling_ratio x sampling_ratio regularly
  spaced points (2 x 2: the paper's "four regularly sampled locations", average
  aggregation). Values follow torchvision.ops.roi_align with a positive
  sampling_ratio: a sample more than one cell outside the map reads 0.
  aligned=True (default) shifts by half a cell so that box coordinates and cell
  centres agree (box edge 0 is the edge of cell 0, whose centre is 0.5), which
  our continuous box convention needs; aligned=False is the original Mask R-CNN
  (Detectron) arithmetic, with RoIs of under one cell stretched to one.
  Differentiable (autodiff through gathers) w.r.t. features, and w.r.t. boxes
  almost everywhere.

  Args:
    features: float [B, H, W, C].
    boxes: float [R, 4], [ymin, xmin, ymax, xmax] in input-image pixels.
    batch_indices: int [R].
    output_size: static (PH, PW) (7 x 7 in Mask R-CNN's box head).
    spatial_scale: static float, feature cells per input pixel.
    sampling_ratio: static int >= 1, samples per bin along each axis.
    aligned: static bool.

  Returns:
    [R, PH, PW, C], features.dtype.
  """
  if sampling_ratio < 1:
    raise ValueError(f"roi_align: sampling_ratio={sampling_ratio} must be >= 1 (a fixed "
                     "count keeps shapes static; Mask R-CNN samples 2 x 2 per bin)")
  nb, h, w, c = features.shape
  ph, pw = output_size
  s = sampling_ratio
  if boxes.shape[0] == 0:
    return jnp.zeros((0, ph, pw, c), features.dtype)
  roi = boxes.astype(jnp.float32) * jnp.float32(spatial_scale) - (0.5 if aligned else 0.0)
  size = roi[:, 2:] - roi[:, :2]  # [R, 2] (h, w)
  if not aligned:
    size = jnp.maximum(size, 1.0)

  def samples(start, length, pooled):  # [R] -> [R, pooled * s] sample coordinates.
    bin_size = length / pooled
    k = jnp.arange(pooled * s)
    offset = (k // s).astype(jnp.float32) * bin_size[:, None] \
        + ((k % s).astype(jnp.float32) + 0.5) * (bin_size[:, None] / s)
    return start[:, None] + offset

  y_lo, y_hi, wy_lo, wy_hi = _bilinear_axis(samples(roi[:, 0], size[:, 0], ph), h)
  x_lo, x_hi, wx_lo, wx_hi = _bilinear_axis(samples(roi[:, 1], size[:, 1], pw), w)
  b = batch_indices.astype(jnp.int32)[:, None, None]
  out = 0.0
  for yi, wy in ((y_lo, wy_lo), (y_hi, wy_hi)):
    for xi, wx in ((x_lo, wx_lo), (x_hi, wx_hi)):
      weight = (wy[:, :, None] * wx[:, None, :])[..., None].astype(features.dtype)
      out = out + weight * features[b, yi[:, :, None], xi[:, None, :]]  # [R, PH*s, PW*s, C]
  return out.reshape(-1, ph, s, pw, s, c).mean(axis=(2, 4)).astype(features.dtype)
