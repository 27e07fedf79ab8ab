"""The alignment model's input split: images, their regions, one sentence each (issue 17).

Karpathy & Fei-Fei 2015 ("Deep Visual-Semantic Alignments for Generating Image
Descriptions", §3.1.1) represent an image by a detector's top 19 detections
plus the whole image. `AlignmentInputSplit` gives the trainer the interface of
pipeline.InputSplit over a `captions.CaptionSplit` with those regions given as
arrays (computed once per split: research/train/caption_regions.py for a
detector's, `ground_truth_regions` here for the objects' own boxes). Batches
(R regions, T tokens, C = captions_per_image):

  image        uint8 [B, H, W, 3], as stored (every image of the split one size)
  tokens       int32 [B, T]: training: one of image b's sentences, chosen by
               example_rng(seed, step, row) (Vocabulary.encode)
  regions      float32 [B, R, 4]: pixel boxes [ymin, xmin, ymax, xmax]
  region_mask  float32 [B, R]: 1 for a real region (the whole image always is)
  eval batches instead: tokens int32 [B, C, T] (the image's first C sentences),
               sentence_mask float32 [B, C], mask float32 [B] (0: padding row)

The ranking loss (eq. 9) takes the batch's other rows as the negatives, so a
training batch never holds one image twice (pipeline.distinct_batch_indices):
two sentences of one image in a batch would be ranked against each other.
"""

from collections.abc import Iterator

import numpy as np

from research.data import captions, pipeline, vocab


def ground_truth_regions(split: captions.CaptionSplit, num_regions: int
                         ) -> tuple[np.ndarray, np.ndarray]:
  """The objects' own boxes plus the whole image, as the detector's regions'
  stand-in (tests, and an upper-bound variant).

  Returns (regions float32 [N, num_regions, 4] pixels: slot 0 the whole image,
  then the objects in order; region_mask float32 [N, num_regions]).

  Raises:
    ValueError: num_regions < 1, or a split of images of varying sizes.
  """
  if num_regions < 1:
    raise ValueError(f"num_regions={num_regions}: need at least 1 (the whole image).")
  if split.image_shape is None:
    raise ValueError(f"{split.what}: images of varying sizes; ground-truth regions need "
                     "the image size (use the detector's regions).")
  h, w = split.image_shape[:2]
  regions = np.zeros((len(split), num_regions, 4), np.float32)
  mask = np.zeros((len(split), num_regions), np.float32)
  scale = np.array([h, w, h, w], np.float32)
  for i in range(len(split)):
    boxes = split.annotation(i).boxes[:num_regions - 1] * scale
    regions[i, 0], mask[i, 0] = (0, 0, h, w), 1
    regions[i, 1:1 + len(boxes)], mask[i, 1:1 + len(boxes)] = boxes, 1
  return regions, mask


