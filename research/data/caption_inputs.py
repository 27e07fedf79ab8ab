"""The caption models' input split: images with one of their captions as token ids (issue 17).

`CaptionInputSplit` gives the trainer pipeline.InputSplit's interface over a
checked `captions.CaptionSplit` (caption_scenes or a prepared coco_captions),
for the generators (Karpathy & Fei-Fei 2015 §3.2) and the alignment model
(§3.1). Batches (B rows, T = max_len, C = the split's most captions per image):

  training    image   uint8 [B, S, S, 3]  (S = image_size; stored size when 0)
              tokens  int32 [B, T]: one caption of the image, as
                      Vocabulary.encode gives (<start> words <end>, 0-padding)
              regions, region_mask  only with max_regions > 0 (see below)
  evaluation  image, (regions, region_mask) as above,
              tokens  int32 [B, C, T]: every caption of the image (rows of
                      zeros beyond its own count),
              index   int32 [B]: the image's row in this split,
              image_id int32 [B]: its image/id (references are looked up
                      host-side with it),
              mask    float32 [B]: 0 for the padding rows of the last batch.

Which caption an image gets at step s, row r is drawn from
pipeline.example_rng(seed, s, r), and the images of step s are
pipeline.index_batches(...)[s]: a batch is a pure function of (seed, step), so
a resumed run reads exactly the batches of an uninterrupted one. Every caption
is encoded once, up front (`captions.encode_captions`, which logs how many were
cut to max_len).

Regions (for the alignment model, §3.1: "the top 19 detected locations in
addition to the whole image"): with max_regions = R > 0 a batch also holds
regions float32 [B, R, 4], pixel boxes [ymin, xmin, ymax, xmax] in the
S x S image, the whole image first, then the image's boxes of `region_boxes`
(per image, float [K_i, 4] pixels of the stored image, e.g. a detector's top
detections; default: none), at most R - 1 of them, and region_mask float32
[B, R] (1 for a real region).
"""

from collections.abc import Iterator
import math

import numpy as np
from PIL import Image

from research.data import captions, pipeline, vocab


