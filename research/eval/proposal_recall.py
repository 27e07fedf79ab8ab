"""Recall of ranked region proposals against the number kept (Faster R-CNN §4.1, Fig. 2).

Ren et al. plot, for each proposal method, the recall of the VOC 2007 test
boxes at an IoU threshold against the number of proposals N taken from the
top of each image's ranked list (RPN: objectness after NMS; selective search:
its own rank). `recall_vs_proposals` computes those curves from per-image
ranked boxes and ground truth; research/eval/detection_plots.recall_figure
draws them.
"""

from collections.abc import Sequence

import numpy as np

from research.ops import boxes as box_ops

PAPER_COUNTS = (10, 20, 50, 100, 200, 300, 500, 1000, 2000)  # Fig. 2's horizontal axis.


def recall_vs_proposals(proposals: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray],
                        counts: Sequence[int] = PAPER_COUNTS,
                        iou_thresholds: Sequence[float] = (0.5, 0.7)) -> dict[float, np.ndarray]:
  """Recall of the ground-truth boxes by each image's top-N proposals, for each N.

  A ground-truth box is recalled at N when one of its image's first N
  proposals overlaps it with IoU >= the threshold (the paper's criterion; an
  image with fewer than N proposals uses all it has). Recall = recalled boxes
  / all boxes, pooled over the images.

  Args:
    proposals: per image, float [P_i, 4] boxes [ymin, xmin, ymax, xmax] in
      pixels, best-ranked first (P_i may be 0).
    ground_truth: per image, float [G_i, 4] in the same pixels (G_i may be 0).
    counts: the numbers of proposals N, positive ints.
    iou_thresholds: IoU thresholds in (0, 1].

  Returns:
    {threshold: float64 [len(counts)] recalls in [0, 1]}; NaN when there is
    no ground-truth box at all.

  Raises:
    ValueError: a different number of images in the two lists, a count < 1,
      or a threshold outside (0, 1].
  """
  if len(proposals) != len(ground_truth):
    raise ValueError(f"recall_vs_proposals: {len(proposals)} images of proposals but "
                     f"{len(ground_truth)} of ground truth; give one entry per image in both.")
  counts = [int(n) for n in counts]
  if any(n < 1 for n in counts):
    raise ValueError(f"recall_vs_proposals: counts {counts} must be >= 1 proposals.")
  if any(not 0 < t <= 1 for t in iou_thresholds):
    raise ValueError(f"recall_vs_proposals: IoU thresholds {tuple(iou_thresholds)} must be "
                     "in (0, 1].")
  found = {t: np.zeros(len(counts)) for t in iou_thresholds}
  total = 0
  for boxes, gt in zip(proposals, ground_truth):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    total += len(gt)
    if not len(gt) or not len(boxes):
      continue
    iou = np.asarray(box_ops.pairwise_iou(boxes, gt))  # [P, G]
    # best[k, g]: the best IoU of box g among the first k + 1 proposals.
    best = np.maximum.accumulate(iou, axis=0)
    for j, n in enumerate(counts):
      row = best[min(n, len(boxes)) - 1]
      for t in iou_thresholds:
        found[t][j] += np.sum(row >= t)
  return {t: (f / total if total else np.full(len(counts), np.nan)) for t, f in found.items()}
