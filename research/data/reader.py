"""Reading prepared TFDS datasets into memory (no TensorFlow, no preparing).

The bottom of the data layer: `tfds_source` (which also prepares datasets on
first use) and the distorted builders (which read their source dataset) both
read through here, so neither needs the other.
"""

import dataclasses
import os
import time

from absl import logging
import numpy as np
import tensorflow_datasets as tfds


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def prepared_dir(name: str, data_dir: str) -> str | None:
  """The newest prepared version folder of `name` ("mnist" or "mnist:3.0.1")
  under `data_dir`, or None if there is none."""
  base, _, version = name.partition(":")
  root = os.path.join(data_dir, base)
  if not os.path.isdir(root):
    return None
  versions = [version] if version else sorted(
      os.listdir(root), key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
  for v in reversed(versions):
    if os.path.exists(os.path.join(root, v, "dataset_info.json")):
      return os.path.join(root, v)
  return None


def open_prepared(path: str, split: str, decoders=None):
  """(source, info) of `split` of the dataset prepared in folder `path`.

  decoders: TFDS's, e.g. {"image": tfds.decode.SkipDecoding()} to read the
  annotations without decoding images.
  """
  builder = tfds.builder_from_directory(path)
  return builder.as_data_source(split=split, decoders=decoders), builder.info


def read_records(source, keys) -> list[dict]:
  """Records `keys` of `source`, in one batched call where the source has one
  (~4x faster than one at a time for small records)."""
  keys = [int(k) for k in keys]
  if hasattr(source, "__getitems__"):
    try:
      return source.__getitems__(keys)
    except TypeError:  # tfds.testing.mock_data's sources lack a working __getitems__.
      pass
  return [source[k] for k in keys]


def class_names(info, label_key: str = "label") -> tuple[str, ...]:
  """The class names of a TFDS dataset's ClassLabel feature ("0", "1", ... if unnamed)."""
  feature = info.features[label_key]
  return tuple(feature.names) if hasattr(feature, "names") else tuple(
      str(i) for i in range(int(feature.num_classes)))


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """A decoded split held in memory: images uint8 [N, H, W, C], labels int32 [N]."""
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]

  def __len__(self):
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def select_classes(data: ArraySplit, classes) -> ArraySplit:
  """The examples of `classes` only, labels remapped: classes[i] becomes i.

  For tasks made of some of a dataset's classes (Yosinski et al. 2014 split
  ImageNet's 1000 classes into two halves). An empty `classes` keeps all.
  Raises ValueError on repeated or out-of-range labels.
  """
  if not len(classes):
    return data
  classes = [int(c) for c in classes]
  if len(set(classes)) != len(classes) or not all(0 <= c < data.num_classes for c in classes):
    raise ValueError(f"classes={tuple(classes)}: need distinct labels in "
                     f"[0, {data.num_classes}).")
  new_label = np.full(data.num_classes, -1, np.int32)
  new_label[classes] = np.arange(len(classes), dtype=np.int32)
  keep = new_label[data.labels] >= 0
  return ArraySplit(data.images[keep], new_label[data.labels[keep]],
                    tuple(data.class_names[c] for c in classes))


def decode(source, info, *, chunk: int = 4096, what: str = "",
           log_every_s: float = 30.0) -> ArraySplit:
  """Decodes every record of an image-classification `source` into memory.

  info: its `tfds.core.DatasetInfo` (supervised keys and class names);
  what: a name for the log lines. Images whose stored size varies (a None in
  the image feature's shape) are kept as an object array [N] of uint8
  [H_i, W_i, C]; others as uint8 [N, H, W, C]. A long decode logs its
  progress (examples done, rate, time left) every `log_every_s` seconds.
  """
  image_key, label_key = info.supervised_keys or ("image", "label")
  ragged = None in tuple(info.features[image_key].shape)
  what = what or info.name
  start, n = time.time(), len(source)
  last_log = start
  images, labels = [], []
  for lo in range(0, n, chunk):
    records = read_records(source, range(lo, min(n, lo + chunk)))
    if ragged:
      images.extend(r[image_key] for r in records)
    else:
      images.append(np.stack([r[image_key] for r in records]))
    labels.append(np.asarray([r[label_key] for r in records], np.int32))
    done, now = min(n, lo + chunk), time.time()
    if now - last_log >= log_every_s and done < n:
      rate = done / (now - start)
      logging.info("Decoding %s: %s of %s examples (%.0f%%), %.0f examples/s, about %.0f s "
                   "left.", what, f"{done:,}", f"{n:,}", 100 * done / n, rate,
                   (n - done) / rate)
      last_log = now
  logging.info("Decoded %s: %d examples in %.1f s.", what, n, time.time() - start)
  if ragged:
    stacked = np.empty(len(images), object)
    stacked[:] = images
  else:
    stacked = np.concatenate(images)
  return ArraySplit(stacked, np.concatenate(labels), class_names(info, label_key))


def summaries_main(open_split, summarize, what: str, example: str) -> None:
  """The command line `python -m <module> NAME [SPLIT ...] [--data_dir=DIR]`:
  one JSON line `{"split": ..., **summarize(open_split(NAME, SPLIT, data_dir))}`
  per split (default train, validation, test). what, example: the kind of
  dataset and a dataset's name, for the usage line."""
  import json
  from absl import app, flags
  data_dir = flags.DEFINE_string("data_dir", None, "TFDS data_dir (default $TFDS_DATA_DIR or "
                                 "~/tensorflow_datasets).")

  def main(argv):
    if len(argv) < 2:
      raise SystemExit(f"Name a {what} dataset (and splits), e.g. {example} train test.")
    for split in argv[2:] or ("train", "validation", "test"):
      print(json.dumps({"split": split, **summarize(open_split(argv[1], split,
                                                                 data_dir.value))}))
  app.run(main)
