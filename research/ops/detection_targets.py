"""Training targets of the region-based detectors: RPN anchor labels (Faster R-CNN) and
RoI mini-batches (Fast R-CNN).

Per image, pure and jittable, with fixed-size outputs: vmap over a batch of
images whose ground truth is padded to a common count G with a mask (an image
with no object has an all-False mask; G may be 0). Boxes follow boxes.py's
conventions ([ymin, xmin, ymax, xmax], no +1), in input-image pixels; class
labels of the data are 0-based (TFDS's `objects/label`), and the detectors'
labels are 1-based with 0 for background.

Random choices take a jax.random key, so a training step is a function of its
key (and a resumed run samples the same mini-batches).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from research.ops import boxes as box_ops

RAW = ((0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0))  # boxes.encode's means, stds, unnormalised.


def sample_mask(key: jax.Array, candidates: jax.Array, count) -> jax.Array:
  """A uniformly random subset of the candidates, without replacement (jittable).

  Args:
    key: a jax.random key.
    candidates: bool [N].
    count: int (static or traced), how many to keep.

  Returns:
    bool [N]: min(count, candidates.sum()) of the True entries of candidates,
    every subset of that size equally likely.
  """
  n = candidates.shape[0]
  priority = jnp.where(candidates, jax.random.uniform(key, (n,)), 2.0)
  rank = jnp.zeros((n,), jnp.int32).at[jnp.argsort(priority)].set(jnp.arange(n, dtype=jnp.int32))
  return candidates & (rank < count)


def pad_empty_ground_truth(gt_boxes, gt_classes, gt_mask):
  """(gt_boxes [G, 4], gt_classes [G], gt_mask [G]) unchanged when G > 0; for
  G = 0, one masked dummy box of class 0, so reductions over the ground-truth
  axis stay defined (an image with no object behaves as if all were padding)."""
  if gt_boxes.shape[0]:
    return gt_boxes, gt_classes, gt_mask
  return jnp.zeros((1, 4), gt_boxes.dtype), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), bool)


def ground_truth_iou(boxes, gt_boxes, gt_mask):
  """IoU [N, G] of boxes [N, 4] with the ground truth [G, 4] (G >= 1, see
  pad_empty_ground_truth), 0 in the columns of padding (gt_mask False)."""
  return jnp.where(gt_mask[None, :], box_ops.pairwise_iou(boxes, gt_boxes), 0.0)


class RpnTargets(NamedTuple):
  """Faster R-CNN's anchor targets for one image (A anchors)."""
  labels: jax.Array       # int32 [A]: 1 sampled positive, 0 sampled negative, -1 not in the loss.
  box_targets: jax.Array  # float32 [A, 4]: encode(matched gt, anchor) at sampled positives, else 0.
  matched: jax.Array      # int32 [A]: index of the anchor's highest-IoU ground truth.
  max_iou: jax.Array      # float32 [A]: that IoU (0 outside the image or without ground truth).
  inside: jax.Array       # bool [A]: the anchor lies within the image (allowed_border).


