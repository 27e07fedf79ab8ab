"""The TFDS builder of the detection scenes (`scenes.py`), offline, without TensorFlow.

`detection_scenes` (1.0.0): 128x128 RGB scenes of Fashion-MNIST items and
MNIST digits on scikit-image's photographs, 20 classes (`scenes.CLASS_NAMES`),
seed 0, splits train 5,000 / validation 1,000 / test 1,000, in the feature
layout of TFDS's `voc/2007`, so one reader serves both (`detection.py`):

  image                 uint8 [128, 128, 3] (PNG)
  image/filename        "<split>_<index>.png"
  objects/label         ClassLabel (20 names)
  objects/bbox          BBoxFeature: normalised [ymin, xmin, ymax, xmax] of the
                        object's visible pixels (pixel edges / 128)
  objects/pose          "unspecified" (VOC's pose names)
  objects/is_truncated  the object's mask runs off the frame
  objects/is_difficult  False (VOC's is an annotator's judgement; nothing here
                        makes one, so every object counts in VOC AP)
  labels, labels_no_difficult   the sorted distinct labels of the scene

Items never cross splits: train scenes take items from Fashion-MNIST's
train[:50000] and mnist_5k's train[:3200], validation from train[50000:] and
train[3200:], test from the two test splits (items are drawn with
replacement within a split's pool, so an item may appear in more than one
scene of its split, differently scaled, tinted and placed). The background
photos are shared by all splits (random crops). Stored in generation order
(TFDS shuffling off): example i of a split is scene i.

The sources are read from the same data_dir (prepared there first if needed).
Importing this module adds the builder to `builders.LOCAL_BUILDERS`.
"""

import time

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from research.data import builders, reader, scenes

# Each split's source pools: {source: (source split, first index, end index)}.
POOLS = {
    "train": {"fashion_mnist": ("train", 0, 50_000), "mnist_5k": ("train", 0, 3_200)},
    "validation": {"fashion_mnist": ("train", 50_000, 60_000),
                   "mnist_5k": ("train", 3_200, 4_000)},
    "test": {"fashion_mnist": ("test", 0, 10_000), "mnist_5k": ("test", 0, 1_000)},
}
SPLIT_NUMBERS = {"train": 0, "validation": 1, "test": 2}
VOC_POSES = ("frontal", "rear", "left", "right", "unspecified")  # TFDS voc's pose names.
_CHUNK = 256  # Scenes whose items are read in one batched call.


class SceneBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Detection scenes; `make_scene_builder` sets the class attributes."""

  VERSION = tfds.core.Version("1.0.0")
  SPLITS = {"train": 5_000, "validation": 1_000, "test": 1_000}
  SEED = 0
  CONFIG = scenes.SceneConfig()

  def _info(self):
    s = self.CONFIG.size
    classes = tfds.features.ClassLabel(names=scenes.CLASS_NAMES)
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{s}x{s} scenes of Fashion-MNIST items and MNIST digits (scaled, "
                    f"tinted, overlapping) on scikit-image's photographs, seed {self.SEED}, "
                    "in voc/2007's feature layout; see research/data/scenes.py.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(s, s, 3)),
            "image/filename": tfds.features.Text(),
            "objects": tfds.features.Sequence({
                "label": classes,
                "bbox": tfds.features.BBoxFeature(),
                "pose": tfds.features.ClassLabel(names=VOC_POSES),
                "is_truncated": np.bool_,
                "is_difficult": np.bool_,
            }),
            "labels": tfds.features.Sequence(tfds.features.ClassLabel(
                names=scenes.CLASS_NAMES)),
            "labels_no_difficult": tfds.features.Sequence(tfds.features.ClassLabel(
                names=scenes.CLASS_NAMES)),
        }),
        disable_shuffling=True,  # Example i is scene i.
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    return {split: self._generate_examples(split) for split in self.SPLITS}

  def _generate_examples(self, split):
    data_dir, config = str(self.data_dir_root), self.CONFIG
    sources = {name: open_pool(name, *POOLS[split][name], data_dir) for name in scenes.SOURCES}
    backgrounds = scenes.load_backgrounds(config.background_short_side)
    n, number, start = self.SPLITS[split], SPLIT_NUMBERS[split], time.time()
    for lo in range(0, n, _CHUNK):
      for i, scene in zip(range(lo, min(n, lo + _CHUNK)),
                          make_scenes(range(lo, min(n, lo + _CHUNK)), number, self.SEED,
                                      sources, backgrounds, config)):
        yield i, self._example(scene, split, i)
      done = min(n, lo + _CHUNK)
      logging.info("%s %s: %d / %d (%.0f scenes/s)", self.name, split, done, n,
                   done / max(time.time() - start, 1e-9))

  def _example(self, scene: scenes.Scene, split: str, index: int) -> dict:
    """Scene `index` of `split` as this builder's example (subclasses change the layout)."""
    return example(scene, f"{split}_{index:06d}.png")


