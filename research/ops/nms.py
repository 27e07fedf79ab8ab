"""Greedy non-maximum suppression, jittable, with a fixed-size output.

The papers' NMS (R-CNN §2.2: "rejects a region if it has an intersection-over-
union overlap with a higher scoring selected region larger than a learned
threshold"; Fast R-CNN §2.4 and Faster R-CNN §3.3 apply it per class, and
Faster R-CNN to the RPN's proposals): take the highest-scoring box left, keep
it, drop every remaining box whose IoU with it exceeds the threshold, repeat.

Here each round picks the best remaining box with argmax, so the output size is
static (max_outputs, padded, with a validity mask) and the work is
O(max_outputs * N): no N x N IoU matrix. Equal scores are broken by the lower
input index (argmax returns the first maximum), so the result does not depend
on the backend's sort. Boxes follow boxes.py's conventions.
"""

import functools

import jax
import jax.numpy as jnp

from research.ops import boxes as box_ops


@functools.partial(jax.jit, static_argnames=("max_outputs",))
def nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float, max_outputs: int,
        score_threshold: float = -jnp.inf, valid: jax.Array | None = None):
  """Greedy NMS of one set of boxes.

  A box is a candidate when its score is > score_threshold (NaN scores never
  are) and `valid` is true; it is suppressed by a kept box with IoU >
  iou_threshold (strictly, as py-faster-rcnn's `ovr <= thresh` keeps equal
  overlaps). Degenerate boxes have IoU 0 with all boxes, so they never suppress
  or get suppressed; they are kept if their score allows.

  Args:
    boxes: float [N, 4]; N may be 0.
    scores: float [N].
    iou_threshold: float in [0, 1] (0.3 for Fast R-CNN's per-class NMS, 0.7 for
      Faster R-CNN's proposals).
    max_outputs: static int >= 0, the output size.
    score_threshold: float.
    valid: optional bool [N]; False marks padding.

  Returns:
    (indices, mask): int32 [max_outputs], indices into boxes of the kept boxes
    in decreasing score order (ties: lower index first); bool [max_outputs],
    True for the kept ones. Padding after the kept boxes has index 0 and mask
    False.
  """
  n = boxes.shape[0]
  if n == 0 or max_outputs == 0:
    return jnp.zeros((max_outputs,), jnp.int32), jnp.zeros((max_outputs,), bool)
  candidate = scores > score_threshold
  if valid is not None:
    candidate &= valid
  # -inf marks "not a candidate"; a candidate scoring -inf itself cannot be
  # told apart, so score_threshold=-inf counts -inf scores out too.
  masked = jnp.where(candidate, scores, -jnp.inf)

  def cond(carry):
    k, masked, _, _ = carry
    return (k < max_outputs) & jnp.any(masked > -jnp.inf)

  def body(carry):
    k, masked, indices, mask = carry
    best = jnp.argmax(masked).astype(jnp.int32)  # First maximum: ties to the lower index.
    overlap = box_ops.pairwise_iou(boxes[best][None], boxes)[0]
    masked = jnp.where(overlap > iou_threshold, -jnp.inf, masked).at[best].set(-jnp.inf)
    return k + 1, masked, indices.at[k].set(best), mask.at[k].set(True)

  init = (jnp.int32(0), masked, jnp.zeros((max_outputs,), jnp.int32),
          jnp.zeros((max_outputs,), bool))
  _, _, indices, mask = jax.lax.while_loop(cond, body, init)
  return indices, mask


@functools.partial(jax.jit, static_argnames=("max_outputs_per_class",))
def batched_nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float,
                max_outputs_per_class: int, score_threshold: float = -jnp.inf):
  """Per-class greedy NMS, every class at once (Fast R-CNN §2.4's test time).

  Classes never suppress each other. Boxes are either shared by all classes
  (proposals: [N, 4]) or class-specific (after class-specific regression:
  [N, C, 4]).

  Args:
    boxes: float [N, 4] or [N, C, 4].
    scores: float [N, C], e.g. softmax probabilities (drop the background
      column first if it should not be suppressed).
    iou_threshold, score_threshold: as `nms`.
    max_outputs_per_class: static int, K.

  Returns:
    (indices, mask): int32 [C, K], row c the indices into the N boxes kept for
    class c in decreasing score order; bool [C, K].
  """
  per_class_boxes = boxes if boxes.ndim == 3 else jnp.broadcast_to(
      boxes[:, None], (boxes.shape[0], scores.shape[1], 4))
  one = lambda b, s: nms(b, s, iou_threshold, max_outputs_per_class, score_threshold)
  return jax.vmap(one, in_axes=(1, 1))(per_class_boxes, scores)


@functools.partial(jax.jit, static_argnames=("max_outputs_per_class", "max_outputs"))
def multiclass_nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float,
                   max_outputs_per_class: int, max_outputs: int,
                   score_threshold: float = -jnp.inf):
  """Per-class NMS, then the best max_outputs detections over all classes.

  The detectors' test-time output (Fast R-CNN's test code: NMS at 0.3 per
  class, then at most 100 detections per image by score).

  Args:
    boxes, scores, iou_threshold, score_threshold, max_outputs_per_class: as
      `batched_nms`.
    max_outputs: static int, the number of detections returned.

  Returns:
    dict of arrays, max_outputs long, in decreasing score order (ties: lower
    class, then the per-class order): "boxes" float [max_outputs, 4],
    "scores" float, "classes" int32 (column of scores), "indices" int32 (row
    of boxes), "mask" bool (False: padding, zero elsewhere).
  """
  n, c = scores.shape
  indices, mask = batched_nms(boxes, scores, iou_threshold, max_outputs_per_class,
                              score_threshold)
  classes = jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32)[:, None], indices.shape)
  flat_indices, flat_classes, flat_mask = indices.ravel(), classes.ravel(), mask.ravel()
  flat_scores = jnp.where(flat_mask, scores[flat_indices, flat_classes], -jnp.inf) \
      if n else jnp.full(flat_mask.shape, -jnp.inf, scores.dtype)
  # A stable sort on -score keeps the (class, rank) order among equal scores.
  k = min(max_outputs, flat_scores.shape[0])
  order = jnp.argsort(-flat_scores, stable=True)[:k]
  pad = lambda x: jnp.concatenate([x, jnp.zeros((max_outputs - k, *x.shape[1:]), x.dtype)])
  out_mask = pad(flat_mask[order])
  out_indices, out_classes = pad(flat_indices[order]), pad(flat_classes[order])
  out_scores = jnp.where(out_mask, pad(jnp.where(flat_mask, flat_scores, 0)[order]), 0)
  if n == 0:
    out_boxes = jnp.zeros((max_outputs, 4), boxes.dtype)
  else:
    picked = boxes[out_indices, out_classes] if boxes.ndim == 3 else boxes[out_indices]
    out_boxes = jnp.where(out_mask[:, None], picked, 0)
  return {"boxes": out_boxes, "scores": out_scores, "classes": jnp.where(out_mask, out_classes, 0),
          "indices": jnp.where(out_mask, out_indices, 0), "mask": out_mask}
