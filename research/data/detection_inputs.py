"""The detectors' input split: images at one scale, padded ground truth, flips (issue 16).

`DetectionInputSplit` gives the trainer the interface of pipeline.InputSplit
over `detection.open_detection`'s checked split, with batches of fixed shape
for a jitted step (S = the padded side, M = the most objects per image):

  image       uint8 [B, S, S, 3]: the image rescaled so that its shorter side
              is `scale` pixels (its longer side at most `max_size`), at the
              top left, zeros beyond (image_hw says where the image ends)
  image_hw    float32 [B, 2]: (height, width) of the rescaled image
  boxes       float32 [B, M, 4]: ground truth in rescaled pixels
              ([ymin, xmin, ymax, xmax], research/ops/boxes.py)
  labels      int32 [B, M]: 0-based classes (0 where padded)
  gt_mask     bool [B, M]: a real object; in training batches False also for
              VOC's "difficult" and COCO's "crowd" objects, which
              py-faster-rcnn leaves out of training
  eval batches also: difficult, crowd bool [B, M], scale float32 [B]
              (rescaled / original pixels), mask float32 [B] (0 for padding rows)

With `proposals` (a proposals.SplitProposals of P slots: Fast R-CNN's
selective search boxes, cached per image), batches also hold
  proposals       float32 [B, P, 4]: the image's proposals in selective
                  search's rank order, rescaled (and flipped) as its boxes
  proposal_mask   bool [B, P]: a real proposal (False: padding, zeros)
  eval batches also: proposal_seconds float32 [B], the seconds selective
                  search took on the image (as stored in the cache)

Scale: Fast R-CNN §3 and Faster R-CNN §3.3 rescale each image so that its
shorter side is 600 pixels, capped at 1000 for the longer side; here that is
(`scale`, `max_size`), and every batch is padded to max_size x max_size so
the step compiles once. The scenes are 128 x 128: scale = max_size = 128
keeps them as stored. The only augmentation is the papers' horizontal flip
(Fast R-CNN §2.3, "images are horizontally flipped with probability 0.5"),
drawn from pipeline.example_rng(seed, step, row): like the classifiers'
pipeline, the batch of step s is a pure function of (seed, s), so a resumed
run sees the batches an uninterrupted one would.
"""

from collections.abc import Iterator

import numpy as np
from PIL import Image

from research.data import detection, pipeline, proposals as proposals_lib


def rescaled_hw(hw: tuple[int, int], scale: int, max_size: int) -> tuple[tuple[int, int], float]:
  """((height, width), factor) of an image of size `hw` rescaled to shorter side
  `scale`, or less so that the longer side is at most `max_size` (py-faster-rcnn's
  prep_im_for_blob); sides rounded to whole pixels."""
  h, w = hw
  factor = scale / min(h, w)
  if round(factor * max(h, w)) > max_size:
    factor = max_size / max(h, w)
  return (max(1, min(max_size, round(h * factor))), max(1, min(max_size, round(w * factor)))), factor