class CaptionInputSplit(pipeline.InputSplit):
  """A captions split as the trainer reads it (see the module docstring).

  Args:
    split: the opened, checked split.
    vocabulary: the training split's (`captions.build_vocabulary`).
    max_len: T, tokens per caption with <start> and <end> (>= 3).
    image_size: S, images resized (bilinear) to S x S; 0 keeps the stored
      size, which must then be fixed.
    max_regions: R (0: no regions in the batches).
    region_boxes: per image of `split`, float [K_i, 4] pixel boxes of the
      stored image, or None (the whole image only).
    indices: the examples of `split` used (default all), e.g. `take`'s.

  Raises:
    ValueError: max_len < 3, a negative image_size or max_regions, image_size 0
      on a split whose images vary in size, or region_boxes not one per image.
    vocab.EmptyCaptionError: a caption without a word.
  """

  def __init__(self, split: captions.CaptionSplit, vocabulary: vocab.Vocabulary, max_len: int,
               image_size: int = 0, max_regions: int = 0, region_boxes=None, indices=None,
               _encoded=None):
    if max_len < 3:
      raise ValueError(f"max_len={max_len}: a caption needs at least 3 tokens (<start>, a "
                       "word, <end>); raise it.")
    if image_size < 0 or max_regions < 0:
      raise ValueError(f"image_size={image_size} and max_regions={max_regions} must be >= 0.")
    if not image_size and split.image_shape is None:
      raise ValueError(f"{split.what}'s images vary in size: give an image_size to resize "
                       "them to (e.g. 224).")
    if region_boxes is not None and len(region_boxes) != len(split):
      raise ValueError(f"region_boxes holds {len(region_boxes)} entries for the {len(split)} "
                       f"images of {split.what}; give one [K, 4] array per image.")
    self.split, self.vocabulary, self.max_len = split, vocabulary, max_len
    self.image_size, self.max_regions, self.region_boxes = image_size, max_regions, region_boxes
    self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)
    self.class_names = split.class_names
    side = image_size or None
    self.image_shape = self.eval_image_shape = (
        (side, side, 3) if side else tuple(split.image_shape))
    if _encoded is None:  # Every caption of the split, encoded once: [N_captions, T].
      counts = [len(split.captions(i)) for i in range(len(split))]
      tokens, self.truncated = captions.encode_captions(split.texts(), vocabulary, max_len,
                                                        split.what)
      _encoded = (tokens, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    self._encoded = _encoded
    self.tokens, self.offsets = _encoded
    self.image_ids = np.array([split.annotation(int(i)).image_id for i in self.indices],
                              np.int32)
    counts = np.diff(self.offsets)[self.indices]
    self.max_captions = int(counts.max(initial=1))

  def __len__(self) -> int:
    return len(self.indices)

  def take(self, n: int) -> "CaptionInputSplit":
    return CaptionInputSplit(self.split, self.vocabulary, self.max_len, self.image_size,
                             self.max_regions, self.region_boxes, self.indices[:n],
                             _encoded=self._encoded)

  def references(self, rows) -> list[tuple[str, ...]]:
    """The captions (raw text) of rows `rows` of this split, e.g. for scoring."""
    return [self.split.captions(int(self.indices[r])) for r in np.asarray(rows).reshape(-1)]

  def captions_of(self, row: int) -> np.ndarray:
    """int32 [n_captions, T]: every caption of row `row`, encoded."""
    i = int(self.indices[row])
    return self.tokens[self.offsets[i]:self.offsets[i + 1]]

  def examples(self, rows) -> list[captions.CaptionExample]:
    """The examples of rows `rows` as stored (original pixels), e.g. for figures."""
    return self.split.examples(self.indices[np.asarray(rows)])

  def sample_images(self, n: int) -> np.ndarray:
    return self._read(np.arange(min(n, len(self))))["image"]

  def _image(self, image: np.ndarray) -> np.ndarray:
    if self.image_size and image.shape[:2] != (self.image_size, self.image_size):
      image = np.asarray(Image.fromarray(image).resize((self.image_size, self.image_size),
                                                       Image.BILINEAR))
    return image

  def _regions(self, i: int, hw) -> tuple[np.ndarray, np.ndarray]:
    """([R, 4] pixel boxes in the S x S image, [R] mask) of example i (stored size hw)."""
    h, w = hw
    s_h, s_w = self.image_shape[:2]
    boxes = np.zeros((self.max_regions, 4), np.float32)
    mask = np.zeros((self.max_regions,), np.float32)
    boxes[0], mask[0] = (0, 0, s_h, s_w), 1.0
    if self.region_boxes is not None:
      own = np.asarray(self.region_boxes[i], np.float32).reshape(-1, 4)[:self.max_regions - 1]
      boxes[1:1 + len(own)] = own * np.array([s_h / h, s_w / w] * 2, np.float32)
      mask[1:1 + len(own)] = 1.0
    return boxes, mask

  def _read(self, rows) -> dict[str, np.ndarray]:
    """Images (and regions) of rows `rows`."""
    examples = self.split.examples(self.indices[np.asarray(rows)])
    out = {"image": np.stack([self._image(e.image) for e in examples])}
    if self.max_regions:
      regions = [self._regions(int(self.indices[r]), e.image.shape[:2])
                 for r, e in zip(np.asarray(rows), examples)]
      out["regions"] = np.stack([b for b, _ in regions])
      out["region_mask"] = np.stack([m for _, m in regions])
    return out

  def _train_rows(self, rows, rngs) -> dict[str, np.ndarray]:
    out = self._read(rows)
    tokens = np.zeros((len(rows), self.max_len), np.int32)
    for k, (row, rng) in enumerate(zip(rows, rngs)):
      own = self.captions_of(int(row))
      tokens[k] = own[rng.integers(len(own))]
    out["tokens"] = tokens
    return out

  def train_batches(self, batch_size, seed, start_step=0, *, process_index=0,
                    process_count=1, prefetch=2) -> Iterator[dict[str, np.ndarray]]:
    """This process's rows of the global batches of steps start_step, ...: row r
    of step s is image sort(pipeline.index_batches(...)[s])[r] with its caption
    number example_rng(seed, s, r).integers(its caption count)."""
    return pipeline.step_batches(self._train_rows, len(self), batch_size, seed, start_step,
                                 process_index=process_index, process_count=process_count,
                                 prefetch=prefetch)

  def eval_batches(self, batch_size, *, process_index=0,
                   process_count=1) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the images in order, the last batch padded (copies of the
    last image, mask 0)."""
    rows = pipeline.process_slice(batch_size, process_index, process_count)
    n = len(self)
    for b in range(math.ceil(n / batch_size)):
      idx = np.arange(b * batch_size, (b + 1) * batch_size)[rows]
      real = np.minimum(idx, n - 1)
      batch = self._read(real)
      tokens = np.zeros((len(idx), self.max_captions, self.max_len), np.int32)
      for k, row in enumerate(real):
        own = self.captions_of(int(row))
        tokens[k, :len(own)] = own
      batch.update(tokens=tokens, index=real.astype(np.int32), image_id=self.image_ids[real],
                   mask=(idx < n).astype(np.float32))
      yield batch

  def eval_batch_spec(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    b, r = batch_size, self.max_regions
    spec = {"image": ((b, *self.eval_image_shape), np.uint8),
            "tokens": ((b, self.max_captions, self.max_len), np.int32),
            "index": ((b,), np.int32), "image_id": ((b,), np.int32),
            "mask": ((b,), np.float32)}
    if r:
      spec.update(regions=((b, r, 4), np.float32), region_mask=((b, r), np.float32))
    return spec


def open_caption_inputs(data, split: str, vocabulary: vocab.Vocabulary | None = None, *,
                        min_count: int = 5, max_len: int = 20, image_size: int = 0,
                        max_regions: int = 0) -> CaptionInputSplit:
  """config.data's captions dataset, split `split`, as a CaptionInputSplit.

  vocabulary: the training split's; None builds it from this split's captions
  (words seen >= min_count times; pass the training split here). Raises what
  captions.open_captions raises (bad captions or objects, an unprepared
  dataset) and CaptionInputSplit's errors.
  """
  opened = captions.open_captions(data.name, split, data.data_dir, download=data.download)
  if vocabulary is None:
    vocabulary = captions.build_vocabulary(opened, min_count)
  return CaptionInputSplit(opened, vocabulary, max_len, image_size, max_regions)