@functools.partial(jax.jit, static_argnames=("batch_size", "positive_fraction", "means", "stds"))
def rpn_targets(key: jax.Array, anchors: jax.Array, gt_boxes: jax.Array, gt_mask: jax.Array,
                image_hw, positive_iou: float = 0.7, negative_iou: float = 0.3,
                batch_size: int = 256, positive_fraction: float = 0.5,
                allowed_border: float = 0.0, means=RAW[0], stds=RAW[1]) -> RpnTargets:
  """Labels and regression targets of the RPN's anchors (Ren et al. 2015, §3.1.2 and §3.3).

  Labelling (§3.1.2): an anchor is positive if its IoU with some ground-truth
  box is higher than positive_iou (strictly, as the paper; py-faster-rcnn's
  code uses >=), or if it has the highest IoU of all anchors with some
  ground-truth box (every anchor tying for that highest IoU, as
  py-faster-rcnn; only when that IoU is > 0, so a box no anchor overlaps
  makes no positive); negative if its IoU is lower than negative_iou for all
  ground-truth boxes and it is not positive; else ignored. Anchors crossing
  the image boundary by more than allowed_border pixels are ignored (§3.3:
  "we ignore all cross-boundary anchors so they do not contribute to the
  loss").

  Sampling (§3.1.3): batch_size anchors per image, up to batch_size *
  positive_fraction positives (1:1 by default) chosen at random, the rest
  negatives chosen at random. Fewer candidates than that: all of them. An
  image with no ground truth has only negatives.

  Box targets: boxes.encode of the positive's highest-IoU ground truth
  relative to the anchor (the R-CNN parameterisation, Faster R-CNN eq. 2),
  unnormalised by default (means=0, stds=1: the RPN loss's lambda = 10 was set
  for raw targets; py-faster-rcnn normalises only the Fast R-CNN head's).

  Args:
    key: a jax.random key.
    anchors: float32 [A, 4] in pixels (anchors.grid_anchors).
    gt_boxes: float32 [G, 4] in pixels, padded; G may be 0.
    gt_mask: bool [G], False for padding.
    image_hw: (height, width) in pixels; floats or traced scalars.
    positive_iou, negative_iou: the thresholds, 0.7 and 0.3.
    batch_size: static int, anchors per image in the loss (256).
    positive_fraction: static float, the most positives as a fraction (0.5).
    allowed_border: pixels an anchor may cross the border (0, the paper's).
    means, stds: static 4-tuples for boxes.encode.

  Returns:
    RpnTargets.
  """
  h, w = image_hw
  b = allowed_border
  inside = ((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] <= h + b)
            & (anchors[:, 3] <= w + b))
  gt_boxes, _, gt_mask = pad_empty_ground_truth(gt_boxes, jnp.zeros((0,), jnp.int32), gt_mask)
  iou = jnp.where(inside[:, None], ground_truth_iou(anchors, gt_boxes, gt_mask), 0.0)
  max_iou, matched = iou.max(axis=1), jnp.argmax(iou, axis=1).astype(jnp.int32)
  best_for_gt = iou.max(axis=0)  # [G]
  is_best = jnp.any((iou == best_for_gt[None]) & (best_for_gt[None] > 0) & gt_mask[None], axis=1)
  positive = inside & ((max_iou > positive_iou) | is_best)
  negative = inside & ~positive & (max_iou < negative_iou)
  k_pos, k_neg = jax.random.split(key)
  pos = sample_mask(k_pos, positive, int(batch_size * positive_fraction))
  neg = sample_mask(k_neg, negative, batch_size - pos.sum())
  labels = jnp.where(pos, 1, jnp.where(neg, 0, -1)).astype(jnp.int32)
  targets = box_ops.encode(gt_boxes[matched], anchors, means, stds)
  return RpnTargets(labels, jnp.where(pos[:, None], targets, 0.0).astype(jnp.float32), matched,
                    max_iou, inside)


class RoiTargets(NamedTuple):
  """Fast R-CNN's RoI mini-batch for one image (R slots, foreground first)."""
  rois: jax.Array         # float32 [R, 4] pixels; zeros where not valid.
  valid: jax.Array        # bool [R]: a sampled RoI (False: an unfilled slot, out of the loss).
  labels: jax.Array       # int32 [R]: 1 + the matched gt's class for foreground, 0 background.
  box_targets: jax.Array  # float32 [R, 4]: normalised encode(gt, RoI) for the label's class; 0 for bg.
  max_iou: jax.Array      # float32 [R]: IoU with the matched ground truth.
  matched: jax.Array      # int32 [R]: index of that ground truth.


