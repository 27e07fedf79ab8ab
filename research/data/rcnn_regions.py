"""R-CNN's regions as training data (Girshick et al. 2014, §2.3): labelled proposals, warped windows.

R-CNN trains on regions, not images. `region_sets` labels every proposal of
a set of images (and their ground-truth boxes, which are regions too) with
research/ops/rcnn_targets.py's three rules: the fine-tuning class (IoU >=
0.5, else background), the per-class SVM labels and the box-regression pairs.
`WarpedRegionSplit` is the fine-tuning data as the one training loop reads a
classification split (pipeline.InputSplit): each window is warped from its
image on the fly (research/models/rcnn.warp_pixels, the same warp as at test
time) to S x S, labelled 0 (background) or 1 + class (K + 1 classes).

Training batches follow §2.3: "In each SGD iteration, we uniformly sample 32
positive windows (over all classes) and 96 background windows to construct a
mini-batch of size 128". Batch b of step s is a function of (seed, s) only
(`np.random.default_rng([2, seed, s])`), so a resumed run reads the batches an
uninterrupted one would; a class of windows smaller than its share of the batch
is sampled with replacement.
"""

import dataclasses
import functools
from collections.abc import Iterator

import jax
import numpy as np

from research.data import pipeline
from research.models import rcnn as rcnn_model
from research.ops import rcnn_targets


@dataclasses.dataclass
class RegionSets:
  """The labelled regions of some images, concatenated (N regions; C classes).

  images: uint8 [M, H, W, 3], the images padded at the bottom and right to
  one size with `fill` (warps reading beyond an image read the fill either way).
  Per region: image int32 [N] (row of images), boxes float32 [N, 4] pixels,
  is_gt bool [N], finetune_labels int32 [N] (0 background, 1 + class),
  svm_labels int8 [N, C] (1, 0, -1 ignored), regression_mask bool [N],
  regression_classes int32 [N], regression_targets float32 [N, 4] (raw t of
  boxes.encode). class_names: the C object classes.
  """
  images: np.ndarray
  fill: tuple
  image: np.ndarray
  boxes: np.ndarray
  is_gt: np.ndarray
  finetune_labels: np.ndarray
  svm_labels: np.ndarray
  regression_mask: np.ndarray
  regression_classes: np.ndarray
  regression_targets: np.ndarray
  class_names: tuple

  def __len__(self) -> int:
    return len(self.image)


def pad_images(images, fill) -> np.ndarray:
  """uint8 [M, H, W, 3] from images of any sizes: each at the top left, `fill`
  (float [3], 0..255) beyond it; H, W the largest sides."""
  h = max(im.shape[0] for im in images)
  w = max(im.shape[1] for im in images)
  out = np.empty((len(images), h, w, 3), np.uint8)
  out[:] = np.round(np.asarray(fill, np.float32)).astype(np.uint8)
  for i, im in enumerate(images):
    out[i, :im.shape[0], :im.shape[1]] = im
  return out


def region_sets(examples, proposals, class_names, fill, *, max_proposals: int,
                max_objects: int, finetune_iou: float = 0.5, svm_negative_iou: float = 0.3,
                regression_iou: float = 0.6) -> RegionSets:
  """Labels the proposals (and ground truth) of `examples` (rcnn_training_sets).

  Args:
    examples: detection.DetectionExample list (images and pixel boxes).
    proposals: per example float [P_i, 4] pixels, P_i <= max_proposals.
    class_names: the C object classes.
    fill: float [3] 0..255, the colour of image padding (R-CNN: the mean).
    max_proposals, max_objects: static pads (one compilation for all images).
    finetune_iou, svm_negative_iou, regression_iou: rcnn_training_sets'.

  VOC's difficult and COCO's crowd objects are left out of the ground truth
  here (R-CNN's training ignores difficult objects).
  """
  num_classes = len(class_names)
  labels = functools.partial(rcnn_targets.rcnn_training_sets, num_classes=num_classes,
                             finetune_iou=finetune_iou, svm_negative_iou=svm_negative_iou,
                             regression_iou=regression_iou)
  g = max(max_objects, 1)
  parts = []
  for i, (e, boxes) in enumerate(zip(examples, proposals)):
    if len(boxes) > max_proposals:
      raise ValueError(f"image {i} has {len(boxes)} proposals, more than "
                       f"max_proposals={max_proposals}.")
    if len(e.labels) > g:
      raise ValueError(f"image {i} has {len(e.labels)} objects, more than max_objects={g}.")
    p = np.zeros((max_proposals, 4), np.float32)
    p[:len(boxes)] = boxes
    gt = np.zeros((g, 4), np.float32)
    cls = np.zeros((g,), np.int32)
    keep = ~(np.asarray(e.difficult, bool) | np.asarray(e.crowd, bool))
    k = len(e.labels)
    gt[:k], cls[:k] = e.boxes, e.labels
    s = jax.device_get(labels(p, np.arange(max_proposals) < len(boxes), gt, cls,
                              np.concatenate([keep, np.zeros(g - k, bool)])))
    valid = np.asarray(s.valid)
    parts.append({"image": np.full(int(valid.sum()), i, np.int32), "boxes": s.boxes[valid],
                  "is_gt": s.is_gt[valid], "finetune_labels": s.finetune_labels[valid],
                  "svm_labels": s.svm_labels[valid], "regression_mask": s.regression_mask[valid],
                  "regression_classes": s.regression_classes[valid],
                  "regression_targets": s.regression_targets[valid]})
  joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return RegionSets(images=pad_images([e.image for e in examples], fill), fill=tuple(fill),
                    class_names=tuple(class_names), **joined)


