"""Detection accuracy as the papers measure it: VOC 2007 mAP and COCO AP.

In research/train (not eval) because the detection objective's periodic
evaluation reports them (research/train/objectives/faster_rcnn.py), and the
package imports one way (tests/test_layers.py).

- `voc_eval`: PASCAL VOC 2007's average precision per class at IoU >= 0.5 and
  its mean, as R-CNN (Girshick et al. 2014, Table 1), Fast R-CNN (2015,
  Table 1) and Faster R-CNN (Ren et al. 2015, Table 2) report it: the 11-point
  interpolated AP of the VOC 2007 devkit (Everingham et al. 2010, §4.2: the
  mean over recall r in {0, 0.1, .., 1} of the highest precision at recall
  >= r), or with `use_07_metric=False` the area under the interpolated
  precision/recall curve (the devkit from 2010 on). Matching follows the
  devkit's `VOCevaldet`: a class's detections over all images, by descending
  score, each to the ground-truth box of its class and image with the highest
  IoU; IoU >= threshold (the devkit's `ovmax >= minoverlap`) on a box not yet
  taken is a true positive, else a false positive; a detection matched to a
  "difficult" box counts as neither (its point repeats the one before on the
  curve, as in the devkit), and difficult boxes are not among the positives.
  IoU here is on continuous pixel-edge coordinates
  (`research/data/detection.py`), without the devkit's +1 on integer pixel
  indices.
- `coco_eval`: COCO's AP (IoU 0.5:0.05:0.95), AP50, AP75, by object size,
  and AR, from pycocotools' `COCOeval` on in-memory COCO dicts
  (`detection.to_coco` for the ground truth). COCO's size ranges (small <
  32^2 px) were set for COCO's ~640 px images.

Detections, per image, in the order of the ground truth: a dict with `boxes`
float [D, 4] pixels [ymin, xmin, ymax, xmax], `scores` float [D], `labels`
int [D] (the class, 0-based). NumPy, float64, on the host: `iou` is NumPy's
own, since `research.ops.boxes.pairwise_iou` (JAX, float32) would compile for
each image's new shapes; tests/test_detection_data.py checks that they agree.
"""

import contextlib
import copy
import io

import numpy as np

# COCOeval.stats, in its order.
COCO_STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10",
              "AR100", "AR_small", "AR_medium", "AR_large")


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """IoU float64 [N] of one box [4] with boxes [N, 4], all [ymin, xmin, ymax, xmax]."""
  box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
  h = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
  w = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
  inter = h * w
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  union = area(box) + area(boxes) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_ap(recall, precision, use_07_metric: bool = True) -> float:
  """AP from a class's recall and precision [N] (in descending-score order).

  use_07_metric: VOC 2007's 11-point interpolation; else the area under the
  monotone precision envelope (VOC 2010+).
  """
  recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
  if use_07_metric:
    return float(np.mean([precision[recall >= t].max(initial=0.0)
                          for t in np.linspace(0.0, 1.0, 11)]))
  r = np.concatenate([[0.0], recall, [1.0]])
  p = np.concatenate([[0.0], precision, [0.0]])
  p = np.maximum.accumulate(p[::-1])[::-1]  # Envelope: best precision at >= this recall.
  steps = np.flatnonzero(r[1:] != r[:-1])
  return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _check(detections, ground_truth) -> None:
  if len(detections) != len(ground_truth):
    raise ValueError(f"{len(detections)} images of detections for {len(ground_truth)} "
                     "images of ground truth; give one entry (maybe empty) per image.")
  for i, d in enumerate(detections):
    n = {k: len(np.asarray(d[k]).reshape(-1, 4) if k == "boxes" else np.ravel(d[k]))
         for k in ("boxes", "scores", "labels")}
    if len(set(n.values())) > 1:
      raise ValueError(f"detections of image {i}: boxes, scores and labels differ in number "
                       f"({n}); give one of each per detection.")