@functools.partial(jax.jit, static_argnames=("num_rois", "foreground_fraction", "means", "stds"))
def sample_rois(key: jax.Array, proposals: jax.Array, proposal_mask: jax.Array,
                gt_boxes: jax.Array, gt_classes: jax.Array, gt_mask: jax.Array,
                num_rois: int = 64, foreground_fraction: float = 0.25,
                foreground_iou: float = 0.5, background_iou=(0.1, 0.5),
                means=box_ops.TARGET_MEANS, stds=box_ops.TARGET_STDS) -> RoiTargets:
  """One image's RoIs for Fast R-CNN's multi-task loss (Girshick 2015, §2.3 "Mini-batch sampling").

  The ground-truth boxes are added to the proposals (they are RoIs with IoU 1,
  as in the paper's code). Each candidate is matched to its highest-IoU ground
  truth. num_rois RoIs per image (R = 128 / N = 64 with N = 2 images): up to
  foreground_fraction (25%) foreground, IoU >= foreground_iou (0.5), labelled
  1 + that box's class; the rest background, IoU in [background_iou[0],
  background_iou[1]) = [0.1, 0.5), labelled 0 ("the lower threshold of 0.1
  appears to act as a heuristic for hard example mining"). Each group is
  sampled uniformly without replacement.

  Too few: fewer foreground candidates than the quota leave their slots to
  background (num_rois - #fg background); fewer background candidates than
  that leave slots unfilled, valid = False, as the paper's data layer then
  made a smaller mini-batch. An image with no ground truth has max IoU 0 with
  everything, so with the paper's lower threshold 0.1 it yields NO RoI (VOC
  has no such image); background_iou=(0.0, 0.5), py-faster-rcnn's Faster
  R-CNN setting, learns background from it.

  Regression targets are class-specific (§2.2: one regressor per class): the
  target of RoI r is for class labels[r], so the loss reads the predicted
  offsets of that class (detection_losses.fast_rcnn_loss); normalised with
  means/stds (§2.3, boxes.TARGET_STDS by default).

  Args:
    key: a jax.random key.
    proposals: float32 [P, 4] pixels (selective search or RPN), padded.
    proposal_mask: bool [P], False for padding.
    gt_boxes: float32 [G, 4] pixels, padded; G may be 0.
    gt_classes: int [G], 0-based classes of the data.
    gt_mask: bool [G].
    num_rois: static int, R.
    foreground_fraction: static float.
    foreground_iou, background_iou: floats, the thresholds.
    means, stds: static 4-tuples for boxes.encode.

  Returns:
    RoiTargets, every field R long.
  """
  boxes = jnp.concatenate([proposals, gt_boxes.astype(proposals.dtype)])
  valid = jnp.concatenate([proposal_mask, gt_mask])
  if boxes.shape[0] < num_rois:  # Static: pad so there are num_rois slots to gather.
    extra = num_rois - boxes.shape[0]
    boxes = jnp.concatenate([boxes, jnp.zeros((extra, 4), boxes.dtype)])
    valid = jnp.concatenate([valid, jnp.zeros((extra,), bool)])
  gt_boxes, gt_classes, gt_mask = pad_empty_ground_truth(gt_boxes, gt_classes, gt_mask)
  iou = ground_truth_iou(boxes, gt_boxes, gt_mask)
  max_iou, matched = iou.max(axis=1), jnp.argmax(iou, axis=1).astype(jnp.int32)
  fg = valid & (max_iou >= foreground_iou)
  bg = valid & (max_iou >= background_iou[0]) & (max_iou < background_iou[1]) & ~fg
  k_fg, k_bg = jax.random.split(key)
  fg = sample_mask(k_fg, fg, round(num_rois * foreground_fraction))
  bg = sample_mask(k_bg, bg, num_rois - fg.sum())
  group = jnp.where(fg, 0, jnp.where(bg, 1, 2))
  pick = jnp.argsort(group, stable=True)[:num_rois]
  is_fg, ok = fg[pick], group[pick] < 2
  rois = jnp.where(ok[:, None], boxes[pick], 0.0)
  targets = box_ops.encode(gt_boxes[matched[pick]], boxes[pick], means, stds)
  return RoiTargets(
      rois=rois.astype(jnp.float32), valid=ok,
      labels=jnp.where(is_fg, gt_classes[matched[pick]] + 1, 0).astype(jnp.int32),
      box_targets=jnp.where(is_fg[:, None], targets, 0.0).astype(jnp.float32),
      max_iou=jnp.where(ok, max_iou[pick], 0.0), matched=matched[pick])