class DetectionInputSplit(pipeline.InputSplit):
  """A detection split (`detection.DetectionSplit`) as the trainer reads it.

  Args:
    split: the opened, checked split.
    scale: shorter side in pixels after rescaling (600 in the papers).
    max_size: the longest side allowed, and the padded side S (1000).
    max_objects: M, the ground-truth slots per image (>= split.max_objects).
    flip: flip training images horizontally with probability 0.5.
    indices: the examples of `split` used (default all), e.g. `take`'s.
    proposals: proposals.SplitProposals of this split, or None (no proposals
      in the batches).

  Raises ValueError when the split has more objects in an image than max_objects.
  """

  def __init__(self, split: detection.DetectionSplit, scale: int, max_size: int,
               max_objects: int, flip: bool = True, indices=None,
               proposals: proposals_lib.SplitProposals | None = None):
    if split.max_objects > max_objects:
      raise ValueError(f"{split.what} has an image with {split.max_objects} objects, more than "
                       f"max_objects={max_objects}.")
    self.split, self.scale, self.max_size = split, scale, max_size
    self.max_objects, self.flip = max_objects, flip
    self.proposals = proposals
    self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)
    self.class_names = split.class_names
    self.image_shape = self.eval_image_shape = (max_size, max_size, 3)

  def __len__(self) -> int:
    return len(self.indices)

  def take(self, n: int) -> "DetectionInputSplit":
    return DetectionInputSplit(self.split, self.scale, self.max_size, self.max_objects,
                               self.flip, self.indices[:n], self.proposals)

  def examples(self, n: int) -> list[detection.DetectionExample]:
    """The first n examples as stored (original pixels), e.g. for figures."""
    return self.split.examples(self.indices[:min(n, len(self))])

  def sample_images(self, n: int) -> np.ndarray:
    return self._read(np.arange(min(n, len(self))), None)["image"]

  def _read(self, rows, rngs, training: bool = False) -> dict[str, np.ndarray]:
    """The batch of examples self.indices[rows]; rngs: one generator per row
    (flips), or None for no flip."""
    example_indices = self.indices[np.asarray(rows)]
    examples = self.split.examples(example_indices)
    b, m, s = len(examples), self.max_objects, self.max_size
    out = {"image": np.zeros((b, s, s, 3), np.uint8),
           "image_hw": np.zeros((b, 2), np.float32),
           "boxes": np.zeros((b, m, 4), np.float32), "labels": np.zeros((b, m), np.int32),
           "gt_mask": np.zeros((b, m), bool), "difficult": np.zeros((b, m), bool),
           "crowd": np.zeros((b, m), bool), "scale": np.zeros((b,), np.float32)}
    if self.proposals is not None:
      p = self.proposals.count
      out.update(proposals=np.zeros((b, p, 4), np.float32),
                 proposal_mask=np.zeros((b, p), bool),
                 proposal_seconds=np.zeros((b,), np.float32))
    for i, e in enumerate(examples):
      (h, w), factor = rescaled_hw(e.image.shape[:2], self.scale, self.max_size)
      image = e.image
      if (h, w) != image.shape[:2]:
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
      # Box edges scale with the image's own factors per axis (its sides were rounded).
      factors = np.array([h / e.image.shape[0], w / e.image.shape[1]] * 2, np.float32)
      boxes = e.boxes * factors
      flipped = rngs is not None and self.flip and rngs[i].random() < 0.5
      if flipped:
        image = image[:, ::-1]
        boxes = _flip(boxes, w)
      if self.proposals is not None:
        found = self.proposals.get(int(example_indices[i]), e.image)
        boxes_p = found.boxes[:self.proposals.count] * factors
        out["proposals"][i], out["proposal_mask"][i] = proposals_lib.pad_proposals(
            _flip(boxes_p, w) if flipped else boxes_p, self.proposals.count)
        out["proposal_seconds"][i] = found.seconds
      k = len(e.labels)
      out["image"][i, :h, :w] = image
      out["image_hw"][i] = h, w
      out["boxes"][i, :k], out["labels"][i, :k] = boxes, e.labels
      out["difficult"][i, :k], out["crowd"][i, :k] = e.difficult, e.crowd
      out["gt_mask"][i, :k] = ~(e.difficult | e.crowd) if training else True
      out["scale"][i] = factor
    if training:
      for key in ("difficult", "crowd", "scale", "proposal_seconds"):
        out.pop(key, None)
    return out

  def train_batches(self, batch_size, seed, start_step=0, *, process_index=0,
                    process_count=1, prefetch=2) -> Iterator[dict[str, np.ndarray]]:
    """This process's rows of the global batch of steps start_step, ...: row r of
    step s is example sort(pipeline.index_batches(...)[s])[r], flipped by
    example_rng(seed, s, r)."""
    return pipeline.step_batches(
        lambda idx, rngs: self._read(idx, rngs, training=True), len(self), batch_size, seed,
        start_step, process_index=process_index, process_count=process_count,
        prefetch=prefetch)

  def eval_batches(self, batch_size, *, process_index=0,
                   process_count=1) -> Iterator[dict[str, np.ndarray]]:
    """One pass in order, the last batch padded (copies of the last example, mask 0)."""
    return pipeline.padded_eval_batches(lambda idx: self._read(idx, None), len(self), batch_size,
                                        process_index=process_index,
                                        process_count=process_count)

  def eval_batch_spec(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    s, m = self.max_size, self.max_objects
    shapes = {"image": ((s, s, 3), np.uint8), "image_hw": ((2,), np.float32),
              "boxes": ((m, 4), np.float32), "labels": ((m,), np.int32),
              "gt_mask": ((m,), bool), "difficult": ((m,), bool), "crowd": ((m,), bool),
              "scale": ((), np.float32),
              "mask": ((), np.float32)}
    if self.proposals is not None:
      p = self.proposals.count
      shapes.update(proposals=((p, 4), np.float32), proposal_mask=((p,), bool),
                    proposal_seconds=((), np.float32))
    return {k: ((batch_size, *shape), dtype) for k, (shape, dtype) in shapes.items()}

def _flip(boxes: np.ndarray, width: float) -> np.ndarray:
  """Boxes [K, 4] of an image `width` pixels wide, mirrored left-right."""
  return np.stack([boxes[:, 0], width - boxes[:, 3], boxes[:, 2], width - boxes[:, 1]], axis=-1)


def open_detection_inputs(data, split: str, *, scale: int, max_size: int, max_objects: int,
                          flip: bool = True,
                          proposals: proposals_lib.SplitProposals | None = None
                          ) -> DetectionInputSplit:
  """config.data's detection dataset, split `split`, as a DetectionInputSplit
  (with `proposals`, see DetectionInputSplit).

  max_objects 0: the split's own largest count. Raises what
  detection.open_detection raises (bad annotations, an unprepared dataset).
  """
  opened = detection.open_detection(data.name, split, data.data_dir, download=data.download)
  return DetectionInputSplit(opened, scale, max_size, max_objects or opened.max_objects, flip,
                             proposals=proposals)