def with_whole_image(boxes: np.ndarray, scores: np.ndarray, image_hw, num_regions: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """One image's regions (§3.1.1): the whole image, then the num_regions - 1
  best-scoring of `boxes` float [D, 4] pixels (scores float [D]).

  Returns (float32 [num_regions, 4], mask float32 [num_regions])."""
  order = np.argsort(-np.asarray(scores), kind="stable")[:num_regions - 1]
  out = np.zeros((num_regions, 4), np.float32)
  mask = np.zeros((num_regions,), np.float32)
  out[0], mask[0] = (0, 0, *image_hw), 1
  out[1:1 + len(order)], mask[1:1 + len(order)] = np.asarray(boxes)[order], 1
  return out, mask


class AlignmentInputSplit(pipeline.InputSplit):
  """A captions split with per-image regions, as the trainer reads it.

  Args:
    split: the opened, checked split (fixed-size images).
    vocabulary: the training split's vocabulary.
    max_len: T, tokens per sentence (<start> words <end>, padded; longer ones
      are cut, counted in the log).
    regions, region_mask: float32 [len(split), R, 4] and [len(split), R].
    captions_per_image: C, the sentences per image in eval batches (5 in the
      paper's test sets).
    indices: the examples of `split` used (default all), e.g. `take`'s.

  Raises:
    ValueError: regions of the wrong shape, an image without a real region,
      or images of varying size.
  """

  def __init__(self, split: captions.CaptionSplit, vocabulary: vocab.Vocabulary, max_len: int,
               regions: np.ndarray, region_mask: np.ndarray, captions_per_image: int = 5,
               indices=None, _tokens=None):
    n = len(split)
    if regions.shape[:1] != (n,) or regions.ndim != 3 or regions.shape[2] != 4 or (
        region_mask.shape != regions.shape[:2]):
      raise ValueError(f"{split.what}: regions {regions.shape} / region_mask "
                       f"{region_mask.shape} must be [{n}, R, 4] / [{n}, R].")
    if n and region_mask.sum(axis=1).min() < 1:
      raise ValueError(f"{split.what}: image {int(np.argmin(region_mask.sum(1)))} has no region; "
                       "every image needs at least the whole image.")
    if split.image_shape is None:
      raise ValueError(f"{split.what}: images of varying sizes; the alignment input split "
                       "batches images as stored, so they must share one size.")
    self.split, self.vocabulary, self.max_len = split, vocabulary, max_len
    self.regions, self.region_mask = regions.astype(np.float32), region_mask.astype(np.float32)
    self.captions_per_image = captions_per_image
    self.indices = np.arange(n) if indices is None else np.asarray(indices)
    self.class_names = split.class_names
    self.image_shape = self.eval_image_shape = tuple(split.image_shape)
    if _tokens is None:  # Every caption encoded once: (tokens [N_captions, T], first row per image).
      counts = np.array([len(split.captions(i)) for i in range(n)])
      encoded, _ = captions.encode_captions(split.texts(), vocabulary, max_len, split.what)
      _tokens = (encoded, np.concatenate([[0], np.cumsum(counts)]))
    self._tokens = _tokens

  def __len__(self) -> int:
    return len(self.indices)

  @property
  def num_regions(self) -> int:
    return self.regions.shape[1]

  def take(self, n: int) -> "AlignmentInputSplit":
    return AlignmentInputSplit(self.split, self.vocabulary, self.max_len, self.regions,
                               self.region_mask, self.captions_per_image, self.indices[:n],
                               self._tokens)

  def sentence_tokens(self, row: int) -> np.ndarray:
    """int32 [n_captions, T]: every sentence of example `row` of this split."""
    encoded, first = self._tokens
    i = int(self.indices[row])
    return encoded[first[i]:first[i + 1]]

  def examples(self, rows) -> list[captions.CaptionExample]:
    """The examples `rows` of this split as stored (e.g. for figures)."""
    return self.split.examples(self.indices[np.asarray(rows)])

  def sample_images(self, n: int) -> np.ndarray:
    rows = np.arange(min(n, len(self)))
    return np.stack([e.image for e in self.examples(rows)])

  def _images_regions(self, rows) -> dict[str, np.ndarray]:
    idx = self.indices[np.asarray(rows)]
    return {"image": np.stack([e.image for e in self.split.examples(idx)]),
            "regions": self.regions[idx], "region_mask": self.region_mask[idx]}

  def train_batch(self, rows, rngs) -> dict[str, np.ndarray]:
    """Rows `rows` with one sentence each, drawn with its generator of `rngs`."""
    out = self._images_regions(rows)
    chosen = []
    for r, rng in zip(rows, rngs):
      sentences = self.sentence_tokens(int(r))
      chosen.append(sentences[int(rng.integers(len(sentences)))])
    out["tokens"] = np.stack(chosen).astype(np.int32)
    return out

  def train_batches(self, batch_size, seed, start_step=0, *, process_index=0,
                    process_count=1, prefetch=2) -> Iterator[dict[str, np.ndarray]]:
    """Row r of step s: example sort(distinct_batch_indices(...s))[r] with its
    sentence drawn by example_rng(seed, s, r); no image twice in a batch."""
    n = len(self)
    return pipeline.step_batches(
        self.train_batch, n, batch_size, seed, start_step, process_index=process_index,
        process_count=process_count, prefetch=prefetch,
        batch_indices=lambda step: pipeline.distinct_batch_indices(n, batch_size, seed, step))

  def eval_batch(self, rows) -> dict[str, np.ndarray]:
    """Rows `rows` with their first C sentences (sentence_mask 0 where fewer)."""
    out = self._images_regions(rows)
    c = self.captions_per_image
    tokens = np.zeros((len(rows), c, self.max_len), np.int32)
    sentence_mask = np.zeros((len(rows), c), np.float32)
    for j, r in enumerate(rows):
      sentences = self.sentence_tokens(int(r))[:c]
      tokens[j, :len(sentences)], sentence_mask[j, :len(sentences)] = sentences, 1
    out.update(tokens=tokens, sentence_mask=sentence_mask)
    return out

  def eval_batches(self, batch_size, *, process_index=0,
                   process_count=1) -> Iterator[dict[str, np.ndarray]]:
    """One pass in order, the last batch padded (copies of the last example, mask 0)."""
    return pipeline.padded_eval_batches(self.eval_batch, len(self), batch_size,
                                        process_index=process_index,
                                        process_count=process_count)

  def eval_batch_spec(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], type]]:
    r, c, t = self.num_regions, self.captions_per_image, self.max_len
    shapes = {"image": (self.image_shape, np.uint8), "regions": ((r, 4), np.float32),
              "region_mask": ((r,), np.float32), "tokens": ((c, t), np.int32),
              "sentence_mask": ((c,), np.float32), "mask": ((), np.float32)}
    return {k: ((batch_size, *shape), dtype) for k, (shape, dtype) in shapes.items()}
