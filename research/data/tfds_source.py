"""Opening TFDS datasets offline, through `tfds.data_source` (no TensorFlow).

`open_source` returns a random-access source of decoded examples; `load_split`
decodes a whole split into NumPy arrays (what the small datasets of this
project want: decoding once makes the input pipeline ~3x faster than reading
records per batch).
"""

import os

from absl import logging
import tensorflow_datasets as tfds

from research import errors
from research.data import builders
# Imported for its registration: the captioned scenes join builders.LOCAL_BUILDERS.
from research.data import caption_scenes  # noqa: F401  pylint: disable=unused-import
# Imported for its registration: the distorted datasets join builders.LOCAL_BUILDERS.
from research.data import distorted_builders  # noqa: F401  pylint: disable=unused-import
from research.data import reader
# Imported for its registration: the detection scenes join builders.LOCAL_BUILDERS.
from research.data import scene_builders  # noqa: F401  pylint: disable=unused-import
# The reading API, re-exported: callers read datasets through this module.
from research.data.reader import ArraySplit, default_data_dir, select_classes  # noqa: F401


def _how_to_prepare(name: str, data_dir: str) -> str:
  if name in builders.LOCAL_BUILDERS:
    return (f"prepare it from local files with `python -m research.data.prepare "
            f"{name} --data_dir={data_dir}`")
  return (f"prepare it where you have network access (for example "
          f"`tfds build {name} --data_dir={data_dir} --file_format=array_record`) and "
          f"copy the folder here, point --config.data.data_dir at a folder that "
          f"holds it, or pass --config.data.download=True to let TFDS download it")


def open_source(name: str, split: str, data_dir: str | None = None, *,
                download: bool = False, decoders=None):
  """Opens `split` of dataset `name` as a random-access source (array_record).

  Datasets that this project can build from local files (see
  `builders.LOCAL_BUILDERS`) are prepared on first use. Anything else must
  already be prepared in `data_dir`, unless `download=True`. A `data_dir`
  given explicitly must exist unless `download=True` (FileNotFoundError): only
  the default folder is created here.

  decoders: TFDS's per-feature decoders (e.g. `tfds.decode.SkipDecoding()`).

  Returns:
    (source, info): `source[i]` / `source.__getitems__(idx)` give dicts of NumPy
    arrays; `info` is the `tfds.core.DatasetInfo`.
  """
  if data_dir and not download and not os.path.isdir(data_dir):
    # A folder given by hand that is not there is a typo more often than a wish
    # to prepare data in a new place; the default folder is created on first use.
    raise errors.DataNotFound(
        f"config.data.data_dir={data_dir} does not exist. Fix the path, or create the "
        f"folder to prepare {name} there (mkdir -p {data_dir}, or `python -m "
        f"research.data.prepare {name.partition(':')[0]} --data_dir={data_dir}`).")
  data_dir = data_dir or default_data_dir()
  base = name.partition(":")[0]
  path = reader.prepared_dir(name, data_dir)
  if path is None and base in builders.LOCAL_BUILDERS:
    logging.info("Preparing %s into %s from local files (no download).", base, data_dir)
    path = builders.prepare(base, data_dir)
  if path is not None:  # Prepared: read it as it is, whoever built it.
    return reader.open_prepared(path, split, decoders)
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download,
                              decoders=decoders)
  except Exception as e:  # TFDS raises several unrelated types for "not there".
    if path is None and not download:
      raise errors.DataNotFound(
          f"Dataset {name!r} is not prepared in {data_dir} and downloads are off. "
          f"To fix: {_how_to_prepare(name, data_dir)}.") from e
    raise
  return source, source.dataset_info


def load_split(name: str, split: str, data_dir: str | None = None, *,
               download: bool = False, chunk: int = 4096, classes=()) -> ArraySplit:
  """Decodes `split` of an image-classification dataset into memory.

  `classes`: keep only these labels, remapped to 0..len-1 (`select_classes`).
  """
  source, info = open_source(name, split, data_dir, download=download)
  return select_classes(reader.decode(source, info, chunk=chunk, what=f"{name}[{split}]"),
                        classes)