def voc_eval(detections, ground_truth, num_classes: int, *, iou_threshold: float = 0.5,
             use_07_metric: bool = True) -> dict:
  """VOC AP per class and its mean (see the module docstring).

  detections: per image {boxes [D, 4], scores [D], labels [D]}.
  ground_truth: per image, an object with `boxes` [K, 4], `labels` [K] and
    `difficult` bool [K] (a `DetectionExample`, or a dict with those keys).

  Returns:
    {"mAP": mean over classes with a non-difficult ground-truth box,
     "ap": float64 [num_classes] (NaN for a class without one),
     "num_positives": int [num_classes], "recall", "precision": per class
     arrays in descending-score order}.

  Raises:
    ValueError: detections and ground truth for different numbers of images,
      or an image whose detections' fields differ in number.
  """
  _check(detections, ground_truth)
  get = lambda g, k: np.asarray(g[k] if isinstance(g, dict) else getattr(g, k))
  gts = [(get(g, "boxes").reshape(-1, 4), get(g, "labels").reshape(-1),
          get(g, "difficult").reshape(-1).astype(bool)) for g in ground_truth]
  ap = np.full(num_classes, np.nan)
  positives = np.zeros(num_classes, np.int64)
  recalls, precisions = [], []
  for c in range(num_classes):
    boxes = {i: b[l == c] for i, (b, l, _) in enumerate(gts)}
    difficult = {i: d[l == c] for i, (_, l, d) in enumerate(gts)}
    taken = {i: np.zeros(len(d), bool) for i, d in difficult.items()}
    positives[c] = sum(int((~d).sum()) for d in difficult.values())
    found = [(float(s), i, np.asarray(b, np.float64))
             for i, d in enumerate(detections)
             for b, s, l in zip(np.asarray(d["boxes"]).reshape(-1, 4), np.ravel(d["scores"]),
                                np.ravel(d["labels"])) if int(l) == c]
    # Descending score; ties keep image order (a stable sort, like the devkit's).
    order = sorted(range(len(found)), key=lambda j: -found[j][0])
    tp, fp = np.zeros(len(found)), np.zeros(len(found))
    for rank, j in enumerate(order):
      _, i, box = found[j]
      overlaps = iou(box, boxes[i])
      best = int(np.argmax(overlaps)) if len(overlaps) else -1
      if best >= 0 and overlaps[best] >= iou_threshold:
        if difficult[i][best]:
          continue  # Neither true nor false positive.
        if not taken[i][best]:
          tp[rank], taken[i][best] = 1.0, True
          continue
      fp[rank] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / positives[c] if positives[c] else np.zeros_like(tp)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    recalls.append(recall)
    precisions.append(precision)
    if positives[c]:
      ap[c] = voc_ap(recall, precision, use_07_metric)
  return {"mAP": float(np.nanmean(ap)) if positives.any() else float("nan"), "ap": ap,
          "num_positives": positives, "recall": recalls, "precision": precisions}


def coco_results(detections, coco_gt: dict) -> list[dict]:
  """Detections as COCO results: [{image_id, category_id, bbox [x, y, w, h], score}].

  detections[k] belongs to coco_gt["images"][k]; category_id = label + 1
  (as `detection.to_coco` writes it).
  """
  if len(detections) != len(coco_gt["images"]):
    raise ValueError(f"{len(detections)} images of detections for "
                     f"{len(coco_gt['images'])} images in the COCO ground truth.")
  results = []
  for d, image in zip(detections, coco_gt["images"]):
    for box, score, label in zip(np.asarray(d["boxes"], np.float64).reshape(-1, 4),
                                 np.ravel(d["scores"]), np.ravel(d["labels"])):
      ymin, xmin, ymax, xmax = box.tolist()
      results.append({"image_id": image["id"], "category_id": int(label) + 1,
                      "bbox": [xmin, ymin, xmax - xmin, ymax - ymin], "score": float(score)})
  return results


def coco_eval(detections, coco_gt: dict, *, verbose: bool = False) -> dict[str, float]:
  """COCO's 12 summary numbers (COCO_STATS) from pycocotools' COCOeval, "bbox".

  detections: per image of coco_gt["images"], in that order (see module
  docstring); coco_gt: a COCO-format dict (`detection.to_coco`). Nothing is
  written to disk. A number COCO cannot compute (no ground truth of that size)
  is -1, as COCOeval gives it. verbose: print COCOeval's table.
  """
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  _check(detections, coco_gt["images"])
  quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
  with quiet:
    gt = COCO()
    gt.dataset = copy.deepcopy(coco_gt)
    gt.createIndex()
    results = coco_results(detections, coco_gt)
    if results:
      dt = gt.loadRes(results)
    else:  # loadRes refuses an empty list; no detections is an AP of 0.
      dt = COCO()
      dt.dataset = {"images": copy.deepcopy(coco_gt["images"]), "annotations": [],
                    "categories": copy.deepcopy(coco_gt["categories"])}
      dt.createIndex()
    evaluator = COCOeval(gt, dt, "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return dict(zip(COCO_STATS, (float(s) for s in evaluator.stats)))