@functools.lru_cache(maxsize=8)
def _warp_fn(size: int, context: float, fill: tuple):
  """Jitted (images uint8 [B, H, W, 3], boxes [B, 4]) -> uint8 [B, S, S, 3], one box per image."""
  one = lambda image, box: rcnn_model.warp_pixels(image, box[None], size, context, fill)[0]
  return jax.jit(jax.vmap(one))


def warp_windows(sets: RegionSets, rows, size: int, context: float) -> np.ndarray:
  """uint8 [len(rows), S, S, 3]: the regions `rows` of `sets`, warped."""
  rows = np.asarray(rows)
  return np.asarray(_warp_fn(size, float(context), sets.fill)(
      sets.images[sets.image[rows]], sets.boxes[rows]))


class WarpedRegionSplit(pipeline.InputSplit):
  """R-CNN's fine-tuning windows as a classification split of K + 1 classes.

  Args:
    sets: the labelled regions.
    size: S, the warp's side (227 in the paper).
    context: pixels of warped context per side (16 at 227).
    positive_fraction: the share of each training batch drawn from the
      positives (32 of 128 in the paper).
    rows: the regions of `sets` in this split (default all); eval batches
      read them in this order.

  Raises ValueError when the split has no positive or no background window.
  """

  def __init__(self, sets: RegionSets, size: int, context: float,
               positive_fraction: float = 0.25, rows=None):
    self.sets, self.size, self.context = sets, size, context
    self.positive_fraction = positive_fraction
    self.rows = np.arange(len(sets)) if rows is None else np.asarray(rows)
    labels = sets.finetune_labels[self.rows]
    self.positives, self.background = np.flatnonzero(labels > 0), np.flatnonzero(labels == 0)
    if not len(self.positives) or not len(self.background):
      raise ValueError(f"{len(self.positives)} positive and {len(self.background)} background "
                       "windows: fine-tuning needs both; use more images.")
    self.class_names = ("background",) + tuple(sets.class_names)
    self.image_shape = self.eval_image_shape = (size, size, 3)

  def __len__(self) -> int:
    return len(self.rows)

  def take(self, n: int) -> "WarpedRegionSplit":
    return WarpedRegionSplit(self.sets, self.size, self.context, self.positive_fraction,
                             self.rows[:n])

  def _read(self, idx) -> dict[str, np.ndarray]:
    rows = self.rows[np.asarray(idx)]
    return {"image": warp_windows(self.sets, rows, self.size, self.context),
            "label": self.sets.finetune_labels[rows].astype(np.int32)}

  def sample_images(self, n: int) -> np.ndarray:
    return self._read(np.arange(min(n, len(self))))["image"]

  def step_rows(self, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The split's rows of the global batch of `step`: round(fraction * B)
    positives then the rest background, uniformly drawn (without replacement
    when there are enough)."""
    rng = np.random.default_rng([2, seed, step])
    num_pos = int(round(self.positive_fraction * batch_size))
    draw = lambda pool, k: rng.choice(pool, k, replace=len(pool) < k)
    return np.concatenate([draw(self.positives, num_pos),
                           draw(self.background, batch_size - num_pos)])

  def train_batches(self, batch_size, seed, start_step=0, *, process_index=0, process_count=1,
                    prefetch=2) -> Iterator[dict[str, np.ndarray]]:
    """This process's rows of the batches of steps start_step, start_step + 1, ..."""
    rows = pipeline.process_slice(batch_size, process_index, process_count)
    step = start_step
    while True:
      yield self._read(self.step_rows(batch_size, seed, step)[rows])
      step += 1

  def eval_batches(self, batch_size, *, process_index=0,
                   process_count=1) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the windows in order, the last batch padded (mask 0)."""
    def read(idx):
      batch = self._read(idx)
      return batch["image"], batch["label"]
    return pipeline.eval_stream(read, len(self), batch_size, process_index=process_index,
                                process_count=process_count)
