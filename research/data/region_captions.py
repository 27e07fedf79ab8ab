"""Image regions with their phrases as a captions split (Karpathy & Fei-Fei 2015, §3.2, §4.3).

The region-level experiments train and evaluate a caption generator on crops
of image regions, each with its phrases as captions: on the training images
the region-phrase pairs the alignment model infers (§3.1.4), on the test
images the objects' boxes with their ground-truth phrases (the paper's
region-level annotations of Flickr30K, Table 3; caption_scenes's
objects/phrase here). `RegionCaptionSplit` gives `captions_lib.CaptionSplit`'s
interface over such crops, so `caption_inputs.CaptionInputSplit` batches them
as it batches whole images (crops vary in size: give it an image_size).

Example k is the crop of boxes[k] (float pixels [ymin, xmin, ymax, xmax] of
the stored image, edges; rounded outwards to whole pixels and clipped to the
image) of image scene_index[k] of the underlying split, its captions
phrases[k], its image/id first_id + k (ids of their own: the caption
objective looks references up by image/id).
"""

import dataclasses

import numpy as np

from research.data import captions as captions_lib, vocab

# Image ids of the crops: above the datasets' own (caption_scenes's < 10^7,
# COCO's < 10^6) and inside int32, as batches carry them.
TRAIN_FIRST_ID = 1_000_000_000
TEST_FIRST_ID = 1_500_000_000


@dataclasses.dataclass(frozen=True)
class RegionAnnotation:
  """What the caption inputs read of a crop's annotation: its own id, and where it is from."""
  image_id: int
  scene_image_id: int
  box: tuple


def crop(image: np.ndarray, box) -> np.ndarray:
  """image[y0:y1, x0:x1] for the pixel box [ymin, xmin, ymax, xmax] (edges) rounded
  outwards and clipped to the image, at least 1 x 1 pixel."""
  h, w = image.shape[:2]
  y0 = int(np.clip(np.floor(box[0]), 0, h - 1))
  x0 = int(np.clip(np.floor(box[1]), 0, w - 1))
  y1 = int(np.clip(np.ceil(box[2]), y0 + 1, h))
  x1 = int(np.clip(np.ceil(box[3]), x0 + 1, w))
  return image[y0:y1, x0:x1]


class RegionCaptionSplit:
  """Crops of a captions split's regions with their phrases (see the module docstring).

  Args:
    scenes: the opened split whose images are cropped.
    scene_index: int [K], the image of each crop.
    boxes: float [K, 4], pixel boxes of the stored images.
    phrases: K tuples of str, the captions of each crop.
    what: a name for messages, e.g. "caption_scenes[test] objects".
    first_id: the image/id of crop 0.

  Raises:
    ValueError: arguments of different lengths, a scene index out of range, or
      a box without area.
    vocab.EmptyCaptionError: a crop without a phrase, or a phrase without a word.
  """

  has_phrases = False
  image_shape = None  # Crops vary in size.

  def __init__(self, scenes: captions_lib.CaptionSplit, scene_index, boxes, phrases, what: str,
               first_id: int = TRAIN_FIRST_ID):
    self.scenes, self.what = scenes, what
    self.scene_index = np.asarray(scene_index, np.int64).reshape(-1)
    self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    self._phrases = [tuple(p) for p in phrases]
    k = len(self.scene_index)
    if len(self.boxes) != k or len(self._phrases) != k:
      raise ValueError(f"{what}: {k} scene indices, {len(self.boxes)} boxes and "
                       f"{len(self._phrases)} phrase lists; give one of each per region.")
    if k and (self.scene_index.min() < 0 or self.scene_index.max() >= len(scenes)):
      raise ValueError(f"{what}: scene indices must be in [0, {len(scenes)}) for "
                       f"{scenes.what}; got {self.scene_index.min()}..{self.scene_index.max()}.")
    bad = np.flatnonzero((self.boxes[:, 2] <= self.boxes[:, 0])
                         | (self.boxes[:, 3] <= self.boxes[:, 1]))
    if len(bad):
      raise ValueError(f"{what}: region {int(bad[0])} has the empty box "
                       f"{self.boxes[bad[0]].tolist()}; boxes are [ymin, xmin, ymax, xmax] pixels.")
    for i, texts in enumerate(self._phrases):
      if not texts or not all(vocab.tokenize(t) for t in texts):
        raise vocab.EmptyCaptionError(
            f"{what}: region {i} (image {int(self.scene_index[i])} of {scenes.what}) has "
            f"phrases {texts!r}; each region needs at least one phrase with a word.")
    self.first_id = first_id
    self.class_names = scenes.class_names

  @classmethod
  def from_objects(cls, scenes: captions_lib.CaptionSplit, first_id: int = TEST_FIRST_ID
                   ) -> "RegionCaptionSplit":
    """Every object of `scenes` (its box) with its own phrase (objects/phrase).

    Raises:
      ValueError: the dataset has no region phrases (e.g. coco_captions).
    """
    if not scenes.has_phrases:
      raise ValueError(f"{scenes.what} has no region phrases (objects/phrase): the region "
                       "evaluation needs them. To fix: use caption_scenes (or a dataset with "
                       "objects/phrase).")
    index, boxes, phrases = [], [], []
    h, w = scenes.image_shape[:2] if scenes.image_shape else (None, None)
    for i in range(len(scenes)):
      a = scenes.annotation(i)
      if h is None:  # Varying sizes: the stored image's, read once.
        hh, ww = scenes[i].image.shape[:2]
      else:
        hh, ww = h, w
      for box, phrase in zip(a.boxes * np.array([hh, ww, hh, ww], np.float32),
                             scenes.phrases(i)):
        index.append(i), boxes.append(box), phrases.append((phrase,))
    return cls(scenes, index, np.reshape(boxes, (-1, 4)), phrases, f"{scenes.what} objects",
               first_id)

  @classmethod
  def from_examples(cls, scenes: captions_lib.CaptionSplit, examples: list[dict],
                    first_id: int = TRAIN_FIRST_ID) -> "RegionCaptionSplit":
    """Inferred region-phrase examples ({"index", "box", "phrases"}, as
    eval.region_phrases.region_examples gives) of `scenes`."""
    return cls(scenes, [e["index"] for e in examples],
               np.reshape([e["box"] for e in examples], (-1, 4)),
               [tuple(e["phrases"]) for e in examples], f"{scenes.what} inferred regions",
               first_id)

  def __len__(self) -> int:
    return len(self.scene_index)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def captions(self, index: int) -> tuple[str, ...]:
    return self._phrases[index]

  def texts(self) -> list[str]:
    return [t for texts in self._phrases for t in texts]

  def phrases(self, index: int) -> tuple[str, ...]:
    del index
    return ()

  def annotation(self, index: int) -> RegionAnnotation:
    scene = self.scenes.annotation(int(self.scene_index[index]))
    return RegionAnnotation(self.first_id + int(index), int(scene.image_id),
                            tuple(float(x) for x in self.boxes[index]))

  def __getitem__(self, index: int) -> captions_lib.CaptionExample:
    return self.examples([index])[0]

  def examples(self, indices) -> list[captions_lib.CaptionExample]:
    """The crops `indices` (their scenes read in one batched call)."""
    indices = [int(i) for i in indices]
    scenes = self.scenes.examples([int(self.scene_index[i]) for i in indices])
    empty = np.zeros((0, 4), np.float32)
    return [captions_lib.CaptionExample(crop(s.image, self.boxes[i]), self._phrases[i], empty,
                                    np.zeros((0,), np.int32), (), self.first_id + i, s.filename)
            for i, s in zip(indices, scenes)]
