"""The detectors' fixed-size post-processing: Faster R-CNN's proposal layer and test-time detections.

Pure and jittable per image (vmap over a batch), static output sizes with a
validity mask. Boxes follow research/ops/boxes.py ([ymin, xmin, ymax, xmax],
input pixels, no +1).
"""

import jax
import jax.numpy as jnp
import numpy as np

from research.ops import boxes as box_ops
from research.ops import detection_targets
from research.ops import nms as nms_ops

# Fast R-CNN's test settings (py-faster-rcnn test_net: thresh 0.05, NMS 0.3, 100 per image).
SCORE_THRESHOLD = 0.05
NMS_IOU = 0.3
MAX_DETECTIONS = 100


def propose(objectness, deltas, anchors, image_hw, *, pre_nms_top_n: int, post_nms_top_n: int,
            nms_iou: float = 0.7, min_size: float = 16.0, means=detection_targets.RAW[0],
            stds=detection_targets.RAW[1]):
  """Faster R-CNN's proposal layer for one image (Ren et al. 2015, §3.1, §3.3; py-faster-rcnn's).

  Decodes every anchor's deltas into a box (boxes.decode, the RPN's raw
  targets by default, as detection_targets.rpn_targets encodes them), clips it
  to the image, drops boxes with height or width under min_size pixels, keeps
  the pre_nms_top_n highest objectness, applies greedy NMS at nms_iou (0.7) and
  keeps the best post_nms_top_n ("we fix the IoU threshold for NMS at 0.7 ...
  we use the top-N ranked proposal regions for detection": 2000 in training,
  300 at test; py-faster-rcnn's pre-NMS 12000 / 6000).

  Args:
    objectness: float [N], one logit per anchor (RPN order).
    deltas: float [N, 4].
    anchors: float [N, 4] (anchors.grid_anchors).
    image_hw: float [2] (height, width) in pixels; may be traced.
    pre_nms_top_n, post_nms_top_n: static ints.
    nms_iou: float.
    min_size: float, pixels.
    means, stds: static 4-tuples for boxes.decode.

  Returns:
    (boxes float32 [post_nms_top_n, 4], scores float32 [post_nms_top_n]
    (sigmoid of the logit), mask bool [post_nms_top_n]) in decreasing score
    order; padding (mask False) is zero.
  """
  n = objectness.shape[0]
  boxes = box_ops.decode(deltas.astype(jnp.float32), anchors, means, stds)
  boxes = box_ops.clip_to_image(boxes, image_hw[0], image_hw[1])
  big = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
  logits = jnp.where(big, objectness.astype(jnp.float32), -jnp.inf)
  k = min(pre_nms_top_n, n)
  top_logits, top = jax.lax.top_k(logits, k)
  top_boxes = boxes[top]
  keep, mask = nms_ops.nms(top_boxes, top_logits, nms_iou, post_nms_top_n,
                           valid=jnp.isfinite(top_logits))
  out_boxes = jnp.where(mask[:, None], top_boxes[keep], 0.0)
  scores = jnp.where(mask, jax.nn.sigmoid(top_logits[keep]), 0.0)
  return out_boxes, scores, mask


def detections_from_scores(scores, boxes, image_hw, valid=None, *,
                           score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
                           max_detections: int = MAX_DETECTIONS):
  """Per-class NMS and the best max_detections of one image, from per-class scores and boxes.

  What each detector ends with: Fast / Faster R-CNN's softmax probabilities
  (`detect`), or R-CNN's SVM scores (§2.2: "for each class independently,
  greedy non-maximum suppression"). A box competes only within its class.

  Args:
    scores: float [N, K], object classes only (no background column).
    boxes: float [N, K, 4] class-specific, or [N, 4] shared; pixels.
    image_hw: float [2]; boxes are clipped to the image.
    valid: optional bool [N]; False rows (padding) never detect.
    score_threshold: a detection needs score > this (strictly, as test_net).
    nms_iou: per-class NMS threshold (0.3).
    max_detections: static int, the output size (100).

  Returns:
    dict, max_detections long, decreasing score: "boxes" float32 [D, 4],
    "scores" float32 [D], "labels" int32 [D] (0-based object class, as
    research/train/detection_metrics reads), "mask" bool [D] (False: padding,
    zero). `to_host` trims a batch to per-image dicts.
  """
  boxes = box_ops.clip_to_image(boxes.astype(jnp.float32), image_hw[0], image_hw[1])
  scores = scores.astype(jnp.float32)
  if valid is not None:
    scores = jnp.where(valid[:, None], scores, -jnp.inf)
  out = nms_ops.multiclass_nms(boxes, scores, nms_iou, max_detections, max_detections,
                               score_threshold)
  return {"boxes": out["boxes"], "scores": out["scores"], "labels": out["classes"],
          "mask": out["mask"]}


def detect(class_logits, box_deltas, rois, image_hw, roi_mask=None, *,
           score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
           max_detections: int = MAX_DETECTIONS, means=box_ops.TARGET_MEANS,
           stds=box_ops.TARGET_STDS):
  """Fast R-CNN's test-time detections for one image (Girshick 2015, §2.4 "Object detection").

  Class probabilities p = softmax(logits); each RoI's box for class k is
  decoded from its class-k deltas (boxes.decode with the training targets'
  normalisation, boxes.TARGET_STDS), clipped; then per class (background
  dropped) score threshold, NMS at 0.3 and the best 100 over all classes
  (`detections_from_scores`).

  Args:
    class_logits: float [R, K + 1], column 0 background.
    box_deltas: float [R, K + 1, 4].
    rois: float [R, 4] pixels, the proposals the head saw.
    image_hw: float [2].
    roi_mask: optional bool [R], False for padded RoIs.
    score_threshold, nms_iou, max_detections: as detections_from_scores.
    means, stds: static 4-tuples, the box targets' normalisation.

  Returns:
    detections_from_scores' dict.
  """
  probs = jax.nn.softmax(class_logits.astype(jnp.float32), axis=-1)
  boxes = box_ops.decode(box_deltas.astype(jnp.float32), rois[:, None, :].astype(jnp.float32),
                         means, stds)
  return detections_from_scores(probs[:, 1:], boxes[:, 1:], image_hw, roi_mask,
                                score_threshold=score_threshold, nms_iou=nms_iou,
                                max_detections=max_detections)


def detect_batch(class_logits, box_deltas, rois, image_hw, roi_mask=None, **kwargs):
  """`detect` over a batch: every argument with a leading [B] axis (image_hw [B, 2])."""
  if roi_mask is None:
    roi_mask = jnp.ones(rois.shape[:2], bool)
  one = lambda l, d, r, hw, m: detect(l, d, r, hw, m, **kwargs)
  return jax.vmap(one)(class_logits, box_deltas, rois, jnp.asarray(image_hw, jnp.float32),
                       roi_mask)


def to_host(detections) -> list[dict]:
  """A batch of detections (leading [B] axis, with "mask") -> per image
  {"boxes" float32 [D, 4], "scores" float32 [D], "labels" int32 [D]} of the
  valid ones, NumPy: research/train/detection_metrics' input."""
  d = jax.device_get(detections)
  out = []
  for i in range(np.asarray(d["mask"]).shape[0]):
    keep = np.asarray(d["mask"][i], bool)
    out.append({"boxes": np.asarray(d["boxes"][i], np.float32)[keep],
                "scores": np.asarray(d["scores"][i], np.float32)[keep],
                "labels": np.asarray(d["labels"][i], np.int32)[keep]})
  return out
