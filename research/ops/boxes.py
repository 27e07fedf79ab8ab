"""Boxes: area, IoU, clipping, and the R-CNN box parameterisation.

Conventions, used by every detection op (boxes.py, nms.py, roi.py, anchors.py):
  - A box is [ymin, xmin, ymax, xmax] on the last axis, TFDS's layout
    (`objects/bbox` of voc/2007 and coco/2017).
  - Coordinates are continuous, with no "+1": pixel (i, j) covers
    [i, i+1) x [j, j+1), so a box over pixel columns 0..w-1 spans xmin=0 to
    xmax=w and its width is xmax - xmin. R-CNN (appendix C) and Fast R-CNN's
    Caffe code count inclusive pixel indices (width = x2 - x1 + 1); modern code
    (Detectron2, torchvision) drops the +1, and so do we: the +1 makes the
    area of a box depend on the units (it is wrong for normalised boxes).
  - The functions here work in any units (pixels, or TFDS's [0, 1] normalised
    coordinates) unless they take an image size; `to_pixels` converts. The
    pooling ops (roi.py) and anchors (anchors.py) take pixels.
  - A box with ymax <= ymin or xmax <= xmin is degenerate: its area is 0 and its
    IoU with anything is 0 (never NaN). User data is checked by
    `validate_boxes` (NumPy, before any jitted work), which refuses such boxes.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from research import errors

# Fast R-CNN's normalised regression targets (§2.3: "we normalize the
# ground-truth regression targets v_i to have zero mean and unit variance").
# The paper computes them from the training RoIs; its released code
# (py-faster-rcnn, BBOX_NORMALIZE_TARGETS_PRECOMPUTED) fixes them to these
# values, as Faster R-CNN's code and most later ones do. Order (t_y, t_x, t_h, t_w).
TARGET_MEANS = (0.0, 0.0, 0.0, 0.0)
TARGET_STDS = (0.1, 0.1, 0.2, 0.2)
# decode's bound on t_h, t_w (after un-normalising): exp(4.135) = 62.5 = 1000 / 16,
# Detectron's BBOX_XFORM_CLIP: a box grows at most 62.5x, and exp never overflows.
MAX_LOG_SCALE = math.log(1000.0 / 16)


class InvalidBoxError(errors.ConfigError):
  """A box in a dataset the config names cannot be used (zero or negative area,
  non-finite, outside the image). launch.py prints it as its one line."""


def area(boxes: jax.Array) -> jax.Array:
  """Area of [..., 4] boxes -> [...]: (ymax - ymin)(xmax - xmin), 0 when degenerate."""
  h = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0)
  w = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)
  return h * w


def intersection(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise intersection areas: a [N, 4], b [M, 4] -> [N, M] (0 when disjoint)."""
  lo = jnp.maximum(a[:, None, :2], b[None, :, :2])
  hi = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  size = jnp.maximum(hi - lo, 0)
  return size[..., 0] * size[..., 1]


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection over union of every pair: a [N, 4], b [M, 4] -> [N, M].

  IoU = |a ∩ b| / |a ∪ b| (the overlap criterion of R-CNN §2.3 and of the
  PASCAL VOC evaluation). Pairs whose union is 0 (two degenerate boxes) get 0,
  not NaN; a degenerate box has IoU 0 with every box. N or M may be 0.
  Any units, as long as a and b share them; float dtype of the inputs.
  """
  inter = intersection(a, b)
  union = area(a)[:, None] + area(b)[None, :] - inter
  # inter <= union always, and inter > 0 implies union > 0.
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0).astype(inter.dtype)


def clip_to_image(boxes: jax.Array, height: float, width: float) -> jax.Array:
  """Clips [..., 4] boxes to the image [0, height] x [0, width] (same units).

  A box wholly outside the image becomes degenerate (area 0) on the border.
  """
  lo = jnp.zeros((4,), boxes.dtype)
  hi = jnp.asarray([height, width, height, width], boxes.dtype)
  return jnp.clip(boxes, lo, hi)


def to_pixels(boxes: jax.Array, height: float, width: float) -> jax.Array:
  """TFDS's normalised [..., 4] boxes -> pixel coordinates of a height x width image."""
  return boxes * jnp.asarray([height, width, height, width], boxes.dtype)


def to_normalized(boxes: jax.Array, height: float, width: float) -> jax.Array:
  """Pixel [..., 4] boxes of a height x width image -> TFDS's normalised coordinates."""
  return boxes / jnp.asarray([height, width, height, width], boxes.dtype)


def _centre_size(boxes: jax.Array, eps: float):
  """[..., 4] -> centre y, centre x, height, width; sizes floored at eps (> 0)."""
  cy = 0.5 * (boxes[..., 0] + boxes[..., 2])
  cx = 0.5 * (boxes[..., 1] + boxes[..., 3])
  h = jnp.maximum(boxes[..., 2] - boxes[..., 0], eps)
  w = jnp.maximum(boxes[..., 3] - boxes[..., 1], eps)
  return cy, cx, h, w


