"""Distorted datasets whose training split shows each image in several poses.

Spatial Transformer Networks (Jaderberg et al. 2015, §4.1) draws a new random
distortion every time it shows a training digit. A fixed distorted dataset
(`distorted_builders`, one draw per image) is a much smaller training set: on
4,000 images a spatial transformer network fits its training set within a few
epochs and then only overfits. `<source>_<kind>_x<K>` stores K independent
draws of every training image, so K epochs' worth of training sees K poses of
each digit, as the paper's on-the-fly generation would, at the same cost:

  train  K * N examples, copy-major: example c * N + i is source image i under
         draw c. Copy 0 is `<source>_<kind>`'s own image; copy c > 0 is seeded by
         (SEED, split number, c, i).
  test   `<source>_<kind>`'s test split, example for example.

`register(source, kind, copies)` adds the builder to `builders.LOCAL_BUILDERS`
(so `tfds_source.load_split` prepares it on first use) and returns its name;
call it in any process that reads such a dataset.
"""

import numpy as np
from PIL import Image

from research.data import builders, distorted_builders, distortions


class DistortedCopiesBuilder(distorted_builders.DistortedBuilder, skip_registration=True):
  """Base class; `register` sets the class attributes."""

  COPIES = 1

  def _generate_examples(self, split):
    source = distorted_builders.load_source(self.SOURCE, split, str(self.data_dir_root))
    n = len(source) if self.MAX_EXAMPLES is None else min(len(source), self.MAX_EXAMPLES)
    copies = self.COPIES if split == "train" else 1
    split_number = distorted_builders.SPLITS.index(split)
    options = {"clutter_images": source.images} if self.KIND == "tc" else {}
    for copy in range(copies):
      # Copy 0 with the base dataset's seed: its images are that dataset's.
      seed = (self.SEED, split_number) + ((copy,) if copy else ())
      for lo in range(0, n, distorted_builders._CHUNK):
        idx = np.arange(lo, min(n, lo + distorted_builders._CHUNK))
        images = distortions.DISTORTIONS[self.KIND](source.images[idx], seed, idx, **options)
        for i, image in zip(idx, images):
          yield int(copy * n + i), {"image": Image.fromarray(image[..., 0]),
                                    "label": int(source.labels[i])}


def name(source: str, kind: str, copies: int) -> str:
  """The dataset's name: the base one's for copies == 1, else `<source>_<kind>_x<copies>`."""
  return f"{source}_{kind}" if copies == 1 else f"{source}_{kind}_x{copies}"


def register(source: str, kind: str, copies: int) -> str:
  """Makes `name(source, kind, copies)` preparable from local files; returns it."""
  if copies < 1:
    raise ValueError(f"copies={copies}: must be >= 1.")
  dataset = name(source, kind, copies)
  if dataset not in builders.LOCAL_BUILDERS:
    base = distorted_builders.make_builder(source, kind)  # Validates source and kind.
    attrs = {"name": dataset, "SOURCE": source, "KIND": kind, "SEED": base.SEED,
             "COPIES": copies, "MAX_EXAMPLES": None, "__module__": __name__,
             "__doc__": f"{source} with {copies} draws of the {kind!r} distortion."}
    builders.LOCAL_BUILDERS[dataset] = type(dataset, (DistortedCopiesBuilder,), attrs,
                                            skip_registration=True)
  return dataset