def open_pool(name: str, source_split: str, first: int, end: int, data_dir: str):
  """(source, first, end): a random-access source dataset split (prepared into
  `data_dir` first if needed) and the range of it a pool uses."""
  path = reader.prepared_dir(name, data_dir) or builders.prepare(name, data_dir)
  source, _ = reader.open_prepared(path, source_split)
  if len(source) < end:
    raise ValueError(f"{name}[{source_split}] has {len(source)} examples; the scenes' "
                     f"pool needs [{first}, {end}). Re-prepare {name}.")
  return source, first, end


def make_scenes(indices, split_number: int, seed: int, sources, backgrounds,
                config: scenes.SceneConfig) -> list[scenes.Scene]:
  """The scenes `indices` of a split; sources: {name: (source, first, end)}."""
  sizes = {name: end - first for name, (_, first, end) in sources.items()}
  picks = [scenes.draw_items(seed, split_number, i, sizes, config) for i in indices]
  records = {}
  for name, (source, first, _) in sources.items():
    wanted = sorted({k for p in picks for src, k in p if src == name})
    if wanted:  # One batched read per source and chunk.
      read = reader.read_records(source, [first + k for k in wanted])
      records.update({(name, k): r for k, r in zip(wanted, read)})
  out = []
  for i, p in zip(indices, picks):
    items = [(scenes.SOURCES[name] + int(records[name, k]["label"]),
              np.asarray(records[name, k]["image"])[..., 0]) for name, k in p]
    out.append(scenes.render(seed, split_number, i, items, backgrounds, config, p))
  return out


def example(scene: scenes.Scene, filename: str) -> dict:
  """A scene as a TFDS example in voc/2007's layout."""
  size = scene.image.shape[0]
  labels = sorted(set(scene.labels.tolist()))
  return {
      # A PIL image makes TFDS encode the PNG with Pillow, not TensorFlow.
      "image": Image.fromarray(scene.image),
      "image/filename": filename,
      "objects": {
          "label": scene.labels.astype(np.int64),
          "bbox": (scene.boxes / size).astype(np.float32).reshape(-1, 4),
          "pose": np.full(len(scene.labels), VOC_POSES.index("unspecified"), np.int64),
          "is_truncated": scene.truncated,
          "is_difficult": np.zeros(len(scene.labels), bool),
      },
      "labels": labels,
      "labels_no_difficult": labels,
  }


def make_scene_builder(name: str = "detection_scenes", *, splits=None, seed: int = 0,
                       base: type = SceneBuilder, **config) -> type:
  """A scenes builder class: `splits` {split: count} (a subset of train,
  validation, test; default SceneBuilder.SPLITS), `seed`, SceneConfig fields;
  `base`: SceneBuilder or a subclass (the captioned scenes' layout)."""
  splits = dict(splits or SceneBuilder.SPLITS)
  unknown = set(splits) - set(POOLS)
  if unknown:
    raise ValueError(f"splits={splits}: unknown split(s) {sorted(unknown)}; "
                     f"choose from {sorted(POOLS)}.")
  attrs = {"name": name, "SPLITS": splits, "SEED": seed, "CONFIG": scenes.SceneConfig(**config),
           "__module__": base.__module__, "__doc__": f"Scenes {name!r}, seed {seed}."}
  return type(name, (base,), attrs, skip_registration=True)


DetectionScenes = make_scene_builder()
builders.LOCAL_BUILDERS[DetectionScenes.name] = DetectionScenes