def encode(boxes: jax.Array, reference: jax.Array, means=TARGET_MEANS, stds=TARGET_STDS,
           eps: float = 1e-6) -> jax.Array:
  """Regression targets of boxes G relative to reference boxes P (R-CNN appendix C).

  t_x = (G_x - P_x) / P_w, t_y = (G_y - P_y) / P_h, t_w = log(G_w / P_w),
  t_h = log(G_h / P_h), with (x, y) the box centre and (w, h) its size (no
  +1, see the module docstring); then normalised, t <- (t - means) / stds
  (Fast R-CNN §2.3; the defaults are py-faster-rcnn's fixed statistics, see
  TARGET_STDS; pass means=(0,)*4, stds=(1,)*4 for the raw parameterisation).

  Args:
    boxes: float [..., 4], the targets G (ground truth).
    reference: float [..., 4] broadcastable with boxes, the proposals or
      anchors P; same units as boxes.
    means, stds: 4 floats each, in the output's order (t_y, t_x, t_h, t_w).
    eps: sizes below eps count as eps, so a degenerate box encodes to finite
      (large negative t_h / t_w) values instead of -inf or NaN. In the boxes'
      units: the default suits pixels and normalised coordinates alike.

  Returns:
    float [..., 4]: (t_y, t_x, t_h, t_w), y first like the boxes.
  """
  gy, gx, gh, gw = _centre_size(boxes, eps)
  py, px, ph, pw = _centre_size(reference, eps)
  t = jnp.stack([(gy - py) / ph, (gx - px) / pw, jnp.log(gh / ph), jnp.log(gw / pw)], axis=-1)
  return (t - jnp.asarray(means, t.dtype)) / jnp.asarray(stds, t.dtype)


def decode(deltas: jax.Array, reference: jax.Array, means=TARGET_MEANS, stds=TARGET_STDS,
           max_log_scale: float = MAX_LOG_SCALE) -> jax.Array:
  """Boxes from regression outputs: the inverse of `encode` (R-CNN appendix C).

  G_x = P_w d_x + P_x, G_w = P_w exp(d_w) (and y, h alike), after
  un-normalising d <- d * stds + means. d_h and d_w are clamped to at most
  max_log_scale first (Detectron's BBOX_XFORM_CLIP, log(1000/16)): an
  untrained regressor's large outputs would otherwise overflow exp to inf.
  Degenerate reference boxes decode to degenerate boxes at their centre.

  Args:
    deltas: float [..., 4], (t_y, t_x, t_h, t_w) as `encode` returns them.
    reference: float [..., 4] broadcastable with deltas, the boxes P.
    means, stds: as given to `encode`.
    max_log_scale: the clamp of d_h and d_w.

  Returns:
    float [..., 4] boxes [ymin, xmin, ymax, xmax] in the reference's units
    (not clipped to the image: see `clip_to_image`).
  """
  d = deltas * jnp.asarray(stds, deltas.dtype) + jnp.asarray(means, deltas.dtype)
  py, px, ph, pw = _centre_size(reference, 0.0)
  cy, cx = py + ph * d[..., 0], px + pw * d[..., 1]
  h = ph * jnp.exp(jnp.minimum(d[..., 2], max_log_scale))
  w = pw * jnp.exp(jnp.minimum(d[..., 3], max_log_scale))
  return jnp.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def validate_boxes(boxes, where: str, image_size: tuple[float, float] | None = None,
                   fix: str = "fix or drop the box in the data") -> None:
  """Refuses boxes a detector cannot learn from, before any jitted work (NumPy).

  Checks that every box is finite, has positive height and width
  (ymax > ymin, xmax > xmin: zero or negative area is refused), and, when
  image_size is given, lies within [0, height] x [0, width] (pass (1, 1) for
  TFDS's normalised boxes).

  Args:
    boxes: array-like [N, 4] (N may be 0).
    where: names the data in the message, e.g.
      "config.data.name='voc/2007' split train example 17".
    image_size: (height, width) in the boxes' units, or None.
    fix: what the user should do, ending the message.

  Raises:
    InvalidBoxError (a ConfigError, so a ValueError): one line naming `where`,
      the first bad box's index and values, what is wrong, and `fix`.
  """
  b = np.asarray(boxes, dtype=np.float64)
  if b.ndim != 2 or b.shape[1] != 4:
    raise InvalidBoxError(f"{where}: boxes must be [N, 4] ([ymin, xmin, ymax, xmax]), "
                          f"got shape {b.shape}")
  problems = [(~np.isfinite(b).all(axis=1), "is not finite"),
              (~(b[:, 2] > b[:, 0]), "has zero or negative height (ymax <= ymin)"),
              (~(b[:, 3] > b[:, 1]), "has zero or negative width (xmax <= xmin)")]
  if image_size is not None:
    h, w = image_size
    outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > h) | (b[:, 3] > w)
    problems.append((outside, f"lies outside the image [0, {h}] x [0, {w}]"))
  for bad, what in problems:
    if bad.any():
      i = int(np.argmax(bad))
      raise InvalidBoxError(f"{where}: box {i} [ymin, xmin, ymax, xmax]={b[i].tolist()} {what} "
                            f"({int(bad.sum())} such box(es)): {fix}.")
