"""R-CNN's three training sets from one image's proposals (Girshick et al. 2014, §2.3, appendices B, C).

R-CNN trains three things on the same regions, each with its own IoU rule:
  - the CNN, fine-tuned as an (N+1)-way classifier (§2.3 "Supervised
    pre-training / Domain-specific fine-tuning"): regions with IoU >= 0.5 with
    a ground-truth box are positives for that box's class, the rest background;
  - one linear SVM per class (§2.3 "Object category classifiers", appendix
    B): the ground-truth boxes of the class are its positives, regions with
    IoU < 0.3 with every box of the class its negatives, the rest (the "grey
    zone") ignored;
  - class-specific bounding-box regressors (appendix C): a region is a
    training pair with its highest-IoU ground truth when that IoU is > 0.6.
As in the paper's code, the ground-truth boxes are regions too (appended to
the proposals). Per image, pure and jittable; boxes as boxes.py, classes of
the data 0-based.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from research.ops import boxes as box_ops
from research.ops import detection_targets


class RcnnSets(NamedTuple):
  """The regions of one image (N = P proposals + G ground truth) and their labels."""
  boxes: jax.Array               # float32 [N, 4]: the proposals, then the ground truth.
  valid: jax.Array               # bool [N]: a real region (False: padding of either).
  is_gt: jax.Array               # bool [N]: one of the ground-truth boxes.
  finetune_labels: jax.Array     # int32 [N]: 1 + class if IoU >= 0.5, else 0 (background).
  svm_labels: jax.Array          # int8 [N, C]: 1 positive, 0 negative, -1 ignored, per class.
  regression_mask: jax.Array     # bool [N]: a bounding-box regression pair (IoU > 0.6).
  regression_classes: jax.Array  # int32 [N]: the class (0-based) whose regressor learns the pair.
  regression_targets: jax.Array  # float32 [N, 4]: encode(matched gt, region), 0 off the mask.
  max_iou: jax.Array             # float32 [N]: IoU with the best-matching ground truth.


@functools.partial(jax.jit, static_argnames=("num_classes", "means", "stds"))
def rcnn_training_sets(proposals: jax.Array, proposal_mask: jax.Array, gt_boxes: jax.Array,
                       gt_classes: jax.Array, gt_mask: jax.Array, num_classes: int,
                       finetune_iou: float = 0.5, svm_negative_iou: float = 0.3,
                       regression_iou: float = 0.6, means=detection_targets.RAW[0],
                       stds=detection_targets.RAW[1]) -> RcnnSets:
  """Labels of one image's regions for R-CNN's fine-tuning, SVMs and box regression.

  Args:
    proposals: float32 [P, 4] (selective search boxes), padded.
    proposal_mask: bool [P].
    gt_boxes: float32 [G, 4] in the proposals' units, padded; G may be 0.
    gt_classes: int [G], 0-based, < num_classes.
    gt_mask: bool [G].
    num_classes: static int C (object classes, no background).
    finetune_iou: positive for fine-tuning at IoU >= this (0.5, §2.3).
    svm_negative_iou: SVM negative below this IoU with every box of the class
      (0.3, §2.3: chosen by grid search over {0, 0.1, ..., 0.5} on val).
    regression_iou: a regression pair above this IoU (0.6, appendix C).
    means, stds: static 4-tuples for boxes.encode; raw by default, as R-CNN's
      ridge regressors learn the unnormalised t.

  Returns:
    RcnnSets. Invalid regions get finetune label 0, SVM label -1 and no
    regression pair.
  """
  boxes = jnp.concatenate([proposals, gt_boxes.astype(proposals.dtype)])
  valid = jnp.concatenate([proposal_mask, gt_mask])
  is_gt = jnp.concatenate([jnp.zeros_like(proposal_mask), gt_mask])
  g = gt_boxes.shape[0]
  gt_boxes, classes, gt_mask = detection_targets.pad_empty_ground_truth(gt_boxes, gt_classes,
                                                                        gt_mask)
  classes = classes.astype(jnp.int32)
  iou = detection_targets.ground_truth_iou(boxes, gt_boxes, gt_mask)  # [N, G'], 0 for padding.
  max_iou, matched = iou.max(axis=1), jnp.argmax(iou, axis=1).astype(jnp.int32)
  matched_class = classes[matched]
  finetune = jnp.where(valid & (max_iou >= finetune_iou), matched_class + 1, 0)
  # Per class c, the IoU with the closest box of class c (0 when the image has none).
  of_class = classes[:, None] == jnp.arange(num_classes)[None, :]  # [G', C]
  class_iou = jnp.max(jnp.where(of_class[None], iou[:, :, None], 0.0), axis=1)  # [N, C]
  own_class = jnp.concatenate([jnp.zeros((proposals.shape[0], num_classes), bool),
                               of_class[:g] & gt_mask[:g, None]])
  svm = jnp.where(own_class, 1, jnp.where(valid[:, None] & (class_iou < svm_negative_iou), 0, -1))
  regression = valid & (max_iou > regression_iou)
  targets = box_ops.encode(gt_boxes[matched], boxes, means, stds)
  return RcnnSets(boxes=boxes.astype(jnp.float32), valid=valid, is_gt=is_gt,
                  finetune_labels=finetune.astype(jnp.int32), svm_labels=svm.astype(jnp.int8),
                  regression_mask=regression, regression_classes=matched_class,
                  regression_targets=jnp.where(regression[:, None], targets, 0.0).astype(jnp.float32),
                  max_iou=max_iou)
